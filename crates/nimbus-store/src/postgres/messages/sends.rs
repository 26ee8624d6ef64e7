//! Sends, group-committed ([`super::group`]): the sends waiting on a node
//! share one multi-row `INSERT`.
//!
//! A batch commits all or nothing: when it fails (a queue deleted under it,
//! a duplicate message id) its sends are retried one by one, so each caller
//! gets its own answer and no send fails for another's fault.
//!
//! Wake-ups follow the commit (see the parent module for why), one per
//! queue of the batch, before the senders are answered. A failed wake-up
//! does not fail the send: its messages are stored, and a caller told
//! otherwise would send them again.

use std::collections::BTreeSet;

use deadpool_postgres::Client;
use tokio::sync::oneshot;

use super::group::{Group, Job, stopped};
use super::is_missing_parent;
use crate::messages::StoredMessage;
use crate::postgres::{Pg, is_unique_violation, notify};
use crate::{ChangeKind, StoreError};

/// Stores messages, one row per array element, in array order (`seq`
/// breaks ties in receive order).
const SEND: &str = "
INSERT INTO messages (queue, id, body, attributes, md5_body, md5_attributes, sent_ms,
                      sender_id, visible_ms, dead_letter_source, trace)
SELECT queue, id, body, attributes, md5_body, md5_attributes, sent_ms,
       sender_id, visible_ms, dead_letter_source, trace
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[])
     WITH ORDINALITY AS m(queue, id, body, attributes, md5_body, md5_attributes, sent_ms,
                          sender_id, visible_ms, dead_letter_source, trace, n)
ORDER BY n";

/// A send waiting for a writer.
pub(super) struct SendJob {
    queue: String,
    messages: Vec<StoredMessage>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl Job for SendJob {
    fn rows(&self) -> usize {
        self.messages.len()
    }
}

/// Stores `messages` in `queue` (which must exist) with the sends waiting
/// alongside, and wakes the queue's long polls.
pub(super) async fn send(
    sends: &Group<SendJob>,
    queue: &str,
    messages: Vec<StoredMessage>,
) -> Result<(), StoreError> {
    let (done, answer) = oneshot::channel();
    sends.submit(SendJob {
        queue: queue.to_string(),
        messages,
        done,
    })?;
    answer.await.map_err(|_| stopped())?
}

/// Stores a batch, wakes its queues, then answers its senders (so a send
/// that returned has woken the polls).
pub(super) async fn write_batch(pg: Pg, batch: Vec<SendJob>) {
    if batch.len() > 1 {
        let rows = Rows::of(
            batch
                .iter()
                .map(|job| (job.queue.as_str(), &job.messages[..])),
        );
        if let Ok(client) = insert(&pg, &rows).await {
            let queues: BTreeSet<&str> = rows.queue.iter().copied().collect();
            for queue in queues {
                wake(&client, queue).await;
            }
            drop(rows);
            for job in batch {
                let _ = job.done.send(Ok(()));
            }
            return;
        }
    }
    for job in batch {
        let sent = send_alone(&pg, &job.queue, &job.messages).await;
        if let Ok(client) = &sent {
            wake(client, &job.queue).await;
        }
        let _ = job.done.send(sent.map(drop));
    }
}

/// One send in a statement of its own, its failure named for its caller;
/// returns the connection, for the wake-up.
async fn send_alone(
    pg: &Pg,
    queue: &str,
    messages: &[StoredMessage],
) -> Result<Client, StoreError> {
    match insert(pg, &Rows::of([(queue, messages)])).await {
        Ok(client) => Ok(client),
        Err(Refused::Db(e)) if is_missing_parent(&e) => {
            Err(StoreError::NotFound(format!("queue {queue}")))
        }
        Err(Refused::Db(e)) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "a message id sent to queue {queue}"
        ))),
        Err(Refused::Db(e)) => Err(e.into()),
        Err(Refused::Pool(e)) => Err(e),
    }
}

/// Why an insert failed: the statement, or no connection to run it on.
enum Refused {
    Db(tokio_postgres::Error),
    Pool(StoreError),
}

/// Runs [`SEND`]; returns the connection, for the wake-ups.
async fn insert(pg: &Pg, rows: &Rows<'_>) -> Result<Client, Refused> {
    let client = pg.client().await.map_err(Refused::Pool)?;
    let statement = client.prepare_cached(SEND).await.map_err(Refused::Db)?;
    client
        .execute(
            &statement,
            &[
                &rows.queue,
                &rows.id,
                &rows.body,
                &rows.attributes,
                &rows.md5_body,
                &rows.md5_attributes,
                &rows.sent_ms,
                &rows.sender_id,
                &rows.visible_ms,
                &rows.dead_letter_source,
                &rows.trace,
            ],
        )
        .await
        .map_err(Refused::Db)?;
    Ok(client)
}

/// Wakes the long polls of `queue` on every node, after the commit that
/// gave it messages. A failure is logged, not returned: the messages are
/// stored, and the polls find them at their next look.
pub(super) async fn wake(client: &Client, queue: &str) {
    if let Err(e) = notify(client, ChangeKind::Messages, queue).await {
        tracing::warn!(queue, error = %e, "could not wake the queue's long polls");
    }
}

/// The columns of a batch, as the arrays [`SEND`] unnests (borrowed: a
/// batch that fails is sent again one by one).
#[derive(Default)]
struct Rows<'a> {
    queue: Vec<&'a str>,
    id: Vec<&'a str>,
    body: Vec<&'a str>,
    attributes: Vec<&'a str>,
    md5_body: Vec<&'a str>,
    md5_attributes: Vec<Option<&'a str>>,
    sent_ms: Vec<i64>,
    sender_id: Vec<&'a str>,
    visible_ms: Vec<i64>,
    dead_letter_source: Vec<Option<&'a str>>,
    trace: Vec<Option<&'a str>>,
}

impl<'a> Rows<'a> {
    fn of(sends: impl IntoIterator<Item = (&'a str, &'a [StoredMessage])>) -> Self {
        let mut rows = Rows::default();
        for (queue, messages) in sends {
            for m in messages {
                rows.push(queue, m);
            }
        }
        rows
    }

    fn push(&mut self, queue: &'a str, m: &'a StoredMessage) {
        self.queue.push(queue);
        self.id.push(&m.id);
        self.body.push(&m.body);
        self.attributes.push(&m.attributes);
        self.md5_body.push(&m.md5_body);
        self.md5_attributes.push(m.md5_attributes.as_deref());
        self.sent_ms.push(m.sent_ms);
        self.sender_id.push(&m.sender_id);
        self.visible_ms.push(m.visible_ms);
        self.dead_letter_source
            .push(m.dead_letter_source.as_deref());
        self.trace.push(m.trace.as_deref());
    }
}
