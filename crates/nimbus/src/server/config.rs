//! Host configuration for `nimbus up`: flags with environment fallbacks, and the
//! preparation of everything on disk before the server starts.
//!
//! "How the host runs" lives here; "what runs" (functions) lives in the metadata
//! store and manifests. Defaults are safe for a laptop: loopback only, data under the
//! user's data directory, instances as an unprivileged user when started as root.

use std::fs;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nimbus_runtime::ProcessRuntimeConfig;
use nimbus_runtime::sandbox::{
    CgroupSupport, Isolation, Sandbox, SandboxUser, UidPool, UserPolicy,
};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where metadata, code and logs are kept.
    #[arg(long, env = "NIMBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep every store in this PostgreSQL database
    /// (`postgres://user[:password]@host[:port]/dbname`): nodes given the
    /// same URL and master key are one Nimbus. Without it, SQLite files in
    /// the data directory.
    #[arg(long, env = "NIMBUS_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,
    /// File holding the master key that seals secrets at rest: 32 bytes,
    /// raw or base64. Without it (and without NIMBUS_MASTER_KEY, the key in
    /// base64), `master.key` in the data directory, created on first use;
    /// with --postgres one of the two is required, the same on every node.
    #[arg(long, env = "NIMBUS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The URL clients and functions reach the API at, when it is not this
    /// listener (a load balancer in front of a cluster's nodes); given to
    /// functions as `AWS_ENDPOINT_URL`.
    #[arg(long, env = "NIMBUS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The URL clients reach the gateway at, when it is not this listener
    /// (a load balancer); function URLs are built on it.
    #[arg(long, env = "NIMBUS_PUBLIC_GATEWAY_URL")]
    pub public_gateway_url: Option<String>,
    /// The URL the other nodes of a cluster reach this node's gateway
    /// listener at, to answer for its WebSockets (by default the listener's
    /// address, 127.0.0.1 for a wildcard one: set it when nodes run on
    /// different hosts).
    #[arg(long, env = "NIMBUS_NODE_GATEWAY_URL")]
    pub node_gateway_url: Option<String>,
    /// Address of the API listener. Loopback by default; binding elsewhere exposes the API.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// Address of the HTTP gateway (routes, function URLs, WebSocket APIs).
    #[arg(long, env = "NIMBUS_GATEWAY_LISTEN", default_value = "127.0.0.1:8471")]
    pub gateway_listen: SocketAddr,
    /// Most WebSocket connections open at once on the gateway; further
    /// upgrades get 429.
    #[arg(long, default_value_t = nimbus_gateway::ws_server::DEFAULT_MAX_CONNECTIONS)]
    pub ws_max_connections: usize,
    /// Most WebSocket connections open at once from one client address.
    #[arg(long, default_value_t = nimbus_gateway::ws_server::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub ws_max_connections_per_ip: usize,
    /// A WebSocket connection with no frame either way for this long is
    /// closed (API Gateway's idle timeout).
    #[arg(long, default_value = "10m")]
    pub ws_idle_timeout: humantime::Duration,
    /// A WebSocket connection open this long is closed (API Gateway's
    /// maximum connection duration).
    #[arg(long, default_value = "2h")]
    pub ws_max_lifetime: humantime::Duration,
    /// Serve --listen and --gateway-listen in cleartext on an address other
    /// than loopback: access keys and payloads then cross the network readable
    /// by anyone on the path. Without it such an address is refused.
    #[arg(long, env = "NIMBUS_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// Time a client has to send a request head on the API and gateway
    /// listeners; also how long an idle keep-alive connection stays open.
    #[arg(long, default_value = "30s")]
    pub header_timeout: humantime::Duration,
    /// Time a client has to send a whole request body.
    #[arg(long, default_value = "10m")]
    pub body_timeout: humantime::Duration,
    /// Slowest a request body may arrive, in bytes per second, judged over
    /// --body-rate-window; a slower body is cut (408).
    #[arg(long, default_value_t = 1024)]
    pub body_min_rate: u64,
    /// The window --body-min-rate is judged over.
    #[arg(long, default_value = "10s")]
    pub body_rate_window: humantime::Duration,
    /// Largest request head (request line and headers) on the API and gateway
    /// listeners, in bytes (431 past it).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Most header lines in a request head.
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// Most open connections on each of the API and gateway listeners; more
    /// are closed at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most open connections from one client address on each listener.
    #[arg(long, default_value_t = 1_000)]
    pub max_connections_per_ip: usize,
    /// Time an instance's runtime has, beyond its function's timeout, to send
    /// a request head to the Runtime API (the connection that brought an event
    /// is idle while the handler runs; a spare's is idle while it imports its
    /// handler, so keep this above the 10 s init limit).
    #[arg(long, default_value = "30s")]
    pub runtime_api_header_timeout: humantime::Duration,
    /// Scratch directory for unpacked code and instance /tmp areas
    /// (default: a private directory under /tmp).
    #[arg(long, env = "NIMBUS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Region reported in ARNs and given to functions.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Account id used in ARNs.
    #[arg(long, env = "NIMBUS_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// How long an idle instance stays warm.
    #[arg(long, env = "NIMBUS_KEEP_ALIVE", default_value = "5m")]
    pub keep_alive: humantime::Duration,
    /// How long idle instances live: `fixed` (--keep-alive for every function) or
    /// `hybrid` (learns each function's idle times, after "Serverless in the Wild";
    /// --keep-alive is its fallback).
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "hybrid"])]
    pub keep_alive_policy: String,
    /// Width of the hybrid policy's idle-time histogram bins (240 of them);
    /// the paper uses one minute.
    #[arg(long, default_value = "1m", hide = true)]
    pub keep_alive_bin: humantime::Duration,
    /// Spare instances kept started per runtime (and, for Node, memory size) once
    /// one was needed, so that cold starts skip starting the interpreter; they
    /// stop after --keep-alive without a cold start of their kind. 0 disables.
    #[arg(long, env = "NIMBUS_SPARE_INSTANCES", default_value_t = 1)]
    pub spare_instances: usize,
    /// Most concurrent instances of one function.
    #[arg(long, default_value_t = 64)]
    pub max_instances_per_function: usize,
    /// Most concurrent invocations in total.
    #[arg(long, default_value_t = 1000)]
    pub account_concurrency: usize,
    /// New instances a function may start per second (the scale-out rate), so a
    /// burst of calls cannot fork-bomb the machine.
    #[arg(long, default_value_t = 50.0)]
    pub scale_out_rate: f64,
    /// New instances a function may start at once before the rate applies.
    #[arg(long, default_value_t = 50.0)]
    pub scale_out_burst: f64,
    /// Busy instances of one function before a new call may wait for one of them
    /// to finish instead of starting another: it waits when, by the function's
    /// measured durations, that is quicker than a cold start (default: 4 per CPU;
    /// a number above --max-instances-per-function starts an instance for every
    /// concurrent call, as Lambda does).
    #[arg(long)]
    pub queue_after_instances: Option<usize>,
    /// Invocations after which an instance is replaced by a fresh one (as
    /// gunicorn's max_requests), so that slow leaks in a runtime or a handler
    /// never end in an out-of-memory kill under sustained load; 0 never replaces
    #[arg(long, default_value_t = nimbus_engine::scheduler::DEFAULT_MAX_USES)]
    pub max_invocations_per_instance: u64,
    /// How long a synchronous call waits for a free instance before a 429.
    #[arg(long, default_value = "2s")]
    pub queue_wait: humantime::Duration,
    /// Python interpreter for python3 functions (default: /usr/bin/python3 if
    /// present, else python3 on PATH, resolved to the real binary).
    #[arg(long, env = "NIMBUS_PYTHON")]
    pub python: Option<String>,
    /// Directories every Python function can import from after its own code,
    /// as Lambda's runtime provides boto3: e.g. a virtualenv's site-packages
    /// holding boto3 (colon-separated, or repeat the flag).
    #[arg(long, env = "NIMBUS_PYTHON_PATH", value_delimiter = ':')]
    pub python_path: Vec<PathBuf>,
    /// Node.js for nodejs functions (default: node on PATH, resolved).
    #[arg(long, env = "NIMBUS_NODE", default_value = "node")]
    pub node: String,
    /// Who instances run as when Nimbus runs as root: `isolated` gives every
    /// instance a uid of its own (from --sandbox-uid-base); a user name or uid runs
    /// them all as that user; `root` keeps root (not recommended).
    #[arg(long, env = "NIMBUS_SANDBOX_USER", default_value = "isolated")]
    pub sandbox_user: String,
    /// Where the search for a free block of uids for `--sandbox-user isolated`
    /// starts; a block held by another server on this host, or overlapping
    /// /etc/subuid or /etc/subgid, is skipped.
    #[arg(long, default_value_t = 2_000_000)]
    pub sandbox_uid_base: u32,
    /// Uids per block (tests use small blocks to show uids are never shared).
    #[arg(long, default_value_t = 65_536, hide = true)]
    pub sandbox_uid_span: u32,
    /// `default`: namespaces, a private root, seccomp; where the kernel lacks a
    /// feature, start anyway and name the guarantee lost. `strict`: refuse to
    /// start instead. `off`: a measurement switch for the benchmark of the
    /// sandbox's cost (cgroups, rlimits and uids only); never in production.
    #[arg(long, env = "NIMBUS_SANDBOX", default_value = "default", value_parser = ["default", "strict", "off"])]
    pub sandbox: String,
    /// CPU per GB of function memory, in CPUs, enforced as a CFS quota after
    /// initialisation (Lambda: one vCPU at 1,769 MB, 0.579 per GB); `off`: no quota.
    #[arg(long, env = "NIMBUS_CPU_PER_GB", default_value = "0.579")]
    pub cpu_per_gb: String,
    /// An instance idle this long is frozen until its next invocation (as Lambda
    /// freezes execution environments); `off`: never.
    #[arg(long, env = "NIMBUS_FREEZE_AFTER", default_value = "100ms")]
    pub freeze_after: String,
    /// Processes plus threads allowed per instance.
    #[arg(long, default_value_t = 256)]
    pub max_pids: u32,
    /// How long function logs are kept.
    #[arg(long, default_value = "7d")]
    pub log_retention: humantime::Duration,
    /// Deprecated: retention counts bytes now (--log-function-bytes,
    /// --log-total-bytes); accepted and ignored with a warning.
    #[arg(long, hide = true)]
    pub log_max_lines: Option<i64>,
    /// Async worker threads of the server (default: one per CPU). Instances are
    /// separate processes, so the server itself needs few.
    #[arg(long, env = "NIMBUS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Delay before the first retry of a failed asynchronous invocation; each
    /// further retry doubles it (Lambda waits 1 minute, then 2).
    #[arg(long, default_value = "60s")]
    pub async_retry_delay: humantime::Duration,
    /// Asynchronous invocations run at the same time.
    #[arg(long, default_value_t = 32)]
    pub async_workers: usize,
    /// Most workflow executions running at once; past it StartExecution is
    /// refused with ExecutionLimitExceeded (Step Functions: 1,000,000 open
    /// executions per account). Each is held in memory and resumed at startup.
    #[arg(long, default_value_t = 100_000)]
    pub max_running_executions: usize,
    /// History events after which a workflow execution fails with
    /// States.Runtime (Step Functions: 25,000).
    #[arg(long, default_value_t = 25_000)]
    pub max_history_events: u64,
    /// A clock for schedules that `POST /v1/debug/clock` can move forward (tests
    /// and demos of schedules; never in production).
    #[arg(long, hide = true)]
    pub test_clock: bool,
    /// Start the test clock this far ahead of the real time (implies
    /// --test-clock; a test restarting the server continues its clock).
    #[arg(long, hide = true)]
    pub test_clock_offset: Option<humantime::Duration>,
    /// Relay no S3 notification until this long after starting (tests of a
    /// crash between an acknowledged write and its delivery).
    #[arg(long, default_value = "0s", hide = true)]
    pub s3_relay_hold: humantime::Duration,
    /// Development mode: accept unsigned AWS API requests. Never on a shared machine.
    #[arg(long, env = "NIMBUS_DEV")]
    pub dev: bool,
    /// How long shutdown waits for running invocations.
    #[arg(long, default_value = "30s")]
    pub shutdown_grace: humantime::Duration,

    // Log byte quotas and memory admission (sizes: 512k, 64m, 4g; binary units).
    /// Most bytes of stored log lines per function (with 48 bytes of overhead
    /// per line); past it a function loses its own oldest lines.
    #[arg(long, env = "NIMBUS_LOG_FUNCTION_BYTES", default_value = "64m", value_parser = parse_size)]
    pub log_function_bytes: u64,
    /// Most bytes of stored log lines in total; past it the largest consumers
    /// lose their oldest lines first.
    #[arg(long, env = "NIMBUS_LOG_TOTAL_BYTES", default_value = "1g", value_parser = parse_size)]
    pub log_total_bytes: u64,
    /// Free space kept on the data directory's filesystem: below it, function
    /// output is dropped (counted in /metrics) instead of written, so logs
    /// never take the last bytes deploys and acknowledged messages need.
    #[arg(long, env = "NIMBUS_LOG_MIN_FREE_DISK", default_value = "256m", value_parser = parse_size)]
    pub log_min_free_disk: u64,
    /// Most metering records (one per invocation, behind `nimbus usage` and
    /// `nimbus cost`) kept; the oldest go first (about 150 bytes each on disk).
    #[arg(long, env = "NIMBUS_USAGE_MAX_RECORDS", default_value_t = 2_000_000)]
    pub usage_max_records: u64,
    /// Most bytes of log lines waiting to be stored (64 bytes of overhead per
    /// line); one function may hold a quarter of it, past which its lines are
    /// dropped and counted in /metrics.
    #[arg(long, default_value = "64m", value_parser = parse_size)]
    pub log_queue_bytes: u64,
    /// Most memory all instances together may commit (the sum of their
    /// functions' memory sizes; default: the host's memory less a tenth, at
    /// least 1g). A start beyond it evicts idle instances, else waits up to
    /// --queue-wait, then is refused with TooManyRequests.
    #[arg(long, env = "NIMBUS_MEMORY_BUDGET", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
}

/// Parses a size: a number of bytes, or with a binary unit `k`, `m`, `g`, `t`
/// (`kb`/`kib` and so on too, any case): `512m` is 512 MiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 512m or 4g)"))?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use k, m, g or t)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Everything prepared on disk, plus the lock that keeps a second server out.
pub struct HostConfig {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    /// The run dir was chosen by us (under /tmp) and is removed on shutdown.
    run_dir_is_ours: bool,
    pub runtime: ProcessRuntimeConfig,
    /// Sandbox guarantees this host cannot give, said at startup.
    pub lost: Vec<String>,
    _lock: fs::File,
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("nimbus");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/nimbus")
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", p.display()))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates (or re-uses) a directory only if it is really ours: a plain directory
/// (not a symlink), owned by us, writable by nobody else. The default run directory
/// lives in the shared /tmp, where another user could plant one in advance.
fn prepare_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create run dir {}", dir.display()));
        }
    }
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.file_type().is_dir() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
        bail!(
            "refusing to use run dir {}: it must be a directory owned by uid {} and writable only by it (remove it, or choose another with --run-dir)",
            dir.display(),
            euid()
        );
    }
    set_mode(dir, 0o711)
}

fn lookup_user(name: &str) -> anyhow::Result<SandboxUser> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok(SandboxUser {
                uid: f[2].parse()?,
                gid: f[3].parse()?,
            });
        }
    }
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(SandboxUser { uid, gid: uid });
    }
    bail!("sandbox user {name:?} does not exist (see --sandbox-user)")
}

impl HostConfig {
    pub fn prepare(args: &ServerArgs) -> anyhow::Result<Self> {
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        set_mode(&data_dir, 0o700)?;
        let data_dir = fs::canonicalize(&data_dir)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("nimbus.lock"))?;
        // A POSIX record lock, not flock(2): it belongs to this process, so it
        // is released the moment the server dies, even while a child forked
        // from it (a keeper, a runtime between fork and exec) still shares the
        // descriptor. With flock such a child held the lock for a few
        // milliseconds after a SIGKILL, and an immediate restart was refused.
        // SAFETY: an all-zero flock struct is valid (l_start = l_len = 0: the
        // whole file).
        let mut whole_file: libc::flock = unsafe { std::mem::zeroed() };
        whole_file.l_type = libc::F_WRLCK as _;
        whole_file.l_whence = libc::SEEK_SET as _;
        // SAFETY: fcntl(F_SETLK) on an fd we own, with a valid flock struct.
        if unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETLK, &whole_file) } != 0 {
            bail!(
                "another nimbus is already running on {}",
                data_dir.display()
            );
        }

        let root = euid() == 0;
        let run_dir = match &args.run_dir {
            Some(d) => d.clone(),
            None => {
                use sha2::Digest;
                let h = hex::encode(sha2::Sha256::digest(
                    data_dir.as_os_str().as_encoded_bytes(),
                ));
                std::env::temp_dir().join(format!("nimbus-{}-{}", euid(), &h[..12]))
            }
        };
        prepare_private_dir(&run_dir)?;
        // Leftovers of a previous run (instances are never reused across runs).
        let _ = fs::remove_dir_all(run_dir.join("instances"));
        for sub in ["instances", "code"] {
            fs::create_dir_all(run_dir.join(sub))?;
            set_mode(&run_dir.join(sub), 0o711)?;
        }
        // Code trees an interrupted unpack left behind (whole trees are fsynced
        // before they get their name, so named ones are trusted).
        nimbus_store::CodeCache::sweep_unpacked(&run_dir.join("code"));
        let bootstraps = nimbus_runtime::bootstraps::install(&run_dir.join("runtime"))
            .context("cannot install the runtime bootstraps")?;

        let python_cmd = args.python.clone().unwrap_or_else(|| {
            if Path::new("/usr/bin/python3").exists() {
                "/usr/bin/python3".into()
            } else {
                "python3".into()
            }
        });
        let python =
            nimbus_runtime::Interpreter::resolve_python(&python_cmd).with_context(|| {
                format!("cannot run the Python interpreter {python_cmd:?} (set --python)")
            })?;
        if let Err(e) = bootstraps.precompile_python(&python.path) {
            tracing::warn!("python cold starts will be slower: {e}");
        }
        let node = nimbus_runtime::Interpreter::resolve_node(&args.node)
            .with_context(|| format!("cannot run Node.js {:?} (set --node)", args.node))?;

        let users = match args.sandbox_user.as_str() {
            _ if !root => UserPolicy::Inherit,
            "root" => UserPolicy::Inherit,
            "isolated" => UserPolicy::PerInstance(
                UidPool::lock_block(args.sandbox_uid_base, args.sandbox_uid_span)
                    .context("cannot reserve a block of sandbox uids")?,
            ),
            name => UserPolicy::Fixed(lookup_user(name)?),
        };
        let tag = format!("nimbus-{}", std::process::id());
        let cgroups = CgroupSupport::detect(&tag);
        cgroups.sweep_stale();
        let cpu_per_gb = match args.cpu_per_gb.as_str() {
            "off" | "none" => None,
            v => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0 && x.is_finite())
                    .with_context(|| format!("--cpu-per-gb {v:?}: a positive number or off"))?,
            ),
        };
        let freeze_after = match args.freeze_after.as_str() {
            "off" | "never" => None,
            v => Some(
                v.parse::<humantime::Duration>()
                    .with_context(|| format!("--freeze-after {v:?}: a duration or off"))?
                    .into(),
            ),
        };
        // What instances see besides the system (the bootstraps are shown at
        // /var/runtime, one runtime's each).
        let mut runtime_dirs: Vec<PathBuf> = Vec::new();
        for exe in [&python.path, &node.path] {
            // The interpreter's installation (bin/.. of its real path).
            if let Ok(real) = fs::canonicalize(exe)
                && let Some(prefix) = real.parent().and_then(Path::parent)
            {
                runtime_dirs.push(prefix.to_path_buf());
            }
        }
        runtime_dirs.extend(args.python_path.iter().cloned());
        let requested = match args.sandbox.as_str() {
            "off" => Isolation::Off,
            _ => Isolation::Namespaces,
        };
        let mut sandbox = Sandbox::new(requested, &runtime_dirs, &run_dir.join("code"))
            .map_err(|e| anyhow::anyhow!("cannot prepare the sandbox: {e}"))?;
        let mut lost = Vec::new();
        if sandbox.namespaces()
            && let Err(e) = nimbus_runtime::sandbox::probe(&sandbox, &run_dir.join("probe"))
        {
            if args.sandbox == "strict" {
                bail!("--sandbox strict: the kernel cannot give instances their namespaces: {e}");
            }
            lost.push(format!(
                "namespaces ({e}): instances share the host's processes, /tmp, /dev/shm and file system view"
            ));
            sandbox.isolation = Isolation::Off;
        }
        if !cgroups.is_available() {
            lost.push("cgroups: memory is policed by sampling, no CPU quota, idle instances are not frozen".into());
        } else {
            let controllers = cgroups.controllers();
            if cpu_per_gb.is_some() && !controllers.contains(&"cpu") {
                lost.push("the cpu cgroup controller: no CPU quota".into());
            }
            if freeze_after.is_some() && !controllers.contains(&"freezer") {
                lost.push("the freezer: idle instances are not frozen".into());
            }
        }
        if !root {
            lost.push(
                "per-instance host uids (not root): instances share the server's uid, separated by their user, PID and mount namespaces".into(),
            );
        }
        let link_local = if !root {
            Err("not root".to_string())
        } else {
            let v2 = match &cgroups {
                CgroupSupport::V2 { base } => Some(base.as_path()),
                _ => None,
            };
            nimbus_runtime::sandbox::netfilter::LinkLocalFilter::install(v2, &tag)
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string())
        };
        let link_local = match link_local {
            Ok(f) => Some(f),
            Err(e) => {
                lost.push(format!(
                    "link-local addresses (169.254.0.0/16, fe80::/10) are reachable ({e}): give functions that need no network network = \"none\""
                ));
                None
            }
        };
        if args.sandbox == "strict" && !lost.is_empty() {
            bail!(
                "--sandbox strict: guarantees this host cannot give: {}",
                lost.join("; ")
            );
        }
        Ok(Self {
            runtime: ProcessRuntimeConfig {
                run_dir: run_dir.clone(),
                python,
                node,
                bootstraps,
                cgroups,
                users: std::sync::Arc::new(users),
                max_pids: args.max_pids,
                max_open_files: 1024,
                max_file_bytes: 512 * 1024 * 1024,
                init_limit: Duration::from_secs(10),
                python_path: args.python_path.clone(),
                sandbox,
                link_local,
                cpu_per_gb,
                freeze_after,
                spares: args.spare_instances,
                spare_idle: args.keep_alive.into(),
            },
            data_dir,
            run_dir,
            lost,
            run_dir_is_ours: args.run_dir.is_none(),
            _lock: lock,
        })
    }

    /// Prints where the server listens and how it is set up.
    pub fn announce(&self, api: SocketAddr, gateway: SocketAddr, functions: usize) {
        let cgroups = match &self.runtime.cgroups {
            CgroupSupport::V2 { .. } => format!(
                "cgroup v2 ({})",
                self.runtime.cgroups.controllers().join(", ")
            ),
            CgroupSupport::V1 { .. } => format!(
                "cgroup v1 ({})",
                self.runtime.cgroups.controllers().join(", ")
            ),
            CgroupSupport::None { reason } => format!("no cgroups ({reason})"),
        };
        let isolation = match (
            self.runtime.sandbox.isolation,
            self.runtime.sandbox.rootless,
        ) {
            (Isolation::Namespaces, false) => "namespaces, private root, seccomp",
            (Isolation::Namespaces, true) => "user namespaces (rootless), private root, seccomp",
            (Isolation::Off, _) => "OFF (no namespaces, no seccomp)",
        };
        let sandbox = format!("{isolation}; {cgroups}");
        let user = self.runtime.users.describe();
        for lost in &self.lost {
            tracing::warn!("sandbox guarantee lost on this host: {lost}");
        }
        if matches!(*self.runtime.users, UserPolicy::Inherit) && euid() == 0 {
            tracing::warn!(
                "instances run as root (--sandbox-user root); functions can harm the host"
            );
        }
        println!("nimbus {} ready", env!("CARGO_PKG_VERSION"));
        println!("  API:       http://{api}");
        println!("  Gateway:   http://{gateway}");
        println!("  data dir:  {}", self.data_dir.display());
        println!("  functions: {functions}");
        println!("  sandbox:   {sandbox}, instances run as {user}");
        println!(
            "  python:    {} ({})",
            self.runtime.python.path.display(),
            self.runtime.python.version
        );
        println!(
            "  node:      {} (v{})",
            self.runtime.node.path.display(),
            self.runtime.node.version
        );
    }

    /// The last line of the start-up banner: what to do next.
    pub fn hint(&self) {
        println!(
            "try: nimbus deploy examples/hello-python && nimbus invoke hello-python --data '{{\"name\":\"Ada\"}}'"
        );
    }

    /// Removes the cgroups and scratch areas of this run.
    pub fn cleanup(&self) {
        let _ = fs::remove_dir_all(self.run_dir.join("instances"));
        if let Some(f) = &self.runtime.link_local {
            f.remove();
        }
        if self.run_dir_is_ours {
            // Scratch only (unpacked code, bootstraps): rebuilt at the next start.
            let _ = fs::remove_dir_all(&self.run_dir);
        }
        for dir in self.runtime.cgroups.server_groups() {
            let _ = fs::remove_dir(dir);
        }
    }
}

impl ServerArgs {
    /// The bounds of the API and gateway listeners.
    pub fn listener_limits(&self) -> nimbus_runtime::listener::Limits {
        nimbus_runtime::listener::Limits {
            header_read_timeout: self.header_timeout.into(),
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            body_timeout: self.body_timeout.into(),
            body_min_rate: self.body_min_rate,
            body_rate_window: self.body_rate_window.into(),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }

    /// Refuses to serve access keys in cleartext beyond this host unless the
    /// operator said so: the native API's bearer token is the secret itself,
    /// and SigV4 requests can be replayed for 15 minutes by whoever sees them.
    pub fn check_plaintext(&self) -> anyhow::Result<()> {
        if self.insecure_plaintext {
            return Ok(());
        }
        for (flag, addr) in [
            ("--listen", self.listen),
            ("--gateway-listen", self.gateway_listen),
        ] {
            if !addr.ip().is_loopback() {
                bail!(
                    "refusing to serve {flag} {addr} in plaintext: it is not a loopback address, so \
                     access keys and payloads would cross the network unencrypted. Put a TLS-terminating \
                     proxy in front and listen on loopback, or pass --insecure-plaintext to accept the risk"
                );
            }
        }
        Ok(())
    }
}
