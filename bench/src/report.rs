//! The printed result: one table of medians, what "bare" and "ratio" mean, and
//! the per-run values behind every median so its spread is visible.

use std::fmt;
use std::time::Duration;

use crate::fixtures::Lang;
use crate::stats::{Percentiles, median};

/// How the run was made, for the header and the notes.
pub struct Setup {
    pub requests: usize,
    pub warmup: usize,
    pub runs: usize,
    pub cold_starts: usize,
    pub concurrency: usize,
    pub peer_concurrency: usize,
    pub async_secs: u64,
    pub throughput_secs: u64,
    pub nimbus: String,
    pub uvicorn: String,
    pub node: String,
    /// `serverless-offline X on serverless Y`.
    pub serverless_offline: String,
    /// `--only cluster`: the table has the cluster rows alone.
    pub only_cluster: bool,
    pub cluster_secs: u64,
    pub s3_requests: usize,
}

/// Warm latency at concurrency 1: one entry per run.
pub struct Warm {
    pub lang: Lang,
    /// The sandboxed server (`--sandbox default`), the headline.
    pub nimbus: Vec<Percentiles>,
    /// The same function on the `--sandbox off` server, in the same runs.
    pub unsandboxed: Vec<Percentiles>,
    pub bare: Vec<Percentiles>,
}

/// One server's cold starts of one language: one entry per start.
#[derive(Default)]
pub struct ColdStarts {
    /// Taking a spare instance (the usual case once the runtime was used).
    pub spare: Vec<Duration>,
    pub spare_init_ms: Vec<f64>,
    /// Starting a process (a function that cannot use spares).
    pub fresh: Vec<Duration>,
    pub fresh_init_ms: Vec<f64>,
}

impl ColdStarts {
    /// Adds one start's ((spare, its init), (fresh, its init)).
    pub fn push(&mut self, ((spare, spare_init), (fresh, fresh_init)): ColdPair) {
        self.spare.push(spare);
        self.spare_init_ms.push(spare_init);
        self.fresh.push(fresh);
        self.fresh_init_ms.push(fresh_init);
    }

    /// (label, client-observed times, init durations) of the spare and fresh rows.
    fn kinds(&self) -> [(&'static str, &[Duration], &[f64]); 2] {
        [
            ("spare", &self.spare, &self.spare_init_ms),
            ("fresh", &self.fresh, &self.fresh_init_ms),
        ]
    }
}

/// A spare and a fresh cold start: (client-observed, init ms) each.
pub type ColdPair = ((Duration, f64), (Duration, f64));

/// Cold starts: one entry per start.
pub struct Cold {
    pub lang: Lang,
    /// The sandboxed server (`--sandbox default`), the headline.
    pub nimbus: ColdStarts,
    /// The `--sandbox off` server, in the same rotation.
    pub unsandboxed: ColdStarts,
    pub bare: Vec<Duration>,
    /// `python3 -c pass` / `node -e 0`.
    pub interpreter: Vec<Duration>,
}

/// What the two servers announced about their sandboxes.
pub struct SandboxNote {
    /// The `  sandbox:` line of the main (`--sandbox default`) server.
    pub on: String,
    /// Whether that server really gives instances namespaces (without them the
    /// sandbox rows compare off with off, and the report says so).
    pub on_has_namespaces: bool,
    /// The `  sandbox:` line of the `--sandbox off` server.
    pub off: String,
}

/// Most the sandbox may add to a warm p50, µs.
const SANDBOX_WARM_TARGET_US: f64 = 5.0;
/// Most the sandbox may add to a cold start's p50, ms.
const SANDBOX_COLD_TARGET_MS: f64 = 2.0;

/// Requests per second at the peer concurrency: Nimbus vs functions-framework.
pub struct Peer {
    pub nimbus: Vec<f64>,
    pub functions_framework: Vec<f64>,
}

/// Gateway latency at c=1: one entry per run of each variant.
pub struct GatewayWarm {
    pub lang: Lang,
    /// `POST /hello/<lang>` on the gateway listener.
    pub gateway: Vec<Percentiles>,
    /// `POST /v1/functions/<name>/invoke`, timed in the same runs.
    pub invoke: Vec<Percentiles>,
    pub bare: Vec<Percentiles>,
}

/// Gateway requests per second at the peer concurrency: one entry per run.
pub struct GatewayRps {
    pub lang: Lang,
    pub gateway: Vec<f64>,
    pub bare: Vec<f64>,
    /// functions-framework (Python) or serverless-offline (Node).
    pub peer: Vec<f64>,
}

impl GatewayRps {
    pub fn peer_name(&self) -> &'static str {
        match self.lang {
            Lang::Python => "functions-framework",
            Lang::Node => "serverless-offline",
        }
    }
}

/// Asynchronous events per second: one entry per run.
pub struct Async {
    pub accepted: Vec<f64>,
    pub processed: Vec<f64>,
    /// Records per second with one fdatasync each, on the queue's file system.
    pub fsync_each: Vec<f64>,
}

/// The same measure on the embedded (SQLite) server and on a PostgreSQL node.
#[derive(Default)]
pub struct Pair<T> {
    pub embedded: T,
    pub postgres: T,
}

impl<T> Pair<T> {
    /// The embedded side for 0, the PostgreSQL side for 1 (the order the
    /// cluster rows measure them in).
    pub fn side_mut(&mut self, i: usize) -> &mut T {
        if i == 0 {
            &mut self.embedded
        } else {
            &mut self.postgres
        }
    }
}

/// Async events per second: one entry per run.
#[derive(Default)]
pub struct AsyncRuns {
    pub accepted: Vec<f64>,
    pub completed: Vec<f64>,
}

/// One S3 operation's runs: (latencies, requests per second) each.
pub type S3Runs = Vec<(Percentiles, f64)>;

/// The cluster rows (`nimbus up --postgres`), measured in turn with the
/// embedded server.
pub struct Cluster {
    /// Warm Python hello at c=1.
    pub warm: Pair<Vec<Percentiles>>,
    pub async_embedded: AsyncRuns,
    /// One node on its own database.
    pub async_one: AsyncRuns,
    /// Two nodes on one database, the clients spread over both.
    pub async_two: AsyncRuns,
    /// SendMessage per second.
    pub sqs_send: Pair<Vec<f64>>,
    /// ReceiveMessage + DeleteMessage pairs per second.
    pub sqs_receive: Pair<Vec<f64>>,
    pub s3_put: Pair<S3Runs>,
    pub s3_get: Pair<S3Runs>,
}

/// Whether the cluster rows ran.
pub enum ClusterRows {
    Measured(Box<Cluster>),
    /// Why not (`--no-cluster`, or PostgreSQL did not answer).
    Skipped(String),
}

/// Most a PostgreSQL node's warm p50 may be, as a multiple of the embedded one.
const CLUSTER_WARM_TARGET: f64 = 1.2;
/// Fewest async events a node must accept per second.
const CLUSTER_ACCEPTED_TARGET: f64 = 5000.0;

/// Resident memory, KiB.
#[derive(Default)]
pub struct Memory {
    pub nimbus_idle_kb: u64,
    pub nginx_idle_kb: Option<u64>,
    pub python_instance_kb: Option<u64>,
    pub uvicorn_kb: Option<u64>,
    pub node_instance_kb: Option<u64>,
    pub node_bare_kb: Option<u64>,
}

/// Requests per second at the setup's concurrency: one entry per run.
pub struct Throughput {
    pub lang: Lang,
    pub nimbus: Vec<f64>,
    pub bare: Vec<f64>,
}

pub struct Report {
    pub setup: Setup,
    pub warm: Vec<Warm>,
    pub cold: Vec<Cold>,
    pub throughput: Vec<Throughput>,
    pub peer: Option<Peer>,
    pub gateway_warm: Vec<GatewayWarm>,
    pub gateway_rps: Vec<GatewayRps>,
    pub asynchronous: Option<Async>,
    /// Warm latency with slowloris connections parked on the API listener.
    pub stalled: Option<crate::hostile::Stalled>,
    pub memory: Memory,
    /// Round trips to another process over pipes, per run.
    pub floor: Vec<crate::floor::Floor>,
    pub sandbox: SandboxNote,
    pub cluster: ClusterRows,
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

const LABEL: usize = 26;
const COL: usize = 12;
const RATIO: usize = 8;

fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

fn list(values: impl IntoIterator<Item = f64>, decimals: usize) -> String {
    values
        .into_iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn range(values: impl IntoIterator<Item = f64>) -> String {
    let (lo, hi) = values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    format!("{lo:.1}–{hi:.1}")
}

/// The CPU model and how many CPUs this process may use.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model} × {cpus}")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        writeln!(
            f,
            "Nimbus benchmark — {}, {}, {} requests × {} runs (medians)",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine(),
            s.requests,
            s.runs
        )?;
        if s.only_cluster {
            self.cluster_rows(f)?;
            writeln!(f)?;
            self.cluster_notes(f)?;
            writeln!(f)?;
            writeln!(f, "Per run (the spread behind each median):")?;
            return self.cluster_per_run(f);
        }
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
            "",
            "Nimbus p50",
            "bare p50",
            "ratio",
            "Nimbus p90",
            "bare p90",
            "Nimbus p99",
            "bare p99"
        )?;
        for w in &self.warm {
            let n = |pick: fn(&Percentiles) -> f64| median(w.nimbus.iter().map(pick));
            let b = |pick: fn(&Percentiles) -> f64| median(w.bare.iter().map(pick));
            let (n50, b50) = (n(|p| p.p50), b(|p| p.p50));
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
                format!("warm {:<6} (c=1)", w.lang.label()),
                latency(n50),
                latency(b50),
                ratio(n50, b50),
                latency(n(|p| p.p90)),
                latency(b(|p| p.p90)),
                latency(n(|p| p.p99)),
                latency(b(|p| p.p99)),
            )?;
        }
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>RATIO$}",
            "", "Nimbus", "bare", "ratio", "interp.", "ratio"
        )?;
        for c in &self.cold {
            let b = median(c.bare.iter().copied().map(millis));
            let i = median(c.interpreter.iter().copied().map(millis));
            for (label, times, init) in c.nimbus.kinds() {
                let n = median(times.iter().copied().map(millis));
                writeln!(
                    f,
                    "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>RATIO$}   (init {:.1} ms)",
                    format!("cold {:<6} {label}", c.lang.label()),
                    format!("{n:.1} ms"),
                    format!("{b:.1} ms"),
                    ratio(n, b),
                    format!("{i:.1} ms"),
                    ratio(n, i),
                    median(init.iter().copied()),
                )?;
            }
        }
        self.sandbox_rows(f)?;
        self.stalled_rows(f)?;
        if !self.throughput.is_empty() {
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                "", "Nimbus rps", "bare rps", "ratio"
            )?;
            for t in &self.throughput {
                let (n, b) = (
                    median(t.nimbus.iter().copied()),
                    median(t.bare.iter().copied()),
                );
                writeln!(
                    f,
                    "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                    format!("rps  {:<6} (c={})", t.lang.label(), s.concurrency),
                    format!("{n:.0}"),
                    format!("{b:.0}"),
                    ratio(n, b),
                )?;
            }
        }
        if let Some(p) = &self.peer {
            let (n, g) = (
                median(p.nimbus.iter().copied()),
                median(p.functions_framework.iter().copied()),
            );
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                "", "Nimbus rps", "f-framework", "ratio"
            )?;
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                format!("rps  python (c={})", s.peer_concurrency),
                format!("{n:.0}"),
                format!("{g:.0}"),
                ratio(n, g),
            )?;
        }
        self.gateway_rows(f)?;
        if let Some(a) = &self.asynchronous {
            let (acc, done, each) = (
                median(a.accepted.iter().copied()),
                median(a.processed.iter().copied()),
                median(a.fsync_each.iter().copied()),
            );
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                "", "events/s", "fsync each", "ratio"
            )?;
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                format!("async accepted (c={})", s.peer_concurrency),
                format!("{acc:.0}"),
                format!("{each:.0}"),
                ratio(acc, each),
            )?;
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}",
                "async run to completion",
                format!("{done:.0}"),
            )?;
        }
        let m = &self.memory;
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
            "", "Nimbus RSS", "peer RSS", "ratio"
        )?;
        let kb_ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if b > 0 => ratio(a as f64, b as f64),
            _ => "—".into(),
        };
        for (label, a, b) in [
            (
                "idle server vs nginx",
                Some(m.nimbus_idle_kb),
                m.nginx_idle_kb,
            ),
            (
                "python instance vs uvicorn",
                m.python_instance_kb,
                m.uvicorn_kb,
            ),
            (
                "node instance vs bare node",
                m.node_instance_kb,
                m.node_bare_kb,
            ),
        ] {
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                label,
                mib(a),
                mib(b),
                kb_ratio(a, b)
            )?;
        }
        self.cluster_rows(f)?;

        writeln!(f)?;
        writeln!(
            f,
            "bare   = the same hello handler with no platform in between: python = raw ASGI app under"
        )?;
        writeln!(
            f,
            "         {}; node = http.createServer on node {}",
            s.uvicorn, s.node
        )?;
        writeln!(
            f,
            "Nimbus = {}, POST /v1/functions/{{name}}/invoke of the same handler (128 MB), started with",
            s.nimbus
        )?;
        writeln!(
            f,
            "         --sandbox default and --cpu-per-gb off (Lambda's 0.579 CPU per GB would give a 128 MB"
        )?;
        writeln!(
            f,
            "         function 7% of a CPU: the rows would time CFS throttling, not Nimbus)"
        )?;
        writeln!(
            f,
            "client = the same for both: hyper HTTP/1.1, keep-alive, TCP_NODELAY, sending POST {{}};"
        )?;
        writeln!(
            f,
            "         every reply is checked to be {{\"message\": \"Hello, World!\"}}"
        )?;
        writeln!(
            f,
            "ratio  = Nimbus ÷ bare; for latency 1.00× means no overhead (lower is better), for rps higher is better"
        )?;
        writeln!(
            f,
            "warm   = one connection; per run {} untimed, then {} timed sequential requests;",
            s.warmup, s.requests
        )?;
        writeln!(
            f,
            "         each column is the median over {} interleaved runs of that run's percentile",
            s.runs
        )?;
        writeln!(
            f,
            "cold   = median of {}; Nimbus: client-observed first invocation after a PATCH retired the",
            s.cold_starts
        )?;
        writeln!(
            f,
            "         function's instances (init = x-nimbus-init-duration-ms); bare: spawn → first 200 response,"
        )?;
        writeln!(
            f,
            "         connect retried every 1 ms; interp. = spawn → exit of `python3 -c pass` / `node -e 0`;"
        )?;
        writeln!(
            f,
            "         spare = a spare instance (started ahead, runtime loaded) takes the function;"
        )?;
        writeln!(
            f,
            "         fresh = the same handler with a start-time variable set, so its process is started"
        )?;
        self.sandbox_notes(f)?;
        if self.peer.is_some() {
            writeln!(
                f,
                "peer   = Nimbus invoke API vs Google functions-framework (its defaults) running the same"
            )?;
            writeln!(
                f,
                "         Python handler, {} connections, measured like rps",
                s.peer_concurrency
            )?;
        }
        self.gateway_notes(f)?;
        if self.asynchronous.is_some() {
            writeln!(
                f,
                "async  = {} clients posting Event invocations for {} s; accepted = 202s per second (each",
                s.peer_concurrency, s.async_secs
            )?;
            writeln!(
                f,
                "         fsynced in the queue before the answer); run to completion = until the queue is"
            )?;
            writeln!(
                f,
                "         empty; fsync each = 200-byte records written with one fdatasync each, same disk"
            )?;
        }
        writeln!(
            f,
            "RSS    = resident memory: idle = just started, nothing deployed (with children); instances ="
        )?;
        writeln!(
            f,
            "         the largest of each runtime after the warm runs; peers with their children"
        )?;
        if !self.throughput.is_empty() {
            writeln!(
                f,
                "rps    = {} concurrent connections for {} s after 1 s of warm-up, median of {} runs;",
                s.concurrency, s.throughput_secs, s.runs
            )?;
            writeln!(
                f,
                "         Nimbus starts up to 4 instances per CPU, then queues short calls; bare is one process"
            )?;
        }

        self.cluster_notes(f)?;

        writeln!(f)?;
        writeln!(f, "Per run (the spread behind each median):")?;
        for w in &self.warm {
            writeln!(
                f,
                "  {:<LABEL$}Nimbus {}   sandbox off {}   bare {}",
                format!("warm {:<6} p50 (µs)", w.lang.label()),
                list(w.nimbus.iter().map(|p| p.p50), 0),
                list(w.unsandboxed.iter().map(|p| p.p50), 0),
                list(w.bare.iter().map(|p| p.p50), 0),
            )?;
        }
        for c in &self.cold {
            writeln!(
                f,
                "  {:<LABEL$}spare {} (init {})   fresh {}   bare {}   interp. {}",
                format!("cold {:<6} min–max (ms)", c.lang.label()),
                range(c.nimbus.spare.iter().copied().map(millis)),
                range(c.nimbus.spare_init_ms.iter().copied()),
                range(c.nimbus.fresh.iter().copied().map(millis)),
                range(c.bare.iter().copied().map(millis)),
                range(c.interpreter.iter().copied().map(millis)),
            )?;
            writeln!(
                f,
                "  {:<LABEL$}spare {} (init {})   fresh {} (init {})",
                format!("cold {:<6} sandbox off", c.lang.label()),
                range(c.unsandboxed.spare.iter().copied().map(millis)),
                range(c.unsandboxed.spare_init_ms.iter().copied()),
                range(c.unsandboxed.fresh.iter().copied().map(millis)),
                range(c.unsandboxed.fresh_init_ms.iter().copied()),
            )?;
        }
        if let Some(p) = &self.peer {
            writeln!(
                f,
                "  {:<LABEL$}Nimbus {}   f-framework {}",
                "peer python rps",
                list(p.nimbus.iter().copied(), 0),
                list(p.functions_framework.iter().copied(), 0),
            )?;
        }
        for g in &self.gateway_warm {
            writeln!(
                f,
                "  {:<LABEL$}gateway {}   invoke {}   bare {}",
                format!("gateway {:<6} p50 (µs)", g.lang.label()),
                list(g.gateway.iter().map(|p| p.p50), 0),
                list(g.invoke.iter().map(|p| p.p50), 0),
                list(g.bare.iter().map(|p| p.p50), 0),
            )?;
        }
        if !self.floor.is_empty() {
            writeln!(
                f,
                "  {:<LABEL$}same CPU {}   two CPUs {}",
                "process round trip (µs)",
                list(self.floor.iter().map(|r| r.same_cpu), 1),
                list(self.floor.iter().filter_map(|r| r.cross_cpu), 1),
            )?;
        }
        for g in &self.gateway_rps {
            writeln!(
                f,
                "  {:<LABEL$}gateway {}   bare {}   {} {}",
                format!("gateway {:<6} rps", g.lang.label()),
                list(g.gateway.iter().copied(), 0),
                list(g.bare.iter().copied(), 0),
                g.peer_name(),
                list(g.peer.iter().copied(), 0),
            )?;
        }
        if let Some(a) = &self.asynchronous {
            writeln!(
                f,
                "  {:<LABEL$}accepted {}   completed {}   fsync each {}",
                "async events/s",
                list(a.accepted.iter().copied(), 0),
                list(a.processed.iter().copied(), 0),
                list(a.fsync_each.iter().copied(), 0),
            )?;
        }
        for t in &self.throughput {
            writeln!(
                f,
                "  {:<LABEL$}Nimbus {}   bare {}",
                format!("rps  {:<6}", t.lang.label()),
                list(t.nimbus.iter().copied(), 0),
                list(t.bare.iter().copied(), 0),
            )?;
        }
        self.cluster_per_run(f)
    }
}

/// Median over runs of the per-run difference `a − b` (paired, so drift
/// between runs cancels).
fn paired_gap(a: &[Percentiles], b: &[Percentiles], pick: fn(&Percentiles) -> f64) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| pick(a) - pick(b)))
}

fn signed_latency(us: f64) -> String {
    if us < 0.0 {
        format!("−{}", latency(-us))
    } else {
        format!("+{}", latency(us))
    }
}

/// `value` with its sign (`+` or `−`), `decimals` places and `unit`.
fn signed(value: f64, decimals: usize, unit: &str) -> String {
    let sign = if value < 0.0 { "−" } else { "+" };
    format!("{sign}{:.decimals$} {unit}", value.abs())
}

/// `added` against `target` (same unit): whether the target is met, with the
/// target shown, e.g. `≤ 5 µs: met`.
fn verdict(added: f64, target: f64, unit: &str) -> String {
    let met = if added <= target { "met" } else { "NOT met" };
    format!("≤ {target:.0} {unit}: {met}")
}

impl Report {
    /// A report of the cluster rows alone (`--only cluster`).
    pub fn cluster_only(setup: Setup, cluster: ClusterRows) -> Self {
        Self {
            setup,
            warm: Vec::new(),
            cold: Vec::new(),
            throughput: Vec::new(),
            peer: None,
            gateway_warm: Vec::new(),
            gateway_rps: Vec::new(),
            asynchronous: None,
            stalled: None,
            memory: Memory::default(),
            floor: Vec::new(),
            sandbox: SandboxNote {
                on: String::new(),
                on_has_namespaces: false,
                off: String::new(),
            },
            cluster,
        }
    }

    /// The sandbox rows: warm p50 and cold-start p50 of the sandboxed server
    /// against the `--sandbox off` one, measured in the same runs, with the
    /// difference of the two medians shown and checked against its target.
    fn sandbox_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.warm.is_empty() && self.cold.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>COL$}   target for added (p50s)",
            "", "sandbox on", "sandbox off", "added"
        )?;
        for w in &self.warm {
            let on = median(w.nimbus.iter().map(|p| p.p50));
            let off = median(w.unsandboxed.iter().map(|p| p.p50));
            let added = on - off;
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>COL$}   {}",
                format!("sandbox warm {:<6} (c=1)", w.lang.label()),
                format!("{on:.1} µs"),
                format!("{off:.1} µs"),
                signed(added, 1, "µs"),
                verdict(added, SANDBOX_WARM_TARGET_US, "µs"),
            )?;
        }
        for c in &self.cold {
            for ((label, on, on_init), (_, off, off_init)) in
                c.nimbus.kinds().into_iter().zip(c.unsandboxed.kinds())
            {
                let on_ms = median(on.iter().copied().map(millis));
                let off_ms = median(off.iter().copied().map(millis));
                let added = on_ms - off_ms;
                writeln!(
                    f,
                    "{:<LABEL$}{:>COL$}{:>COL$}{:>COL$}   {}   (init {:.2} / {:.2} ms)",
                    format!("sandbox cold {:<6} {label}", c.lang.label()),
                    format!("{on_ms:.2} ms"),
                    format!("{off_ms:.2} ms"),
                    signed(added, 2, "ms"),
                    verdict(added, SANDBOX_COLD_TARGET_MS, "ms"),
                    median(on_init.iter().copied()),
                    median(off_init.iter().copied()),
                )?;
            }
        }
        if !self.sandbox.on_has_namespaces {
            writeln!(
                f,
                "{:<LABEL$}the --sandbox default server ran WITHOUT namespaces on this host: these rows compare off with off",
                "!"
            )?;
        }
        Ok(())
    }

    /// Warm p50/p99 of the sandboxed server quiet and with stalled clients
    /// parked on its listener, in the same runs.
    fn stalled_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(s) = &self.stalled else {
            return Ok(());
        };
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
            "",
            "quiet p50",
            format!("{} stalled", crate::hostile::STALLED),
            "added p50",
            "quiet p99",
            "stalled p99"
        )?;
        let p50 = |v: &[Percentiles]| median(v.iter().map(|p| p.p50));
        let p99 = |v: &[Percentiles]| median(v.iter().map(|p| p.p99));
        writeln!(
            f,
            "{:<LABEL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
            format!("slowloris {:<6} (c=1)", s.lang.label()),
            latency(p50(&s.quiet)),
            latency(p50(&s.stalled)),
            signed_latency(paired_gap(&s.stalled, &s.quiet, |p| p.p50)),
            latency(p99(&s.quiet)),
            latency(p99(&s.stalled)),
        )
    }

    fn sandbox_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sb = &self.sandbox;
        writeln!(
            f,
            "sandbox= the same functions on a second server started with --sandbox off (no namespaces, no"
        )?;
        writeln!(
            f,
            "         seccomp; cgroups, rlimits and uids as before) and otherwise the same flags; its warm runs"
        )?;
        writeln!(
            f,
            "         and cold starts are interleaved with the sandboxed server's (the Nimbus rows above) and"
        )?;
        writeln!(
            f,
            "         bare's; on and off are medians as above, added = on − off of those medians (init: on / off);"
        )?;
        writeln!(
            f,
            "         targets: the sandbox adds ≤ {SANDBOX_WARM_TARGET_US:.0} µs to warm p50, ≤ {SANDBOX_COLD_TARGET_MS:.0} ms to a cold start's p50"
        )?;
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "(not announced)".to_string()
            } else {
                s.to_string()
            }
        };
        writeln!(f, "         on:  {}", or_unknown(&sb.on))?;
        writeln!(f, "         off: {}", or_unknown(&sb.off))?;
        Ok(())
    }

    /// The gateway rows: latency at c=1 against bare (and the invoke API),
    /// rps at the peer concurrency against bare and the language's peer.
    fn gateway_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.gateway_warm.is_empty() {
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
                "",
                "Gateway p50",
                "bare p50",
                "ratio",
                "Gateway p99",
                "bare p99",
                "added p50",
                "vs invoke"
            )?;
        }
        for g in &self.gateway_warm {
            let m = |v: &[Percentiles], pick: fn(&Percentiles) -> f64| median(v.iter().map(pick));
            let (g50, b50) = (m(&g.gateway, |p| p.p50), m(&g.bare, |p| p.p50));
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
                format!("gateway {:<6} (c=1)", g.lang.label()),
                latency(g50),
                latency(b50),
                ratio(g50, b50),
                latency(m(&g.gateway, |p| p.p99)),
                latency(m(&g.bare, |p| p.p99)),
                signed_latency(paired_gap(&g.gateway, &g.bare, |p| p.p50)),
                signed_latency(paired_gap(&g.gateway, &g.invoke, |p| p.p50)),
            )?;
        }
        if !self.gateway_warm.is_empty() && !self.floor.is_empty() {
            let cross: Vec<f64> = self.floor.iter().filter_map(|r| r.cross_cpu).collect();
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}   (same CPU, two CPUs: the least an instance hop adds)",
                "process round trip",
                latency(median(self.floor.iter().map(|r| r.same_cpu))),
                if cross.is_empty() {
                    "—".to_string()
                } else {
                    latency(median(cross.into_iter()))
                },
            )?;
        }
        if !self.gateway_rps.is_empty() {
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>RATIO$}",
                "", "Gateway rps", "bare rps", "ratio", "peer rps", "ratio"
            )?;
        }
        for g in &self.gateway_rps {
            let (n, b, p) = (
                median(g.gateway.iter().copied()),
                median(g.bare.iter().copied()),
                median(g.peer.iter().copied()),
            );
            writeln!(
                f,
                "{:<LABEL$}{:>COL$}{:>COL$}{:>RATIO$}{:>COL$}{:>RATIO$}   (peer: {})",
                format!(
                    "gateway {:<6} (c={})",
                    g.lang.label(),
                    self.setup.peer_concurrency
                ),
                format!("{n:.0}"),
                format!("{b:.0}"),
                ratio(n, b),
                format!("{p:.0}"),
                ratio(n, p),
                g.peer_name(),
            )?;
        }
        Ok(())
    }

    fn gateway_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        if self.gateway_warm.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "gateway= POST /hello/{{python,node}} on the gateway listener, a route (payload 2.0, no auth) to"
        )?;
        writeln!(
            f,
            "         the same functions; the 2.0 rules turn the handler's dict into a JSON 200;"
        )?;
        writeln!(
            f,
            "         latency: gateway, invoke API and bare in rotation, {} runs as warm; added p50 =",
            s.runs
        )?;
        writeln!(
            f,
            "         gateway p50 − bare p50 (what the platform adds), vs invoke = gateway p50 − invoke API"
        )?;
        writeln!(
            f,
            "         p50 (what the gateway adds in front of the same invocation path); medians of per-run"
        )?;
        writeln!(f, "         differences")?;
        writeln!(
            f,
            "         process round trip = 8 bytes to a child process and back over pipes, p50 of 20,000,"
        )?;
        writeln!(
            f,
            "         both pinned to one CPU, then to two: what the instance hop (Nimbus → instance → Nimbus)"
        )?;
        writeln!(
            f,
            "         costs at least; the scheduler puts a lightly loaded platform's processes on different CPUs"
        )?;
        if !self.gateway_rps.is_empty() {
            writeln!(
                f,
                "         rps: {} connections, measured like rps; ratios are gateway ÷ bare and gateway ÷ peer;",
                s.peer_concurrency
            )?;
            writeln!(
                f,
                "         peers in their default modes: functions-framework (gunicorn + Flask) on the Python"
            )?;
            writeln!(
                f,
                "         handler; on the Node handler {}",
                s.serverless_offline
            )?;
            writeln!(
                f,
                "         (worker-threads mode, httpApi POST /hello, --noPrependStageInUrl --noTimeout)"
            )?;
        }
        Ok(())
    }
}

/// Width of the cluster rows' labels.
const CLUSTER_LABEL: usize = 38;

fn p50s(runs: &[Percentiles]) -> f64 {
    median(runs.iter().map(|p| p.p50))
}

fn s3_p50(runs: &S3Runs) -> f64 {
    median(runs.iter().map(|(p, _)| p.p50))
}

fn s3_rate(runs: &S3Runs) -> f64 {
    median(runs.iter().map(|(_, rate)| *rate))
}

fn rate_median(runs: &[f64]) -> f64 {
    median(runs.iter().copied())
}

/// `≥ target: met` for `value` events per second per node.
fn at_least(value: f64, target: f64) -> &'static str {
    if value >= target { "met" } else { "NOT met" }
}

impl Report {
    /// The cluster rows: PostgreSQL nodes against the embedded server,
    /// measured in turn, with the targets and verdicts.
    fn cluster_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match &self.cluster {
            ClusterRows::Skipped(why) => {
                return writeln!(
                    f,
                    "{:<CLUSTER_LABEL$}skipped: {why}",
                    "cluster (--postgres)"
                );
            }
            ClusterRows::Measured(c) => c,
        };
        let conc = self.setup.peer_concurrency;
        writeln!(
            f,
            "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>RATIO$}   target",
            "cluster (--postgres)", "embedded", "PostgreSQL", "ratio"
        )?;
        let (e, p) = (p50s(&c.warm.embedded), p50s(&c.warm.postgres));
        let met = if p / e <= CLUSTER_WARM_TARGET {
            "met"
        } else {
            "NOT met"
        };
        writeln!(
            f,
            "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>RATIO$}   ≤ {CLUSTER_WARM_TARGET:.1}× embedded: {met}",
            "cluster warm python p50 (c=1)",
            latency(e),
            latency(p),
            ratio(p, e),
        )?;
        for (label, runs) in [
            (format!("cluster sqs SendMessage/s (c={conc})"), &c.sqs_send),
            (
                format!("cluster sqs Receive+Delete/s (c={conc})"),
                &c.sqs_receive,
            ),
        ] {
            let (e, p) = (rate_median(&runs.embedded), rate_median(&runs.postgres));
            writeln!(
                f,
                "{label:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>RATIO$}",
                format!("{e:.0}"),
                format!("{p:.0}"),
                ratio(p, e),
            )?;
        }
        for (op, runs) in [("PutObject", &c.s3_put), ("GetObject", &c.s3_get)] {
            let (e, p) = (s3_p50(&runs.embedded), s3_p50(&runs.postgres));
            writeln!(
                f,
                "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>RATIO$}   ({:.1}/s embedded, {:.1}/s PostgreSQL)",
                format!("cluster s3 {op} 1 MB p50 (c=1)"),
                latency(e),
                latency(p),
                ratio(p, e),
                s3_rate(&runs.embedded),
                s3_rate(&runs.postgres),
            )?;
        }
        writeln!(
            f,
            "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}   target ≥ {CLUSTER_ACCEPTED_TARGET:.0} accepted/s per node",
            "", "embedded", "1 node", "2 nodes", "per node"
        )?;
        let medians = |pick: fn(&AsyncRuns) -> &Vec<f64>| {
            [&c.async_embedded, &c.async_one, &c.async_two].map(|r| rate_median(pick(r)))
        };
        let [e, one, two] = medians(|r| &r.accepted);
        writeln!(
            f,
            "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}   1 node: {}; 2 nodes: {}",
            format!("cluster async accepted/s (c={conc})"),
            format!("{e:.0}"),
            format!("{one:.0}"),
            format!("{two:.0}"),
            format!("{:.0}", two / 2.0),
            at_least(one, CLUSTER_ACCEPTED_TARGET),
            at_least(two / 2.0, CLUSTER_ACCEPTED_TARGET),
        )?;
        let [e, one, two] = medians(|r| &r.completed);
        writeln!(
            f,
            "{:<CLUSTER_LABEL$}{:>COL$}{:>COL$}{:>COL$}{:>COL$}",
            "cluster async run to completion/s",
            format!("{e:.0}"),
            format!("{one:.0}"),
            format!("{two:.0}"),
            format!("{:.0}", two / 2.0),
        )
    }

    fn cluster_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        match &self.cluster {
            ClusterRows::Skipped(_) => return Ok(()),
            ClusterRows::Measured(_) => {}
        }
        for line in [
            "cluster= nodes started like the Nimbus server above plus --postgres URL --master-key-file PATH,".to_string(),
            "         each with its own data directory: 1 node on a database of its own, 2 nodes on another;".to_string(),
            "         PostgreSQL with its defaults (synchronous_commit on); embedded = the Nimbus server above".to_string(),
            "         (SQLite), measured in turn with the nodes in every run (which goes first alternates);".to_string(),
            "         ratio = PostgreSQL ÷ embedded (latency: lower is better; per second: higher is better)".to_string(),
            format!(
                "         warm: as warm above, python, 1 node; async: as async above for {} s, the 2-node clients",
                s.cluster_secs
            ),
            "         alternating between the nodes' APIs, per node = 2 nodes ÷ 2; sqs (SigV4-signed, as".to_string(),
            format!(
                "         an SDK): {} clients SendMessage for {} s, then ReceiveMessage (1 message) +",
                s.peer_concurrency, s.cluster_secs
            ),
            "         DeleteMessage until the queue is empty, pairs per second; s3: path-style PutObject of".to_string(),
            format!(
                "         a 1 MB object under {} new keys, then GetObject of each, sequentially (c=1)",
                s.s3_requests
            ),
        ] {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }

    fn cluster_per_run(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match &self.cluster {
            ClusterRows::Skipped(_) => return Ok(()),
            ClusterRows::Measured(c) => c,
        };
        writeln!(
            f,
            "  {:<LABEL$}embedded {}   PostgreSQL {}",
            "cluster warm p50 (µs)",
            list(c.warm.embedded.iter().map(|p| p.p50), 0),
            list(c.warm.postgres.iter().map(|p| p.p50), 0),
        )?;
        for (label, runs) in [
            (
                "cluster async accepted/s",
                [
                    &c.async_embedded.accepted,
                    &c.async_one.accepted,
                    &c.async_two.accepted,
                ],
            ),
            (
                "cluster async completed/s",
                [
                    &c.async_embedded.completed,
                    &c.async_one.completed,
                    &c.async_two.completed,
                ],
            ),
        ] {
            writeln!(
                f,
                "  {label:<LABEL$}embedded {}   1 node {}   2 nodes {}",
                list(runs[0].iter().copied(), 0),
                list(runs[1].iter().copied(), 0),
                list(runs[2].iter().copied(), 0),
            )?;
        }
        for (label, runs) in [
            ("cluster sqs send/s", &c.sqs_send),
            ("cluster sqs recv+delete/s", &c.sqs_receive),
        ] {
            writeln!(
                f,
                "  {label:<LABEL$}embedded {}   PostgreSQL {}",
                list(runs.embedded.iter().copied(), 0),
                list(runs.postgres.iter().copied(), 0),
            )?;
        }
        for (label, runs) in [
            ("cluster s3 put p50 (ms)", &c.s3_put),
            ("cluster s3 get p50 (ms)", &c.s3_get),
        ] {
            writeln!(
                f,
                "  {label:<LABEL$}embedded {}   PostgreSQL {}",
                list(runs.embedded.iter().map(|(p, _)| p.p50 / 1000.0), 2),
                list(runs.postgres.iter().map(|(p, _)| p.p50 / 1000.0), 2),
            )?;
        }
        Ok(())
    }
}
