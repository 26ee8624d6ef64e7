//! The log pipeline: one writer task turns [`LogLine`]s from every instance and the
//! invoker into batched inserts, and a retention worker keeps the store bounded.
//!
//! Batching matters on the warm path: an invocation produces at least three lines
//! (START, END, REPORT) and writing them one transaction at a time would cost more
//! than the invocation itself.

use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::LogLine;
use nimbus_store::{LogRecord, LogStore, UsageRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHANNEL: usize = 16 * 1024;
const BATCH: usize = 2048;
/// How long the writer waits to fill a batch; also the added delay before a line
/// becomes visible to `nimbus logs`.
const LINGER: Duration = Duration::from_millis(20);

/// How long and how many log lines are kept.
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    pub max_age: Duration,
    pub max_lines: i64,
}

pub struct LogPipeline {
    pub sender: mpsc::Sender<LogLine>,
    /// Metering records, written the same way (batched, low priority).
    pub usage: mpsc::Sender<UsageRecord>,
    writer: JoinHandle<()>,
    usage_writer: JoinHandle<()>,
    retention: JoinHandle<()>,
    cancel: CancellationToken,
}

impl LogPipeline {
    pub fn start(store: Arc<dyn LogStore>, retention: LogRetention) -> Self {
        let (sender, rx) = mpsc::channel(CHANNEL);
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(write_loop(store.clone(), rx, cancel.clone()));
        let (usage, usage_rx) = mpsc::channel(CHANNEL);
        let usage_writer = tokio::spawn(usage_loop(store.clone(), usage_rx, cancel.clone()));
        let retention = tokio::spawn(retention_loop(store, retention, cancel.clone()));
        Self {
            sender,
            usage,
            usage_writer,
            writer,
            retention,
            cancel,
        }
    }

    /// Writes everything already queued, then stops. Call after all instances are gone.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        drop(self.sender);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.usage_writer).await;
        let _ = self.retention.await;
    }
}

async fn usage_loop(
    store: Arc<dyn LogStore>,
    rx: mpsc::Receiver<UsageRecord>,
    cancel: CancellationToken,
) {
    batch_loop(rx, cancel, |records| {
        let store = store.clone();
        async move {
            if let Err(e) = store.append_usage(records).await {
                tracing::error!("could not store metering records: {e}");
            }
        }
    })
    .await
}

async fn write_loop(
    store: Arc<dyn LogStore>,
    rx: mpsc::Receiver<LogLine>,
    cancel: CancellationToken,
) {
    batch_loop(rx, cancel, |lines| {
        let store = store.clone();
        async move {
            let records = lines
                .into_iter()
                .map(|l| LogRecord {
                    function: l.function.to_string(),
                    ts_ms: l.ts_ms,
                    instance: l.instance.to_string(),
                    request_id: l.request_id.map(|r| r.to_string()),
                    message: l.text,
                })
                .collect();
            if let Err(e) = store.append(records).await {
                tracing::error!("could not store log lines: {e}");
            }
        }
    })
    .await
}

/// Receives items and hands them to `write` in batches until the channel closes or
/// `cancel` fires. It lingers briefly so that a steady trickle (START/END/REPORT
/// of every call, a usage record per call) becomes one transaction per interval
/// instead of one per invocation: the store then costs the warm path almost
/// nothing. On shutdown it writes what is already queued and stops without
/// waiting for the senders, which are cloned into many places and may outlive it.
async fn batch_loop<T, F, Fut>(mut rx: mpsc::Receiver<T>, cancel: CancellationToken, mut write: F)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stop = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n == 0,
            _ = cancel.cancelled() => {
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                }
                true
            }
        };
        if !stop && batch.len() < BATCH {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = cancel.cancelled() => {}
            }
            while batch.len() < BATCH * 4 {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            write(std::mem::take(&mut batch)).await;
        }
        if stop {
            return;
        }
    }
}

async fn retention_loop(
    store: Arc<dyn LogStore>,
    retention: LogRetention,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = chrono::Utc::now().timestamp_millis() - retention.max_age.as_millis() as i64;
        match store.prune(cutoff, retention.max_lines).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("log retention removed {n} lines"),
            Err(e) => tracing::warn!("log retention failed: {e}"),
        }
    }
}
