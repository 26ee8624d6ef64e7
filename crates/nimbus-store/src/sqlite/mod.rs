//! The embedded database: one SQLite file in WAL mode.
//!
//! WAL lets the log writer and the control plane work without blocking readers.
//! Connections open with `synchronous=NORMAL`, durable across process crashes
//! (the WAL is fsynced at checkpoints; only an OS crash can lose the last
//! transactions), the right trade for logs that change often. The stores of
//! acknowledged configuration (functions, keys, routes, schedules) switch their
//! connection to `FULL` with [`durable`]: a key secret is shown once and a
//! deploy is answered once, so their commits fsync the WAL before returning;
//! they change rarely, so the fsync costs nothing that matters.
//! Schema versions are tracked with `user_version` so upgrades are explicit,
//! in every database file ([`migrate`]).
//!
//! This module is the embedded backend of every storage contract, one file
//! per area (`metadata.rs`, `queue.rs`, …); `rusqlite` appears nowhere
//! else: its errors become [`StoreError::Backend`] here.

pub(crate) mod gateway;
pub(crate) mod group_commit;
pub(crate) mod keys;
pub(crate) mod logs;
pub(crate) mod messages;
pub(crate) mod metadata;
pub(crate) mod queue;
pub(crate) mod schedules;
pub(crate) mod workflows;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::StoreError;

/// SQLite's errors reach callers only as [`StoreError::Backend`]: `?` on a
/// `rusqlite` result converts, inside this backend.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::backend(e)
    }
}

const MIGRATIONS: &[&str] = &[
    // v1: functions and logs.
    "CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        record TEXT NOT NULL
     );
     CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        function TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        instance TEXT NOT NULL,
        request_id TEXT,
        message TEXT NOT NULL
     );
     CREATE INDEX logs_function_id ON logs(function, id);
     CREATE INDEX logs_function_ts ON logs(function, ts_ms);
     CREATE INDEX logs_request ON logs(request_id);",
    // v2: access keys (secrets sealed with the master key, see keys.rs).
    "CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        secret BLOB NOT NULL,
        description TEXT NOT NULL,
        created_at TEXT NOT NULL
     );",
    // v3: published versions and aliases (JSON documents like functions).
    "CREATE TABLE function_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (name, version)
     );
     CREATE TABLE aliases (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (name, alias)
     );",
    // v4: metering, one row per invocation (and per throttled call).
    "CREATE TABLE usage (
        ts_ms INTEGER NOT NULL,
        function TEXT NOT NULL,
        version TEXT NOT NULL,
        request_id TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        billed_ms INTEGER NOT NULL,
        memory_mb INTEGER NOT NULL,
        cold INTEGER NOT NULL,
        init_ms REAL,
        outcome TEXT NOT NULL
     );
     CREATE INDEX usage_function_ts ON usage(function, ts_ms);
     CREATE INDEX usage_ts ON usage(ts_ms);",
    // v5: the HTTP gateway (routes, function URLs, hashed keys; see gateway.rs).
    "CREATE TABLE gateway_routes (
        id TEXT PRIMARY KEY,
        api TEXT NOT NULL,
        route_key TEXT NOT NULL,
        config TEXT NOT NULL,
        secret BLOB,
        created_at TEXT NOT NULL,
        UNIQUE (api, route_key)
     );
     CREATE TABLE gateway_function_urls (
        function TEXT PRIMARY KEY,
        url_id TEXT NOT NULL UNIQUE,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE gateway_keys (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        function TEXT,
        hash TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL,
        created_at TEXT NOT NULL
     );",
    // v6: schedules (JSON documents like functions; fires are recorded in the
    // event queue's own database, atomically with the events they enqueue).
    "CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        record TEXT NOT NULL
     );",
];

pub(crate) type Db = Arc<Mutex<Connection>>;

/// Wraps a connection whose every commit must survive an OS crash or power
/// loss (`synchronous=FULL`: the WAL is fsynced at each commit).
pub(crate) fn durable(conn: Connection) -> Db {
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::error!("cannot make the metadata database fsync its commits: {e}");
    }
    Arc::new(Mutex::new(conn))
}

/// Opens (creating and migrating as needed) the database at `path`.
pub fn open_database(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&mut conn, "database", MIGRATIONS)?;
    Ok(conn)
}

/// Brings `conn` to the last of `migrations` (tracked in `user_version`), each
/// step in its own transaction; a schema newer than this build is refused.
/// `what` names the database in that error.
pub(crate) fn migrate(
    conn: &mut Connection,
    what: &str,
    migrations: &[&str],
) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > migrations.len() {
        return Err(StoreError::Corrupt(format!(
            "{what} schema version {version} is newer than this nimbus understands ({}); upgrade nimbus",
            migrations.len()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Opens a store that has a file of its own and acknowledges writes only
/// once they survive a power cut (`events.db`, `workflows.db`,
/// `messages.db`): WAL, `synchronous=FULL`, migrated. `adopt` first brings a
/// file written before it was versioned (`user_version` 0) to the schema of
/// step 1, for the columns step 1's `CREATE TABLE IF NOT EXISTS` cannot add.
/// Returns the connection for the writer and one for reads beside it.
pub(crate) fn open_durable(
    path: &Path,
    what: &str,
    adopt: fn(&Connection) -> Result<(), StoreError>,
    migrations: &[&str],
) -> Result<(Connection, Db), StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        adopt(&conn)?;
    }
    migrate(&mut conn, what, migrations)?;
    let reader = Connection::open(path)?;
    reader.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok((conn, Arc::new(Mutex::new(reader))))
}

/// Adds to `table`, if it exists, the columns it lacks of `columns` (name,
/// type): the upgrades of the files that predate versioned migrations.
pub(crate) fn add_missing_columns(
    c: &Connection,
    table: &str,
    columns: &[(&str, &str)],
) -> Result<(), StoreError> {
    let mut present = c.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let present: Vec<String> = present
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if present.is_empty() {
        return Ok(());
    }
    for (name, ty) in columns {
        if !present.iter().any(|p| p == name) {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {ty}"))?;
        }
    }
    Ok(())
}

/// The schema version of a database (for tests of its migrations).
#[cfg(test)]
pub(crate) fn user_version(db: &Db) -> usize {
    let conn = db.lock().unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    version as usize
}

/// Runs a closure on the connection off the async executor.
pub(crate) async fn with_db<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db
            .lock()
            .map_err(|_| StoreError::Task("database lock poisoned".into()))?;
        f(&mut conn)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
}
