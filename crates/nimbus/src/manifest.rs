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
//! [environment]
//! GREETING = "Hello"
//! ```
//! Several functions: `[functions.<name>]` tables with the same keys plus `code`,
//! the directory holding that function's code (relative to the manifest).
//! Unknown keys are errors, so a typo never deploys silently with a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionManifest {
    pub name: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub description: Option<String>,
    pub code: Option<PathBuf>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(flatten)]
    single: FunctionManifest,
    #[serde(default)]
    functions: BTreeMap<String, FunctionManifest>,
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
    if file.single.runtime.is_some() || file.single.name.is_some() || file.single.handler.is_some()
    {
        bail!(
            "{}: use either top-level function keys or [functions.<name>] tables, not both",
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
        std::fs::write(d.join("nimbus.toml"), "runtim = \"python3\"\n").unwrap();
        assert!(format!("{:#}", load(&d).unwrap_err()).contains("unknown field"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
