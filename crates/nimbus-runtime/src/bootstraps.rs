//! The Python and Node bootstraps, embedded in the binary and written to the run
//! directory at startup, so that `nimbus up` needs nothing installed but the
//! interpreters themselves.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const PYTHON: &str = include_str!("../bootstraps/python/bootstrap.py");
pub const NODE: &str = include_str!("../bootstraps/node/bootstrap.mjs");

/// Handler-style adapters and shim packages, installed next to the bootstraps
/// (`(path under the runtime's directory, text)`); the bootstraps load them only
/// for functions whose style is `azure` or `google`.
pub const PYTHON_STYLES: &[(&str, &str)] = &[
    (
        "nimbus_styles/__init__.py",
        include_str!("../bootstraps/python/nimbus_styles/__init__.py"),
    ),
    (
        "nimbus_styles/azure.py",
        include_str!("../bootstraps/python/nimbus_styles/azure.py"),
    ),
    (
        "nimbus_styles/google.py",
        include_str!("../bootstraps/python/nimbus_styles/google.py"),
    ),
    (
        "shims/azure/functions/__init__.py",
        include_str!("../bootstraps/python/shims/azure/functions/__init__.py"),
    ),
    (
        "shims/functions_framework/__init__.py",
        include_str!("../bootstraps/python/shims/functions_framework/__init__.py"),
    ),
];
pub const NODE_STYLES: &[(&str, &str)] = &[
    (
        "styles/common.mjs",
        include_str!("../bootstraps/node/styles/common.mjs"),
    ),
    (
        "styles/azure.mjs",
        include_str!("../bootstraps/node/styles/azure.mjs"),
    ),
    (
        "styles/google.mjs",
        include_str!("../bootstraps/node/styles/google.mjs"),
    ),
    (
        "shims/node_modules/@azure/functions/package.json",
        include_str!("../bootstraps/node/shims/node_modules/@azure/functions/package.json"),
    ),
    (
        "shims/node_modules/@azure/functions/index.js",
        include_str!("../bootstraps/node/shims/node_modules/@azure/functions/index.js"),
    ),
    (
        "shims/node_modules/@google-cloud/functions-framework/package.json",
        include_str!(
            "../bootstraps/node/shims/node_modules/@google-cloud/functions-framework/package.json"
        ),
    ),
    (
        "shims/node_modules/@google-cloud/functions-framework/index.js",
        include_str!(
            "../bootstraps/node/shims/node_modules/@google-cloud/functions-framework/index.js"
        ),
    ),
];

/// Where the installed bootstraps live (`LAMBDA_RUNTIME_DIR` per runtime).
#[derive(Debug, Clone)]
pub struct InstalledBootstraps {
    pub python_dir: PathBuf,
    pub node_dir: PathBuf,
}

impl InstalledBootstraps {
    pub fn python_file(&self) -> PathBuf {
        self.python_dir.join("bootstrap.py")
    }
    pub fn node_file(&self) -> PathBuf {
        self.node_dir.join("bootstrap.mjs")
    }

    /// Builds the Python bootstrap's code cache with the interpreter instances
    /// will use. Instances cannot write to the runtime directory, and without the
    /// cache every cold start would spend ~10 ms compiling the bootstrap.
    pub fn precompile_python(&self, python: &Path) -> io::Result<()> {
        // Once for the host path (`--sandbox off`), once for the path
        // sandboxed instances see (`/var/runtime/bootstrap.py`).
        let inside = Path::new(crate::sandbox::plan::RUNTIME_DIR).join("bootstrap.py");
        for as_path in [None, Some(inside.as_path())] {
            #[allow(
                clippy::disallowed_methods,
                reason = "precompiling the Python bootstrap is part of preparing instances"
            )]
            let out = std::process::Command::new(python)
                .arg("-s")
                .arg(self.python_file())
                .arg("--compile")
                .args(as_path)
                .env_remove("PYTHONDONTWRITEBYTECODE")
                .stdin(std::process::Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "{} --compile failed: {}",
                    self.python_file().display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        // Instances run as other users: the caches must be readable by them.
        open_tree(&self.python_dir)
    }
}

/// Writes the bootstraps under `root`, world-readable, replacing older copies.
pub fn install(root: &Path) -> io::Result<InstalledBootstraps> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root)?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let python_dir = root.join("python");
    let node_dir = root.join("node");
    let files = [
        (&python_dir, "bootstrap.py", PYTHON),
        (&node_dir, "bootstrap.mjs", NODE),
    ]
    .into_iter()
    .chain(PYTHON_STYLES.iter().map(|(p, t)| (&python_dir, *p, *t)))
    .chain(NODE_STYLES.iter().map(|(p, t)| (&node_dir, *p, *t)));
    for (base, rel, text) in files {
        let path = base.join(rel);
        let dir = path.parent().expect("a file has a parent");
        fs::create_dir_all(dir)?;
        let name = path.file_name().expect("a file name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, &path)?;
    }
    open_tree(root)?;
    Ok(InstalledBootstraps {
        python_dir,
        node_dir,
    })
}

/// Directories 0755 and files 0644 below `dir` (instances run as other users).
fn open_tree(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            open_tree(&entry.path())?;
        } else if kind.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}
