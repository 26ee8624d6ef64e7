//! Checking and unpacking a code package (blocking work: call it off the
//! async executor).
//!
//! Packages are checked before they are stored: no entry may leave the
//! package root (`../`, absolute paths, escaping symlinks), and the
//! uncompressed size and entry count are capped while reading, not trusted
//! from headers, so a zip bomb is refused rather than unpacked. Unpacking
//! walks the zip with the same checks again, so a package is never trusted
//! for having been stored.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use nimbus_core::ValidationError;
use nimbus_core::limits::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES};
use nimbus_core::package::{PackageFile, PackageListing};
use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::CodeInfo;
use crate::StoreError;

/// A zip that passed every check, with its content address: the only thing
/// a [`CodeBlobs`](super::CodeBlobs) stores.
#[derive(Debug, Clone)]
pub struct Package {
    zip: Bytes,
    info: CodeInfo,
    listing: PackageListing,
}

impl Package {
    /// Checks a zip (size, entry count, names, links, unzipped size) and
    /// computes its sha256. Reads every entry: blocking.
    pub fn check(zip: Bytes) -> Result<Self, StoreError> {
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
        let listing = inspect(&zip)?;
        let info = CodeInfo {
            sha256: hex::encode(Sha256::digest(&zip)),
            size: zip.len() as u64,
        };
        Ok(Self { zip, info, listing })
    }

    pub fn info(&self) -> &CodeInfo {
        &self.info
    }

    pub fn listing(&self) -> &PackageListing {
        &self.listing
    }

    /// The zip's bytes.
    pub fn zip(&self) -> &Bytes {
        &self.zip
    }

    /// Unpacks into `<root>/<sha256>` (once) and returns that path; blocking.
    pub fn unpack(&self, root: &Path) -> Result<PathBuf, StoreError> {
        unpack_into(&self.zip, &self.info.sha256, root).map(|(dir, _)| dir)
    }
}

/// Unpacks `zip` into `<root>/<sha256>` unless that tree exists, and returns
/// it with the package's listing. Files are world-readable so that sandboxed
/// instances running as an unprivileged user can read (but never write)
/// their code.
pub(super) fn unpack_into(
    zip: &[u8],
    sha256: &str,
    root: &Path,
) -> Result<(PathBuf, PackageListing), StoreError> {
    let dest = root.join(sha256);
    if dest.is_dir() {
        return Ok((dest, inspect(zip)?));
    }
    fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{sha256}-"))
        .tempdir_in(root)
        .map_err(|e| StoreError::io(root, e))?;
    let listing = walk(zip, Some(tmp.path()))?;
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
    Ok((dest, listing))
}

/// Removes what an interrupted unpack left in `root` (its `.<sha256>-*`
/// temporary trees).
pub(super) fn sweep(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            let _ = fs::remove_dir_all(entry.path());
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

pub(super) fn sync_dir(dir: &Path) {
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
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn put_zip(zip: &[u8]) -> Result<Package, StoreError> {
        Package::check(Bytes::copy_from_slice(zip))
    }

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
    fn checks_and_unpacks_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let zip = make_zip(&[
            ("bootstrap", b"#!/bin/sh\n", 0o755),
            ("lib/a.py", b"x=1", 0o644),
        ]);
        let pkg = put_zip(&zip).unwrap();
        let (info, listing) = (pkg.info().clone(), pkg.listing().clone());
        assert_eq!(info.size, zip.len() as u64);
        assert!(listing.files["bootstrap"].executable);
        assert!(!listing.files["lib/a.py"].executable);
        let root = pkg.unpack(&dir.path().join("code")).unwrap();
        assert_eq!(root, dir.path().join("code").join(&info.sha256));
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(root.join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o755);
        assert_eq!(fs::read(root.join("lib/a.py")).unwrap(), b"x=1");
        // Second extraction is a no-op.
        assert_eq!(pkg.unpack(&dir.path().join("code")).unwrap(), root);
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
        sweep(&code);
        assert_eq!(names(&code), vec![info.sha256.clone()]);
    }

    #[test]
    fn refuses_escaping_entries_and_garbage() {
        let err = put_zip(&make_zip(&[("../evil.py", b"x", 0o644)])).unwrap_err();
        assert!(
            err.to_string().contains("escapes the package root"),
            "{err}"
        );
        let err = put_zip(&make_zip(&[("/abs.py", b"x", 0o644)])).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        let err = put_zip(b"definitely not a zip").unwrap_err();
        assert!(err.to_string().contains("not a valid zip"), "{err}");
    }

    #[test]
    fn symlink_chains_cannot_escape_during_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let link = SimpleFileOptions::default();
        w.add_symlink("a/up", "..", link).unwrap();
        w.add_symlink("esc", "a/up/a/up/../..", link).unwrap();
        w.start_file("esc/pwned", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        let zip = w.finish().unwrap().into_inner();
        let err = put_zip(&zip).unwrap_err();
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
            let err = put_zip(&zip).unwrap_err();
            assert!(err.to_string().contains("through the symlink"), "{err}");
        }
        // A link to a link (its last component) is fine.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("real", SimpleFileOptions::default()).unwrap();
        w.write_all(b"x").unwrap();
        w.add_symlink("one", "real", link).unwrap();
        w.add_symlink("two", "one", link).unwrap();
        put_zip(&w.finish().unwrap().into_inner()).unwrap();
        // A file and a directory of the same name are refused up front, too.
        let err = put_zip(&make_zip(&[("a", b"x", 0o644), ("a/b", b"y", 0o644)])).unwrap_err();
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
        let root = put_zip(&zip)
            .unwrap()
            .unpack(&dir.path().join("code"))
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
        let err = put_zip(&zip).unwrap_err();
        assert!(err.to_string().contains("unzipped size limit"), "{err}");
    }
}
