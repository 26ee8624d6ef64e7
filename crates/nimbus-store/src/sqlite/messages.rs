//! The embedded backend: `messages.db`, WAL with `synchronous=FULL` (a 200 to
//! SendMessage or Publish means the message survives a power cut), every write
//! through the group-commit writer ([`super::group_commit`]), reads on a connection of their own.
//!
//! Visibility is one column: `visible_ms` is when a message can next be
//! received (its delay, or the end of its visibility timeout), so a receive is
//! one index range `(queue, visible_ms)`, and a crash needs no recovery:
//! hidden messages reappear when their timeout ends, as on SQS.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::group_commit::GroupCommit;
use super::{Db, with_db};
use crate::StoreError;
use crate::messages::{
    QueueCatalog, QueueCounts, QueueData, QueueRecord, ReceiveOptions, SourceMappings,
    StoredMapping, StoredMessage, SubscriptionRecord, TopicRecord, Topics, VisibilityChange,
};

pub struct SqliteMessages {
    writer: GroupCommit,
    reader: Db,
}

/// The schema of `messages.db`, one step per version (see [`super::migrate`]).
/// Step 1 is the schema before versioning, so a data dir of that time is
/// adopted in place (see [`adopt_unversioned`]).
const MIGRATIONS: &[&str] = &["
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    md5_body TEXT NOT NULL,
    md5_attributes TEXT,
    sent_ms INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    visible_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER,
    receipt TEXT,
    dead_letter_source TEXT,
    trace TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages(queue, visible_ms);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    arn TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    protocol TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);
CREATE TABLE IF NOT EXISTS mappings (
    uuid TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    source_arn TEXT NOT NULL,
    config TEXT NOT NULL
);
"];

/// Brings a `messages.db` written before versioning to step 1: releases
/// before it added the sender's trace header.
fn adopt_unversioned(c: &Connection) -> Result<(), StoreError> {
    super::add_missing_columns(c, "messages", &[("trace", "TEXT")])
}

impl SqliteMessages {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let (conn, reader) = super::open_durable(path, "messages", adopt_unversioned, MIGRATIONS)?;
        Ok(Self {
            writer: GroupCommit::start(conn, "messages")?,
            reader,
        })
    }
}

fn to_json(map: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(map).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json(s: &str) -> rusqlite::Result<BTreeMap<String, String>> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRecord> {
    Ok(QueueRecord {
        name: r.get(0)?,
        created_ms: r.get(1)?,
        modified_ms: r.get(2)?,
        attributes: from_json(&r.get::<_, String>(3)?)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, body, attributes, md5_body, md5_attributes, sent_ms, sender_id, visible_ms, receive_count, first_receive_ms, receipt, dead_letter_source, trace";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.get(0)?,
        body: r.get(1)?,
        attributes: r.get(2)?,
        md5_body: r.get(3)?,
        md5_attributes: r.get(4)?,
        sent_ms: r.get(5)?,
        sender_id: r.get(6)?,
        visible_ms: r.get(7)?,
        receive_count: r.get(8)?,
        first_receive_ms: r.get(9)?,
        receipt: r.get(10)?,
        dead_letter_source: r.get(11)?,
        trace: r.get(12)?,
    })
}

fn topic_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TopicRecord> {
    Ok(TopicRecord {
        name: r.get(0)?,
        created_ms: r.get(1)?,
        attributes: from_json(&r.get::<_, String>(2)?)?,
    })
}

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        arn: r.get(0)?,
        topic: r.get(1)?,
        protocol: r.get(2)?,
        endpoint: r.get(3)?,
        attributes: from_json(&r.get::<_, String>(4)?)?,
        created_ms: r.get(5)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "arn, topic, protocol, endpoint, attributes, created_ms";

fn mapping_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMapping> {
    Ok(StoredMapping {
        uuid: r.get(0)?,
        function: r.get(1)?,
        source_arn: r.get(2)?,
        config: r.get(3)?,
    })
}

fn queue_exists(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT 1 FROM queues WHERE name = ?1")?
        .exists([name])?)
}

/// One receive, inside the writer's transaction.
fn receive_in(
    c: &Connection,
    queue: &str,
    o: &ReceiveOptions,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut out = Vec::with_capacity(o.max);
    let mut select = c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = ?1 AND visible_ms <= ?2
         ORDER BY visible_ms, seq LIMIT ?3"
    ))?;
    let dlq_exists = match &o.redrive {
        Some(r) => queue_exists(c, &r.dead_letter_queue)?,
        None => false,
    };
    // Redriven and expired messages leave the range; read again until the
    // batch is full or the queue has nothing more visible.
    loop {
        let want = o.max - out.len();
        let candidates: Vec<StoredMessage> = select
            .query_map(params![queue, o.now_ms, want as i64], message_row)?
            .collect::<Result<_, _>>()?;
        if candidates.is_empty() {
            break;
        }
        let mut skipped = 0;
        for mut m in candidates {
            if o.now_ms - m.sent_ms > o.retention_ms {
                c.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                    .execute([&m.id])?;
                skipped += 1;
                continue;
            }
            if let Some(r) = o.redrive.as_ref().filter(|_| dlq_exists)
                && m.receive_count >= r.max_receive_count
            {
                c.prepare_cached(
                    "UPDATE messages SET queue = ?2, visible_ms = ?3, receive_count = 0,
                     first_receive_ms = NULL, receipt = NULL, dead_letter_source = ?4 WHERE id = ?1",
                )?
                .execute(params![m.id, r.dead_letter_queue, o.now_ms, queue])?;
                skipped += 1;
                continue;
            }
            let receipt = uuid_like();
            m.receive_count += 1;
            m.first_receive_ms = m.first_receive_ms.or(Some(o.now_ms));
            m.visible_ms = o.now_ms + o.visibility_ms;
            m.receipt = Some(receipt);
            c.prepare_cached(
                "UPDATE messages SET visible_ms = ?2, receive_count = ?3, first_receive_ms = ?4, receipt = ?5 WHERE id = ?1",
            )?
            .execute(params![m.id, m.visible_ms, m.receive_count, m.first_receive_ms, m.receipt])?;
            out.push(m);
        }
        if out.len() >= o.max || skipped == 0 {
            break;
        }
    }
    Ok(out)
}

/// A random token (128 bits, hex) for receipts.
fn uuid_like() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

#[async_trait]
impl QueueCatalog for SqliteMessages {
    async fn create_queue(&self, q: &QueueRecord) -> Result<QueueRecord, StoreError> {
        let q = q.clone();
        self.writer
            .write(move |c| {
                let existing = c
                    .prepare_cached(
                        "SELECT name, created_ms, modified_ms, attributes FROM queues WHERE name = ?1",
                    )?
                    .query_row([&q.name], queue_row)
                    .optional()?;
                if let Some(e) = existing {
                    return Ok(e);
                }
                c.prepare_cached(
                    "INSERT INTO queues(name, created_ms, modified_ms, attributes) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![q.name, q.created_ms, q.modified_ms, to_json(&q.attributes)?])?;
                Ok(q)
            })
            .await
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.prepare_cached(
                "SELECT name, created_ms, modified_ms, attributes FROM queues WHERE name = ?1",
            )?
            .query_row([name], queue_row)
            .optional()?)
        })
        .await
    }

    async fn list_queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        with_db(&self.reader, |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, created_ms, modified_ms, attributes FROM queues ORDER BY name",
            )?;
            Ok(stmt.query_map([], queue_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let Some(mut q) = c
                    .prepare_cached(
                        "SELECT name, created_ms, modified_ms, attributes FROM queues WHERE name = ?1",
                    )?
                    .query_row([&name], queue_row)
                    .optional()?
                else {
                    return Ok(false);
                };
                for (k, v) in attributes {
                    if v.is_empty() && k == "RedrivePolicy" {
                        q.attributes.remove(&k);
                    } else {
                        q.attributes.insert(k, v);
                    }
                }
                c.prepare_cached(
                    "UPDATE queues SET attributes = ?2, modified_ms = ?3 WHERE name = ?1",
                )?
                .execute(params![name, to_json(&q.attributes)?, now_ms])?;
                Ok(true)
            })
            .await
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                c.execute("DELETE FROM messages WHERE queue = ?1", [&name])?;
                Ok(c.execute("DELETE FROM queues WHERE name = ?1", [&name])? > 0)
            })
            .await
    }
}

#[async_trait]
impl QueueData for SqliteMessages {
    async fn send(&self, queue: &str, messages: Vec<StoredMessage>) -> Result<(), StoreError> {
        let queue = queue.to_string();
        self.writer
            .write(move |c| {
                if !queue_exists(c, &queue)? {
                    return Err(StoreError::NotFound(format!("queue {queue}")));
                }
                let mut insert = c.prepare_cached(
                    "INSERT INTO messages(id, queue, body, attributes, md5_body, md5_attributes, sent_ms, sender_id, visible_ms, dead_letter_source, trace)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for m in messages {
                    insert.execute(params![
                        m.id,
                        queue,
                        m.body,
                        m.attributes,
                        m.md5_body,
                        m.md5_attributes,
                        m.sent_ms,
                        m.sender_id,
                        m.visible_ms,
                        m.dead_letter_source,
                        m.trace
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn receive(
        &self,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let queue = queue.to_string();
        self.writer
            .write(move |c| receive_in(c, &queue, &options))
            .await
    }

    async fn delete_message(&self, queue: &str, id: &str) -> Result<bool, StoreError> {
        let (queue, id) = (queue.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND id = ?2")?
                        .execute([queue, id])?
                        > 0,
                )
            })
            .await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        id: &str,
        receipt: &str,
        visible_ms: i64,
    ) -> Result<VisibilityChange, StoreError> {
        let (queue, id, receipt) = (queue.to_string(), id.to_string(), receipt.to_string());
        self.writer
            .write(move |c| {
                let current: Option<Option<String>> = c
                    .prepare_cached("SELECT receipt FROM messages WHERE queue = ?1 AND id = ?2")?
                    .query_row([&queue, &id], |r| r.get(0))
                    .optional()?;
                match current {
                    None => Ok(VisibilityChange::NotFound),
                    Some(r) if r.as_deref() != Some(receipt.as_str()) => {
                        Ok(VisibilityChange::NotInflight)
                    }
                    Some(_) => {
                        c.prepare_cached("UPDATE messages SET visible_ms = ?2 WHERE id = ?1")?
                            .execute(params![id, visible_ms])?;
                        Ok(VisibilityChange::Changed)
                    }
                }
            })
            .await
    }

    async fn purge(&self, queue: &str) -> Result<u64, StoreError> {
        let queue = queue.to_string();
        self.writer
            .write(move |c| Ok(c.execute("DELETE FROM messages WHERE queue = ?1", [queue])? as u64))
            .await
    }

    async fn counts(&self, queue: &str, now_ms: i64) -> Result<QueueCounts, StoreError> {
        let queue = queue.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.query_row(
                "SELECT
                   COALESCE(SUM(visible_ms <= ?2), 0),
                   COALESCE(SUM(visible_ms > ?2 AND receipt IS NOT NULL), 0),
                   COALESCE(SUM(visible_ms > ?2 AND receipt IS NULL), 0)
                 FROM messages WHERE queue = ?1",
                params![queue, now_ms],
                |r| {
                    Ok(QueueCounts {
                        visible: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        delayed: r.get::<_, i64>(2)? as u64,
                    })
                },
            )?)
        })
        .await
    }

    async fn next_visible(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let queue = queue.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.query_row(
                "SELECT MIN(visible_ms) FROM messages WHERE queue = ?1 AND visible_ms > ?2",
                params![queue, now_ms],
                |r| r.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }
}

#[async_trait]
impl Topics for SqliteMessages {
    async fn create_topic(&self, t: &TopicRecord) -> Result<TopicRecord, StoreError> {
        let t = t.clone();
        self.writer
            .write(move |c| {
                let existing = c
                    .prepare_cached(
                        "SELECT name, created_ms, attributes FROM topics WHERE name = ?1",
                    )?
                    .query_row([&t.name], topic_row)
                    .optional()?;
                if let Some(e) = existing {
                    return Ok(e);
                }
                c.prepare_cached(
                    "INSERT INTO topics(name, created_ms, attributes) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    t.name,
                    t.created_ms,
                    to_json(&t.attributes)?
                ])?;
                Ok(t)
            })
            .await
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.reader, move |c| {
            Ok(
                c.prepare_cached(
                    "SELECT name, created_ms, attributes FROM topics WHERE name = ?1",
                )?
                .query_row([name], topic_row)
                .optional()?,
            )
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        with_db(&self.reader, |c| {
            let mut stmt =
                c.prepare_cached("SELECT name, created_ms, attributes FROM topics ORDER BY name")?;
            Ok(stmt.query_map([], topic_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_topic_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let Some(mut t) = c
                    .prepare_cached(
                        "SELECT name, created_ms, attributes FROM topics WHERE name = ?1",
                    )?
                    .query_row([&name], topic_row)
                    .optional()?
                else {
                    return Ok(false);
                };
                t.attributes.extend(attributes);
                c.prepare_cached("UPDATE topics SET attributes = ?2 WHERE name = ?1")?
                    .execute(params![name, to_json(&t.attributes)?])?;
                Ok(true)
            })
            .await
    }

    async fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                c.execute("DELETE FROM subscriptions WHERE topic = ?1", [&name])?;
                Ok(c.execute("DELETE FROM topics WHERE name = ?1", [&name])? > 0)
            })
            .await
    }

    async fn subscribe(&self, s: &SubscriptionRecord) -> Result<SubscriptionRecord, StoreError> {
        let s = s.clone();
        self.writer
            .write(move |c| {
                if !c
                    .prepare_cached("SELECT 1 FROM topics WHERE name = ?1")?
                    .exists([&s.topic])?
                {
                    return Err(StoreError::NotFound(format!("topic {}", s.topic)));
                }
                let existing = c
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE topic = ?1 AND protocol = ?2 AND endpoint = ?3"
                    ))?
                    .query_row([&s.topic, &s.protocol, &s.endpoint], subscription_row)
                    .optional()?;
                if let Some(e) = existing {
                    return Ok(e);
                }
                c.prepare_cached(
                    "INSERT INTO subscriptions(arn, topic, protocol, endpoint, attributes, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![s.arn, s.topic, s.protocol, s.endpoint, to_json(&s.attributes)?, s.created_ms])?;
                Ok(s)
            })
            .await
    }

    async fn unsubscribe(&self, arn: &str) -> Result<bool, StoreError> {
        let arn = arn.to_string();
        self.writer
            .write(move |c| Ok(c.execute("DELETE FROM subscriptions WHERE arn = ?1", [arn])? > 0))
            .await
    }

    async fn get_subscription(&self, arn: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        let arn = arn.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE arn = ?1"
            ))?
            .query_row([arn], subscription_row)
            .optional()?)
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let topic = topic.map(str::to_string);
        with_db(&self.reader, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE (?1 IS NULL OR topic = ?1) ORDER BY created_ms, arn"
            ))?;
            Ok(stmt
                .query_map([topic], subscription_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_subscription_attributes(
        &self,
        arn: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let arn = arn.to_string();
        self.writer
            .write(move |c| {
                let Some(mut s) = c
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE arn = ?1"
                    ))?
                    .query_row([&arn], subscription_row)
                    .optional()?
                else {
                    return Ok(false);
                };
                for (k, v) in attributes {
                    if v.is_empty() {
                        s.attributes.remove(&k);
                    } else {
                        s.attributes.insert(k, v);
                    }
                }
                c.prepare_cached("UPDATE subscriptions SET attributes = ?2 WHERE arn = ?1")?
                    .execute(params![arn, to_json(&s.attributes)?])?;
                Ok(true)
            })
            .await
    }
}

#[async_trait]
impl SourceMappings for SqliteMessages {
    async fn put_mapping(&self, m: &StoredMapping) -> Result<(), StoreError> {
        let m = m.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO mappings(uuid, function, source_arn, config) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![m.uuid, m.function, m.source_arn, m.config])?;
                Ok(())
            })
            .await
    }

    async fn get_mapping(&self, uuid: &str) -> Result<Option<StoredMapping>, StoreError> {
        let uuid = uuid.to_string();
        with_db(&self.reader, move |c| {
            Ok(c.prepare_cached(
                "SELECT uuid, function, source_arn, config FROM mappings WHERE uuid = ?1",
            )?
            .query_row([uuid], mapping_row)
            .optional()?)
        })
        .await
    }

    async fn list_mappings(&self) -> Result<Vec<StoredMapping>, StoreError> {
        with_db(&self.reader, |c| {
            let mut stmt = c.prepare_cached(
                "SELECT uuid, function, source_arn, config FROM mappings ORDER BY uuid",
            )?;
            Ok(stmt.query_map([], mapping_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_mapping(&self, uuid: &str) -> Result<bool, StoreError> {
        let uuid = uuid.to_string();
        self.writer
            .write(move |c| Ok(c.execute("DELETE FROM mappings WHERE uuid = ?1", [uuid])? > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, sent_ms: i64) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            body: format!("body {id}"),
            attributes: "{}".into(),
            md5_body: String::new(),
            md5_attributes: None,
            sent_ms,
            sender_id: "s".into(),
            visible_ms: sent_ms,
            receive_count: 0,
            first_receive_ms: None,
            receipt: None,
            dead_letter_source: None,
            trace: None,
        }
    }

    fn queue(name: &str) -> QueueRecord {
        QueueRecord {
            name: name.into(),
            created_ms: 0,
            modified_ms: 0,
            attributes: BTreeMap::new(),
        }
    }

    fn opts(now_ms: i64, redrive: Option<crate::Redrive>) -> ReceiveOptions {
        ReceiveOptions {
            now_ms,
            max: 10,
            visibility_ms: 1000,
            redrive,
            retention_ms: i64::MAX / 2,
        }
    }

    #[tokio::test]
    async fn queues_and_messages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.db");
        let s = SqliteMessages::open(&path).unwrap();
        s.create_queue(&queue("q")).await.unwrap();
        s.send("q", vec![message("a", 0), message("b", 0)])
            .await
            .unwrap();
        let got = s.receive("q", opts(10, None)).await.unwrap();
        assert_eq!(got.len(), 2);
        drop(s);
        let s = SqliteMessages::open(&path).unwrap();
        assert_eq!(s.counts("q", 500).await.unwrap().in_flight, 2);
        let again = s.receive("q", opts(1010, None)).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
    }

    /// `messages.db` as the first release wrote it: no versions, no `trace`.
    const FIRST_RELEASE: &str = "
        CREATE TABLE IF NOT EXISTS queues (
            name TEXT PRIMARY KEY,
            created_ms INTEGER NOT NULL,
            modified_ms INTEGER NOT NULL,
            attributes TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            queue TEXT NOT NULL,
            body TEXT NOT NULL,
            attributes TEXT NOT NULL,
            md5_body TEXT NOT NULL,
            md5_attributes TEXT,
            sent_ms INTEGER NOT NULL,
            sender_id TEXT NOT NULL,
            visible_ms INTEGER NOT NULL,
            receive_count INTEGER NOT NULL DEFAULT 0,
            first_receive_ms INTEGER,
            receipt TEXT,
            dead_letter_source TEXT
        );
        CREATE INDEX IF NOT EXISTS messages_visible ON messages(queue, visible_ms);
        CREATE TABLE IF NOT EXISTS topics (
            name TEXT PRIMARY KEY,
            created_ms INTEGER NOT NULL,
            attributes TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS subscriptions (
            arn TEXT PRIMARY KEY,
            topic TEXT NOT NULL,
            protocol TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            attributes TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);
        CREATE TABLE IF NOT EXISTS mappings (
            uuid TEXT PRIMARY KEY,
            function TEXT NOT NULL,
            source_arn TEXT NOT NULL,
            config TEXT NOT NULL
        );
        INSERT INTO queues VALUES ('q', 0, 0, '{}');
        INSERT INTO messages(id, queue, body, attributes, md5_body, sent_ms, sender_id, visible_ms)
            VALUES ('old', 'q', 'hello', '{}', 'md5', 0, 's', 0);
        INSERT INTO topics VALUES ('t', 0, '{}');
        INSERT INTO mappings VALUES ('m-1', 'f', 'arn:aws:sqs:r:a:q', '{}');";

    #[tokio::test]
    async fn a_data_dir_from_before_versioning_opens_in_place() {
        for extra in ["", "ALTER TABLE messages ADD COLUMN trace TEXT;"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("messages.db");
            let old = Connection::open(&path).unwrap();
            old.execute_batch(FIRST_RELEASE).unwrap();
            old.execute_batch(extra).unwrap();
            drop(old);
            for _ in 0..2 {
                let s = SqliteMessages::open(&path).unwrap();
                assert_eq!(super::super::user_version(&s.reader), MIGRATIONS.len());
                assert_eq!(s.list_queues().await.unwrap().len(), 1);
                assert_eq!(s.list_topics().await.unwrap().len(), 1);
                assert_eq!(s.list_mappings().await.unwrap().len(), 1);
                assert_eq!(s.counts("q", 0).await.unwrap().visible, 1);
            }
            let s = SqliteMessages::open(&path).unwrap();
            let got = s.receive("q", opts(10, None)).await.unwrap();
            assert_eq!(
                (got[0].body.as_str(), got[0].trace.as_deref()),
                ("hello", None)
            );
            let mut new = message("new", 0);
            new.trace = Some("Root=1-0-new".into());
            s.send("q", vec![new]).await.unwrap();
            let got = s.receive("q", opts(20, None)).await.unwrap();
            assert_eq!(got[0].trace.as_deref(), Some("Root=1-0-new"));
        }
    }

    #[tokio::test]
    async fn subscriptions_are_unique_and_die_with_their_topic() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteMessages::open(&dir.path().join("messages.db")).unwrap();
        let topic = TopicRecord {
            name: "t".into(),
            created_ms: 0,
            attributes: BTreeMap::new(),
        };
        s.create_topic(&topic).await.unwrap();
        let sub = |arn: &str| SubscriptionRecord {
            arn: arn.into(),
            topic: "t".into(),
            protocol: "sqs".into(),
            endpoint: "arn:aws:sqs:r:a:q".into(),
            attributes: BTreeMap::new(),
            created_ms: 0,
        };
        assert_eq!(s.subscribe(&sub("one")).await.unwrap().arn, "one");
        assert_eq!(s.subscribe(&sub("two")).await.unwrap().arn, "one");
        assert_eq!(s.list_subscriptions(Some("t")).await.unwrap().len(), 1);
        assert!(s.delete_topic("t").await.unwrap());
        assert!(s.list_subscriptions(None).await.unwrap().is_empty());
    }
}
