//! The cluster backend: every storage contract on one PostgreSQL database,
//! the only thing the nodes of a cluster share.
//!
//! Why PostgreSQL and nothing else: it is the engine operators already run,
//! back up and fail over; with state, queues and blobs in one database an
//! accepted event and the data it belongs to commit in one transaction, and
//! workers on any node claim work with row locks (`FOR UPDATE SKIP LOCKED`).
//!
//! Driver: `tokio-postgres` with a `deadpool-postgres` pool (small,
//! well-kept, async; `LISTEN` needs a dedicated connection, which the driver
//! exposes directly). Errors of both become [`StoreError::Backend`] here,
//! except a unique violation, which a store turns into
//! [`StoreError::Conflict`] with its own message ([`is_unique_violation`]).
//!
//! Layout mirrors `sqlite/`: one file per area, each with its migrations,
//! applied by [`migrate`] under an advisory lock by whichever node starts
//! first; a database whose schema is newer than this build is refused.

pub(crate) mod change_feed;
pub(crate) mod code;
#[cfg(test)]
mod config_notices;
pub(crate) mod gateway;
pub(crate) mod keys;
pub(crate) mod leases;
pub(crate) mod logs;
pub(crate) mod messages;
pub(crate) mod metadata;
pub(crate) mod objects;
pub(crate) mod queue;
pub(crate) mod schedules;
pub mod scratch;
pub(crate) mod workflows;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hmac::{KeyInit, Mac};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::{Change, ChangeKind, StoreError};

/// The `LISTEN`/`NOTIFY` channel of the change feed.
pub(crate) const CHANGE_CHANNEL: &str = "nimbus_changes";

/// Announces a change from inside the transaction that makes it:
/// PostgreSQL delivers the notice when (and only if) the transaction
/// commits, so no node re-reads before the change is visible and no change
/// commits unannounced. Every store of this backend that changes something
/// another node keeps in memory calls this in its write transaction.
pub(crate) async fn notify(
    tx: &impl deadpool_postgres::GenericClient,
    kind: ChangeKind,
    key: &str,
) -> Result<(), StoreError> {
    crate::check_change_key(key)?;
    let payload = Change {
        kind,
        key: key.to_string(),
    }
    .encode();
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANGE_CHANNEL, &payload])
        .await?;
    crate::note_change();
    Ok(())
}

/// Connections a node keeps to the database at most.
const POOL_SIZE: usize = 16;

/// The advisory lock that serialises migrations across nodes (any constant
/// unlikely to be used by anything else sharing the database).
const MIGRATION_LOCK: i64 = 0x6e69_6d62_7573_0001;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::backend(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::backend(e)
    }
}

/// Whether PostgreSQL broke a deadlock by failing this statement (safe to
/// run again when it was a transaction of its own).
pub(crate) fn is_deadlock(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
}

/// Attempts a statement or transaction gets, in all, when PostgreSQL keeps
/// breaking deadlocks by failing it.
const DEADLOCK_ATTEMPTS: usize = 3;

/// Runs `attempt` (a statement or transaction of its own, which a broken
/// deadlock leaves undone) again while `deadlocked` says it failed that way,
/// up to [`DEADLOCK_ATTEMPTS`] in all; the retry finds the other side
/// committed.
pub(crate) async fn retry_deadlocks<T, E, Fut>(
    deadlocked: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(e) if attempts < DEADLOCK_ATTEMPTS && deadlocked(&e) => attempts += 1,
            done => return done,
        }
    }
}

/// Whether `e` is a unique-constraint violation (a create that lost).
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A pool of connections to the cluster's database.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: name only where it points.
        f.debug_struct("Pg")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl Pg {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname`)
    /// and checks the connection works. TLS is not supported yet: a URL
    /// asking for it (`sslmode=require`) is refused rather than silently
    /// sent in clear.
    pub async fn connect(url: &str) -> Result<Pg, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Invalid(nimbus_core::ValidationError::param(format!(
                "invalid PostgreSQL URL: {e}"
            )))
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::Invalid(nimbus_core::ValidationError::param(
                "sslmode=require is not supported yet: reach PostgreSQL over a trusted network or a local socket",
            )));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(StoreError::backend)?;
        let pg = Pg { pool, config };
        pg.client().await?.simple_query("SELECT 1").await?;
        Ok(pg)
    }

    /// A pooled connection (returned to the pool when dropped).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// A connection of its own, outside the pool (for `LISTEN`, which must
    /// keep one session); the returned future drives it and must be polled.
    pub(crate) async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        StoreError,
    > {
        Ok(self.config.connect(NoTls).await?)
    }
}

/// Brings the area `area` of the database to the last of `migrations`, all
/// under one transaction-scoped advisory lock, so nodes starting together
/// apply each step once. Versions are kept per area in `nimbus_schema`; a
/// version newer than this build knows is refused.
pub(crate) async fn migrate(pg: &Pg, area: &str, migrations: &[&str]) -> Result<(), StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // `CREATE … IF NOT EXISTS` on a migrated database is not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS nimbus_schema (
            area TEXT PRIMARY KEY,
            version INTEGER NOT NULL
         )",
    )
    .await?;
    let version: i32 = tx
        .query_opt(
            "SELECT version FROM nimbus_schema WHERE area = $1",
            &[&area],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if version as usize > migrations.len() {
        return Err(StoreError::Corrupt(format!(
            "the {area} schema of this database is version {version}, newer than this nimbus understands ({}); upgrade nimbus",
            migrations.len()
        )));
    }
    for sql in &migrations[version as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute(
        "INSERT INTO nimbus_schema (area, version) VALUES ($1, $2)
         ON CONFLICT (area) DO UPDATE SET version = EXCLUDED.version",
        &[&area, &(migrations.len() as i32)],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Checks that `master_key` is the key that sealed this database's secrets,
/// recording it (as a keyed digest, never the key) on first use. A node
/// given another key is refused: it could neither read the secrets the
/// others sealed nor seal ones they could read.
pub(crate) async fn check_master_key(pg: &Pg, master_key: &[u8; 32]) -> Result<(), StoreError> {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(master_key)
        .map_err(|e| StoreError::Task(e.to_string()))?;
    mac.update(b"nimbus master key check v1");
    let digest = mac.finalize().into_bytes().to_vec();
    migrate(
        pg,
        "master key",
        &["CREATE TABLE nimbus_master_key (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            digest BYTEA NOT NULL
         )"],
    )
    .await?;
    // The first node records its key's digest; every node reads back the
    // digest recorded (the no-op update makes RETURNING answer on conflict).
    let stored: Vec<u8> = pg
        .client()
        .await?
        .query_one(
            "INSERT INTO nimbus_master_key (id, digest) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET digest = nimbus_master_key.digest
             RETURNING digest",
            &[&digest],
        )
        .await?
        .get(0);
    if stored != digest {
        return Err(StoreError::Invalid(nimbus_core::ValidationError::param(
            "this node's master key is not the one that sealed this database's secrets: give every node the same key (--master-key-file or NIMBUS_MASTER_KEY)",
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::scratch::ScratchDatabase;

    const STEPS: &[&str] = &[
        "CREATE TABLE t1 (x INTEGER)",
        "ALTER TABLE t1 ADD COLUMN y INTEGER",
    ];

    #[tokio::test]
    async fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        // Two nodes starting together apply each step once.
        let (a, b) = tokio::join!(migrate(&pg, "t", STEPS), migrate(&pg, "t", STEPS));
        a.unwrap();
        b.unwrap();
        migrate(&pg, "t", STEPS).await.unwrap();
        let client = pg.client().await.unwrap();
        client
            .execute("INSERT INTO t1 (x, y) VALUES (1, 2)", &[])
            .await
            .unwrap();
        // An older build meets the newer schema.
        let err = migrate(&pg, "t", &STEPS[..1]).await.unwrap_err();
        assert!(err.to_string().contains("newer than this nimbus"), "{err}");
    }

    #[tokio::test]
    async fn a_node_with_another_master_key_is_refused() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        check_master_key(&pg, &[7; 32]).await.unwrap();
        check_master_key(&pg, &[7; 32]).await.unwrap();
        let err = check_master_key(&pg, &[8; 32]).await.unwrap_err();
        assert!(err.to_string().contains("master key"), "{err}");
    }

    #[tokio::test]
    async fn a_url_asking_for_tls_is_refused() {
        let err = Pg::connect("postgres://postgres@127.0.0.1/postgres?sslmode=require")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sslmode"), "{err}");
    }
}
