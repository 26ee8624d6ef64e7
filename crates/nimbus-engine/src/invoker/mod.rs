//! The invocation path: check the request, lease an instance, run, account, log.
//!
//! Every event source reaches [`Invoker::invoke`] through the
//! [`Dispatcher`](crate::dispatch::Dispatcher) (the native and Lambda invoke
//! APIs call it directly). The invocation runs in its own task
//! tracked for graceful shutdown, so a caller that disconnects never cancels a
//! handler midway (Lambda keeps running too) and shutdown can wait for it.

mod async_queue;
mod report;
mod streamed;

pub use async_queue::{AsyncInvoker, AsyncSettings, DestinationSink, RunningLineage};
pub use streamed::{StreamParts, Streamed};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::limits::{LOG_TAIL_BYTES, MAX_SYNC_REQUEST_BYTES};
use nimbus_core::{InvocationId, InvokeRequest};
use nimbus_runtime::{Dispatch, LogLine, Outcome, StreamPart, StreamTarget};
use nimbus_store::UsageRecord;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::registry::{Deployed, Registry};
use crate::scheduler::Scheduler;
use crate::{EngineConfig, EngineError};

/// What the caller gets back.
#[derive(Debug, Clone)]
pub struct InvocationResult {
    pub request_id: InvocationId,
    pub executed_version: String,
    pub outcome: Outcome,
    pub cold_start: bool,
    pub init_duration: Option<Duration>,
    pub duration: Duration,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
    /// The last 4 KB of this invocation's log (START … REPORT), when asked for.
    pub log_tail: Option<String>,
}

pub struct Invoker {
    registry: Arc<Registry>,
    scheduler: Arc<Scheduler>,
    logs: mpsc::Sender<LogLine>,
    usage: mpsc::Sender<UsageRecord>,
    pub metrics: Arc<crate::Metrics>,
    tracker: TaskTracker,
    /// Stops invocations still running after the shutdown grace period.
    cancel: CancellationToken,
    clock: nimbus_core::Clock,
}

impl Invoker {
    pub fn new(
        _config: &EngineConfig,
        registry: Arc<Registry>,
        scheduler: Arc<Scheduler>,
        logs: mpsc::Sender<LogLine>,
        usage: mpsc::Sender<UsageRecord>,
    ) -> Self {
        Self {
            registry,
            scheduler,
            logs,
            usage,
            metrics: Arc::new(crate::Metrics::default()),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            clock: nimbus_core::Clock::system(),
        }
    }

    /// Runs one invocation synchronously and returns its result.
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvocationResult, EngineError> {
        self.registry
            .catch_up(&req.function, req.qualifier.as_deref())
            .await;
        joined(self.start(req, None)?.await)
    }

    /// Checks `req` and starts it in a task of its own (tracked for shutdown);
    /// the handle gives its result. A response the function streams goes to
    /// `stream` as it is produced (a [`StreamPart::Head`], then chunks) and the
    /// result's `Success` body is then empty; a function that does not stream
    /// answers through the result as usual, and `stream` receives nothing.
    pub(crate) fn start(
        &self,
        mut req: InvokeRequest,
        stream: Option<mpsc::Sender<StreamPart>>,
    ) -> Result<JoinHandle<Result<InvocationResult, EngineError>>, EngineError> {
        if self.tracker.is_closed() {
            return Err(EngineError::ShuttingDown);
        }
        // Uniform in [0, 1): picks the version of a weighted alias.
        // (The low 53 bits of a v4 UUID are all random; its fixed bits are higher.)
        let draw =
            (uuid::Uuid::new_v4().as_u128() & ((1u128 << 53) - 1)) as f64 / (1u64 << 53) as f64;
        let deployed = self
            .registry
            .resolve(&req.function, req.qualifier.as_deref(), draw)
            .ok_or_else(|| match &req.qualifier {
                Some(q) => EngineError::FunctionNotFound(format!("{}:{q}", req.function)),
                None => EngineError::FunctionNotFound(req.function.to_string()),
            })?;
        check_payload(&mut req.payload, MAX_SYNC_REQUEST_BYTES)?;
        let scheduler = self.scheduler.clone();
        let logs = self.logs.clone();
        let cancel = self.cancel.clone();
        let usage = self.usage.clone();
        let metrics = self.metrics.clone();
        let clock = self.clock.clone();
        Ok(self.tracker.spawn(async move {
            let function = deployed.spec.function.clone();
            let (version, memory_mb) = (deployed.spec.version.clone(), deployed.spec.memory_mb);
            let request_id = req.id.to_string();
            let result = run(deployed, req, stream, &scheduler, &logs, &clock, cancel).await;
            let record = match &result {
                Ok(r) => Some(UsageRecord {
                    ts_ms: clock.now_ms(),
                    function,
                    version: r.executed_version.clone(),
                    request_id,
                    duration_ms: r.duration.as_secs_f64() * 1000.0,
                    billed_ms: r.billed_ms,
                    memory_mb: r.memory_mb,
                    cold: r.cold_start,
                    init_ms: r.init_duration.map(|d| d.as_secs_f64() * 1000.0),
                    outcome: match r.outcome {
                        Outcome::Success { .. } => "success".into(),
                        Outcome::Error { .. } => "error".into(),
                    },
                }),
                Err(EngineError::TooManyRequests { .. }) => Some(UsageRecord {
                    ts_ms: clock.now_ms(),
                    function,
                    version,
                    request_id,
                    duration_ms: 0.0,
                    billed_ms: 0,
                    memory_mb,
                    cold: false,
                    init_ms: None,
                    outcome: "throttled".into(),
                }),
                Err(_) => None,
            };
            if let Some(r) = record {
                metrics.observe(&r);
                let _ = usage.send(r).await;
            }
            result
        }))
    }

    /// Writes a line of the platform's own to a function's log (as Lambda
    /// reports a stopped recursive loop there).
    pub async fn platform_log(&self, function: &str, request_id: &str, text: String) {
        let line = LogLine {
            function: function.into(),
            instance: "platform".into(),
            request_id: Some(request_id.into()),
            ts_ms: self.clock.now_ms(),
            text,
            charge: None,
        };
        let _ = self.logs.send(line).await;
    }

    /// Refuses new invocations and waits up to `grace` for running ones.
    /// Returns how many were still running when the grace period ended.
    /// Whether shutdown has begun (new invocations are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.tracker.is_closed()
    }
}

/// Shutdown refuses new invocations and waits for running ones (the grace
/// period); those still running then are cut off: stopped and answered with
/// an error (with END and REPORT logged), so no caller is left without a result.
#[async_trait::async_trait]
impl crate::lifecycle::Service for Invoker {
    fn name(&self) -> &'static str {
        "invoker"
    }

    fn stop_accepting(&self) {
        self.tracker.close();
    }

    async fn drain(&self, _deadline: tokio::time::Instant) {
        self.tracker.wait().await;
    }

    fn cut_off(&self) {
        let stopped = self.tracker.len();
        if stopped > 0 {
            tracing::warn!(
                "{stopped} invocations were still running after the grace period; they were stopped and their callers told so"
            );
            self.cancel.cancel();
        }
    }

    fn status(&self) -> String {
        format!("{} invocations running", self.tracker.len())
    }
}

/// An invocation task's result; a task that panicked is an internal error.
pub(crate) fn joined(
    r: Result<Result<InvocationResult, EngineError>, JoinError>,
) -> Result<InvocationResult, EngineError> {
    r.unwrap_or_else(|e| {
        Err(EngineError::InstanceStart(format!(
            "invocation task failed: {e}"
        )))
    })
}

/// The payload rules of every invocation: at most `limit` bytes, JSON, and an
/// empty body counts as `{}` (as on Lambda).
pub(crate) fn check_payload(payload: &mut Bytes, limit: usize) -> Result<(), EngineError> {
    if payload.len() > limit {
        return Err(EngineError::PayloadTooLarge {
            size: payload.len(),
            limit,
        });
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        *payload = Bytes::from_static(b"{}");
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map_err(|e| EngineError::InvalidJson(e.to_string()))?;
    Ok(())
}

/// A fresh X-Ray style trace header (no lineage).
pub(crate) fn new_trace_id() -> String {
    trace_id()
}

fn trace_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    let secs = chrono::Utc::now().timestamp();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &u[..24],
        &u[16..32]
    )
}

async fn run(
    deployed: Arc<Deployed>,
    req: InvokeRequest,
    stream: Option<mpsc::Sender<StreamPart>>,
    scheduler: &Scheduler,
    logs: &mpsc::Sender<LogLine>,
    clock: &nimbus_core::Clock,
    cancel: CancellationToken,
) -> Result<InvocationResult, EngineError> {
    let mut lease = scheduler.acquire(&deployed.pool).await?;
    let cold = lease.is_cold();
    let spec = &deployed.spec;
    let rid = req.id.clone();
    let rid_arc: Arc<str> = rid.as_str().into();
    let function: Arc<str> = spec.function.as_str().into();
    let instance: Arc<str> = lease.instance().id().into();
    let now_ms = || clock.now_ms();
    let emit = |text: String, ts_ms: i64| {
        let line = LogLine {
            function: function.clone(),
            instance: instance.clone(),
            request_id: Some(rid_arc.clone()),
            ts_ms,
            text,
            charge: None,
        };
        async move {
            let _ = logs.send(line).await;
        }
    };
    let start_line = report::start(rid.as_str(), &spec.version);
    let start_ms = now_ms();
    let dispatch = Dispatch {
        request_id: rid.clone(),
        payload: req.payload,
        invoked_arn: match &req.qualifier {
            Some(q) => format!("{}:{q}", deployed.arn),
            None => deployed.arn.clone(),
        },
        trace_id: req.trace_id.unwrap_or_else(trace_id),
        client_context: req.client_context,
        capture_output: req.want_log_tail,
        start_line: start_line.clone(),
        start_ms,
        cancel: cancel.clone(),
        stream: stream.map(|tx| StreamTarget {
            tx,
            executed_version: spec.version.clone(),
        }),
    };
    let result = lease.instance().invoke(dispatch).await;

    let max_used_mb = result.max_memory_bytes.div_ceil(1024 * 1024);
    let end_line = report::end(rid.as_str());
    let report_line = report::report(
        rid.as_str(),
        result.duration,
        spec.memory_mb,
        max_used_mb,
        result.init_duration,
    );
    // END and REPORT are one stored row (the store gives them back as two
    // lines). The instance logged START ahead of the function's first line of
    // output; a silent invocation's START joins that row too when all three
    // fall in the same millisecond (a row has one time), else it gets its own
    // row with its own time. A warm silent call writes one row, not three.
    let end_ms = now_ms();
    let end_rows = format!("{end_line}\n{report_line}");
    if result.start_logged {
        emit(end_rows, end_ms).await;
    } else if start_ms == end_ms {
        emit(format!("{start_line}\n{end_rows}"), end_ms).await;
    } else {
        emit(start_line.clone(), start_ms).await;
        emit(end_rows, end_ms).await;
    }
    for l in &result.platform_lines {
        emit(l.clone(), now_ms()).await;
    }
    // Only now: the next invocation's START must come after this one's REPORT.
    lease.release(result.healthy);
    let log_tail = req.want_log_tail.then(|| {
        let mut text = String::with_capacity(result.output.len() + 256);
        for l in std::iter::once(&start_line) {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(&result.output);
        for l in [&end_line, &report_line]
            .into_iter()
            .chain(&result.platform_lines)
        {
            text.push_str(l);
            text.push('\n');
        }
        tail(&text, LOG_TAIL_BYTES).to_string()
    });
    Ok(InvocationResult {
        request_id: rid,
        executed_version: spec.version.clone(),
        outcome: result.outcome,
        cold_start: cold,
        init_duration: result.init_duration,
        duration: result.duration,
        billed_ms: report::billed_ms(result.duration),
        memory_mb: spec.memory_mb,
        max_memory_used_mb: max_used_mb,
        log_tail,
    })
}

/// The last `n` bytes of `s`, cut at a character boundary.
fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_rules() {
        let mut p = Bytes::from_static(b"");
        check_payload(&mut p, MAX_SYNC_REQUEST_BYTES).unwrap();
        assert_eq!(&p[..], b"{}");
        let mut p = Bytes::from_static(b"{\"a\":");
        assert!(matches!(
            check_payload(&mut p, MAX_SYNC_REQUEST_BYTES),
            Err(EngineError::InvalidJson(_))
        ));
        let mut p = Bytes::from(vec![b' '; MAX_SYNC_REQUEST_BYTES + 1]);
        assert!(matches!(
            check_payload(&mut p, MAX_SYNC_REQUEST_BYTES),
            Err(EngineError::PayloadTooLarge { .. })
        ));
        let mut p = Bytes::from_static(b"[1, 2]");
        check_payload(&mut p, MAX_SYNC_REQUEST_BYTES).unwrap();
    }

    #[test]
    fn tail_cuts_at_boundaries() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 2), "lo");
        assert_eq!(tail("héllo", 4), "llo");
    }
}
