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
//! # Bodies are streams
//!
//! Bodies cross the trait as streams ([`PutBody`] in, [`ObjectRead`] out), never
//! as local files or paths, so a backend keeping data elsewhere streams it
//! both ways and a 5 GiB object is never held in memory. The backend computes
//! the MD5 (the ETag) and the size while the body streams in, and checks the
//! length and `Content-MD5` the sender declared on the way (one hash, not one
//! in the protocol layer and another in the store). A read takes its byte
//! range, so a backend fetches only those bytes, and the range is resolved
//! against the very version whose description it returns.
//!
//! # Never half-written
//!
//! [`FsObjectStore`] stages a body first: it streams into a temp file while
//! its MD5 and size are computed. Committing fsyncs the file, renames it to
//! its final name (a fresh random blob id, never an existing
//! file), fsyncs the directory, and only then points the key at the blob in one
//! SQLite transaction. A crash before the transaction leaves an unreferenced
//! blob, which [`FsObjectStore::open`] removes; a reader therefore sees either
//! the old object or the new one, never a mix. Blobs are immutable once named,
//! and an overwritten or deleted object's blob is unlinked after the commit
//! (readers that already opened it keep reading it).
//!
//! # Notifications commit with the object
//!
//! A write that triggers bucket notifications is given them
//! ([`Notification`]s, matched by the protocol layer before the write) and
//! stores them in an outbox in the very transaction that commits the
//! object's row: an acknowledged write always has its notifications stored,
//! a refused one (bad digest, short body, missing bucket) never does, and a
//! crash can only lose both. A relay then claims them
//! ([`ObjectStore::claim_notifications`]), delivers them and removes them
//! ([`ObjectStore::remove_notifications`]). A claim is a lease, not a
//! removal: while it runs no other claim gets the entry, and if the relay
//! dies before removing it the entry is claimed again once the lease ends.
//! Delivery is therefore at least once, and the entry's id, chosen by the
//! writer and kept across claims, is what makes a second delivery
//! recognisable.
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
use std::ops::Range;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::body::{ByteStream, once};

pub use fs::FsObjectStore;

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

/// A notification an object write triggers, stored with the write (see
/// the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Unique and stable (a UUID the writer makes): the event keeps it across
    /// redeliveries. A write given an id already in the outbox fails.
    pub id: String,
    /// What to deliver and to whom, opaque to the store (JSON the protocol
    /// layer writes and the relay reads), returned verbatim.
    pub detail: String,
}

impl Notification {
    pub fn new(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            detail: detail.into(),
        }
    }
}

/// The object a notified write created, as it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub size: u64,
    /// As [`ObjectMeta::etag`].
    pub etag: String,
}

/// A stored notification, claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotification {
    /// The writer's [`Notification::id`].
    pub id: String,
    pub bucket: String,
    pub key: String,
    /// What the write created; `None` for a removal.
    pub object: Option<CreatedObject>,
    /// When the write committed (ms since the epoch, the store's clock).
    pub committed_ms: i64,
    /// The writer's [`Notification::detail`].
    pub detail: String,
    /// Claims so far, this one included (more than 1: delivered before,
    /// perhaps, by a relay that did not remove it).
    pub claims: u32,
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

/// One byte range of an object (HTTP `Range: bytes=…`; S3 serves one range
/// per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-` (to the end) or `bytes=first-last` (inclusive).
    Int { first: u64, last: Option<u64> },
    /// `bytes=-length`: the last `length` bytes.
    Suffix { length: u64 },
}

impl ByteRange {
    /// The bytes the range selects from an object of `size` bytes, or `None`
    /// when it cannot be satisfied (RFC 9110 §14.1.2: a first byte past the
    /// end, an empty suffix).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::Int { first, .. } if first >= size => None,
            ByteRange::Int { first, last: None } => Some(first..size),
            ByteRange::Int {
                first,
                last: Some(last),
            } => {
                let last = last.min(size - 1);
                (first <= last).then(|| first..last + 1)
            }
            ByteRange::Suffix { length: 0 } => None,
            ByteRange::Suffix { length } => Some(size - length.min(size)..size),
        }
    }
}

/// An opened object: its description and the bytes asked for, read from the
/// one version described (a later overwrite does not change them).
pub struct ObjectRead {
    pub meta: ObjectMeta,
    /// The bytes `body` holds: the whole object when no range was asked for,
    /// `None` when the range asked for cannot be satisfied (the body is then
    /// empty; the caller checks its preconditions before answering 416, as S3
    /// does).
    pub range: Option<Range<u64>>,
    pub body: ByteStream,
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRead")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A body to store, and what its sender declared about it. The store counts
/// and hashes it while it streams in; a body that fails a declared check is
/// refused and nothing of it is stored.
pub struct PutBody {
    pub stream: ByteStream,
    /// The length the sender declared ([`ObjectError::IncompleteBody`] when
    /// the body ends at another one).
    pub len: Option<u64>,
    /// The MD5 the sender declared (`Content-MD5`; [`ObjectError::BadDigest`]
    /// when the body hashes otherwise).
    pub md5: Option<[u8; 16]>,
}

impl PutBody {
    /// A body of unknown length, with no declared digest.
    pub fn new(stream: ByteStream) -> Self {
        Self {
            stream,
            len: None,
            md5: None,
        }
    }

    /// A body already in memory, its length declared.
    pub fn bytes(data: impl Into<bytes::Bytes>) -> Self {
        let data: bytes::Bytes = data.into();
        Self {
            len: Some(data.len() as u64),
            stream: once(data),
            md5: None,
        }
    }
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
    /// The body stream failed (the client went away, a chunk signature did
    /// not verify, …); nothing was stored. The stream's own error is inside,
    /// untouched.
    #[error("the body could not be read: {0}")]
    Body(std::io::Error),
    #[error("The body was {received} bytes; {expected} were declared")]
    IncompleteBody { expected: u64, received: u64 },
    #[error("The Content-MD5 you specified did not match what we received.")]
    BadDigest,
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The backend failed (its database, its network, …).
    #[error("object store backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("stored object record is corrupt: {0}")]
    Corrupt(String),
    #[error("object storage task failed: {0}")]
    Task(String),
}

impl ObjectError {
    /// Wraps a backend's own error.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ObjectError::Backend(e.into())
    }

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
            ObjectError::BadDigest => ErrorCode::BadDigest,
            _ => ErrorCode::Internal,
        }
    }

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

    /// Streams `body` in and stores it as `bucket/key`, replacing any object
    /// there once it is whole (readers see the old object or the new one,
    /// never a mix). `notifications` are stored with the object, in its
    /// transaction (none when the write is refused).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: PutBody,
        attrs: ObjectAttrs,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError>;
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectError>;
    /// The object and its bytes (all of them, or `range`), as one version:
    /// later overwrites don't change what the stream yields.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectRead, ObjectError>;
    /// The removed object, if there was one; `notifications` are stored in
    /// the transaction that removes it, and only if there was one.
    async fn delete(
        &self,
        bucket: &str,
        key: &str,
        notifications: &[Notification],
    ) -> Result<Option<ObjectMeta>, ObjectError>;
    /// Copies bytes and, unless `attrs` replaces them, attributes;
    /// `notifications` are stored with the copy.
    async fn copy(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        attrs: Option<ObjectAttrs>,
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError>;
    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, ObjectError>;

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
    ) -> Result<UploadInfo, ObjectError>;
    async fn upload(&self, id: &str) -> Result<UploadInfo, ObjectError>;
    /// Streams `body` in as (or in place of) part `number` of an upload.
    async fn put_part(&self, id: &str, number: u32, body: PutBody)
    -> Result<PartInfo, ObjectError>;
    async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>, ObjectError>;
    /// Assembles the listed `(part number, etag)`s, ascending, into the
    /// object; `notifications` are stored with it.
    async fn complete_upload(
        &self,
        id: &str,
        parts: &[(u32, String)],
        notifications: &[Notification],
    ) -> Result<ObjectMeta, ObjectError>;
    async fn abort_upload(&self, id: &str) -> Result<(), ObjectError>;

    /// Claims up to `max` stored notifications that no lease holds, oldest
    /// first, each leased for `lease`: no other claim returns it until the
    /// lease ends, then any may (its holder did not remove it in time).
    async fn claim_notifications(
        &self,
        max: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<PendingNotification>, ObjectError>;
    /// Removes delivered notifications (ids already gone are ignored).
    async fn remove_notifications(&self, ids: &[String]) -> Result<(), ObjectError>;
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
    fn ranges_resolve_as_rfc_9110_says() {
        let int = |first, last| ByteRange::Int { first, last };
        let suffix = |length| ByteRange::Suffix { length };
        assert_eq!(int(0, None).resolve(10), Some(0..10));
        assert_eq!(int(3, Some(5)).resolve(10), Some(3..6));
        assert_eq!(int(3, Some(50)).resolve(10), Some(3..10), "clamped");
        assert_eq!(int(10, None).resolve(10), None, "starts past the end");
        assert_eq!(int(0, Some(0)).resolve(0), None, "nothing to select");
        assert_eq!(suffix(4).resolve(10), Some(6..10));
        assert_eq!(suffix(40).resolve(10), Some(0..10));
        assert_eq!(suffix(0).resolve(10), None);
        assert_eq!(suffix(5).resolve(0), Some(0..0), "as s3s's Range::check");
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
