//! The embedded workflow store: `workflows.db`.
//!
//! Workflows have their own SQLite file so that a busy workflow never
//! contends with the metadata and log writers, and so that its durability
//! setting can differ: `synchronous=FULL`, because a commit is acted upon
//! (see [`crate::WorkflowStore`]), and a commit that an OS crash could still
//! undo would let a workflow act twice on a transition it then forgets. FULL
//! costs one fsync per commit; the group commit below spreads that fsync over
//! every execution writing at that moment.
//!
//! **Group commit** ([`super::group_commit`]): every write goes to one writer
//! thread, which commits all writes waiting at that moment in one transaction,
//! each in its own savepoint (one failing write — a duplicate execution name —
//! is undone alone), and only then answers each caller. Executions write their
//! interpreter snapshot together with the history events of the step in one
//! job.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::group_commit::GroupCommit;
use super::{Db, with_db};
use crate::StoreError;
use crate::workflows::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, StateMachineRecord, StoredEvent,
    WorkflowStore,
};

pub struct SqliteWorkflowStore {
    writes: GroupCommit,
    /// Reads use their own connection: WAL lets them run beside the writer.
    reader: Db,
}

/// The schema of `workflows.db`, one step per version (see [`super::migrate`]).
/// Step 1 is the schema before versioning, so a data dir of that time opens
/// unchanged.
const MIGRATIONS: &[&str] = &["
CREATE TABLE IF NOT EXISTS state_machines (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    type TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    revision TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    arn TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    state_machine_arn TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_ms INTEGER NOT NULL,
    stop_ms INTEGER,
    definition TEXT NOT NULL,
    snapshot TEXT
);
CREATE INDEX IF NOT EXISTS executions_machine ON executions(state_machine_arn, seq);
CREATE INDEX IF NOT EXISTS executions_status ON executions(status, seq);
CREATE TABLE IF NOT EXISTS history (
    execution INTEGER NOT NULL,
    id INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (execution, id)
) WITHOUT ROWID;
"];

impl SqliteWorkflowStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // See the module docs: a commit is acted upon, so it must be on disk.
        let (conn, reader) = super::open_durable(path, "workflows", |_| Ok(()), MIGRATIONS)?;
        Ok(Self {
            writes: GroupCommit::start(conn, "workflows")?,
            reader,
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

const MACHINE_COLUMNS: &str =
    "arn, name, definition, role_arn, type, created_ms, updated_ms, revision";

fn machine_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StateMachineRecord> {
    Ok(StateMachineRecord {
        arn: r.get(0)?,
        name: r.get(1)?,
        definition: r.get(2)?,
        role_arn: r.get(3)?,
        machine_type: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
        revision: r.get(7)?,
    })
}

const EXECUTION_COLUMNS: &str = "seq, arn, name, state_machine_arn, status, input, output, error, cause, start_ms, stop_ms, definition, snapshot";

fn execution_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, ExecutionRecord)> {
    Ok((
        r.get(0)?,
        ExecutionRecord {
            arn: r.get(1)?,
            name: r.get(2)?,
            state_machine_arn: r.get(3)?,
            status: r.get(4)?,
            input: r.get(5)?,
            output: r.get(6)?,
            error: r.get(7)?,
            cause: r.get(8)?,
            start_ms: r.get(9)?,
            stop_ms: r.get(10)?,
            definition: r.get(11)?,
            snapshot: r.get(12)?,
        },
    ))
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: r.get::<_, i64>(0)? as u64,
        previous_id: r.get::<_, i64>(1)? as u64,
        ts_ms: r.get(2)?,
        event_type: r.get(3)?,
        details: r.get(4)?,
    })
}

fn insert_events(c: &Connection, seq: i64, events: &[StoredEvent]) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT OR REPLACE INTO history(execution, id, previous_id, ts_ms, type, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in events {
        stmt.execute(params![
            seq,
            e.id as i64,
            e.previous_id as i64,
            e.ts_ms,
            e.event_type,
            e.details
        ])?;
    }
    Ok(())
}

fn seq_of(c: &Connection, arn: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT seq FROM executions WHERE arn = ?1")?
            .query_row([arn], |r| r.get(0))
            .optional()?,
    )
}

#[async_trait]
impl WorkflowStore for SqliteWorkflowStore {
    async fn create_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError> {
        let m = m.clone();
        self.write(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO state_machines(arn, name, definition, role_arn, type, created_ms, updated_ms, revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![m.arn, m.name, m.definition, m.role_arn, m.machine_type, m.created_ms, m.updated_ms, m.revision],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("state machine {}", m.arn)));
            }
            Ok(())
        })
        .await
    }

    async fn update_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError> {
        let m = m.clone();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE state_machines SET definition = ?2, role_arn = ?3, updated_ms = ?4, revision = ?5 WHERE arn = ?1",
                params![m.arn, m.definition, m.role_arn, m.updated_ms, m.revision],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("state machine {}", m.arn)));
            }
            Ok(())
        })
        .await
    }

    async fn delete_machine(&self, arn: &str) -> Result<bool, StoreError> {
        let arn = arn.to_string();
        self.write(move |c| Ok(c.execute("DELETE FROM state_machines WHERE arn = ?1", [arn])? > 0))
            .await
    }

    async fn get_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>, StoreError> {
        let arn = arn.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {MACHINE_COLUMNS} FROM state_machines WHERE arn = ?1"
            ))?
            .query_row([arn], machine_row)
            .optional()?)
        })
        .await
    }

    async fn list_machines(&self) -> Result<Vec<StateMachineRecord>, StoreError> {
        with_db(&self.reader, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MACHINE_COLUMNS} FROM state_machines ORDER BY name"
            ))?;
            Ok(stmt.query_map([], machine_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn create_execution(
        &self,
        e: &ExecutionRecord,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        let e = e.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO executions(arn, name, state_machine_arn, status, input, output, error, cause, start_ms, stop_ms, definition, snapshot)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    e.arn, e.name, e.state_machine_arn, e.status, e.input, e.output, e.error,
                    e.cause, e.start_ms, e.stop_ms, e.definition, e.snapshot
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("execution {}", e.arn)));
            }
            insert_events(c, c.last_insert_rowid(), &events)
        })
        .await
    }

    async fn save_step(
        &self,
        arn: &str,
        u: ExecutionUpdate,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        let arn = arn.to_string();
        self.write(move |c| {
            let seq = seq_of(c, &arn)?.ok_or_else(|| StoreError::NotFound(arn.clone()))?;
            c.prepare_cached(
                "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_ms = ?6, snapshot = ?7 WHERE seq = ?1",
            )?
            .execute(params![seq, u.status, u.output, u.error, u.cause, u.stop_ms, u.snapshot])?;
            insert_events(c, seq, &events)
        })
        .await
    }

    async fn get_execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let arn = arn.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE arn = ?1"
            ))?
            .query_row([arn], execution_row)
            .optional()?
            .map(|(_, e)| e))
        })
        .await
    }

    async fn list_executions(
        &self,
        q: ExecutionQuery,
    ) -> Result<Vec<(i64, ExecutionRecord)>, StoreError> {
        with_db(&self.reader, move |c| {
            // The snapshot and definition are left out: lists never need them.
            let mut stmt = c.prepare_cached(
                "SELECT seq, arn, name, state_machine_arn, status, input, output, error, cause, start_ms, stop_ms, '', NULL
                 FROM executions
                 WHERE (?1 IS NULL OR state_machine_arn = ?1) AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR seq < ?3)
                 ORDER BY seq DESC LIMIT ?4",
            )?;
            Ok(stmt
                .query_map(
                    params![q.state_machine_arn, q.status, q.before_seq, q.limit as i64],
                    execution_row,
                )?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn running_executions(&self) -> Result<Vec<ExecutionRecord>, StoreError> {
        with_db(&self.reader, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE status = 'RUNNING' ORDER BY seq"
            ))?;
            Ok(stmt
                .query_map([], execution_row)?
                .map(|r| r.map(|(_, e)| e))
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn history(
        &self,
        arn: &str,
        after: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let arn = arn.to_string();
        with_db(&self.reader, move |c| {
            let Some(seq) = seq_of(c, &arn)? else {
                return Err(StoreError::NotFound(arn));
            };
            let sql = if reverse {
                "SELECT id, previous_id, ts_ms, type, details FROM history
                 WHERE execution = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
            } else {
                "SELECT id, previous_id, ts_ms, type, details FROM history
                 WHERE execution = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            };
            let bound = match (after, reverse) {
                (Some(a), _) => a as i64,
                (None, false) => 0,
                (None, true) => i64::MAX,
            };
            let mut stmt = c.prepare_cached(sql)?;
            Ok(stmt
                .query_map(params![seq, bound, limit as i64], event_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(arn: &str) -> ExecutionRecord {
        ExecutionRecord {
            arn: arn.into(),
            name: "e".into(),
            state_machine_arn: "sm".into(),
            status: "RUNNING".into(),
            input: "{}".into(),
            output: None,
            error: None,
            cause: None,
            start_ms: 1,
            stop_ms: None,
            definition: "{}".into(),
            snapshot: Some("{\"s\":1}".into()),
        }
    }

    fn event(id: u64) -> StoredEvent {
        StoredEvent {
            id,
            previous_id: id - 1,
            ts_ms: 1,
            event_type: "PassStateEntered".into(),
            details: "{}".into(),
        }
    }

    #[tokio::test]
    async fn executions_steps_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteWorkflowStore::open(&dir.path().join("w.db")).unwrap();
        store
            .create_execution(&execution("a"), vec![event(1)])
            .await
            .unwrap();
        assert!(matches!(
            store.create_execution(&execution("a"), vec![]).await,
            Err(StoreError::Conflict(_))
        ));
        store
            .save_step(
                "a",
                ExecutionUpdate {
                    status: "SUCCEEDED".into(),
                    output: Some("1".into()),
                    error: None,
                    cause: None,
                    stop_ms: Some(2),
                    snapshot: None,
                },
                (2..=10).map(event).collect(),
            )
            .await
            .unwrap();
        let e = store.get_execution("a").await.unwrap().unwrap();
        assert_eq!(e.status, "SUCCEEDED");
        assert_eq!(e.snapshot, None);
        let page = store.history("a", Some(3), 4, false).await.unwrap();
        assert_eq!(
            page.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        let back = store.history("a", None, 2, true).await.unwrap();
        assert_eq!(back.iter().map(|e| e.id).collect::<Vec<_>>(), vec![10, 9]);
        assert!(store.running_executions().await.unwrap().is_empty());
        let listed = store
            .list_executions(ExecutionQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[tokio::test]
    async fn a_data_dir_from_before_versioning_opens_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflows.db");
        // What every release before versioning ran at open, and one execution.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(MIGRATIONS[0]).unwrap();
        old.execute_batch(
            "INSERT INTO executions(arn, name, state_machine_arn, status, input, start_ms, definition, snapshot)
             VALUES ('a', 'e', 'sm', 'RUNNING', '{}', 1, '{}', '{}');
             INSERT INTO history VALUES (1, 1, 0, 1, 'ExecutionStarted', '{}');",
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            let store = SqliteWorkflowStore::open(&path).unwrap();
            assert_eq!(super::super::user_version(&store.reader), MIGRATIONS.len());
            let running = store.running_executions().await.unwrap();
            assert_eq!(running.len(), 1);
            assert_eq!(store.history("a", None, 10, false).await.unwrap().len(), 1);
        }
    }
}
