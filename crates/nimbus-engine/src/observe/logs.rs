//! The log pipeline: one writer task turns [`LogLine`]s from every instance and the
//! invoker into batched inserts, and retention keeps the store within its byte
//! quotas.
//!
//! Batching matters on the warm path: an invocation produces at least three lines
//! (START, END, REPORT) and writing them one transaction at a time would cost more
//! than the invocation itself.
//!
//! Memory is bounded by the [`LogGate`] (bytes cut from pipes and not yet
//! stored; a line is given back once its batch is written), not by the channel,
//! whose capacity in lines is set above what the gate can let through so that
//! it never blocks a pipe reader. Retention runs after every
//! [`LogRetention::pass_every_bytes`] written as well as once a minute: at full
//! speed a function writes its whole quota in well under a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::{LINE_OVERHEAD, LogGate, LogLine};
use nimbus_store::{LogRecord, LogStore, RetentionPolicy, UsageRecord, charged_bytes};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHANNEL: usize = 16 * 1024;
const BATCH: usize = 2048;
/// How long the writer waits to fill a batch; also the added delay before a line
/// becomes visible to `nimbus logs`.
const LINGER: Duration = Duration::from_millis(20);
/// The time-based retention pass (age, and quotas when little was written).
const RETENTION_PERIOD: Duration = Duration::from_secs(60);

/// How long and how many bytes of logs are kept.
#[derive(Debug, Clone)]
pub struct LogRetention {
    pub max_age: Duration,
    /// Most bytes of one function's lines.
    pub function_bytes: u64,
    /// Most bytes of all lines.
    pub total_bytes: u64,
    /// Below this much free space, log lines are dropped rather than written.
    pub disk_floor: Option<DiskFloor>,
    /// Most metering records kept.
    pub usage_records: u64,
}

/// A free-space watermark on the filesystem holding the logs. Logs are the
/// one write a function controls the volume of; keeping them off the last
/// bytes of the disk keeps deploys, keys and acknowledged messages (which
/// share the filesystem) writable when a function floods faster than the
/// quotas prune.
#[derive(Debug, Clone)]
pub struct DiskFloor {
    pub dir: std::path::PathBuf,
    pub min_free_bytes: u64,
}

impl DiskFloor {
    /// Whether the filesystem is below the floor (an unreadable filesystem
    /// counts as fine: the write will say what is wrong).
    fn reached(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(self.dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: an all-zero statvfs is a valid out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid out-pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return false;
        }
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) < self.min_free_bytes
    }
}

/// Log lines dropped because the disk was below its [`DiskFloor`] (for
/// `/metrics`).
pub static LINES_DROPPED_LOW_DISK: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

impl LogRetention {
    /// Bytes written between two quota passes: an eighth of the smaller quota,
    /// so a flood overshoots a quota by at most that much.
    pub fn pass_every_bytes(&self) -> u64 {
        (self.function_bytes.min(self.total_bytes) / 8).max(64 * 1024)
    }

    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            older_than_ms: chrono::Utc::now().timestamp_millis() - self.max_age.as_millis() as i64,
            function_bytes: self.function_bytes,
            total_bytes: self.total_bytes,
            usage_records: self.usage_records,
        }
    }
}

/// A task with the name a crash report gives it.
type Named<T> = (&'static str, T);

pub struct LogPipeline {
    pub sender: mpsc::Sender<LogLine>,
    /// Metering records, written the same way (batched, low priority).
    pub usage: mpsc::Sender<UsageRecord>,
    /// The log writer, the usage writer and the retention pass (taken by the run loop).
    tasks: std::sync::Mutex<Option<[Named<JoinHandle<()>>; 3]>>,
    cancel: CancellationToken,
}

impl LogPipeline {
    /// `gate` bounds the lines waiting to be written (installed for every
    /// instance's pipe by the caller, see [`nimbus_runtime::install_log_gate`]).
    pub fn start(store: Arc<dyn LogStore>, retention: LogRetention, gate: Arc<LogGate>) -> Self {
        // Room for every line the gate can let through, so pipe readers never
        // wait for the channel (the platform's own lines come on top).
        let lines = CHANNEL + gate.capacity() / LINE_OVERHEAD;
        let (sender, rx) = mpsc::channel(lines);
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            store.clone(),
            rx,
            retention.clone(),
            gate,
            cancel.clone(),
        ));
        let (usage, usage_rx) = mpsc::channel(CHANNEL);
        let usage_writer = tokio::spawn(usage_loop(store.clone(), usage_rx, cancel.clone()));
        let retention = tokio::spawn(retention_loop(store, retention, cancel.clone()));
        Self {
            sender,
            usage,
            tasks: std::sync::Mutex::new(Some([
                ("log writer", writer),
                ("usage writer", usage_writer),
                ("log retention", retention),
            ])),
            cancel,
        }
    }
}

/// The run loop watches the writers (one that ends early is a crash); stopping
/// writes everything already queued, then stops: stop it after all instances
/// are gone.
#[async_trait::async_trait]
impl crate::lifecycle::Service for LogPipeline {
    fn name(&self) -> &'static str {
        "log pipeline"
    }

    async fn run(
        self: std::sync::Arc<Self>,
        ctx: crate::lifecycle::Context,
    ) -> Result<(), crate::lifecycle::ServiceError> {
        let Some(mut tasks) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let ended = futures::future::select_all(tasks.iter_mut().map(|(_, t)| t));
        tokio::select! {
            _ = ctx.cancel.cancelled() => {}
            (result, i, _) = ended => {
                let how = match result {
                    Ok(()) => "returned".to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(format!("the {} stopped: {how}", tasks[i].0).into());
            }
        }
        self.cancel.cancel();
        for (_, task) in tasks {
            let _ = task.await;
        }
        Ok(())
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
    retention: LogRetention,
    gate: Arc<LogGate>,
    cancel: CancellationToken,
) {
    let mut since_pass = 0u64;
    let mut drops_told: HashMap<String, u64> = HashMap::new();
    batch_loop(rx, cancel, |lines| {
        let store = store.clone();
        let mut charges = Vec::with_capacity(lines.len());
        let mut records: Vec<LogRecord> = lines
            .into_iter()
            .map(|mut l| {
                charges.extend(l.charge.take());
                LogRecord {
                    function: l.function.to_string(),
                    ts_ms: l.ts_ms,
                    instance: l.instance.to_string(),
                    request_id: l.request_id.map(|r| r.to_string()),
                    message: l.text,
                }
            })
            .collect();
        // A function whose lines the gate dropped since the last batch is
        // told so in its own log.
        for d in gate.drops() {
            let told = drops_told.entry(d.function.clone()).or_default();
            if d.lines > *told {
                records.push(LogRecord {
                    ts_ms: chrono::Utc::now().timestamp_millis(),
                    instance: "nimbus".into(),
                    request_id: None,
                    message: format!(
                        "nimbus: {} lines of this function's output were dropped: it wrote faster than its logs are stored",
                        d.lines - *told
                    ),
                    function: d.function,
                });
                *told = d.lines;
            }
        }
        since_pass += records.iter().map(charged_bytes).sum::<u64>();
        let prune = since_pass >= retention.pass_every_bytes();
        if prune {
            since_pass = 0;
        }
        let floor = retention.disk_floor.clone();
        let retention = retention.clone();
        async move {
            if floor.as_ref().is_some_and(DiskFloor::reached) {
                use std::sync::atomic::Ordering;
                let before = LINES_DROPPED_LOW_DISK.fetch_add(records.len() as u64, Ordering::Relaxed);
                if before == 0 || before / 100_000 != (before + records.len() as u64) / 100_000 {
                    tracing::warn!(
                        "the disk holding the logs is below its free-space floor: function output is dropped (nimbus_log_lines_dropped_low_disk_total)"
                    );
                }
            } else if let Err(e) = store.append(records).await {
                tracing::error!("could not store log lines: {e}");
            }
            // Written (or failed): the lines' room goes back to the gate.
            drop(charges);
            if prune {
                run_retention(&*store, &retention).await;
            }
        }
    })
    .await
}

async fn run_retention(store: &dyn LogStore, retention: &LogRetention) {
    match store.prune(retention.policy()).await {
        Ok(r) if r.lines == 0 => {}
        Ok(r) => tracing::debug!(
            "log retention removed {} lines ({} bytes)",
            r.lines,
            r.bytes
        ),
        Err(e) => tracing::warn!("log retention failed: {e}"),
    }
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
    let mut tick = tokio::time::interval(RETENTION_PERIOD);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        run_retention(&*store, &retention).await;
    }
}
