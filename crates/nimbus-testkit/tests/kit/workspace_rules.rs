//! Rules clippy cannot express (see the root clippy.toml): rusqlite is
//! nimbus-store's business alone.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every Cargo.toml of the repository, outside `target/` and `node_modules/`.
fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                manifests(&path, out);
            }
        } else if name == "Cargo.toml" {
            out.push(path);
        }
    }
}

/// The names a manifest depends on, in every dependency table (also
/// target-specific ones), by package name (a renamed dependency counts).
fn dependencies(manifest: &toml::Table) -> Vec<String> {
    let mut names = Vec::new();
    let mut tables: Vec<&toml::Table> = vec![manifest];
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        tables.extend(targets.values().filter_map(|t| t.as_table()));
    }
    for t in tables {
        for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
            for (key, spec) in t.get(kind).and_then(|d| d.as_table()).into_iter().flatten() {
                let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
                names.push(package.to_string());
            }
        }
    }
    names
}

#[test]
fn only_nimbus_store_depends_on_rusqlite() {
    let mut all = Vec::new();
    manifests(&root(), &mut all);
    let mut users = Vec::new();
    for path in &all {
        let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        if dependencies(&manifest).iter().any(|d| d == "rusqlite") {
            let rel = path.strip_prefix(root()).unwrap_or(path).to_path_buf();
            users.push(rel.to_string_lossy().into_owned());
        }
    }
    users.sort();
    assert!(all.len() > 10, "found only {} manifests", all.len());
    assert_eq!(
        users,
        ["crates/nimbus-store/Cargo.toml"],
        "rusqlite belongs to nimbus-store alone"
    );
}

#[test]
fn nimbus_store_does_not_re_export_rusqlite() {
    let mut stack = vec![root().join("crates/nimbus-store/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains("pub use rusqlite"),
                    "{} re-exports rusqlite",
                    path.display()
                );
            }
        }
    }
}
