//! `nimbus up`: compose the parts and run until a signal.
//!
//! Reads like a script on purpose: open storage, prepare the sandbox, start the
//! engine, load deployed functions, serve the API, and on SIGINT/SIGTERM stop in
//! reverse order: stop accepting, let in-flight invocations finish (bounded by
//! `--shutdown-grace`), stop instances, flush logs. A second signal exits at once.
//!
//! Every service is given what it needs by its constructor (no setters wire
//! anything afterwards), so the order below is the dependency order: the API
//! listener is bound before the control plane, which tells instances its
//! address; every event source (queue mappings, schedules, the gateway,
//! bucket notifications, topics) is built on the one `Dispatcher`, which is
//! built with the messaging services because its async invocations deliver
//! to queues and topics (`nimbus_engine::messaging::wiring` says how that
//! cycle is closed).

mod config;
mod keys;
mod master_key;
mod shutdown;
mod stderr_log;

use std::sync::Arc;

use anyhow::Context;
use axum::response::IntoResponse;
use nimbus_api::AuthMode;
use nimbus_engine::follow::FollowChanges;
use nimbus_engine::lifecycle::{Shutdown, Stop, Task};
use nimbus_engine::scheduler::{FixedKeepAlive, HybridHistogram, KeepAlivePolicy, Scheduler};
use nimbus_engine::{
    AsyncInvoker, AsyncSettings, ControlPlane, DiskFloor, Dispatcher, EngineConfig, Invoker,
    LogPipeline, LogRetention, Registry,
};
use nimbus_gateway::{Gateway, GatewayServer, GatewaySettings};
use nimbus_runtime::{InstanceFactory, LogGate, ProcessFactory};
use nimbus_store::{Backends, StorageConfig};

pub use config::ServerArgs;

/// How long a configuration write waits for the other nodes of a cluster to
/// apply it before it is answered anyway.
const WRITE_BARRIER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One function may hold this fraction of the log queue (`--log-queue-bytes`).
const LOG_QUEUE_SHARES: usize = 4;

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Flushes what is still buffered when the server returns.
    let _log_flush = init_tracing();
    args.check_plaintext()?;
    nimbus_runtime::runtime_api::set_header_timeout_margin(args.runtime_api_header_timeout.into());
    // Files the server creates are private unless it opens them up on purpose
    // (the database holds functions' environment variables).
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    raise_fd_limit();
    protect_from_oom_killer();
    let host = config::HostConfig::prepare(&args)?;

    // Storage: every store of the configured backend.
    let master_key = master_key::resolve(
        args.master_key_file.as_deref(),
        std::env::var(master_key::MASTER_KEY_ENV).ok(),
        args.postgres.is_some(),
        &host.data_dir,
    )?;
    let (storage, storage_name) = match &args.postgres {
        Some(url) => (
            StorageConfig::Postgres { url: url.clone() },
            "the PostgreSQL database".to_string(),
        ),
        None => (
            StorageConfig::Sqlite {
                data_dir: host.data_dir.clone(),
            },
            format!("the storage in {}", host.data_dir.display()),
        ),
    };
    let stores = Backends::open(&storage, &master_key)
        .await
        .with_context(|| format!("cannot open {storage_name}"))?;
    // Changes other nodes make from here on reach the views loaded below.
    let changes = stores.changes.subscribe();
    let log_store = stores.logs.clone();
    let code = stores.code.clone();
    let keys = stores.keys.clone();
    let admin_key = keys::ensure_admin_key(&*keys).await?;

    // Runtimes and engine.
    let factory: Arc<dyn InstanceFactory> = Arc::new(ProcessFactory::new(host.runtime.clone()));
    if args.log_max_lines.is_some() {
        tracing::warn!(
            "--log-max-lines is deprecated and ignored: log retention counts bytes (--log-function-bytes, --log-total-bytes)"
        );
    }
    let log_gate = LogGate::new(
        args.log_queue_bytes as usize,
        args.log_queue_bytes as usize / LOG_QUEUE_SHARES,
    );
    nimbus_runtime::install_log_gate(log_gate.clone());
    let logs = Arc::new(LogPipeline::start(
        log_store.clone(),
        LogRetention {
            max_age: args.log_retention.into(),
            function_bytes: args.log_function_bytes,
            total_bytes: args.log_total_bytes,
            disk_floor: (args.log_min_free_disk > 0).then(|| DiskFloor {
                dir: host.data_dir.clone(),
                min_free_bytes: args.log_min_free_disk,
            }),
            usage_records: args.usage_max_records,
        },
        log_gate.clone(),
    ));
    let engine_config = EngineConfig {
        region: args.region.clone(),
        account_id: args.account_id.clone(),
        code_cache_dir: host.run_dir.join("code"),
        keep_alive: args.keep_alive.into(),
        max_instances_per_function: args.max_instances_per_function,
        account_concurrency: args.account_concurrency,
        queue_wait: args.queue_wait.into(),
    };
    let scheduler = Arc::new(
        Scheduler::new(
            factory,
            logs.sender.clone(),
            engine_config.account_concurrency,
            engine_config.max_instances_per_function,
            engine_config.queue_wait,
            keep_alive_policy(
                &args.keep_alive_policy,
                engine_config.keep_alive,
                args.keep_alive_bin.into(),
            ),
        )
        .with_scale_out(args.scale_out_rate, args.scale_out_burst)
        .with_queue_after(args.queue_after_instances)
        .with_max_invocations_per_instance(args.max_invocations_per_instance)
        .with_memory_budget(memory_budget_mb(args.memory_budget)?),
    );
    // A node of a cluster checks the store before answering from a view
    // other nodes' writes may not have reached yet (control/registry.rs).
    let registry = Arc::new(match &args.postgres {
        Some(_) => Registry::following(stores.metadata.clone()),
        None => Registry::default(),
    });
    let invoker = Arc::new(Invoker::new(
        &engine_config,
        registry.clone(),
        scheduler.clone(),
        logs.sender.clone(),
        logs.usage.clone(),
    ));
    invoker.metrics.watch_log_gate(log_gate);
    invoker.metrics.watch_memory(scheduler.memory().clone());
    // The API listener is bound before functions load: instances are told its
    // address (AWS_ENDPOINT_URL) along with credentials of their own function.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another nimbus running? use --listen)",
                args.listen
            )
        })?;
    let api_addr = listener.local_addr()?;
    let control = Arc::new(ControlPlane::new(
        engine_config.clone(),
        stores.metadata.clone(),
        code,
        registry.clone(),
        scheduler.clone(),
        nimbus_engine::FunctionAccess {
            keys: keys.clone(),
            endpoint_url: args
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{}", public_addr(api_addr))),
        },
    ));
    let loaded = control.load_all().await?;

    // Services start in dependency order and stop along `shutdown::plan`.
    let mut services = Shutdown::new();
    let logs_service = services.start(logs.clone());
    let scheduler_service = services.start(scheduler.clone());
    let invoker_service = services.start(invoker.clone());
    // Workflows: executions that were running resume now.
    let workflows = Arc::new(nimbus_engine::workflows::Workflows::new(
        stores.workflows.clone(),
        invoker.clone(),
        nimbus_engine::workflows::ArnScope {
            region: args.region.clone(),
            account_id: args.account_id.clone(),
        },
        nimbus_engine::workflows::WorkflowLimits {
            max_running: args.max_running_executions,
            max_history_events: args.max_history_events,
        },
    ));
    let resumed = workflows.resume().await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} running workflow executions");
    }
    let workflows_service = services.start(workflows.clone());
    // Queues, topics and event source mappings. The dispatcher, every event
    // source's one door to functions and workflows, is built with them: its
    // async invocations deliver to queues and topics (see
    // nimbus_engine::messaging::wiring). Pollers restart now.
    // This node's id: the owner of the leases it takes (a mapping's poller).
    let node_id = uuid::Uuid::new_v4().to_string();
    tracing::info!("node id {node_id}");
    let messaging = Arc::new(nimbus_engine::messaging::wiring::Messaging::new(
        &stores,
        &node_id,
        registry.clone(),
        engine_config.clone(),
        |destinations| {
            let events = Arc::new(AsyncInvoker::new(
                &stores,
                invoker.clone(),
                registry.clone(),
                engine_config.clone(),
                AsyncSettings {
                    retry_delay: args.async_retry_delay.into(),
                    workers: args.async_workers,
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
    let events_service = services.start(events.clone());
    messaging.mappings.start_all().await?;
    let messaging_service = services.start(messaging.clone());
    // Schedules: definitions in their store, fires recorded in the fire ledger.
    let schedules = Arc::new(nimbus_engine::sources::schedules::Schedules::new(
        stores.schedules.clone(),
        dispatcher.clone(),
        engine_config.clone(),
        match (args.test_clock, args.test_clock_offset) {
            (_, Some(offset)) => Some(offset.into()),
            (true, None) => Some(std::time::Duration::ZERO),
            (false, None) => None,
        },
    ));
    schedules.load().await?;
    let schedules_service = services.start(schedules.clone());

    // Gateway: its configuration is compiled in memory; requests never read the database.
    let gateway_listener = tokio::net::TcpListener::bind(args.gateway_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the gateway (use --gateway-listen)",
                args.gateway_listen
            )
        })?;
    let gateway_addr = gateway_listener.local_addr()?;
    let gateway_domain = public_addr(gateway_addr);
    let gateway = Arc::new(
        Gateway::load(
            stores.gateway.clone(),
            control.clone(),
            dispatcher.clone(),
            GatewaySettings {
                public_url: args
                    .public_gateway_url
                    .as_deref()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .unwrap_or_else(|| format!("http://{gateway_domain}")),
                region: args.region.clone(),
                account_id: args.account_id.clone(),
            },
        )
        .await?,
    );
    // Other nodes forward requests for this node's WebSockets to its own
    // listener: the public URL may be a load balancer that picks any node.
    let node_gateway_url = args
        .node_gateway_url
        .clone()
        .unwrap_or_else(|| format!("http://{gateway_domain}"));
    let peers = nimbus_gateway::Peers::join(stores.leases.clone(), &node_gateway_url)
        .await
        .context("cannot claim a tag for this node's gateway")?;
    let stop_claim = tokio_util::sync::CancellationToken::new();
    let claim = tokio::spawn({
        let (peers, stop) = (peers.clone(), stop_claim.clone());
        async move { peers.keep_claim(stop).await }
    });
    let gateway_server = GatewayServer::new(
        &gateway,
        &gateway_domain,
        nimbus_gateway::ServerOptions {
            websocket: nimbus_gateway::WsLimits {
                max_connections: args.ws_max_connections,
                max_connections_per_ip: args.ws_max_connections_per_ip,
                idle_timeout: args.ws_idle_timeout.into(),
                max_lifetime: args.ws_max_lifetime.into(),
            },
            connections_auth: Arc::new(nimbus_aws::connections::ConnectionsAuthorizer::new(
                keys.clone(),
                control.clone(),
                if args.dev {
                    AuthMode::Dev
                } else {
                    AuthMode::Verify
                },
            )),
            peers,
        },
    );

    let websockets_service = services.start(Arc::new(gateway_server.clone()));
    // Every view loaded above follows the changes other nodes make (on one
    // node there are only its own, which change nothing).
    let followers_service = services.start(Arc::new(FollowChanges::new(
        changes,
        stores.changes.clone(),
        vec![
            control.clone(),
            gateway.clone(),
            schedules.clone(),
            messaging.mappings.clone(),
            messaging.queues.clone(),
        ],
    )));

    // The relay of S3 notifications stored with their objects (any node's
    // relay takes any node's).
    let object_events = Arc::new(
        nimbus_engine::sources::object_events::ObjectEvents::new(
            dispatcher.clone(),
            messaging.grants.clone(),
            nimbus_core::policy::ArnScope {
                region: args.region.clone(),
                account_id: args.account_id.clone(),
            },
            stores.objects.clone(),
        )
        .with_hold(args.s3_relay_hold.into()),
    );
    let object_events_service = services.start(object_events.clone());

    let auth = if args.dev {
        AuthMode::Dev
    } else {
        AuthMode::Verify
    };
    let native = nimbus_api::router(nimbus_api::ApiState {
        control: control.clone(),
        invoker: invoker.clone(),
        logs: log_store,
        keys: keys.clone(),
        events: events.clone(),
        gateway: gateway.clone(),
        scheduler: scheduler.clone(),
        workflows: workflows.clone(),
        messaging: messaging.clone(),
        schedules: schedules.clone(),
        auth,
    });
    let app = nimbus_aws::app(
        native,
        nimbus_aws::AwsState {
            control,
            invoker: invoker.clone(),
            keys,
            events,
            gateway,
            workflows: workflows.clone(),
            messaging: messaging.clone(),
            objects: stores.objects.clone(),
            object_events: object_events.clone(),
            auth,
        },
    );
    host.announce(api_addr, gateway_addr, loaded);
    keys::announce(admin_key.as_ref(), &host.data_dir, args.dev)?;
    host.hint();

    // Both listeners shed slow and greedy clients (nimbus_runtime::listener).
    let limits = args.listener_limits();
    let api_stats = Arc::new(nimbus_runtime::listener::ListenerStats::default());
    let gateway_stats = Arc::new(nimbus_runtime::listener::ListenerStats::default());
    let api_service = services.start(Task::new("API listener", {
        let limits = limits.clone();
        let listeners = [
            ("api", api_stats.clone()),
            ("gateway", gateway_stats.clone()),
        ];
        let changes = stores.changes.clone();
        move |stop| {
            use tower_service::Service;
            nimbus_runtime::listener::serve(listener, limits, api_stats, stop, move |req, _| {
                let mut app = app.clone();
                let changes = changes.clone();
                let metrics = (req.uri().path() == "/metrics").then(|| listeners.clone());
                async move {
                    let (resp, changed) = nimbus_store::noting_changes(app.call(req)).await;
                    let resp = match resp {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    };
                    // A configuration write is answered once every node of a
                    // cluster applies it: the client's next request may
                    // reach any of them.
                    if changed {
                        match changes.barrier(WRITE_BARRIER_LIMIT).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!(
                                "a node did not apply a change within {WRITE_BARRIER_LIMIT:?}"
                            ),
                            Err(e) => {
                                tracing::warn!("cannot wait for the nodes to apply a change: {e}")
                            }
                        }
                    }
                    match metrics {
                        Some(listeners) => with_listener_metrics(resp, &listeners).await,
                        None => resp,
                    }
                }
            })
        }
    }));
    let gateway_service = services.start(Task::new("gateway listener", move |stop| async move {
        gateway_server
            .serve(gateway_listener, limits, gateway_stats, stop)
            .await
    }));

    // Runs until a signal, or until a service dies: a listener or worker that
    // ends on its own is logged with its name and the server shuts down.
    let stopped = services.wait(shutdown::wait_for_signal()).await;
    match &stopped {
        Stop::Signal(signal) => {
            tracing::info!("received {signal}; shutting down (send it again to exit at once)")
        }
        Stop::Died { service, error } => {
            tracing::error!("the {service} stopped unexpectedly ({error}); shutting down")
        }
    }
    tokio::spawn(async {
        let second = shutdown::wait_for_signal().await;
        eprintln!("nimbus: received {second} again; exiting now");
        std::process::exit(130);
    });

    let started = shutdown::Started {
        logs: logs_service,
        scheduler: scheduler_service,
        invoker: invoker_service,
        events: events_service,
        workflows: workflows_service,
        messaging: messaging_service,
        schedules: schedules_service,
        object_events: object_events_service,
        websockets: websockets_service,
        followers: followers_service,
        api: api_service,
        gateway: gateway_service,
    };
    let deadlines = shutdown::Deadlines::from_grace(args.shutdown_grace.into());
    services
        .shutdown(&shutdown::plan(&started, deadlines))
        .await;
    // Its WebSockets are closed: no node needs to reach them any more.
    stop_claim.cancel();
    let _ = claim.await;
    host.cleanup();
    tracing::info!("stopped");
    match stopped {
        Stop::Signal(_) => Ok(()),
        Stop::Died { service, error } => {
            anyhow::bail!("the {service} stopped unexpectedly: {error}")
        }
    }
}

/// Appends the listeners' counters to the Prometheus page of `/metrics`
/// (the engine's metrics know nothing of listeners); any other answer on
/// that path (an S3 bucket called `metrics`, an error) is left alone.
async fn with_listener_metrics(
    resp: axum::response::Response,
    listeners: &[(&str, Arc<nimbus_runtime::listener::ListenerStats>)],
) -> axum::response::Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let prometheus = resp.status() == axum::http::StatusCode::OK
        && resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain; version=0.0.4"));
    if !prometheus {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    let _ = writeln!(
        text,
        "# HELP nimbus_listener_connections_refused_total Connections closed at once because a listener was at a connection cap.\n\
         # TYPE nimbus_listener_connections_refused_total counter"
    );
    for (name, s) in listeners {
        let _ = writeln!(
            text,
            "nimbus_listener_connections_refused_total{{listener=\"{name}\",cap=\"total\"}} {}\n\
             nimbus_listener_connections_refused_total{{listener=\"{name}\",cap=\"per_ip\"}} {}",
            s.refused_total_cap.load(Relaxed),
            s.refused_per_ip_cap.load(Relaxed)
        );
    }
    let _ = writeln!(
        text,
        "# HELP nimbus_listener_bodies_timed_out_total Request bodies cut for arriving too slowly or too late.\n\
         # TYPE nimbus_listener_bodies_timed_out_total counter"
    );
    for (name, s) in listeners {
        let _ = writeln!(
            text,
            "nimbus_listener_bodies_timed_out_total{{listener=\"{name}\"}} {}",
            s.bodies_timed_out.load(Relaxed)
        );
    }
    let _ = writeln!(
        text,
        "# HELP nimbus_listener_open_connections Connections open on a listener.\n\
         # TYPE nimbus_listener_open_connections gauge"
    );
    for (name, s) in listeners {
        let _ = writeln!(
            text,
            "nimbus_listener_open_connections{{listener=\"{name}\"}} {}",
            s.open.load(Relaxed)
        );
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(text))
}

/// The address functions and clients use to reach a listener: a wildcard
/// bind is reached on loopback.
fn public_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Each instance holds a few descriptors (pipe, listener, connection, cgroup
/// file); the usual soft limit of 1024 would cap concurrency well below the
/// account limit, so use the hard limit.
/// `oom_score_adj` of the server: when the host runs out of memory the kernel
/// should kill a function's instance (they set +500), not the platform.
const SERVER_OOM_SCORE_ADJ: &str = "-900";

/// Lowering the score needs CAP_SYS_RESOURCE; without it the server says so.
fn protect_from_oom_killer() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", SERVER_OOM_SCORE_ADJ) {
        tracing::warn!(
            "cannot set the server's oom_score_adj to {SERVER_OOM_SCORE_ADJ} ({e}): the kernel may pick the server over a function when memory runs out"
        );
    }
}

/// The memory budget in MB: the flag's, else the host's memory less a reserve.
fn memory_budget_mb(flag: Option<u64>) -> anyhow::Result<u64> {
    let min = u64::from(nimbus_core::limits::MIN_MEMORY_MB);
    if let Some(bytes) = flag
        && bytes >> 20 < min
    {
        anyhow::bail!(
            "--memory-budget {} MB is below the smallest function memory size ({min} MB): no instance could start",
            bytes >> 20
        );
    }
    let bytes = flag
        .or_else(nimbus_engine::scheduler::default_budget_bytes)
        .unwrap_or(u64::MAX);
    let mb = bytes >> 20;
    tracing::info!("memory budget for instances: {mb} MB");
    Ok(mb)
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from a valid local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn keep_alive_policy(
    name: &str,
    keep: std::time::Duration,
    bin: std::time::Duration,
) -> Arc<dyn KeepAlivePolicy> {
    match name {
        "hybrid" => Arc::new(HybridHistogram::new(bin, 240, keep)),
        _ => Arc::new(FixedKeepAlive(keep)),
    }
}

/// The server's own log (and the gateway's access log, a line per request) goes
/// to stderr through [`stderr_log`]: the request path only appends its line.
fn init_tracing() -> stderr_log::Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = stderr_log::start(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .try_init();
    guard
}
