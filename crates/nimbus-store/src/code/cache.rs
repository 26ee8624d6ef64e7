//! The per-node cache of unpacked code: `<root>/<sha256>/`, fetched from the
//! [`CodeBlobs`] the first time a function on this node needs it.
//!
//! A tree is unpacked under a temporary `.<sha256>-*` name, fsynced and then
//! renamed, so a tree under its final name is whole and is trusted from then
//! on without fetching the package again; concurrent unpacks of one package
//! race harmlessly (the loser's rename fails onto the winner's tree).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nimbus_core::package::PackageListing;
use sha2::{Digest, Sha256};

use super::CodeBlobs;
use super::package::{sweep, unpack_into};
use crate::StoreError;

pub struct CodeCache {
    blobs: Arc<dyn CodeBlobs>,
    root: PathBuf,
}

impl CodeCache {
    /// Unpacks packages from `blobs` under `root` (created when needed).
    pub fn new(blobs: Arc<dyn CodeBlobs>, root: impl Into<PathBuf>) -> Self {
        Self {
            blobs,
            root: root.into(),
        }
    }

    /// Where the packages are kept.
    pub fn blobs(&self) -> &Arc<dyn CodeBlobs> {
        &self.blobs
    }

    /// Removes what an interrupted unpack left in `root` (its `.<sha256>-*`
    /// temporary trees); called at startup, before any unpack can be running.
    pub fn sweep_unpacked(root: &Path) {
        sweep(root);
    }

    /// The package's unpacked tree, fetched and unpacked the first time.
    pub async fn unpacked(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        let dest = self.root.join(sha256);
        if super::is_sha256(sha256) && tokio::fs::metadata(&dest).await.is_ok_and(|m| m.is_dir()) {
            return Ok(dest);
        }
        self.unpack(sha256).await.map(|(dir, _)| dir)
    }

    /// The package's unpacked tree and its listing. Fetches the package even
    /// when the tree is there (the listing is read from the zip).
    pub async fn unpack(&self, sha256: &str) -> Result<(PathBuf, PackageListing), StoreError> {
        let zip = self.blobs.get(sha256).await?;
        let (sha, root) = (sha256.to_string(), self.root.clone());
        tokio::task::spawn_blocking(move || {
            // What is unpacked must be what was stored under that name (the
            // listing of a tree already there is only read from the zip).
            if !root.join(&sha).is_dir() {
                let actual = hex::encode(Sha256::digest(&zip));
                if actual != sha {
                    return Err(StoreError::Corrupt(format!(
                        "code package {sha} hashes to {actual}"
                    )));
                }
            }
            unpack_into(&zip, &sha, &root)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use bytes::Bytes;
    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::code::{FsCodeBlobs, Package};

    #[tokio::test]
    async fn fetches_once_then_trusts_the_named_tree() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn CodeBlobs> =
            Arc::new(FsCodeBlobs::open(dir.path().join("blobs")).unwrap());
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("a.py", SimpleFileOptions::default()).unwrap();
        w.write_all(b"x=1").unwrap();
        let pkg = Package::check(Bytes::from(w.finish().unwrap().into_inner())).unwrap();
        let sha = pkg.info().sha256.clone();
        let cache = CodeCache::new(blobs.clone(), dir.path().join("code"));
        let missing = cache.unpacked(&sha).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
        blobs.put(&pkg).await.unwrap();
        let (tree, listing) = cache.unpack(&sha).await.unwrap();
        assert_eq!(tree, dir.path().join("code").join(&sha));
        assert!(listing.files.contains_key("a.py"));
        assert_eq!(std::fs::read(tree.join("a.py")).unwrap(), b"x=1");
        // The named tree is trusted: no fetch (the blob is gone, the tree is not).
        std::fs::remove_file(dir.path().join("blobs").join(format!("{sha}.zip"))).unwrap();
        assert_eq!(cache.unpacked(&sha).await.unwrap(), tree);
    }

    #[tokio::test]
    async fn refuses_a_package_that_does_not_hash_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs_dir = dir.path().join("blobs");
        let blobs: Arc<dyn CodeBlobs> = Arc::new(FsCodeBlobs::open(&blobs_dir).unwrap());
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("a.py", SimpleFileOptions::default()).unwrap();
        let zip = w.finish().unwrap().into_inner();
        let forged = "0".repeat(64);
        std::fs::write(blobs_dir.join(format!("{forged}.zip")), zip).unwrap();
        let cache = CodeCache::new(blobs, dir.path().join("code"));
        let err = cache.unpacked(&forged).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(!dir.path().join("code").join(&forged).exists());
    }
}
