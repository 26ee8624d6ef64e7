//! The durable queue of asynchronous invocations.
//!
//! An `Event` invocation is acknowledged (202) only after it is in this queue and
//! the write is fsynced: the queue has its own SQLite file with
//! `synchronous=FULL`, so a power cut or SIGKILL right after the 202 loses
//! nothing. Workers *claim* events with a lease; a claim that is never completed
//! (the server died mid-invocation) expires and the event runs again: delivery is
//! at least once, as on Lambda. The trait is the seam a cluster backend (NATS
//! JetStream, PostgreSQL) implements.
//!
//! **Group commit** ([`crate::group_commit`]): one fsync per event would cap
//! the queue near a thousand events a second; concurrent writes share one
//! transaction and one fsync instead, and each caller hears back only once it
//! is on disk.
//!
//! **Fair claims.** A claim takes events round-robin across the functions that
//! have some due, starting after the function served first last time, so a flood
//! of events for one function cannot starve another's. A claimed event's `due_ms`
//! moves to the end of its lease, which keeps the `(state, function, due_ms)`
//! index exact: claims never scan past running events.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::StoreError;
use crate::group_commit::GroupCommit;
use crate::sqlite::{Db, with_db};

/// How long a claim of an event of a given function lasts, in milliseconds.
pub type LeaseFn = Arc<dyn Fn(&str) -> i64 + Send + Sync>;
/// How many more events of a function may be claimed now (its share of the
/// workers less those it holds), so one function cannot take every worker.
pub type BudgetFn = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// One queued asynchronous invocation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueuedEvent {
    pub id: String,
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    #[serde(serialize_with = "as_json")]
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// For dead events: when they were given up.
    pub failed_at_ms: Option<i64>,
    /// The function on whose authority the event was queued (its grant is
    /// re-checked before every attempt); none for operators and the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// The X-Ray trace header of the call that queued it; its `Lineage`
    /// counts the chain of events behind it (recursive loop detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

fn as_json<S: serde::Serializer>(payload: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v.serialize(s),
        Err(_) => String::from_utf8_lossy(payload).serialize(s),
    }
}

#[async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// Durably stores an event; returns once it is on disk.
    async fn enqueue(&self, event: &QueuedEvent) -> Result<(), StoreError>;
    /// Stores an event for the firing of `source` (a schedule) at `fire_ms`,
    /// unless `source` already fired at or after that time: the event and the
    /// record of the fire are written in one transaction, so a fire is never
    /// lost or repeated across crashes. Returns whether it was enqueued.
    async fn enqueue_once(
        &self,
        event: &QueuedEvent,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, StoreError>;
    /// When `source` last fired (see `enqueue_once`).
    async fn last_fired(&self, source: &str) -> Result<Option<i64>, StoreError>;
    /// Records a fire of `source` at `fire_ms` that enqueued nothing here;
    /// returns false if it (or a later one) was already recorded.
    async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, StoreError>;
    /// Claims up to `limit` due events, fairly across functions, each for the
    /// lease `lease_ms` gives its function.
    async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        self.claim_within(now_ms, limit, lease_ms, Arc::new(|_| usize::MAX))
            .await
    }
    /// [`EventQueue::claim`], taking at most `budget(f)` events of function `f`.
    async fn claim_within(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
        budget: BudgetFn,
    ) -> Result<Vec<QueuedEvent>, StoreError>;
    /// The event ran to its end: remove it.
    async fn complete(&self, id: &str) -> Result<(), StoreError>;
    /// Run it again at `at_ms`, recording the attempt and why it failed.
    async fn retry(
        &self,
        id: &str,
        at_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Give up: keep it as a dead letter.
    async fn dead(
        &self,
        id: &str,
        now_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    async fn list_dead(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError>;
    /// Puts a dead letter back in the queue (attempts reset). Returns whether it existed.
    async fn replay(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// When the next event becomes due (for sleeping until then).
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// (events waiting or running, enqueue time of the oldest), for metrics.
    async fn stats(&self) -> Result<(u64, Option<i64>), StoreError>;
}

pub struct SqliteEventQueue {
    writes: GroupCommit,
    /// Reads (listing, metrics) use their own connection: WAL lets them run
    /// beside the writer.
    reader: Db,
    /// The function served first by the last claim (round-robin cursor).
    cursor: Arc<Mutex<String>>,
}

impl SqliteEventQueue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every commit reaches the disk before the caller is told "accepted".
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                function TEXT NOT NULL,
                qualifier TEXT,
                payload BLOB NOT NULL,
                enqueued_ms INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                due_ms INTEGER NOT NULL,
                leased_until_ms INTEGER,
                state TEXT NOT NULL DEFAULT 'ready',
                error TEXT,
                failed_at_ms INTEGER
             );
             CREATE TABLE IF NOT EXISTS fired (
                source TEXT PRIMARY KEY,
                last_ms INTEGER NOT NULL
             );
             DROP INDEX IF EXISTS events_due;
             CREATE INDEX IF NOT EXISTS events_function_due ON events(state, function, due_ms);
             CREATE INDEX IF NOT EXISTS events_due_ms ON events(state, due_ms);",
        )?;
        // Added after the first release: who queued the event.
        let has_creator = conn
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'creator'")?
            .exists([])?;
        if !has_creator {
            conn.execute_batch("ALTER TABLE events ADD COLUMN creator TEXT")?;
        }
        // Added later still: the trace header (recursive loop detection).
        let has_trace = conn
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'trace'")?
            .exists([])?;
        if !has_trace {
            conn.execute_batch("ALTER TABLE events ADD COLUMN trace TEXT")?;
        }
        // Claims of a previous run died with it (the data dir lock guarantees no
        // other process uses this queue): their events are due again now.
        conn.execute(
            "UPDATE events SET leased_until_ms = NULL, due_ms = ?1 WHERE leased_until_ms IS NOT NULL",
            [chrono::Utc::now().timestamp_millis()],
        )?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            writes: GroupCommit::start(conn, "event queue")?,
            reader: Arc::new(Mutex::new(reader)),
            cursor: Arc::new(Mutex::new(String::new())),
        })
    }

    /// Runs `f` in the next group commit; answers once that commit is on disk.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writes.write(f).await
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedEvent> {
    Ok(QueuedEvent {
        id: r.get(0)?,
        request_id: r.get(1)?,
        function: r.get(2)?,
        qualifier: r.get(3)?,
        payload: r.get(4)?,
        enqueued_ms: r.get(5)?,
        attempts: r.get(6)?,
        error: r.get(7)?,
        failed_at_ms: r.get(8)?,
        creator: r.get(9)?,
        trace: r.get(10)?,
    })
}

const COLUMNS: &str = "id, request_id, function, qualifier, payload, enqueued_ms, attempts, error, failed_at_ms, creator, trace";

/// Records that `source` fired at `fire_ms` if that is later than its last
/// fire; returns the rows changed (0: already recorded).
fn record_fire(c: &Connection, source: &str, fire_ms: i64) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "INSERT INTO fired(source, last_ms) VALUES (?1, ?2)
         ON CONFLICT(source) DO UPDATE SET last_ms = excluded.last_ms
         WHERE excluded.last_ms > fired.last_ms",
    )?
    .execute(params![source, fire_ms])?)
}

/// Claims up to `limit` due events round-robin across functions, starting after
/// `cursor`, and leases them.
fn claim_fair(
    c: &Connection,
    now_ms: i64,
    limit: usize,
    lease_ms: &LeaseFn,
    budget: &BudgetFn,
    cursor: &mut String,
) -> Result<Vec<QueuedEvent>, StoreError> {
    // The functions with ready events, by an index skip-scan (one seek each).
    let functions: Vec<String> = {
        let mut stmt = c.prepare_cached(
            "WITH RECURSIVE f(name) AS (
                SELECT MIN(function) FROM events WHERE state = 'ready'
                UNION ALL
                SELECT (SELECT MIN(function) FROM events WHERE state = 'ready' AND function > f.name)
                FROM f WHERE f.name IS NOT NULL
             ) SELECT name FROM f WHERE name IS NOT NULL",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    // Start after the function served first last time.
    let start = functions.partition_point(|f| f.as_str() <= cursor.as_str());
    let mut due: Vec<VecDeque<QueuedEvent>> = Vec::new();
    {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE state = 'ready' AND function = ?1 AND due_ms <= ?2
             ORDER BY due_ms LIMIT ?3"
        ))?;
        for f in functions[start..].iter().chain(&functions[..start]) {
            let take = limit.min(budget(f));
            if take == 0 {
                continue;
            }
            let events: VecDeque<QueuedEvent> = stmt
                .query_map(params![f, now_ms, take as i64], row)?
                .collect::<Result<_, _>>()?;
            if !events.is_empty() {
                due.push(events);
            }
        }
    }
    if let Some(first) = due.first().and_then(|q| q.front()) {
        *cursor = first.function.clone();
    }
    let mut claimed = Vec::with_capacity(limit);
    while claimed.len() < limit && due.iter().any(|q| !q.is_empty()) {
        for q in &mut due {
            if claimed.len() == limit {
                break;
            }
            if let Some(e) = q.pop_front() {
                claimed.push(e);
            }
        }
    }
    let mut lease =
        c.prepare_cached("UPDATE events SET leased_until_ms = ?2, due_ms = ?2 WHERE id = ?1")?;
    for e in &claimed {
        lease.execute(params![e.id, now_ms + lease_ms(&e.function).max(1)])?;
    }
    Ok(claimed)
}

#[async_trait]
impl EventQueue for SqliteEventQueue {
    async fn enqueue(&self, e: &QueuedEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO events(id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, creator, trace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9)",
            )?
            .execute(params![e.id, e.request_id, e.function, e.qualifier, e.payload, e.enqueued_ms, e.attempts, e.creator, e.trace])?;
            Ok(())
        })
        .await
    }

    async fn enqueue_once(
        &self,
        e: &QueuedEvent,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, StoreError> {
        let (e, source) = (e.clone(), source.to_string());
        self.write(move |c| {
            let newer = record_fire(c, &source, fire_ms)?;
            if newer == 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "INSERT INTO events(id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, creator, trace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9)",
            )?
            .execute(params![e.id, e.request_id, e.function, e.qualifier, e.payload, e.enqueued_ms, e.attempts, e.creator, e.trace])?;
            Ok(true)
        })
        .await
    }

    async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, StoreError> {
        let source = source.to_string();
        self.write(move |c| Ok(record_fire(c, &source, fire_ms)? > 0))
            .await
    }

    async fn last_fired(&self, source: &str) -> Result<Option<i64>, StoreError> {
        let source = source.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.query_row(
                "SELECT last_ms FROM fired WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn claim_within(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
        budget: BudgetFn,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let cursor = self.cursor.clone();
        self.write(move |c| {
            let mut cursor = cursor.lock().unwrap_or_else(|p| p.into_inner());
            claim_fair(c, now_ms, limit, &lease_ms, &budget, &mut cursor)
        })
        .await
    }

    async fn complete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    async fn retry(
        &self,
        id: &str,
        at_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE events SET due_ms = ?2, attempts = ?3, error = ?4, leased_until_ms = NULL WHERE id = ?1",
            )?
            .execute(params![id, at_ms, attempts, error])?;
            Ok(())
        })
        .await
    }

    async fn dead(
        &self,
        id: &str,
        now_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE events SET state = 'dead', attempts = ?3, error = ?4, failed_at_ms = ?2, leased_until_ms = NULL WHERE id = ?1",
            )?
            .execute(params![id, now_ms, attempts, error])?;
            Ok(())
        })
        .await
    }

    async fn list_dead(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError> {
        let function = function.map(str::to_string);
        with_db(&self.reader, move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE state = 'dead' AND (?1 IS NULL OR function = ?1) ORDER BY failed_at_ms"
            ))?;
            Ok(stmt.query_map([function], row)?.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn replay(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE events SET state = 'ready', attempts = 0, due_ms = ?2, enqueued_ms = ?2, failed_at_ms = NULL, leased_until_ms = NULL
                 WHERE id = ?1 AND state = 'dead'",
                params![id, now_ms],
            )? > 0)
        })
        .await
    }

    async fn stats(&self) -> Result<(u64, Option<i64>), StoreError> {
        with_db(&self.reader, |c| {
            Ok(c.query_row(
                "SELECT COUNT(*), MIN(enqueued_ms) FROM events WHERE state = 'ready'",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?)),
            )?)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        with_db(&self.reader, |c| {
            Ok(c.query_row(
                "SELECT MIN(due_ms) FROM events WHERE state = 'ready'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ms: i64) -> LeaseFn {
        Arc::new(move |_| ms)
    }

    fn event(id: &str) -> QueuedEvent {
        event_of("f", id)
    }

    fn event_of(function: &str, id: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            request_id: format!("r-{id}"),
            function: function.into(),
            qualifier: None,
            payload: b"{\"n\":1}".to_vec(),
            enqueued_ms: 1000,
            attempts: 0,
            error: None,
            failed_at_ms: None,
            creator: None,
            trace: Some(format!("Root=1-0-{id};Lineage=0badcafe:3")),
        }
    }

    #[tokio::test]
    async fn claim_lease_retry_dead_replay() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        q.enqueue(&event("a")).await.unwrap();
        q.enqueue(&event("b")).await.unwrap();
        let got = q.claim(1000, 10, lease(500)).await.unwrap();
        assert_eq!(got.len(), 2);
        // Leased: not claimable again until the lease expires (a crashed worker).
        assert!(q.claim(1200, 10, lease(500)).await.unwrap().is_empty());
        assert_eq!(q.claim(1600, 10, lease(500)).await.unwrap().len(), 2);
        q.complete("a").await.unwrap();
        q.retry("b", 5000, 1, "boom").await.unwrap();
        assert!(q.claim(4000, 10, lease(500)).await.unwrap().is_empty());
        assert_eq!(q.next_due().await.unwrap(), Some(5000));
        let b = q.claim(5000, 10, lease(500)).await.unwrap();
        assert_eq!(b[0].attempts, 1);
        assert_eq!(b[0].trace, event("b").trace, "the trace header is kept");
        q.dead("b", 6000, 3, "boom").await.unwrap();
        let dead = q.list_dead(Some("f")).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].error.as_deref(), Some("boom"));
        // Survives reopening (durable).
        drop(q);
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(q.list_dead(None).await.unwrap().len(), 1);
        assert!(q.replay("b", 7000).await.unwrap());
        let again = q.claim(7000, 10, lease(500)).await.unwrap();
        assert_eq!(again[0].attempts, 0);
    }

    #[tokio::test]
    async fn claims_keep_each_function_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        for n in 0..20 {
            q.enqueue(&event_of("slow", &format!("s{n}")))
                .await
                .unwrap();
        }
        q.enqueue(&event_of("other", "o1")).await.unwrap();
        let budget: BudgetFn = Arc::new(|f| if f == "slow" { 2 } else { usize::MAX });
        let got = q
            .claim_within(1000, 10, lease(500), budget.clone())
            .await
            .unwrap();
        let slow = got.iter().filter(|e| e.function == "slow").count();
        assert_eq!((slow, got.len()), (2, 3), "{got:?}");
        let none: BudgetFn = Arc::new(|_| 0);
        assert!(
            q.claim_within(1000, 10, lease(500), none)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn claims_are_fair_across_functions_and_leases_follow_the_function() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        // A flood for "busy", queued first, then one event each for two others.
        for n in 0..50 {
            q.enqueue(&event_of("busy", &format!("b{n}")))
                .await
                .unwrap();
        }
        q.enqueue(&event_of("quiet", "q0")).await.unwrap();
        q.enqueue(&event_of("rare", "r0")).await.unwrap();
        let leases: LeaseFn = Arc::new(|f| if f == "quiet" { 100 } else { 10_000 });
        let got = q.claim(1000, 3, leases.clone()).await.unwrap();
        let mut functions: Vec<&str> = got.iter().map(|e| e.function.as_str()).collect();
        functions.sort();
        assert_eq!(
            functions,
            ["busy", "quiet", "rare"],
            "one each, not three of the flood"
        );
        // The short lease of "quiet" expires first; the others stay claimed.
        let again = q.claim(1200, 10, leases).await.unwrap();
        assert!(
            again.iter().any(|e| e.id == "q0"),
            "expired lease is claimable"
        );
        assert!(again.iter().all(|e| e.id != "r0"));
        assert_eq!(again.len(), 10);
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_a_failing_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(SqliteEventQueue::open(&dir.path().join("events.db")).unwrap());
        q.enqueue(&event("dup")).await.unwrap();
        let mut tasks = Vec::new();
        for n in 0..200 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let id = if n == 100 {
                    "dup".to_string()
                } else {
                    format!("e{n}")
                };
                q.enqueue(&event(&id)).await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1, "only the duplicate id is refused");
        drop(q);
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(q.stats().await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn a_fire_is_enqueued_once_and_never_for_an_earlier_time() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        assert!(
            q.enqueue_once(&event("f1"), "schedule/s/1", 60_000)
                .await
                .unwrap()
        );
        assert!(
            !q.enqueue_once(&event("f2"), "schedule/s/1", 60_000)
                .await
                .unwrap(),
            "the same fire again (after a crash) is not enqueued twice"
        );
        assert!(
            !q.enqueue_once(&event("f3"), "schedule/s/1", 30_000)
                .await
                .unwrap()
        );
        assert!(
            q.enqueue_once(&event("f4"), "schedule/s/1", 120_000)
                .await
                .unwrap()
        );
        assert!(
            q.enqueue_once(&event("g1"), "schedule/other/1", 60_000)
                .await
                .unwrap()
        );
        drop(q);
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(q.last_fired("schedule/s/1").await.unwrap(), Some(120_000));
        assert_eq!(q.last_fired("schedule/none/1").await.unwrap(), None);
        assert_eq!(q.stats().await.unwrap().0, 3, "f1, f4 and g1");
    }
}
