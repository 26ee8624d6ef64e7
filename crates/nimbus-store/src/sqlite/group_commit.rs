//! Group commit, shared by the durable stores (the event queue, messages,
//! workflows): an fsync costs about a millisecond whatever it carries, so one
//! per write would cap a store near a thousand writes a second. Every write
//! goes to one thread per database instead, which takes all the writes waiting
//! at that moment, runs each in its own savepoint (one failing write is undone
//! alone), commits them in one transaction (one fsync) and only then answers
//! each caller. Under load batches grow by themselves; alone, a write pays one
//! fsync as before.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;

/// Most writes committed together.
const MAX_BATCH: usize = 4096;

/// The writer thread of one database; dropped, it finishes what it was given
/// and stops.
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Which store, for thread names and errors (`messages`, `event queue`, …).
    name: &'static str,
}

impl GroupCommit {
    pub(crate) fn start(conn: Connection, name: &'static str) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name(format!("nimbus-{}", name.replace(' ', "-")))
            .spawn(move || write_loop(conn, rx, name))
            .map_err(|e| StoreError::Task(format!("cannot start the {name} writer: {e}")))?;
        Ok(Self { jobs, name })
    }

    /// Runs `f` in the next group commit; answers once that commit is on disk.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Task(format!("the {} writer has stopped", self.name));
        self.jobs
            .send(Box::new(WriteJob {
                f: Some(f),
                result: None,
                reply,
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One write waiting for the group commit.
trait Job: Send {
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, commit: Result<(), String>, store: &str);
}

struct WriteJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T, StoreError> + Send> Job for WriteJob<T, F> {
    fn run(&mut self, conn: &Connection) {
        let Some(f) = self.f.take() else { return };
        // One failing write is undone alone; the rest of the batch commits.
        let result = conn
            .execute_batch("SAVEPOINT job")
            .map_err(StoreError::from)
            .and_then(|()| f(conn));
        let end = if result.is_ok() {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        self.result = Some(
            conn.execute_batch(end)
                .map_err(StoreError::from)
                .and(result),
        );
    }

    fn finish(self: Box<Self>, commit: Result<(), String>, store: &str) {
        let result = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            (Err(e), _) => Err(StoreError::Task(format!("{store} commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Task(format!("{store} write was not run"))),
        };
        let _ = self.reply.send(result);
    }
}

fn write_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>, store: &str) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                for job in &mut batch {
                    job.run(&conn);
                }
                conn.execute_batch("COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    e.to_string()
                })
            }
            Err(e) => Err(e.to_string()),
        };
        for job in batch {
            job.finish(commit.clone(), store);
        }
    }
}
