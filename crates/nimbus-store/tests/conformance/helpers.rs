//! What several suites share: racing calls, and looking at what a backend
//! keeps at rest.

use std::future::Future;
use std::path::Path;

use nimbus_store::StoreError;

/// Runs `call(0..n)` at once, each on its own task. Returns the indexes of
/// the calls that succeeded, having checked that every other one failed with
/// `Conflict` (a losing create is told so, never given a backend error).
pub async fn race<F, Fut>(n: usize, call: F) -> Vec<usize>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut won = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(()) => won.push(i),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a losing call fails with Conflict, not {e:?}"),
        }
    }
    won
}

/// Whether `needle` occurs in any file under `dir` (the database, its WAL,
/// anything else an embedded backend wrote): the at-rest probe of the
/// SQLite openers.
pub fn any_file_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            return any_file_holds(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

/// The at-rest probe of a fixture: whether these bytes occur anywhere in
/// what the backend stores.
pub type AtRest = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// Opens another store of trait `S` on the same data with the given master
/// key (a restart, or another node of a cluster).
pub type Reopen<S> = Box<dyn Fn(&[u8; 32]) -> std::sync::Arc<S> + Send + Sync>;

/// A fresh, empty PostgreSQL database (dropped with the guard) and a pool
/// on it: what every `postgres = …` opener starts from. The server is
/// `NIMBUS_TEST_POSTGRES` or the machine's default; without one the test
/// fails (CI starts PostgreSQL first).
pub async fn fresh_pg() -> (
    nimbus_store::postgres::Pg,
    nimbus_store::postgres::scratch::ScratchDatabase,
) {
    let db = nimbus_store::postgres::scratch::ScratchDatabase::create()
        .await
        .expect("a PostgreSQL server to create a scratch database on (NIMBUS_TEST_POSTGRES)");
    let pg = nimbus_store::postgres::Pg::connect(&db.url)
        .await
        .expect("the scratch database accepts connections");
    (pg, db)
}

/// Runs `future` to its end from synchronous code in a case (a fixture's
/// `reopen` or `at_rest`, where a PostgreSQL store must await). Needs the
/// multi-threaded runtime the suites run on.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// Whether `needle` occurs in any row of any table of the database at
/// `url`: the at-rest probe of the PostgreSQL openers. Rows are read as JSON
/// text, in which `bytea` columns are hex, so the needle is looked for both
/// as text and in hex (a secret stored in clear in a `bytea` is found too).
pub fn any_row_holds(url: &str, needle: &[u8]) -> bool {
    let (text, hex) = (String::from_utf8_lossy(needle), hex::encode(needle));
    block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                &[],
            )
            .await
            .unwrap();
        let mut found = false;
        for table in tables {
            let name: String = table.get(0);
            let sql = format!("SELECT row_to_json(t)::text FROM \"{name}\" t");
            for row in client.query(&sql, &[]).await.unwrap() {
                let json: String = row.get(0);
                found |= json.contains(&*text) || json.contains(&hex);
            }
        }
        drop(client);
        let _ = driver.await;
        found
    })
}
