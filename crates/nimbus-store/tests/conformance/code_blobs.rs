//! `CodeBlobs`: packages by sha256, stored once, read back whole or as a
//! stream; and the per-node `CodeCache` unpacking from the backend.

use std::io::{Cursor, Write};
use std::sync::Arc;

use bytes::Bytes;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{CodeBlobs, CodeCache, FsCodeBlobs, Package, PgCodeBlobs, StoreError};
use zip::write::SimpleFileOptions;

async fn open_fs() -> (Arc<dyn CodeBlobs>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsCodeBlobs::open(dir.path().join("code")).unwrap();
    (Arc::new(blobs), dir)
}

async fn open_pg() -> (Arc<dyn CodeBlobs>, ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    (Arc::new(PgCodeBlobs::open(&pg).await.unwrap()), db)
}

conformance!([fs = open_fs(), postgres = open_pg()](
    put_then_read_back,
    put_is_idempotent,
    absent_and_malformed_names,
    a_cache_unpacks_from_the_backend,
    a_large_package_streams_in_pieces,
    racing_puts_of_one_package_store_it_once,
));

fn package(files: &[(&str, &[u8])]) -> Package {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
    }
    Package::check(Bytes::from(w.finish().unwrap().into_inner())).unwrap()
}

async fn put_then_read_back(blobs: Arc<dyn CodeBlobs>) {
    let pkg = package(&[("index.py", b"def handler(e, c): return 1\n")]);
    let sha = &pkg.info().sha256;
    assert_eq!(blobs.info(sha).await.unwrap(), None);
    blobs.put(&pkg).await.unwrap();
    assert_eq!(blobs.info(sha).await.unwrap().as_ref(), Some(pkg.info()));
    assert_eq!(&blobs.get(sha).await.unwrap(), pkg.zip());
    let (info, stream) = blobs.open(sha).await.unwrap();
    assert_eq!(&info, pkg.info());
    let streamed = nimbus_store::body::collect(stream, u64::MAX).await.unwrap();
    assert_eq!(streamed, pkg.zip().as_ref());
}

async fn put_is_idempotent(blobs: Arc<dyn CodeBlobs>) {
    let pkg = package(&[("a.js", b"exports.handler = async () => 1;")]);
    blobs.put(&pkg).await.unwrap();
    blobs.put(&pkg).await.unwrap();
    let other = package(&[("b.js", b"exports.handler = async () => 2;")]);
    blobs.put(&other).await.unwrap();
    assert_eq!(&blobs.get(&pkg.info().sha256).await.unwrap(), pkg.zip());
    assert_eq!(&blobs.get(&other.info().sha256).await.unwrap(), other.zip());
}

async fn absent_and_malformed_names(blobs: Arc<dyn CodeBlobs>) {
    let absent = "0".repeat(64);
    assert_eq!(blobs.info(&absent).await.unwrap(), None);
    let got = blobs.get(&absent).await;
    assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    let opened = blobs.open(&absent).await.map(|(info, _)| info);
    assert!(matches!(opened, Err(StoreError::NotFound(_))), "{opened:?}");
    for bad in ["", "../../etc/passwd", &"A".repeat(64)] {
        assert_eq!(blobs.info(bad).await.unwrap(), None, "{bad:?}");
        let got = blobs.get(bad).await;
        assert!(
            matches!(got, Err(StoreError::Invalid(_))),
            "{bad:?}: {got:?}"
        );
    }
}

async fn a_cache_unpacks_from_the_backend(blobs: Arc<dyn CodeBlobs>) {
    let pkg = package(&[("lib/a.py", b"x = 1"), ("index.py", b"import lib.a")]);
    blobs.put(&pkg).await.unwrap();
    let run = tempfile::tempdir().unwrap();
    let cache = CodeCache::new(blobs, run.path().join("code"));
    let (tree, listing) = cache.unpack(&pkg.info().sha256).await.unwrap();
    assert_eq!(listing.files, pkg.listing().files);
    assert_eq!(std::fs::read(tree.join("lib/a.py")).unwrap(), b"x = 1");
    assert_eq!(cache.unpacked(&pkg.info().sha256).await.unwrap(), tree);
}

/// A package of about 3 MiB (stored, not deflated: its bytes are noise).
fn large_package() -> Package {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("blob.bin", stored).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..(3 * 1024 * 1024 / 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.write_all(&x.to_le_bytes()).unwrap();
    }
    w.start_file("index.py", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"def handler(e, c): return 1\n").unwrap();
    Package::check(Bytes::from(w.finish().unwrap().into_inner())).unwrap()
}

async fn a_large_package_streams_in_pieces(blobs: Arc<dyn CodeBlobs>) {
    let pkg = large_package();
    blobs.put(&pkg).await.unwrap();
    assert_eq!(&blobs.get(&pkg.info().sha256).await.unwrap(), pkg.zip());
    let (info, mut stream) = blobs.open(&pkg.info().sha256).await.unwrap();
    assert_eq!(&info, pkg.info());
    let (mut pieces, mut streamed) = (0, Vec::new());
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        pieces += 1;
        streamed.extend_from_slice(&piece.unwrap());
    }
    assert!(pieces > 1, "read as a stream, in {pieces} pieces");
    assert_eq!(streamed, pkg.zip().as_ref());
}

/// Nodes deploying one package at once: every put succeeds, one copy is kept.
async fn racing_puts_of_one_package_store_it_once(blobs: Arc<dyn CodeBlobs>) {
    let pkg = Arc::new(package(&[(
        "index.js",
        b"exports.handler = async () => 3;",
    )]));
    let puts: Vec<_> = (0..4)
        .map(|_| {
            let (blobs, pkg) = (blobs.clone(), pkg.clone());
            tokio::spawn(async move { blobs.put(&pkg).await })
        })
        .collect();
    for put in puts {
        put.await.unwrap().unwrap();
    }
    assert_eq!(&blobs.get(&pkg.info().sha256).await.unwrap(), pkg.zip());
}
