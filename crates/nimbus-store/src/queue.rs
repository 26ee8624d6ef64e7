//! The durable queue of asynchronous invocations.
//!
//! An `Event` invocation is acknowledged (202) only after it is in this queue and
//! the write is fsynced: the queue has its own SQLite file with
//! `synchronous=FULL`, so a power cut or SIGKILL right after the 202 loses
//! nothing. Workers *claim* events with a lease; a claim that is never completed
//! (the server died mid-invocation) expires and the event runs again: delivery is
//! at least once, as on Lambda. The trait is the seam a cluster backend (NATS
//! JetStream, PostgreSQL) implements.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::StoreError;
use crate::sqlite::{Db, with_db};

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
    /// Claims up to `limit` due events for `lease_ms`.
    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
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
    db: Db,
}

impl SqliteEventQueue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
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
             CREATE INDEX IF NOT EXISTS events_due ON events(state, due_ms);",
        )?;
        // Claims of a previous run died with it (the data dir lock guarantees no
        // other process uses this queue): their events are due again now.
        conn.execute(
            "UPDATE events SET leased_until_ms = NULL WHERE leased_until_ms IS NOT NULL",
            [],
        )?;
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
        })
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
    })
}

const COLUMNS: &str =
    "id, request_id, function, qualifier, payload, enqueued_ms, attempts, error, failed_at_ms";

#[async_trait]
impl EventQueue for SqliteEventQueue {
    async fn enqueue(&self, e: &QueuedEvent) -> Result<(), StoreError> {
        let e = e.clone();
        with_db(&self.db, move |c| {
            c.execute(
                "INSERT INTO events(id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
                params![e.id, e.request_id, e.function, e.qualifier, e.payload, e.enqueued_ms, e.attempts],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        with_db(&self.db, move |c| {
            let tx = c.transaction()?;
            let events = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM events
                     WHERE state = 'ready' AND due_ms <= ?1 AND (leased_until_ms IS NULL OR leased_until_ms < ?1)
                     ORDER BY due_ms LIMIT ?2"
                ))?;
                stmt.query_map(params![now_ms, limit as i64], row)?.collect::<Result<Vec<_>, _>>()?
            };
            for e in &events {
                tx.execute("UPDATE events SET leased_until_ms = ?2 WHERE id = ?1", params![e.id, now_ms + lease_ms])?;
            }
            tx.commit()?;
            Ok(events)
        })
        .await
    }

    async fn complete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        with_db(&self.db, move |c| {
            c.execute("DELETE FROM events WHERE id = ?1", [id])?;
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
        with_db(&self.db, move |c| {
            c.execute(
                "UPDATE events SET due_ms = ?2, attempts = ?3, error = ?4, leased_until_ms = NULL WHERE id = ?1",
                params![id, at_ms, attempts, error],
            )?;
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
        with_db(&self.db, move |c| {
            c.execute(
                "UPDATE events SET state = 'dead', attempts = ?3, error = ?4, failed_at_ms = ?2, leased_until_ms = NULL WHERE id = ?1",
                params![id, now_ms, attempts, error],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_dead(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError> {
        let function = function.map(str::to_string);
        with_db(&self.db, move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE state = 'dead' AND (?1 IS NULL OR function = ?1) ORDER BY failed_at_ms"
            ))?;
            Ok(stmt.query_map([function], row)?.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn replay(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        with_db(&self.db, move |c| {
            Ok(c.execute(
                "UPDATE events SET state = 'ready', attempts = 0, due_ms = ?2, enqueued_ms = ?2, failed_at_ms = NULL, leased_until_ms = NULL
                 WHERE id = ?1 AND state = 'dead'",
                params![id, now_ms],
            )? > 0)
        })
        .await
    }

    async fn stats(&self) -> Result<(u64, Option<i64>), StoreError> {
        with_db(&self.db, |c| {
            Ok(c.query_row(
                "SELECT COUNT(*), MIN(enqueued_ms) FROM events WHERE state = 'ready'",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?)),
            )?)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        with_db(&self.db, |c| {
            Ok(c.query_row(
                "SELECT MIN(MAX(due_ms, COALESCE(leased_until_ms, 0))) FROM events WHERE state = 'ready'",
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

    fn event(id: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            request_id: format!("r-{id}"),
            function: "f".into(),
            qualifier: None,
            payload: b"{\"n\":1}".to_vec(),
            enqueued_ms: 1000,
            attempts: 0,
            error: None,
            failed_at_ms: None,
        }
    }

    #[tokio::test]
    async fn claim_lease_retry_dead_replay() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        q.enqueue(&event("a")).await.unwrap();
        q.enqueue(&event("b")).await.unwrap();
        let got = q.claim(1000, 500, 10).await.unwrap();
        assert_eq!(got.len(), 2);
        // Leased: not claimable again until the lease expires (a crashed worker).
        assert!(q.claim(1200, 500, 10).await.unwrap().is_empty());
        assert_eq!(q.claim(1600, 500, 10).await.unwrap().len(), 2);
        q.complete("a").await.unwrap();
        q.retry("b", 5000, 1, "boom").await.unwrap();
        assert!(q.claim(4000, 500, 10).await.unwrap().is_empty());
        assert_eq!(q.next_due().await.unwrap(), Some(5000));
        let b = q.claim(5000, 500, 10).await.unwrap();
        assert_eq!(b[0].attempts, 1);
        q.dead("b", 6000, 3, "boom").await.unwrap();
        let dead = q.list_dead(Some("f")).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].error.as_deref(), Some("boom"));
        // Survives reopening (durable).
        drop(q);
        let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(q.list_dead(None).await.unwrap().len(), 1);
        assert!(q.replay("b", 7000).await.unwrap());
        let again = q.claim(7000, 500, 10).await.unwrap();
        assert_eq!(again[0].attempts, 0);
    }
}
