//! The Python and Node bootstraps, embedded in the binary and written to the run
//! directory at startup, so that `nimbus up` needs nothing installed but the
//! interpreters themselves.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const PYTHON: &str = include_str!("../bootstraps/python/bootstrap.py");
pub const NODE: &str = include_str!("../bootstraps/node/bootstrap.mjs");

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
        let out = std::process::Command::new(python)
            .arg("-s")
            .arg(self.python_file())
            .arg("--compile")
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
        // Instances run as other users: the cache must be readable by them.
        use std::os::unix::fs::PermissionsExt;
        let cache_dir = self.python_dir.join("__pycache__");
        fs::set_permissions(&cache_dir, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(&cache_dir)? {
            fs::set_permissions(entry?.path(), fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    }
}

/// Writes the bootstraps under `root`, world-readable, replacing older copies.
pub fn install(root: &Path) -> io::Result<InstalledBootstraps> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root)?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let python_dir = root.join("python");
    let node_dir = root.join("node");
    for (dir, name, text) in [
        (&python_dir, "bootstrap.py", PYTHON),
        (&node_dir, "bootstrap.mjs", NODE),
    ] {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, dir.join(name))?;
    }
    Ok(InstalledBootstraps {
        python_dir,
        node_dir,
    })
}
