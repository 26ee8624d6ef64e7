//! Packaging a project directory into the zip `nimbus deploy` uploads.
//!
//! What goes in is what the function needs and nothing the developer did not
//! mean to ship: the walk never follows a symlink (a link is stored as a link,
//! as `zip -y` does, so a link to an ancestor cannot recurse forever and a link
//! to `~/.aws/credentials` cannot smuggle the file in); a link that leaves the
//! project is refused with its name, since the server would refuse it anyway;
//! `.git`, `__pycache__`, `.DS_Store`, `.env` and `.env.*` are left out, and a
//! `.nimbusignore` file (gitignore syntax, in any directory of the project)
//! leaves out more. The walk uses the `ignore` crate (ripgrep's), which already
//! implements gitignore semantics exactly. The zip is deterministic (sorted,
//! fixed timestamps, normalised modes), so the same tree always has the same
//! sha256 and is stored once.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Names never packaged, wherever they are in the tree.
const ALWAYS_LEFT_OUT: &[&str] = &[".git", "__pycache__", ".DS_Store", ".env"];

/// The file, in any directory of the project, listing more paths to leave out.
pub const IGNORE_FILE: &str = ".nimbusignore";

enum Entry {
    File { rel: String, path: PathBuf },
    Link { rel: String, target: PathBuf },
}

/// Zips `dir` as described in the module docs.
pub fn zip_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    use zip::write::SimpleFileOptions;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut entries = collect(dir)?;
    entries.sort_by(|a, b| a.rel().cmp(b.rel()));
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        match entry {
            Entry::Link { rel, target } => {
                w.add_symlink(rel.as_str(), target.to_string_lossy(), opts)?;
            }
            Entry::File { rel, path } => {
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                w.start_file(
                    rel.as_str(),
                    opts.unix_permissions(mode)
                        .large_file(meta.len() >= 1 << 32),
                )?;
                w.write_all(
                    &std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                )?;
            }
        }
    }
    Ok(w.finish()?.into_inner())
}

impl Entry {
    fn rel(&self) -> &str {
        match self {
            Entry::File { rel, .. } | Entry::Link { rel, .. } => rel,
        }
    }
}

fn left_out(name: &str) -> bool {
    ALWAYS_LEFT_OUT.contains(&name) || name.starts_with(".env.")
}

fn collect(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let walk = ignore::WalkBuilder::new(root)
        .follow_links(false)
        .hidden(false)
        .parents(false)
        .git_ignore(false)
        .git_global(false)
        .git_exclude(false)
        .ignore(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| !left_out(&e.file_name().to_string_lossy()))
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    let mut out = Vec::new();
    for item in walk {
        let item = item.with_context(|| format!("cannot walk {}", root.display()))?;
        let Some(kind) = item.file_type() else {
            continue; // stdin; never produced for a directory walk
        };
        let path = item.path();
        let rel = path
            .strip_prefix(root)?
            .to_string_lossy()
            .replace('\\', "/");
        if rel.is_empty() || kind.is_dir() {
            continue;
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(path)
                .with_context(|| format!("cannot read the link {}", path.display()))?;
            if !nimbus_store::symlink_stays_inside(Path::new(&rel), &target.to_string_lossy()) {
                bail!(
                    "{} is a symlink to {}, outside the project: nimbus does not package \
                     what a link points to outside the project (it could be a secret); copy it \
                     in, or list the link in {IGNORE_FILE}",
                    path.display(),
                    target.display()
                );
            }
            out.push(Entry::Link { rel, target });
        } else if kind.is_file() {
            out.push(Entry::File {
                rel,
                path: path.to_path_buf(),
            });
        }
        // Sockets, FIFOs and devices are not code: left out.
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn names(zip: &[u8]) -> Vec<(String, bool)> {
        let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..a.len())
            .map(|i| {
                let e = a.by_index(i).unwrap();
                (e.name().unwrap().to_string(), e.is_symlink())
            })
            .collect()
    }

    #[test]
    fn links_are_stored_not_followed_and_ignores_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("lib/sub")).unwrap();
        std::fs::write(p.join("app.py"), "x").unwrap();
        std::fs::write(p.join("lib/sub/m.py"), "y").unwrap();
        std::fs::write(p.join(".env"), "SECRET=1").unwrap();
        std::fs::write(p.join(".env.local"), "SECRET=2").unwrap();
        std::fs::write(p.join("notes.md"), "n").unwrap();
        std::fs::create_dir(p.join("build")).unwrap();
        std::fs::write(p.join("build/big.bin"), "b").unwrap();
        std::fs::write(p.join(IGNORE_FILE), "*.md\nbuild/\n").unwrap();
        // A link to an ancestor: stored as a link, never walked (no recursion).
        symlink("..", p.join("lib/up")).unwrap();
        symlink("sub/m.py", p.join("lib/alias.py")).unwrap();
        let zip = zip_dir(p).unwrap();
        let got = names(&zip);
        assert_eq!(
            got,
            vec![
                (IGNORE_FILE.to_string(), false),
                ("app.py".into(), false),
                ("lib/alias.py".into(), true),
                ("lib/sub/m.py".into(), false),
                ("lib/up".into(), true),
            ]
        );
        let mut a = zip::ZipArchive::new(Cursor::new(&zip[..])).unwrap();
        let mut target = String::new();
        a.by_name("lib/alias.py")
            .unwrap()
            .read_to_string(&mut target)
            .unwrap();
        assert_eq!(target, "sub/m.py");
        // Deterministic.
        assert_eq!(zip, zip_dir(p).unwrap());
    }

    #[test]
    fn links_out_of_the_project_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proj");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(dir.path().join("credentials"), "secret").unwrap();
        std::fs::write(p.join("app.py"), "x").unwrap();
        symlink("../credentials", p.join("creds")).unwrap();
        let err = zip_dir(&p).unwrap_err().to_string();
        assert!(err.contains("outside the project"), "{err}");
        symlink(dir.path().join("credentials"), p.join("abs")).unwrap();
        std::fs::write(p.join(IGNORE_FILE), "creds\n").unwrap();
        let err = zip_dir(&p).unwrap_err().to_string();
        assert!(err.contains("abs"), "{err}");
        std::fs::write(p.join(IGNORE_FILE), "creds\nabs\n").unwrap();
        let got = names(&zip_dir(&p).unwrap());
        assert_eq!(
            got,
            vec![(IGNORE_FILE.to_string(), false), ("app.py".into(), false)]
        );
    }
}
