use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_runtime::{Instance, InstanceFactory, InstanceSpec, LogLine};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;

use crate::EngineError;

/// How long a provisioned instance may take to initialise.
const PROVISION_INIT_LIMIT: Duration = Duration::from_secs(60);

struct Idle {
    instance: Box<dyn Instance>,
    since: Instant,
}

struct State {
    /// Most recently used last.
    idle: Vec<Idle>,
    /// Instances that exist: idle, busy or starting.
    live: usize,
    retired: bool,
    /// Provisioned concurrency: instances kept initialised at all times.
    warm_target: usize,
    /// Instances being started ahead of demand (not yet initialised).
    starting: usize,
    /// When an invocation last ended (the start of the current idle period).
    last_release: Option<Instant>,
    /// The idle period (its `last_release`) an instance was pre-warmed for.
    prewarmed_for: Option<Instant>,
}

/// Concurrency limits of one function, shared by the pools of all its versions
/// (a reservation on Lambda covers the function as a whole).
#[derive(Debug)]
pub struct FunctionLimit {
    /// Most instances at once: the reserved concurrency when one is set, else
    /// the host's per-function cap (per version pool).
    limit: AtomicUsize,
    /// Whether `limit` is a reservation: then excess calls are throttled at once,
    /// as Lambda does, instead of waiting for a free instance.
    reserved: AtomicBool,
    /// Invocations running across all versions.
    busy: AtomicUsize,
    /// New instances a function may start: a token bucket, so a burst of calls
    /// cannot fork-bomb the host (Lambda: 1000 per 10 s per function).
    starts: Mutex<TokenBucket>,
}

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate.max(1e-9),
            ))
        }
    }
}

impl FunctionLimit {
    pub(crate) fn new(limit: usize, reserved: bool, starts: TokenBucket) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            reserved: AtomicBool::new(reserved),
            busy: AtomicUsize::new(0),
            starts: Mutex::new(starts),
        }
    }

    /// Takes a place among the function's running invocations, or refuses when a
    /// reservation is exhausted.
    fn claim(self: &Arc<Self>, function: &str) -> Result<Slot, EngineError> {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self.busy.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.clone());
        if self.reserved.load(Ordering::Relaxed) && before >= limit {
            return Err(EngineError::TooManyRequests(format!(
                "function {function} is at its reserved concurrency of {limit}"
            )));
        }
        Ok(slot)
    }
}

/// One running invocation counted against its function; released on drop.
struct Slot(Arc<FunctionLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The instances of one function version.
pub struct Pool {
    spec: Arc<InstanceSpec>,
    shared: Arc<FunctionLimit>,
    state: Mutex<State>,
    released: Notify,
}

impl Pool {
    pub(crate) fn new(spec: Arc<InstanceSpec>, shared: Arc<FunctionLimit>) -> Self {
        Self {
            spec,
            shared,
            state: Mutex::new(State {
                idle: Vec::new(),
                live: 0,
                retired: false,
                warm_target: 0,
                starting: 0,
                last_release: None,
                prewarmed_for: None,
            }),
            released: Notify::new(),
        }
    }

    /// Changes the instance limit without replacing running instances; extra
    /// instances above a lowered limit drain as they are released.
    pub fn set_limit(&self, limit: usize, reserved: bool) {
        self.shared.limit.store(limit, Ordering::Relaxed);
        self.shared.reserved.store(reserved, Ordering::Relaxed);
        self.released.notify_waiters();
    }

    pub fn spec(&self) -> &Arc<InstanceSpec> {
        &self.spec
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.idle.len(), s.live)
    }

    pub(crate) async fn acquire(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        factory: &dyn InstanceFactory,
        logs: &mpsc::Sender<LogLine>,
        deadline: Instant,
    ) -> Result<Lease, EngineError> {
        let slot = self.shared.claim(&self.spec.function)?;
        loop {
            let released = self.released.notified();
            let token_wait = {
                let mut s = self.state.lock().unwrap();
                while let Some(mut idle) = s.idle.pop() {
                    if !idle.instance.is_alive() {
                        // Died while idle: discard it (the caller gets a cold start).
                        s.live -= 1;
                        tokio::spawn(idle.instance.shutdown());
                        continue;
                    }
                    return Ok(Lease {
                        instance: Some(idle.instance),
                        pool: self.clone(),
                        cold: false,
                        _permit: permit,
                        _slot: slot,
                    });
                }
                let limit = self.shared.limit.load(Ordering::Relaxed);
                if s.live < limit {
                    let taken = self.shared.starts.lock().unwrap().take(Instant::now());
                    match taken {
                        Ok(()) => {
                            s.live += 1;
                            break;
                        }
                        Err(wait) => Some(wait),
                    }
                } else {
                    // At the reservation: throttle at once, unless instances are
                    // still starting (provisioned ones), which will be free soon.
                    if self.shared.reserved.load(Ordering::Relaxed) && s.starting == 0 {
                        return Err(EngineError::TooManyRequests(format!(
                            "function {} is at its reserved concurrency of {limit}",
                            self.spec.function
                        )));
                    }
                    None
                }
            };
            if let Some(wait) = token_wait {
                // Scale-out rate reached: wait for a token or a free instance,
                // whichever comes first, within the deadline.
                if Instant::now() >= deadline {
                    return Err(EngineError::TooManyRequests(format!(
                        "function {} is scaling out faster than its rate of new instances allows",
                        self.spec.function
                    )));
                }
                let until = (Instant::now() + wait).min(deadline);
                let _ = tokio::time::timeout_at(until.into(), released).await;
                continue;
            }
            if tokio::time::timeout_at(deadline.into(), released)
                .await
                .is_err()
            {
                return Err(EngineError::TooManyRequests(format!(
                    "function {} is at its limit of {} concurrent instances",
                    self.spec.function,
                    self.shared.limit.load(Ordering::Relaxed)
                )));
            }
        }
        match factory.start(self.spec.clone(), logs.clone()).await {
            Ok(instance) => Ok(Lease {
                instance: Some(instance),
                pool: self.clone(),
                cold: true,
                _permit: permit,
                _slot: slot,
            }),
            Err(e) => {
                self.forget_one();
                Err(EngineError::InstanceStart(e.to_string()))
            }
        }
    }

    fn forget_one(&self) {
        self.state.lock().unwrap().live -= 1;
        self.released.notify_one();
    }

    fn give_back(&self, instance: Box<dyn Instance>, healthy: bool) {
        let mut s = self.state.lock().unwrap();
        s.last_release = Some(Instant::now());
        if healthy && !s.retired && s.live <= self.shared.limit.load(Ordering::Relaxed) {
            s.idle.push(Idle {
                instance,
                since: Instant::now(),
            });
            drop(s);
        } else {
            s.live -= 1;
            drop(s);
            tokio::spawn(instance.shutdown());
        }
        self.released.notify_one();
    }

    /// Stops idle instances older than `keep`.
    pub(crate) fn reap(&self, now: Instant, keep: Duration) {
        let expired: Vec<Idle> = {
            let mut s = self.state.lock().unwrap();
            // Never below the provisioned number of instances.
            let mut spare = s.live.saturating_sub(s.warm_target);
            let mut old = Vec::new();
            let mut young = Vec::new();
            // Oldest first (idle is most-recently-used last).
            for i in std::mem::take(&mut s.idle) {
                if spare > 0 && now.duration_since(i.since) >= keep {
                    spare -= 1;
                    old.push(i);
                } else {
                    young.push(i);
                }
            }
            s.idle = young;
            s.live -= old.len();
            old
        };
        for i in expired {
            tracing::debug!(function = %self.spec.function, instance = i.instance.id(), "keep-alive expired");
            tokio::spawn(i.instance.shutdown());
        }
    }

    /// When the pool's current idle period began: `None` while an invocation
    /// runs or before the first one.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        let running = s.live - s.starting - s.idle.len();
        if running > 0 { None } else { s.last_release }
    }

    /// Starts one instance ahead of the next call, once per idle period, if
    /// none exists (the pre-warm of a learning keep-alive policy).
    pub(crate) fn prewarm(
        self: &Arc<Self>,
        factory: &Arc<dyn InstanceFactory>,
        logs: &mpsc::Sender<LogLine>,
    ) {
        {
            let mut s = self.state.lock().unwrap();
            let period = s.last_release;
            if s.retired || s.live > 0 || period.is_none() || s.prewarmed_for == period {
                return;
            }
            s.prewarmed_for = period;
            s.live += 1;
            s.starting += 1;
        }
        tracing::debug!(function = %self.spec.function, "pre-warming an instance");
        self.start_ahead(1, "on-demand", factory, logs);
    }

    /// Sets the provisioned concurrency: this many instances are kept initialised.
    pub fn set_warm_target(&self, n: usize) {
        self.state.lock().unwrap().warm_target = n;
    }

    /// Invocations of this function running now (all versions).
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// (requested, available) provisioned instances.
    pub fn provisioned(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.warm_target, (s.live - s.starting).min(s.warm_target))
    }

    /// Starts instances ahead of demand until the provisioned number exist. Each
    /// is initialised (its runtime has asked for work) before it is offered.
    pub(crate) fn fill(
        self: &Arc<Self>,
        factory: &Arc<dyn InstanceFactory>,
        logs: &mpsc::Sender<LogLine>,
    ) {
        let missing = {
            let mut s = self.state.lock().unwrap();
            let limit = self.shared.limit.load(Ordering::Relaxed);
            if s.retired || s.live >= s.warm_target {
                return;
            }
            let n = (s.warm_target - s.live).min(limit.saturating_sub(s.live));
            s.live += n;
            s.starting += n;
            n
        };
        self.start_ahead(missing, "provisioned-concurrency", factory, logs);
    }

    /// Starts `n` instances (already counted in `live` and `starting`) and
    /// offers each once it is initialised.
    fn start_ahead(
        self: &Arc<Self>,
        n: usize,
        initialization_type: &'static str,
        factory: &Arc<dyn InstanceFactory>,
        logs: &mpsc::Sender<LogLine>,
    ) {
        let mut spec = (*self.spec).clone();
        spec.initialization_type = initialization_type;
        let spec = Arc::new(spec);
        for _ in 0..n {
            let (pool, factory, logs, spec) =
                (self.clone(), factory.clone(), logs.clone(), spec.clone());
            tokio::spawn(async move {
                let ready = match factory.start(spec, logs).await {
                    Ok(mut instance) => match instance.wait_ready(PROVISION_INIT_LIMIT).await {
                        Ok(()) => Some(instance),
                        Err(e) => {
                            tracing::warn!(function = %pool.spec.function, "instance started ahead failed to initialise: {e}");
                            tokio::spawn(instance.shutdown());
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(function = %pool.spec.function, "cannot start an instance ahead: {e}");
                        None
                    }
                };
                let mut s = pool.state.lock().unwrap();
                s.starting -= 1;
                match ready {
                    Some(instance) if !s.retired => {
                        s.idle.insert(
                            0,
                            Idle {
                                instance,
                                since: Instant::now(),
                            },
                        );
                        drop(s);
                        pool.released.notify_one();
                    }
                    Some(instance) => {
                        s.live -= 1;
                        drop(s);
                        tokio::spawn(instance.shutdown());
                    }
                    None => s.live -= 1,
                }
            });
        }
    }

    /// Stops idle instances now and busy ones when they are released.
    pub fn retire(&self) -> Vec<JoinHandle<()>> {
        let idle = {
            let mut s = self.state.lock().unwrap();
            s.retired = true;
            s.live -= s.idle.len();
            std::mem::take(&mut s.idle)
        };
        self.released.notify_waiters();
        idle.into_iter()
            .map(|i| tokio::spawn(i.instance.shutdown()))
            .collect()
    }
}

/// An instance lent to one invocation. Must be given back with [`Lease::release`];
/// if dropped instead (the invocation was abandoned midway), the instance is stopped.
pub struct Lease {
    instance: Option<Box<dyn Instance>>,
    pool: Arc<Pool>,
    cold: bool,
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

impl Lease {
    pub fn is_cold(&self) -> bool {
        self.cold
    }

    pub fn instance(&mut self) -> &mut dyn Instance {
        self.instance
            .as_deref_mut()
            .expect("lease holds an instance until released")
    }

    pub fn release(mut self, healthy: bool) {
        if let Some(i) = self.instance.take() {
            self.pool.give_back(i, healthy);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(i) = self.instance.take() {
            self.pool.give_back(i, false);
        }
    }
}
