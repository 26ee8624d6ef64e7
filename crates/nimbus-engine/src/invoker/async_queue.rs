//! Asynchronous invocations: accept durably, run later, retry, route results.
//!
//! `submit` checks the request and writes it to the [`InvocationQueue`] (fsynced)
//! before the caller hears "accepted". Workers claim due events, run them through
//! the same [`Invoker`] as synchronous calls (same request id on every attempt),
//! and then complete them, schedule a retry (`delay`, `2·delay`, …, up to the
//! function's `MaximumRetryAttempts`), or give up: to the `OnFailure` destination
//! if there is one, else to the dead-letter store (`nimbus dlq`). Throttling is
//! not a failure: the event just waits in the queue for capacity.
//!
//! **Fair shares** (review M7): a function holds at most its reserved
//! concurrency, or all the workers but a quarter, at once, so one whose
//! events run to a long timeout cannot make everyone else's async events,
//! schedule fires and notifications wait for it.
//!
//! **Recursive loops** (`nimbus_core::lineage`): an event keeps the trace
//! header of the call that queued it; running it counts one more invocation of
//! its function in that chain, and the one past
//! [`MAX_RECURSION_HOPS`](nimbus_core::limits::MAX_RECURSION_HOPS) is not run
//! (a dead letter, a line in the function's log, a metric). While an event
//! runs, its trace is the function's [`AsyncInvoker::running_lineage`], which
//! the messaging APIs give to what the function sends when its call came
//! without a trace header of its own (see `Dispatcher::chain_of`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::limits::{MAX_ASYNC_REQUEST_BYTES, MAX_RECURSION_HOPS};
use nimbus_core::lineage;
use nimbus_core::{EventInvokeConfig, FunctionName, InvocationId, InvokeRequest};
use nimbus_runtime::Outcome;
use nimbus_store::{
    Backends, BudgetFn, DeadLetters, FireLedger, InvocationQueue, LeaseFn, QueuedEvent,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::control::registry::Registry;
use crate::{EngineConfig, EngineError, Invoker};

/// Where destination records go when the destination is not a function
/// (queues and topics: `messaging::wiring::MessagingDestinations`), given
/// to [`AsyncInvoker::new`].
#[async_trait::async_trait]
pub trait DestinationSink: Send + Sync + 'static {
    async fn deliver(&self, arn: &str, record: Value) -> Result<(), EngineError>;
}

/// Settings of the asynchronous path.
#[derive(Debug, Clone, Copy)]
pub struct AsyncSettings {
    /// Delay before the first retry; each further retry doubles it (Lambda: 1 min).
    pub retry_delay: Duration,
    /// Events run at the same time.
    pub workers: usize,
}

/// What a lease allows beyond the function's own timeout: an init (Lambda gives
/// it 10 s) and slack for a loaded machine. A claim older than its lease belongs
/// to a worker that died (on another node, in a cluster) and is taken again.
const LEASE_MARGIN: Duration = Duration::from_secs(40);
/// The lease of an event whose function is gone (it will be dead-lettered).
const LEASE_UNKNOWN: Duration = Duration::from_secs(60);
/// How long a throttled event waits before trying again.
const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

pub struct AsyncInvoker {
    queue: Arc<dyn InvocationQueue>,
    dead_letters: Arc<dyn DeadLetters>,
    /// The schedules' fires, enqueued into `queue`.
    fires: Arc<dyn FireLedger>,
    invoker: Arc<Invoker>,
    registry: Arc<Registry>,
    config: EngineConfig,
    settings: AsyncSettings,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// Queue and topic destinations.
    sink: Arc<dyn DestinationSink>,
    /// Events not run because their creator's grant was revoked.
    revoked: std::sync::atomic::AtomicU64,
    running: RunningLineage,
    /// Workers each function holds now (its fair share is checked at claim).
    holding: Arc<Mutex<HashMap<String, usize>>>,
    /// Wall time.
    clock: nimbus_core::Clock,
}

/// One function's event-driven invocations running now: token → (count, trace).
type Running = BTreeMap<u64, (u32, String)>;

/// The trace headers of the event-driven invocations running now, by function.
#[derive(Default)]
pub struct RunningLineage {
    next: std::sync::atomic::AtomicU64,
    by_function: Mutex<HashMap<String, Running>>,
}

/// Removes its entry from [`RunningLineage`] when the invocation ends.
pub struct LineageEntry<'a> {
    owner: &'a RunningLineage,
    function: String,
    token: u64,
}

impl RunningLineage {
    /// Records that `function` runs an invocation counted `hops` with `trace`.
    pub fn enter(&self, function: &str, hops: u32, trace: String) -> LineageEntry<'_> {
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.by_function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(function.to_string())
            .or_default()
            .insert(token, (hops, trace));
        LineageEntry {
            owner: self,
            function: function.to_string(),
            token,
        }
    }

    /// The deepest chain `function` is running now. Function credentials are
    /// shared by its instances, so a call cannot be tied to one invocation:
    /// the deepest one is assumed, which can only stop a loop early, never late.
    pub fn of(&self, function: &str) -> Option<String> {
        let all = self.by_function.lock().unwrap_or_else(|p| p.into_inner());
        all.get(function)?
            .values()
            .max_by_key(|(hops, _)| *hops)
            .map(|(_, trace)| trace.clone())
    }
}

impl Drop for LineageEntry<'_> {
    fn drop(&mut self) {
        let mut all = self
            .owner
            .by_function
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = all.get_mut(&self.function) {
            m.remove(&self.token);
            if m.is_empty() {
                all.remove(&self.function);
            }
        }
    }
}

impl AsyncInvoker {
    /// Runs on the invocation queue, dead letters and fire ledger of `stores`.
    pub fn new(
        stores: &Backends,
        invoker: Arc<Invoker>,
        registry: Arc<Registry>,
        config: EngineConfig,
        settings: AsyncSettings,
        sink: Arc<dyn DestinationSink>,
    ) -> Self {
        Self {
            queue: stores.invocations.clone(),
            dead_letters: stores.dead_letters.clone(),
            fires: stores.fires.clone(),
            invoker,
            registry,
            config,
            slots: Arc::new(Semaphore::new(settings.workers.max(1))),
            settings,
            wake: Notify::new(),
            sink,
            revoked: std::sync::atomic::AtomicU64::new(0),
            running: RunningLineage::default(),
            holding: Arc::default(),
            clock: nimbus_core::Clock::system(),
        }
    }

    /// Reads the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: nimbus_core::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many more events of a function may run now: its reserved
    /// concurrency, or all the workers but a quarter, less what it holds.
    /// The quarter left is what everyone else can always get while one
    /// function's events run to a long timeout; a function alone still uses
    /// three quarters of the workers (a quarter each cut a lone function's
    /// run-to-completion rate by a third in the bench).
    fn budget(&self) -> BudgetFn {
        let registry = self.registry.clone();
        let holding = self.holding.clone();
        let workers = self.settings.workers.max(1);
        let share = workers.saturating_sub(workers / 4).max(1);
        Arc::new(move |function: &str| {
            let cap = function
                .parse::<FunctionName>()
                .ok()
                .and_then(|f| registry.get(&f))
                .and_then(|d| d.record.reserved_concurrency)
                .map_or(share, |r| (r as usize).clamp(1, workers));
            let held = holding
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(function)
                .copied()
                .unwrap_or(0);
            cap.saturating_sub(held)
        })
    }

    /// The event-driven invocations running now (recursive loop detection).
    pub fn lineage(&self) -> &RunningLineage {
        &self.running
    }

    /// The trace header to give what `function` sends now: that of the
    /// deepest chain of events it is handling, if any.
    pub fn running_lineage(&self, function: &str) -> Option<String> {
        self.running.of(function)
    }

    /// Events not run because the function on whose authority they were
    /// queued lost its grant (they are dead letters now).
    pub fn revoked(&self) -> u64 {
        self.revoked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Durably accepts an event; returns its request id.
    pub async fn submit(&self, req: InvokeRequest) -> Result<InvocationId, EngineError> {
        self.registry
            .catch_up(&req.function, req.qualifier.as_deref())
            .await;
        let (id, event) = self.queued(req)?;
        self.queue.enqueue(&event).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Durably accepts the event of `source` (a schedule) firing at `fire_ms`,
    /// unless that fire was already accepted: see [`FireLedger::enqueue_once`].
    /// Returns whether it was accepted now.
    pub async fn submit_once(
        &self,
        req: InvokeRequest,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, EngineError> {
        let (_, event) = self.queued(req)?;
        let accepted = self.fires.enqueue_once(&event, source, fire_ms).await?;
        self.wake.notify_one();
        Ok(accepted)
    }

    /// Records that `source` fired at `fire_ms` without enqueueing anything (its
    /// target was not a function). Returns false if it was already recorded.
    pub async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, EngineError> {
        Ok(self.fires.mark_fired(source, fire_ms).await?)
    }

    /// When `source` last fired.
    pub async fn last_fired(&self, source: &str) -> Result<Option<i64>, EngineError> {
        Ok(self.fires.last_fired(source).await?)
    }

    /// Checks a request and makes the queue entry for it.
    fn queued(&self, mut req: InvokeRequest) -> Result<(InvocationId, QueuedEvent), EngineError> {
        if self
            .registry
            .resolve(&req.function, req.qualifier.as_deref(), 0.0)
            .is_none()
        {
            return Err(EngineError::FunctionNotFound(match &req.qualifier {
                Some(q) => format!("{}:{q}", req.function),
                None => req.function.to_string(),
            }));
        }
        crate::invoker::check_payload(&mut req.payload, MAX_ASYNC_REQUEST_BYTES)?;
        let event = QueuedEvent {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: req.id.to_string(),
            function: req.function.to_string(),
            qualifier: req.qualifier.clone(),
            payload: req.payload.to_vec(),
            enqueued_ms: self.clock.now_ms(),
            attempts: 0,
            error: None,
            failed_at_ms: None,
            creator: req.on_behalf_of.clone(),
            trace: req.trace_id.clone(),
        };
        Ok((req.id, event))
    }

    pub async fn dead_letters(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<QueuedEvent>, EngineError> {
        Ok(self.dead_letters.list(function).await?)
    }

    /// (depth, age in seconds of the oldest event) of the queue.
    pub async fn queue_stats(&self) -> (u64, f64) {
        match self.queue.stats().await {
            Ok((depth, oldest)) => (
                depth,
                oldest
                    .map(|t| (self.clock.now_ms() - t).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0),
            ),
            Err(_) => (0, 0.0),
        }
    }

    /// Puts a dead letter back in the queue. Returns whether it existed.
    pub async fn replay(&self, id: &str) -> Result<bool, EngineError> {
        let found = self.dead_letters.replay(id, self.clock.now_ms()).await?;
        self.wake.notify_one();
        Ok(found)
    }

    /// How long a claim lasts: the function's timeout, the longest wait for an
    /// instance, and the margin.
    fn lease(&self) -> LeaseFn {
        let registry = self.registry.clone();
        let queue_wait = self.config.queue_wait;
        Arc::new(move |function: &str| {
            let timeout = function
                .parse::<FunctionName>()
                .ok()
                .and_then(|f| registry.get(&f))
                .map(|d| Duration::from_secs(d.record.config.timeout_s.into()) + queue_wait);
            (timeout.unwrap_or(LEASE_UNKNOWN) + LEASE_MARGIN).as_millis() as i64
        })
    }

    /// Claims and runs due events until cancelled.
    async fn claim_loop(self: Arc<Self>, cancel: CancellationToken) {
        let lease = self.lease();
        let budget = self.budget();
        loop {
            let free = self.slots.available_permits();
            let claimed = if free > 0 {
                match self
                    .queue
                    .claim_within(self.clock.now_ms(), free, lease.clone(), budget.clone())
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("cannot read the event queue: {e}");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            for event in claimed {
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                let function = event.function.clone();
                *self
                    .holding
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(function.clone())
                    .or_default() += 1;
                tokio::spawn(async move {
                    me.process(event).await;
                    {
                        let mut holding = me.holding.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(n) = holding.get_mut(&function) {
                            *n -= 1;
                            if *n == 0 {
                                holding.remove(&function);
                            }
                        }
                    }
                    drop(permit);
                    me.wake.notify_one();
                });
            }
            // With every worker busy, only a finished event (wake) can change
            // anything: do not poll the queue meanwhile.
            let sleep = if self.slots.available_permits() == 0 {
                Duration::from_secs(1)
            } else {
                match self.queue.next_due().await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - self.clock.now_ms()).clamp(5, 1_000) as u64)
                    }
                    _ => Duration::from_secs(1),
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn settings_of(&self, function: &FunctionName) -> EventInvokeConfig {
        self.registry
            .get(function)
            .and_then(|d| d.record.event_invoke_config.clone())
            .unwrap_or_default()
    }

    async fn process(&self, event: QueuedEvent) {
        let Ok(function) = event.function.parse::<FunctionName>() else {
            let _ = self
                .queue
                .dead(
                    &event.id,
                    self.clock.now_ms(),
                    event.attempts,
                    "invalid function name",
                )
                .await;
            return;
        };
        let cfg = self.settings_of(&function);
        let attempt = event.attempts + 1;
        let age_ms = self.clock.now_ms() - event.enqueued_ms;
        if age_ms > cfg.max_event_age_s as i64 * 1000 {
            self.give_up(
                &event,
                &function,
                &cfg,
                "EventAgeExceeded",
                None,
                "event too old",
            )
            .await;
            return;
        }
        if let Some(creator) = &event.creator {
            let target = self.config.function_arn(function.as_str());
            let target = match &event.qualifier {
                Some(q) => format!("{target}:{q}"),
                None => target,
            };
            if !self
                .registry
                .function_allows(creator, "lambda:InvokeFunction", &target)
            {
                // Queued on a function's authority that it no longer has
                // (review finding L2): not run, kept as a dead letter.
                self.revoked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "event {} for {target} skipped: function {creator}, on whose authority it was queued, may no longer invoke it",
                    event.id
                );
                let _ = self
                    .queue
                    .dead(
                        &event.id,
                        self.clock.now_ms(),
                        event.attempts,
                        &format!("grant revoked: function {creator} may no longer invoke {target}"),
                    )
                    .await;
                return;
            }
        }
        let hops = lineage::count(event.trace.as_deref(), function.as_str()) + 1;
        if hops > MAX_RECURSION_HOPS {
            self.stop_loop(&event, &function).await;
            return;
        }
        let trace = lineage::with_count(
            event.trace.as_deref(),
            function.as_str(),
            hops,
            &crate::invoker::new_trace_id(),
        );
        let mut req = InvokeRequest::new(function.clone(), Bytes::from(event.payload.clone()));
        req.id = InvocationId::from(event.request_id.clone());
        req.qualifier = event.qualifier.clone();
        req.trace_id = Some(trace.clone());
        let running = self.running.enter(function.as_str(), hops, trace);
        let result = self.invoker.invoke(req).await;
        drop(running);
        if self.invoker.is_shutting_down() {
            // Cut short (or refused) by shutdown: not the function's failure. The
            // lease is released at the next start and the event runs again.
            return;
        }
        let r = match result {
            Ok(r) => r,
            Err(EngineError::TooManyRequests { .. }) => {
                // Not a failure: wait for capacity without using up an attempt.
                let at = self.clock.now_ms() + THROTTLE_BACKOFF.as_millis() as i64;
                let _ = self
                    .queue
                    .retry(&event.id, at, event.attempts, "throttled")
                    .await;
                return;
            }
            Err(EngineError::ShuttingDown) => return, // claimed again after the restart
            Err(EngineError::FunctionNotFound(what)) => {
                let _ = self
                    .queue
                    .dead(
                        &event.id,
                        self.clock.now_ms(),
                        attempt,
                        &format!("function {what} not found"),
                    )
                    .await;
                return;
            }
            Err(e) => {
                self.failed(&event, &function, &cfg, attempt, &e.to_string(), None)
                    .await;
                return;
            }
        };
        match &r.outcome {
            Outcome::Success { body, .. } => {
                if let Some(dest) = &cfg.on_success {
                    let record = self.record(
                        &event,
                        &function,
                        "Success",
                        attempt,
                        &r.executed_version,
                        None,
                        body,
                    );
                    if let Err(e) = self.deliver(dest, record).await {
                        // The invocation succeeded; only its notification failed.
                        tracing::warn!(
                            "cannot deliver the success record of {} to {dest}: {e}",
                            event.request_id
                        );
                    }
                }
                let _ = self.queue.complete(&event.id).await;
            }
            Outcome::Error { error_type, body } => {
                let response = Some((r.executed_version.clone(), body.clone()));
                self.failed(&event, &function, &cfg, attempt, error_type, response)
                    .await;
            }
        }
    }

    /// Drops an event that would invoke its function once too often in one
    /// chain (Lambda: `RecursiveInvocationException`, the event not run).
    async fn stop_loop(&self, event: &QueuedEvent, function: &FunctionName) {
        let why = format!(
            "RecursiveInvocationException: this event would invoke {function} for the {}th time in one chain of events (the limit is {MAX_RECURSION_HOPS}); it was not run and is kept as a dead letter",
            MAX_RECURSION_HOPS + 1
        );
        tracing::warn!("event {}: {why}", event.id);
        self.invoker.metrics.loop_stopped(function.as_str());
        self.invoker
            .platform_log(function.as_str(), &event.request_id, why.clone())
            .await;
        let _ = self
            .queue
            .dead(&event.id, self.clock.now_ms(), event.attempts, &why)
            .await;
    }

    async fn failed(
        &self,
        event: &QueuedEvent,
        function: &FunctionName,
        cfg: &EventInvokeConfig,
        attempt: u32,
        error: &str,
        response: Option<(String, Bytes)>,
    ) {
        if attempt <= cfg.max_retry_attempts {
            let delay = self.settings.retry_delay * 2u32.saturating_pow(attempt - 1);
            let at = self.clock.now_ms() + delay.as_millis() as i64;
            if let Err(e) = self.queue.retry(&event.id, at, attempt, error).await {
                tracing::error!("cannot schedule a retry of {}: {e}", event.request_id);
            }
            return;
        }
        let mut ev = event.clone();
        ev.attempts = attempt;
        self.give_up(&ev, function, cfg, "RetriesExhausted", response, error)
            .await;
    }

    async fn give_up(
        &self,
        event: &QueuedEvent,
        function: &FunctionName,
        cfg: &EventInvokeConfig,
        condition: &str,
        response: Option<(String, Bytes)>,
        error: &str,
    ) {
        match &cfg.on_failure {
            Some(dest) => {
                let (version, body) =
                    response.unwrap_or_else(|| ("$LATEST".into(), Bytes::from_static(b"null")));
                let record = self.record(
                    event,
                    function,
                    condition,
                    event.attempts,
                    &version,
                    Some("Unhandled"),
                    &body,
                );
                match self.deliver(dest, record).await {
                    Ok(()) => {
                        let _ = self.queue.complete(&event.id).await;
                    }
                    // Never lose it: when the destination cannot take it, keep it.
                    Err(e) => {
                        let why = format!("{error}; and delivery to {dest} failed: {e}");
                        let _ = self
                            .queue
                            .dead(&event.id, self.clock.now_ms(), event.attempts, &why)
                            .await;
                    }
                }
            }
            None => {
                if let Err(e) = self
                    .queue
                    .dead(&event.id, self.clock.now_ms(), event.attempts, error)
                    .await
                {
                    tracing::error!("cannot move {} to the dead letters: {e}", event.request_id);
                }
            }
        }
    }

    /// The invocation record Lambda sends to destinations.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of the destination record Lambda defines"
    )]
    fn record(
        &self,
        event: &QueuedEvent,
        function: &FunctionName,
        condition: &str,
        attempts: u32,
        executed_version: &str,
        function_error: Option<&str>,
        response: &[u8],
    ) -> Value {
        let payload = |b: &[u8]| {
            serde_json::from_slice::<Value>(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)))
        };
        let mut response_context =
            json!({ "statusCode": 200, "executedVersion": executed_version });
        if let Some(fe) = function_error {
            response_context["functionError"] = json!(fe);
        }
        json!({
            "version": "1.0",
            "timestamp": self.clock.now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": format!("{}:{}", self.config.function_arn(function.as_str()), event.qualifier.as_deref().unwrap_or("$LATEST")),
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": payload(&event.payload),
            "responseContext": response_context,
            "responsePayload": payload(response),
        })
    }

    /// Sends a record to a destination: a function (asynchronously), a queue or a topic.
    async fn deliver(&self, destination_arn: &str, record: Value) -> Result<(), EngineError> {
        let parts: Vec<&str> = destination_arn.split(':').collect();
        if matches!(parts.get(2), Some(&"sqs") | Some(&"sns")) {
            return self.sink.deliver(destination_arn, record).await;
        }
        let name = parts
            .get(6)
            .and_then(|n| n.parse::<FunctionName>().ok())
            .ok_or_else(|| EngineError::FunctionNotFound(destination_arn.to_string()))?;
        let mut req = InvokeRequest::new(name, Bytes::from(record.to_string()));
        req.qualifier = parts.get(7).map(|q| q.to_string());
        self.submit(req).await.map(|_| ())
    }
}

/// The workers: stopping them claims no new events (those queued wait for the
/// next start); the events running are invocations, which the invoker drains.
#[async_trait::async_trait]
impl crate::lifecycle::Service for AsyncInvoker {
    fn name(&self) -> &'static str {
        "async workers"
    }

    async fn run(
        self: Arc<Self>,
        ctx: crate::lifecycle::Context,
    ) -> Result<(), crate::lifecycle::ServiceError> {
        self.claim_loop(ctx.cancel).await;
        Ok(())
    }

    fn status(&self) -> String {
        let busy = self.settings.workers.max(1) - self.slots.available_permits();
        format!("{busy} of {} workers busy", self.settings.workers.max(1))
    }
}
