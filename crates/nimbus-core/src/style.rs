//! Handler styles: whose calling convention a function's code follows.
//!
//! Every instance speaks the Lambda Runtime API and receives Lambda events; for
//! `azure` and `google` the bootstrap wraps the user's function so that it gets
//! that cloud's request/context objects (built from an API Gateway event) and its
//! response is turned back into an API Gateway proxy response.
//!
//! The style is set explicitly (`handler_style`) or detected at deploy time from
//! the package, in the order of the handler-styles reference (§5): cloud
//! manifests, then dependencies, then code shape; an ambiguous package is refused
//! with a message asking for `handler_style`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::function::Runtime;
use crate::package::PackageListing;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HandlerStyle {
    /// AWS Lambda: `handler(event, context)`.
    #[default]
    Aws,
    /// Azure Functions: Node v3 `(context, req)` / v4 `app.http`, Python
    /// `main(req)` / `func.FunctionApp` decorators.
    Azure,
    /// Google Cloud Functions: Node `(req, res)`, Python `fn(request)`,
    /// functions-framework registrations, CloudEvent functions.
    Google,
}

impl HandlerStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerStyle::Aws => "aws",
            HandlerStyle::Azure => "azure",
            HandlerStyle::Google => "google",
        }
    }

    pub fn is_aws(&self) -> bool {
        *self == HandlerStyle::Aws
    }

    /// Parses a requested style: `None` for `auto` (detect at deploy time).
    pub fn parse_requested(s: &str) -> Result<Option<Self>, ValidationError> {
        if s == "auto" {
            Ok(None)
        } else {
            s.parse().map(Some)
        }
    }
}

impl FromStr for HandlerStyle {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws" | "lambda" => Ok(HandlerStyle::Aws),
            "azure" => Ok(HandlerStyle::Azure),
            "google" | "gcp" | "gcf" => Ok(HandlerStyle::Google),
            other => Err(ValidationError::param(format!(
                "unknown handler_style {other:?}; expected aws, azure, google or auto"
            ))),
        }
    }
}

impl TryFrom<String> for HandlerStyle {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HandlerStyle> for String {
    fn from(s: HandlerStyle) -> String {
        s.as_str().to_string()
    }
}

impl fmt::Display for HandlerStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a (small, text) file of the package by its `/` path; `None` when absent
/// or unreadable.
pub type ReadFile<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The style to run `handler` with: `requested` when given, else detected.
/// Also checks that the handler names something the style's loader will find.
pub fn resolve(
    listing: &PackageListing,
    runtime: Runtime,
    handler: &str,
    requested: Option<HandlerStyle>,
    read: ReadFile<'_>,
) -> Result<HandlerStyle, ValidationError> {
    let style = match requested {
        Some(s) => s,
        None if runtime == Runtime::Provided => HandlerStyle::Aws,
        None => detect(listing, runtime, handler, read)?,
    };
    check(listing, runtime, handler, style)?;
    Ok(style)
}

fn has(l: &PackageListing, p: &str) -> bool {
    l.files.contains_key(p)
}

fn dependency_style(
    listing: &PackageListing,
    runtime: Runtime,
    read: ReadFile<'_>,
) -> Option<HandlerStyle> {
    match runtime {
        Runtime::Nodejs => {
            let text = read("package.json")?;
            let pkg: serde_json::Value = serde_json::from_str(&text).ok()?;
            let dep = |name: &str| {
                ["dependencies", "devDependencies", "peerDependencies"]
                    .iter()
                    .any(|k| pkg[k].get(name).is_some())
            };
            let scripts = pkg["scripts"].to_string();
            if dep("@google-cloud/functions-framework") || scripts.contains("functions-framework") {
                Some(HandlerStyle::Google)
            } else if dep("@azure/functions") {
                Some(HandlerStyle::Azure)
            } else if dep("aws-lambda-ric") || dep("@types/aws-lambda") || dep("aws-lambda") {
                Some(HandlerStyle::Aws)
            } else {
                None
            }
        }
        Runtime::Python3 => {
            let mut text = String::new();
            for f in ["requirements.txt", "pyproject.toml"] {
                if has(listing, f)
                    && let Some(t) = read(f)
                {
                    text.push_str(&t.to_ascii_lowercase().replace('_', "-"));
                    text.push('\n');
                }
            }
            let names: Vec<&str> = text
                .lines()
                .map(|l| l.trim().trim_start_matches(['"', '\'']))
                .collect();
            let mentions = |pkg: &str| {
                names.iter().any(|l| {
                    l.strip_prefix(pkg).is_some_and(|rest| {
                        rest.is_empty() || rest.starts_with(|c: char| "=<>~![;\" '".contains(c))
                    })
                })
            };
            if mentions("functions-framework") {
                Some(HandlerStyle::Google)
            } else if mentions("azure-functions") {
                Some(HandlerStyle::Azure)
            } else if mentions("awslambdaric") {
                Some(HandlerStyle::Aws)
            } else {
                None
            }
        }
        Runtime::Provided => None,
    }
}

/// Detection (reference §5): cloud manifests, dependencies, code patterns.
pub fn detect(
    listing: &PackageListing,
    runtime: Runtime,
    handler: &str,
    read: ReadFile<'_>,
) -> Result<HandlerStyle, ValidationError> {
    // 2. Cloud manifests.
    if has(listing, "host.json") || has(listing, &format!("{handler}/function.json")) {
        return Ok(HandlerStyle::Azure);
    }
    if [
        "template.yaml",
        "template.yml",
        "template.json",
        "serverless.yml",
        "serverless.yaml",
    ]
    .iter()
    .any(|f| has(listing, f))
    {
        return Ok(HandlerStyle::Aws);
    }
    // 3. Dependencies.
    if let Some(s) = dependency_style(listing, runtime, read) {
        return Ok(s);
    }
    // 4. Code: a handler that resolves the Lambda way is Lambda's (that is how
    // every package deployed before styles existed keeps working).
    if listing.check_handler(runtime, handler).is_ok() {
        return Ok(HandlerStyle::Aws);
    }
    let entry: &[&str] = match runtime {
        Runtime::Python3 => &["main.py", "function_app.py"],
        _ => &["index.js", "index.mjs", "function.js"],
    };
    for f in entry {
        let Some(code) = has(listing, f).then(|| read(f)).flatten() else {
            continue;
        };
        if code.contains("functions_framework")
            || code.contains("@google-cloud/functions-framework")
        {
            return Ok(HandlerStyle::Google);
        }
        if code.contains("func.FunctionApp(") || code.contains("@azure/functions") {
            return Ok(HandlerStyle::Azure);
        }
    }
    // 5. No marker of another cloud: it is meant as a Lambda handler, and the
    // precise complaint is Lambda's (a typo in the handler is the usual cause).
    listing
        .check_handler(runtime, handler)
        .map(|()| HandlerStyle::Aws)
        .map_err(|mut e| {
            e.message.push_str(
                " (no Azure or Google marker was found either; set handler_style to azure or google if it is not a Lambda handler)",
            );
            e
        })
}

/// Checks that `handler` names something `style`'s loader will find.
pub fn check(
    listing: &PackageListing,
    runtime: Runtime,
    handler: &str,
    style: HandlerStyle,
) -> Result<(), ValidationError> {
    if style != HandlerStyle::Aws && runtime == Runtime::Provided {
        return Err(ValidationError::param(format!(
            "handler_style {style} needs runtime python3 or nodejs; runtime provided runs its own bootstrap"
        )));
    }
    let plain_name = !handler.is_empty()
        && !handler.contains(['.', '/'])
        && handler
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    match style {
        HandlerStyle::Aws => listing.check_handler(runtime, handler),
        HandlerStyle::Azure => {
            if has(listing, &format!("{handler}/function.json")) {
                return Ok(());
            }
            let app_file = match runtime {
                Runtime::Python3 => "function_app.py",
                _ => "package.json",
            };
            if plain_name && has(listing, app_file) {
                return Ok(());
            }
            let folders: Vec<&str> = listing
                .files
                .keys()
                .filter_map(|k| k.strip_suffix("/function.json"))
                .filter(|k| !k.contains('/'))
                .collect();
            Err(ValidationError::package(format!(
                "handler {handler:?} (azure style) must name a function folder holding function.json{} or a function registered in {app_file}{}",
                if folders.is_empty() {
                    String::new()
                } else {
                    format!(" (this package has: {})", folders.join(", "))
                },
                if has(listing, app_file) {
                    String::new()
                } else {
                    format!(" (there is no {app_file})")
                }
            )))
        }
        HandlerStyle::Google => {
            if !plain_name {
                // `module.target` / `file.target`: resolved like a Lambda handler.
                return listing.check_handler(runtime, handler);
            }
            let sources: &[&str] = match runtime {
                Runtime::Python3 => &["main.py"],
                _ => &[
                    "package.json",
                    "index.js",
                    "index.mjs",
                    "index.cjs",
                    "function.js",
                ],
            };
            if sources.iter().any(|f| has(listing, f)) {
                Ok(())
            } else {
                Err(ValidationError::package(format!(
                    "handler {handler:?} (google style) is a function target, looked for in {}; none is in the package (or write the handler as file.target)",
                    sources.join(", ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::package::PackageFile;

    fn pkg(files: &[(&str, &str)]) -> (PackageListing, BTreeMap<String, String>) {
        let listing = PackageListing {
            files: files
                .iter()
                .map(|(p, _)| {
                    (
                        p.to_string(),
                        PackageFile {
                            size: 1,
                            executable: false,
                        },
                    )
                })
                .collect(),
        };
        let text = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        (listing, text)
    }

    fn detect_in(
        files: &[(&str, &str)],
        runtime: Runtime,
        handler: &str,
    ) -> Result<HandlerStyle, ValidationError> {
        let (l, t) = pkg(files);
        resolve(&l, runtime, handler, None, &|p| t.get(p).cloned())
    }

    #[test]
    fn parses_and_refuses_with_a_precise_error() {
        assert_eq!(
            "azure".parse::<HandlerStyle>().unwrap(),
            HandlerStyle::Azure
        );
        assert_eq!(HandlerStyle::parse_requested("auto").unwrap(), None);
        let e = "gcloud".parse::<HandlerStyle>().unwrap_err();
        assert!(
            e.message.contains("expected aws, azure, google or auto"),
            "{e}"
        );
    }

    #[test]
    fn detection_order() {
        use HandlerStyle::*;
        use Runtime::*;
        // Lambda packages stay Lambda.
        assert_eq!(
            detect_in(&[("app.py", "")], Python3, "app.handler").unwrap(),
            Aws
        );
        assert_eq!(
            detect_in(&[("index.mjs", "")], Nodejs, "index.handler").unwrap(),
            Aws
        );
        // Azure: host.json / function.json.
        let v3 = [
            ("host.json", "{}"),
            ("HttpTrigger/function.json", "{}"),
            ("HttpTrigger/index.js", ""),
        ];
        assert_eq!(detect_in(&v3, Nodejs, "HttpTrigger").unwrap(), Azure);
        let v1 = [
            ("HttpTrigger/function.json", "{}"),
            ("HttpTrigger/__init__.py", ""),
        ];
        assert_eq!(detect_in(&v1, Python3, "HttpTrigger").unwrap(), Azure);
        let v4 = [
            (
                "package.json",
                r#"{"main":"src/functions/*.js","dependencies":{"@azure/functions":"^4"}}"#,
            ),
            ("src/functions/a.js", ""),
        ];
        assert_eq!(detect_in(&v4, Nodejs, "httpTrigger1").unwrap(), Azure);
        // Google: dependencies, then code.
        let gn = [
            (
                "package.json",
                r#"{"dependencies":{"@google-cloud/functions-framework":"^3"}}"#,
            ),
            ("index.js", ""),
        ];
        assert_eq!(detect_in(&gn, Nodejs, "helloHttp").unwrap(), Google);
        let gp = [
            ("requirements.txt", "functions-framework==3.*\n"),
            ("main.py", ""),
        ];
        assert_eq!(detect_in(&gp, Python3, "hello_http").unwrap(), Google);
        let gp2 = [("main.py", "import functions_framework\n")];
        assert_eq!(detect_in(&gp2, Python3, "hello_http").unwrap(), Google);
        // Ambiguous: refused.
        let e = detect_in(&[("main.py", "def f(request): pass")], Python3, "f").unwrap_err();
        assert!(e.message.contains("set handler_style"), "{e}");
        // Wrong handler for the style.
        let e = detect_in(&v3, Nodejs, "Other").unwrap_err();
        assert!(e.message.contains("HttpTrigger"), "{e}");
        let (l, _) = pkg(&[("bootstrap", "")]);
        assert!(check(&l, Provided, "x", Azure).is_err());
    }
}
