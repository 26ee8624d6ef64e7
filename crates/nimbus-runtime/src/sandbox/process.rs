use std::fs::File;
use std::io;

use super::cgroup::write_pid;

/// The user an instance runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

/// Which users instances run as.
#[derive(Debug)]
pub enum UserPolicy {
    /// The server's own user (the only choice when not running as root).
    Inherit,
    /// One fixed unprivileged user for every instance.
    Fixed(SandboxUser),
    /// A distinct uid/gid per live instance, taken in turn from
    /// `base..base + span`: instances cannot signal each other's processes or
    /// read each other's files. The ids need no passwd entries.
    PerInstance {
        base: u32,
        span: u32,
        next: std::sync::atomic::AtomicU32,
    },
}

impl UserPolicy {
    pub fn per_instance(base: u32, span: u32) -> Self {
        UserPolicy::PerInstance {
            base,
            span: span.max(1),
            next: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The user for a new instance.
    pub fn next_user(&self) -> Option<SandboxUser> {
        match self {
            UserPolicy::Inherit => None,
            UserPolicy::Fixed(u) => Some(*u),
            UserPolicy::PerInstance { base, span, next } => {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span;
                Some(SandboxUser {
                    uid: base + n,
                    gid: base + n,
                })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UserPolicy::Inherit => "the server's user".into(),
            UserPolicy::Fixed(u) => format!("uid {}", u.uid),
            UserPolicy::PerInstance { base, span, .. } => {
                format!("a uid of its own ({base}..{})", base + span)
            }
        }
    }
}

/// Limits applied in the child between fork and exec.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    pub max_open_files: u64,
    pub max_file_bytes: u64,
    /// Only used when no pids cgroup is available.
    pub max_processes: Option<u64>,
}

/// Runs in the forked child before exec: joins the cgroups, sets rlimits, drops
/// privileges and arms the parent-death signal. Only async-signal-safe calls.
pub fn apply_in_child(
    cgroup_procs: &mut [File],
    limits: ChildLimits,
    user: Option<SandboxUser>,
    parent_pid: i32,
) -> io::Result<()> {
    // SAFETY: getpid, setrlimit, setgroups, setgid, setuid, prctl and getppid are
    // async-signal-safe system calls; all pointers passed are valid locals.
    unsafe {
        let pid = libc::getpid();
        for f in cgroup_procs.iter_mut() {
            write_pid(f, pid)?;
        }
        let set = |res, v: u64| {
            let lim = libc::rlimit {
                rlim_cur: v,
                rlim_max: v,
            };
            if libc::setrlimit(res, &lim) != 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        set(libc::RLIMIT_NOFILE, limits.max_open_files)?;
        set(libc::RLIMIT_CORE, 0)?;
        set(libc::RLIMIT_FSIZE, limits.max_file_bytes)?;
        if let Some(n) = limits.max_processes {
            set(libc::RLIMIT_NPROC, n)?;
        }
        if let Some(u) = user {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setgid(u.gid) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(u.uid) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Must come after setuid, which clears it.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent_pid {
            // The server died between fork and prctl.
            libc::_exit(1);
        }
    }
    Ok(())
}

/// SIGKILLs a whole process group.
pub fn kill_group(pgid: u32) {
    // SAFETY: killpg(2) has no memory-safety preconditions.
    unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
}
