//! Code packages: content-addressed zips ([`CodeBlobs`]) and, on each node,
//! their unpacked trees ([`CodeCache`]).
//!
//! # Two halves
//!
//! Where packages are kept and where they run are separate concerns. A
//! [`CodeBlobs`] backend keeps each zip once, under the sha256 of its bytes:
//! [`FsCodeBlobs`] as files in the data directory today, a shared store
//! (PostgreSQL, object storage) in a cluster, so that any node can run any
//! function. The [`CodeCache`] is per node: it fetches a package from the
//! blobs the first time a function needs it and unpacks it under the run
//! directory, where instances read it.
//!
//! # Checked before stored, checked again when unpacked
//!
//! Only a [`Package`] can be stored, and the only way to get one is
//! [`Package::check`], which refuses escaping paths and links, too many
//! entries and zip bombs (sizes are counted while decompressing, not read
//! from headers). Unpacking applies the same checks again, so nothing a
//! backend returns is trusted, and a fetched zip must hash to its name.

mod cache;
mod fs;
mod package;

use async_trait::async_trait;
use bytes::Bytes;

use crate::StoreError;
use crate::body::ByteStream;

pub use cache::CodeCache;
pub use fs::FsCodeBlobs;
pub use package::{Package, symlink_stays_inside};

/// The identity of a stored package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeInfo {
    pub sha256: String,
    pub size: u64,
}

/// Where code packages are kept, by the sha256 of their zip. A name that is
/// not a sha256 hex digest is never stored ([`CodeBlobs::info`] answers
/// `None`; the reads answer [`StoreError::Invalid`]).
#[async_trait]
pub trait CodeBlobs: Send + Sync {
    /// Stores a checked package; storing one that is already there changes
    /// nothing (same name, same bytes). Durable when it returns.
    async fn put(&self, package: &Package) -> Result<(), StoreError>;
    /// The stored package's identity, or `None`.
    async fn info(&self, sha256: &str) -> Result<Option<CodeInfo>, StoreError>;
    /// The whole zip (packages are small: at most
    /// [`MAX_ZIP_BYTES`](nimbus_core::limits::MAX_ZIP_BYTES)).
    /// [`StoreError::NotFound`] when absent.
    async fn get(&self, sha256: &str) -> Result<Bytes, StoreError>;
    /// The zip as a stream, with its identity (to send it on without holding
    /// it). [`StoreError::NotFound`] when absent.
    async fn open(&self, sha256: &str) -> Result<(CodeInfo, ByteStream), StoreError>;
}

/// Whether `s` can name a package: 64 lower-case hex digits.
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The error for a name that cannot be a package's.
pub(crate) fn not_a_sha256(s: &str) -> StoreError {
    nimbus_core::ValidationError::param(format!("{s:?} is not a sha256 hex digest")).into()
}
