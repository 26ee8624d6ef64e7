//! Group commit: the writes of one kind waiting on a node share one
//! statement and one commit.
//!
//! Why: every commit waits for a WAL flush. Writes committing on their own
//! each hold a pooled connection through their flush, so a node would take
//! at most its pool size of them per flush time, and starve its other
//! stores of connections meanwhile. A few writers that each take every
//! write waiting and store them in one statement pay one flush per batch
//! however many callers wait, as the embedded backend's group commit does
//! with SQLite. Several writers, because a batch waits for its flush: the
//! next batches fill and flush meanwhile (PostgreSQL groups their flushes),
//! and at low load a write finds a writer idle and goes at once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::StoreError;
use crate::postgres::Pg;

/// Writers per group.
const WRITERS: usize = 4;

/// Most rows one batch carries.
const MAX_BATCH_ROWS: usize = 1_000;

/// A write waiting for a writer.
pub(super) trait Job: Send + 'static {
    /// How many rows it writes.
    fn rows(&self) -> usize;
}

/// A group's queue of writes; its writers stop when it is dropped.
pub(super) struct Group<J> {
    pending: mpsc::UnboundedSender<J>,
}

impl<J: Job> Group<J> {
    /// Starts the writers (on the current Tokio runtime); `write` stores a
    /// batch and answers each of its jobs.
    pub(super) fn start<W, F>(pg: &Pg, write: W) -> Self
    where
        W: Fn(Pg, Vec<J>) -> F + Clone + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let (pending, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            let (pg, waiting, write) = (pg.clone(), waiting.clone(), write.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&waiting).await {
                    write(pg.clone(), batch).await;
                }
            });
        }
        Group { pending }
    }

    /// Hands `job` to the writers.
    pub(super) fn submit(&self, job: J) -> Result<(), StoreError> {
        self.pending.send(job).map_err(|_| stopped())
    }
}

/// What a caller gets when the writers are gone (the runtime shut down).
pub(super) fn stopped() -> StoreError {
    StoreError::Task("the message writers stopped".into())
}

/// The jobs waiting, at least one (up to [`MAX_BATCH_ROWS`] rows unless
/// the first alone has more); `None` once the group is dropped.
async fn next_batch<J: Job>(waiting: &Mutex<mpsc::UnboundedReceiver<J>>) -> Option<Vec<J>> {
    let mut waiting = waiting.lock().await;
    let first = waiting.recv().await?;
    let mut rows = first.rows();
    let mut batch = vec![first];
    while rows < MAX_BATCH_ROWS {
        let Ok(next) = waiting.try_recv() else { break };
        rows += next.rows();
        batch.push(next);
    }
    Some(batch)
}
