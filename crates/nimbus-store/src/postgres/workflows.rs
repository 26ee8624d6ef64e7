//! State machines and executions in the cluster's database, so that an
//! execution started on one node can be described, listed and resumed on any.
//!
//! A commit is acted upon (see [`crate::WorkflowStore`]), so writes commit
//! synchronously, as the server is configured. An execution's writes are on
//! the hot path of every step, so each is one statement, hence one round trip
//! and one transaction: an execution and its first events, or a step and its
//! events, are parts (data-modifying `WITH` clauses) of one statement that
//! commit or fail together, the events going in as arrays (`UNNEST`).
//!
//! Every node keeps the state machines it runs in memory: creating, updating
//! or deleting one announces it on the change feed from inside its
//! transaction, so the notice goes out if and only if the change commits.
//!
//! Documents (definitions, inputs, snapshots, event details) are `TEXT`, not
//! `JSONB`: they are read back verbatim, as given. Names sort by code point
//! (`COLLATE "C"`), as on the embedded backend, whatever the database's locale.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{Pg, is_unique_violation, migrate, notify};
use crate::workflows::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, StateMachineRecord, StoredEvent,
    WorkflowStore,
};
use crate::{ChangeKind, StoreError};

const MIGRATIONS: &[&str] = &["
CREATE TABLE state_machines (
    arn TEXT PRIMARY KEY,
    name TEXT COLLATE \"C\" NOT NULL,
    definition TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    type TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    revision TEXT NOT NULL
);
CREATE INDEX state_machines_name ON state_machines (name);
CREATE TABLE executions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    state_machine_arn TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_ms BIGINT NOT NULL,
    stop_ms BIGINT,
    definition TEXT NOT NULL,
    snapshot TEXT
);
CREATE INDEX executions_machine ON executions (state_machine_arn, seq);
CREATE INDEX executions_status ON executions (status, seq);
CREATE INDEX executions_machine_status ON executions (state_machine_arn, status, seq);
CREATE TABLE execution_events (
    execution BIGINT NOT NULL,
    id BIGINT NOT NULL,
    previous_id BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL,
    type TEXT NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (execution, id)
);
"];

pub struct PgWorkflowStore {
    pg: Pg,
}

impl PgWorkflowStore {
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "workflows", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }
}

const MACHINE_COLUMNS: &str =
    "arn, name, definition, role_arn, type, created_ms, updated_ms, revision";

fn machine_row(r: &Row) -> Result<StateMachineRecord, StoreError> {
    Ok(StateMachineRecord {
        arn: r.try_get(0)?,
        name: r.try_get(1)?,
        definition: r.try_get(2)?,
        role_arn: r.try_get(3)?,
        machine_type: r.try_get(4)?,
        created_ms: r.try_get(5)?,
        updated_ms: r.try_get(6)?,
        revision: r.try_get(7)?,
    })
}

const EXECUTION_COLUMNS: &str = "seq, arn, name, state_machine_arn, status, input, output, error, cause, start_ms, stop_ms, definition, snapshot";

fn execution_row(r: &Row) -> Result<(i64, ExecutionRecord), StoreError> {
    Ok((
        r.try_get(0)?,
        ExecutionRecord {
            arn: r.try_get(1)?,
            name: r.try_get(2)?,
            state_machine_arn: r.try_get(3)?,
            status: r.try_get(4)?,
            input: r.try_get(5)?,
            output: r.try_get(6)?,
            error: r.try_get(7)?,
            cause: r.try_get(8)?,
            start_ms: r.try_get(9)?,
            stop_ms: r.try_get(10)?,
            definition: r.try_get(11)?,
            snapshot: r.try_get(12)?,
        },
    ))
}

fn event_row(r: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: r.try_get::<_, i64>(0)? as u64,
        previous_id: r.try_get::<_, i64>(1)? as u64,
        ts_ms: r.try_get(2)?,
        event_type: r.try_get(3)?,
        details: r.try_get(4)?,
    })
}

/// A step's events as the columns of `UNNEST` (ids unique: of an id given
/// twice, the last is kept, as if stored one after the other).
struct EventColumns {
    ids: Vec<i64>,
    previous: Vec<i64>,
    times: Vec<i64>,
    types: Vec<String>,
    details: Vec<String>,
}

impl EventColumns {
    fn of(events: Vec<StoredEvent>) -> Self {
        let mut last_of: HashMap<u64, usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            last_of.insert(e.id, i);
        }
        let mut columns = EventColumns {
            ids: Vec::with_capacity(events.len()),
            previous: Vec::with_capacity(events.len()),
            times: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            details: Vec::with_capacity(events.len()),
        };
        for (i, e) in events.into_iter().enumerate() {
            if last_of[&e.id] != i {
                continue;
            }
            columns.ids.push(e.id as i64);
            columns.previous.push(e.previous_id as i64);
            columns.times.push(e.ts_ms);
            columns.types.push(e.event_type);
            columns.details.push(e.details);
        }
        columns
    }
}

/// The events of the execution the statement's `execution` clause returns,
/// from parameters `$n..$n+4`; an id stored again replaces the event.
fn insert_events(first_param: usize) -> String {
    let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| first_param + i);
    format!(
        "INSERT INTO execution_events (execution, id, previous_id, ts_ms, type, details)
         SELECT execution.seq, event.id, event.previous_id, event.ts_ms, event.type, event.details
         FROM execution,
              unnest(${a}::int8[], ${b}::int8[], ${c}::int8[], ${d}::text[], ${e}::text[])
                  AS event(id, previous_id, ts_ms, type, details)
         ON CONFLICT (execution, id) DO UPDATE SET
             previous_id = EXCLUDED.previous_id, ts_ms = EXCLUDED.ts_ms,
             type = EXCLUDED.type, details = EXCLUDED.details"
    )
}

#[async_trait]
impl WorkflowStore for PgWorkflowStore {
    async fn create_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO state_machines ({MACHINE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .await?;
        let inserted = tx
            .execute(
                &insert,
                &[
                    &m.arn,
                    &m.name,
                    &m.definition,
                    &m.role_arn,
                    &m.machine_type,
                    &m.created_ms,
                    &m.updated_ms,
                    &m.revision,
                ],
            )
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("state machine {}", m.arn)));
            }
            other => other?,
        };
        notify(&tx, ChangeKind::StateMachine, &m.arn).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_machine(&self, m: &StateMachineRecord) -> Result<(), StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let update = tx
            .prepare_cached(
                "UPDATE state_machines SET definition = $2, role_arn = $3, updated_ms = $4, revision = $5
                 WHERE arn = $1",
            )
            .await?;
        let n = tx
            .execute(
                &update,
                &[
                    &m.arn,
                    &m.definition,
                    &m.role_arn,
                    &m.updated_ms,
                    &m.revision,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("state machine {}", m.arn)));
        }
        notify(&tx, ChangeKind::StateMachine, &m.arn).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_machine(&self, arn: &str) -> Result<bool, StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let delete = tx
            .prepare_cached("DELETE FROM state_machines WHERE arn = $1")
            .await?;
        if tx.execute(&delete, &[&arn]).await? == 0 {
            return Ok(false);
        }
        notify(&tx, ChangeKind::StateMachine, arn).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_machine(&self, arn: &str) -> Result<Option<StateMachineRecord>, StoreError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {MACHINE_COLUMNS} FROM state_machines WHERE arn = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&arn])
            .await?
            .as_ref()
            .map(machine_row)
            .transpose()
    }

    async fn list_machines(&self) -> Result<Vec<StateMachineRecord>, StoreError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {MACHINE_COLUMNS} FROM state_machines ORDER BY name, arn"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(machine_row)
            .collect()
    }

    async fn create_execution(
        &self,
        e: &ExecutionRecord,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        // A taken ARN inserts no execution, hence no events.
        let sql = format!(
            "WITH execution AS (
                INSERT INTO executions (arn, name, state_machine_arn, status, input, output, error,
                                        cause, start_ms, stop_ms, definition, snapshot)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT (arn) DO NOTHING
                RETURNING seq
             ),
             events AS ({})
             SELECT seq FROM execution",
            insert_events(13)
        );
        let ev = EventColumns::of(events);
        let client = self.pg.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let created = client
            .query_opt(
                &stmt,
                &[
                    &e.arn,
                    &e.name,
                    &e.state_machine_arn,
                    &e.status,
                    &e.input,
                    &e.output,
                    &e.error,
                    &e.cause,
                    &e.start_ms,
                    &e.stop_ms,
                    &e.definition,
                    &e.snapshot,
                    &ev.ids,
                    &ev.previous,
                    &ev.times,
                    &ev.types,
                    &ev.details,
                ],
            )
            .await?;
        match created {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!("execution {}", e.arn))),
        }
    }

    async fn save_step(
        &self,
        arn: &str,
        u: ExecutionUpdate,
        events: Vec<StoredEvent>,
    ) -> Result<(), StoreError> {
        // Without the execution nothing is updated, hence no events stored.
        let sql = format!(
            "WITH execution AS (
                UPDATE executions
                SET status = $2, output = $3, error = $4, cause = $5, stop_ms = $6, snapshot = $7
                WHERE arn = $1
                RETURNING seq
             ),
             events AS ({})
             SELECT seq FROM execution",
            insert_events(8)
        );
        let ev = EventColumns::of(events);
        let client = self.pg.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let saved = client
            .query_opt(
                &stmt,
                &[
                    &arn,
                    &u.status,
                    &u.output,
                    &u.error,
                    &u.cause,
                    &u.stop_ms,
                    &u.snapshot,
                    &ev.ids,
                    &ev.previous,
                    &ev.times,
                    &ev.types,
                    &ev.details,
                ],
            )
            .await?;
        match saved {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(arn.to_string())),
        }
    }

    async fn get_execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE arn = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&arn])
            .await?
            .as_ref()
            .map(|r| execution_row(r).map(|(_, e)| e))
            .transpose()
    }

    async fn list_executions(
        &self,
        q: ExecutionQuery,
    ) -> Result<Vec<(i64, ExecutionRecord)>, StoreError> {
        // One statement per combination of filters, so each keeps a plan on
        // its own index; lists leave out the snapshot and definition.
        let limit = q.limit.min(i64::MAX as usize) as i64;
        let mut filters = Vec::new();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&limit];
        for (column, value) in [
            ("state_machine_arn =", q.state_machine_arn.as_ref()),
            ("status =", q.status.as_ref()),
        ] {
            if let Some(value) = value {
                params.push(value);
                filters.push(format!("AND {column} ${}", params.len()));
            }
        }
        if let Some(before) = &q.before_seq {
            params.push(before);
            filters.push(format!("AND seq < ${}", params.len()));
        }
        let sql = format!(
            "SELECT seq, arn, name, state_machine_arn, status, input, output, error, cause,
                    start_ms, stop_ms, '', NULL::text
             FROM executions WHERE true {}
             ORDER BY seq DESC LIMIT $1",
            filters.join(" ")
        );
        let client = self.pg.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &params)
            .await?
            .iter()
            .map(execution_row)
            .collect()
    }

    async fn running_executions(&self) -> Result<Vec<ExecutionRecord>, StoreError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE status = 'RUNNING' ORDER BY seq"
            ))
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(|r| execution_row(r).map(|(_, e)| e))
            .collect()
    }

    async fn history(
        &self,
        arn: &str,
        after: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // The execution row comes along (a left join), so one round trip
        // tells an execution without events from no execution.
        let sql = if reverse {
            "SELECT e.id, e.previous_id, e.ts_ms, e.type, e.details
             FROM executions x
             LEFT JOIN LATERAL (
                SELECT * FROM execution_events
                WHERE execution = x.seq AND id < $2 ORDER BY id DESC LIMIT $3
             ) e ON true
             WHERE x.arn = $1 ORDER BY e.id DESC"
        } else {
            "SELECT e.id, e.previous_id, e.ts_ms, e.type, e.details
             FROM executions x
             LEFT JOIN LATERAL (
                SELECT * FROM execution_events
                WHERE execution = x.seq AND id > $2 ORDER BY id LIMIT $3
             ) e ON true
             WHERE x.arn = $1 ORDER BY e.id"
        };
        let bound = match (after, reverse) {
            (Some(a), _) => a.min(i64::MAX as u64) as i64,
            (None, false) => 0,
            (None, true) => i64::MAX,
        };
        let limit = limit.min(i64::MAX as usize) as i64;
        let client = self.pg.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, &[&arn, &bound, &limit]).await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(arn.to_string()));
        }
        // An execution without events in range is one row of NULLs.
        rows.iter()
            .filter(|r| r.try_get::<_, Option<i64>>(0).ok().flatten().is_some())
            .map(event_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio_postgres::AsyncMessage;

    use super::*;
    use crate::Change;
    use crate::postgres::CHANGE_CHANNEL;
    use crate::postgres::scratch::ScratchDatabase;

    /// What another node's change feed receives: the changes of the
    /// channel, as they are delivered.
    async fn listen(
        pg: &Pg,
    ) -> (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<Change>,
    ) {
        let (client, mut conn) = pg.dedicated().await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send(Change::decode(n.payload()).unwrap());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
            .await
            .unwrap();
        (client, rx)
    }

    fn machine(name: &str) -> StateMachineRecord {
        StateMachineRecord {
            arn: format!("arn:aws:states:us-east-1:000000000000:stateMachine:{name}"),
            name: name.into(),
            definition: "{}".into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            machine_type: "STANDARD".into(),
            created_ms: 1,
            updated_ms: 1,
            revision: "1".into(),
        }
    }

    /// Every change of a state machine reaches the other nodes, and a
    /// refused one (a taken ARN, a missing machine) announces nothing.
    #[tokio::test]
    async fn machine_changes_are_announced_and_refused_ones_are_not() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        let store = PgWorkflowStore::open(&pg).await.unwrap();
        let (_listener, mut changes) = listen(&pg).await;
        let m = machine("m");
        store.create_machine(&m).await.unwrap();
        assert!(store.create_machine(&m).await.is_err());
        store.update_machine(&m).await.unwrap();
        assert!(store.update_machine(&machine("ghost")).await.is_err());
        assert!(store.delete_machine(&m.arn).await.unwrap());
        assert!(!store.delete_machine(&m.arn).await.unwrap());
        // The last change: every earlier one was delivered before it.
        store.create_machine(&machine("end")).await.unwrap();
        let mut got = Vec::new();
        while let Some(change) = changes.recv().await {
            assert_eq!(change.kind, ChangeKind::StateMachine);
            let end = change.key == machine("end").arn;
            got.push(change.key);
            if end {
                break;
            }
        }
        assert_eq!(
            got,
            [&m.arn, &m.arn, &m.arn, &machine("end").arn].map(String::clone)
        );
    }
}
