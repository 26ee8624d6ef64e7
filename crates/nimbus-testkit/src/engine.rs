//! The engine, composed in-process on temporary SQLite stores and the fake
//! runtime: what `nimbus up` wires in `crates/nimbus/src/server/mod.rs`, minus
//! the listeners and the gateway. Its change feed is the kit's
//! ([`KitChangeFeed`]): a test plays another node by writing to the stores
//! directly and publishing the change.
//!
//! All construction is in [`TestEngine::start`], so a change to how the engine
//! is put together (constructors, store traits, a clock) is adapted here once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::schedule::{MissedFires, ScheduleRecord};
use nimbus_core::{FunctionConfig, FunctionName, FunctionRecord, InvokeRequest, Runtime, Target};
use nimbus_engine::follow::FollowChanges;
use nimbus_engine::lifecycle::{Context, Service};
use nimbus_engine::messaging::wiring::Messaging;
use nimbus_engine::scheduler::{FixedKeepAlive, Scheduler};
use nimbus_engine::sources::schedules::Schedules;
use nimbus_engine::workflows::{ArnScope, WorkflowLimits, Workflows};
use nimbus_engine::{
    AsyncInvoker, AsyncSettings, ControlPlane, CreateFunction, Dispatcher, EngineConfig,
    EngineError, FunctionAccess, InvocationResult, Invoker, Registry,
};
use nimbus_store::{Backends, ChangeStream, StorageConfig};
use tokio_util::sync::CancellationToken;

use crate::fake::FakeFactory;
use crate::feed::KitChangeFeed;

/// The knobs of [`TestEngine::start`]; the defaults are the server's where
/// they matter little, and small where a test would otherwise wait.
#[derive(Debug, Clone)]
pub struct Options {
    pub keep_alive: Duration,
    pub max_instances_per_function: usize,
    pub account_concurrency: usize,
    pub queue_wait: Duration,
    pub retry_delay: Duration,
    pub async_workers: usize,
    /// Start the reaper, the async workers, the schedule runner and the
    /// change followers.
    pub background: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(600),
            max_instances_per_function: 10,
            account_concurrency: 1000,
            queue_wait: Duration::from_secs(1),
            retry_delay: Duration::from_millis(20),
            async_workers: 8,
            background: true,
        }
    }
}

/// A running engine on a fresh data directory. Dropping it stops its
/// background tasks and removes the directory.
pub struct TestEngine {
    pub factory: FakeFactory,
    pub config: EngineConfig,
    pub registry: Arc<Registry>,
    pub scheduler: Arc<Scheduler>,
    pub control: Arc<ControlPlane>,
    pub invoker: Arc<Invoker>,
    pub stores: Backends,
    /// The feed in `stores.changes`, where a test publishes what "another
    /// node" changed.
    pub changes: Arc<KitChangeFeed>,
    pub events: Arc<AsyncInvoker>,
    pub dispatcher: Arc<Dispatcher>,
    pub workflows: Arc<Workflows>,
    pub messaging: Arc<Messaging>,
    pub schedules: Arc<Schedules>,
    /// Subscribed before anything was loaded; taken by the followers.
    follow: std::sync::Mutex<Option<ChangeStream>>,
    background: CancellationToken,
    /// Kept last: the stores above hold files in it.
    pub dir: tempfile::TempDir,
}

impl TestEngine {
    /// Composes the engine (and, with `options.background`, starts its
    /// background tasks on the current runtime).
    pub async fn start(options: Options) -> TestEngine {
        let dir = tempfile::tempdir().expect("temporary directory");
        let factory = FakeFactory::new();
        let config = EngineConfig {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            code_cache_dir: dir.path().join("run").join("code"),
            keep_alive: options.keep_alive,
            max_instances_per_function: options.max_instances_per_function,
            account_concurrency: options.account_concurrency,
            queue_wait: options.queue_wait,
        };
        // Logs and usage records are drained and dropped: the fake writes none,
        // and the engine's own lines are not what these tests look at.
        let (logs, mut log_rx) = tokio::sync::mpsc::channel(1024);
        let (usage, mut usage_rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move { while log_rx.recv().await.is_some() {} });
        tokio::spawn(async move { while usage_rx.recv().await.is_some() {} });

        let scheduler = Arc::new(
            Scheduler::new(
                Arc::new(factory.clone()),
                logs.clone(),
                config.account_concurrency,
                config.max_instances_per_function,
                config.queue_wait,
                Arc::new(FixedKeepAlive(config.keep_alive)),
            )
            // Lambda's rule: every concurrent call gets an instance of its own
            // (the server's default queues behind busy ones on small machines).
            .with_queue_after(Some(usize::MAX)),
        );
        let mut stores = Backends::open(
            &StorageConfig::Sqlite {
                data_dir: dir.path().to_path_buf(),
            },
            &[7; 32],
        )
        .await
        .expect("the SQLite stores open in a fresh directory");
        let changes = Arc::new(KitChangeFeed::default());
        stores.changes = changes.clone();
        let follow = stores.changes.subscribe();
        let metadata = stores.metadata.clone();
        let code = stores.code.clone();
        let registry = Arc::new(Registry::default());
        let control = Arc::new(ControlPlane::new(
            config.clone(),
            metadata,
            code,
            registry.clone(),
            scheduler.clone(),
            FunctionAccess {
                keys: stores.keys.clone(),
                // No API listener in the kit: instances are fakes that never call it.
                endpoint_url: "http://127.0.0.1:9".into(),
            },
        ));
        let invoker = Arc::new(Invoker::new(
            &config,
            registry.clone(),
            scheduler.clone(),
            logs,
            usage,
        ));
        let workflows = Arc::new(Workflows::new(
            stores.workflows.clone(),
            invoker.clone(),
            ArnScope {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
            },
            WorkflowLimits {
                max_running: 100,
                max_history_events: 25_000,
            },
        ));
        let messaging = Arc::new(Messaging::new(
            &stores,
            &uuid::Uuid::new_v4().to_string(),
            registry.clone(),
            config.clone(),
            |destinations| {
                let events = Arc::new(AsyncInvoker::new(
                    &stores,
                    invoker.clone(),
                    registry.clone(),
                    config.clone(),
                    AsyncSettings {
                        retry_delay: options.retry_delay,
                        workers: options.async_workers,
                    },
                    destinations,
                ));
                Arc::new(Dispatcher::new(
                    invoker.clone(),
                    events,
                    workflows.clone(),
                    registry.clone(),
                ))
            },
        ));
        let dispatcher = messaging.dispatcher.clone();
        let events = dispatcher.events().clone();
        let schedules = Arc::new(Schedules::new(
            stores.schedules.clone(),
            dispatcher.clone(),
            config.clone(),
            // The test clock: time moves only when the test says so.
            Some(Duration::ZERO),
        ));
        let engine = TestEngine {
            factory,
            config,
            registry,
            scheduler,
            control,
            invoker,
            stores,
            changes,
            events,
            dispatcher,
            workflows,
            messaging,
            schedules,
            follow: std::sync::Mutex::new(Some(follow)),
            background: CancellationToken::new(),
            dir,
        };
        if options.background {
            engine.start_background();
        }
        engine
    }

    fn start_background(&self) {
        let ctx = || Context {
            cancel: self.background.clone(),
        };
        // The services' run loops, as `nimbus up`'s coordinator starts them.
        tokio::spawn(Service::run(self.scheduler.clone(), ctx()));
        tokio::spawn(Service::run(self.events.clone(), ctx()));
        tokio::spawn(Service::run(self.schedules.clone(), ctx()));
        if let Some(changes) = self.follow.lock().expect("not poisoned").take() {
            let followers = FollowChanges::new(
                changes,
                self.stores.changes.clone(),
                vec![
                    self.control.clone(),
                    self.schedules.clone(),
                    self.messaging.mappings.clone(),
                    self.messaging.queues.clone(),
                ],
            );
            tokio::spawn(Service::run(Arc::new(followers), ctx()));
        }
    }

    /// A second [`Schedules`] on the same stores whose clock starts `offset`
    /// ahead of the real time: the schedule runner after a restart, with the
    /// server down for that long. Loaded and running.
    pub async fn restart_schedules(&self, offset: Duration) -> Arc<Schedules> {
        let schedules = Arc::new(Schedules::new(
            self.stores.schedules.clone(),
            self.dispatcher.clone(),
            self.config.clone(),
            Some(offset),
        ));
        schedules.load().await.expect("schedules load");
        tokio::spawn(Service::run(
            schedules.clone(),
            Context {
                cancel: self.background.child_token(),
            },
        ));
        schedules
    }

    /// Deploys a function (a one-file Python package; the fake runtime never
    /// runs it) whose instances follow the factory's script for `name`.
    pub async fn deploy(&self, name: &str) -> FunctionRecord {
        let code = self
            .control
            .upload_code(Bytes::from(handler_zip()))
            .await
            .expect("upload code");
        self.control
            .create(CreateFunction {
                config: FunctionConfig {
                    name: function_name(name),
                    runtime: Runtime::Python3,
                    handler: "app.handler".into(),
                    memory_mb: 128,
                    timeout_s: 30,
                    environment: Default::default(),
                    description: String::new(),
                    permissions: Vec::new(),
                    handler_style: None,
                    ephemeral_storage_mb: 512,
                    network: Default::default(),
                },
                code_sha256: code.sha256,
                role: None,
                tags: Default::default(),
                runtime_id: None,
            })
            .await
            .expect("create function")
    }

    /// A synchronous invocation of `function` (`name` or `name:qualifier`).
    pub async fn invoke(&self, function: &str) -> Result<InvocationResult, EngineError> {
        self.invoker.invoke(request(function, "{}")).await
    }

    /// An asynchronous invocation: queued, run by the async workers.
    pub async fn submit(&self, function: &str, payload: &str) -> String {
        self.events
            .submit(request(function, payload))
            .await
            .expect("submit")
            .to_string()
    }

    /// Waits up to `limit` (of tokio's clock) until `function` has run at
    /// least `n` invocations; returns whether it has.
    pub async fn wait_for_invocations(&self, function: &str, n: u64, limit: Duration) -> bool {
        wait_until(limit, async || {
            self.factory.counts(function).invocations >= n
        })
        .await
    }

    /// `(idle, live)` instances of `function`'s `$LATEST`.
    pub fn instances(&self, function: &str) -> (usize, usize) {
        let d = self
            .registry
            .get(&function_name(function))
            .expect("deployed");
        Scheduler::counts(&d.pool)
    }

    /// A `rate`/`cron` schedule invoking `function`.
    pub fn schedule(
        name: &str,
        expression: &str,
        function: &str,
        missed: MissedFires,
    ) -> ScheduleRecord {
        ScheduleRecord {
            name: name.into(),
            expression: expression.into(),
            timezone: None,
            target: Target::function(function, None),
            input: None,
            missed,
            enabled: true,
            description: String::new(),
            created_ms: 0,
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.background.cancel();
        self.messaging.mappings.begin_shutdown();
        self.messaging.queues.shutdown();
    }
}

pub fn function_name(name: &str) -> FunctionName {
    name.parse().expect("valid function name")
}

fn request(function: &str, payload: &str) -> InvokeRequest {
    let (name, qualifier) = match function.split_once(':') {
        Some((n, q)) => (n, Some(q.to_string())),
        None => (function, None),
    };
    let mut req = InvokeRequest::new(function_name(name), Bytes::from(payload.to_string()));
    req.qualifier = qualifier;
    req
}

/// A zip holding `app.py`.
fn handler_zip() -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(b"def handler(event, context):\n    return event\n")
            .expect("zip write");
        zip.finish().expect("zip finish");
    }
    out.into_inner()
}

/// Polls `cond` every 10 ms (of tokio's clock) until it holds or `limit`
/// passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
