//! `nimbus-bench`: how much Nimbus adds on top of the handler it runs.
//!
//! Every number is a comparison made in the same run on the same machine: the
//! hello handler invoked through Nimbus versus the same handler behind a bare
//! HTTP server (uvicorn for Python, `http.createServer` for Node), timed by the
//! same Rust client. Absolute numbers move with the machine; the ratios are the
//! thing to track. Nimbus and bare runs are interleaved (alternating which goes
//! first) and medians are reported, so one noisy run cannot decide the result.
//! The gateway rows put the same functions behind a gateway route and add the
//! local peers people use (functions-framework, serverless-offline). The
//! sandbox rows deploy the same functions to a second server started with
//! `--sandbox off` and time it in the same warm and cold runs, to show what the
//! sandbox (namespaces, private root, seccomp) adds. The cluster rows start
//! nodes on PostgreSQL (`nimbus up --postgres`) and time them in turn with the
//! embedded server, so what moving the stores out of the process costs is
//! measured in the same run as everything else.
//!
//! Run it with `scripts/bench`, which builds Nimbus and installs uvicorn first;
//! bench/README.md says how to read the table.

#![allow(
    clippy::disallowed_methods,
    reason = "the bench starts servers and bare runtimes to compare"
)]

/// Progress on stderr (the table goes to stdout); defined before the modules
/// so that they can use it too.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("bench: {}", format_args!($($arg)*)) };
}

mod aws;
mod bare;
mod client;
mod cluster;
mod fixtures;
mod floor;
mod gateway;
mod hostile;
mod measure;
mod nimbus;
mod report;
mod scaling;
mod stats;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;

use crate::bare::Baselines;
use crate::client::Http;
use crate::fixtures::Lang;
use crate::nimbus::{Interpreters, Nimbus, Sandbox};
use crate::report::{
    Async, ClusterRows, Cold, ColdStarts, GatewayRps, GatewayWarm, Memory, Peer, Report,
    SandboxNote, Setup, Throughput, Warm,
};

/// Untimed time at full concurrency before each throughput window.
const THROUGHPUT_WARMUP: Duration = Duration::from_secs(1);

/// Compares Nimbus invoke latency, cold starts and throughput with bare servers
/// running the same hello handler. Prints a table of medians on stdout and its
/// progress on stderr.
#[derive(Parser, Debug)]
#[command(name = "nimbus-bench")]
struct Args {
    /// Timed requests per warm run.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Untimed requests before each warm run.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Warm (and throughput) runs; medians are taken over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Cold starts per variant.
    #[arg(long, default_value_t = 10)]
    cold_starts: usize,
    /// Seconds of each throughput window; 0 skips the throughput rows.
    #[arg(long, default_value_t = 5)]
    throughput_secs: u64,
    /// Concurrent connections of the throughput rows.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Concurrent connections of the peer row (Nimbus vs functions-framework)
    /// and of the asynchronous-events row.
    #[arg(long, default_value_t = 32)]
    peer_concurrency: usize,
    /// Seconds of each asynchronous-events window; 0 skips the async row.
    #[arg(long, default_value_t = 3)]
    async_secs: u64,
    /// Quiet time before each cold start, so the previous instance or server has
    /// wound down.
    #[arg(long, default_value_t = 200)]
    settle_ms: u64,
    /// The nimbus binary (default: next to this one).
    #[arg(long)]
    nimbus: Option<PathBuf>,
    /// Python interpreter for Nimbus's python3 functions (the one uvicorn's venv was made from).
    #[arg(long, default_value = "/usr/bin/python3")]
    python: PathBuf,
    /// uvicorn of the bare Python server.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv-bench/bin/uvicorn"))]
    uvicorn: PathBuf,
    /// Google's functions-framework, the peer of the c=32 row.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv-bench/bin/functions-framework"))]
    functions_framework: PathBuf,
    /// Node.js, for both Nimbus's nodejs functions and the bare Node server.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Where `npm ci` installed serverless v3 and serverless-offline v13, the
    /// Node peer of the gateway rps row.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/serverless-offline"))]
    serverless_offline: PathBuf,
    /// Run only these rows (`cluster`: the PostgreSQL rows and the embedded
    /// server they are compared with).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Skip the cluster rows (for machines without PostgreSQL).
    #[arg(long, conflicts_with = "only")]
    no_cluster: bool,
    /// A database on the PostgreSQL server the cluster rows create their
    /// throwaway databases on; without an answer there the rows are skipped.
    #[arg(long, default_value = nimbus_store::postgres::scratch::DEFAULT_ADMIN_URL)]
    postgres_admin_url: String,
    /// Seconds of each async and SQS send window of the cluster rows.
    #[arg(long, default_value_t = 3)]
    cluster_secs: u64,
    /// Timed 1 MB PutObjects (and GetObjects) per run of the cluster rows.
    #[arg(long, default_value_t = 50)]
    s3_requests: usize,
    /// Internal: the other end of the process round-trip measurement, on this CPU.
    #[arg(long, hide = true)]
    echo_child: Option<usize>,
}

/// Rows that can be run alone.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    Cluster,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(cpu) = args.echo_child {
        floor::echo(cpu);
        return Ok(());
    }
    ensure!(
        args.requests > 0 && args.runs > 0 && args.cold_starts > 0 && args.concurrency > 0,
        "--requests, --runs, --cold-starts and --concurrency must be at least 1"
    );
    ensure!(
        args.cluster_secs > 0 && args.s3_requests > 0 && args.peer_concurrency > 0,
        "--cluster-secs, --s3-requests and --peer-concurrency must be at least 1"
    );
    let nimbus_bin = match &args.nimbus {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("nimbus"),
    };
    // The cluster rows alone need neither the bare servers nor the peers.
    let (uvicorn_version, node_version) = if args.only == Some(Only::Cluster) {
        (String::new(), String::new())
    } else {
        (version(&args.uvicorn)?, version(&args.node)?)
    };

    let work = tempfile::Builder::new().prefix("nimbus-bench-").tempdir()?;
    // Instances run as an unprivileged user, who must be able to reach the run dir.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711))?;
    let bare_root = work.path().join("bare");
    fixtures::write_bare(&bare_root)?;
    // The bare servers start in their own directories: relative paths would break.
    let baselines = Baselines {
        uvicorn: absolute(&args.uvicorn)?,
        node: absolute(&args.node)?,
        functions_framework: absolute(&args.functions_framework)?,
        serverless_offline: absolute(&args.serverless_offline)?,
        root: bare_root,
    };

    progress!("starting {}", nimbus_bin.display());
    let interpreters = Interpreters {
        python: &args.python,
        node: &args.node,
    };
    let nimbus = Nimbus::start(&nimbus_bin, work.path(), interpreters, Sandbox::On).await?;
    let setup = Setup {
        requests: args.requests,
        warmup: args.warmup,
        runs: args.runs,
        cold_starts: args.cold_starts,
        concurrency: args.concurrency,
        peer_concurrency: args.peer_concurrency,
        async_secs: args.async_secs,
        throughput_secs: args.throughput_secs,
        nimbus: nimbus.version.clone(),
        uvicorn: uvicorn_version,
        node: node_version,
        serverless_offline: baselines.serverless_offline_version(),
        only_cluster: args.only == Some(Only::Cluster),
        cluster_secs: args.cluster_secs,
        s3_requests: args.s3_requests,
    };
    let cluster_settings = cluster::Settings {
        bin: &nimbus_bin,
        work: work.path(),
        interpreters,
        admin_url: &args.postgres_admin_url,
        runs: args.runs,
        warmup: args.warmup,
        requests: args.requests,
        concurrency: args.peer_concurrency,
        window: Duration::from_secs(args.cluster_secs),
        s3_requests: args.s3_requests,
    };
    if args.only == Some(Only::Cluster) {
        return only_cluster(&args, &cluster_settings, nimbus, setup).await;
    }
    if !nimbus.has_namespaces() {
        progress!(
            "warning: the sandboxed server runs without namespaces ({}); the sandbox rows will compare off with off",
            nimbus.sandbox
        );
    }
    // Idle footprint: started, nothing deployed, nothing running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nimbus_idle_kb = nimbus.pid().map(scaling::tree_rss_kb).unwrap_or(0);
    progress!("measuring the process round-trip floor");
    // An extra row: without it (a machine that refuses pinning) the rest stands.
    let floor = floor::process_round_trips(args.runs).unwrap_or_else(|e| {
        progress!("no process round-trip row: {e:#}");
        Vec::new()
    });
    // Started after the idle footprint and the floor, so neither sees it; it
    // is stopped once the warm and cold runs have used it.
    progress!("starting {} --sandbox off", nimbus_bin.display());
    let unsandboxed = Nimbus::start(&nimbus_bin, work.path(), interpreters, Sandbox::Off).await?;
    let sandbox = SandboxNote {
        on: nimbus.sandbox.clone(),
        on_has_namespaces: nimbus.has_namespaces(),
        off: unsandboxed.sandbox.clone(),
    };
    let http = Http::new();
    let measured = async {
        let measured = measure_all(&args, &nimbus, unsandboxed, &baselines, &http).await?;
        let cluster = cluster_rows(&args, &cluster_settings, &nimbus, &http).await?;
        anyhow::Ok((measured, cluster))
    }
    .await;
    progress!("stopping nimbus");
    let stopped = nimbus.stop().await;
    let (measured_rows, cluster) = measured?;
    let Measured {
        warm,
        cold,
        throughput,
        peer,
        gateway_warm,
        gateway_rps,
        asynchronous,
        stalled,
        mut memory,
    } = measured_rows;
    stopped?;
    memory.nimbus_idle_kb = nimbus_idle_kb;
    progress!("measuring nginx's idle footprint");
    if let Some(nginx) = scaling::Nginx::start(work.path(), bare::free_port()?).await? {
        tokio::time::sleep(Duration::from_millis(300)).await;
        memory.nginx_idle_kb = Some(nginx.rss_kb());
        nginx.stop().await?;
    }

    let report = Report {
        setup,
        warm,
        cold,
        throughput,
        peer,
        gateway_warm,
        gateway_rps,
        asynchronous,
        stalled,
        memory,
        floor,
        sandbox,
        cluster,
    };
    print!("{report}");
    Ok(())
}

/// `--only cluster`: the Python hello on the embedded server, the cluster
/// rows, and a table of them alone.
async fn only_cluster(
    args: &Args,
    settings: &cluster::Settings<'_>,
    nimbus: Nimbus,
    setup: Setup,
) -> Result<()> {
    let http = Http::new();
    let measured = async {
        progress!("deploying {}", Lang::Python.function_name());
        nimbus.deploy(&http, Lang::Python).await?;
        cluster_rows(args, settings, &nimbus, &http).await
    }
    .await;
    progress!("stopping nimbus");
    let stopped = nimbus.stop().await;
    let cluster = measured?;
    stopped?;
    if let ClusterRows::Skipped(why) = &cluster {
        anyhow::bail!("--only cluster, but the cluster rows were skipped: {why}");
    }
    print!("{}", Report::cluster_only(setup, cluster));
    Ok(())
}

/// The cluster rows, unless `--no-cluster` or PostgreSQL does not answer at
/// `--postgres-admin-url` (the table then says which).
async fn cluster_rows(
    args: &Args,
    settings: &cluster::Settings<'_>,
    nimbus: &Nimbus,
    http: &Http,
) -> Result<ClusterRows> {
    if args.no_cluster {
        return Ok(ClusterRows::Skipped("--no-cluster".into()));
    }
    if let Err(e) = cluster::probe(&args.postgres_admin_url).await {
        progress!("no cluster rows: PostgreSQL did not answer at --postgres-admin-url: {e:#}");
        return Ok(ClusterRows::Skipped(format!(
            "PostgreSQL did not answer at --postgres-admin-url ({e:#})"
        )));
    }
    let measured = cluster::measure(settings, nimbus, http).await?;
    Ok(ClusterRows::Measured(Box::new(measured)))
}

/// `path` made absolute if it is a path (a bare name is left for PATH lookup).
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.components().count() > 1 {
        Ok(std::path::absolute(path)?)
    } else {
        Ok(path.to_path_buf())
    }
}

/// `PROGRAM --version`, first line, without uvicorn's "Running " prefix.
fn version(program: &Path) -> Result<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (did scripts/bench set it up?)",
                program.display()
            )
        })?;
    ensure!(
        out.status.success(),
        "{} --version failed",
        program.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default().trim();
    Ok(first.trim_start_matches("Running ").to_string())
}

struct Measured {
    warm: Vec<Warm>,
    cold: Vec<Cold>,
    throughput: Vec<Throughput>,
    peer: Option<Peer>,
    gateway_warm: Vec<GatewayWarm>,
    gateway_rps: Vec<GatewayRps>,
    asynchronous: Option<Async>,
    stalled: Option<hostile::Stalled>,
    memory: Memory,
}

/// Everything, in order; `unsandboxed` (the `--sandbox off` server) takes part
/// in the warm and cold runs and is stopped after them.
async fn measure_all(
    args: &Args,
    nimbus: &Nimbus,
    unsandboxed: Nimbus,
    baselines: &Baselines,
    http: &Http,
) -> Result<Measured> {
    let mut memory = Memory::default();
    let with_unsandboxed = async {
        for (server, sandbox) in [(nimbus, "on"), (&unsandboxed, "off")] {
            for lang in Lang::ALL {
                progress!("deploying {} (sandbox {sandbox})", lang.function_name());
                server.deploy(http, lang).await?;
                // The same handler with a variable that only acts at process start,
                // which keeps it off spare instances: its cold starts start a process.
                server
                    .deploy_as(http, lang, &fresh_name(lang), fresh_env(lang))
                    .await?;
            }
        }
        gateway::add_routes(nimbus, http).await?;
        let warm = warm(args, nimbus, &unsandboxed, baselines, http, &mut memory).await?;
        let gateway_warm = gateway::latency(
            nimbus,
            baselines,
            http,
            args.runs,
            args.warmup,
            args.requests,
        )
        .await?;
        let cold = cold(args, nimbus, &unsandboxed, baselines, http).await?;
        anyhow::Ok((warm, gateway_warm, cold))
    }
    .await;
    progress!("stopping nimbus --sandbox off");
    let stopped = unsandboxed.stop().await;
    let (warm, gateway_warm, cold) = with_unsandboxed?;
    stopped?;
    let (throughput, peer, gateway_rps) = if args.throughput_secs > 0 {
        let window = Duration::from_secs(args.throughput_secs);
        (
            throughput(args, nimbus, baselines, http).await?,
            Some(peer(args, nimbus, baselines, http).await?),
            gateway::throughput(
                nimbus,
                baselines,
                http,
                args.runs,
                args.peer_concurrency,
                window,
            )
            .await?,
        )
    } else {
        (Vec::new(), None, Vec::new())
    };
    let asynchronous = if args.async_secs > 0 {
        Some(asynchronous(args, nimbus, http).await?)
    } else {
        None
    };
    let stalled = Some(
        hostile::latency(
            nimbus,
            http,
            Lang::Python,
            args.runs,
            args.warmup,
            args.requests,
        )
        .await?,
    );
    Ok(Measured {
        warm,
        cold,
        throughput,
        peer,
        gateway_warm,
        gateway_rps,
        asynchronous,
        stalled,
        memory,
    })
}

fn fresh_name(lang: Lang) -> String {
    format!("{}-fresh", lang.function_name())
}

fn fresh_env(lang: Lang) -> serde_json::Value {
    match lang {
        Lang::Python => serde_json::json!({"PYTHONNOUSERSITE": "1"}),
        Lang::Node => serde_json::json!({"NODE_NO_WARNINGS": "1"}),
    }
}

/// Runs `measure` on every URI, in their order on even runs and in reverse on
/// odd ones (so with two, which goes first alternates from run to run); the
/// results come back in the order of `uris`.
async fn interleaved<const N: usize, T, F, Fut>(
    run: usize,
    uris: [&hyper::Uri; N],
    measure: F,
) -> Result<[T; N]>
where
    F: Fn(hyper::Uri) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut results: [Option<T>; N] = std::array::from_fn(|_| None);
    for k in 0..N {
        let i = if run.is_multiple_of(2) { k } else { N - 1 - k };
        results[i] = Some(measure(uris[i].clone()).await?);
    }
    Ok(results.map(|r| r.expect("every variant was measured")))
}

/// Warm latency: Nimbus, Nimbus without the sandbox and bare, in that order on
/// even runs and the reverse on odd ones (the unsandboxed server always runs
/// next to the sandboxed one, before it on every other run).
async fn warm(
    args: &Args,
    nimbus: &Nimbus,
    unsandboxed: &Nimbus,
    baselines: &Baselines,
    http: &Http,
    memory: &mut Memory,
) -> Result<Vec<Warm>> {
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for lang in Lang::ALL {
        rows.push(Warm {
            lang,
            nimbus: Vec::new(),
            unsandboxed: Vec::new(),
            bare: Vec::new(),
        });
        servers.push(baselines.start(lang).await?.0);
    }
    for run in 0..args.runs {
        progress!("warm run {}/{}", run + 1, args.runs);
        for (row, server) in rows.iter_mut().zip(&servers) {
            let (uri, off) = (
                nimbus.invoke_uri(row.lang)?,
                unsandboxed.invoke_uri(row.lang)?,
            );
            let [n, o, b] = interleaved(run, [&uri, &off, &server.uri], |uri| async move {
                measure::latency(http, &uri, args.warmup, args.requests).await
            })
            .await
            .with_context(|| format!("warm {} run {}", row.lang.label(), run + 1))?;
            row.nimbus.push(n);
            row.unsandboxed.push(o);
            row.bare.push(b);
        }
    }
    // Footprints after serving: the largest instance of each runtime, and the
    // bare server running the same handler.
    let nimbus_pid = nimbus.pid().unwrap_or(0);
    memory.python_instance_kb = scaling::largest_instance_kb(nimbus_pid, "bootstrap.py");
    memory.node_instance_kb = scaling::largest_instance_kb(nimbus_pid, "bootstrap.mjs");
    memory.uvicorn_kb = servers[0].pid().map(scaling::tree_rss_kb);
    memory.node_bare_kb = servers[1].pid().map(scaling::tree_rss_kb);
    for server in servers {
        server.stop().await?;
    }
    Ok(rows)
}

/// Cold starts: Nimbus (spare, then fresh), Nimbus without the sandbox (the
/// same two) and bare (then the interpreter), in that order on even starts and
/// the reverse on odd ones, like the warm runs.
async fn cold(
    args: &Args,
    nimbus: &Nimbus,
    unsandboxed: &Nimbus,
    baselines: &Baselines,
    http: &Http,
) -> Result<Vec<Cold>> {
    let settle = Duration::from_millis(args.settle_ms);
    let mut rows: Vec<Cold> = Lang::ALL
        .into_iter()
        .map(|lang| Cold {
            lang,
            nimbus: ColdStarts::default(),
            unsandboxed: ColdStarts::default(),
            bare: Vec::new(),
            interpreter: Vec::new(),
        })
        .collect();
    // A spare cold start, then a fresh one, of the language's functions on `server`.
    let nimbus_colds = async |server: &Nimbus, lang: Lang, start: usize| {
        let spare = measure::nimbus_cold(server, http, lang.function_name(), start, settle).await?;
        let fresh = measure::nimbus_cold(server, http, &fresh_name(lang), start, settle).await?;
        anyhow::Ok((spare, fresh))
    };
    for start in 0..args.cold_starts {
        progress!("cold start {}/{}", start + 1, args.cold_starts);
        for row in &mut rows {
            let lang = row.lang;
            let bare = async {
                tokio::time::sleep(settle).await;
                let (server, elapsed) = baselines.start(lang).await?;
                server.stop().await?;
                tokio::time::sleep(settle).await;
                let interpreter =
                    scaling::interpreter_start(&args.python, &args.node, lang).await?;
                anyhow::Ok((elapsed, interpreter))
            };
            let (n, o, (b, interp)) = if start.is_multiple_of(2) {
                let n = nimbus_colds(nimbus, lang, start).await?;
                let o = nimbus_colds(unsandboxed, lang, start).await?;
                (n, o, bare.await?)
            } else {
                let b = bare.await?;
                let o = nimbus_colds(unsandboxed, lang, start).await?;
                (nimbus_colds(nimbus, lang, start).await?, o, b)
            };
            row.nimbus.push(n);
            row.unsandboxed.push(o);
            row.bare.push(b);
            row.interpreter.push(interp);
        }
    }
    Ok(rows)
}

async fn throughput(
    args: &Args,
    nimbus: &Nimbus,
    baselines: &Baselines,
    http: &Http,
) -> Result<Vec<Throughput>> {
    let window = Duration::from_secs(args.throughput_secs);
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for lang in Lang::ALL {
        rows.push(Throughput {
            lang,
            nimbus: Vec::new(),
            bare: Vec::new(),
        });
        servers.push(baselines.start(lang).await?.0);
    }
    for run in 0..args.runs {
        progress!("throughput run {}/{}", run + 1, args.runs);
        for (row, server) in rows.iter_mut().zip(&servers) {
            let uri = nimbus.invoke_uri(row.lang)?;
            let [n, b] = interleaved(run, [&uri, &server.uri], |uri| async move {
                measure::throughput(http, &uri, args.concurrency, THROUGHPUT_WARMUP, window).await
            })
            .await
            .with_context(|| format!("throughput {} run {}", row.lang.label(), run + 1))?;
            row.nimbus.push(n);
            row.bare.push(b);
        }
    }
    for server in servers {
        server.stop().await?;
    }
    Ok(rows)
}

/// Nimbus's invoke API against Google's functions-framework running the same
/// Python handler, at the peer concurrency.
async fn peer(args: &Args, nimbus: &Nimbus, baselines: &Baselines, http: &Http) -> Result<Peer> {
    let window = Duration::from_secs(args.throughput_secs);
    let server = baselines.start_functions_framework().await?;
    let uri = nimbus.invoke_uri(Lang::Python)?;
    let mut row = Peer {
        nimbus: Vec::new(),
        functions_framework: Vec::new(),
    };
    for run in 0..args.runs {
        progress!("peer run {}/{}", run + 1, args.runs);
        let [n, p] = interleaved(run, [&uri, &server.uri], |uri| async move {
            measure::throughput(http, &uri, args.peer_concurrency, THROUGHPUT_WARMUP, window).await
        })
        .await
        .with_context(|| format!("peer run {}", run + 1))?;
        row.nimbus.push(n);
        row.functions_framework.push(p);
    }
    server.stop().await?;
    Ok(row)
}

/// Durable asynchronous events: accepted and run per second, against one
/// fsync per event on the same file system.
async fn asynchronous(args: &Args, nimbus: &Nimbus, http: &Http) -> Result<Async> {
    let window = Duration::from_secs(args.async_secs);
    let mut row = Async {
        accepted: Vec::new(),
        processed: Vec::new(),
        fsync_each: Vec::new(),
    };
    for run in 0..args.runs {
        progress!("async run {}/{}", run + 1, args.runs);
        let (accepted, processed) = scaling::async_events(
            http,
            &[nimbus.async_uri(Lang::Python)?],
            &nimbus.metrics_uri()?,
            args.peer_concurrency,
            window,
        )
        .await?;
        row.accepted.push(accepted);
        row.processed.push(processed);
        row.fsync_each.push(scaling::fsync_per_event_rate(
            nimbus.data_dir(),
            Duration::from_secs(1),
        )?);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interleaving_reverses_every_other_run_and_keeps_the_order() {
        let uris: Vec<hyper::Uri> = ["http://a/", "http://b/", "http://c/"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        for (run, expected) in [
            (0, ["a", "b", "c"]),
            (1, ["c", "b", "a"]),
            (2, ["a", "b", "c"]),
        ] {
            let order = std::sync::Mutex::new(Vec::new());
            let got = interleaved(run, [&uris[0], &uris[1], &uris[2]], |uri| {
                let order = &order;
                async move {
                    let host = uri.host().unwrap().to_string();
                    order.lock().unwrap().push(host.clone());
                    Ok(host)
                }
            })
            .await
            .unwrap();
            assert_eq!(got, ["a", "b", "c"]);
            assert_eq!(order.into_inner().unwrap(), expected);
        }
    }
}
