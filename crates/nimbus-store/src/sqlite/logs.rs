//! The embedded log store. Logs have their own SQLite file (`logs.db`),
//! apart from the metadata: a function controls how much it prints, so a
//! flood must never be able to fill
//! the file that holds keys, deploys and routes, nor make its WAL grow without
//! end (`journal_size_limit` truncates the WAL after each checkpoint).
//!
//! Lines arrive in batches from one writer task (see the engine's log pipeline), so
//! a batch costs one transaction, not one per line. The embedded backend writes on
//! a dedicated thread at a lower scheduling priority: logging must never compete
//! with invocations for the CPU (on a small machine a batch insert running beside
//! the warm path is what shows up in its tail latency). Queries use their own
//! connection; WAL lets them run while the writer works.
//!
//! Retention ([`LogStore::prune`]) counts bytes, not lines, because a line may
//! be 256 KB: each function first loses its own oldest lines beyond its quota
//! (with a notice line where they were), then, if the total is still over its
//! quota, the largest consumers are cut down to a common share, so a small
//! function never loses lines because of a big one. Every row records the
//! bytes it is charged (`log_usage` keeps the running sum per function, updated
//! in the same transactions), so a pass never scans the table.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, with_db};
use crate::StoreError;
use crate::logs::{
    LOW_WATER_PERCENT, LogQuery, LogRecord, LogStore, NOTICE_INSTANCE, PruneReport,
    RetentionPolicy, StoredLog, UsageRecord, charged_bytes, fair_share, function_quota_note,
    quota_notice, row_limit, rows_to_lines, total_quota_note,
};

enum Batch {
    Logs(Vec<LogRecord>),
    Usage(Vec<UsageRecord>),
    Prune(RetentionPolicy),
}

type WriteJob = (
    Batch,
    tokio::sync::oneshot::Sender<Result<Done, StoreError>>,
);

enum Done {
    Written,
    Pruned(PruneReport),
}

const SCHEMA: &[&str] = &[
    // v1: lines with their charged size, the running size per function, metering.
    "CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        function TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        instance TEXT NOT NULL,
        request_id TEXT,
        message TEXT NOT NULL,
        bytes INTEGER NOT NULL
     );
     CREATE INDEX logs_function_id ON logs(function, id, bytes);
     CREATE INDEX logs_function_ts ON logs(function, ts_ms);
     CREATE INDEX logs_request ON logs(request_id);
     CREATE INDEX logs_ts ON logs(ts_ms);
     CREATE TABLE log_usage (
        function TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL,
        dropped INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE usage (
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
];

/// WAL bytes kept after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Opens (creating and migrating as needed) the log database at `path`.
pub fn open_log_database(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    super::migrate(&mut conn, "log database", SCHEMA)?;
    Ok(conn)
}

/// Moves the lines and metering records that earlier versions kept in the
/// metadata database (`nimbus.db`) into the log database, once: what is moved
/// is deleted there in the same transaction, so a second run finds nothing.
/// Returns how many lines moved.
pub fn move_logs_from(logs: &mut Connection, metadata: &Path) -> Result<usize, StoreError> {
    logs.execute(
        "ATTACH DATABASE ?1 AS old",
        [metadata.to_string_lossy().as_ref()],
    )?;
    let result = (|| -> Result<usize, StoreError> {
        let has = |table: &str| -> Result<bool, StoreError> {
            Ok(logs
                .query_row(
                    "SELECT 1 FROM old.sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        };
        let (has_logs, has_usage) = (has("logs")?, has("usage")?);
        let tx = logs.transaction()?;
        let mut moved = 0;
        if has_logs {
            moved = tx.execute(
                "INSERT INTO main.logs(id, function, ts_ms, instance, request_id, message, bytes)
                 SELECT id, function, ts_ms, instance, request_id, message,
                        length(CAST(message AS BLOB)) + length(instance) + coalesce(length(request_id), 0) + 48
                 FROM old.logs",
                [],
            )?;
            if moved > 0 {
                tx.execute(
                    "INSERT INTO main.log_usage(function, bytes)
                     SELECT function, SUM(bytes) FROM main.logs GROUP BY function
                     ON CONFLICT(function) DO UPDATE SET bytes = excluded.bytes",
                    [],
                )?;
                tx.execute("DELETE FROM old.logs", [])?;
            }
        }
        if has_usage {
            let n = tx.execute("INSERT INTO main.usage SELECT * FROM old.usage", [])?;
            if n > 0 {
                tx.execute("DELETE FROM old.usage", [])?;
            }
        }
        tx.commit()?;
        Ok(moved)
    })();
    logs.execute("DETACH DATABASE old", [])?;
    result
}

/// Opens `logs.db` in `data_dir`, first moving in the lines earlier
/// versions kept in `metadata` (`nimbus.db`).
pub(crate) fn open_log_store(
    data_dir: &Path,
    metadata: &Path,
) -> Result<SqliteLogStore, StoreError> {
    let path = data_dir.join("logs.db");
    let mut writer = open_log_database(&path)?;
    let moved = move_logs_from(&mut writer, metadata)?;
    if moved > 0 {
        tracing::info!(
            "moved {moved} log lines from {} to {}",
            metadata.display(),
            path.display()
        );
    }
    Ok(SqliteLogStore::new(open_log_database(&path)?, writer))
}

pub struct SqliteLogStore {
    /// For queries and retention.
    db: Db,
    writer: std::sync::mpsc::Sender<WriteJob>,
}

/// Niceness of the log writer thread (0 is normal, 19 the lowest priority).
const WRITER_NICE: i32 = 10;

impl SqliteLogStore {
    /// `reader` serves queries and pruning; `writer` moves to the writer thread.
    pub fn new(reader: Connection, writer: Connection) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("nimbus-log-writer".into())
            .spawn(move || {
                // SAFETY: setpriority on our own thread id has no memory-safety preconditions.
                unsafe {
                    libc::setpriority(
                        libc::PRIO_PROCESS,
                        libc::gettid() as libc::id_t,
                        WRITER_NICE,
                    );
                }
                let mut conn = writer;
                // The pages appends touch (the tails of the table and its
                // indexes) stay cached between batches instead of being read
                // back from the file.
                let _ = conn.pragma_update(None, "cache_size", -16 * 1024);
                while let Ok((batch, done)) = rx.recv() {
                    let result = match batch {
                        Batch::Logs(lines) => insert(&mut conn, &lines).map(|()| Done::Written),
                        Batch::Usage(records) => {
                            insert_usage(&mut conn, &records).map(|()| Done::Written)
                        }
                        Batch::Prune(policy) => prune(&mut conn, policy).map(Done::Pruned),
                    };
                    let _ = done.send(result);
                }
            })
            .expect("can spawn the log writer thread");
        Self {
            db: Arc::new(Mutex::new(reader)),
            writer: tx,
        }
    }
}

fn insert(c: &mut Connection, lines: &[LogRecord]) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO logs(function, ts_ms, instance, request_id, message, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut sizes: HashMap<&str, u64> = HashMap::new();
        for l in lines {
            let bytes = charged_bytes(l);
            stmt.execute(params![
                l.function,
                l.ts_ms,
                l.instance,
                l.request_id,
                l.message,
                bytes as i64
            ])?;
            *sizes.entry(l.function.as_str()).or_default() += bytes;
        }
        add_sizes(&tx, sizes.into_iter().map(|(f, b)| (f, b as i64)))?;
    }
    tx.commit()?;
    Ok(())
}

fn add_sizes<'a>(
    c: &Connection,
    sizes: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO log_usage(function, bytes) VALUES (?1, ?2)
         ON CONFLICT(function) DO UPDATE SET bytes = bytes + excluded.bytes",
    )?;
    for (f, b) in sizes {
        stmt.execute(params![f, b])?;
    }
    Ok(())
}

/// Deletes `function`'s oldest lines until at most `keep` bytes remain and
/// puts a notice where they were. Returns (lines, bytes) deleted.
fn cut_function(
    c: &Connection,
    function: &str,
    bytes: u64,
    keep: u64,
    quota_note: &str,
) -> Result<(usize, u64), StoreError> {
    let excess = bytes.saturating_sub(keep);
    if excess == 0 {
        return Ok((0, 0));
    }
    // Walks the covering index (function, id, bytes) from the oldest line.
    let (mut cut_id, mut freed) = (None, 0u64);
    {
        let mut stmt =
            c.prepare_cached("SELECT id, bytes FROM logs WHERE function = ?1 ORDER BY id")?;
        let mut rows = stmt.query([function])?;
        while let Some(row) = rows.next()? {
            freed += row.get::<_, i64>(1)? as u64;
            cut_id = Some(row.get::<_, i64>(0)?);
            if freed >= excess {
                break;
            }
        }
    }
    let Some(cut_id) = cut_id else {
        return Ok((0, 0));
    };
    // The notice keeps the time of the last line it stands for.
    let cut_ts: i64 = c.query_row("SELECT ts_ms FROM logs WHERE id = ?1", [cut_id], |r| {
        r.get(0)
    })?;
    // A notice from an earlier pass may be among them: it is not a line of
    // the function, and the new notice's count is cumulative.
    let notices: i64 = c.query_row(
        "SELECT COUNT(*) FROM logs WHERE function = ?1 AND id <= ?2 AND instance = ?3",
        params![function, cut_id, NOTICE_INSTANCE],
        |r| r.get(0),
    )?;
    let lines = c.execute(
        "DELETE FROM logs WHERE function = ?1 AND id <= ?2",
        params![function, cut_id],
    )?;
    let dropped: i64 = c.query_row(
        "UPDATE log_usage SET dropped = dropped + ?2, bytes = bytes - ?3 WHERE function = ?1 RETURNING dropped",
        params![function, lines as i64 - notices, freed as i64],
        |r| r.get(0),
    )?;
    let notice = quota_notice(function, cut_ts, dropped, quota_note);
    let notice_bytes = charged_bytes(&notice);
    // Its id is the last deleted line's, so it reads first, where they were.
    c.execute(
        "INSERT INTO logs(id, function, ts_ms, instance, request_id, message, bytes) VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)",
        params![cut_id, function, cut_ts, notice.instance, notice.message, notice_bytes as i64],
    )?;
    c.execute(
        "UPDATE log_usage SET bytes = bytes + ?2 WHERE function = ?1",
        params![function, notice_bytes as i64],
    )?;
    Ok((lines, freed))
}

fn prune(c: &mut Connection, p: RetentionPolicy) -> Result<PruneReport, StoreError> {
    let tx = c.transaction()?;
    let mut report = PruneReport::default();
    // Age first: what expired does not count against any quota.
    {
        let mut expired: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT function, COUNT(*), SUM(bytes) FROM logs WHERE ts_ms < ?1 GROUP BY function",
            )?;
            let rows = stmt.query_map([p.older_than_ms], |r| {
                Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
            })?;
            for row in rows {
                let (f, v) = row?;
                expired.insert(f, v);
            }
        }
        if !expired.is_empty() {
            tx.execute("DELETE FROM logs WHERE ts_ms < ?1", [p.older_than_ms])?;
            for (f, (lines, bytes)) in &expired {
                tx.execute(
                    "UPDATE log_usage SET bytes = bytes - ?2 WHERE function = ?1",
                    params![f, bytes],
                )?;
                report.lines += *lines as usize;
                report.bytes += *bytes as u64;
            }
        }
        tx.execute("DELETE FROM usage WHERE ts_ms < ?1", [p.older_than_ms])?;
        // Records are appended, so the rowids of the newest are the largest.
        tx.execute(
            "DELETE FROM usage WHERE rowid <= (SELECT MAX(rowid) FROM usage) - ?1",
            [p.usage_records.min(i64::MAX as u64) as i64],
        )?;
        tx.execute("DELETE FROM log_usage WHERE bytes <= 0", [])?;
    }
    let sizes = |tx: &rusqlite::Transaction| -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = tx.prepare_cached("SELECT function, bytes FROM log_usage")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    };
    // Each function within its own quota.
    let per_function_note = function_quota_note(&p);
    for (f, bytes) in sizes(&tx)? {
        if bytes > p.function_bytes {
            let keep = p.function_bytes / 100 * LOW_WATER_PERCENT;
            let (lines, freed) = cut_function(&tx, &f, bytes, keep, &per_function_note)?;
            report.lines += lines;
            report.bytes += freed;
        }
    }
    // All within the total: the largest are cut down to a common share.
    let all = sizes(&tx)?;
    let total: u64 = all.iter().map(|(_, b)| b).sum();
    if total > p.total_bytes {
        let budget = p.total_bytes / 100 * LOW_WATER_PERCENT;
        let share = fair_share(&all.iter().map(|(_, b)| *b).collect::<Vec<_>>(), budget);
        let note = total_quota_note(&p, share);
        for (f, bytes) in all {
            if bytes > share {
                let (lines, freed) = cut_function(&tx, &f, bytes, share, &note)?;
                report.lines += lines;
                report.bytes += freed;
            }
        }
    }
    tx.commit()?;
    Ok(report)
}

fn insert_usage(c: &mut Connection, records: &[UsageRecord]) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage(ts_ms, function, version, request_id, duration_ms, billed_ms, memory_mb, cold, init_ms, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in records {
            stmt.execute(params![
                r.ts_ms,
                r.function,
                r.version,
                r.request_id,
                r.duration_ms,
                r.billed_ms as i64,
                r.memory_mb,
                r.cold,
                r.init_ms,
                r.outcome
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl SqliteLogStore {
    async fn write(&self, batch: Batch) -> Result<Done, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer
            .send((batch, done))
            .map_err(|_| StoreError::Task("the log writer thread has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Task("the log writer thread has stopped".into()))?
    }
}

#[async_trait]
impl LogStore for SqliteLogStore {
    async fn append_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(Batch::Usage(records)).await.map(|_| ())
    }

    async fn usage(
        &self,
        function: Option<String>,
        since_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        with_db(&self.db, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT ts_ms, function, version, request_id, duration_ms, billed_ms, memory_mb, cold, init_ms, outcome
                 FROM usage WHERE ts_ms >= ?1 AND (?2 IS NULL OR function = ?2) ORDER BY ts_ms",
            )?;
            let rows = stmt.query_map(params![since_ms, function], |r| {
                Ok(UsageRecord {
                    ts_ms: r.get(0)?,
                    function: r.get(1)?,
                    version: r.get(2)?,
                    request_id: r.get(3)?,
                    duration_ms: r.get(4)?,
                    billed_ms: r.get::<_, i64>(5)? as u64,
                    memory_mb: r.get(6)?,
                    cold: r.get(7)?,
                    init_ms: r.get(8)?,
                    outcome: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn append(&self, lines: Vec<LogRecord>) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(Batch::Logs(lines)).await.map(|_| ())
    }

    async fn query(&self, q: LogQuery) -> Result<Vec<StoredLog>, StoreError> {
        with_db(&self.db, move |c| {
            let limit = row_limit(q.limit);
            let newest_first = q.after_id.is_none();
            let sql = format!(
                "SELECT id, ts_ms, instance, request_id, message FROM logs
                 WHERE function = ?1 AND id > ?2 AND ts_ms >= ?3 AND (?4 IS NULL OR request_id = ?4)
                 ORDER BY id {} LIMIT ?5",
                if newest_first { "DESC" } else { "ASC" }
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    q.function,
                    q.after_id.unwrap_or(0),
                    q.since_ms.unwrap_or(0),
                    q.request_id,
                    limit
                ],
                |r| {
                    Ok(StoredLog {
                        id: r.get(0)?,
                        ts_ms: r.get(1)?,
                        instance: r.get(2)?,
                        request_id: r.get(3)?,
                        message: r.get(4)?,
                    })
                },
            )?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            Ok(rows_to_lines(rows, newest_first))
        })
        .await
    }

    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        match self.write(Batch::Prune(policy)).await? {
            Done::Pruned(report) => Ok(report),
            Done::Written => Ok(PruneReport::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_move_out_of_the_metadata_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("nimbus.db");
        {
            let c = crate::open_database(&meta).unwrap();
            c.execute(
                "INSERT INTO logs(id, function, ts_ms, instance, request_id, message) VALUES (7, 'f', 1, 'i', 'r', 'old line')",
                [],
            )
            .unwrap();
        }
        let path = dir.path().join("logs.db");
        let mut writer = open_log_database(&path).unwrap();
        assert_eq!(move_logs_from(&mut writer, &meta).unwrap(), 1);
        assert_eq!(move_logs_from(&mut writer, &meta).unwrap(), 0, "once");
        let store = SqliteLogStore::new(open_log_database(&path).unwrap(), writer);
        let got = store
            .query(LogQuery {
                function: "f".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id, got[0].message.as_str()), (7, "old line"));
        let left: i64 = crate::open_database(&meta)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM logs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
