//! The scheduler: which instance runs an invocation.
//!
//! Each deployed function version owns a [`Pool`]. An invocation takes the most
//! recently used idle instance (warm, its caches hot), else starts one (cold) while
//! the function is under its instance limit, else waits briefly for a release and
//! then gives up with `TooManyRequests`. An account-wide semaphore caps concurrent
//! invocations across all functions. Idle instances are reaped by the
//! [`KeepAlivePolicy`]; replacing a function's code or configuration retires its
//! pool, so in-flight calls finish on the old instances and new calls start new ones.
//!
//! Memory admission ([`MemoryBudget`]) bounds the sum of the instances' memory
//! limits: a start that does not fit evicts idle instances, else waits like a
//! caller at the instance limit, then gets `TooManyRequests`.
//!
//! The scaling engine (provisioned concurrency, scale-out rate, adaptive keep-alive)
//! builds on these pieces: the policy is a trait, the limits live in one place.

mod keep_alive;
mod memory;
mod pool;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nimbus_runtime::{InstanceFactory, LogLine};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use keep_alive::{FixedKeepAlive, HybridHistogram, KeepAlivePolicy, Windows};
pub use memory::{MemoryBudget, RESERVE_MIN_BYTES, default_budget_bytes};
pub use pool::{FunctionLimit, Lease, Pool};

use crate::EngineError;
use nimbus_core::Throttle;

/// How often keep-alives are checked (pre-warms are timed to this precision).
const REAPER_TICK: Duration = Duration::from_millis(100);
/// Shorter pre-warm windows are not worth an unload: the instance stays warm.
const MIN_PREWARM: Duration = Duration::from_secs(1);

pub struct Scheduler {
    factory: Arc<dyn InstanceFactory>,
    logs: mpsc::Sender<LogLine>,
    account: Arc<Semaphore>,
    account_limit: usize,
    per_function: usize,
    queue_wait: Duration,
    keep_alive: Arc<dyn KeepAlivePolicy>,
    pools: Mutex<Vec<Weak<Pool>>>,
    /// Per function, shared by the pools of all its versions.
    limits: Mutex<std::collections::HashMap<String, Arc<FunctionLimit>>>,
    /// New instances per second per function, and how many may start at once.
    scale_out: (f64, f64),
    /// Busy instances of a function below which callers never queue for one
    /// (see `pool::State::queue_for`).
    queue_above: usize,
    /// Invocations after which an instance is replaced (0: never).
    max_uses: u64,
    /// The memory all instances together may commit.
    memory: Arc<MemoryBudget>,
}

/// Invocations an instance runs before it is replaced.
pub const DEFAULT_MAX_USES: u64 = 100_000;

/// Four busy instances per CPU: while one waits for the server to hand it the
/// next event, others keep the core working.
fn default_queue_above() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

impl Scheduler {
    pub fn new(
        factory: Arc<dyn InstanceFactory>,
        logs: mpsc::Sender<LogLine>,
        account_limit: usize,
        per_function: usize,
        queue_wait: Duration,
        keep_alive: Arc<dyn KeepAlivePolicy>,
    ) -> Self {
        Self {
            factory,
            logs,
            account: Arc::new(Semaphore::new(account_limit)),
            account_limit,
            per_function,
            queue_wait,
            keep_alive,
            pools: Mutex::new(Vec::new()),
            limits: Mutex::new(std::collections::HashMap::new()),
            scale_out: (100.0, 100.0),
            queue_above: default_queue_above(),
            max_uses: DEFAULT_MAX_USES,
            memory: Arc::new(MemoryBudget::unlimited()),
        }
    }

    /// Bounds the memory all instances together may commit, in MB.
    pub fn with_memory_budget(mut self, mb: u64) -> Self {
        self.memory = Arc::new(MemoryBudget::new(mb));
        self
    }

    /// The memory budget and what is committed of it.
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// Stops least recently used idle instances, of any function, until `mb`
    /// more would fit the memory budget; returns whether it does now.
    fn evict_for(&self, mb: u64) -> bool {
        loop {
            if self.memory.used_mb().saturating_add(mb) <= self.memory.capacity_mb() {
                return true;
            }
            let oldest = self
                .live_pools()
                .into_iter()
                .filter_map(|p| p.oldest_idle().map(|t| (t, p)))
                .min_by_key(|(t, _)| *t);
            match oldest {
                Some((_, pool)) if pool.evict_oldest_idle() => {}
                Some(_) => continue,
                None => return false,
            }
        }
    }

    /// Replaces an instance after it has run `n` invocations (0: never).
    pub fn with_max_invocations_per_instance(mut self, n: u64) -> Self {
        self.max_uses = n;
        self
    }

    /// Sets how many instances of a function are busy before callers may queue
    /// for one instead of starting another (`None`: the default, 4 per CPU).
    pub fn with_queue_after(mut self, n: Option<usize>) -> Self {
        self.queue_above = n.unwrap_or_else(default_queue_above).max(1);
        self
    }

    /// Creates the pool for a newly deployed function version.
    pub fn new_pool(
        &self,
        spec: Arc<nimbus_runtime::InstanceSpec>,
        reserved: Option<u32>,
    ) -> Arc<Pool> {
        let (limit, is_reserved) = self.limit_for(reserved);
        let shared = {
            let mut limits = self.limits.lock().unwrap();
            limits.retain(|_, l| Arc::strong_count(l) > 1);
            limits
                .entry(spec.function.clone())
                .or_insert_with(|| {
                    let bucket = pool::TokenBucket::new(self.scale_out.0, self.scale_out.1);
                    Arc::new(FunctionLimit::new(limit, is_reserved, bucket))
                })
                .clone()
        };
        // An existing limit wins: it carries the function's current reservation,
        // which a version's older snapshot must not overwrite.
        let pool = Arc::new(Pool::new(
            spec,
            shared,
            self.queue_above,
            self.max_uses,
            self.memory.clone(),
        ));
        let mut pools = self.pools.lock().unwrap();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    }

    /// Sets how fast a function may add instances: `rate` per second, `burst` at once.
    pub fn with_scale_out(mut self, rate: f64, burst: f64) -> Self {
        self.scale_out = (rate.max(0.01), burst.max(1.0));
        self
    }

    /// Forgets a deleted function's limits, so a function created later under the
    /// same name starts without the old reservation.
    pub fn forget_function(&self, function: &str) {
        self.limits.lock().unwrap().remove(function);
    }

    /// The instance limit of a function with the given reserved concurrency.
    pub fn limit_for(&self, reserved: Option<u32>) -> (usize, bool) {
        match reserved {
            Some(n) => (n as usize, true),
            None => (self.per_function, false),
        }
    }

    /// Reserves a place under the account limit, then an instance of `pool`.
    pub async fn acquire(&self, pool: &Arc<Pool>) -> Result<Lease, EngineError> {
        let deadline = Instant::now() + self.queue_wait;
        let permit = self.account_permit(deadline).await?;
        self.keep_alive
            .record_invocation(&pool.spec().function, Instant::now());
        pool.acquire(permit, &*self.factory, &self.logs, deadline, &|mb| {
            self.evict_for(mb)
        })
        .await
    }

    async fn account_permit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, EngineError> {
        if let Ok(p) = self.account.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout_at(deadline.into(), self.account.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(EngineError::ShuttingDown),
            Err(_) => Err(EngineError::too_many_requests(
                Throttle::AccountConcurrency,
                format!(
                    "the account concurrency limit of {} is reached",
                    self.account_limit
                ),
            )),
        }
    }

    fn live_pools(&self) -> Vec<Arc<Pool>> {
        let mut pools = self.pools.lock().unwrap();
        pools.retain(|p| p.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    }

    /// Applies the keep-alive policy until cancelled: stops idle instances whose
    /// keep-alive has passed, pre-warms where the policy asks for it, and keeps
    /// provisioned instances topped up.
    async fn run_reaper(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(REAPER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            for pool in self.live_pools() {
                let function = &pool.spec().function;
                match self.keep_alive.windows(function) {
                    Some(w) if w.prewarm >= MIN_PREWARM => {
                        // Unloaded right after an execution; loaded again for the
                        // window in which the next call is likely; unloaded after it.
                        if let Some(since) = pool.idle_since() {
                            let idle = now.duration_since(since);
                            if idle >= w.prewarm && idle < w.prewarm + w.keep_alive {
                                pool.prewarm(&self.factory, &self.logs);
                            } else {
                                pool.reap(now, Duration::ZERO);
                            }
                        }
                    }
                    Some(w) => pool.reap(now, w.prewarm + w.keep_alive),
                    None => pool.reap(now, self.keep_alive.keep_alive(function)),
                }
                pool.fill(&self.factory, &self.logs);
            }
        }
    }

    /// Stops every idle instance and refuses new ones (server shutdown).
    async fn shutdown(&self) {
        self.account.close();
        let mut stops = Vec::new();
        for pool in self.live_pools() {
            stops.extend(pool.retire());
        }
        for s in stops {
            let _ = s.await;
        }
        self.factory.shutdown().await;
    }

    /// Per function: (running invocations, idle instances, instances), for metrics.
    pub fn gauges(&self) -> std::collections::BTreeMap<String, (usize, usize, usize)> {
        let mut out: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
        for pool in self.live_pools() {
            let (idle, live) = pool.counts();
            let e = out.entry(pool.spec().function.clone()).or_default();
            e.0 = pool.busy();
            e.1 += idle;
            e.2 += live;
        }
        out
    }

    /// (idle, live) instance counts for a pool, for status output and tests.
    pub fn counts(pool: &Pool) -> (usize, usize) {
        pool.counts()
    }
}

/// Its run loop is the reaper; draining stops every instance (after the
/// invocations are drained) and refuses new ones.
#[async_trait::async_trait]
impl crate::lifecycle::Service for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn run(
        self: Arc<Self>,
        ctx: crate::lifecycle::Context,
    ) -> Result<(), crate::lifecycle::ServiceError> {
        self.run_reaper(ctx.cancel).await;
        Ok(())
    }

    async fn drain(&self, _deadline: tokio::time::Instant) {
        self.shutdown().await;
    }
}
