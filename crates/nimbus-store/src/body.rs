//! Bodies crossing a storage seam: a stream of byte chunks, never a local
//! file or path.
//!
//! Code packages and object bodies go to and come from whichever backend
//! holds them (files in the data directory today; chunked rows in
//! PostgreSQL or a shared object store in a cluster), so the traits speak in
//! [`ByteStream`]s: a 5 GiB object flows through in chunks and is never held
//! whole in memory. Errors are `io::Error`s so a stream converts to and from
//! `AsyncRead` with `tokio_util::io` without losing them: a caller that wraps
//! its own error (`io::Error::other(e)`) gets it back, untouched, from the
//! store's error.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// A body as chunks of bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A body already in memory, as one chunk (none when empty).
pub fn once(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes: Bytes = bytes.into();
    if bytes.is_empty() {
        Box::pin(futures::stream::empty())
    } else {
        Box::pin(futures::stream::once(async move { Ok(bytes) }))
    }
}

/// Reads a whole body into memory, refusing one longer than `limit` bytes
/// (`InvalidData`), for the bodies that are small by contract (a code
/// package) or in tests.
pub async fn collect(mut stream: ByteStream, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("body is longer than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
