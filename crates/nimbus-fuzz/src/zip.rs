//! Code packages: a zip is checked (`Package::check`), then unpacked
//! (`Package::unpack`, what the per-node `CodeCache` runs). Whatever the archive, nothing may be written outside
//! the unpack directory, every symlink in it must resolve inside it, and the
//! unpacked size and entry count stay within the platform limits.
//!
//! Input: the zip's bytes. Works on tmpfs (`/dev/shm` when present), where
//! the unpacker's fsyncs cost nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nimbus_core::limits::{MAX_UNZIPPED_BYTES, MAX_ZIP_ENTRIES};
use nimbus_store::Package;

fn base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("nimbus-fuzz-zip-")
            .tempdir_in(shm);
        builder.or_else(|_| tempfile::tempdir()).expect("temp dir")
    })
    .path()
}

/// Every path under `dir`, symlinks not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push(path.clone());
        if is_dir {
            walk(&path, out);
        }
    }
}

pub fn run(data: &[u8]) {
    let outer = tempfile::tempdir_in(base()).expect("temp dir");
    let root = outer.path().join("code");
    let Ok(package) = Package::check(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let (info, listing) = (package.info(), package.listing());
    let extracted = package.unpack(&root);

    let mut paths = Vec::new();
    walk(outer.path(), &mut paths);
    let dest = root.join(&info.sha256);
    for path in &paths {
        let allowed = path == &root || path.starts_with(&dest);
        assert!(
            allowed,
            "{} written outside the unpack directory",
            path.display()
        );
    }
    let Ok(dest) = extracted else {
        // A refused package leaves nothing behind.
        assert!(!dest.exists(), "a failed unpack left {}", dest.display());
        return;
    };
    let canonical_dest = dest.canonicalize().expect("dest exists");
    let (mut bytes, mut entries) = (0u64, 0u64);
    for path in paths.iter().filter(|p| p.starts_with(&dest) && **p != dest) {
        let meta = fs::symlink_metadata(path).expect("metadata");
        if !meta.is_dir() {
            entries += 1;
        }
        if meta.is_file() {
            bytes += meta.len();
        } else if meta.file_type().is_symlink()
            && let Ok(target) = path.canonicalize()
        {
            assert!(
                target.starts_with(&canonical_dest),
                "{} resolves to {}, outside the package",
                path.display(),
                target.display()
            );
        }
    }
    assert!(bytes <= MAX_UNZIPPED_BYTES, "{bytes} bytes unpacked");
    assert!(
        entries <= MAX_ZIP_ENTRIES as u64,
        "{entries} entries unpacked"
    );
    let _ = listing;
}
