//! The process runtime: starting, driving and stopping one instance.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_core::{Runtime, platform_error};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use crate::bootstraps::InstalledBootstraps;
use crate::log_pipe::{LogLine, LogPipe};
use crate::runtime_api::{ApiEvent, RuntimeApiServer};
use crate::sandbox::plan::{self, RUNTIME_DIR, SOCKET_DIR, TASK_ROOT};
use crate::sandbox::{
    CgroupSupport, ChildLimits, ChildPlan, INSIDE_GID, INSIDE_UID, IdMaps, InstanceCgroup,
    NamespacePlan, Sandbox, Staging, UserPolicy, enter, kill_group,
};
use crate::spare::{self, SparePool};
use crate::spec::{Dispatch, InstanceSpec, InvokeResult, Outcome, error_doc, error_type_of};
use crate::{Instance, InstanceFactory, StartError};

/// How the host runs process instances.
#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// Instance working directories are created under `<run_dir>/instances`.
    pub run_dir: PathBuf,
    pub python: Interpreter,
    pub node: Interpreter,
    pub bootstraps: InstalledBootstraps,
    pub cgroups: CgroupSupport,
    /// Which users instances run as.
    pub users: Arc<UserPolicy>,
    /// Processes and threads per instance.
    pub max_pids: u32,
    pub max_open_files: u64,
    /// Largest single file an instance may write (its /tmp area).
    pub max_file_bytes: u64,
    /// On-demand init budget before "suppressed init" (Lambda: 10 s).
    pub init_limit: Duration,
    /// Libraries every Python function can import after its own (the place of
    /// Lambda's `/var/runtime`, which holds boto3), e.g. a site-packages.
    pub python_path: Vec<PathBuf>,
    /// Namespaces, private root, seccomp (see [`crate::sandbox`]).
    pub sandbox: Sandbox,
    /// The cgroup-BPF filter keeping instances off link-local addresses
    /// (root with cgroup v2 only).
    pub link_local: Option<Arc<crate::sandbox::netfilter::LinkLocalFilter>>,
    /// Freeze an instance once it has been idle this long (`None`: never).
    pub freeze_after: Option<Duration>,
    /// CPU time per GB of memory, in CPUs (Lambda: one vCPU at 1,769 MB, so
    /// 0.579); `None`: no CPU limit.
    pub cpu_per_gb: Option<f64>,
    /// Spare instances kept started per runtime shape (0: none); see `spare`.
    pub spares: usize,
    /// A shape's spares are stopped when no instance of it was started for this long.
    pub spare_idle: Duration,
}

/// A resolved interpreter: the real binary (never a version-manager shim) and its version.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub path: PathBuf,
    pub version: String,
}

impl Interpreter {
    /// Asks `command` for its real executable and `major.minor` (or major) version.
    pub fn resolve_python(command: &str) -> std::io::Result<Self> {
        Self::ask(
            command,
            &[
                "-c",
                "import sys;print(sys.executable);print('%d.%d'%sys.version_info[:2])",
            ],
        )
    }

    pub fn resolve_node(command: &str) -> std::io::Result<Self> {
        Self::ask(
            command,
            &[
                "-p",
                "process.execPath+'\\n'+process.versions.node.split('.')[0]",
            ],
        )
    }

    fn ask(command: &str, args: &[&str]) -> std::io::Result<Self> {
        #[allow(
            clippy::disallowed_methods,
            reason = "asks the interpreter for its path and version"
        )]
        let out = std::process::Command::new(command)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "{command} exited with {}",
                out.status
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let (Some(path), Some(version)) = (lines.next(), lines.next()) else {
            return Err(std::io::Error::other(format!(
                "{command} printed no version"
            )));
        };
        Ok(Self {
            path: path.trim().into(),
            version: version.trim().into(),
        })
    }
}

/// Starts process instances.
pub struct ProcessFactory {
    inner: Arc<Launcher>,
}

/// What starting a process needs; shared with the tasks that start spares.
pub(crate) struct Launcher {
    pub(crate) config: ProcessRuntimeConfig,
    pub(crate) spares: SparePool,
}

impl ProcessFactory {
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        Self {
            inner: Arc::new(Launcher {
                config,
                spares: SparePool::default(),
            }),
        }
    }

    pub fn config(&self) -> &ProcessRuntimeConfig {
        &self.inner.config
    }
}

/// The interpreter command line of an instance: (program, arguments, runtime
/// directory, `AWS_EXECUTION_ENV`). Node's depends on the memory size.
pub(crate) fn command(
    c: &ProcessRuntimeConfig,
    spec: &InstanceSpec,
) -> (PathBuf, Vec<String>, PathBuf, Option<String>) {
    // Sandboxed, the runtime's bootstrap directory is `/var/runtime`, as on Lambda.
    let inside = |host: &Path, file: PathBuf| -> (PathBuf, PathBuf) {
        if c.sandbox.namespaces() {
            let dir = PathBuf::from(RUNTIME_DIR);
            let file = dir.join(file.file_name().unwrap_or_default());
            (dir, file)
        } else {
            (host.to_path_buf(), file)
        }
    };
    match spec.runtime {
        Runtime::Python3 => {
            let (dir, file) = inside(&c.bootstraps.python_dir, c.bootstraps.python_file());
            (
                c.python.path.clone(),
                vec!["-s".into(), file.display().to_string()],
                dir,
                Some(format!("AWS_Lambda_python{}", c.python.version)),
            )
        }
        Runtime::Nodejs => {
            let (dir, file) = inside(&c.bootstraps.node_dir, c.bootstraps.node_file());
            (
                c.node.path.clone(),
                vec![
                    format!("--max-old-space-size={}", node_heap_mb(spec.memory_mb)),
                    file.display().to_string(),
                ],
                dir,
                Some(format!("AWS_Lambda_nodejs{}.x", c.node.version)),
            )
        }
        Runtime::Provided => {
            let root = task_root(c, spec);
            (root.join("bootstrap"), vec![], root, None)
        }
    }
}

/// Where an instance finds its code: `/var/task` in the sandbox (as on
/// Lambda), the code cache's directory without it.
pub(crate) fn task_root(c: &ProcessRuntimeConfig, spec: &InstanceSpec) -> PathBuf {
    if c.sandbox.namespaces() {
        PathBuf::from(TASK_ROOT)
    } else {
        spec.code_dir.clone()
    }
}

/// The paths of one instance as the server sees them and as it sees them.
pub(crate) struct InstancePaths {
    /// `LAMBDA_TASK_ROOT`.
    pub task_root: PathBuf,
    /// `TMPDIR` and `HOME`.
    pub tmp: PathBuf,
    /// The Runtime API socket: where the server binds it, and where the instance
    /// connects to it.
    pub socket_host: PathBuf,
    pub socket_inside: PathBuf,
}

impl InstancePaths {
    pub(crate) fn new(sandboxed: bool, workdir: &Path, spec: &InstanceSpec) -> Self {
        if sandboxed {
            Self {
                task_root: TASK_ROOT.into(),
                tmp: "/tmp".into(),
                socket_host: workdir.join("rt").join("api.sock"),
                socket_inside: Path::new(SOCKET_DIR).join("api.sock"),
            }
        } else {
            Self {
                task_root: spec.code_dir.clone(),
                tmp: workdir.join("tmp"),
                socket_host: workdir.join("api.sock"),
                socket_inside: workdir.join("api.sock"),
            }
        }
    }
}

/// The CFS quota of an instance: `memory × cpu_per_gb`, in CPUs.
pub(crate) fn cpu_quota(memory_mb: u32, cpu_per_gb: Option<f64>) -> Option<f64> {
    cpu_per_gb.map(|per_gb| (memory_mb as f64 / 1024.0 * per_gb).max(0.01))
}

/// V8 sizes its heap from the machine, not the cgroup; keep it inside the
/// function's memory so it collects garbage before the OOM killer acts.
pub(crate) fn node_heap_mb(memory_mb: u32) -> u64 {
    (memory_mb as u64 * 85 / 100).max(64)
}

pub(crate) fn environment(
    spec: &InstanceSpec,
    instance: &str,
    api: &RuntimeApiServer,
    runtime_dir: &Path,
    exec_env: Option<String>,
    paths: &InstancePaths,
    python_path: &[PathBuf],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = spec.environment.clone();
    let date = chrono::Utc::now().format("%Y/%m/%d");
    let reserved = [
        ("AWS_LAMBDA_RUNTIME_API", api.addr.to_string()),
        ("_HANDLER", spec.handler.clone()),
        ("LAMBDA_TASK_ROOT", paths.task_root.display().to_string()),
        ("LAMBDA_RUNTIME_DIR", runtime_dir.display().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.function.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.function),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("{date}/[{}]{instance}", spec.version),
        ),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            spec.initialization_type.to_string(),
        ),
        ("AWS_REGION", spec.region.clone()),
        ("AWS_DEFAULT_REGION", spec.region.clone()),
    ];
    for (k, v) in reserved {
        env.insert(k.to_string(), v);
    }
    if let Some(e) = exec_env {
        env.insert("AWS_EXECUTION_ENV".into(), e);
    }
    if !spec.handler_style.is_aws() {
        env.insert(
            "NIMBUS_HANDLER_STYLE".into(),
            spec.handler_style.as_str().into(),
        );
    } else {
        env.remove("NIMBUS_HANDLER_STYLE");
    }
    process_environment(&mut env, spec.runtime, paths, api);
    env.entry("LD_LIBRARY_PATH".into())
        .or_insert_with(|| format!("{0}:{0}/lib", paths.task_root.display()));
    if spec.runtime == Runtime::Python3 && !python_path.is_empty() {
        let joined = std::env::join_paths(python_path).unwrap_or_default();
        env.insert(
            "NIMBUS_RUNTIME_PYTHONPATH".into(),
            joined.to_string_lossy().into_owned(),
        );
    }
    env
}

/// What every instance's environment holds whatever its function: the
/// variables its process reads as it starts (so a spare starts with exactly
/// those a fresh instance of its runtime gets) and defaults users may override.
pub(crate) fn process_environment(
    env: &mut BTreeMap<String, String>,
    runtime: Runtime,
    paths: &InstancePaths,
    api: &RuntimeApiServer,
) {
    // Read (and removed from the environment) by Nimbus's own bootstraps.
    match &api.socket {
        Some(_) => env.insert(
            "NIMBUS_RUNTIME_API_SOCKET".into(),
            paths.socket_inside.display().to_string(),
        ),
        None => env.remove("NIMBUS_RUNTIME_API_SOCKET"),
    };
    let tmp = &paths.tmp;
    env.insert("TZ".into(), ":UTC".into());
    env.entry("LANG".into())
        .or_insert_with(|| "en_US.UTF-8".into());
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("TMPDIR".into(), tmp.display().to_string());
    env.insert("HOME".into(), tmp.display().to_string());
    if runtime == Runtime::Python3 {
        // Output must reach the pipe before the result is posted (see log_pipe).
        env.insert("PYTHONUNBUFFERED".into(), "1".into());
        env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    }
}

#[async_trait]
impl InstanceFactory for ProcessFactory {
    async fn start(
        &self,
        spec: Arc<InstanceSpec>,
        logs: mpsc::Sender<LogLine>,
    ) -> Result<Box<dyn Instance>, StartError> {
        if let Some(spare) = spare::take(&self.inner, &spec, &logs).await {
            return Ok(Box::new(spare));
        }
        Ok(Box::new(self.inner.launch(spec, logs, None).await?))
    }

    async fn shutdown(&self) {
        for spare in self.inner.spares.drain() {
            Box::new(spare).shutdown().await;
        }
    }
}

impl ProcessFactory {
    /// Spare instances ready now.
    pub fn spares_ready(&self) -> usize {
        self.inner.spares.ready()
    }
}

impl Launcher {
    /// Starts a process for `spec`; with `assignment`, a spare that waits for
    /// its function (its `spec` is a placeholder until `assign`).
    pub(crate) async fn launch(
        &self,
        spec: Arc<InstanceSpec>,
        logs: mpsc::Sender<LogLine>,
        assignment: Option<(oneshot::Sender<Bytes>, oneshot::Receiver<Bytes>)>,
    ) -> Result<ProcessInstance, StartError> {
        let c = &self.config;
        let (assign_tx, assign_rx) = match assignment {
            Some((tx, rx)) => (Some(tx), Some(rx)),
            None => (None, None),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let workdir = c.run_dir.join("instances").join(&id);
        let sandboxed = c.sandbox.namespaces();
        let (user, uid_lease) = match c.users.next_user().map_err(StartError::Sandbox)? {
            Some((u, lease)) => (Some(u), lease),
            None => (None, None),
        };
        let paths = InstancePaths::new(sandboxed, &workdir, &spec);
        let workdir_err = |e| StartError::Workdir {
            path: workdir.display().to_string(),
            source: e,
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&workdir).map_err(workdir_err)?;
            // The instance directory only needs to be traversable by the instance.
            std::fs::set_permissions(&workdir, std::fs::Permissions::from_mode(0o711))
                .map_err(workdir_err)?;
            if sandboxed {
                // Mount points of the private root, the spare's code staging
                // point, and the directory of the Runtime API socket.
                for d in ["root", "task", "rt"] {
                    std::fs::create_dir(workdir.join(d)).map_err(workdir_err)?;
                }
                // The socket's own mode and owner admit the instance alone.
                std::fs::set_permissions(
                    workdir.join("rt"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .map_err(workdir_err)?;
            } else {
                let tmp = workdir.join("tmp");
                std::fs::create_dir(&tmp).map_err(workdir_err)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
                    .map_err(workdir_err)?;
                if let Some(u) = user {
                    std::os::unix::fs::chown(&tmp, Some(u.uid), Some(u.gid))
                        .map_err(workdir_err)?;
                }
            }
        }

        // Whatever fails from here on, the instance's directory and cgroup go with it.
        let mut guard = StartGuard {
            workdir: Some(workdir.clone()),
            cgroup: None,
        };
        let (next_tx, next_rx) = mpsc::channel(1);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // Who may connect to the Runtime API over TCP: the instance's uid, or
        // (instances running as the server's user) the server's own uid, so no
        // other local user can take an instance's invocations.
        let owner = user.map(|u| u.uid).unwrap_or(c.sandbox.server_ids.0);
        let server = RuntimeApiServer::start(
            next_rx,
            events_tx,
            spec.timeout,
            Some(owner),
            assign_rx,
            matches!(spec.runtime, Runtime::Python3 | Runtime::Nodejs)
                .then_some(paths.socket_host.as_path()),
            // Instances sharing the server's uid are told apart by process.
            user.is_none(),
        )
        .await
        .map_err(StartError::RuntimeApi)?;
        let (pipe, write_end) =
            LogPipe::new(spec.function.as_str().into(), id.as_str().into(), logs)
                .map_err(StartError::Pipe)?;

        guard.cgroup = c
            .cgroups
            .create(&id, spec.memory_mb as u64 * 1024 * 1024, c.max_pids)
            .map_err(|e| StartError::Sandbox(format!("cgroup: {e}")))?;
        let mut cgroup_procs = match &guard.cgroup {
            Some(cg) => cg
                .open_procs()
                .map_err(|e| StartError::Sandbox(format!("cgroup: {e}")))?,
            None => Vec::new(),
        };
        if let Some(procs) = c.link_local.as_ref().and_then(|f| f.procs()) {
            cgroup_procs.push(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(procs)
                    .map_err(|e| StartError::Sandbox(format!("network filter cgroup: {e}")))?,
            );
        }

        let (program, args, runtime_dir, exec_env) = command(c, &spec);
        let spare = assign_tx.is_some();
        let (env, cwd) = if spare {
            let env = spare::environment(&spec, &server, &runtime_dir, &paths);
            (env, runtime_dir.clone())
        } else {
            let env = environment(
                &spec,
                &id,
                &server,
                &runtime_dir,
                exec_env,
                &paths,
                &c.python_path,
            );
            (env, paths.task_root.clone())
        };
        // A spare's code is mounted on assignment, through its keeper.
        let (stage_server, stage_child) = if sandboxed && spare {
            let (a, b) = std::os::unix::net::UnixStream::pair().map_err(StartError::Pipe)?;
            a.set_nonblocking(true).map_err(StartError::Pipe)?;
            let a = tokio::net::UnixStream::from_std(a).map_err(StartError::Pipe)?;
            (Some(a), Some(std::os::fd::OwnedFd::from(b)))
        } else {
            (None, None)
        };
        let namespaces = sandboxed.then(|| {
            let root = workdir.join("root");
            let (inside_uid, inside_gid) = match (c.sandbox.rootless, user) {
                (true, _) => (INSIDE_UID, INSIDE_GID),
                (false, Some(u)) => (u.uid, u.gid),
                (false, None) => (0, 0),
            };
            let ops = plan::build(
                &c.sandbox.view,
                &plan::InstanceView {
                    root: &root,
                    code: (!spare).then_some(spec.code_dir.as_path()),
                    socket_dir: &workdir.join("rt"),
                    runtime: match spec.runtime {
                        Runtime::Python3 => Some(c.bootstraps.python_dir.as_path()),
                        Runtime::Nodejs => Some(c.bootstraps.node_dir.as_path()),
                        Runtime::Provided => None,
                    },
                    tmp_mb: spec.ephemeral_storage_mb,
                    uid: inside_uid,
                    gid: inside_gid,
                },
            );
            let (root_c, put_old, task_in_root) = plan::pivot_paths(&root);
            let (uid, gid) = c.sandbox.server_ids;
            NamespacePlan {
                id_maps: c.sandbox.rootless.then(|| IdMaps {
                    uid_map: format!("{INSIDE_UID} {uid} 1\n").into_bytes(),
                    gid_map: format!("{INSIDE_GID} {gid} 1\n").into_bytes(),
                }),
                network_none: spec.network == nimbus_core::Network::None,
                staging: stage_child.map(|channel| Staging {
                    dir: plan::path_cstr(&workdir.join("task")),
                    channel,
                }),
                root: root_c,
                put_old,
                task_in_root,
                ops,
                cwd: plan::path_cstr(&cwd),
            }
        });
        let stderr = write_end.try_clone().map_err(StartError::Pipe)?;
        #[allow(
            clippy::disallowed_methods,
            reason = "the process runtime starts instances"
        )]
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(&env)
            // Sandboxed, the runtime changes into its directory after pivot_root.
            .current_dir(if sandboxed {
                Path::new("/")
            } else {
                cwd.as_path()
            })
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        let mut child_plan = ChildPlan {
            cgroup_procs,
            limits: ChildLimits {
                max_open_files: c.max_open_files,
                max_file_bytes: c.max_file_bytes,
                max_processes: if c.cgroups.is_available() {
                    None
                } else {
                    Some(c.max_pids as u64 * 16)
                },
            },
            parent_pid: std::process::id() as i32,
            namespaces,
            user,
            harden: sandboxed.then(|| c.sandbox.filters.clone()),
        };
        // SAFETY: the closure only performs async-signal-safe system calls (see
        // sandbox::enter) on data prepared above.
        unsafe {
            cmd.pre_exec(move || enter(&mut child_plan));
        }
        let started = Instant::now();
        let (exit_tx, exit_rx) = oneshot::channel();
        let mut start_failure = None;
        let pid = match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                if user.is_none() {
                    server.restrict_to_process_tree(pid);
                }
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let _ = exit_tx.send(status.unwrap_or_else(|_| ExitStatus::from_raw(9)));
                });
                Some(pid)
            }
            Err(e) => {
                // A missing or non-executable entrypoint is the function's problem
                // (Lambda: Runtime.InvalidEntrypoint); anything else, such as a
                // failure to join the cgroup or drop privileges, is the platform's.
                let kind = match e.raw_os_error() {
                    Some(libc::ENOENT | libc::EACCES | libc::ENOEXEC | libc::ENOTDIR) => {
                        platform_error::RUNTIME_INVALID_ENTRYPOINT
                    }
                    _ => platform_error::SANDBOX_FAILURE,
                };
                tracing::warn!(instance = %id, "cannot start {}: {e}", program.display());
                start_failure = Some((kind, e.to_string()));
                let _ = exit_tx.send(ExitStatus::from_raw(127 << 8));
                None
            }
        };
        // The child's end of the staging channel goes with the command.
        drop(cmd);
        let cgroup = guard.cgroup.take();
        guard.workdir = None;
        Ok(ProcessInstance {
            _uid: uid_lease,
            stage: stage_server,
            peak_kb: 0,
            cpus: cpu_quota(spec.memory_mb, c.cpu_per_gb),
            freezer: match (&guard.cgroup, c.freeze_after) {
                (Some(cg), Some(after)) => cg
                    .freezer()
                    .map(|f| crate::sandbox::Freezer::start(f, after)),
                _ => None,
            },
            id,
            spec,
            assign_tx,
            pid,
            start_failure,
            limit_bytes: 0,
            started,
            init_done: false,
            next_tx: Some(next_tx),
            events: events_rx,
            exit: exit_rx,
            exit_status: None,
            pipe,
            cgroup,
            cgroups_available: c.cgroups.is_available(),
            workdir,
            init_limit: c.init_limit,
            server,
        })
    }
}

/// Asks a sandboxed spare's keeper to mount `code` at its `/var/task` and
/// waits for the answer (an errno, 0 when done).
async fn mount_spare_code(mut stage: tokio::net::UnixStream, code: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut msg = code.as_os_str().as_bytes().to_vec();
    msg.push(0);
    let exchange = async {
        stage.write_all(&msg).await?;
        let mut answer = [0u8; 4];
        stage.read_exact(&mut answer).await?;
        Ok::<i32, std::io::Error>(i32::from_ne_bytes(answer))
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(errno)) => Err(format!(
            "mounting the code failed: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
        Ok(Err(e)) => Err(format!("the spare's keeper is gone: {e}")),
        Err(_) => Err("the spare's keeper did not answer".into()),
    }
}

pub(crate) struct ProcessInstance {
    /// Keeps the instance's uid its own until the instance is gone (dropped
    /// after `Drop::drop` killed the process tree).
    _uid: Option<crate::sandbox::UidLease>,
    /// A sandboxed spare's channel to its keeper, which mounts its code.
    stage: Option<tokio::net::UnixStream>,
    /// Without cgroups: the largest sampled RSS of the process tree, KiB.
    peak_kb: u64,
    /// CPU quota once initialised (init runs unthrottled, as Lambda boosts it).
    cpus: Option<f64>,
    /// Freezes the instance while it is idle.
    freezer: Option<crate::sandbox::Freezer>,
    id: String,
    spec: Arc<InstanceSpec>,
    /// Set while this is a spare waiting for its function.
    assign_tx: Option<oneshot::Sender<Bytes>>,
    pid: Option<u32>,
    /// Why the process could not be started (error type, detail).
    start_failure: Option<(&'static str, String)>,
    limit_bytes: u64,
    started: Instant,
    init_done: bool,
    next_tx: Option<mpsc::Sender<Dispatch>>,
    events: mpsc::UnboundedReceiver<ApiEvent>,
    exit: oneshot::Receiver<ExitStatus>,
    exit_status: Option<ExitStatus>,
    pipe: LogPipe,
    cgroup: Option<InstanceCgroup>,
    cgroups_available: bool,
    workdir: PathBuf,
    init_limit: Duration,
    server: RuntimeApiServer,
}

enum Ending {
    Ok(Bytes, Option<String>),
    FunctionError(Bytes),
    TooLarge,
    StreamBroken,
    InitError(Bytes, Option<String>),
    Exited(ExitStatus, bool),
    Timeout(Duration),
    Gone,
    Cancelled,
}

impl ProcessInstance {
    /// Turns a spare into an instance of `spec`: its limits, its log attribution
    /// and its deadline change, then the waiting bootstrap receives the task root
    /// and the environment it would have been started with. Init is timed from
    /// here, so the reported init duration is the function's own.
    pub(crate) async fn assign(
        &mut self,
        spec: Arc<InstanceSpec>,
        config: &ProcessRuntimeConfig,
    ) -> Result<(), String> {
        if self.has_exited() {
            return Err("the spare exited".into());
        }
        let tx = self.assign_tx.take().ok_or("not a spare")?;
        if let Some(cg) = &self.cgroup {
            cg.set_memory_limit(spec.memory_mb as u64 * 1024 * 1024)
                .map_err(|e| format!("cgroup: {e}"))?;
        }
        self.cpus = cpu_quota(spec.memory_mb, config.cpu_per_gb);
        if let Some(stage) = self.stage.take() {
            mount_spare_code(stage, &spec.code_dir).await?;
        }
        let (_, _, runtime_dir, exec_env) = command(config, &spec);
        let paths = InstancePaths::new(config.sandbox.namespaces(), &self.workdir, &spec);
        let env = environment(
            &spec,
            &self.id,
            &self.server,
            &runtime_dir,
            exec_env,
            &paths,
            &config.python_path,
        );
        self.pipe.set_function(spec.function.as_str().into());
        self.server.set_timeout(spec.timeout);
        self.spec = spec;
        self.started = Instant::now();
        tx.send(spare::assignment(&paths.task_root, &env))
            .map_err(|_| "the spare stopped waiting".to_string())
    }

    /// Whether the process has exited (and was reaped); records the status.
    pub(crate) fn has_exited(&mut self) -> bool {
        if self.exit_status.is_none()
            && let Ok(s) = self.exit.try_recv()
        {
            self.exit_status = Some(s);
        }
        self.exit_status.is_some()
    }

    /// Applies the CPU quota (after initialisation).
    fn limit_cpu(&self) {
        if let (Some(cg), Some(_)) = (&self.cgroup, self.cpus)
            && let Err(e) = cg.set_cpu_quota(self.cpus)
        {
            tracing::warn!(instance = %self.id, "cannot set the CPU quota: {e}");
        }
    }

    fn kill(&mut self) {
        if let Some(f) = &self.freezer {
            f.stop();
        }
        // Once reaped, the pid (and so the group id) may belong to someone else.
        if let Some(pid) = self.pid
            && !self.has_exited()
        {
            kill_group(pid);
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    fn peak_memory(&self) -> u64 {
        if let Some(cg) = &self.cgroup {
            return cg.peak_bytes().unwrap_or(0);
        }
        let hwm = self
            .pid
            .and_then(|p| proc_status_kb(p, "VmHWM:"))
            .unwrap_or(0);
        hwm.max(self.peak_kb) * 1024
    }

    /// Without cgroups: whether the whole process tree (every process of the
    /// instance, not only its first) holds more than the function's memory.
    fn rss_over_limit(&mut self) -> bool {
        let limit = self.spec.memory_mb as u64 * 1024;
        let Some(pid) = self.pid else {
            return false;
        };
        let kb = tree_rss_kb(pid);
        self.peak_kb = self.peak_kb.max(kb);
        kb > limit
    }

    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exit_status.is_none()
            && let Ok(Ok(s)) = tokio::time::timeout(limit, &mut self.exit).await
        {
            self.exit_status = Some(s);
        }
        self.exit_status
    }

    async fn drive(
        &mut self,
        request_id: &str,
        invoke_start: Instant,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> (Ending, Option<Duration>, Option<Instant>) {
        let timeout = self.spec.timeout;
        let mut init_duration = None;
        let mut dispatched: Option<Instant> = None;
        let mut suppressed_init = false;
        // Only without cgroups: the kernel enforces the limit otherwise.
        let police_memory = !self.cgroups_available;
        let mut memory_tick =
            police_memory.then(|| tokio::time::interval(Duration::from_millis(50)));
        loop {
            let deadline = match dispatched {
                Some(t) if suppressed_init => {
                    (t + timeout).min(self.started + self.init_limit + timeout)
                }
                Some(t) => t + timeout,
                None if !self.init_done && !suppressed_init => self.started + self.init_limit,
                None if !self.init_done => self.started + self.init_limit + timeout,
                None => invoke_start + timeout,
            };
            tokio::select! {
                // A result posted just before the process exits must win over the exit.
                biased;
                ev = self.events.recv() => match ev {
                    Some(ApiEvent::InitDone(t)) => {
                        self.init_done = true;
                        self.limit_cpu();
                        init_duration = Some(t - self.started);
                    }
                    Some(ApiEvent::Dispatched(t)) => dispatched = Some(t),
                    Some(ApiEvent::Response { request_id: r, body, content_type }) if &*r == request_id => {
                        return (Ending::Ok(body, content_type), init_duration, dispatched);
                    }
                    Some(ApiEvent::Error { request_id: r, body }) if &*r == request_id => {
                        return (Ending::FunctionError(body), init_duration, dispatched);
                    }
                    Some(ApiEvent::ResponseTooLarge { request_id: r }) if &*r == request_id => {
                        return (Ending::TooLarge, init_duration, dispatched);
                    }
                    Some(ApiEvent::StreamBroken { request_id: r }) if &*r == request_id => {
                        return (Ending::StreamBroken, init_duration, dispatched);
                    }
                    Some(ApiEvent::InitError { body, error_type }) => {
                        return (Ending::InitError(body, error_type), init_duration, dispatched);
                    }
                    Some(_) => {}
                    None => return (Ending::Gone, init_duration, dispatched),
                },
                status = &mut self.exit, if self.exit_status.is_none() => {
                    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(9));
                    self.exit_status = Some(status);
                    // A result or init error posted just before the exit still counts.
                    while let Ok(ev) = self.events.try_recv() {
                        match ev {
                            ApiEvent::InitError { body, error_type } => {
                                return (Ending::InitError(body, error_type), init_duration, dispatched);
                            }
                            ApiEvent::Response { request_id: r, body, content_type } if &*r == request_id => {
                                return (Ending::Ok(body, content_type), init_duration, dispatched);
                            }
                            ApiEvent::Error { request_id: r, body } if &*r == request_id => {
                                return (Ending::FunctionError(body), init_duration, dispatched);
                            }
                            _ => {}
                        }
                    }
                    let oom = self.cgroup.as_ref().is_some_and(|c| c.oom_killed()) || self.limit_bytes == u64::MAX;
                    return (Ending::Exited(status, oom), init_duration, dispatched);
                }
                _ = cancel.cancelled() => {
                    return (Ending::Cancelled, init_duration, dispatched);
                }
                _ = sleep_until(deadline.into()) => {
                    if dispatched.is_none() && !self.init_done && !suppressed_init {
                        // Lambda re-runs a slow init as part of the invoke ("suppressed init").
                        suppressed_init = true;
                        continue;
                    }
                    let elapsed = dispatched.unwrap_or(invoke_start).elapsed();
                    return (Ending::Timeout(elapsed), init_duration, dispatched);
                }
                _ = async { memory_tick.as_mut().expect("polled only when policing").tick().await }, if police_memory => {
                    if self.rss_over_limit() {
                        self.limit_bytes = u64::MAX; // marks the kill as OOM
                        self.kill();
                    }
                }
            }
        }
    }
}

/// Memory of `root` and all its descendants, KiB: their proportional set
/// sizes (`smaps_rollup`), so pages a fork shares are counted once, not once
/// per process; resident size where the kernel has no rollup.
fn tree_rss_kb(root: u32) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page_kb = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
    crate::sandbox::process_tree(root)
        .into_iter()
        .map(|pid| {
            proc_file_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
                .or_else(|| {
                    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
                    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
                    Some(pages * page_kb)
                })
                .unwrap_or(0)
        })
        .sum()
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    proc_file_kb(&format!("/proc/{pid}/status"), key)
}

/// A `Key:   123 kB` line of a /proc file.
fn proc_file_kb(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn exit_description(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        if code == 0 {
            return "Runtime exited without providing a reason".into();
        }
        return format!("Runtime exited with error: exit status {code}");
    }
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        libc::SIGKILL => "killed",
        libc::SIGTERM => "terminated",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGABRT => "aborted",
        libc::SIGINT => "interrupt",
        libc::SIGBUS => "bus error",
        libc::SIGFPE => "floating point exception",
        libc::SIGPIPE => "broken pipe",
        _ => return format!("Runtime exited with error: signal {sig}"),
    };
    format!("Runtime exited with error: signal: {name}")
}

#[async_trait]
impl Instance for ProcessInstance {
    fn id(&self) -> &str {
        &self.id
    }

    fn is_alive(&mut self) -> bool {
        !self.has_exited()
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !self.init_done {
            tokio::select! {
                biased;
                ev = self.events.recv() => match ev {
                    Some(ApiEvent::InitDone(_)) => {
                        self.init_done = true;
                        self.limit_cpu();
                    }
                    Some(ApiEvent::InitError { body, .. }) => {
                        return Err(format!("init failed: {}", String::from_utf8_lossy(&body)));
                    }
                    Some(_) => {}
                    None => return Err("the instance is gone".into()),
                },
                status = &mut self.exit, if self.exit_status.is_none() => {
                    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(9));
                    self.exit_status = Some(status);
                    return Err(exit_description(status));
                }
                _ = sleep_until(deadline.into()) => return Err("init did not finish in time".into()),
            }
        }
        Ok(())
    }

    async fn invoke(&mut self, mut dispatch: Dispatch) -> InvokeResult {
        let request_id = dispatch.request_id.to_string();
        let cancel = dispatch.cancel.clone();
        if let Some(f) = &self.freezer {
            f.busy().await;
        }
        let invoke_start = Instant::now();
        self.pipe.begin(
            request_id.as_str().into(),
            dispatch.capture_output,
            std::mem::take(&mut dispatch.start_line),
            dispatch.start_ms,
        );
        let sent = match &self.next_tx {
            Some(tx) => tx.send(dispatch).await.is_ok(),
            None => false,
        };
        let (ending, init_duration, dispatched) = if sent {
            self.drive(&request_id, invoke_start, &cancel).await
        } else {
            (Ending::Gone, None, None)
        };
        let mut platform_lines = Vec::new();
        let timestamp = || chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let (outcome, healthy) = match ending {
            Ending::Ok(body, content_type) => (Outcome::Success { body, content_type }, true),
            Ending::FunctionError(body) => {
                let error_type = error_type_of(&body).unwrap_or_else(|| "Unhandled".into());
                (Outcome::Error { error_type, body }, true)
            }
            Ending::TooLarge => (
                Outcome::Error {
                    error_type: platform_error::FUNCTION_RESPONSE_SIZE_TOO_LARGE.into(),
                    body: error_doc(
                        platform_error::FUNCTION_RESPONSE_SIZE_TOO_LARGE,
                        "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                    ),
                },
                true,
            ),
            Ending::StreamBroken => {
                let message = format!(
                    "RequestId: {request_id} Error: the runtime's streamed response broke off before it was complete"
                );
                platform_lines.push(message.clone());
                (
                    Outcome::Error {
                        error_type: platform_error::RUNTIME_TRUNCATED_RESPONSE.into(),
                        body: error_doc(platform_error::RUNTIME_TRUNCATED_RESPONSE, &message),
                    },
                    false,
                )
            }
            Ending::InitError(body, header_type) => {
                let error_type = error_type_of(&body)
                    .or(header_type)
                    .unwrap_or_else(|| platform_error::RUNTIME_UNKNOWN.into());
                let body = if body.is_empty() {
                    error_doc(&error_type, "Init failed")
                } else {
                    body
                };
                platform_lines.push(format!("INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: error\tError Type: {error_type}", self.started.elapsed().as_secs_f64() * 1000.0));
                (Outcome::Error { error_type, body }, false)
            }
            Ending::Exited(status, oom) => {
                let (error_type, why) = if oom {
                    (
                        platform_error::RUNTIME_OUT_OF_MEMORY,
                        format!(
                            "Runtime exited with error: signal: killed (memory limit of {} MB exceeded)",
                            self.spec.memory_mb
                        ),
                    )
                } else if let Some((kind, detail)) = &self.start_failure {
                    (*kind, format!("Runtime could not be started: {detail}"))
                } else {
                    (platform_error::RUNTIME_EXIT_ERROR, exit_description(status))
                };
                let message = format!("RequestId: {request_id} Error: {why}");
                platform_lines.push(message.clone());
                platform_lines.push(error_type.to_string());
                (
                    Outcome::Error {
                        error_type: error_type.into(),
                        body: error_doc(error_type, &message),
                    },
                    false,
                )
            }
            Ending::Timeout(elapsed) => {
                self.kill();
                platform_lines.push(format!(
                    "{} {request_id} Task timed out after {:.2} seconds",
                    timestamp(),
                    elapsed.as_secs_f64()
                ));
                let message = format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    self.spec.timeout.as_secs_f64()
                );
                (
                    Outcome::Error {
                        error_type: platform_error::SANDBOX_TIMEDOUT.into(),
                        body: error_doc(platform_error::SANDBOX_TIMEDOUT, &message),
                    },
                    false,
                )
            }
            Ending::Cancelled => {
                let message = format!(
                    "RequestId: {request_id} Error: the server shut down before the invocation finished"
                );
                platform_lines.push(message.clone());
                (
                    Outcome::Error {
                        error_type: platform_error::SANDBOX_FAILURE.into(),
                        body: error_doc(platform_error::SANDBOX_FAILURE, &message),
                    },
                    false,
                )
            }
            Ending::Gone => {
                let message = format!(
                    "RequestId: {request_id} Error: Runtime exited without providing a reason"
                );
                (
                    Outcome::Error {
                        error_type: platform_error::RUNTIME_EXIT_ERROR.into(),
                        body: error_doc(platform_error::RUNTIME_EXIT_ERROR, &message),
                    },
                    false,
                )
            }
        };
        if !healthy {
            self.kill();
        } else if let Some(f) = &self.freezer {
            f.idle();
        }
        let (output, start_logged) = self.pipe.finish().await;
        InvokeResult {
            outcome,
            healthy,
            init_duration,
            duration: dispatched.unwrap_or(invoke_start).elapsed(),
            max_memory_bytes: self.peak_memory(),
            output,
            platform_lines,
            start_logged,
        }
    }

    async fn shutdown(mut self: Box<Self>) {
        self.next_tx = None;
        self.kill();
        self.wait_exit(Duration::from_secs(2)).await;
        if let Some(cg) = self.cgroup.take() {
            cg.remove().await;
        }
        let _ = tokio::fs::remove_dir_all(&self.workdir).await;
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        self.kill();
        if self.workdir.exists() {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
        if let Some(cg) = self.cgroup.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(cg.remove());
        }
    }
}

/// Undoes a half-finished start.
struct StartGuard {
    workdir: Option<PathBuf>,
    cgroup: Option<InstanceCgroup>,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(w) = self.workdir.take() {
            let _ = std::fs::remove_dir_all(w);
        }
        if let Some(cg) = self.cgroup.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(cg.remove());
        }
    }
}
