//! The group-commit writer of `messages.db`, as in the async-invocation queue:
//! one thread takes every write waiting, runs each in its own savepoint, and
//! commits them all with one fsync before answering each caller. A burst of
//! SendMessage calls (or a fan-out to many queues) shares one fsync.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;

/// Most writes committed together.
const MAX_BATCH: usize = 4096;

pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("nimbus-messages".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(|e| StoreError::Task(format!("cannot start the messages writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the next group commit; answers once that commit is on disk.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(WriteJob {
                f: Some(f),
                result: None,
                reply,
            }))
            .map_err(|_| StoreError::Task("the messages writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("the messages writer has stopped".into()))?
    }
}

trait Job: Send {
    fn run(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, commit: Result<(), String>);
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

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            (Err(e), _) => Err(StoreError::Task(format!("messages commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Task("messages write was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

fn write_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
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
            job.finish(commit.clone());
        }
    }
}
