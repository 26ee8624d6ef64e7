//! `ObjectStore`: buckets, objects streamed in and out (ranges, declared
//! lengths and digests, failed bodies), copies, listings and multipart
//! uploads, and the notifications outbox (written with the object or not at
//! all, claimed under leases). The random-sequence model test is
//! `tests/objects.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use nimbus_store::body::collect;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    ByteRange, CreatedObject, FsObjectStore, ListEntry, ListQuery, Notification, ObjectAttrs,
    ObjectError, ObjectStore, PendingNotification, PgObjectStore, PutBody,
};

use crate::helpers::fresh_pg;

/// Parts but the last must be at least this long (S3's 5 MiB, lowered so the
/// suite stays fast; every backend's opener sets the same).
const MIN_PART: u64 = 4;

async fn open_fs() -> (Arc<dyn ObjectStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::open(&dir.path().join("objects.db"), &dir.path().join("objects"))
        .unwrap()
        .with_min_part_size(MIN_PART);
    (Arc::new(store), dir)
}

async fn open_pg() -> (Arc<dyn ObjectStore>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let store = PgObjectStore::open(&pg)
        .await
        .unwrap()
        .with_min_part_size(MIN_PART);
    (Arc::new(store), db)
}

conformance!([fs = open_fs(), postgres = open_pg()](
    buckets_are_created_once_and_deleted_empty,
    put_then_read_back_with_attributes,
    ranges_select_bytes,
    a_failed_body_stores_nothing,
    declared_length_and_digest_are_checked,
    a_reader_keeps_the_version_it_opened,
    copy_keeps_or_replaces_attributes,
    listing_groups_and_pages,
    multipart_assembles_parts_in_order,
    ranges_span_the_parts_of_a_multipart_object,
    a_large_body_streams_through_in_pieces,
    notifications_commit_with_the_write,
    a_refused_write_stores_no_notification,
    a_removal_notifies_only_when_something_was_removed,
    claims_are_exclusive_while_leased,
    concurrent_claims_never_share_an_entry,
    an_unremoved_claim_returns_after_its_lease,
    removed_notifications_are_not_claimed_again,
));

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

async fn put(store: &dyn ObjectStore, bucket: &str, key: &str, data: &[u8]) {
    store
        .put(
            bucket,
            key,
            PutBody::bytes(data.to_vec()),
            ObjectAttrs::default(),
            &[],
        )
        .await
        .unwrap();
}

async fn read(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectError> {
    let read = store.open(bucket, key, None).await?;
    Ok(collect(read.body, u64::MAX).await.unwrap())
}

/// A body that yields `chunks`, then fails.
fn failing(chunks: Vec<&'static [u8]>) -> PutBody {
    let items = chunks
        .into_iter()
        .map(|c| Ok(Bytes::from_static(c)))
        .chain([Err(std::io::Error::other("client went away"))]);
    PutBody::new(Box::pin(futures::stream::iter(items)))
}

async fn buckets_are_created_once_and_deleted_empty(store: Arc<dyn ObjectStore>) {
    assert!(store.list_buckets().await.unwrap().is_empty());
    store.create_bucket("b").await.unwrap();
    store.create_bucket("a").await.unwrap();
    let again = store.create_bucket("a").await;
    assert!(
        matches!(again, Err(ObjectError::BucketExists(_))),
        "{again:?}"
    );
    let names: Vec<String> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    store
        .set_notifications("a", Some("{}".into()))
        .await
        .unwrap();
    let a = store.bucket("a").await.unwrap().unwrap();
    assert_eq!(a.notifications.as_deref(), Some("{}"));
    put(&*store, "a", "k", b"x").await;
    let busy = store.delete_bucket("a").await;
    assert!(
        matches!(busy, Err(ObjectError::BucketNotEmpty(_))),
        "{busy:?}"
    );
    let removed = store.delete("a", "k", &[]).await.unwrap().unwrap();
    assert_eq!(removed.size, 1);
    assert!(store.delete("a", "k", &[]).await.unwrap().is_none());
    store.delete_bucket("a").await.unwrap();
    assert!(store.bucket("a").await.unwrap().is_none());
    let gone = store.delete_bucket("a").await;
    assert!(
        matches!(gone, Err(ObjectError::NoSuchBucket(_))),
        "{gone:?}"
    );
    let nowhere = store
        .put(
            "a",
            "k",
            PutBody::bytes(&b"x"[..]),
            ObjectAttrs::default(),
            &[],
        )
        .await;
    assert!(
        matches!(nowhere, Err(ObjectError::NoSuchBucket(_))),
        "{nowhere:?}"
    );
}

async fn put_then_read_back_with_attributes(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let attrs = ObjectAttrs {
        content_type: Some("text/plain".into()),
        headers: [("cache-control".to_string(), "no-cache".to_string())].into(),
        user: [("colour".to_string(), "blue".to_string())].into(),
    };
    // Several chunks, no declared length.
    let chunks: Vec<std::io::Result<Bytes>> = vec![Ok("hello, ".into()), Ok("world".into())];
    let body = PutBody::new(Box::pin(futures::stream::iter(chunks)));
    let meta = store
        .put("b", "dir/k", body, attrs.clone(), &[])
        .await
        .unwrap();
    assert_eq!(meta.size, 12);
    assert_eq!(meta.etag, md5_hex(b"hello, world"));
    assert_eq!(store.head("b", "dir/k").await.unwrap(), meta);
    let opened = store.open("b", "dir/k", None).await.unwrap();
    assert_eq!(opened.meta, meta);
    assert_eq!(opened.meta.attrs, attrs);
    assert_eq!(opened.range, Some(0..12));
    assert_eq!(collect(opened.body, 100).await.unwrap(), b"hello, world");
    // Empty objects are objects.
    put(&*store, "b", "empty", b"").await;
    assert_eq!(read(&*store, "b", "empty").await.unwrap(), b"");
    let missing = store.head("b", "nope").await;
    assert!(
        matches!(missing, Err(ObjectError::NoSuchKey(_))),
        "{missing:?}"
    );
    let missing = store.open("b", "nope", None).await.map(|r| r.meta);
    assert!(
        matches!(missing, Err(ObjectError::NoSuchKey(_))),
        "{missing:?}"
    );
    let no_bucket = store.open("nope", "k", None).await.map(|r| r.meta);
    assert!(
        matches!(no_bucket, Err(ObjectError::NoSuchBucket(_))),
        "{no_bucket:?}"
    );
}

async fn ranges_select_bytes(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    put(&*store, "b", "k", b"0123456789").await;
    let cases = [
        (
            ByteRange::Int {
                first: 2,
                last: Some(4),
            },
            Some(2..5),
            &b"234"[..],
        ),
        (
            ByteRange::Int {
                first: 7,
                last: None,
            },
            Some(7..10),
            b"789",
        ),
        (
            ByteRange::Int {
                first: 8,
                last: Some(99),
            },
            Some(8..10),
            b"89",
        ),
        (ByteRange::Suffix { length: 3 }, Some(7..10), b"789"),
        (
            ByteRange::Int {
                first: 10,
                last: None,
            },
            None,
            b"",
        ),
        (ByteRange::Suffix { length: 0 }, None, b""),
    ];
    for (range, want, bytes) in cases {
        let opened = store.open("b", "k", Some(range)).await.unwrap();
        assert_eq!(opened.meta.size, 10, "the meta is the whole object's");
        assert_eq!(opened.range, want, "{range:?}");
        assert_eq!(collect(opened.body, 100).await.unwrap(), bytes, "{range:?}");
    }
}

async fn a_failed_body_stores_nothing(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    put(&*store, "b", "k", b"old").await;
    let got = store
        .put(
            "b",
            "k",
            failing(vec![b"new ", b"bytes"]),
            ObjectAttrs::default(),
            &[],
        )
        .await;
    let Err(ObjectError::Body(e)) = got else {
        panic!("expected a body error, got {got:?}");
    };
    assert_eq!(e.to_string(), "client went away", "the stream's own error");
    assert_eq!(read(&*store, "b", "k").await.unwrap(), b"old");
    let fresh = store
        .put("b", "new", failing(vec![b"x"]), ObjectAttrs::default(), &[])
        .await;
    assert!(matches!(fresh, Err(ObjectError::Body(_))), "{fresh:?}");
    let missing = store.head("b", "new").await;
    assert!(
        matches!(missing, Err(ObjectError::NoSuchKey(_))),
        "{missing:?}"
    );
}

async fn declared_length_and_digest_are_checked(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    for (declared, data) in [(5u64, &b"abc"[..]), (2, b"abc")] {
        let mut body = PutBody::bytes(data);
        body.len = Some(declared);
        let got = store.put("b", "k", body, ObjectAttrs::default(), &[]).await;
        assert!(
            matches!(
                got,
                Err(ObjectError::IncompleteBody { expected, .. }) if expected == declared
            ),
            "{got:?}"
        );
    }
    let mut body = PutBody::bytes(&b"abc"[..]);
    body.md5 = Some(Md5::digest(b"abd").into());
    let got = store.put("b", "k", body, ObjectAttrs::default(), &[]).await;
    assert!(matches!(got, Err(ObjectError::BadDigest)), "{got:?}");
    let missing = store.head("b", "k").await;
    assert!(
        matches!(missing, Err(ObjectError::NoSuchKey(_))),
        "{missing:?}"
    );
    let mut body = PutBody::bytes(&b"abc"[..]);
    body.md5 = Some(Md5::digest(b"abc").into());
    let meta = store
        .put("b", "k", body, ObjectAttrs::default(), &[])
        .await
        .unwrap();
    assert_eq!(meta.etag, md5_hex(b"abc"));
}

async fn a_reader_keeps_the_version_it_opened(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    put(&*store, "b", "k", b"first version").await;
    let opened = store.open("b", "k", None).await.unwrap();
    put(&*store, "b", "k", b"second").await;
    store.delete("b", "k", &[]).await.unwrap();
    assert_eq!(opened.meta.etag, md5_hex(b"first version"));
    assert_eq!(collect(opened.body, 100).await.unwrap(), b"first version");
}

async fn copy_keeps_or_replaces_attributes(store: Arc<dyn ObjectStore>) {
    store.create_bucket("a").await.unwrap();
    store.create_bucket("b").await.unwrap();
    let attrs = ObjectAttrs {
        content_type: Some("image/png".into()),
        ..ObjectAttrs::default()
    };
    store
        .put("a", "src", PutBody::bytes(&b"png"[..]), attrs.clone(), &[])
        .await
        .unwrap();
    let kept = store
        .copy(("a", "src"), ("b", "dst"), None, &[])
        .await
        .unwrap();
    assert_eq!(kept.key, "dst");
    assert_eq!(kept.etag, md5_hex(b"png"));
    assert_eq!(kept.attrs, attrs);
    assert_eq!(read(&*store, "b", "dst").await.unwrap(), b"png");
    let replaced = store
        .copy(
            ("a", "src"),
            ("a", "src"),
            Some(ObjectAttrs::default()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(replaced.attrs, ObjectAttrs::default());
    assert_eq!(read(&*store, "a", "src").await.unwrap(), b"png");
    let missing = store.copy(("a", "nope"), ("b", "x"), None, &[]).await;
    assert!(
        matches!(missing, Err(ObjectError::NoSuchKey(_))),
        "{missing:?}"
    );
}

async fn listing_groups_and_pages(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    for k in ["a/1", "a/2", "b", "c/x/y", "d"] {
        put(&*store, "b", k, b"x").await;
    }
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let query = ListQuery {
            prefix: String::new(),
            delimiter: Some("/".into()),
            after: after.clone(),
            max_keys: 2,
        };
        let page = store.list("b", &query).await.unwrap();
        seen.extend(page.entries.iter().map(|e| match e {
            ListEntry::Object(o) => format!("K:{}", o.key),
            ListEntry::CommonPrefix(p) => format!("P:{p}"),
        }));
        if !page.truncated {
            break;
        }
        after = page.entries.last().map(|e| e.name().to_string());
    }
    assert_eq!(seen, ["P:a/", "K:b", "P:c/", "K:d"]);
    let query = ListQuery {
        prefix: "a/".into(),
        max_keys: 10,
        ..ListQuery::default()
    };
    let page = store.list("b", &query).await.unwrap();
    let keys: Vec<&str> = page.entries.iter().map(ListEntry::name).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert!(!page.truncated);
}

async fn multipart_assembles_parts_in_order(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let attrs = ObjectAttrs {
        content_type: Some("text/plain".into()),
        ..ObjectAttrs::default()
    };
    let upload = store.create_upload("b", "k", attrs.clone()).await.unwrap();
    assert_eq!(store.upload(&upload.id).await.unwrap(), upload);
    let parts: [&[u8]; 3] = [b"first-", b"second-", b"last"];
    let mut listed = Vec::new();
    // Out of order, and part 2 replaced once.
    for (number, data) in [
        (2u32, &b"wrong"[..]),
        (1, parts[0]),
        (3, parts[2]),
        (2, parts[1]),
    ] {
        let part = store
            .put_part(&upload.id, number, PutBody::bytes(data))
            .await
            .unwrap();
        assert_eq!(part.etag, md5_hex(data));
        if data != b"wrong" {
            listed.push((number, part.etag));
        }
    }
    listed.sort();
    let stored: Vec<(u32, u64)> = store
        .list_parts(&upload.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.number, p.size))
        .collect();
    assert_eq!(stored, [(1, 6), (2, 7), (3, 4)]);
    let bad = store
        .put_part(&upload.id, 10_001, PutBody::bytes(&b"x"[..]))
        .await;
    assert!(
        matches!(bad, Err(ObjectError::InvalidPartNumber(_))),
        "{bad:?}"
    );
    let reversed: Vec<(u32, String)> = listed.iter().rev().cloned().collect();
    let unordered = store.complete_upload(&upload.id, &reversed, &[]).await;
    assert!(
        matches!(unordered, Err(ObjectError::InvalidPartOrder)),
        "{unordered:?}"
    );
    let meta = store
        .complete_upload(&upload.id, &listed, &[])
        .await
        .unwrap();
    let etags: Vec<&str> = listed.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(meta.etag, nimbus_store::multipart_etag(&etags));
    assert_eq!(meta.attrs, attrs);
    assert_eq!(read(&*store, "b", "k").await.unwrap(), b"first-second-last");
    let ended = store.list_parts(&upload.id).await;
    assert!(
        matches!(ended, Err(ObjectError::NoSuchUpload(_))),
        "{ended:?}"
    );

    // A part below the minimum (not the last) refuses the completion; abort
    // ends the upload.
    let small = store
        .create_upload("b", "s", ObjectAttrs::default())
        .await
        .unwrap();
    let mut listed = Vec::new();
    for (number, data) in [(1u32, &b"abc"[..]), (2, b"defg")] {
        let part = store
            .put_part(&small.id, number, PutBody::bytes(data))
            .await
            .unwrap();
        listed.push((number, format!("\"{}\"", part.etag)));
    }
    let too_small = store.complete_upload(&small.id, &listed, &[]).await;
    assert!(
        matches!(too_small, Err(ObjectError::EntityTooSmall(1))),
        "{too_small:?}"
    );
    store.abort_upload(&small.id).await.unwrap();
    let gone = store.upload(&small.id).await;
    assert!(
        matches!(gone, Err(ObjectError::NoSuchUpload(_))),
        "{gone:?}"
    );
    assert!(matches!(
        store.head("b", "s").await,
        Err(ObjectError::NoSuchKey(_))
    ));
}

async fn ranges_span_the_parts_of_a_multipart_object(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let upload = store
        .create_upload("b", "k", ObjectAttrs::default())
        .await
        .unwrap();
    let mut listed = Vec::new();
    for (number, data) in [(1u32, &b"abcd"[..]), (2, b"efgh"), (3, b"ij")] {
        let part = store
            .put_part(&upload.id, number, PutBody::bytes(data))
            .await
            .unwrap();
        listed.push((number, part.etag));
    }
    store
        .complete_upload(&upload.id, &listed, &[])
        .await
        .unwrap();
    let int = |first, last| ByteRange::Int { first, last };
    let cases = [
        (int(2, Some(5)), &b"cdef"[..]),
        (int(4, Some(7)), b"efgh"),
        (int(3, None), b"defghij"),
        (ByteRange::Suffix { length: 3 }, b"hij"),
        (int(9, Some(20)), b"j"),
    ];
    for (range, want) in cases {
        let opened = store.open("b", "k", Some(range)).await.unwrap();
        assert_eq!(collect(opened.body, 100).await.unwrap(), want, "{range:?}");
    }
}

/// Size of the large body: more than any backend's unit of storage or
/// transfer, not a multiple of any of them.
const LARGE: u64 = 64 * 1024 * 1024 + 5;

/// The bytes `start..start + len` of a generated body in which no two
/// 8-byte words are alike (a misplaced piece changes its digest).
fn pattern(start: u64, len: usize) -> Vec<u8> {
    let skip = (start % 8) as usize;
    let words = (skip + len).div_ceil(8) as u64;
    let mut out = Vec::with_capacity(words as usize * 8);
    for w in start / 8..start / 8 + words {
        out.extend_from_slice(&w.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// The generated body of `len` bytes, made as it is read, in 256 KiB
/// pieces; memory is sampled as each is taken.
fn generated(len: u64, memory: Memory) -> PutBody {
    const PIECE: u64 = 256 * 1024;
    let pieces = (0..len).step_by(PIECE as usize).map(move |start| {
        memory.sample();
        Ok(Bytes::from(pattern(start, PIECE.min(len - start) as usize)))
    });
    PutBody {
        stream: Box::pin(futures::stream::iter(pieces)),
        len: Some(len),
        md5: None,
    }
}

/// The process's resident memory, sampled while a body goes through: how
/// far it rose above where it stood at the start (Linux; elsewhere nothing
/// is measured).
#[derive(Clone)]
struct Memory {
    start: Option<u64>,
    highest: Arc<std::sync::atomic::AtomicU64>,
}

impl Memory {
    fn resident() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    fn watch() -> Self {
        let start = Self::resident();
        Self {
            start,
            highest: Arc::new(start.unwrap_or(0).into()),
        }
    }

    fn sample(&self) {
        if let Some(now) = Self::resident() {
            self.highest
                .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn risen(&self) -> Option<u64> {
        let highest = self.highest.load(std::sync::atomic::Ordering::Relaxed);
        Some(highest.saturating_sub(self.start?))
    }
}

async fn a_large_body_streams_through_in_pieces(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let memory = Memory::watch();
    let meta = store
        .put(
            "b",
            "big",
            generated(LARGE, memory.clone()),
            ObjectAttrs::default(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(meta.size, LARGE);
    let mut body = store.open("b", "big", None).await.unwrap().body;
    let (mut pieces, mut largest, mut size) = (0, 0, 0);
    let mut md5 = Md5::new();
    while let Some(piece) = futures::StreamExt::next(&mut body).await {
        let piece = piece.unwrap();
        if size / (1 << 20) != (size + piece.len() as u64) / (1 << 20) {
            memory.sample();
        }
        pieces += 1;
        largest = largest.max(piece.len());
        size += piece.len() as u64;
        md5.update(&piece);
    }
    assert_eq!(size, LARGE);
    assert_eq!(
        hex::encode(md5.finalize()),
        meta.etag,
        "the bytes came back"
    );
    assert!(pieces > 8, "read as a stream, in {pieces} pieces");
    assert!(largest as u64 <= LARGE / 8, "a piece of {largest} bytes");
    // Holding the body would take all of it; a backend's own buffers (a
    // pool of connections, each with its chunk-sized buffers) stay well
    // below that.
    if let Some(risen) = memory.risen() {
        assert!(
            risen < LARGE * 3 / 4,
            "memory rose by {risen} bytes while a {LARGE}-byte body went through"
        );
    }
    // The last byte alone, and a range across a 1 MiB boundary.
    let mib = 1024 * 1024;
    for (range, start, len) in [
        (ByteRange::Suffix { length: 1 }, LARGE - 1, 1),
        (
            ByteRange::Int {
                first: mib - 3,
                last: Some(mib + 2),
            },
            mib - 3,
            6,
        ),
    ] {
        let opened = store.open("b", "big", Some(range)).await.unwrap();
        assert_eq!(opened.range, Some(start..start + len as u64));
        let got = collect(opened.body, 100).await.unwrap();
        assert_eq!(got, pattern(start, len), "{range:?}");
    }
}

/// A lease no case outlives.
const LONG_LEASE: Duration = Duration::from_secs(600);

fn notes(ids: &[&str]) -> Vec<Notification> {
    ids.iter()
        .map(|id| Notification::new(*id, format!(r#"{{"for":"{id}"}}"#)))
        .collect()
}

fn ids(claimed: &[PendingNotification]) -> Vec<&str> {
    claimed.iter().map(|n| n.id.as_str()).collect()
}

async fn notifications_commit_with_the_write(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let meta = store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"hello"[..]),
            ObjectAttrs::default(),
            &notes(&["put-1", "put-2"]),
        )
        .await
        .unwrap();
    store
        .copy(("b", "k"), ("b", "copy"), None, &notes(&["copy"]))
        .await
        .unwrap();
    let upload = store
        .create_upload("b", "multi", ObjectAttrs::default())
        .await
        .unwrap();
    let part = store
        .put_part(&upload.id, 1, PutBody::bytes(&b"part"[..]))
        .await
        .unwrap();
    let multi = store
        .complete_upload(&upload.id, &[(1, part.etag)], &notes(&["complete"]))
        .await
        .unwrap();

    let mut claimed = store.claim_notifications(10, LONG_LEASE).await.unwrap();
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&claimed), ["complete", "copy", "put-1", "put-2"]);
    let put = &claimed[2];
    assert_eq!((put.bucket.as_str(), put.key.as_str()), ("b", "k"));
    assert_eq!(put.detail, r#"{"for":"put-1"}"#, "returned verbatim");
    assert_eq!(
        put.object,
        Some(CreatedObject {
            size: 5,
            etag: meta.etag.clone()
        })
    );
    assert_eq!(put.committed_ms, meta.modified_ms);
    assert_eq!(put.claims, 1);
    assert_eq!(claimed[1].key, "copy");
    assert_eq!(claimed[1].object.as_ref().unwrap().etag, meta.etag);
    assert_eq!(claimed[0].key, "multi");
    assert_eq!(claimed[0].object.as_ref().unwrap().etag, multi.etag);
}

async fn a_refused_write_stores_no_notification(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let mut bad_digest = PutBody::bytes(&b"abc"[..]);
    bad_digest.md5 = Some(Md5::digest(b"abd").into());
    let mut short = PutBody::bytes(&b"abc"[..]);
    short.len = Some(5);
    let refused = [
        ("b", bad_digest),
        ("b", short),
        ("b", failing(vec![b"x"])),
        ("nope", PutBody::bytes(&b"abc"[..])),
    ];
    for (bucket, body) in refused {
        let got = store
            .put(bucket, "k", body, ObjectAttrs::default(), &notes(&["put"]))
            .await;
        assert!(got.is_err(), "{got:?}");
    }
    let copy = store
        .copy(("b", "missing"), ("b", "k"), None, &notes(&["copy"]))
        .await;
    assert!(matches!(copy, Err(ObjectError::NoSuchKey(_))), "{copy:?}");
    let upload = store
        .create_upload("b", "multi", ObjectAttrs::default())
        .await
        .unwrap();
    let complete = store
        .complete_upload(&upload.id, &[(1, md5_hex(b"x"))], &notes(&["complete"]))
        .await;
    assert!(
        matches!(complete, Err(ObjectError::InvalidPart(1))),
        "{complete:?}"
    );
    let claimed = store.claim_notifications(10, LONG_LEASE).await.unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
}

async fn a_removal_notifies_only_when_something_was_removed(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    put(&*store, "b", "k", b"x").await;
    let none = store.delete("b", "absent", &notes(&["absent"])).await;
    assert!(none.unwrap().is_none());
    let removed = store.delete("b", "k", &notes(&["removed"])).await;
    assert!(removed.unwrap().is_some());
    let claimed = store.claim_notifications(10, LONG_LEASE).await.unwrap();
    assert_eq!(ids(&claimed), ["removed"]);
    assert_eq!(claimed[0].key, "k");
    assert_eq!(claimed[0].object, None, "a removal created nothing");
}

async fn claims_are_exclusive_while_leased(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    for i in 0..5 {
        store
            .put(
                "b",
                &format!("k{i}"),
                PutBody::bytes(&b"x"[..]),
                ObjectAttrs::default(),
                &notes(&[&format!("n{i}")]),
            )
            .await
            .unwrap();
    }
    let first = store.claim_notifications(3, LONG_LEASE).await.unwrap();
    assert_eq!(ids(&first), ["n0", "n1", "n2"], "oldest first, at most max");
    let second = store.claim_notifications(10, LONG_LEASE).await.unwrap();
    assert_eq!(
        ids(&second),
        ["n3", "n4"],
        "the leased ones are not handed out"
    );
    assert!(
        store
            .claim_notifications(10, LONG_LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_claims_never_share_an_entry(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    let all: Vec<String> = (0..60).map(|i| format!("n{i:02}")).collect();
    for chunk in all.chunks(6) {
        let batch: Vec<Notification> = chunk
            .iter()
            .map(|id| Notification::new(id.clone(), "{}"))
            .collect();
        store
            .put(
                "b",
                &chunk[0],
                PutBody::bytes(&b"x"[..]),
                ObjectAttrs::default(),
                &batch,
            )
            .await
            .unwrap();
    }
    let relays = (0..6).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim_notifications(4, LONG_LEASE).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|n| n.id));
            }
        })
    });
    let mut seen = HashSet::new();
    for relay in relays.collect::<Vec<_>>() {
        for id in relay.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, all.into_iter().collect::<HashSet<_>>());
}

async fn an_unremoved_claim_returns_after_its_lease(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"x"[..]),
            ObjectAttrs::default(),
            &notes(&["n"]),
        )
        .await
        .unwrap();
    let lease = Duration::from_millis(300);
    let first = store.claim_notifications(10, lease).await.unwrap();
    assert_eq!((ids(&first), first[0].claims), (vec!["n"], 1));
    assert!(
        store
            .claim_notifications(10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = store.claim_notifications(10, lease).await.unwrap();
    assert_eq!(ids(&again), ["n"], "the same entry, its id kept");
    assert_eq!(again[0].claims, 2);
    assert_eq!(again[0].detail, first[0].detail);
}

async fn removed_notifications_are_not_claimed_again(store: Arc<dyn ObjectStore>) {
    store.create_bucket("b").await.unwrap();
    store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"x"[..]),
            ObjectAttrs::default(),
            &notes(&["a", "b"]),
        )
        .await
        .unwrap();
    let lease = Duration::from_millis(200);
    let claimed = store.claim_notifications(10, lease).await.unwrap();
    assert_eq!(ids(&claimed), ["a", "b"]);
    store
        .remove_notifications(&["a".to_string(), "unknown".to_string()])
        .await
        .unwrap();
    store.remove_notifications(&[]).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = store.claim_notifications(10, lease).await.unwrap();
    assert_eq!(ids(&again), ["b"], "only the one not removed returns");
    store
        .remove_notifications(&["b".to_string()])
        .await
        .unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert!(
        store
            .claim_notifications(10, lease)
            .await
            .unwrap()
            .is_empty()
    );
}
