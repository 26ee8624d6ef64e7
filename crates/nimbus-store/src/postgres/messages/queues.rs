//! Queue definitions and their messages.
//!
//! Why a receive may take more than one statement: expired and redriven
//! messages fill places in a batch without being received, so, as the
//! embedded backend does, a receive that lost some reads again until the
//! batch is full or nothing more is visible. Each statement is atomic on its
//! own (what it redrives and what it receives commit together); the common
//! receive is one statement.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Client;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::deletes;
use super::sends::{self, wake};
use super::{PgMessages, attributes_at, insert_announced, split_update, write_announced};
use crate::messages::{
    QueueCatalog, QueueCounts, QueueData, QueueRecord, ReceiveOptions, StoredMessage,
    VisibilityChange,
};
use crate::{ChangeKind, StoreError};

const QUEUE_COLUMNS: &str = "name, created_ms, modified_ms, attributes";

fn queue_row(r: &Row) -> Result<QueueRecord, StoreError> {
    Ok(QueueRecord {
        name: r.try_get(0)?,
        created_ms: r.try_get(1)?,
        modified_ms: r.try_get(2)?,
        attributes: attributes_at(r, 3)?,
    })
}

/// One receive round: locks up to `$3` visible messages oldest-visible
/// first (skipping those another receiver holds), then gives each its fate
/// in the same statement: expired ones are deleted, those received
/// `$7` times or more move to the dead-letter queue `$6` (when it exists),
/// the rest are hidden until `$2 + $4` under a new receipt. One row per
/// locked message, in order: the message's columns (NULL for those not
/// received), then its fate.
const RECEIVE: &str = "
WITH candidates AS (
    SELECT seq, visible_ms,
           CASE WHEN $2 - sent_ms > $5 THEN 'expire'
                WHEN receive_count >= $7 AND EXISTS (SELECT 1 FROM queues WHERE name = $6)
                     THEN 'redrive'
                ELSE 'receive' END AS fate
    FROM messages
    WHERE queue = $1 AND visible_ms <= $2
    ORDER BY visible_ms, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
),
expired AS (
    DELETE FROM messages m USING candidates c WHERE m.seq = c.seq AND c.fate = 'expire'
),
redriven AS (
    UPDATE messages m
    SET queue = $6, visible_ms = $2, receive_count = 0, first_receive_ms = NULL,
        receipt = NULL, dead_letter_source = $1
    FROM candidates c WHERE m.seq = c.seq AND c.fate = 'redrive'
),
received AS (
    UPDATE messages m
    SET visible_ms = $2 + $4, receive_count = m.receive_count + 1,
        first_receive_ms = COALESCE(m.first_receive_ms, $2),
        receipt = replace(gen_random_uuid()::text, '-', '')
    FROM candidates c WHERE m.seq = c.seq AND c.fate = 'receive'
    RETURNING m.seq, m.id, m.body, m.attributes, m.md5_body, m.md5_attributes, m.sent_ms,
              m.sender_id, m.visible_ms, m.receive_count, m.first_receive_ms, m.receipt,
              m.dead_letter_source, m.trace
)
SELECT r.id, r.body, r.attributes, r.md5_body, r.md5_attributes, r.sent_ms, r.sender_id,
       r.visible_ms, r.receive_count, r.first_receive_ms, r.receipt, r.dead_letter_source,
       r.trace, c.fate
FROM candidates c LEFT JOIN received r ON r.seq = c.seq
ORDER BY c.visible_ms, c.seq";

/// The message of a row of [`RECEIVE`], or `None` for one expired or
/// redriven.
fn received_row(r: &Row) -> Result<Option<StoredMessage>, StoreError> {
    let Some(id) = r.try_get::<_, Option<String>>(0)? else {
        return Ok(None);
    };
    let receive_count: i32 = r.try_get(8)?;
    Ok(Some(StoredMessage {
        id,
        body: r.try_get(1)?,
        attributes: r.try_get(2)?,
        md5_body: r.try_get(3)?,
        md5_attributes: r.try_get(4)?,
        sent_ms: r.try_get(5)?,
        sender_id: r.try_get(6)?,
        visible_ms: r.try_get(7)?,
        receive_count: u32::try_from(receive_count)
            .map_err(|_| StoreError::Corrupt(format!("receive count {receive_count}")))?,
        first_receive_ms: r.try_get(9)?,
        receipt: r.try_get(10)?,
        dead_letter_source: r.try_get(11)?,
        trace: r.try_get(12)?,
    }))
}

impl PgMessages {
    async fn queue_exists(&self, name: &str) -> Result<bool, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached("SELECT 1 FROM queues WHERE name = $1")
            .await?;
        Ok(client.query_opt(&statement, &[&name]).await?.is_some())
    }
}

/// One statement of [`RECEIVE`] for up to `want` messages.
async fn receive_round(
    client: &Client,
    queue: &str,
    o: &ReceiveOptions,
    want: usize,
) -> Result<ReceiveRound, StoreError> {
    let (dead_letter_queue, max_receive_count) = match &o.redrive {
        Some(r) => (
            Some(r.dead_letter_queue.as_str()),
            Some(i32::try_from(r.max_receive_count).unwrap_or(i32::MAX)),
        ),
        None => (None, None),
    };
    let statement = client.prepare_cached(RECEIVE).await?;
    let want = want as i64;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &queue,
        &o.now_ms,
        &want,
        &o.visibility_ms,
        &o.retention_ms,
        &dead_letter_queue,
        &max_receive_count,
    ];
    // A round is a statement of its own: when PostgreSQL breaks a deadlock
    // with a concurrent batch of deletes by failing it, it changed nothing
    // and runs again.
    let rows = crate::postgres::retry_deadlocks(crate::postgres::is_deadlock, || {
        client.query(&statement, &params)
    })
    .await?;
    let mut round = ReceiveRound::default();
    for row in &rows {
        match received_row(row)? {
            Some(message) => round.received.push(message),
            None => round.skipped = true,
        }
        round.redriven |= row.try_get::<_, &str>(13)? == "redrive";
    }
    Ok(round)
}

/// What one [`RECEIVE`] statement did.
#[derive(Default)]
struct ReceiveRound {
    received: Vec<StoredMessage>,
    /// Some locked messages were expired or redriven instead of received.
    skipped: bool,
    /// Some moved to the dead-letter queue.
    redriven: bool,
}

#[async_trait]
impl QueueCatalog for PgMessages {
    async fn create_queue(&self, q: &QueueRecord) -> Result<QueueRecord, StoreError> {
        // A concurrent delete may remove the queue between the insert that
        // lost and the read of the winner: then the next attempt wins.
        loop {
            let stored = insert_announced(
                &self.pg,
                (ChangeKind::Queue, &q.name),
                "INSERT INTO queues (name, created_ms, modified_ms, attributes)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING name",
                &[&q.name, &q.created_ms, &q.modified_ms, &Json(&q.attributes)],
                |_| None,
            )
            .await?;
            if stored {
                return Ok(q.clone());
            }
            if let Some(existing) = self.get_queue(&q.name).await? {
                return Ok(existing);
            }
        }
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM queues WHERE name = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&name])
            .await?
            .as_ref()
            .map(queue_row)
            .transpose()
    }

    async fn list_queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name"))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(queue_row)
            .collect()
    }

    async fn set_queue_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        // An empty redrive policy removes it; any other value is stored.
        let (set, removed) = split_update(attributes, |k, v| v.is_empty() && k == "RedrivePolicy");
        write_announced(
            &self.pg,
            ChangeKind::Queue,
            "UPDATE queues SET attributes = (attributes || $2::jsonb) - $3::text[], modified_ms = $4
             WHERE name = $1 RETURNING name",
            &[&name, &Json(&set), &removed, &now_ms],
        )
        .await
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, StoreError> {
        // The messages go with it (ON DELETE CASCADE).
        write_announced(
            &self.pg,
            ChangeKind::Queue,
            "DELETE FROM queues WHERE name = $1 RETURNING name",
            &[&name],
        )
        .await
    }
}

#[async_trait]
impl QueueData for PgMessages {
    async fn send(&self, queue: &str, messages: Vec<StoredMessage>) -> Result<(), StoreError> {
        if messages.is_empty() {
            // Nothing to insert, so no foreign key to say the queue is missing.
            return match self.queue_exists(queue).await? {
                true => Ok(()),
                false => Err(StoreError::NotFound(format!("queue {queue}"))),
            };
        }
        // Checked before the write: a key the notice cannot carry must not
        // leave the messages sent but unannounced.
        crate::check_change_key(queue)?;
        sends::send(&self.sends, queue, messages).await
    }

    async fn receive(
        &self,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut out = Vec::with_capacity(options.max);
        let mut redriven = false;
        let client = self.pg.client().await?;
        while out.len() < options.max {
            let round = receive_round(&client, queue, &options, options.max - out.len()).await?;
            out.extend(round.received);
            redriven |= round.redriven;
            if !round.skipped {
                break;
            }
        }
        if let Some(redrive) = options.redrive.as_ref().filter(|_| redriven) {
            wake(&client, &redrive.dead_letter_queue).await;
        }
        Ok(out)
    }

    async fn delete_message(&self, queue: &str, id: &str) -> Result<bool, StoreError> {
        deletes::delete(&self.deletes, queue, id).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        id: &str,
        receipt: &str,
        visible_ms: i64,
    ) -> Result<VisibilityChange, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(
                "WITH changed AS (
                    UPDATE messages SET visible_ms = $4
                    WHERE queue = $1 AND id = $2 AND receipt = $3
                    RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM changed),
                        EXISTS (SELECT 1 FROM messages WHERE queue = $1 AND id = $2)",
            )
            .await?;
        let row = client
            .query_one(&statement, &[&queue, &id, &receipt, &visible_ms])
            .await?;
        Ok(match (row.try_get(0)?, row.try_get(1)?) {
            (true, _) => VisibilityChange::Changed,
            (false, true) => VisibilityChange::NotInflight,
            (false, false) => VisibilityChange::NotFound,
        })
    }

    async fn purge(&self, queue: &str) -> Result<u64, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM messages WHERE queue = $1")
            .await?;
        Ok(client.execute(&statement, &[&queue]).await?)
    }

    async fn counts(&self, queue: &str, now_ms: i64) -> Result<QueueCounts, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE visible_ms <= $2),
                        count(*) FILTER (WHERE visible_ms > $2 AND receipt IS NOT NULL),
                        count(*) FILTER (WHERE visible_ms > $2 AND receipt IS NULL)
                 FROM messages WHERE queue = $1",
            )
            .await?;
        let row = client.query_one(&statement, &[&queue, &now_ms]).await?;
        let count = |i: usize| -> Result<u64, StoreError> { Ok(row.try_get::<_, i64>(i)? as u64) };
        Ok(QueueCounts {
            visible: count(0)?,
            in_flight: count(1)?,
            delayed: count(2)?,
        })
    }

    async fn next_visible(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT MIN(visible_ms) FROM messages WHERE queue = $1 AND visible_ms > $2",
            )
            .await?;
        Ok(client
            .query_one(&statement, &[&queue, &now_ms])
            .await?
            .try_get(0)?)
    }
}
