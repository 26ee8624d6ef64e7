//! What is inside a code package, and whether the handler can be found in it.
//!
//! Lambda only discovers a bad handler at the first invocation. Nimbus checks at
//! deploy time, where the error is cheap to fix, using the same resolution rules the
//! runtimes use.

use std::collections::BTreeMap;

use crate::error::ValidationError;
use crate::function::Runtime;

/// One regular file in a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageFile {
    pub size: u64,
    pub executable: bool,
}

/// The regular files of an (already validated) package, by relative `/` path.
#[derive(Debug, Clone, Default)]
pub struct PackageListing {
    pub files: BTreeMap<String, PackageFile>,
}

impl PackageListing {
    fn has(&self, p: &str) -> bool {
        self.files.contains_key(p)
    }

    /// Verifies that `handler` names something the runtime will find in this package.
    pub fn check_handler(&self, runtime: Runtime, handler: &str) -> Result<(), ValidationError> {
        match runtime {
            Runtime::Python3 => self.check_python(handler),
            Runtime::Nodejs => self.check_node(handler),
            Runtime::Provided => match self.files.get("bootstrap") {
                None => Err(ValidationError::package(
                    "runtime 'provided' needs an executable file named 'bootstrap' at the root of the package",
                )),
                Some(f) if !f.executable => Err(ValidationError::package(
                    "'bootstrap' is not executable; set its mode to 0755 before zipping (the zip must keep Unix permissions)",
                )),
                Some(_) => Ok(()),
            },
        }
    }

    fn check_python(&self, handler: &str) -> Result<(), ValidationError> {
        let Some((module, function)) = handler.rsplit_once('.') else {
            return Err(ValidationError::param(format!(
                "handler {handler:?} must look like module.function (e.g. app.handler)"
            )));
        };
        if module.is_empty() || function.is_empty() {
            return Err(ValidationError::param(format!(
                "handler {handler:?} must look like module.function (e.g. app.handler)"
            )));
        }
        let path = module.replace(['.', '/'], "/");
        let found = self.has(&format!("{path}.py"))
            || self.has(&format!("{path}/__init__.py"))
            || self.has(&format!("{path}.pyc"))
            || self
                .files
                .keys()
                .any(|k| k.starts_with(&format!("{path}.")) && k.ends_with(".so"));
        if found {
            Ok(())
        } else {
            Err(ValidationError::package(format!(
                "handler {handler:?}: module {module:?} not found in the package (looked for {path}.py and {path}/__init__.py)"
            )))
        }
    }

    fn check_node(&self, handler: &str) -> Result<(), ValidationError> {
        let (dir, rest) = match handler.rfind('/') {
            Some(i) => (&handler[..=i], &handler[i + 1..]),
            None => ("", handler),
        };
        if handler.split('/').any(|seg| seg == "..") {
            return Err(ValidationError::param(format!(
                "handler {handler:?} must not contain '..'"
            )));
        }
        let Some((file, export)) = rest.split_once('.') else {
            return Err(ValidationError::param(format!(
                "handler {handler:?} must look like file.export (e.g. index.handler)"
            )));
        };
        if file.is_empty() || export.is_empty() {
            return Err(ValidationError::param(format!(
                "handler {handler:?} must look like file.export (e.g. index.handler)"
            )));
        }
        let base = format!("{dir}{file}");
        let candidates = [
            base.clone(),
            format!("{base}.js"),
            format!("{base}.mjs"),
            format!("{base}.cjs"),
            format!("{base}/index.js"),
        ];
        if candidates.iter().any(|c| self.has(c)) {
            Ok(())
        } else {
            Err(ValidationError::package(format!(
                "handler {handler:?}: file {base}.js (or .mjs/.cjs) not found in the package"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[(&str, bool)]) -> PackageListing {
        PackageListing {
            files: files
                .iter()
                .map(|(p, x)| {
                    (
                        p.to_string(),
                        PackageFile {
                            size: 1,
                            executable: *x,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn python_handlers() {
        let l = listing(&[
            ("app.py", false),
            ("pkg/__init__.py", false),
            ("pkg/mod.py", false),
        ]);
        assert!(l.check_handler(Runtime::Python3, "app.handler").is_ok());
        assert!(l.check_handler(Runtime::Python3, "pkg.mod.fn").is_ok());
        assert!(l.check_handler(Runtime::Python3, "pkg/mod.fn").is_ok());
        assert!(l.check_handler(Runtime::Python3, "pkg.fn").is_ok());
        let e = l
            .check_handler(Runtime::Python3, "missing.handler")
            .unwrap_err();
        assert!(e.message.contains("not found"), "{e}");
        assert!(l.check_handler(Runtime::Python3, "nodot").is_err());
    }

    #[test]
    fn node_handlers() {
        let l = listing(&[("index.mjs", false), ("src/app.js", false)]);
        assert!(l.check_handler(Runtime::Nodejs, "index.handler").is_ok());
        assert!(l.check_handler(Runtime::Nodejs, "src/app.a.b").is_ok());
        assert!(l.check_handler(Runtime::Nodejs, "other.handler").is_err());
        assert!(l.check_handler(Runtime::Nodejs, "../x.handler").is_err());
    }

    #[test]
    fn provided_bootstrap() {
        assert!(
            listing(&[("bootstrap", true)])
                .check_handler(Runtime::Provided, "x")
                .is_ok()
        );
        let e = listing(&[("bootstrap", false)])
            .check_handler(Runtime::Provided, "x")
            .unwrap_err();
        assert!(e.message.contains("not executable"));
        assert!(listing(&[]).check_handler(Runtime::Provided, "x").is_err());
    }
}
