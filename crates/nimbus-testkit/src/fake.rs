//! A fake runtime: instances that do what the test scripts, and count.
//!
//! [`FakeFactory`] implements [`InstanceFactory`]; each function gets a
//! [`Script`] (how long init and invocations take, what they return, whether
//! the instance crashes or fails to start). The factory records what happened
//! ([`Counts`], and the time of every invocation) so tests can assert on
//! concrete numbers. Waits are `tokio::time::sleep`, so under a paused clock a
//! ten-second invocation costs no real time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_runtime::{
    Dispatch, Instance, InstanceFactory, InstanceSpec, InvokeResult, LogLine, Outcome, StartError,
};

/// What one invocation does after its latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Succeeds with this body.
    Ok(Bytes),
    /// A function error of this `errorType`; the instance stays usable.
    Error(String),
    /// The runtime dies: an error, and the instance must be dropped.
    Crash,
}

/// How instances of one function behave.
#[derive(Clone)]
pub struct Script {
    /// How long init takes (the first invocation, or `wait_ready`, waits for it).
    pub init: Duration,
    /// Init fails: the first invocation reports `Runtime.InitError` and the
    /// instance is unusable.
    pub init_fails: bool,
    /// `start` itself fails (e.g. the sandbox cannot be set up).
    pub start_fails: bool,
    /// How long each invocation runs.
    pub latency: Duration,
    /// The reply to the n-th invocation of the function (counted from 1, over
    /// all its instances).
    pub reply: Arc<dyn Fn(u64) -> Reply + Send + Sync>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            init: Duration::ZERO,
            init_fails: false,
            start_fails: false,
            latency: Duration::ZERO,
            reply: Arc::new(|_| Reply::Ok(Bytes::from_static(b"\"ok\""))),
        }
    }
}

impl Script {
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    pub fn init(mut self, d: Duration) -> Self {
        self.init = d;
        self
    }

    pub fn init_fails(mut self) -> Self {
        self.init_fails = true;
        self
    }

    pub fn start_fails(mut self) -> Self {
        self.start_fails = true;
        self
    }

    /// Every invocation fails with a function error of `error_type`.
    pub fn fails(self, error_type: &str) -> Self {
        let t = error_type.to_string();
        self.reply(move |_| Reply::Error(t.clone()))
    }

    /// Every invocation crashes its instance.
    pub fn crashes(self) -> Self {
        self.reply(|_| Reply::Crash)
    }

    /// The reply to the n-th invocation (from 1).
    pub fn reply(mut self, f: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Self {
        self.reply = Arc::new(f);
        self
    }
}

/// What a function's instances did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Instances started (successful `start` calls).
    pub starts: u64,
    /// Starts refused by the script.
    pub failed_starts: u64,
    /// Instances stopped (`shutdown`).
    pub stops: u64,
    /// Invocations begun.
    pub invocations: u64,
    /// Invocations running now.
    pub running: u64,
    /// Most invocations that ran at once.
    pub peak_running: u64,
}

impl Counts {
    /// Instances started and not stopped yet.
    pub fn live(&self) -> u64 {
        self.starts - self.stops
    }
}

/// When an invocation began: on tokio's clock (follows a paused clock) and on
/// the wall clock (which the async queue's retry times use).
#[derive(Debug, Clone)]
pub struct Call {
    pub at: tokio::time::Instant,
    pub wall_ms: i64,
    pub payload: Bytes,
    pub request_id: String,
}

#[derive(Default)]
struct Shared {
    scripts: HashMap<String, Script>,
    counts: HashMap<String, Counts>,
    calls: HashMap<String, Vec<Call>>,
}

/// An [`InstanceFactory`] whose instances follow per-function [`Script`]s.
#[derive(Default, Clone)]
pub struct FakeFactory {
    shared: Arc<Mutex<Shared>>,
    next_id: Arc<AtomicU64>,
}

impl FakeFactory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how `function`'s instances behave from now on (instances already
    /// running keep the script they started with for init, and follow the new
    /// one for invocations).
    pub fn script(&self, function: &str, script: Script) {
        self.lock().scripts.insert(function.to_string(), script);
    }

    pub fn counts(&self, function: &str) -> Counts {
        self.lock()
            .counts
            .get(function)
            .copied()
            .unwrap_or_default()
    }

    /// Every invocation of `function` so far, in order.
    pub fn calls(&self, function: &str) -> Vec<Call> {
        self.lock().calls.get(function).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn script_of(&self, function: &str) -> Script {
        self.lock()
            .scripts
            .get(function)
            .cloned()
            .unwrap_or_default()
    }

    fn count(&self, function: &str, f: impl FnOnce(&mut Counts)) {
        f(self.lock().counts.entry(function.to_string()).or_default());
    }
}

#[async_trait]
impl InstanceFactory for FakeFactory {
    async fn start(
        &self,
        spec: Arc<InstanceSpec>,
        _logs: tokio::sync::mpsc::Sender<LogLine>,
    ) -> Result<Box<dyn Instance>, StartError> {
        let script = self.script_of(&spec.function);
        if script.start_fails {
            self.count(&spec.function, |c| c.failed_starts += 1);
            return Err(StartError::Sandbox("scripted start failure".into()));
        }
        self.count(&spec.function, |c| c.starts += 1);
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(FakeInstance {
            id: format!("fake-{}-{n}", spec.function),
            function: spec.function.clone(),
            init: script.init,
            init_fails: script.init_fails,
            initialised: false,
            dead: false,
            factory: self.clone(),
        }))
    }
}

/// One fake execution environment.
pub struct FakeInstance {
    id: String,
    function: String,
    init: Duration,
    init_fails: bool,
    initialised: bool,
    dead: bool,
    factory: FakeFactory,
}

impl FakeInstance {
    fn result(
        &self,
        outcome: Outcome,
        healthy: bool,
        init: Option<Duration>,
        d: Duration,
    ) -> InvokeResult {
        InvokeResult {
            outcome,
            healthy,
            init_duration: init,
            duration: d,
            max_memory_bytes: 0,
            output: String::new(),
            platform_lines: Vec::new(),
            start_logged: false,
        }
    }
}

fn error(error_type: &str) -> Outcome {
    Outcome::Error {
        error_type: error_type.to_string(),
        body: Bytes::from(
            serde_json::json!({ "errorType": error_type, "errorMessage": "scripted" }).to_string(),
        ),
    }
}

#[async_trait]
impl Instance for FakeInstance {
    fn id(&self) -> &str {
        &self.id
    }

    fn is_alive(&mut self) -> bool {
        !self.dead
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        if !self.initialised {
            if self.init > limit {
                tokio::time::sleep(limit).await;
                return Err("init did not finish in time".into());
            }
            tokio::time::sleep(self.init).await;
            self.initialised = true;
        }
        if self.init_fails {
            self.dead = true;
            return Err("scripted init failure".into());
        }
        Ok(())
    }

    async fn invoke(&mut self, dispatch: Dispatch) -> InvokeResult {
        let init = if self.initialised {
            None
        } else {
            tokio::time::sleep(self.init).await;
            self.initialised = true;
            Some(self.init)
        };
        if self.init_fails || self.dead {
            self.dead = true;
            return self.result(error("Runtime.InitError"), false, init, Duration::ZERO);
        }
        let script = self.factory.script_of(&self.function);
        let n = {
            let mut s = self.factory.lock();
            let c = s.counts.entry(self.function.clone()).or_default();
            c.invocations += 1;
            c.running += 1;
            c.peak_running = c.peak_running.max(c.running);
            let n = c.invocations;
            s.calls
                .entry(self.function.clone())
                .or_default()
                .push(Call {
                    at: tokio::time::Instant::now(),
                    wall_ms: chrono::Utc::now().timestamp_millis(),
                    payload: dispatch.payload.clone(),
                    request_id: dispatch.request_id.to_string(),
                });
            n
        };
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(script.latency) => false,
            _ = dispatch.cancel.cancelled() => true,
        };
        self.factory.count(&self.function, |c| c.running -= 1);
        if cancelled {
            self.dead = true;
            return self.result(error("Sandbox.Stopped"), false, init, script.latency);
        }
        match (script.reply)(n) {
            Reply::Ok(body) => self.result(
                Outcome::Success {
                    body,
                    content_type: None,
                },
                true,
                init,
                script.latency,
            ),
            Reply::Error(t) => self.result(error(&t), true, init, script.latency),
            Reply::Crash => {
                self.dead = true;
                self.result(error("Runtime.ExitError"), false, init, script.latency)
            }
        }
    }

    async fn shutdown(self: Box<Self>) {
        self.factory.count(&self.function, |c| c.stops += 1);
    }
}
