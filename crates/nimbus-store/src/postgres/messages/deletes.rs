//! Message deletes, group-committed ([`super::group`]): every received
//! message is deleted once processed (a `DeleteMessage` per message, or a
//! batch's worth one by one), so deletes are as many as sends.
//!
//! Each caller learns whether its message was there: a batch returns the
//! ids it removed, and when one id comes twice in a batch only the first
//! delete found it, as if they had run one after the other.

use std::collections::HashSet;

use tokio::sync::oneshot;

use super::group::{Group, Job, stopped};
use crate::StoreError;
use crate::postgres::Pg;

/// Deletes the messages `($1[i], $2[i])` that are there; returns their ids.
const DELETE: &str = "
DELETE FROM messages m USING UNNEST($1::text[], $2::text[]) AS d(queue, id)
WHERE m.queue = d.queue AND m.id = d.id
RETURNING m.id";

/// A delete waiting for a writer.
pub(super) struct DeleteJob {
    queue: String,
    id: String,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

impl Job for DeleteJob {
    fn rows(&self) -> usize {
        1
    }
}

/// Deletes message `id` of `queue` with the deletes waiting alongside;
/// returns whether it was there.
pub(super) async fn delete(
    deletes: &Group<DeleteJob>,
    queue: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let (done, answer) = oneshot::channel();
    deletes.submit(DeleteJob {
        queue: queue.to_string(),
        id: id.to_string(),
        done,
    })?;
    answer.await.map_err(|_| stopped())?
}

/// Deletes a batch and answers each caller; a batch that fails is retried
/// delete by delete, so each caller gets its own answer.
pub(super) async fn write_batch(pg: Pg, batch: Vec<DeleteJob>) {
    if batch.len() > 1
        && let Ok(mut deleted) = delete_all(&pg, &batch).await
    {
        for job in batch {
            let _ = job.done.send(Ok(deleted.remove(&job.id)));
        }
        return;
    }
    for job in batch {
        let found = delete_all(&pg, std::slice::from_ref(&job))
            .await
            .map(|deleted| !deleted.is_empty());
        let _ = job.done.send(found);
    }
}

/// Runs [`DELETE`] for `jobs`; returns the ids it removed.
async fn delete_all(pg: &Pg, jobs: &[DeleteJob]) -> Result<HashSet<String>, StoreError> {
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let client = pg.client().await?;
    let statement = client.prepare_cached(DELETE).await?;
    // A statement of its own: failed by a deadlock with a concurrent
    // receive, it changed nothing and runs again.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&queues, &ids];
    let rows = crate::postgres::retry_deadlocks(crate::postgres::is_deadlock, || {
        client.query(&statement, &params)
    })
    .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}
