use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_runtime::{Instance, InstanceFactory, InstanceSpec, LogLine};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::memory::MemoryBudget;
use crate::EngineError;
use nimbus_core::Throttle;

/// How long a provisioned instance may take to initialise.
const PROVISION_INIT_LIMIT: Duration = Duration::from_secs(60);

struct Idle {
    instance: Box<dyn Instance>,
    since: Instant,
    /// Invocations the instance has run.
    uses: u64,
}

#[derive(Default)]
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
    /// Callers waiting for a busy instance instead of starting one, first
    /// come first served: a released instance goes straight to the first of
    /// them, so a newcomer cannot take it from under someone who waited.
    queued: std::collections::VecDeque<oneshot::Sender<Idle>>,
    /// Cold starts whose first invocation has not ended: capacity on its way.
    cold_running: usize,
    timings: Timings,
}

/// What a pool has learned about its function: how long a warm invocation holds
/// its instance and what a cold start costs the caller. Exponentially weighted
/// averages (seconds), so they follow a function whose behaviour changes.
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    warm: Option<f64>,
    cold: Option<f64>,
}

impl Timings {
    /// Weight of the newest sample.
    const ALPHA: f64 = 0.1;

    fn record(&mut self, cold: bool, held: Duration) {
        let slot = if cold { &mut self.cold } else { &mut self.warm };
        let x = held.as_secs_f64();
        *slot = Some(match *slot {
            Some(avg) => avg + Self::ALPHA * (x - avg),
            None => x,
        });
    }
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
            return Err(EngineError::too_many_requests(
                Throttle::ReservedConcurrency,
                format!("function {function} is at its reserved concurrency of {limit}"),
            ));
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
    /// Busy instances below which a caller never queues (see [`State::queue_for`]).
    queue_above: usize,
    /// Invocations after which an instance is replaced (0: never).
    max_uses: u64,
    /// Every instance in `live` holds `spec.memory_mb` of it.
    memory: Arc<MemoryBudget>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Nobody holds a lease or a start any more: what is left is idle.
        let live = self.state.get_mut().map(|s| s.live).unwrap_or(0);
        self.memory.give(live, self.mb());
    }
}

/// What a caller without an idle instance does next.
enum Next {
    /// Wait until then for a busy instance to be handed over.
    Queue(Instant, oneshot::Receiver<Idle>),
    /// Wait for a scale-out token (this long) or a release.
    Token(Duration),
    /// Wait for a release: the function is at its instance limit.
    Limit,
    /// A new instance does not fit the memory budget: evict idle instances
    /// elsewhere, else wait for memory or a release.
    Memory,
}

impl State {
    /// Tells the first queued caller to look again (its sender is dropped):
    /// an instance went away, so there is room to start one.
    fn requeue_first(&mut self) {
        while let Some(waiter) = self.queued.pop_front() {
            if !waiter.is_closed() {
                return;
            }
        }
    }

    /// Whether a caller that finds no idle instance should wait for a busy one
    /// rather than start another, and until when.
    ///
    /// Lambda starts an instance for every concurrent request. On one machine
    /// that is the wrong trade for short invocations: a hello handler is done
    /// in a tenth of a millisecond, a cold start takes tens, and thirty-two
    /// processes sharing two cores run slower than four (context switches, cold
    /// JIT and caches in each). So once `queue_above` instances are busy (a few
    /// per CPU, enough to keep every core working while others wait on I/O), a
    /// caller queues when the expected wait for a release (Little's law: queue
    /// length × warm hold time ÷ busy instances) is shorter than a cold start,
    /// and for at most one cold start's time, after which it starts an instance
    /// anyway (or, having waited that long, while a cold start it can use is
    /// still on its way: cold starts take longer under load than on average).
    /// Slow handlers (a wait longer than a cold start) scale out as before.
    ///
    /// A burst at a function that has not run warm yet (its timings unknown)
    /// queues behind the cold starts already on their way, once, for one cold
    /// start's time (a guess until one was measured): a fast handler hands its
    /// fresh instance over a millisecond after starting, and a slow one costs
    /// the waiting callers at most that one wait before they scale out. Without
    /// this, thirty-two simultaneous first calls start thirty-two instances that
    /// then stay, and the machine runs all of them from then on.
    fn queue_for(
        &mut self,
        queue_above: usize,
        now: Instant,
        deadline: Instant,
        waited: bool,
    ) -> Option<Instant> {
        self.queued.retain(|w| !w.is_closed());
        let busy = self.live - self.starting - self.idle.len();
        if busy < queue_above.max(1) {
            return None;
        }
        let cold = match (self.timings.warm, self.timings.cold) {
            (Some(warm), Some(cold)) => {
                let expected = warm * (self.queued.len() + 1) as f64 / busy as f64;
                if expected >= cold || (waited && self.cold_running == 0) {
                    return None;
                }
                cold
            }
            (None, cold) if !waited && self.cold_running > 0 => cold.unwrap_or(FIRST_COLD_GUESS),
            _ => return None,
        };
        let until = (now + Duration::from_secs_f64(cold)).min(deadline);
        (until > now).then_some(until)
    }
}

/// How long a cold start is taken to last before one was measured (seconds):
/// a Node or Python start with a small package.
const FIRST_COLD_GUESS: f64 = 0.5;

impl Pool {
    pub(crate) fn new(
        spec: Arc<InstanceSpec>,
        shared: Arc<FunctionLimit>,
        queue_above: usize,
        max_uses: u64,
        memory: Arc<MemoryBudget>,
    ) -> Self {
        Self {
            queue_above,
            max_uses,
            memory,
            spec,
            shared,
            state: Mutex::new(State::default()),
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

    /// The memory each instance commits.
    fn mb(&self) -> u64 {
        u64::from(self.spec.memory_mb)
    }

    /// When this pool's least recently used idle instance (beyond its
    /// provisioned ones) went idle.
    pub(crate) fn oldest_idle(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        if s.live <= s.warm_target {
            return None;
        }
        s.idle.first().map(|i| i.since)
    }

    /// Stops the least recently used idle instance to free its memory for
    /// another start; returns whether there was one.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let evicted = {
            let mut s = self.state.lock().unwrap();
            if s.live <= s.warm_target || s.idle.is_empty() {
                return false;
            }
            s.live -= 1;
            s.idle.remove(0)
        };
        tracing::debug!(function = %self.spec.function, instance = evicted.instance.id(), "evicted for memory");
        self.memory.give(1, self.mb());
        tokio::spawn(evicted.instance.shutdown());
        true
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
        evict: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<Lease, EngineError> {
        let slot = self.shared.claim(&self.spec.function)?;
        if self.mb() > self.memory.capacity_mb() {
            // It could never start: no point waiting.
            return Err(EngineError::too_many_requests(
                Throttle::MemoryBudget,
                format!(
                    "function {} needs {} MB, more than the server's whole memory budget of {} MB",
                    self.spec.function,
                    self.spec.memory_mb,
                    self.memory.capacity_mb()
                ),
            ));
        }
        // Set once a queued caller has waited as long as a cold start takes.
        let mut waited_enough = false;
        loop {
            let released = self.released.notified();
            let freed = self.memory.freed.notified();
            let next = {
                let mut s = self.state.lock().unwrap();
                while let Some(mut idle) = s.idle.pop() {
                    if !idle.instance.is_alive() {
                        // Died while idle: discard it (the caller gets a cold start).
                        s.live -= 1;
                        self.memory.give(1, self.mb());
                        tokio::spawn(idle.instance.shutdown());
                        continue;
                    }
                    return Ok(self.warm_lease(idle, permit, slot));
                }
                let limit = self.shared.limit.load(Ordering::Relaxed);
                let now = Instant::now();
                if s.live < limit {
                    match s.queue_for(self.queue_above, now, deadline, waited_enough) {
                        Some(until) => {
                            let (tx, rx) = oneshot::channel();
                            s.queued.push_back(tx);
                            Next::Queue(until, rx)
                        }
                        None if !self.memory.try_take(self.mb()) => Next::Memory,
                        None => {
                            let taken = self.shared.starts.lock().unwrap().take(now);
                            match taken {
                                Ok(()) => {
                                    s.live += 1;
                                    s.cold_running += 1;
                                    break;
                                }
                                Err(wait) => {
                                    self.memory.give(1, self.mb());
                                    Next::Token(wait)
                                }
                            }
                        }
                    }
                } else {
                    // At the reservation: throttle at once, unless instances are
                    // still starting (provisioned ones), which will be free soon.
                    if self.shared.reserved.load(Ordering::Relaxed) && s.starting == 0 {
                        return Err(EngineError::too_many_requests(
                            Throttle::ReservedConcurrency,
                            format!(
                                "function {} is at its reserved concurrency of {limit}",
                                self.spec.function
                            ),
                        ));
                    }
                    Next::Limit
                }
            };
            match next {
                Next::Queue(until, mut handed) => {
                    let instance = match tokio::time::timeout_at(until.into(), &mut handed).await {
                        Ok(Ok(instance)) => Some(instance),
                        // Capacity was freed or the pool retired: look again.
                        Ok(Err(_)) => None,
                        Err(_) => {
                            waited_enough = true;
                            // An instance handed over just as the wait ended is still ours.
                            handed.close();
                            handed.try_recv().ok()
                        }
                    };
                    if let Some(handed) = instance {
                        return Ok(self.warm_lease(handed, permit, slot));
                    }
                }
                Next::Token(wait) => {
                    // Scale-out rate reached: wait for a token or a free instance,
                    // whichever comes first, within the deadline.
                    if Instant::now() >= deadline {
                        return Err(EngineError::too_many_requests(
                            Throttle::ScaleOutRate,
                            format!(
                                "function {} is scaling out faster than its rate of new instances allows",
                                self.spec.function
                            ),
                        ));
                    }
                    let until = (Instant::now() + wait).min(deadline);
                    let _ = tokio::time::timeout_at(until.into(), released).await;
                }
                Next::Memory => {
                    // Idle instances (of any function) make room first; else a
                    // release here or memory freed anywhere, within the deadline.
                    if evict(self.mb()) {
                        continue;
                    }
                    let woken = tokio::time::timeout_at(deadline.into(), async {
                        tokio::select! {
                            _ = released => {}
                            _ = freed => {}
                        }
                    });
                    if woken.await.is_err() {
                        return Err(EngineError::too_many_requests(
                            Throttle::MemoryBudget,
                            format!(
                                "the server's memory budget of {} MB is committed to running instances; function {} needs {} MB",
                                self.memory.capacity_mb(),
                                self.spec.function,
                                self.spec.memory_mb
                            ),
                        ));
                    }
                }
                Next::Limit => {
                    if tokio::time::timeout_at(deadline.into(), released)
                        .await
                        .is_err()
                    {
                        return Err(EngineError::too_many_requests(
                            Throttle::InstanceLimit,
                            format!(
                                "function {} is at its limit of {} concurrent instances",
                                self.spec.function,
                                self.shared.limit.load(Ordering::Relaxed)
                            ),
                        ));
                    }
                }
            }
        }
        let acquired = Instant::now();
        match factory.start(self.spec.clone(), logs.clone()).await {
            Ok(instance) => Ok(Lease {
                instance: Some(instance),
                pool: self.clone(),
                cold: true,
                acquired,
                uses: 0,
                _permit: permit,
                _slot: slot,
            }),
            Err(e) => {
                self.forget_one();
                Err(EngineError::InstanceStart(e.to_string()))
            }
        }
    }

    fn warm_lease(self: &Arc<Self>, idle: Idle, permit: OwnedSemaphorePermit, slot: Slot) -> Lease {
        Lease {
            instance: Some(idle.instance),
            pool: self.clone(),
            cold: false,
            acquired: Instant::now(),
            uses: idle.uses,
            _permit: permit,
            _slot: slot,
        }
    }

    fn forget_one(&self) {
        let mut s = self.state.lock().unwrap();
        s.live -= 1;
        s.cold_running -= 1;
        s.requeue_first();
        drop(s);
        self.memory.give(1, self.mb());
        self.released.notify_one();
    }

    fn give_back(
        &self,
        instance: Box<dyn Instance>,
        healthy: bool,
        cold: bool,
        held: Option<Duration>,
        uses: u64,
    ) {
        let mut s = self.state.lock().unwrap();
        s.last_release = Some(Instant::now());
        if cold {
            s.cold_running -= 1;
        }
        if let Some(held) = held {
            s.timings.record(cold, held);
        }
        // An instance that has run `max_uses` invocations is replaced, as
        // gunicorn's max_requests does: whatever it leaks (glibc keeps every
        // value ever given to setenv, and the runtimes set _X_AMZN_TRACE_ID on
        // every invocation: 140 MB per million) cannot add up to an OOM kill.
        let worn_out = self.max_uses != 0 && uses >= self.max_uses;
        if healthy && !worn_out && !s.retired && s.live <= self.shared.limit.load(Ordering::Relaxed)
        {
            let mut idle = Idle {
                instance,
                since: Instant::now(),
                uses,
            };
            while let Some(waiter) = s.queued.pop_front() {
                match waiter.send(idle) {
                    Ok(()) => return,
                    // That caller stopped waiting.
                    Err(back) => idle = back,
                }
            }
            s.idle.push(idle);
            drop(s);
        } else {
            s.live -= 1;
            s.requeue_first();
            drop(s);
            self.memory.give(1, self.mb());
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
        self.memory.give(expired.len(), self.mb());
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
            if !self.memory.try_take(self.mb()) {
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
            let n = self.memory.take_up_to(n, self.mb());
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
                                uses: 0,
                            },
                        );
                        drop(s);
                        pool.released.notify_one();
                    }
                    Some(instance) => {
                        s.live -= 1;
                        drop(s);
                        pool.memory.give(1, pool.mb());
                        tokio::spawn(instance.shutdown());
                    }
                    None => {
                        s.live -= 1;
                        drop(s);
                        pool.memory.give(1, pool.mb());
                    }
                }
            });
        }
    }

    /// Stops idle instances now and busy ones when they are released.
    pub fn retire(&self) -> Vec<JoinHandle<()>> {
        let idle = {
            let mut s = self.state.lock().unwrap();
            s.retired = true;
            s.queued.clear();
            s.live -= s.idle.len();
            std::mem::take(&mut s.idle)
        };
        self.memory.give(idle.len(), self.mb());
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
    /// When the caller got the instance (cold: when it began starting it).
    acquired: Instant,
    /// Invocations the instance ran before this one.
    uses: u64,
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
            // Only completed, healthy invocations teach the pool its timings.
            let held = healthy.then(|| self.acquired.elapsed());
            self.pool
                .give_back(i, healthy, self.cold, held, self.uses + 1);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(i) = self.instance.take() {
            self.pool
                .give_back(i, false, self.cold, None, self.uses + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(live: usize, warm: Option<f64>, cold: Option<f64>) -> State {
        State {
            live,
            timings: Timings { warm, cold },
            ..State::default()
        }
    }

    #[test]
    fn short_invocations_queue_once_enough_instances_are_busy() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        // 1 ms invocations, 20 ms cold starts, 4 busy instances.
        let mut s = state(4, Some(0.001), Some(0.020));
        assert_eq!(
            s.queue_for(4, now, deadline, false),
            Some(now + Duration::from_millis(20)),
            "waits at most one cold start"
        );
        assert_eq!(
            s.queue_for(5, now, deadline, false),
            None,
            "below the threshold"
        );
        // Callers that stopped waiting are not counted.
        for _ in 0..79 {
            s.queued.push_back(oneshot::channel().0);
        }
        assert!(s.queue_for(4, now, deadline, false).is_some());
        assert!(s.queued.is_empty());
        // With 79 callers queued the expected wait (80 × 1 ms ÷ 4) is as long
        // as a cold start: scale out.
        let receivers: Vec<_> = (0..79)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                s.queued.push_back(tx);
                rx
            })
            .collect();
        assert_eq!(s.queue_for(4, now, deadline, false), None);
        drop(receivers);
    }

    #[test]
    fn a_freed_place_sends_the_first_waiting_caller_to_look_again() {
        let mut s = state(4, Some(0.001), Some(0.020));
        let (gone, _) = oneshot::channel::<Idle>();
        let (first, mut first_rx) = oneshot::channel();
        let (second, mut second_rx) = oneshot::channel();
        s.queued.extend([gone, first, second]);
        s.requeue_first();
        assert!(matches!(
            first_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(matches!(
            second_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(s.queued.len(), 1);
    }

    #[test]
    fn slow_or_unknown_functions_scale_out() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        let mut slow = state(8, Some(0.5), Some(0.05));
        assert_eq!(slow.queue_for(4, now, deadline, false), None);
        let mut unknown = state(8, Some(0.001), None);
        assert_eq!(unknown.queue_for(4, now, deadline, false), None);
        // Having waited a cold start's time, a caller starts an instance unless
        // one it can use is still starting.
        let mut fast = state(8, Some(0.001), Some(0.05));
        assert_eq!(fast.queue_for(4, now, deadline, true), None);
        fast.cold_running = 1;
        assert!(fast.queue_for(4, now, deadline, true).is_some());
        let mut fast = state(8, Some(0.001), Some(0.05));
        assert_eq!(
            fast.queue_for(4, now, now, false),
            None,
            "no time left to wait (--queue-wait 0)"
        );
        assert_eq!(
            fast.queue_for(4, now, now + Duration::from_millis(10), false),
            Some(now + Duration::from_millis(10)),
            "the wait ends at the caller's deadline"
        );
    }

    #[test]
    fn a_first_burst_waits_once_for_the_cold_starts_on_their_way() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        // Eight first calls are starting instances; nothing is measured yet.
        let mut s = state(8, None, None);
        assert_eq!(
            s.queue_for(4, now, deadline, false),
            None,
            "nothing on its way"
        );
        s.cold_running = 8;
        assert_eq!(
            s.queue_for(4, now, deadline, false),
            Some(now + Duration::from_secs_f64(FIRST_COLD_GUESS))
        );
        assert_eq!(s.queue_for(4, now, deadline, true), None, "only once");
        s.timings.cold = Some(0.03);
        assert_eq!(
            s.queue_for(4, now, deadline, false),
            Some(now + Duration::from_millis(30)),
            "a measured cold start replaces the guess"
        );
    }

    #[test]
    fn timings_follow_the_function() {
        let mut t = Timings::default();
        t.record(false, Duration::from_millis(10));
        assert_eq!(t.warm, Some(0.010));
        for _ in 0..100 {
            t.record(false, Duration::from_millis(1));
        }
        assert!((t.warm.unwrap() - 0.001).abs() < 0.0001);
        assert_eq!(t.cold, None);
    }
}
