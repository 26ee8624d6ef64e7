//! Queues, topics and event source mappings on the cluster's database.
//!
//! Why the data plane is SQL statements and not a transaction script: a
//! send and a receive are bench rows, and on PostgreSQL each round trip and
//! each commit costs. So each is one statement, its own transaction: a send
//! is one multi-row `INSERT` from arrays that also sends its wake-up
//! notice; a receive locks its batch with `FOR UPDATE SKIP LOCKED` (receivers
//! on every node take disjoint messages, none waits on another) and, in the
//! same statement, drops the expired ones, moves the over-received ones to
//! the dead-letter queue and hides the rest under new receipts.
//!
//! Visibility is one column, as in the embedded backend: `visible_ms` is
//! when a message can next be received, so a receive is one index range
//! `(queue, visible_ms, seq)` and a node that dies holding messages needs no
//! recovery: they reappear when their timeout ends.
//!
//! Messages belong to their queue by foreign key (`ON DELETE CASCADE`): a
//! send racing a delete of its queue either lands before the delete (and
//! goes with it) or fails with `NotFound`, so a queue created again under
//! the name starts empty. Subscriptions belong to their topic the same way.
//!
//! Attribute maps are `JSONB` (merged in SQL: `||` sets, `-` removes);
//! message attributes and mapping settings are kept as the text they came
//! as (`TEXT`), since they are handed back byte for byte. Names sort in byte
//! order (`COLLATE "C"`) whatever the database's locale.

mod mappings;
mod queues;
mod topics;

use std::collections::BTreeMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};

use super::{Pg, migrate, notify};
use crate::{Change, ChangeKind, StoreError};

/// [`crate::QueueCatalog`], [`crate::QueueData`], [`crate::Topics`] and
/// [`crate::SourceMappings`] on PostgreSQL.
pub struct PgMessages {
    pg: Pg,
}

/// The schema of the `messages` area, one step per version.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE queues (
    name TEXT COLLATE "C" PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL,
    attributes JSONB NOT NULL
);
CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT COLLATE "C" NOT NULL REFERENCES queues (name) ON DELETE CASCADE,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    md5_body TEXT NOT NULL,
    md5_attributes TEXT,
    sent_ms BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    visible_ms BIGINT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive_ms BIGINT,
    receipt TEXT,
    dead_letter_source TEXT,
    trace TEXT
);
CREATE INDEX messages_visible ON messages (queue, visible_ms, seq);
CREATE TABLE topics (
    name TEXT COLLATE "C" PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    attributes JSONB NOT NULL
);
CREATE TABLE subscriptions (
    arn TEXT COLLATE "C" PRIMARY KEY,
    topic TEXT COLLATE "C" NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    protocol TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    attributes JSONB NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (topic, protocol, endpoint)
);
CREATE INDEX subscriptions_of_topic ON subscriptions (topic, created_ms, arn);
CREATE INDEX subscriptions_by_age ON subscriptions (created_ms, arn);
CREATE TABLE mappings (
    uuid TEXT COLLATE "C" PRIMARY KEY,
    function TEXT NOT NULL,
    source_arn TEXT NOT NULL,
    config TEXT NOT NULL
);
"#];

impl PgMessages {
    /// The stores on `pg`, its schema brought up to date first.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "messages", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }
}

/// Runs `sql`, one write `RETURNING` the key of each row it changed, in a
/// transaction that announces the change as `kind` (with the first row's
/// key) when there is one. Returns whether there was.
async fn write_announced(
    pg: &Pg,
    kind: ChangeKind,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let statement = tx.prepare_cached(sql).await?;
    let changed = tx.query(&statement, params).await?;
    if let Some(row) = changed.first() {
        notify(&tx, kind, row.try_get(0)?).await?;
    }
    tx.commit().await?;
    Ok(!changed.is_empty())
}

/// Runs `insert` (`… ON CONFLICT DO NOTHING RETURNING …`) in a
/// transaction that announces `change` when it stored a row; returns
/// whether it did. `refused` turns the errors the caller expects (a missing
/// parent, a taken key) into theirs; others are backend errors.
async fn insert_announced(
    pg: &Pg,
    (kind, key): (ChangeKind, &str),
    insert: &str,
    params: &[&(dyn ToSql + Sync)],
    refused: impl Fn(&tokio_postgres::Error) -> Option<StoreError>,
) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let statement = tx.prepare_cached(insert).await?;
    let stored = match tx.query_opt(&statement, params).await {
        Ok(row) => row.is_some(),
        Err(e) => return Err(refused(&e).unwrap_or_else(|| e.into())),
    };
    if stored {
        notify(&tx, kind, key).await?;
    }
    tx.commit().await?;
    Ok(stored)
}

/// The payload [`super::notify`] would send, for the statements that send
/// their notice themselves (`pg_notify` inside the one statement of a send
/// or a receive, to spare a transaction's extra round trips).
fn change_payload(kind: ChangeKind, key: &str) -> Result<String, StoreError> {
    crate::check_change_key(key)?;
    Ok(Change {
        kind,
        key: key.to_string(),
    }
    .encode())
}

/// Whether `e` is a foreign-key violation: a row whose queue or topic is
/// not (or no longer) there.
fn is_missing_parent(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// An attribute map as read from a `JSONB` column.
fn attributes_at(
    row: &tokio_postgres::Row,
    idx: usize,
) -> Result<BTreeMap<String, String>, StoreError> {
    let Json(map) = row.try_get::<_, Json<BTreeMap<String, String>>>(idx)?;
    Ok(map)
}

/// An attribute update split into what `JSONB ||` sets and what `JSONB -`
/// removes: the pairs for which `removes(key, value)` holds are removed.
fn split_update(
    attributes: BTreeMap<String, String>,
    removes: impl Fn(&str, &str) -> bool,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut set = BTreeMap::new();
    let mut removed = Vec::new();
    for (k, v) in attributes {
        if removes(&k, &v) {
            removed.push(k);
        } else {
            set.insert(k, v);
        }
    }
    (set, removed)
}
