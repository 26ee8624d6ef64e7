//! Containment of an instance by the operating system.
//!
//! Nimbus runs other people's code, so every instance is a sandbox whose
//! limits the kernel enforces, never the handler:
//!
//! - **namespaces**: its own PID, mount, IPC and UTS namespaces (and, rootless,
//!   its own user namespace; with `network = "none"`, its own empty network
//!   namespace). It sees only its own processes, its own System V and POSIX IPC,
//!   and a private root filesystem (see [`plan`]): its code read-only at
//!   `/var/task`, the interpreter and system directories read-only, a private
//!   `/tmp` of its ephemeral-storage size; no host `/tmp`, `/dev/shm`, data
//!   directory or other function's code. All of it vanishes with the instance,
//!   even when the server is SIGKILLed (PID 1 of the namespace dies with its
//!   keeper, which dies with the server; tmpfs mounts die with their namespace).
//! - **no privileges**: a uid of its own when the server is root (leased from a
//!   host-locked block, never shared by two live instances; see [`uids`]),
//!   every capability dropped from the bounding set, `no_new_privs` (setuid
//!   binaries do not elevate), a seccomp deny list ([`seccomp`]), and no
//!   inherited descriptor but stdio.
//! - **cgroups** (v1 or v2, whichever the host offers): memory at the function's
//!   setting, processes and threads capped, CPU in proportion to memory as on
//!   Lambda, and the freezer that stops an idle instance (see [`cgroup`]).
//! - **rlimits** for open files, core dumps and file size.
//!
//! Without cgroups (an unprivileged user on a host without delegation) memory is
//! policed by sampling the instance's process tree, and process count by
//! `RLIMIT_NPROC`, which a user namespace makes per instance; Nimbus names every
//! guarantee it cannot give at startup, and `--sandbox strict` refuses to start.

mod cgroup;
mod child;
mod freezer;
pub mod netfilter;
pub mod plan;
pub mod seccomp;
pub mod uids;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cgroup::{CgroupSupport, InstanceCgroup};
pub use child::{ChildLimits, SandboxUser, kill_group};
pub(crate) use child::{ChildPlan, IdMaps, NamespacePlan, Staging, enter};
pub use freezer::Freezer;
pub use plan::SystemView;
pub use uids::{UidLease, UidPool};

/// The pids of `root` and all its descendants (a sandboxed instance's whole
/// PID namespace hangs below its keeper), from `/proc/<pid>/task/*/children`;
/// at most 4,096, so a fork bomb cannot make the walk unbounded.
pub(crate) fn process_tree(root: u32) -> Vec<u32> {
    const MAX: usize = 4096;
    let mut tree = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if tree.len() == MAX {
            break;
        }
        tree.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    tree
}

/// The uid and gid an instance sees itself as in a rootless sandbox (those of
/// Lambda's `sbx_user1051`).
pub const INSIDE_UID: u32 = 993;
pub const INSIDE_GID: u32 = 990;

/// Which users instances run as (host ids).
#[derive(Debug)]
pub enum UserPolicy {
    /// The server's own user: not root, or `--sandbox-user root`.
    Inherit,
    /// One fixed unprivileged user for every instance.
    Fixed(SandboxUser),
    /// A uid of its own per live instance, leased from a host-locked block.
    PerInstance(Arc<UidPool>),
}

impl UserPolicy {
    /// The user for a new instance and the lease that keeps its uid its own.
    /// `Err` when every uid of the block is in use.
    pub fn next_user(&self) -> Result<Option<(SandboxUser, Option<UidLease>)>, String> {
        match self {
            UserPolicy::Inherit => Ok(None),
            UserPolicy::Fixed(u) => Ok(Some((*u, None))),
            UserPolicy::PerInstance(pool) => {
                let lease = pool.lease().ok_or_else(|| {
                    let (first, span) = pool.range();
                    format!("all {span} sandbox uids from {first} are in use by live instances")
                })?;
                let user = SandboxUser {
                    uid: lease.uid(),
                    gid: lease.uid(),
                };
                Ok(Some((user, Some(lease))))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UserPolicy::Inherit => "the server's user".into(),
            UserPolicy::Fixed(u) => format!("uid {}", u.uid),
            UserPolicy::PerInstance(pool) => {
                let (first, span) = pool.range();
                format!("a uid of its own ({first}..{})", first as u64 + span as u64)
            }
        }
    }
}

/// How much of the sandbox is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces, private root, no privileges, seccomp (the default).
    Namespaces,
    /// Only cgroups, rlimits and the uid: a measurement switch for the
    /// benchmark of the sandbox's cost, and the fallback of a host that
    /// lacks namespaces (named at startup).
    Off,
}

/// The sandbox settings shared by every instance.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub isolation: Isolation,
    /// The server is not root: instances get a user namespace of their own.
    pub rootless: bool,
    pub view: Arc<SystemView>,
    pub filters: Arc<seccomp::Filters>,
    /// The server's uid and gid (what a rootless instance maps to).
    pub server_ids: (u32, u32),
}

impl Sandbox {
    /// The sandbox for a server whose runtimes live under `runtime_dirs`.
    pub fn new(
        isolation: Isolation,
        runtime_dirs: &[PathBuf],
        code_root: &Path,
    ) -> Result<Self, String> {
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Ok(Self {
            isolation,
            rootless: uid != 0,
            view: Arc::new(SystemView::discover(runtime_dirs, code_root)),
            filters: Arc::new(seccomp::compile()?),
            server_ids: (uid, gid),
        })
    }

    pub fn namespaces(&self) -> bool {
        self.isolation == Isolation::Namespaces
    }
}

/// Starts `/bin/true` (or `/usr/bin/true`) through the full sandbox once, in
/// `dir`, so that `nimbus up` knows the kernel gives every guarantee before it
/// claims them. The error names the step that failed.
pub fn probe(sandbox: &Sandbox, dir: &Path) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let program = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no /usr/bin/true to probe the sandbox with")?;
    let _ = std::fs::remove_dir_all(dir);
    for d in ["root", "rt"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let root = dir.join("root");
    let ops = plan::build(
        &sandbox.view,
        &plan::InstanceView {
            root: &root,
            code: None,
            socket_dir: &dir.join("rt"),
            runtime: None,
            tmp_mb: 1,
            uid: if sandbox.rootless { INSIDE_UID } else { 0 },
            gid: if sandbox.rootless { INSIDE_GID } else { 0 },
        },
    );
    let (root_c, put_old, task_in_root) = plan::pivot_paths(&root);
    let (uid, gid) = sandbox.server_ids;
    let mut child = ChildPlan {
        cgroup_procs: Vec::new(),
        limits: ChildLimits {
            max_open_files: 64,
            max_file_bytes: 1 << 20,
            max_processes: None,
        },
        parent_pid: std::process::id() as i32,
        namespaces: Some(NamespacePlan {
            id_maps: sandbox.rootless.then(|| IdMaps {
                uid_map: format!("{INSIDE_UID} {uid} 1\n").into_bytes(),
                gid_map: format!("{INSIDE_GID} {gid} 1\n").into_bytes(),
            }),
            network_none: true,
            staging: None,
            root: root_c,
            put_old,
            task_in_root,
            ops,
            cwd: c"/".into(),
        }),
        user: None,
        harden: Some(sandbox.filters.clone()),
    };
    #[allow(
        clippy::disallowed_methods,
        reason = "the sandbox builds the command it confines"
    )]
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure only performs async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || enter(&mut child));
    }
    let out = cmd.output().map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(dir);
    let out = out?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(format!("{} ({})", said.trim(), out.status))
}
