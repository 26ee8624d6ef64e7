//! Staging a body for [`FsObjectStore`](super::FsObjectStore): a temp file
//! written as the body streams in, hashed (MD5, the S3 ETag) and counted on
//! the way, so no body is ever held in memory and nothing is visible under a
//! key until the store commits it. The declared length and MD5 are checked
//! before the file is fsynced; a refused or abandoned body's temp file is
//! removed (dropping a [`Staged`] removes it).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::{ObjectError, PutBody};

/// A body written, fsynced and checked, in its temp file.
pub(super) struct Staged {
    path: PathBuf,
    /// Hex MD5 of the bytes.
    pub etag: String,
    pub size: u64,
}

impl Staged {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The temp file has been renamed away: nothing to clean up.
    pub(super) fn release(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Streams `body` into a new file at `path`.
pub(super) async fn stage(path: PathBuf, body: PutBody) -> Result<Staged, ObjectError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| ObjectError::io(&path, e))?;
    // From here on the file is removed on every way out but success.
    let mut staged = Staged {
        path,
        etag: String::new(),
        size: 0,
    };
    let PutBody {
        mut stream,
        len: declared_len,
        md5: declared_md5,
    } = body;
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ObjectError::Body)?;
        size += chunk.len() as u64;
        if let Some(expected) = declared_len
            && size > expected
        {
            return Err(ObjectError::IncompleteBody {
                expected,
                received: size,
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ObjectError::io(&staged.path, e))?;
        md5.update(&chunk);
    }
    if let Some(expected) = declared_len
        && size != expected
    {
        return Err(ObjectError::IncompleteBody {
            expected,
            received: size,
        });
    }
    let digest = md5.finalize();
    if declared_md5.is_some_and(|d| d.as_slice() != digest.as_slice()) {
        return Err(ObjectError::BadDigest);
    }
    file.flush()
        .await
        .map_err(|e| ObjectError::io(&staged.path, e))?;
    file.sync_all()
        .await
        .map_err(|e| ObjectError::io(&staged.path, e))?;
    staged.etag = hex::encode(digest);
    staged.size = size;
    Ok(staged)
}
