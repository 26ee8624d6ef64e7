//! `nimbus.toml`: what to deploy from a directory.
//!
//! One function:
//! ```toml
//! name = "hello-python"        # default: the directory name
//! runtime = "python3"
//! handler = "app.handler"
//! memory_mb = 128
//! timeout_s = 3
//! description = "Says hello"
//! handler_style = "aws"      # aws | azure | google | auto (default: detected)
//! permissions = ["s3:photos"]  # what the function's own credentials may reach
//! ephemeral_storage_mb = 512   # the private /tmp, 512 to 10240 MB
//! network = "default"          # or "none": no network beyond its Runtime API
//! [environment]
//! GREETING = "Hello"
//! ```
//! `permissions` entries are shorthand grants (`"service:name"`: every action
//! on that resource) or IAM policy statements, inline or as tables; an
//! explicit Deny wins over any Allow, and nothing is allowed by default:
//! ```toml
//! permissions = [
//!   "sqs:jobs",
//!   { Effect = "Allow", Action = ["s3:GetObject", "s3:ListBucket"], Resource = ["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"] },
//!   { Effect = "Deny", Action = "s3:*", Resource = "arn:aws:s3:::photos/private/*" },
//! ]
//! ```
//! or, all statements, one table each (`[[functions.<name>.permissions]]`
//! with several functions):
//! ```toml
//! [[permissions]]
//! Effect = "Allow"
//! Action = "s3:GetObject"
//! Resource = "arn:aws:s3:::photos/*"
//! ```
//! A function URL is a `[url]` table (`[functions.<name>.url]`); the URL keeps
//! its address across deploys, and removing the table leaves it in place
//! (`nimbus url rm` removes it):
//! ```toml
//! [url]
//! auth = "none"                      # the default: anyone may call it; or "function_key", "api_key"
//! invoke_mode = "response_stream"    # pass streamed responses on as written
//! # qualifier = "live", cors = { allow_origins = ["*"] }, body_limit = 1048576
//! ```
//! Several functions: `[functions.<name>]` tables with the same keys plus `code`,
//! the directory holding that function's code (relative to the manifest).
//! Unknown keys are errors, so a typo never deploys silently with a default.
//!
//! Workflows (state machines) are `[[workflows]]` entries, deployed after the
//! functions they call:
//! ```toml
//! [[workflows]]
//! name = "orders"
//! definition = "orders.asl.json"     # a file (relative to the manifest) …
//! # definition = '{"StartAt": …}'    # … or the JSON inline,
//! # [workflows.definition]           # … or as a TOML table
//! type = "STANDARD"                  # or EXPRESS
//! ```
//!
//! Gateway routes are `[[routes]]` entries with the keys of `POST /v1/routes`,
//! created or replaced (`?replace=true`) after the functions they target, so a
//! redeploy never conflicts with its own routes:
//! ```toml
//! [[routes]]
//! route = "GET /hello/{name}"
//! function = "hello-python"          # or "name:alias"
//! payload_format = "2.0"             # default; "1.0" for REST API handlers
//! # auth = "api_key", cors = { allow_origins = ["*"] }, rate_limit = { rate = 10.0, burst = 20 }
//! ```
//!
//! Schedules are `[[schedules]]` entries with the keys of
//! `PUT /v1/schedules/{name}`, created or replaced last:
//! ```toml
//! [[schedules]]
//! name = "nightly-report"
//! expression = "cron(0 2 * * ? *)"   # or "rate(5 minutes)"
//! timezone = "Europe/Paris"          # cron only; UTC by default
//! function = "report"                # or workflow = "orders"
//! # input = { kind = "nightly" }, missed = "catch-up-once", enabled = false
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nimbus_gateway::RouteSpec;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionManifest {
    pub name: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    /// `aws`, `azure`, `google` or `auto` (default: detected from the package).
    pub handler_style: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    /// The size of the private `/tmp`, MB.
    pub ephemeral_storage_mb: Option<u32>,
    /// `default` or `none`.
    pub network: Option<String>,
    pub description: Option<String>,
    pub code: Option<PathBuf>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// What the function's own credentials may reach: shorthand grants
    /// `["s3:photos", "sqs:jobs"]`, inline policy statements
    /// `{ Effect = "Allow", Action = "s3:GetObject", Resource = "arn:aws:s3:::photos/*" }`,
    /// or `[[permissions]]` statement tables (see `nimbus_core::permissions`).
    #[serde(
        default,
        deserialize_with = "nimbus_core::permissions::deserialize_list"
    )]
    pub permissions: Vec<nimbus_core::permissions::Permission>,
    /// `[url]`: a function URL with these settings (the keys of
    /// `PUT /v1/functions/{name}/url`), created or updated on every deploy.
    pub url: Option<nimbus_gateway::UrlSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(flatten)]
    single: FunctionManifest,
    #[serde(default)]
    functions: BTreeMap<String, FunctionManifest>,
    #[serde(default)]
    workflows: Vec<WorkflowManifest>,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    /// `[[schedules]]`: name, expression, function or workflow, and the
    /// optional timezone, input, missed, enabled, description (checked by the
    /// server, as for `PUT /v1/schedules/{name}`).
    #[serde(default)]
    schedules: Vec<toml::Table>,
}

/// The `[[schedules]]` of `dir/nimbus.toml` as (name, JSON body) pairs.
pub fn load_schedules(dir: &Path) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let path = dir.join("nimbus.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: ManifestFile =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    file.schedules
        .into_iter()
        .map(|mut t| {
            let name = match t.remove("name") {
                Some(toml::Value::String(n)) => n,
                _ => bail!("every [[schedules]] entry needs a name"),
            };
            Ok((name, serde_json::to_value(t)?))
        })
        .collect()
}

/// The name a manifest's routes carry as `managed_by`: its absolute path, so
/// a redeploy knows which routes are its own (None without a manifest).
pub fn routes_owner(dir: &Path) -> anyhow::Result<Option<String>> {
    let path = dir.join("nimbus.toml");
    if !path.exists() {
        return Ok(None);
    }
    let path =
        std::fs::canonicalize(&path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Some(format!("nimbus.toml:{}", path.display())))
}

/// The `[[routes]]` of `dir/nimbus.toml` (none without a manifest), with a
/// relative `jwks_file` resolved against the manifest's directory (the server
/// reads it, from wherever it was started).
pub fn load_routes(dir: &Path) -> anyhow::Result<Vec<RouteSpec>> {
    let path = dir.join("nimbus.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: ManifestFile =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let mut routes = file.routes;
    for jwks in routes
        .iter_mut()
        .filter_map(|r| r.jwt.as_mut()?.jwks_file.as_mut())
    {
        if jwks.is_relative() {
            *jwks = std::path::absolute(dir.join(&*jwks))?;
        }
    }
    Ok(routes)
}

/// A `[[workflows]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowManifest {
    name: String,
    definition: toml::Value,
    #[serde(rename = "type")]
    machine_type: Option<String>,
    role_arn: Option<String>,
}

/// A workflow to deploy, with its definition resolved to JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWorkflow {
    pub name: String,
    pub definition: serde_json::Value,
    pub machine_type: Option<String>,
    pub role_arn: Option<String>,
}

/// The `[[workflows]]` of `dir/nimbus.toml` (none without a manifest).
pub fn load_workflows(dir: &Path) -> anyhow::Result<Vec<PlannedWorkflow>> {
    let path = dir.join("nimbus.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: ManifestFile =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    file.workflows
        .into_iter()
        .map(|w| {
            let definition = match &w.definition {
                toml::Value::String(s) if s.trim_start().starts_with('{') => {
                    serde_json::from_str(s).with_context(|| {
                        format!("workflow {}: the inline definition is not JSON", w.name)
                    })?
                }
                toml::Value::String(file) => {
                    let p = dir.join(file);
                    let text = std::fs::read_to_string(&p).with_context(|| {
                        format!("workflow {}: cannot read {}", w.name, p.display())
                    })?;
                    serde_json::from_str(&text).with_context(|| {
                        format!("workflow {}: {} is not JSON", w.name, p.display())
                    })?
                }
                table @ toml::Value::Table(_) => serde_json::to_value(table)?,
                _ => bail!(
                    "workflow {}: definition must be a file name, a JSON string or a table",
                    w.name
                ),
            };
            Ok(PlannedWorkflow {
                name: w.name,
                definition,
                machine_type: w.machine_type,
                role_arn: w.role_arn,
            })
        })
        .collect()
}

/// A function to deploy, with its code directory resolved.
#[derive(Debug, Clone)]
pub struct Planned {
    pub manifest: FunctionManifest,
    pub code_dir: PathBuf,
}

/// Reads `dir/nimbus.toml` if present; otherwise one function from `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Vec<Planned>> {
    let path = dir.join("nimbus.toml");
    if !path.exists() {
        return Ok(vec![Planned {
            manifest: FunctionManifest::default(),
            code_dir: dir.to_path_buf(),
        }]);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: ManifestFile =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let s = &file.single;
    let no_function = s.name.is_none() && s.runtime.is_none() && s.handler.is_none();
    if file.functions.is_empty()
        && no_function
        && !(file.workflows.is_empty() && file.routes.is_empty() && file.schedules.is_empty())
    {
        // A manifest of workflows, routes or schedules only.
        return Ok(Vec::new());
    }
    if file.functions.is_empty() {
        let code_dir = file
            .single
            .code
            .as_ref()
            .map_or_else(|| dir.to_path_buf(), |c| dir.join(c));
        return Ok(vec![Planned {
            manifest: file.single,
            code_dir,
        }]);
    }
    if file.single.runtime.is_some()
        || file.single.name.is_some()
        || file.single.handler.is_some()
        || file.single.url.is_some()
    {
        bail!(
            "{}: use either top-level function keys (name, runtime, handler, [url]) or [functions.<name>] tables, not both",
            path.display()
        );
    }
    Ok(file
        .functions
        .into_iter()
        .map(|(name, mut m)| {
            m.name.get_or_insert(name);
            let code_dir = m
                .code
                .as_ref()
                .map_or_else(|| dir.to_path_buf(), |c| dir.join(c));
            Planned {
                manifest: m,
                code_dir,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_take_grants_inline_statements_and_statement_tables() {
        use nimbus_core::permissions::Permission;
        let d = std::env::temp_dir().join(format!("nimbus-manifest-perm-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("nimbus.toml"),
            r#"runtime = "python3"
permissions = [
  "sqs:jobs",
  { Effect = "Allow", Action = ["s3:GetObject"], Resource = "arn:aws:s3:::photos/*" },
  { Effect = "Deny", Action = "s3:*", Resource = "arn:aws:s3:::photos/private/*" },
]
"#,
        )
        .unwrap();
        let p = load(&d).unwrap();
        let perms = &p[0].manifest.permissions;
        assert_eq!(perms.len(), 3);
        assert_eq!(perms[0], Permission::from("sqs:jobs"));
        nimbus_core::permissions::validate(perms).unwrap();
        assert!(nimbus_core::policy::allows(
            perms,
            "s3:GetObject",
            "arn:aws:s3:::photos/a"
        ));
        assert!(!nimbus_core::policy::allows(
            perms,
            "s3:GetObject",
            "arn:aws:s3:::photos/private/a"
        ));
        std::fs::write(
            d.join("nimbus.toml"),
            "[functions.a]\nruntime = \"python3\"\n\
             [[functions.a.permissions]]\nEffect = \"Allow\"\nAction = \"sqs:Send*\"\nResource = \"arn:aws:sqs:*:*:jobs\"\n\
             [[functions.a.permissions]]\nEffect = \"Deny\"\nAction = \"sqs:*\"\nResource = \"*\"\n",
        )
        .unwrap();
        let p = load(&d).unwrap();
        let perms = &p[0].manifest.permissions;
        assert_eq!(perms.len(), 2);
        assert!(matches!(&perms[1], Permission::Statement(s) if s.effect == "Deny"));
        std::fs::write(
            d.join("nimbus.toml"),
            "runtime = \"python3\"\npermissions = [{ Effect = \"Allow\", NotAction = \"s3:*\", Resource = \"*\" }]\n",
        )
        .unwrap();
        let err = format!("{:#}", load(&d).unwrap_err());
        assert!(err.contains("NotAction"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn single_and_multi() {
        let d = std::env::temp_dir().join(format!("nimbus-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("nimbus.toml"),
            "runtime = \"python3\"\nhandler = \"app.h\"\n[environment]\nA = \"1\"\n",
        )
        .unwrap();
        let p = load(&d).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].manifest.environment["A"], "1");
        std::fs::write(d.join("nimbus.toml"), "[functions.a]\nruntime = \"nodejs\"\ncode = \"a\"\n[functions.b]\nruntime = \"python3\"\n").unwrap();
        let p = load(&d).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].manifest.name.as_deref(), Some("a"));
        assert!(p[0].code_dir.ends_with("a"));
        // A top-level [url] next to [functions.*] belongs to no function.
        std::fs::write(
            d.join("nimbus.toml"),
            "[url]\nauth = \"none\"\n[functions.a]\nruntime = \"nodejs\"\n[functions.b.url]\ninvoke_mode = \"response_stream\"\n",
        )
        .unwrap();
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        std::fs::write(
            d.join("nimbus.toml"),
            "[functions.a]\nruntime = \"nodejs\"\n[functions.b.url]\ninvoke_mode = \"response_stream\"\n",
        )
        .unwrap();
        let p = load(&d).unwrap();
        assert!(p[0].manifest.url.is_none());
        let url = p[1].manifest.url.as_ref().unwrap();
        assert_eq!(url.invoke_mode, nimbus_gateway::InvokeMode::ResponseStream);
        std::fs::write(
            d.join("flow.json"),
            r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("nimbus.toml"),
            "[[workflows]]\nname = \"a\"\ndefinition = \"flow.json\"\n\
             [[workflows]]\nname = \"b\"\ntype = \"EXPRESS\"\ndefinition = '{\"StartAt\": \"X\"}'\n\
             [[workflows]]\nname = \"c\"\n[workflows.definition]\nStartAt = \"Y\"\n",
        )
        .unwrap();
        assert!(load(&d).unwrap().is_empty(), "workflows only: no function");
        let w = load_workflows(&d).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].definition["States"]["P"]["Type"], "Pass");
        assert_eq!(w[1].definition["StartAt"], "X");
        assert_eq!(w[1].machine_type.as_deref(), Some("EXPRESS"));
        assert_eq!(w[2].definition["StartAt"], "Y");
        std::fs::write(
            d.join("nimbus.toml"),
            "[[routes]]\nroute = \"GET /a\"\nfunction = \"f:live\"\n\
             [[routes]]\nroute = \"$connect\"\napi = \"websocket\"\nfunction = \"g\"\n\
             auth = \"jwt\"\njwt = { jwks_file = \"keys.json\" }\n",
        )
        .unwrap();
        assert!(load(&d).unwrap().is_empty(), "routes only: no function");
        let r = load_routes(&d).unwrap();
        assert_eq!(
            (r[0].route.as_str(), r[0].target.to_string().as_str()),
            ("GET /a", "f:live")
        );
        let jwks = r[1].jwt.as_ref().unwrap().jwks_file.as_ref().unwrap();
        assert!(
            jwks.is_absolute() && jwks.ends_with("keys.json"),
            "{jwks:?}"
        );
        std::fs::write(d.join("nimbus.toml"), "[[routes]]\nroute = \"GET /a\"\n").unwrap();
        // A route names its target (function or workflow): one with neither
        // is refused as the manifest is read, before anything is deployed.
        let untargeted = format!("{:#}", load_routes(&d).unwrap_err());
        assert!(
            untargeted.contains("exactly one of a function and a workflow"),
            "{untargeted}"
        );
        std::fs::write(d.join("nimbus.toml"), "runtim = \"python3\"\n").unwrap();
        assert!(format!("{:#}", load(&d).unwrap_err()).contains("unknown field"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
