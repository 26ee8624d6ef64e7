//! The embedded event queue: `events.db`, its own SQLite file with
//! `synchronous=FULL` (a 202 means the event survives a power cut), one type
//! implementing [`InvocationQueue`], [`DeadLetters`] and [`FireLedger`] on one
//! `events` table (a dead letter is a row in state `dead`) and a `fired` table.
//!
//! **Group commit** ([`super::group_commit`]): one fsync per event would cap
//! the queue near a thousand events a second; concurrent writes share one
//! transaction and one fsync instead, and each caller hears back only once it
//! is on disk.
//!
//! A claimed event's `due_ms` moves to the end of its lease, which keeps the
//! `(state, function, due_ms)` index exact: claims never scan past running
//! events, and an expired lease needs no sweep (the event is simply due).
//!
//! **Single node.** The data dir lock guarantees that no other process uses
//! this file, so at open the leases of a previous run belong to workers that
//! died with it: they are released at once instead of at their expiry (which
//! can be a function timeout away). A shared backend cannot know that a lease
//! holder died, and relies on lease expiry alone.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::group_commit::GroupCommit;
use super::{Db, with_db};
use crate::StoreError;
use crate::queue::{BudgetFn, DeadLetters, FireLedger, InvocationQueue, LeaseFn, QueuedEvent};

/// The schema of `events.db`, one step per version (see [`super::migrate`]).
/// Step 1 is the schema before versioning, so a data dir of that time is
/// adopted in place (see [`adopt_unversioned`]).
const MIGRATIONS: &[&str] = &[
    // v1: events (ready, leased or dead) and the schedules' fire ledger.
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
        failed_at_ms INTEGER,
        creator TEXT,
        trace TEXT
     );
     CREATE TABLE IF NOT EXISTS fired (
        source TEXT PRIMARY KEY,
        last_ms INTEGER NOT NULL
     );
     DROP INDEX IF EXISTS events_due;
     CREATE INDEX IF NOT EXISTS events_function_due ON events(state, function, due_ms);
     CREATE INDEX IF NOT EXISTS events_due_ms ON events(state, due_ms);",
];

/// Brings an `events.db` written before versioning to step 1: releases
/// before it added the `creator` and then the `trace` column.
fn adopt_unversioned(c: &Connection) -> Result<(), StoreError> {
    super::add_missing_columns(c, "events", &[("creator", "TEXT"), ("trace", "TEXT")])
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
        // Every commit reaches the disk before the caller is told "accepted".
        let (conn, reader) =
            super::open_durable(path, "event queue", adopt_unversioned, MIGRATIONS)?;
        // Claims of a previous run died with it (single node, see the module
        // docs): their events are due again now.
        conn.execute(
            "UPDATE events SET leased_until_ms = NULL, due_ms = ?1 WHERE leased_until_ms IS NOT NULL",
            [chrono::Utc::now().timestamp_millis()],
        )?;
        Ok(Self {
            writes: GroupCommit::start(conn, "event queue")?,
            reader,
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

/// Stores a new event, due at its enqueue time.
fn insert_event(c: &Connection, e: &QueuedEvent) -> Result<(), StoreError> {
    let inserted = c.prepare_cached(
        "INSERT INTO events(id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, creator, trace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9) ON CONFLICT(id) DO NOTHING",
    )?
    .execute(params![e.id, e.request_id, e.function, e.qualifier, e.payload, e.enqueued_ms, e.attempts, e.creator, e.trace])?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("event {}", e.id)));
    }
    Ok(())
}

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
impl InvocationQueue for SqliteEventQueue {
    async fn enqueue(&self, e: &QueuedEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.write(move |c| insert_event(c, &e)).await
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
}

#[async_trait]
impl DeadLetters for SqliteEventQueue {
    async fn list(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError> {
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
}

#[async_trait]
impl FireLedger for SqliteEventQueue {
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
            insert_event(c, &e)?;
            Ok(true)
        })
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

    async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, StoreError> {
        let source = source.to_string();
        self.write(move |c| Ok(record_fire(c, &source, fire_ms)? > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            request_id: format!("r-{id}"),
            function: "f".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            enqueued_ms: 1000,
            attempts: 0,
            error: None,
            failed_at_ms: None,
            creator: None,
            trace: Some("Root=1-0-x".into()),
        }
    }

    fn lease(ms: i64) -> LeaseFn {
        Arc::new(move |_| ms)
    }

    #[tokio::test]
    async fn events_dead_letters_and_fires_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let q = SqliteEventQueue::open(&path).unwrap();
        q.enqueue(&event("a")).await.unwrap();
        q.enqueue(&event("b")).await.unwrap();
        q.claim(1000, 1, lease(500)).await.unwrap();
        q.dead("a", 1200, 3, "boom").await.unwrap();
        q.mark_fired("s", 60_000).await.unwrap();
        drop(q);
        let q = SqliteEventQueue::open(&path).unwrap();
        assert_eq!(q.list(None).await.unwrap().len(), 1);
        assert_eq!(q.last_fired("s").await.unwrap(), Some(60_000));
        assert_eq!(q.stats().await.unwrap().0, 1);
    }

    #[tokio::test]
    async fn leases_of_a_previous_run_are_released_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let q = SqliteEventQueue::open(&path).unwrap();
        q.enqueue(&event("a")).await.unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert_eq!(q.claim(now, 10, lease(3_600_000)).await.unwrap().len(), 1);
        drop(q);
        // The worker died with the process: its event is due again at once,
        // not an hour later.
        let q = SqliteEventQueue::open(&path).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert_eq!(q.claim(now, 10, lease(500)).await.unwrap().len(), 1);
    }

    /// `events.db` as the first release wrote it: no versions, no `creator`
    /// or `trace` columns, the old index.
    const FIRST_RELEASE: &str = "
        CREATE TABLE IF NOT EXISTS events (
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
        CREATE INDEX IF NOT EXISTS events_due ON events(state, due_ms);
        INSERT INTO events(id, request_id, function, payload, enqueued_ms, due_ms)
            VALUES ('old', 'r-old', 'f', X'7B7D', 1000, 1000);
        INSERT INTO events(id, request_id, function, payload, enqueued_ms, due_ms, state, error, failed_at_ms)
            VALUES ('gone', 'r-gone', 'f', X'7B7D', 1000, 1000, 'dead', 'boom', 2000);
        INSERT INTO fired VALUES ('schedule/s/1', 60000);";

    #[tokio::test]
    async fn a_data_dir_from_before_versioning_opens_in_place() {
        for extra in [
            "",
            "ALTER TABLE events ADD COLUMN creator TEXT; ALTER TABLE events ADD COLUMN trace TEXT;",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.db");
            let old = Connection::open(&path).unwrap();
            old.execute_batch(FIRST_RELEASE).unwrap();
            old.execute_batch(extra).unwrap();
            drop(old);
            for _ in 0..2 {
                let q = SqliteEventQueue::open(&path).unwrap();
                assert_eq!(super::super::user_version(&q.reader), MIGRATIONS.len());
                assert_eq!(q.list(None).await.unwrap()[0].id, "gone");
                assert_eq!(q.last_fired("schedule/s/1").await.unwrap(), Some(60_000));
                assert_eq!(q.next_due().await.unwrap(), Some(1000));
            }
            let q = SqliteEventQueue::open(&path).unwrap();
            let got = q.claim(1000, 10, lease(500)).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(
                (got[0].id.as_str(), got[0].creator.as_deref()),
                ("old", None)
            );
            q.enqueue(&event("new")).await.unwrap();
            q.complete("old").await.unwrap();
            assert_eq!(q.claim(1000, 10, lease(500)).await.unwrap(), [event("new")]);
        }
    }
}
