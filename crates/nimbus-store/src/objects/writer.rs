//! Staging new object data: a temp file written as the body streams in, hashed
//! (MD5, the S3 ETag) and counted on the way, so no body is ever held in memory
//! and nothing is visible under a key until the store commits it. Dropping an
//! uncommitted writer removes its temp file.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::ObjectError;

pub struct ObjectWriter {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    md5: Md5,
    size: u64,
}

impl ObjectWriter {
    pub(crate) async fn create(path: PathBuf) -> Result<Self, ObjectError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| ObjectError::io(&path, e))?;
        Ok(Self {
            file: Some(file),
            path,
            md5: Md5::new(),
            size: 0,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ObjectError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| ObjectError::Task("writer already finished".into()))?;
        file.write_all(chunk)
            .await
            .map_err(|e| ObjectError::io(&self.path, e))?;
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and fsyncs the data; returns (path, hex md5, binary md5, size).
    /// The file stays owned by the writer until [`ObjectWriter::release`].
    pub(crate) async fn finish(&mut self) -> Result<(String, u64), ObjectError> {
        if let Some(mut file) = self.file.take() {
            file.flush()
                .await
                .map_err(|e| ObjectError::io(&self.path, e))?;
            file.sync_all()
                .await
                .map_err(|e| ObjectError::io(&self.path, e))?;
        }
        let md5 = std::mem::take(&mut self.md5).finalize();
        Ok((hex::encode(md5), self.size))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The temp file has been renamed away: nothing to clean up.
    pub(crate) fn release(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
