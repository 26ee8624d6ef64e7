//! Content-addressed code packages.
//!
//! A package is stored once under the sha256 of its zip, written to a temporary file,
//! fsynced and renamed into place, so a crash never leaves a half-written package
//! under a valid name. Packages are checked before they are stored: no entry may
//! leave the package root (`../`, absolute paths, escaping symlinks), and the
//! uncompressed size and entry count are capped while reading, not trusted from
//! headers, so a zip bomb is refused rather than unpacked.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use nimbus_core::ValidationError;
use nimbus_core::limits::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES};
use nimbus_core::package::{PackageFile, PackageListing};
use sha2::{Digest, Sha256};
use zip::ZipArchive;

use crate::StoreError;

/// The identity of a stored package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeInfo {
    pub sha256: String,
    pub size: u64,
}

pub struct CodeStore {
    blobs: PathBuf,
}

impl CodeStore {
    /// `dir` holds the zips (`<dir>/<sha256>.zip`); it is created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let blobs = dir.into();
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io(&blobs, e))?;
        Ok(Self { blobs })
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(format!("{sha256}.zip"))
    }

    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.blob_path(sha256).is_file()
    }

    /// Size in bytes of a stored zip.
    pub fn size_of(&self, sha256: &str) -> Result<u64, StoreError> {
        let path = self.blob_path(sha256);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Validates and stores a zip, returning its identity and listing.
    pub fn put_zip(&self, zip: &[u8]) -> Result<(CodeInfo, PackageListing), StoreError> {
        if zip.len() as u64 > MAX_ZIP_BYTES {
            return Err(ValidationError {
                code: nimbus_core::ErrorCode::PayloadTooLarge,
                message: format!(
                    "code package is {} bytes; the limit is {MAX_ZIP_BYTES} bytes zipped",
                    zip.len()
                ),
            }
            .into());
        }
        let listing = inspect(zip)?;
        let sha256 = hex::encode(Sha256::digest(zip));
        let path = self.blob_path(&sha256);
        if !path.is_file() {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.blobs)
                .map_err(|e| StoreError::io(&self.blobs, e))?;
            tmp.write_all(zip)
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            tmp.persist(&path)
                .map_err(|e| StoreError::io(&path, e.error))?;
            sync_dir(&self.blobs);
        }
        Ok((
            CodeInfo {
                sha256,
                size: zip.len() as u64,
            },
            listing,
        ))
    }

    /// Reads the listing of a stored package.
    pub fn listing(&self, sha256: &str) -> Result<PackageListing, StoreError> {
        inspect(&self.read(sha256)?)
    }

    /// The bytes of a stored zip.
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        if !is_sha256(sha256) {
            return Err(
                ValidationError::param(format!("{sha256:?} is not a sha256 hex digest")).into(),
            );
        }
        let path = self.blob_path(sha256);
        fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(format!("code package {sha256}")),
            _ => StoreError::io(&path, e),
        })
    }

    /// Unpacks a stored package into `<root>/<sha256>` (once) and returns that path.
    /// Files are world-readable so that sandboxed instances running as an
    /// unprivileged user can read (but never write) their code.
    pub fn extract(&self, sha256: &str, root: &Path) -> Result<PathBuf, StoreError> {
        let dest = root.join(sha256);
        if dest.is_dir() {
            return Ok(dest);
        }
        let zip = self.read(sha256)?;
        fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{sha256}-"))
            .tempdir_in(root)
            .map_err(|e| StoreError::io(root, e))?;
        unpack(&zip, tmp.path())?;
        // Every directory must be traversable by the unprivileged instance users,
        // whatever the server's umask made of the ones created along the way.
        open_dirs(tmp.path())?;
        // Durable before it is visible: every file and directory is on disk
        // before the rename names the tree, and the rename itself is synced.
        // A tree under its final name is therefore whole after a power loss,
        // which is what lets `dest.is_dir()` above trust it.
        sync_tree(tmp.path())?;
        match fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                // The directory now lives at `dest`; do not let TempDir delete it.
                let _ = tmp.keep();
                sync_dir(root);
            }
            Err(_) if dest.is_dir() => {} // another task won the race
            Err(e) => return Err(StoreError::io(&dest, e)),
        }
        Ok(dest)
    }

    /// Removes what an interrupted [`extract`](Self::extract) left in `root`
    /// (its `.<sha256>-*` temporary trees); called at startup, before any
    /// extraction can be running.
    pub fn sweep_unpacked(root: &Path) {
        let Ok(entries) = fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// fsyncs every regular file and directory below `dir` (symlinks are part of
/// their directory's entries), children before parents.
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let kind = entry
            .file_type()
            .map_err(|e| StoreError::io(entry.path(), e))?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            let path = entry.path();
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::io(&path, e))?;
        }
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

fn open_dirs(dir: &Path) -> Result<(), StoreError> {
    set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        // file_type() does not follow symlinks: links are never descended into.
        if entry
            .file_type()
            .map_err(|e| StoreError::io(entry.path(), e))?
            .is_dir()
        {
            open_dirs(&entry.path())?;
        }
    }
    Ok(())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| StoreError::io(path, e))
}

/// Normalises a zip entry name into a safe relative path, or explains why not.
fn safe_relative(name: &str) -> Result<PathBuf, ValidationError> {
    let p = Path::new(name);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ValidationError::package(format!(
                    "zip entry {name:?} escapes the package root; entries must be relative paths without '..'"
                )));
            }
        }
    }
    if name.contains('\0') || name.contains('\\') {
        return Err(ValidationError::package(format!(
            "zip entry {name:?} has an invalid name"
        )));
    }
    Ok(out)
}

/// Checks, lexically, that a symlink at `link` (relative path) pointing to
/// `target` stays inside the root (`nimbus deploy` uses it too, so it never
/// packages a link the server would refuse).
pub fn symlink_stays_inside(link: &Path, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in Path::new(target).components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn open_archive(zip: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, ValidationError> {
    ZipArchive::new(Cursor::new(zip))
        .map_err(|e| ValidationError::package(format!("code package is not a valid zip file: {e}")))
}

/// Validates a zip and lists its regular files, without writing anything.
fn inspect(zip: &[u8]) -> Result<PackageListing, StoreError> {
    walk(zip, None)
}

fn unpack(zip: &[u8], dest: &Path) -> Result<(), StoreError> {
    walk(zip, Some(dest)).map(|_| ())
}

/// Reads every entry (decompressing it, so sizes are real) and optionally writes it.
fn walk(zip: &[u8], dest: Option<&Path>) -> Result<PackageListing, StoreError> {
    let mut archive = open_archive(zip)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ValidationError::package(format!(
            "code package has {} entries; the limit is {MAX_ZIP_ENTRIES}",
            archive.len()
        ))
        .into());
    }
    let mut listing = PackageListing {
        files: BTreeMap::new(),
    };
    let mut total: u64 = 0;
    let mut buf = Vec::new();
    let mut kinds: BTreeMap<PathBuf, Kind> = BTreeMap::new();
    let mut symlinks: Vec<(PathBuf, String)> = Vec::new();
    // Every link's (relative path, target), checked once the listing is whole.
    let mut links: Vec<(PathBuf, String)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| ValidationError::package(format!("zip entry {i} is unreadable: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| {
                ValidationError::package(format!("zip entry {i} has an invalid name: {e}"))
            })?
            .to_string();
        let rel = safe_relative(&name)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = if entry.is_dir() {
            Kind::Dir
        } else if entry.is_symlink() {
            Kind::Symlink
        } else {
            Kind::File
        };
        claim(&mut kinds, &rel, kind, &name)?;
        if entry.is_dir() {
            if let Some(d) = dest {
                let p = d.join(&rel);
                fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
                set_mode(&p, 0o755)?;
            }
            continue;
        }
        buf.clear();
        // Read at most one byte past the remaining budget: real sizes, not headers.
        let budget = MAX_UNZIPPED_BYTES - total;
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ValidationError::package(format!("zip entry {name:?} is corrupt: {e}")))?;
        total += buf.len() as u64;
        if total > MAX_UNZIPPED_BYTES {
            return Err(ValidationError::package(format!(
                "code package unpacks to more than {MAX_UNZIPPED_BYTES} bytes (the unzipped size limit)"
            ))
            .into());
        }
        let is_symlink = entry.is_symlink();
        if is_symlink {
            let target = String::from_utf8_lossy(&buf).to_string();
            if !symlink_stays_inside(&rel, &target) {
                return Err(ValidationError::package(format!(
                    "zip entry {name:?} is a symlink to {target:?}, which points outside the package"
                ))
                .into());
            }
            links.push((rel.clone(), target));
        }
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        if !is_symlink {
            listing.files.insert(
                rel_str,
                PackageFile {
                    size: buf.len() as u64,
                    executable: mode & 0o111 != 0,
                },
            );
        }
        if let Some(d) = dest {
            let p = d.join(&rel);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            if is_symlink {
                // Created after every file, so nothing is ever written through one.
                symlinks.push((p, String::from_utf8_lossy(&buf).into_owned()));
            } else {
                fs::write(&p, &buf).map_err(|e| StoreError::io(&p, e))?;
                set_mode(&p, if mode & 0o111 != 0 { 0o755 } else { 0o644 })?;
            }
        }
    }
    // The lexical check above cannot see through other links (`a/up -> ..`
    // makes `esc -> a/up/a/up/../..` climb out while never going below depth
    // 0 on paper), so a link's target may not pass *through* another link of
    // the package: only its last component may be one (that link is checked
    // on its own). Whole listings are known only now, since a link may come
    // before the entries its target names.
    for (rel, target) in &links {
        if let Some(via) = through_symlink(&kinds, rel, target) {
            return Err(ValidationError::package(format!(
                "zip entry {:?} is a symlink to {target:?}, which resolves through the symlink {:?}; \
                 links may point at a link but not through one",
                rel.display(),
                via.display()
            ))
            .into());
        }
    }
    for (path, target) in symlinks {
        std::os::unix::fs::symlink(&target, &path).map_err(|e| StoreError::io(&path, e))?;
    }
    Ok(listing)
}

/// The first link (other than the final component) that `target`, read
/// relative to the link at `link`, passes through, if any.
fn through_symlink(kinds: &BTreeMap<PathBuf, Kind>, link: &Path, target: &str) -> Option<PathBuf> {
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let components: Vec<Component> = Path::new(target).components().collect();
    for (i, c) in components.iter().enumerate() {
        match c {
            Component::Normal(s) => {
                at.push(s);
                let here: PathBuf = at.iter().collect();
                if i + 1 < components.len() && kinds.get(&here) == Some(&Kind::Symlink) {
                    return Some(here);
                }
            }
            Component::ParentDir => {
                at.pop();
            }
            _ => {}
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

/// Records an entry's path, refusing duplicates and entries below a file or a
/// symlink. With symlinks created last, this guarantees unpacking never writes
/// through a symlink (a chain of symlinks could otherwise point anywhere), and it
/// catches packages that would fail half-way through unpacking.
fn claim(
    kinds: &mut BTreeMap<PathBuf, Kind>,
    rel: &Path,
    kind: Kind,
    name: &str,
) -> Result<(), StoreError> {
    let conflict = |other: &Path| {
        StoreError::from(ValidationError::package(format!(
            "zip entry {name:?} conflicts with entry {:?}",
            other.display()
        )))
    };
    let mut ancestor = rel.parent();
    while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
        match kinds.get(a) {
            Some(Kind::Dir) | None => {}
            Some(_) => return Err(conflict(a)),
        }
        kinds.entry(a.to_path_buf()).or_insert(Kind::Dir);
        ancestor = a.parent();
    }
    match kinds.get(rel) {
        None => {
            kinds.insert(rel.to_path_buf(), kind);
            Ok(())
        }
        Some(Kind::Dir) if kind == Kind::Dir => Ok(()),
        Some(_) => Err(conflict(rel)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn make_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn stores_and_extracts_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("blobs")).unwrap();
        let zip = make_zip(&[
            ("bootstrap", b"#!/bin/sh\n", 0o755),
            ("lib/a.py", b"x=1", 0o644),
        ]);
        let (info, listing) = store.put_zip(&zip).unwrap();
        assert_eq!(info.size, zip.len() as u64);
        assert!(listing.files["bootstrap"].executable);
        assert!(!listing.files["lib/a.py"].executable);
        let root = store
            .extract(&info.sha256, &dir.path().join("code"))
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(root.join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o755);
        assert_eq!(fs::read(root.join("lib/a.py")).unwrap(), b"x=1");
        // Second extraction is a no-op.
        assert_eq!(
            store
                .extract(&info.sha256, &dir.path().join("code"))
                .unwrap(),
            root
        );
        // Nothing but the named tree is left in the cache, and what an
        // interrupted unpack leaves (a dot-named tree) is swept at startup.
        let code = dir.path().join("code");
        let names = |d: &Path| {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&code), vec![info.sha256.clone()]);
        fs::create_dir_all(code.join(format!(".{}-half", info.sha256)).join("lib")).unwrap();
        CodeStore::sweep_unpacked(&code);
        assert_eq!(names(&code), vec![info.sha256.clone()]);
    }

    #[test]
    fn refuses_escaping_entries_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        let err = store
            .put_zip(&make_zip(&[("../evil.py", b"x", 0o644)]))
            .unwrap_err();
        assert!(
            err.to_string().contains("escapes the package root"),
            "{err}"
        );
        let err = store
            .put_zip(&make_zip(&[("/abs.py", b"x", 0o644)]))
            .unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        let err = store.put_zip(b"definitely not a zip").unwrap_err();
        assert!(err.to_string().contains("not a valid zip"), "{err}");
    }

    #[test]
    fn symlink_chains_cannot_escape_during_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("blobs")).unwrap();
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let link = SimpleFileOptions::default();
        w.add_symlink("a/up", "..", link).unwrap();
        w.add_symlink("esc", "a/up/a/up/../..", link).unwrap();
        w.start_file("esc/pwned", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        let zip = w.finish().unwrap().into_inner();
        let err = store.put_zip(&zip).unwrap_err();
        assert!(err.to_string().contains("conflicts with"), "{err}");
        // The chain alone (nothing written below it) climbs out when resolved:
        // refused, in either listing order.
        for order in [["a/up", "esc"], ["esc", "a/up"]] {
            let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
            for name in order {
                let target = if name == "a/up" {
                    ".."
                } else {
                    "a/up/a/up/../.."
                };
                w.add_symlink(name, target, link).unwrap();
            }
            let zip = w.finish().unwrap().into_inner();
            let err = store.put_zip(&zip).unwrap_err();
            assert!(err.to_string().contains("through the symlink"), "{err}");
        }
        // A link to a link (its last component) is fine.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("real", SimpleFileOptions::default()).unwrap();
        w.write_all(b"x").unwrap();
        w.add_symlink("one", "real", link).unwrap();
        w.add_symlink("two", "one", link).unwrap();
        store.put_zip(&w.finish().unwrap().into_inner()).unwrap();
        // A file and a directory of the same name are refused up front, too.
        let err = store
            .put_zip(&make_zip(&[("a", b"x", 0o644), ("a/b", b"y", 0o644)]))
            .unwrap_err();
        assert!(err.to_string().contains("conflicts with"), "{err}");
        // Legitimate relative links (node_modules/.bin style) still work.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(
            "pkg/bin/tool",
            SimpleFileOptions::default().unix_permissions(0o755),
        )
        .unwrap();
        w.write_all(b"#!/bin/sh\n").unwrap();
        w.add_symlink(".bin/tool", "../pkg/bin/tool", link).unwrap();
        let zip = w.finish().unwrap().into_inner();
        let (info, _) = store.put_zip(&zip).unwrap();
        let root = store
            .extract(&info.sha256, &dir.path().join("code"))
            .unwrap();
        assert_eq!(fs::read(root.join(".bin/tool")).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn symlink_rules() {
        assert!(symlink_stays_inside(Path::new("a/b"), "../c"));
        assert!(!symlink_stays_inside(Path::new("a"), "../c"));
        assert!(!symlink_stays_inside(Path::new("a"), "/etc/passwd"));
    }

    #[test]
    fn refuses_zip_bombs() {
        // 300 MB of zeros compresses to ~300 KB.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        w.start_file("zeros", opts).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..300 {
            w.write_all(&chunk).unwrap();
        }
        let zip = w.finish().unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let err = CodeStore::open(dir.path())
            .unwrap()
            .put_zip(&zip)
            .unwrap_err();
        assert!(err.to_string().contains("unzipped size limit"), "{err}");
    }
}
