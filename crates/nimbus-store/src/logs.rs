//! Invocation logs: every line an instance prints, plus the platform's
//! START/END/REPORT lines, tagged with function, instance and request id.
//!
//! Lines arrive in batches from one writer task (see the engine's log pipeline), so
//! a batch costs one transaction, not one per line. The embedded backend writes on
//! a dedicated thread at a lower scheduling priority: logging must never compete
//! with invocations for the CPU (on a small machine a batch insert running beside
//! the warm path is what shows up in its tail latency). Queries use their own
//! connection; WAL lets them run while the writer works. Retention is enforced by
//! [`LogStore::prune`], by age and by a global row cap, so that a chatty function
//! cannot fill the disk.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::StoreError;
use crate::sqlite::{Db, with_db};

/// A line to store.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub function: String,
    pub ts_ms: i64,
    pub instance: String,
    pub request_id: Option<String>,
    pub message: String,
}

/// Rows whose message starts with one of these and holds newlines are
/// several platform lines stored as one (END and REPORT of an invocation,
/// with START first when the invocation wrote nothing) and are read back as
/// separate lines with the same id. A function's own output never holds a
/// newline: the pipe splits it into lines.
const MULTI_LINE_PREFIXES: [&str; 2] = ["START RequestId: ", "END RequestId: "];

fn is_multi_line(message: &str) -> bool {
    MULTI_LINE_PREFIXES.iter().any(|p| message.starts_with(p)) && message.contains('\n')
}

/// A stored line; `id` is a cursor that only grows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredLog {
    pub id: i64,
    pub ts_ms: i64,
    pub instance: String,
    pub request_id: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub function: String,
    pub since_ms: Option<i64>,
    pub after_id: Option<i64>,
    pub request_id: Option<String>,
    /// When set, return the newest `limit` lines (still in ascending order)
    /// unless `after_id` is given, in which case the oldest after the cursor.
    pub limit: usize,
}

#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    async fn append(&self, lines: Vec<LogRecord>) -> Result<(), StoreError>;
    async fn query(&self, query: LogQuery) -> Result<Vec<StoredLog>, StoreError>;
    /// Deletes lines older than `older_than_ms` and the oldest lines beyond `max_rows`.
    async fn prune(&self, older_than_ms: i64, max_rows: i64) -> Result<usize, StoreError>;
    /// Stores metering records (one per invocation or throttled call).
    async fn append_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError>;
    /// Metering records since `since_ms`, of one function or all.
    async fn usage(
        &self,
        function: Option<String>,
        since_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError>;
}

/// What one invocation cost: the metering record behind `nimbus usage` and `nimbus cost`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRecord {
    pub ts_ms: i64,
    pub function: String,
    pub version: String,
    pub request_id: String,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub cold: bool,
    pub init_ms: Option<f64>,
    /// `success`, `error` or `throttled`.
    pub outcome: String,
}

enum Batch {
    Logs(Vec<LogRecord>),
    Usage(Vec<UsageRecord>),
}

type WriteJob = (Batch, tokio::sync::oneshot::Sender<Result<(), StoreError>>);

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
                        Batch::Logs(lines) => insert(&mut conn, &lines),
                        Batch::Usage(records) => insert_usage(&mut conn, &records),
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
            "INSERT INTO logs(function, ts_ms, instance, request_id, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for l in lines {
            stmt.execute(params![
                l.function,
                l.ts_ms,
                l.instance,
                l.request_id,
                l.message
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
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
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
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
        self.write(Batch::Usage(records)).await
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
        self.write(Batch::Logs(lines)).await
    }

    async fn query(&self, q: LogQuery) -> Result<Vec<StoredLog>, StoreError> {
        with_db(&self.db, move |c| {
            let limit = if q.limit == 0 {
                1000
            } else {
                q.limit.min(10_000)
            } as i64;
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
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                if is_multi_line(&row.message) {
                    // A platform row holding several lines (END and REPORT,
                    // with START first for a silent invocation).
                    let lines: Vec<&str> = if newest_first {
                        row.message.rsplit('\n').collect()
                    } else {
                        row.message.split('\n').collect()
                    };
                    for line in lines {
                        out.push(StoredLog {
                            message: line.to_string(),
                            instance: row.instance.clone(),
                            request_id: row.request_id.clone(),
                            ..row
                        });
                    }
                } else {
                    out.push(row);
                }
            }
            if newest_first {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn prune(&self, older_than_ms: i64, max_rows: i64) -> Result<usize, StoreError> {
        with_db(&self.db, move |c| {
            let mut n = c.execute("DELETE FROM logs WHERE ts_ms < ?1", [older_than_ms])?;
            c.execute("DELETE FROM usage WHERE ts_ms < ?1", [older_than_ms])?;
            let max_id: Option<i64> = c.query_row("SELECT MAX(id) FROM logs", [], |r| r.get(0))?;
            if let Some(max_id) = max_id {
                n += c.execute("DELETE FROM logs WHERE id <= ?1", [max_id - max_rows])?;
            }
            Ok(n)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: &str, ts: i64, msg: &str) -> LogRecord {
        LogRecord {
            function: f.into(),
            ts_ms: ts,
            instance: "i".into(),
            request_id: Some("r".into()),
            message: msg.into(),
        }
    }

    /// A store on a fresh database (kept while the directory lives).
    fn store() -> (tempfile::TempDir, SqliteLogStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteLogStore::new(
            crate::open_database(&path).unwrap(),
            crate::open_database(&path).unwrap(),
        );
        (dir, store)
    }

    #[tokio::test]
    async fn a_row_of_platform_lines_reads_back_as_lines_in_order() {
        let (_dir, store) = store();
        store
            .append(vec![
                line("f", 1, "START RequestId: r Version: $LATEST"),
                line("f", 2, "hello\nnot split: not a platform row"),
                line(
                    "f",
                    3,
                    "END RequestId: r\nREPORT RequestId: r\tDuration: 1.00 ms",
                ),
                // A silent invocation: its START joins the row.
                line(
                    "f",
                    4,
                    "START RequestId: s Version: $LATEST\nEND RequestId: s\nREPORT RequestId: s\tDuration: 0.20 ms",
                ),
            ])
            .await
            .unwrap();
        let expected = [
            "START RequestId: r Version: $LATEST",
            "hello\nnot split: not a platform row",
            "END RequestId: r",
            "REPORT RequestId: r\tDuration: 1.00 ms",
            "START RequestId: s Version: $LATEST",
            "END RequestId: s",
            "REPORT RequestId: s\tDuration: 0.20 ms",
        ];
        for after_id in [None, Some(0)] {
            let got = store
                .query(LogQuery {
                    function: "f".into(),
                    after_id,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(
                got.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
                expected,
                "newest first: {}",
                after_id.is_none()
            );
            assert_eq!(got[2].id, got[3].id, "one cursor for both lines");
            assert_eq!(got[4].id, got[6].id, "one cursor for all three");
        }
    }

    #[tokio::test]
    async fn append_query_prune() {
        let (_dir, store) = store();
        store
            .append((0..10).map(|i| line("f", i, &format!("m{i}"))).collect())
            .await
            .unwrap();
        store.append(vec![line("g", 5, "other")]).await.unwrap();
        let all = store
            .query(LogQuery {
                function: "f".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0].message, "m0");
        let last3 = store
            .query(LogQuery {
                function: "f".into(),
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            last3.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["m7", "m8", "m9"]
        );
        let after = store
            .query(LogQuery {
                function: "f".into(),
                after_id: Some(all[7].id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 2);
        let pruned = store.prune(3, 1_000).await.unwrap();
        assert_eq!(pruned, 3);
        let left = store
            .query(LogQuery {
                function: "f".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(left[0].message, "m3");
    }
}
