//! Code packages as files: `<dir>/<sha256>.zip`, the layout data dirs have
//! always had. A package is written to a temporary file, fsynced and renamed
//! into place, so a crash never leaves a half-written package under a valid
//! name.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::package::sync_dir;
use super::{CodeBlobs, CodeInfo, Package, is_sha256, not_a_sha256};
use crate::StoreError;
use crate::body::ByteStream;

pub struct FsCodeBlobs {
    dir: PathBuf,
}

impl FsCodeBlobs {
    /// `dir` holds the zips; it is created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        if !is_sha256(sha256) {
            return Err(not_a_sha256(sha256));
        }
        Ok(self.dir.join(format!("{sha256}.zip")))
    }
}

fn missing(sha256: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(format!("code package {sha256}")),
        _ => StoreError::io(path, e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[async_trait]
impl CodeBlobs for FsCodeBlobs {
    async fn put(&self, package: &Package) -> Result<(), StoreError> {
        let path = self.path(&package.info().sha256)?;
        let (dir, zip) = (self.dir.clone(), package.zip().clone());
        blocking(move || {
            if path.is_file() {
                return Ok(());
            }
            let mut tmp =
                tempfile::NamedTempFile::new_in(&dir).map_err(|e| StoreError::io(&dir, e))?;
            tmp.write_all(&zip)
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| StoreError::io(tmp.path(), e))?;
            tmp.persist(&path)
                .map_err(|e| StoreError::io(&path, e.error))?;
            sync_dir(&dir);
            Ok(())
        })
        .await
    }

    async fn info(&self, sha256: &str) -> Result<Option<CodeInfo>, StoreError> {
        let Ok(path) = self.path(sha256) else {
            return Ok(None);
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(CodeInfo {
                sha256: sha256.to_string(),
                size: m.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    async fn get(&self, sha256: &str) -> Result<Bytes, StoreError> {
        let path = self.path(sha256)?;
        match tokio::fs::read(&path).await {
            Ok(zip) => Ok(zip.into()),
            Err(e) => Err(missing(sha256, &path, e)),
        }
    }

    async fn open(&self, sha256: &str) -> Result<(CodeInfo, ByteStream), StoreError> {
        let path = self.path(sha256)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| missing(sha256, &path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        let info = CodeInfo {
            sha256: sha256.to_string(),
            size,
        };
        Ok((info, Box::pin(tokio_util::io::ReaderStream::new(file))))
    }
}
