//! The object store behind Nimbus's S3-compatible API: buckets, objects and
//! multipart uploads.
//!
//! # Why a trait
//!
//! The S3 protocol layer (`nimbus-api`'s `aws/s3`) only sees [`ObjectStore`], so
//! a cluster backend (object metadata in PostgreSQL, data in a shared store) can
//! slot in without touching the protocol code. The embedded backend,
//! [`FsObjectStore`], keeps metadata in its own SQLite file (`objects.db`, WAL,
//! `synchronous=FULL`) and object data as files under `<data dir>/objects/`.
//!
//! # Never half-written
//!
//! Data is staged first: an [`ObjectWriter`] streams the body into a temp file
//! while computing its MD5 (the ETag) and size. Committing fsyncs the file,
//! renames it to its final name (a fresh random blob id, never an existing
//! file), fsyncs the directory, and only then points the key at the blob in one
//! SQLite transaction. A crash before the transaction leaves an unreferenced
//! blob, which [`FsObjectStore::open`] removes; a reader therefore sees either
//! the old object or the new one, never a mix. Blobs are immutable once named,
//! and an overwritten or deleted object's blob is unlinked after the commit
//! (readers that already opened it keep reading it).
//!
//! # Listing semantics
//!
//! Keys are compared as UTF-8 bytes (S3's order). [`ListQuery`] is the
//! store-level form of ListObjects: a prefix, an optional delimiter collapsing
//! keys into common prefixes, an exclusive `after` (StartAfter, the marker, or
//! a decoded continuation token: a key or common prefix already returned) and a
//! page size. A common prefix that sorts at or before `after` has been returned
//! already and is skipped with all its keys.

mod fs;
mod writer;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use fs::FsObjectStore;
pub use writer::ObjectWriter;

/// S3's smallest part size (all parts of a multipart upload but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Part numbers S3 accepts.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: i64,
    /// The bucket's notification configuration, opaque to the store (JSON
    /// written and read by the protocol layer).
    pub notifications: Option<String>,
}

/// What is stored with an object besides its bytes: returned verbatim on
/// GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Standard headers stored as sent (`cache-control`, `content-disposition`,
    /// `content-encoding`, `content-language`, `expires`), lower-case names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-<name>`), names without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
}

/// A stored object's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Hex MD5 of the bytes, or `<hex md5 of part md5s>-<parts>` for a
    /// multipart upload; without the quotes S3 puts around it.
    pub etag: String,
    pub modified_ms: i64,
    pub attrs: ObjectAttrs,
}

/// One page of a listing request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive lower bound: only entries sorting after it are returned.
    pub after: Option<String>,
    /// Contents plus common prefixes in the page (S3 caps this at 1000).
    pub max_keys: usize,
}

/// One entry of a listing, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    Object(ObjectMeta),
    CommonPrefix(String),
}

impl ListEntry {
    /// The key or prefix: what a continuation token resumes after.
    pub fn name(&self) -> &str {
        match self {
            ListEntry::Object(o) => &o.key,
            ListEntry::CommonPrefix(p) => p,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<ListEntry>,
    /// More entries follow the last one returned.
    pub truncated: bool,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub attrs: ObjectAttrs,
    pub created_ms: i64,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    /// Hex MD5 of the part, unquoted.
    pub etag: String,
    pub modified_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("The specified bucket does not exist: {0}")]
    NoSuchBucket(String),
    #[error("bucket {0} already exists")]
    BucketExists(String),
    #[error("The bucket you tried to delete is not empty: {0}")]
    BucketNotEmpty(String),
    #[error("The specified key does not exist: {0}")]
    NoSuchKey(String),
    #[error("The specified upload does not exist: {0}")]
    NoSuchUpload(String),
    #[error("One or more of the specified parts could not be found: part {0}")]
    InvalidPart(u32),
    #[error("The list of parts was not in ascending order.")]
    InvalidPartOrder,
    #[error("Part {0} is smaller than the minimum allowed size")]
    EntityTooSmall(u32),
    #[error("invalid part number {0} (1 to 10000)")]
    InvalidPartNumber(u32),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("object database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored object record is corrupt: {0}")]
    Corrupt(String),
    #[error("object storage task failed: {0}")]
    Task(String),
}

impl ObjectError {
    /// This error's row of the error table (S3 answers with its `s3` column).
    pub fn code(&self) -> nimbus_core::ErrorCode {
        use nimbus_core::ErrorCode;
        match self {
            ObjectError::NoSuchBucket(_) => ErrorCode::NoSuchBucket,
            ObjectError::BucketExists(_) => ErrorCode::BucketAlreadyOwnedByYou,
            ObjectError::BucketNotEmpty(_) => ErrorCode::BucketNotEmpty,
            ObjectError::NoSuchKey(_) => ErrorCode::NoSuchKey,
            ObjectError::NoSuchUpload(_) => ErrorCode::NoSuchUpload,
            ObjectError::InvalidPart(_) => ErrorCode::InvalidPart,
            ObjectError::InvalidPartOrder => ErrorCode::InvalidPartOrder,
            ObjectError::EntityTooSmall(_) => ErrorCode::EntityTooSmall,
            ObjectError::InvalidPartNumber(_) => ErrorCode::InvalidParameter,
            _ => ErrorCode::Internal,
        }
    }
}

impl ObjectError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ObjectError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The object store. Bucket names and keys arrive validated by the protocol
/// layer (S3 naming rules, key length).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// [`ObjectError::BucketExists`] when it exists.
    async fn create_bucket(&self, name: &str) -> Result<BucketInfo, ObjectError>;
    /// Only an empty bucket; its multipart uploads are aborted with it.
    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError>;
    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, ObjectError>;
    /// All buckets by name.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError>;
    async fn set_notifications(
        &self,
        bucket: &str,
        config: Option<String>,
    ) -> Result<(), ObjectError>;

    /// A writer staging new data (for [`ObjectStore::put`] and
    /// [`ObjectStore::put_part`]).
    async fn writer(&self) -> Result<ObjectWriter, ObjectError>;
    /// Commits staged data as `bucket/key`, replacing any object there.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: ObjectWriter,
        attrs: ObjectAttrs,
    ) -> Result<ObjectMeta, ObjectError>;
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError>;
    /// The object and its bytes, opened: later overwrites don't affect the file.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectMeta, std::fs::File), ObjectError>;
    /// The removed object, if there was one.
    async fn delete(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, ObjectError>;
    /// Copies bytes and, unless `attrs` replaces them, attributes.
    async fn copy(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        attrs: Option<ObjectAttrs>,
    ) -> Result<ObjectMeta, ObjectError>;
    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, ObjectError>;

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
    ) -> Result<UploadInfo, ObjectError>;
    async fn upload(&self, id: &str) -> Result<UploadInfo, ObjectError>;
    /// Stores (or replaces) part `number` of an upload.
    async fn put_part(
        &self,
        id: &str,
        number: u32,
        data: ObjectWriter,
    ) -> Result<PartInfo, ObjectError>;
    async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>, ObjectError>;
    /// Assembles the listed `(part number, etag)`s, ascending, into the object.
    async fn complete_upload(
        &self,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<ObjectMeta, ObjectError>;
    async fn abort_upload(&self, id: &str) -> Result<(), ObjectError>;
}

/// The ETag of a multipart object: MD5 of the parts' binary MD5s, `-<count>`.
pub fn multipart_etag(part_etags: &[&str]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for e in part_etags {
        h.update(hex::decode(e).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(h.finalize()), part_etags.len())
}

/// Where a listing entry for `key` goes: itself, or the common prefix that
/// swallows it (`prefix` + the rest up to and including the delimiter).
pub fn group_key<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_md5_of_binary_md5s() {
        // md5("a") and md5("b"): the ETag of a two-part upload of "a" and "b".
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        let etag = multipart_etag(&[a, b]);
        assert!(etag.ends_with("-2"));
        use md5::{Digest, Md5};
        let mut bin = hex::decode(a).unwrap();
        bin.extend(hex::decode(b).unwrap());
        assert_eq!(etag, format!("{}-2", hex::encode(Md5::digest(&bin))));
    }

    #[test]
    fn grouping_by_delimiter() {
        assert_eq!(group_key("a/b/c", "", Some("/")), Some("a/"));
        assert_eq!(group_key("a/b/c", "a/", Some("/")), Some("a/b/"));
        assert_eq!(group_key("a/b", "a/b", Some("/")), None);
        assert_eq!(group_key("abc", "", None), None);
        assert_eq!(group_key("a--b", "", Some("--")), Some("a--"));
    }
}
