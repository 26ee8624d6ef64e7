//! The object store against an in-memory model: random sequences of bucket,
//! object, listing and multipart operations must give the same answers, on
//! every backend, and reopening the store (as after a restart, or another
//! node on the same database) must keep every object and leave no body
//! behind that nothing refers to.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use nimbus_store::postgres::Pg;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    FsObjectStore, ListEntry, ListQuery, ObjectAttrs, ObjectError, ObjectStore, PgObjectStore,
    PutBody,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    CreateBucket(u8),
    DeleteBucket(u8),
    Put(u8, String, Vec<u8>),
    Get(u8, String),
    Delete(u8, String),
    Copy(u8, String, u8, String),
    List(u8, String, Option<String>, Option<String>, usize),
    Multipart(u8, String, Vec<Vec<u8>>),
    Reopen,
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "/", "é", "-"], 1..5).prop_map(|v| v.concat())
}

fn op() -> impl Strategy<Value = Op> {
    let bucket = 0u8..2;
    let data = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        2 => bucket.clone().prop_map(Op::CreateBucket),
        1 => bucket.clone().prop_map(Op::DeleteBucket),
        6 => (bucket.clone(), key(), data.clone()).prop_map(|(b, k, d)| Op::Put(b, k, d)),
        2 => (bucket.clone(), key()).prop_map(|(b, k)| Op::Get(b, k)),
        2 => (bucket.clone(), key()).prop_map(|(b, k)| Op::Delete(b, k)),
        1 => (bucket.clone(), key(), bucket.clone(), key()).prop_map(|(a, k, b, l)| Op::Copy(a, k, b, l)),
        4 => (
            bucket.clone(),
            prop_oneof!["", "a", "a/", "b"],
            proptest::option::of(prop_oneof!["/", "-", "b"]),
            proptest::option::of(key()),
            0usize..5
        )
            .prop_map(|(b, p, d, a, m)| Op::List(b, p, d, a, m)),
        1 => (bucket.clone(), key(), proptest::collection::vec(data, 1..4))
            .prop_map(|(b, k, parts)| Op::Multipart(b, k, parts)),
        1 => Just(Op::Reopen),
    ]
}

fn name(b: u8) -> String {
    format!("bucket-{b}")
}

/// Bucket → key → bytes.
type Model = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The reference listing: group, skip what sorts at or before `after`, page.
fn model_list(objects: &BTreeMap<String, Vec<u8>>, q: &ListQuery) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::new();
    for k in objects.keys().filter(|k| k.starts_with(&q.prefix)) {
        let entry = match q.delimiter.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => match k[q.prefix.len()..].find(d) {
                Some(i) => format!("P:{}", &k[..q.prefix.len() + i + d.len()]),
                None => format!("K:{k}"),
            },
            None => format!("K:{k}"),
        };
        if q.after.as_deref().is_some_and(|a| entry[2..] <= *a) {
            continue;
        }
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    if q.max_keys == 0 {
        return (vec![], false);
    }
    let truncated = out.len() > q.max_keys;
    out.truncate(q.max_keys);
    (out, truncated)
}

fn code(e: &ObjectError) -> &'static str {
    match e {
        ObjectError::NoSuchBucket(_) => "NoSuchBucket",
        ObjectError::BucketExists(_) => "BucketExists",
        ObjectError::BucketNotEmpty(_) => "BucketNotEmpty",
        ObjectError::NoSuchKey(_) => "NoSuchKey",
        other => panic!("unexpected error {other}"),
    }
}

async fn read_all(store: &dyn ObjectStore, b: &str, k: &str) -> Result<Vec<u8>, ObjectError> {
    let read = store.open(b, k, None).await?;
    Ok(nimbus_store::body::collect(read.body, u64::MAX)
        .await
        .unwrap())
}

async fn put(store: &dyn ObjectStore, b: &str, k: &str, d: &[u8]) -> Result<String, ObjectError> {
    let body = PutBody::bytes(d.to_vec());
    Ok(store
        .put(b, k, body, ObjectAttrs::default(), &[])
        .await?
        .etag)
}

/// Where a run keeps its objects.
enum Backend {
    Fs(tempfile::TempDir),
    Postgres(Box<Pg>, ScratchDatabase),
}

impl Backend {
    async fn fs() -> Self {
        Backend::Fs(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Self {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        Backend::Postgres(Box::new(pg), db)
    }

    /// A store on the backend's data (again: a restart, or another node).
    async fn open(&self) -> Box<dyn ObjectStore> {
        match self {
            Backend::Fs(dir) => Box::new(
                FsObjectStore::open(&dir.path().join("objects.db"), &dir.path().join("objects"))
                    .unwrap()
                    .with_min_part_size(4),
            ),
            Backend::Postgres(pg, _) => {
                Box::new(PgObjectStore::open(pg).await.unwrap().with_min_part_size(4))
            }
        }
    }

    /// Checks that every body kept is referred to by `objects` objects.
    async fn assert_no_body_unreferenced(&self, objects: usize) {
        match self {
            Backend::Fs(dir) => assert_eq!(walk(&dir.path().join("objects/blobs")), objects),
            Backend::Postgres(_, db) => {
                let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                // Copies share bodies: count references, not bodies.
                let row = client
                    .query_one(
                        "SELECT (SELECT coalesce(sum(refs), 0) FROM object_blobs)::bigint,
                                (SELECT count(*) FROM objects, unnest(blobs)),
                                (SELECT count(*) FROM object_parts),
                                (SELECT count(*) FROM object_blobs
                                 WHERE refs = 0 AND expires_ms IS NULL)",
                        &[],
                    )
                    .await
                    .unwrap();
                let (refs, referred, parts, stranded): (i64, i64, i64, i64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                assert_eq!(refs, referred, "every reference is an object's");
                assert_eq!(parts, 0, "every upload ended");
                assert_eq!(stranded, 0, "every unreferenced body expires");
            }
        }
    }
}

async fn run(ops: Vec<Op>, backend: Backend) {
    let mut store = backend.open().await;
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::CreateBucket(b) => {
                let got = store.create_bucket(&name(b)).await.map(|_| ());
                let want = match model.entry(name(b)) {
                    std::collections::btree_map::Entry::Occupied(_) => Err("BucketExists"),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(BTreeMap::new());
                        Ok(())
                    }
                };
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::DeleteBucket(b) => {
                let got = store.delete_bucket(&name(b)).await;
                let want = match model.get(&name(b)) {
                    None => Err("NoSuchBucket"),
                    Some(o) if !o.is_empty() => Err("BucketNotEmpty"),
                    Some(_) => {
                        model.remove(&name(b));
                        Ok(())
                    }
                };
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::Put(b, k, d) => {
                let got = put(&*store, &name(b), &k, &d).await;
                let want = match model.get_mut(&name(b)) {
                    None => Err("NoSuchBucket"),
                    Some(o) => {
                        o.insert(k, d.clone());
                        Ok(md5_hex(&d))
                    }
                };
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::Get(b, k) => {
                let got = read_all(&*store, &name(b), &k).await;
                let want = match model.get(&name(b)) {
                    None => Err("NoSuchBucket"),
                    Some(o) => o.get(&k).cloned().ok_or("NoSuchKey"),
                };
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::Delete(b, k) => {
                let got = store
                    .delete(&name(b), &k, &[])
                    .await
                    .map(|m| m.map(|m| m.size));
                let want = match model.get_mut(&name(b)) {
                    None => Err("NoSuchBucket"),
                    Some(o) => Ok(o.remove(&k).map(|d| d.len() as u64)),
                };
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::Copy(a, k, b, l) => {
                let got = store
                    .copy((&name(a), &k), (&name(b), &l), None, &[])
                    .await
                    .map(|m| m.etag);
                let src = match model.get(&name(a)) {
                    None => Err("NoSuchBucket"),
                    Some(o) => o.get(&k).cloned().ok_or("NoSuchKey"),
                };
                let want = src.and_then(|d| match model.get_mut(&name(b)) {
                    None => Err("NoSuchBucket"),
                    Some(o) => {
                        o.insert(l, d.clone());
                        Ok(md5_hex(&d))
                    }
                });
                assert_eq!(got.map_err(|e| code(&e)), want);
            }
            Op::List(b, prefix, delimiter, after, max_keys) => {
                let q = ListQuery {
                    prefix,
                    delimiter,
                    after,
                    max_keys,
                };
                let got = store.list(&name(b), &q).await.map(|page| {
                    let names = page
                        .entries
                        .iter()
                        .map(|e| match e {
                            ListEntry::Object(o) => format!("K:{}", o.key),
                            ListEntry::CommonPrefix(p) => format!("P:{p}"),
                        })
                        .collect::<Vec<_>>();
                    (names, page.truncated)
                });
                let want = model
                    .get(&name(b))
                    .map(|o| model_list(o, &q))
                    .ok_or("NoSuchBucket");
                assert_eq!(got.map_err(|e| code(&e)), want, "{q:?}");
            }
            Op::Multipart(b, k, parts) => {
                let upload = match store
                    .create_upload(&name(b), &k, ObjectAttrs::default())
                    .await
                {
                    Ok(u) => u,
                    Err(e) => {
                        assert!(!model.contains_key(&name(b)), "{e}");
                        continue;
                    }
                };
                let mut listed = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    let body = PutBody::bytes(p.clone());
                    let info = store
                        .put_part(&upload.id, i as u32 + 1, body)
                        .await
                        .unwrap();
                    listed.push((info.number, format!("\"{}\"", info.etag)));
                }
                let got = store.complete_upload(&upload.id, &listed, &[]).await;
                let all_big = parts[..parts.len() - 1].iter().all(|p| p.len() >= 4);
                if all_big {
                    let meta = got.unwrap();
                    let md5s: Vec<String> = parts.iter().map(|p| md5_hex(p)).collect();
                    let refs: Vec<&str> = md5s.iter().map(String::as_str).collect();
                    assert_eq!(meta.etag, nimbus_store::multipart_etag(&refs));
                    model.get_mut(&name(b)).unwrap().insert(k, parts.concat());
                } else {
                    assert!(matches!(got, Err(ObjectError::EntityTooSmall(_))));
                    store.abort_upload(&upload.id).await.unwrap();
                }
                assert!(matches!(
                    store.list_parts(&upload.id).await,
                    Err(ObjectError::NoSuchUpload(_))
                ));
            }
            Op::Reopen => {
                drop(store);
                store = backend.open().await;
            }
        }
    }
    // Everything in the model is in the store, byte for byte, after a reopen.
    drop(store);
    let store = backend.open().await;
    let buckets: Vec<String> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(buckets, model.keys().cloned().collect::<Vec<_>>());
    for (b, objects) in &model {
        for (k, d) in objects {
            assert_eq!(&read_all(&*store, b, k).await.unwrap(), d);
        }
    }
    let count: usize = model.values().map(BTreeMap::len).sum();
    backend.assert_no_body_unreferenced(count).await;
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn objects_store_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(async { run(ops, Backend::fs().await).await });
    }
}

proptest! {
    // Fewer cases: each creates a database and commits every step.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn postgres_objects_store_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(async { run(ops, Backend::postgres().await).await });
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test]
async fn objects_listing_pages_through_common_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        FsObjectStore::open(&dir.path().join("objects.db"), &dir.path().join("objects")).unwrap();
    store.create_bucket("b").await.unwrap();
    for k in ["a/1", "a/2", "b", "c/x/y", "d"] {
        put(&store, "b", k, b"x").await.unwrap();
    }
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .list(
                "b",
                &ListQuery {
                    prefix: String::new(),
                    delimiter: Some("/".into()),
                    after: after.clone(),
                    max_keys: 1,
                },
            )
            .await
            .unwrap();
        seen.extend(page.entries.iter().map(|e| e.name().to_string()));
        if !page.truncated {
            break;
        }
        after = page.entries.last().map(|e| e.name().to_string());
    }
    assert_eq!(seen, ["a/", "b", "c/", "d"]);
}
