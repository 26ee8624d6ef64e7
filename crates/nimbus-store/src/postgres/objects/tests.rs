//! What the conformance suite cannot see from the trait: how bodies are
//! kept in the database (chunked, shared, swept after their grace period)
//! and what happens when several nodes write at once.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::body::collect;
use crate::postgres::scratch::ScratchDatabase;

struct Fixture {
    store: PgObjectStore,
    pg: Pg,
    clock: nimbus_core::Clock,
    _db: ScratchDatabase,
}

/// A store on a fresh database with a manual clock and a bucket `b`.
async fn fixture() -> Fixture {
    let db = ScratchDatabase::create().await.unwrap();
    let pg = Pg::connect(&db.url).await.unwrap();
    let clock = nimbus_core::Clock::manual(chrono::Utc::now());
    let store = PgObjectStore::open(&pg)
        .await
        .unwrap()
        .with_clock(clock.clone())
        .with_min_part_size(4);
    store.create_bucket("b").await.unwrap();
    Fixture {
        store,
        pg,
        clock,
        _db: db,
    }
}

async fn count(pg: &Pg, sql: &str) -> i64 {
    let client = pg.client().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

const CHUNKS: &str = "SELECT count(*) FROM object_chunks";
const BLOBS: &str = "SELECT count(*) FROM object_blobs";
const REFS: &str = "SELECT coalesce(sum(refs), 0)::bigint FROM object_blobs";

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 16) as u8)
        .collect()
}

/// `data` arriving in pieces of 100 KiB, its length declared.
fn streamed(data: &[u8]) -> PutBody {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(100 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    PutBody {
        stream: Box::pin(futures::stream::iter(pieces)),
        len: Some(data.len() as u64),
        md5: None,
    }
}

async fn read(store: &PgObjectStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let opened = store.open("b", key, range).await.unwrap();
    collect(opened.body, u64::MAX).await.unwrap()
}

const MIB: usize = blobs::CHUNK;

#[tokio::test]
async fn replaced_bodies_stay_readable_until_their_grace_ends() {
    let f = fixture().await;
    let big = bytes(2 * MIB + MIB / 2, 1);
    f.store
        .put("b", "k", streamed(&big), ObjectAttrs::default(), &[])
        .await
        .unwrap();
    assert_eq!(count(&f.pg, CHUNKS).await, 3, "1 MiB rows");
    let reader = f.store.open("b", "k", None).await.unwrap();
    f.store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"x"[..]),
            ObjectAttrs::default(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.sweep().await.unwrap(),
        0,
        "still in its grace period"
    );
    assert_eq!(collect(reader.body, u64::MAX).await.unwrap(), big);

    f.clock
        .advance(Duration::from_millis(blobs::READ_GRACE_MS as u64 + 1));
    assert_eq!(f.store.sweep().await.unwrap(), 1);
    assert_eq!(count(&f.pg, CHUNKS).await, 1, "only the small body is left");
    f.store.delete("b", "k", &[]).await.unwrap();
    f.clock
        .advance(Duration::from_millis(blobs::READ_GRACE_MS as u64 + 1));
    assert_eq!(f.store.sweep().await.unwrap(), 1);
    assert_eq!(count(&f.pg, BLOBS).await, 0);
    assert_eq!(count(&f.pg, CHUNKS).await, 0);
}

#[tokio::test]
async fn a_refused_staged_body_leaves_no_rows() {
    let f = fixture().await;
    let big = bytes(3 * MIB, 2);
    // The stream fails after three chunks' worth.
    let pieces: Vec<std::io::Result<Bytes>> = big
        .chunks(100 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain([Err(std::io::Error::other("client went away"))])
        .collect();
    let got = f
        .store
        .put(
            "b",
            "k",
            PutBody::new(Box::pin(futures::stream::iter(pieces))),
            ObjectAttrs::default(),
            &[],
        )
        .await;
    assert!(matches!(got, Err(ObjectError::Body(_))), "{got:?}");
    // Shorter than declared.
    let mut short = streamed(&big);
    short.len = Some(5 * MIB as u64);
    let got = f
        .store
        .put("b", "k", short, ObjectAttrs::default(), &[])
        .await;
    assert!(
        matches!(got, Err(ObjectError::IncompleteBody { .. })),
        "{got:?}"
    );
    // Whole, but for a bucket that does not exist.
    let got = f
        .store
        .put("nope", "k", streamed(&big), ObjectAttrs::default(), &[])
        .await;
    assert!(matches!(got, Err(ObjectError::NoSuchBucket(_))), "{got:?}");
    assert_eq!(count(&f.pg, BLOBS).await, 0);
    assert_eq!(count(&f.pg, CHUNKS).await, 0);
}

#[tokio::test]
async fn a_slow_upload_outlives_the_staging_allowance() {
    let f = fixture().await;
    let store = Arc::new(f.store);
    let data = bytes(5 * MIB, 6);
    let pieces: Vec<Bytes> = data.chunks(MIB).map(Bytes::copy_from_slice).collect();
    // A third of the allowance passes before each piece arrives, and every
    // node sweeps meanwhile: the body is older than the allowance by the end.
    let (sweeper, clock) = (store.clone(), f.clock.clone());
    let stream = futures::stream::unfold(pieces.into_iter(), move |mut rest| {
        let (sweeper, clock) = (sweeper.clone(), clock.clone());
        async move {
            let piece = rest.next()?;
            clock.advance(Duration::from_millis(
                blobs::STAGING_ALLOWANCE_MS as u64 / 3,
            ));
            sweeper.sweep().await.unwrap();
            Some((Ok(piece), rest))
        }
    });
    store
        .put(
            "b",
            "slow",
            PutBody::new(Box::pin(stream)),
            ObjectAttrs::default(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(read(&store, "slow", None).await, data);
}

#[tokio::test]
async fn copies_and_completions_move_no_bytes() {
    let f = fixture().await;
    let data = bytes(2 * MIB + 1, 3);
    f.store
        .put("b", "src", streamed(&data), ObjectAttrs::default(), &[])
        .await
        .unwrap();
    let copy = f
        .store
        .copy(("b", "src"), ("b", "dst"), None, &[])
        .await
        .unwrap();
    assert_eq!(copy.etag, hex::encode(Md5::digest(&data)));
    assert_eq!(count(&f.pg, CHUNKS).await, 3, "the copy shares the chunks");
    assert_eq!(count(&f.pg, REFS).await, 2);
    f.store.delete("b", "src", &[]).await.unwrap();
    assert_eq!(read(&f.store, "dst", None).await, data);

    let upload = f
        .store
        .create_upload("b", "multi", ObjectAttrs::default())
        .await
        .unwrap();
    let first = bytes(MIB + MIB / 2, 4);
    let mut listed = Vec::new();
    for (number, part) in [(1, &first[..]), (2, &b"tail"[..])] {
        let p = f
            .store
            .put_part(&upload.id, number, streamed(part))
            .await
            .unwrap();
        listed.push((number, p.etag));
    }
    let chunks = count(&f.pg, CHUNKS).await;
    let meta = f
        .store
        .complete_upload(&upload.id, &listed, &[])
        .await
        .unwrap();
    assert_eq!(
        count(&f.pg, CHUNKS).await,
        chunks,
        "the parts' chunks are the object's"
    );
    let mut whole = first.clone();
    whole.extend_from_slice(b"tail");
    assert_eq!(meta.size, whole.len() as u64);
    assert_eq!(read(&f.store, "multi", None).await, whole);
    // A range across the two parts and one inside the second chunk of the first.
    let across = ByteRange::Int {
        first: first.len() as u64 - 2,
        last: Some(first.len() as u64 + 1),
    };
    assert_eq!(
        read(&f.store, "multi", Some(across)).await,
        &whole[first.len() - 2..first.len() + 2]
    );
    let inner = ByteRange::Int {
        first: MIB as u64 + 10,
        last: Some(MIB as u64 + 19),
    };
    assert_eq!(
        read(&f.store, "multi", Some(inner)).await,
        &whole[MIB + 10..MIB + 20]
    );
    // A copy of a multipart object gets the plain MD5 of its bytes.
    let copy = f
        .store
        .copy(("b", "multi"), ("b", "multi-copy"), None, &[])
        .await
        .unwrap();
    assert_eq!(copy.etag, hex::encode(Md5::digest(&whole)));
}

#[tokio::test]
async fn two_nodes_on_one_database_see_each_others_objects() {
    let f = fixture().await;
    let other_pool = Pg::connect(&f._db.url).await.unwrap();
    let other = PgObjectStore::open(&other_pool).await.unwrap();
    f.store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"from a"[..]),
            ObjectAttrs::default(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(read(&other, "k", None).await, b"from a");
    let upload = other
        .create_upload("b", "m", ObjectAttrs::default())
        .await
        .unwrap();
    let part = f
        .store
        .put_part(&upload.id, 1, PutBody::bytes(&b"part"[..]))
        .await
        .unwrap();
    other
        .complete_upload(&upload.id, &[(1, part.etag)], &[])
        .await
        .unwrap();
    assert_eq!(read(&f.store, "m", None).await, b"part");
    other.delete("b", "k", &[]).await.unwrap();
    let gone = f.store.head("b", "k").await;
    assert!(matches!(gone, Err(ObjectError::NoSuchKey(_))), "{gone:?}");
}

#[tokio::test]
async fn racing_writers_of_one_key_leave_one_reference() {
    let f = fixture().await;
    let store = Arc::new(f.store);
    let writers: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(
                        "b",
                        "k",
                        PutBody::bytes(vec![i; 10]),
                        ObjectAttrs::default(),
                        &[],
                    )
                    .await
                    .unwrap();
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        count(&f.pg, REFS).await,
        1,
        "every replaced body was released"
    );
    let released = "SELECT count(*) FROM object_blobs WHERE refs = 0 AND expires_ms IS NOT NULL";
    assert_eq!(count(&f.pg, released).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_swapping_two_objects_all_land() {
    let f = fixture().await;
    for (key, data) in [("x", &b"ex"[..]), ("y", b"why")] {
        f.store
            .put("b", key, PutBody::bytes(data), ObjectAttrs::default(), &[])
            .await
            .unwrap();
    }
    let store = Arc::new(f.store);
    for _ in 0..4 {
        let (a, b) = (store.clone(), store.clone());
        let (there, back) = tokio::join!(
            tokio::spawn(async move { a.copy(("b", "x"), ("b", "y"), None, &[]).await }),
            tokio::spawn(async move { b.copy(("b", "y"), ("b", "x"), None, &[]).await }),
        );
        there.unwrap().unwrap();
        back.unwrap().unwrap();
    }
    let referred = "SELECT count(*) FROM objects, unnest(blobs)";
    assert_eq!(count(&f.pg, REFS).await, count(&f.pg, referred).await);
}

#[tokio::test]
async fn deleting_a_bucket_releases_its_uploads_parts() {
    let f = fixture().await;
    let upload = f
        .store
        .create_upload("b", "m", ObjectAttrs::default())
        .await
        .unwrap();
    f.store
        .put_part(&upload.id, 1, PutBody::bytes(&b"part"[..]))
        .await
        .unwrap();
    f.store.delete_bucket("b").await.unwrap();
    assert_eq!(count(&f.pg, REFS).await, 0);
    let gone = f.store.upload(&upload.id).await;
    assert!(
        matches!(gone, Err(ObjectError::NoSuchUpload(_))),
        "{gone:?}"
    );
}

/// The bench rows "S3 put 1 MB" and "S3 get 1 MB", against PostgreSQL:
/// `cargo test -p nimbus-store --lib one_megabyte -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn one_megabyte_put_and_get_latency() {
    let f = fixture().await;
    let data = Bytes::from(bytes(1_000_000, 5));
    let rounds = 50;
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let key = format!("k{}", i % 5);
        let started = Instant::now();
        f.store
            .put(
                "b",
                &key,
                PutBody::bytes(data.clone()),
                ObjectAttrs::default(),
                &[],
            )
            .await
            .unwrap();
        puts.push(started.elapsed());
        let started = Instant::now();
        let got = read(&f.store, &key, None).await;
        gets.push(started.elapsed());
        assert_eq!(got.len(), data.len());
    }
    for (name, mut times) in [("put", puts), ("get", gets)] {
        times.sort();
        let mean = times.iter().sum::<Duration>() / rounds;
        println!(
            "S3 {name} 1 MB on PostgreSQL: p50 {:?}, p90 {:?}, mean {mean:?}",
            times[times.len() / 2],
            times[times.len() * 9 / 10]
        );
    }
}

/// Two nodes on one database: either relays what the other's writes
/// stored, a lease keeps an entry from the other node's claims, and when
/// the node that claimed it stops (its lease runs out), the other takes it.
#[tokio::test]
async fn a_node_relays_what_another_node_stored_and_what_it_left() {
    let f = fixture().await;
    let other = PgObjectStore::open(&Pg::connect(&f._db.url).await.unwrap())
        .await
        .unwrap()
        .with_clock(f.clock.clone());
    let note = [Notification::new("n", "{}")];
    f.store
        .put(
            "b",
            "k",
            PutBody::bytes(&b"x"[..]),
            ObjectAttrs::default(),
            &note,
        )
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let taken = other.claim_notifications(10, lease).await.unwrap();
    assert_eq!(taken.len(), 1, "the other node sees the write's entry");
    assert!(
        f.store
            .claim_notifications(10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    f.clock.advance(lease + Duration::from_millis(1));
    let retaken = f.store.claim_notifications(10, lease).await.unwrap();
    assert_eq!((retaken[0].id.as_str(), retaken[0].claims), ("n", 2));
    f.store.remove_notifications(&["n".into()]).await.unwrap();
    assert_eq!(
        count(&f.pg, "SELECT count(*) FROM object_notifications").await,
        0
    );
}
