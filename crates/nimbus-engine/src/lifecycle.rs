//! One lifecycle for background work: the [`Service`] contract every
//! long-running part implements, and the [`Shutdown`] coordinator that starts
//! them, notices one that dies, and stops them in phases.
//!
//! A service is started with a [`Context`] whose token is a child of the
//! coordinator's root; its [`Service::run`] is its main loop (a listener's
//! accept loop, the async workers' claim loop, the reaper's tick), and a
//! service without one keeps the default, which waits to be stopped. Stopping
//! is three steps, each called by the coordinator when the server's plan says
//! so (`crates/nimbus/src/server/shutdown.rs`):
//!
//! 1. *stop accepting*: the context's token is cancelled and
//!    [`Service::stop_accepting`] called; no new work is taken from here on;
//! 2. *drain*: the run loop is joined and [`Service::drain`] waits for work in
//!    progress, both bounded by the phase's deadline;
//! 3. *cut off*, only where the plan gives a phase a cut-off and the deadline
//!    passed with work left: [`Service::cut_off`] stops what is still running
//!    (and answers its callers), and the drain gets the cut-off's time more.
//!
//! A run loop that returns or panics before its service was told to stop is a
//! crash: [`Shutdown::wait`] returns it at once (racing the signals), so the
//! server logs it with the service's name and shuts down instead of running
//! on without, say, its gateway listener.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a service's run loop fails with.
pub type ServiceError = Box<dyn std::error::Error + Send + Sync>;

/// What a service is started with.
#[derive(Clone, Debug)]
pub struct Context {
    /// Cancelled when the service is to stop accepting work (a child of the
    /// coordinator's root token).
    pub cancel: CancellationToken,
}

/// A long-running part of the server, started and stopped by [`Shutdown`].
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// The name the server's log and status use.
    fn name(&self) -> &'static str;

    /// The service's main loop, until `ctx.cancel`. Returning before that, or
    /// panicking, is a crash. The default has no loop: it waits to be stopped.
    async fn run(self: Arc<Self>, ctx: Context) -> Result<(), ServiceError> {
        ctx.cancel.cancelled().await;
        Ok(())
    }

    /// Takes no new work from here on (the context's token is already
    /// cancelled); returns at once.
    fn stop_accepting(&self) {}

    /// Waits for the work in progress. The coordinator stops waiting at
    /// `deadline`, so this must be safe to drop at any await.
    async fn drain(&self, _deadline: Instant) {}

    /// Stops the work still running after the drain's deadline (only called
    /// in a phase with a cut-off); the drain is then awaited again.
    fn cut_off(&self) {}

    /// A line on what the service is doing, for status output.
    fn status(&self) -> String {
        String::new()
    }
}

/// A service that is only a run loop, given as a closure of its stop token
/// (the API and gateway listeners: their accept loops).
pub struct Task {
    name: &'static str,
    run: Mutex<Option<RunOnce>>,
}

/// A [`Task`]'s run loop, until it is started.
type RunOnce = Box<
    dyn FnOnce(CancellationToken) -> futures::future::BoxFuture<'static, Result<(), ServiceError>>
        + Send,
>;

impl Task {
    pub fn new<F, Fut, E>(name: &'static str, run: F) -> Arc<Self>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<ServiceError>,
    {
        Arc::new(Self {
            name,
            run: Mutex::new(Some(Box::new(move |cancel| {
                run(cancel).map(|r| r.map_err(Into::into)).boxed()
            }))),
        })
    }
}

#[async_trait::async_trait]
impl Service for Task {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(self: Arc<Self>, ctx: Context) -> Result<(), ServiceError> {
        let run = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        match run {
            Some(run) => run(ctx.cancel).await,
            None => Err("started twice".into()),
        }
    }
}

/// Where a service stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// Told to stop accepting; draining.
    Stopping,
    Stopped,
    /// Its run loop ended on its own (returned or panicked).
    Failed(String),
}

/// A service as the coordinator reports it.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: &'static str,
    pub state: State,
    pub status: String,
}

/// A started service, as the shutdown plan names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceId(usize);

/// Why [`Shutdown::wait`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A signal (its name).
    Signal(&'static str),
    /// A service's run loop ended before it was told to stop.
    Died {
        service: &'static str,
        error: String,
    },
}

/// One step of the shutdown plan: stop some services accepting, then drain
/// some, all within one deadline (and, with a cut-off, a second chance).
#[derive(Clone, Debug)]
pub struct Phase {
    pub name: &'static str,
    stop: Vec<ServiceId>,
    drain: Vec<ServiceId>,
    within: Duration,
    cut_off: Option<Duration>,
}

impl Phase {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            stop: Vec::new(),
            drain: Vec::new(),
            within: Duration::ZERO,
            cut_off: None,
        }
    }

    /// Stops these accepting new work, in this order.
    pub fn stop(mut self, services: impl IntoIterator<Item = ServiceId>) -> Self {
        self.stop.extend(services);
        self
    }

    /// Then waits for these (together) for at most `within`.
    pub fn drain(
        mut self,
        services: impl IntoIterator<Item = ServiceId>,
        within: Duration,
    ) -> Self {
        self.drain.extend(services);
        self.within = within;
        self
    }

    /// Past the drain's deadline, cuts off what is left and waits `wait` more.
    pub fn cut_off(mut self, wait: Duration) -> Self {
        self.cut_off = Some(wait);
        self
    }
}

struct Entry {
    service: Arc<dyn Service>,
    cancel: CancellationToken,
    /// Whether the run loop has ended.
    ended: watch::Receiver<bool>,
    state: Arc<Mutex<State>>,
}

/// Starts services in dependency order, notices one that dies, and stops
/// them along a plan of phases.
pub struct Shutdown {
    root: CancellationToken,
    entries: Vec<Entry>,
    died_tx: mpsc::UnboundedSender<Stop>,
    died: mpsc::UnboundedReceiver<Stop>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (died_tx, died) = mpsc::unbounded_channel();
        Self {
            root: CancellationToken::new(),
            entries: Vec::new(),
            died_tx,
            died,
        }
    }

    /// Starts `service`'s run loop; start a service after those it uses.
    pub fn start(&mut self, service: Arc<dyn Service>) -> ServiceId {
        let name = service.name();
        let cancel = self.root.child_token();
        let state = Arc::new(Mutex::new(State::Running));
        let run = service.clone().run(Context {
            cancel: cancel.clone(),
        });
        let (ended_tx, ended) = watch::channel(false);
        tokio::spawn({
            let (cancel, state, died) = (cancel.clone(), state.clone(), self.died_tx.clone());
            async move {
                let error = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(panic) => Some(format!("panicked: {}", panic_message(&*panic))),
                };
                let asked = cancel.is_cancelled();
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                match (error, asked) {
                    (None, true) => *st = State::Stopped,
                    (Some(e), true) => {
                        tracing::error!("{name} failed while stopping: {e}");
                        *st = State::Failed(e);
                    }
                    (error, false) => {
                        let error = error.unwrap_or_else(|| "it stopped on its own".to_string());
                        *st = State::Failed(error.clone());
                        let _ = died.send(Stop::Died {
                            service: name,
                            error,
                        });
                    }
                }
                drop(st);
                let _ = ended_tx.send(true);
            }
        });
        self.entries.push(Entry {
            service,
            cancel,
            ended,
            state,
        });
        ServiceId(self.entries.len() - 1)
    }

    /// Waits for `signal` or for a service to die, whichever comes first.
    pub async fn wait(&mut self, signal: impl Future<Output = &'static str>) -> Stop {
        tokio::select! {
            name = signal => Stop::Signal(name),
            Some(died) = self.died.recv() => died,
        }
    }

    /// Runs `plan` in order, then stops whatever it left running.
    pub async fn shutdown(&self, plan: &[Phase]) {
        for phase in plan {
            let started = Instant::now();
            for &id in &phase.stop {
                self.stop_accepting(id);
            }
            if !phase.drain.is_empty() {
                let deadline = Instant::now() + phase.within;
                if !self.drain(&phase.drain, deadline).await
                    && let Some(wait) = phase.cut_off
                {
                    for &id in &phase.drain {
                        self.entries[id.0].service.cut_off();
                    }
                    if !self.drain(&phase.drain, Instant::now() + wait).await {
                        tracing::warn!("{}: still not done after the cut-off", phase.name);
                    }
                }
            }
            tracing::debug!("shutdown: {} took {:?}", phase.name, started.elapsed());
        }
        self.root.cancel();
        for entry in &self.entries {
            let mut st = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            if *st == State::Running {
                *st = State::Stopping;
            }
        }
    }

    /// Every service, in start order, with where it stands.
    pub fn report(&self) -> Vec<Report> {
        self.entries
            .iter()
            .map(|e| Report {
                name: e.service.name(),
                state: e.state.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                status: e.service.status(),
            })
            .collect()
    }

    fn stop_accepting(&self, id: ServiceId) {
        let entry = &self.entries[id.0];
        {
            let mut st = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            if *st == State::Running {
                *st = State::Stopping;
            }
        }
        entry.cancel.cancel();
        entry.service.stop_accepting();
    }

    /// Joins the run loops, then drains; true when all were done by `deadline`.
    async fn drain(&self, ids: &[ServiceId], deadline: Instant) -> bool {
        let all = futures::future::join_all(ids.iter().map(|&id| async move {
            let entry = &self.entries[id.0];
            let _ = entry.ended.clone().wait_for(|ended| *ended).await;
            entry.service.drain(deadline).await;
        }));
        let done = tokio::time::timeout_at(deadline, all).await.is_ok();
        if !done {
            let late: Vec<_> = ids
                .iter()
                .map(|id| self.entries[id.0].service.name())
                .collect();
            tracing::debug!("shutdown: deadline passed waiting for {}", late.join(", "));
        }
        done
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records every step into a shared log; its run loop can be told to die.
    struct Fake {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        die: tokio::sync::Notify,
        panic: bool,
        /// How long its drain takes (tokio time).
        drain_for: Duration,
        cut: AtomicBool,
    }

    impl Fake {
        fn new(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Self {
            Self {
                name,
                log: log.clone(),
                die: tokio::sync::Notify::new(),
                panic: false,
                drain_for: Duration::ZERO,
                cut: AtomicBool::new(false),
            }
        }

        fn note(&self, what: &str) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {what}", self.name));
        }
    }

    #[async_trait::async_trait]
    impl Service for Fake {
        fn name(&self) -> &'static str {
            self.name
        }

        async fn run(self: Arc<Self>, ctx: Context) -> Result<(), ServiceError> {
            tokio::select! {
                _ = ctx.cancel.cancelled() => Ok(()),
                _ = self.die.notified() => {
                    if self.panic {
                        panic!("{} broke", self.name);
                    }
                    Err("the socket went away".into())
                }
            }
        }

        fn stop_accepting(&self) {
            self.note("stop");
        }

        async fn drain(&self, _deadline: Instant) {
            if !self.cut.load(Ordering::SeqCst) {
                tokio::time::sleep(self.drain_for).await;
            }
            self.note("drained");
        }

        fn cut_off(&self) {
            self.cut.store(true, Ordering::SeqCst);
            self.note("cut");
        }
    }

    fn never() -> impl Future<Output = &'static str> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_dies_is_noticed_at_once() {
        let log = Arc::default();
        let mut shutdown = Shutdown::new();
        let fake = Arc::new(Fake::new("gateway listener", &log));
        shutdown.start(Arc::new(Fake::new("reaper", &log)));
        shutdown.start(fake.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            fake.die.notify_one();
        });
        let started = Instant::now();
        let stop = shutdown.wait(never()).await;
        assert_eq!(
            stop,
            Stop::Died {
                service: "gateway listener",
                error: "the socket went away".into()
            }
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let report = shutdown.report();
        assert_eq!(report[0].state, State::Running);
        assert_eq!(
            report[1].state,
            State::Failed("the socket went away".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_service_is_noticed_with_its_message() {
        let log = Arc::default();
        let mut shutdown = Shutdown::new();
        let mut fake = Fake::new("schedules", &log);
        fake.panic = true;
        let fake = Arc::new(fake);
        shutdown.start(fake.clone());
        fake.die.notify_one();
        match shutdown.wait(never()).await {
            Stop::Died { service, error } => {
                assert_eq!(service, "schedules");
                assert!(error.contains("schedules broke"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_wins_when_nothing_dies_and_a_stopped_service_is_no_crash() {
        let log = Arc::default();
        let mut shutdown = Shutdown::new();
        let a = shutdown.start(Arc::new(Fake::new("a", &log)));
        let signal = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            "SIGTERM"
        };
        assert_eq!(shutdown.wait(signal).await, Stop::Signal("SIGTERM"));
        shutdown
            .shutdown(&[Phase::new("one")
                .stop([a])
                .drain([a], Duration::from_secs(1))])
            .await;
        assert_eq!(shutdown.report()[0].state, State::Stopped);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), shutdown.died.recv())
                .await
                .is_err(),
            "no crash reported"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn phases_run_in_order() {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut shutdown = Shutdown::new();
        let listener = shutdown.start(Arc::new(Fake::new("listener", &log)));
        let invoker = shutdown.start(Arc::new(Fake::new("invoker", &log)));
        let logs = shutdown.start(Arc::new(Fake::new("logs", &log)));
        let second = Duration::from_secs(1);
        shutdown
            .shutdown(&[
                Phase::new("stop accepting").stop([listener]),
                Phase::new("drain invocations")
                    .stop([invoker])
                    .drain([invoker], second),
                Phase::new("join listeners").drain([listener], second),
                Phase::new("flush logs").stop([logs]).drain([logs], second),
            ])
            .await;
        assert_eq!(
            *log.lock().unwrap(),
            [
                "listener stop",
                "invoker stop",
                "invoker drained",
                "listener drained",
                "logs stop",
                "logs drained"
            ]
        );
        assert!(
            shutdown.report().iter().all(|r| r.state == State::Stopped),
            "{:?}",
            shutdown.report()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_are_honoured_and_a_cut_off_gets_its_own_time() {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut shutdown = Shutdown::new();
        let mut slow = Fake::new("invoker", &log);
        slow.drain_for = Duration::from_secs(3600);
        let invoker = shutdown.start(Arc::new(slow));
        let mut stuck = Fake::new("workflows", &log);
        stuck.drain_for = Duration::from_secs(3600);
        let workflows = shutdown.start(Arc::new(stuck));
        let started = Instant::now();
        shutdown
            .shutdown(&[
                Phase::new("drain invocations")
                    .stop([invoker])
                    .drain([invoker], Duration::from_secs(30))
                    .cut_off(Duration::from_secs(5)),
                Phase::new("finish workflows")
                    .stop([workflows])
                    .drain([workflows], Duration::from_secs(10)),
            ])
            .await;
        // 30 s of grace, then the cut-off's drain is at once; 10 s for the stuck one.
        assert_eq!(started.elapsed(), Duration::from_secs(40));
        assert_eq!(
            *log.lock().unwrap(),
            [
                "invoker stop",
                "invoker cut",
                "invoker drained",
                "workflows stop"
            ]
        );
    }
}
