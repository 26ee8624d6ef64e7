//! Event source mappings from queues to functions.
//!
//! One poller task per enabled mapping. It takes a concurrency permit
//! (`ScalingConfig.MaximumConcurrency`, default 5), long-polls a batch of up
//! to `BatchSize` (gathering for up to `MaximumBatchingWindowInSeconds`), and
//! hands the batch to a task that runs the mapping's [`Target`] synchronously
//! with the SQS event, through the [`Dispatcher`]. Messages are deleted only after the function succeeded; with
//! `ReportBatchItemFailures` the ones it lists stay and come back after their
//! visibility timeout (so `maxReceiveCount` redrives them), and a malformed
//! report fails the whole batch, as on Lambda.
//!
//! One node at a time polls a mapping. Every node starts a poller for every
//! enabled mapping (they follow the change feed), but a poller takes batches
//! only while it holds the lease `mapping:<uuid>`: two nodes splitting one
//! mapping's queue would split its batches, so `BatchSize`, the batching window
//! and `MaximumConcurrency` would mean nothing. The holder renews the lease
//! well before it lapses and stops taking batches the moment it cannot; the
//! others retry every few seconds, so a node that dies hands its mappings on
//! within one TTL. A lease lost while batches run does no harm: their
//! messages stay invisible until the batch deletes them or their visibility
//! timeout returns them. On one node the leases are local and always granted.
//!
//! Shutdown: pollers stop taking batches and release their leases; batches in
//! flight finish within the invoker's grace, and those refused by a stopping
//! invoker are made visible again at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_core::limits::MAX_RECURSION_HOPS;
use nimbus_core::{FunctionName, Target, lineage};
use nimbus_runtime::Outcome;
use nimbus_store::{Leases, SourceMappings, StoredMapping};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Call, DispatchError, Dispatcher, Reply};
use crate::messaging::attributes;
use crate::messaging::queues::{Queues, ReceiveRequest, Received};
use crate::messaging::{MessagingError, arn_resource};
use crate::{EngineConfig, EngineError};

/// Concurrent batches of one mapping when `MaximumConcurrency` is not set.
const DEFAULT_CONCURRENCY: u32 = 5;
/// Pause after the queue could not be read (deleted, storage error).
const ERROR_BACKOFF: Duration = Duration::from_secs(2);
/// How long a poller's lease lasts unless renewed: how long a mapping waits
/// for another node when its holder dies.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews its lease (a third of the TTL, so two renewals
/// can fail before it lapses).
const LEASE_RENEW: Duration = Duration::from_secs(3);
/// How often a node that does not hold a mapping's lease tries to take it.
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// A mapping's settings, as stored and as the Lambda API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub uuid: String,
    /// The function each batch invokes, or a state machine each batch starts
    /// an execution of instead (given as its ARN in `FunctionName`, as
    /// EventBridge Pipes targets one). Stored as the `function`, `qualifier`
    /// and `workflow` fields it always had.
    #[serde(flatten)]
    pub target: Target,
    pub source_arn: String,
    pub batch_size: u32,
    pub batching_window_s: u32,
    pub enabled: bool,
    pub report_batch_item_failures: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_concurrency: Option<u32>,
    pub last_modified_ms: i64,
}

/// The settable part (create, or update with only some fields).
#[derive(Debug, Clone, Default)]
pub struct MappingPatch {
    /// A function (and qualifier) or a state machine name.
    pub target: Option<Target>,
    pub batch_size: Option<u32>,
    pub batching_window_s: Option<u32>,
    pub enabled: Option<bool>,
    pub report_batch_item_failures: Option<bool>,
    /// `Some(None)` clears it.
    pub maximum_concurrency: Option<Option<u32>>,
}

impl Mapping {
    fn apply(&mut self, p: &MappingPatch) -> Result<(), MessagingError> {
        if let Some(t) = &p.target {
            self.target = t.clone();
        }
        if let Some(b) = p.batch_size {
            self.batch_size = b;
        }
        if let Some(w) = p.batching_window_s {
            self.batching_window_s = w;
        }
        if let Some(e) = p.enabled {
            self.enabled = e;
        }
        if let Some(r) = p.report_batch_item_failures {
            self.report_batch_item_failures = r;
        }
        if let Some(c) = p.maximum_concurrency {
            self.maximum_concurrency = c;
        }
        let bad = |m: String| Err(MessagingError::InvalidParameter(m));
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!(
                "BatchSize must be between 1 and 10000, got {}",
                self.batch_size
            ));
        }
        if self.batching_window_s > 300 {
            return bad("MaximumBatchingWindowInSeconds must be between 0 and 300".into());
        }
        if self.batch_size > 10 && self.batching_window_s == 0 {
            return bad("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10".into());
        }
        if let Some(c) = self.maximum_concurrency
            && !(2..=1000).contains(&c)
        {
            return bad("ScalingConfig.MaximumConcurrency must be between 2 and 1000".into());
        }
        Ok(())
    }

    pub fn queue(&self) -> &str {
        arn_resource(&self.source_arn, "sqs").unwrap_or("")
    }
}

/// A poller and the settings it runs with.
struct Running {
    mapping: Mapping,
    stop: CancellationToken,
    /// Cancelled when the poller has stopped and released its lease.
    done: CancellationToken,
}

pub struct EventSources {
    store: Arc<dyn SourceMappings>,
    /// Who polls each mapping (see the module docs).
    leases: Arc<dyn Leases>,
    /// This node's id, the owner of the leases it takes.
    node: String,
    queues: Arc<Queues>,
    /// Runs each batch's target.
    dispatcher: Arc<Dispatcher>,
    config: EngineConfig,
    running: Mutex<HashMap<String, Running>>,
    /// Serialises changes (create/update/delete, and following other nodes'),
    /// so a poller is never started twice for one mapping.
    writes: tokio::sync::Mutex<()>,
    /// Stops every poller (shutdown).
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Wall time.
    clock: nimbus_core::Clock,
}

impl EventSources {
    /// `node` is this node's id: it owns the leases of the mappings polled here.
    pub fn new(
        store: Arc<dyn SourceMappings>,
        leases: Arc<dyn Leases>,
        node: &str,
        queues: Arc<Queues>,
        dispatcher: Arc<Dispatcher>,
        config: EngineConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            leases,
            node: node.to_string(),
            queues,
            dispatcher,
            config,
            running: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            clock: nimbus_core::Clock::system(),
        })
    }

    /// The target's ARN: the function's, or the state machine's.
    pub fn function_arn(&self, m: &Mapping) -> String {
        m.target.arn(&nimbus_core::policy::ArnScope {
            region: self.config.region.clone(),
            account_id: self.config.account_id.clone(),
        })
    }

    /// Starts the pollers of every stored, enabled mapping. Returns how many.
    pub async fn start_all(self: &Arc<Self>) -> Result<usize, MessagingError> {
        let mut n = 0;
        for stored in self.store.list_mappings().await? {
            match serde_json::from_str::<Mapping>(&stored.config) {
                Ok(m) if m.enabled => {
                    self.start(m, None);
                    n += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("event source mapping {} is unreadable: {e}", stored.uuid)
                }
            }
        }
        Ok(n)
    }

    /// Checks that a target exists, in the Lambda API's terms.
    async fn check_target(&self, target: &Target) -> Result<(), MessagingError> {
        self.dispatcher
            .check(target)
            .await
            .map_err(|e| match (target, e) {
                (Target::Workflow { machine }, e) => {
                    MessagingError::InvalidParameter(format!("state machine {machine}: {e}"))
                }
                (Target::Function { name, .. }, _) => {
                    MessagingError::FunctionNotFound(self.config.function_arn(name))
                }
            })
    }

    pub async fn create(
        self: &Arc<Self>,
        source_arn: &str,
        patch: MappingPatch,
    ) -> Result<Mapping, MessagingError> {
        let Some(target) = patch.target.clone() else {
            return Err(MessagingError::InvalidParameter(
                "FunctionName is required".into(),
            ));
        };
        self.check_target(&target).await?;
        let queue = arn_resource(source_arn, "sqs").ok_or_else(|| {
            MessagingError::InvalidParameter(format!(
                "EventSourceArn {source_arn} is not supported: Nimbus maps SQS queues (arn:aws:sqs:…)"
            ))
        })?;
        self.queues.get(queue).await?;
        let _w = self.writes.lock().await;
        for existing in self.list().await? {
            if existing.source_arn == source_arn && existing.target == target {
                return Err(MessagingError::MappingExists(
                    source_arn.into(),
                    self.function_arn(&existing),
                ));
            }
        }
        let mut m = Mapping {
            uuid: uuid::Uuid::new_v4().to_string(),
            target,
            source_arn: source_arn.into(),
            batch_size: 10,
            batching_window_s: 0,
            enabled: true,
            report_batch_item_failures: false,
            maximum_concurrency: None,
            last_modified_ms: self.clock.now_ms(),
        };
        m.apply(&patch)?;
        self.save(&m).await?;
        if m.enabled {
            self.start(m.clone(), None);
        }
        Ok(m)
    }

    async fn save(&self, m: &Mapping) -> Result<(), MessagingError> {
        let config = serde_json::to_string(m)
            .map_err(|e| MessagingError::InvalidParameter(e.to_string()))?;
        self.store
            .put_mapping(&StoredMapping {
                uuid: m.uuid.clone(),
                function: m.target.function_name().unwrap_or_default().to_string(),
                source_arn: m.source_arn.clone(),
                config,
            })
            .await?;
        Ok(())
    }

    pub async fn get(&self, uuid: &str) -> Result<Mapping, MessagingError> {
        let stored = self
            .store
            .get_mapping(uuid)
            .await?
            .ok_or_else(|| MessagingError::MappingNotFound(uuid.into()))?;
        serde_json::from_str(&stored.config)
            .map_err(|e| MessagingError::Store(nimbus_store::StoreError::Corrupt(e.to_string())))
    }

    pub async fn list(&self) -> Result<Vec<Mapping>, MessagingError> {
        Ok(self
            .store
            .list_mappings()
            .await?
            .into_iter()
            .filter_map(|s| serde_json::from_str(&s.config).ok())
            .collect())
    }

    pub async fn update(
        self: &Arc<Self>,
        uuid: &str,
        patch: MappingPatch,
    ) -> Result<Mapping, MessagingError> {
        let _w = self.writes.lock().await;
        let mut m = self.get(uuid).await?;
        if let Some(t) = &patch.target {
            self.check_target(t).await?;
        }
        m.apply(&patch)?;
        m.last_modified_ms = self.clock.now_ms();
        self.save(&m).await?;
        // Restart the poller with the new settings.
        let halted = self.halt(uuid);
        if m.enabled {
            self.start(m.clone(), halted);
        }
        Ok(m)
    }

    pub async fn delete(&self, uuid: &str) -> Result<Mapping, MessagingError> {
        let _w = self.writes.lock().await;
        let m = self.get(uuid).await?;
        let _ = self.halt(uuid);
        self.store.delete_mapping(uuid).await?;
        Ok(m)
    }

    /// The mappings whose pollers run on this node, by uuid.
    pub fn running(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.keys().cloned().collect()
    }

    /// Stops `uuid`'s poller; returns what is cancelled once it has stopped.
    fn halt(&self, uuid: &str) -> Option<CancellationToken> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let r = running.remove(uuid)?;
        r.stop.cancel();
        Some(r.done)
    }

    /// Starts a poller for `m`, once the one `halted` (its previous
    /// settings') has stopped: the old one's release of the lease must not
    /// come after the new one took it.
    fn start(self: &Arc<Self>, m: Mapping, halted: Option<CancellationToken>) {
        let stop = self.stop.child_token();
        let done = CancellationToken::new();
        let running = Running {
            mapping: m.clone(),
            stop: stop.clone(),
            done: done.clone(),
        };
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(m.uuid.clone(), running);
        let me = self.clone();
        self.tracker.spawn(async move {
            let _done = done.drop_guard();
            if let Some(halted) = halted {
                halted.cancelled().await;
            }
            me.poll(m, stop).await;
        });
    }

    /// Pollers stop taking batches.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Stops every poller and waits for them and for the batches in flight
    /// (whose invocations the invoker's drain bounds).
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// A mapping's poller: takes batches while this node holds the mapping's
    /// lease, waits for it otherwise, and releases it when stopped.
    async fn poll(self: Arc<Self>, m: Mapping, stop: CancellationToken) {
        let name = lease_name(&m.uuid);
        let m = Arc::new(m);
        while !stop.is_cancelled() {
            let Some(expires_ms) = self.take_lease(&name).await else {
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_RETRY) => continue,
                    _ = stop.cancelled() => break,
                }
            };
            let held = stop.child_token();
            tokio::join!(
                self.keep_lease(&name, expires_ms, &held),
                self.take_batches(&m, &held),
            );
        }
        if let Err(e) = self
            .leases
            .release(&name, &self.node, self.clock.now_ms())
            .await
        {
            tracing::warn!("mapping {}: cannot release its lease: {e}", m.uuid);
        }
    }

    /// Takes (or renews) the lease `name`; when it lapses, if this node holds it now.
    async fn take_lease(&self, name: &str) -> Option<i64> {
        match self
            .leases
            .acquire(name, &self.node, ttl_ms(), self.clock.now_ms())
            .await
        {
            Ok(lease) => lease.map(|l| l.expires_ms),
            Err(e) => {
                tracing::warn!("{name}: cannot take the lease: {e}");
                None
            }
        }
    }

    /// Renews the lease `name` until `held` is cancelled, and cancels `held`
    /// when the lease is lost: another node took it, or it could not be
    /// renewed before it would lapse.
    async fn keep_lease(&self, name: &str, mut expires_ms: i64, held: &CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LEASE_RENEW) => {}
                _ = held.cancelled() => return,
            }
            let now_ms = self.clock.now_ms();
            match self.leases.renew(name, &self.node, ttl_ms(), now_ms).await {
                Ok(Some(l)) => expires_ms = l.expires_ms,
                Ok(None) => {
                    tracing::info!("{name}: lease lost; another node polls it now");
                    break;
                }
                Err(e) if now_ms + renew_ms() < expires_ms => {
                    tracing::warn!("{name}: cannot renew the lease (will retry): {e}");
                }
                Err(e) => {
                    tracing::warn!("{name}: cannot renew the lease before it lapses: {e}");
                    break;
                }
            }
        }
        held.cancel();
    }

    /// Takes batches until `stop` is cancelled.
    async fn take_batches(self: &Arc<Self>, m: &Arc<Mapping>, stop: &CancellationToken) {
        let slots = Arc::new(Semaphore::new(
            m.maximum_concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize,
        ));
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.cancelled() => return,
            };
            let batch = match self.gather(m, stop).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!("mapping {}: cannot receive: {e}", m.uuid);
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            let (me, m) = (self.clone(), m.clone());
            self.tracker.spawn(async move {
                me.process(&m, batch).await;
                drop(permit);
            });
        }
    }

    /// One batch: a long poll, then, with a batching window, more receives
    /// until the batch is full or the window closes.
    async fn gather(
        &self,
        m: &Mapping,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, MessagingError> {
        let queue = m.queue();
        let size = m.batch_size as usize;
        let mut batch = self
            .queues
            .receive(
                queue,
                ReceiveRequest {
                    max: size,
                    visibility_s: None,
                    wait: Some(crate::messaging::queues::MAX_WAIT),
                },
                Some(stop),
            )
            .await?;
        if batch.is_empty() || m.batching_window_s == 0 {
            return Ok(batch);
        }
        let window_end =
            tokio::time::Instant::now() + Duration::from_secs(m.batching_window_s.into());
        while batch.len() < size && !stop.is_cancelled() {
            let left = window_end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let more = self
                .queues
                .receive(
                    queue,
                    ReceiveRequest {
                        max: size - batch.len(),
                        visibility_s: None,
                        wait: Some(left),
                    },
                    Some(stop),
                )
                .await?;
            batch.extend(more);
        }
        Ok(batch)
    }

    fn event(&self, m: &Mapping, batch: &[Received]) -> Value {
        let records: Vec<Value> = batch
            .iter()
            .map(|r| {
                let msg = &r.message;
                json!({
                    "messageId": msg.id,
                    "receiptHandle": r.receipt_handle,
                    "body": msg.body,
                    "attributes": {
                        "ApproximateReceiveCount": msg.receive_count.to_string(),
                        "SentTimestamp": msg.sent_ms.to_string(),
                        "SenderId": msg.sender_id,
                        "ApproximateFirstReceiveTimestamp": msg.first_receive_ms.unwrap_or(msg.sent_ms).to_string(),
                    },
                    "messageAttributes": attributes::to_event_json(&r.attributes()),
                    "md5OfMessageAttributes": msg.md5_attributes,
                    "md5OfBody": msg.md5_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": m.source_arn,
                    "awsRegion": self.config.region,
                })
            })
            .collect();
        json!({ "Records": records })
    }

    async fn process(&self, m: &Mapping, batch: Vec<Received>) {
        let queue = m.queue();
        let function = match &m.target {
            Target::Workflow { machine } => {
                if self.start_workflow(m, machine, &batch).await {
                    for r in &batch {
                        if let Err(e) = self.queues.delete_message(queue, &r.receipt_handle).await {
                            tracing::warn!(
                                "mapping {}: cannot delete {}: {e}",
                                m.uuid,
                                r.message.id
                            );
                        }
                    }
                }
                return;
            }
            Target::Function { name, .. } => match name.parse::<FunctionName>() {
                Ok(f) => f,
                Err(_) => return,
            },
        };
        // Recursive loop detection: the batch continues its deepest chain.
        let deepest = batch
            .iter()
            .filter_map(|r| r.message.trace.as_deref())
            .max_by_key(|t| lineage::count(Some(t), function.as_str()));
        let hops = lineage::count(deepest, function.as_str()) + 1;
        if hops > MAX_RECURSION_HOPS {
            self.stop_loop(m, &function, &batch).await;
            return;
        }
        let trace = lineage::with_count(
            deepest,
            function.as_str(),
            hops,
            &crate::invoker::new_trace_id(),
        );
        let mut call = Call::new(m.target.clone(), self.event(m, &batch).to_string());
        call.trace = Some(trace.clone());
        let lineage = self
            .dispatcher
            .lineage()
            .enter(function.as_str(), hops, trace);
        let result = self.dispatcher.invoke(call).await;
        drop(lineage);
        let done: Vec<&Received> = match result.map(Reply::into_outcome) {
            Ok(outcome) => match &outcome {
                Outcome::Success { body, .. } if m.report_batch_item_failures => {
                    match failures(body, &batch) {
                        Some(failed) => batch
                            .iter()
                            .filter(|r| !failed.contains(r.message.id.as_str()))
                            .collect(),
                        None => {
                            tracing::warn!(
                                "mapping {}: invalid batchItemFailures from {}; the whole batch is retried",
                                m.uuid,
                                m.target
                            );
                            Vec::new()
                        }
                    }
                }
                Outcome::Success { .. } => batch.iter().collect(),
                // Function error: the batch comes back after its visibility timeout.
                Outcome::Error { .. } => Vec::new(),
            },
            Err(DispatchError::Function(EngineError::ShuttingDown)) => {
                // Not the function's failure: give the messages back now.
                for r in &batch {
                    let _ = self
                        .queues
                        .change_visibility(queue, &r.receipt_handle, 0)
                        .await;
                }
                return;
            }
            Err(e) => {
                tracing::debug!("mapping {}: invoke failed: {e}", m.uuid);
                Vec::new()
            }
        };
        for r in done {
            if let Err(e) = self.queues.delete_message(queue, &r.receipt_handle).await {
                tracing::warn!("mapping {}: cannot delete {}: {e}", m.uuid, r.message.id);
            }
        }
    }
}

impl EventSources {
    /// Drops a batch whose invocation would continue a recursive loop past
    /// the limit (Lambda drops such messages too): deleted, not retried.
    async fn stop_loop(&self, m: &Mapping, function: &FunctionName, batch: &[Received]) {
        let why = format!(
            "RecursiveInvocationException: the batch from queue {} would invoke {function} for the {}th time in one chain of events (the limit is {MAX_RECURSION_HOPS}); its {} message(s) were deleted without running it",
            m.queue(),
            MAX_RECURSION_HOPS + 1,
            batch.len()
        );
        tracing::warn!("mapping {}: {why}", m.uuid);
        let request_id = nimbus_core::InvocationId::new();
        self.dispatcher
            .loop_stopped(function.as_str(), request_id.as_str(), why)
            .await;
        for r in batch {
            if let Err(e) = self
                .queues
                .delete_message(m.queue(), &r.receipt_handle)
                .await
            {
                tracing::warn!("mapping {}: cannot delete {}: {e}", m.uuid, r.message.id);
            }
        }
    }

    /// Starts an execution of `machine` with the batch's SQS event; whether
    /// the batch may be deleted. EXPRESS machines run to their end (the batch
    /// is kept for a retry if they fail); a STANDARD execution is durable once
    /// started. The execution is named after the batch's message ids, so a
    /// batch received again (the server died before deleting it) does not
    /// start a second execution: Step Functions refuses the same name.
    async fn start_workflow(&self, m: &Mapping, machine: &str, batch: &[Received]) -> bool {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for r in batch {
            digest.update(r.message.id.as_bytes());
        }
        let name = format!("sqs-{}", &hex::encode(digest.finalize())[..40]);
        let mut call = Call::new(m.target.clone(), self.event(m, batch).to_string());
        call.execution_name = Some(name);
        match self.dispatcher.invoke(call).await.map(|r| r.succeeded()) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!("mapping {}: cannot start {machine}: {e}", m.uuid);
                false
            }
        }
    }
}

/// Following other nodes: a mapping created, changed, disabled or deleted
/// elsewhere starts, restarts or stops its poller here. A poller already
/// running the stored settings is left alone, so a node's own notices change
/// nothing.
impl EventSources {
    async fn follow(self: &Arc<Self>, uuid: &str) -> Result<(), MessagingError> {
        let _w = self.writes.lock().await;
        let stored = self.store.get_mapping(uuid).await?;
        self.follow_stored(uuid, stored.as_ref());
        Ok(())
    }

    async fn follow_all(self: &Arc<Self>) -> Result<(), MessagingError> {
        let _w = self.writes.lock().await;
        let stored: HashMap<String, StoredMapping> = self
            .store
            .list_mappings()
            .await?
            .into_iter()
            .map(|m| (m.uuid.clone(), m))
            .collect();
        let running: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for uuid in running {
            if !stored.contains_key(&uuid) {
                let _ = self.halt(&uuid);
            }
        }
        for (uuid, m) in &stored {
            self.follow_stored(uuid, Some(m));
        }
        Ok(())
    }

    fn follow_stored(self: &Arc<Self>, uuid: &str, stored: Option<&StoredMapping>) {
        let wanted = stored.and_then(|s| match serde_json::from_str::<Mapping>(&s.config) {
            Ok(m) => m.enabled.then_some(m),
            Err(e) => {
                tracing::error!("event source mapping {uuid} is unreadable: {e}");
                None
            }
        });
        let current = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uuid)
            .map(|r| r.mapping.clone());
        if current == wanted {
            return;
        }
        let halted = self.halt(uuid);
        if let Some(m) = wanted {
            self.start(m, halted);
        }
    }
}

#[async_trait::async_trait]
impl crate::follow::Follower for EventSources {
    fn name(&self) -> &'static str {
        "event source mappings"
    }

    fn follows(&self, kind: nimbus_store::ChangeKind) -> bool {
        kind == nimbus_store::ChangeKind::Mapping
    }

    async fn changed(
        self: Arc<Self>,
        change: &nimbus_store::Change,
    ) -> Result<(), crate::follow::FollowError> {
        Ok(self.follow(&change.key).await?)
    }

    async fn resync(self: Arc<Self>) -> Result<(), crate::follow::FollowError> {
        Ok(self.follow_all().await?)
    }
}

/// The lease whose holder polls mapping `uuid`.
fn lease_name(uuid: &str) -> String {
    format!("mapping:{uuid}")
}

fn ttl_ms() -> i64 {
    LEASE_TTL.as_millis() as i64
}

fn renew_ms() -> i64 {
    LEASE_RENEW.as_millis() as i64
}

/// The ids a partial batch response lists; `None` when it is malformed (then
/// the whole batch failed).
fn failures<'a>(body: &[u8], batch: &'a [Received]) -> Option<HashSet<&'a str>> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Some(HashSet::new());
    }
    let v: Value = serde_json::from_slice(trimmed).ok()?;
    let list = match v.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(l)) => l,
        Some(_) => return None,
    };
    let mut out = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier").and_then(Value::as_str)?;
        let known = batch.iter().find(|r| r.message.id == id)?;
        out.insert(known.message.id.as_str());
    }
    Some(out)
}
