//! What runs between `fork` and `exec`: entering the sandbox.
//!
//! Everything here runs in a child of a multithreaded process, so it may only
//! make async-signal-safe system calls: no allocation, no locks. Every path and
//! buffer is prepared by the parent in a [`ChildPlan`] (see `plan.rs`); this
//! file only walks it.
//!
//! The process tree of a sandboxed instance:
//!
//! ```text
//! server ── fork ──► keeper (joins the cgroup, creates the PID namespace and,
//!                    │        rootless, the user namespace; stays outside the PID
//!                    │        namespace and mirrors the runtime's exit status)
//!                    └─ fork ──► runtime (PID 1 of its namespace: new mount, IPC
//!                                and UTS namespaces, private root, drops every
//!                                privilege, seccomp, then exec)
//! ```
//!
//! A PID namespace can only be entered by a new process, hence the keeper. It
//! also mounts a spare's code when the spare is assigned: the runtime's
//! `/var/task` is a mount propagation peer of a staging mount in the keeper's
//! mount namespace, so a mount the keeper makes there appears at `/var/task`
//! without the runtime ever holding a privilege. When the runtime (PID 1) dies
//! the kernel kills everything left in its namespace; when the server dies,
//! the keeper and the runtime get `SIGKILL` (parent-death signals).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::cgroup::write_pid;
use super::seccomp::Filters;

/// Limits applied with rlimits.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    pub max_open_files: u64,
    pub max_file_bytes: u64,
    /// Only used when no pids cgroup is available.
    pub max_processes: Option<u64>,
}

/// The user an instance runs as (host ids, when the server is root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

/// One step of building the private root, paths already under the new root.
#[derive(Debug)]
pub(crate) enum MountOp {
    Dir(CString, libc::mode_t),
    /// An empty file to bind a file (a device node) onto.
    File(CString),
    Bind {
        src: CString,
        dst: CString,
        /// Flags of the read-only remount (the source's locked flags kept);
        /// `None` leaves the bind writable (device nodes).
        remount: Option<libc::c_ulong>,
    },
    Tmpfs {
        dst: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    Proc(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Write {
        path: CString,
        contents: Arc<[u8]>,
    },
}

/// Rootless: the contents of the new user namespace's id maps.
#[derive(Debug)]
pub(crate) struct IdMaps {
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
}

/// A spare's late code mount: the staging mount point and the keeper's end of
/// the channel on which the server sends the code path and reads the result.
#[derive(Debug)]
pub(crate) struct Staging {
    pub dir: CString,
    pub channel: OwnedFd,
}

/// The namespaces and root filesystem of one instance.
#[derive(Debug)]
pub(crate) struct NamespacePlan {
    pub id_maps: Option<IdMaps>,
    pub network_none: bool,
    pub staging: Option<Staging>,
    /// Where the new root's tmpfs is mounted before `pivot_root`.
    pub root: CString,
    /// `<root>/.old`, where the old root goes until it is detached.
    pub put_old: CString,
    /// `<root>/var/task`, bound to the staging mount for spares.
    pub task_in_root: CString,
    pub ops: Vec<MountOp>,
    /// Working directory after `pivot_root`.
    pub cwd: CString,
}

/// Everything the child does before `exec`.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub cgroup_procs: Vec<File>,
    pub limits: ChildLimits,
    pub parent_pid: i32,
    pub namespaces: Option<NamespacePlan>,
    /// Root mode: the host user to drop to.
    pub user: Option<SandboxUser>,
    /// `no_new_privs`, an empty capability bounding set, descriptors above 2
    /// closed at exec and the seccomp filters (none in the measurement-only
    /// `--sandbox off` mode).
    pub harden: Option<Arc<Filters>>,
}

/// Writes a message to stderr (the instance's log pipe) without allocating.
fn say(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: write(2) from a valid buffer.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

/// Formats an errno in decimal on the stack.
fn errno_text(buf: &mut [u8; 12], e: i32) -> &[u8] {
    let mut n = e.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Turns a failed call into an error, naming the step on the instance's log.
fn check(rc: libc::c_long, step: &[u8], what: &CString) -> io::Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let mut buf = [0u8; 12];
    say(&[
        b"nimbus sandbox: ",
        step,
        b" ",
        what.as_bytes(),
        b" failed: errno ",
        errno_text(&mut buf, err.raw_os_error().unwrap_or(0)),
        b"\n",
    ]);
    Err(err)
}

fn cstr_ptr(s: &CString) -> *const libc::c_char {
    s.as_ptr()
}

fn set_rlimit(res: libc::__rlimit_resource_t, v: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit(2) reads a valid local struct.
    if unsafe { libc::setrlimit(res, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn write_file(path: &CString, contents: &[u8], create: bool) -> io::Result<()> {
    let flags = if create {
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW
    } else {
        libc::O_WRONLY | libc::O_CLOEXEC
    };
    // SAFETY: open/write/close with a NUL-terminated path and a valid buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags, 0o644);
        check(fd as libc::c_long, b"open", path)?;
        let mut off = 0;
        while off < contents.len() {
            let n = libc::write(fd, contents[off..].as_ptr().cast(), contents.len() - off);
            if n <= 0 {
                let e = io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            off += n as usize;
        }
        libc::close(fd);
    }
    Ok(())
}

/// Stops mount events propagating between the new mount namespace and the
/// one it was copied from (the host's, whose `/` is usually shared).
fn make_mounts_private() -> io::Result<()> {
    // SAFETY: mount(2) with a NUL-terminated target and nulls.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(rc as _, b"make private", &CString::default())
}

/// `oom_score_adj` of every instance process: when the host runs out of
/// memory the kernel kills a function, not the server (which sets its own to
/// -900). Raising one's score needs no privilege.
const INSTANCE_OOM_SCORE_ADJ: &[u8] = b"500";

fn raise_oom_score() {
    // SAFETY: open/write/close with a NUL-terminated path and a valid buffer.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::write(
                fd,
                INSTANCE_OOM_SCORE_ADJ.as_ptr().cast(),
                INSTANCE_OOM_SCORE_ADJ.len(),
            );
            libc::close(fd);
        }
    }
}

/// Runs in the forked child; returns only in the process that goes on to
/// `exec` the runtime.
pub(crate) fn enter(plan: &mut ChildPlan) -> io::Result<()> {
    raise_oom_score();
    // SAFETY: getpid(2) has no preconditions.
    let pid = unsafe { libc::getpid() };
    for f in plan.cgroup_procs.iter_mut() {
        write_pid(f, pid)?;
    }
    // Drop our copies: the runtime must not hold the cgroup files.
    plan.cgroup_procs.clear();
    set_rlimit(libc::RLIMIT_NOFILE, plan.limits.max_open_files)?;
    set_rlimit(libc::RLIMIT_CORE, 0)?;
    set_rlimit(libc::RLIMIT_FSIZE, plan.limits.max_file_bytes)?;
    if let Some(n) = plan.limits.max_processes {
        set_rlimit(libc::RLIMIT_NPROC, n)?;
    }
    if let Some(ns) = &plan.namespaces {
        keeper(ns, plan.parent_pid)?;
        build_root(ns)?;
    }
    drop_privileges(plan)?;
    Ok(())
}

/// The keeper's part: namespaces that need a new process, then the fork. Only
/// the runtime returns from here.
fn keeper(ns: &NamespacePlan, parent_pid: i32) -> io::Result<()> {
    let none = CString::default();
    // SAFETY: prctl(2) and getppid(2) with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent_pid {
            // The server died between fork and prctl.
            libc::_exit(1);
        }
    }
    let mut flags = libc::CLONE_NEWPID;
    if ns.id_maps.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    if ns.staging.is_some() {
        flags |= libc::CLONE_NEWNS;
    }
    // SAFETY: unshare(2) takes flags only.
    check(unsafe { libc::unshare(flags) } as _, b"unshare", &none)?;
    if let Some(maps) = &ns.id_maps {
        write_file(&c"/proc/self/setgroups".into(), b"deny", false)?;
        write_file(&c"/proc/self/uid_map".into(), &maps.uid_map, false)?;
        write_file(&c"/proc/self/gid_map".into(), &maps.gid_map, false)?;
    }
    if let Some(stage) = &ns.staging {
        // SAFETY: mount(2) with NUL-terminated strings or nulls.
        unsafe {
            make_mounts_private()?;
            check(
                libc::mount(
                    stage.dir.as_ptr(),
                    stage.dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) as _,
                b"bind staging",
                &stage.dir,
            )?;
            check(
                libc::mount(
                    std::ptr::null(),
                    stage.dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_SHARED,
                    std::ptr::null(),
                ) as _,
                b"share staging",
                &stage.dir,
            )?;
        }
    }
    // SAFETY: fork(2) in a single-threaded child; both sides only make
    // async-signal-safe calls afterwards.
    let child = unsafe { libc::fork() };
    check(child as _, b"fork", &none)?;
    if child > 0 {
        supervise(
            child,
            ns.staging.as_ref().map(|s| (s.channel.as_raw_fd(), &s.dir)),
        );
    }
    // The runtime: dies with its keeper.
    // SAFETY: prctl(2) with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    Ok(())
}

/// The keeper after the fork: mounts a spare's code when asked, then waits
/// for the runtime and exits the way it did. Never returns.
fn supervise(child: libc::pid_t, staging: Option<(i32, &CString)>) -> ! {
    let keep = staging.map(|(fd, _)| fd).unwrap_or(-1);
    // SAFETY: plain system calls on descriptors and buffers we own.
    unsafe {
        // Nothing of the server's stays open here (the spawn's error pipe above
        // all, or the server would wait for the keeper instead of the exec).
        if keep >= 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
            libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
        } else {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        }
        if let Some((fd, dir)) = staging {
            serve_assignment(fd, dir, child);
            libc::close(fd);
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
}

/// Reads one code path from the server and mounts it read-only on the staging
/// point (a peer of the runtime's `/var/task`); answers with the errno (0: done).
/// Returns early if the server goes away or the runtime dies first.
unsafe fn serve_assignment(fd: i32, stage: &CString, child: libc::pid_t) {
    let mut path = [0u8; 4096];
    let mut len = 0usize;
    // SAFETY: reads into and syscalls with buffers owned here.
    unsafe {
        // Wait for the assignment or the runtime's death, whichever comes first.
        let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as i32;
        if pidfd >= 0 {
            let mut fds = [
                libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            loop {
                let n = libc::poll(fds.as_mut_ptr(), 2, -1);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            libc::close(pidfd);
            if fds[1].revents != 0 {
                return;
            }
        }
        loop {
            let n = libc::read(fd, path[len..].as_mut_ptr().cast(), path.len() - 1 - len);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                return;
            }
            len += n as usize;
            if path[..len].contains(&0) || len >= path.len() - 1 {
                break;
            }
        }
        path[len] = 0;
        let result = mount_code(path.as_ptr().cast(), stage);
        let answer = result.to_ne_bytes();
        libc::write(fd, answer.as_ptr().cast(), answer.len());
    }
}

/// `open_tree` + `mount_setattr(ro)` + `move_mount`: a read-only copy of the
/// code tree moved onto the staging point. The mount is read-only before it
/// is attached, so the propagated copy is too (remounts do not propagate).
unsafe fn mount_code(path: *const libc::c_char, stage: &CString) -> i32 {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // SAFETY: NUL-terminated paths and a valid attribute struct.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path,
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        );
        if tree < 0 {
            return *libc::__errno_location();
        }
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let empty = c"";
        let mut rc = libc::syscall(
            libc::SYS_mount_setattr,
            tree as i32,
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if rc == 0 {
            rc = libc::syscall(
                libc::SYS_move_mount,
                tree as i32,
                empty.as_ptr(),
                libc::AT_FDCWD,
                stage.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            );
        }
        let err = if rc == 0 {
            0
        } else {
            *libc::__errno_location()
        };
        libc::close(tree as i32);
        err
    }
}

/// The runtime's part: its own mount, IPC and UTS (and network) namespaces
/// and a private root built from the plan, then `pivot_root` into it.
fn build_root(ns: &NamespacePlan) -> io::Result<()> {
    let none = CString::default();
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if ns.network_none {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: system calls with NUL-terminated strings prepared by
    // the parent, or nulls where the call allows them.
    unsafe {
        check(libc::unshare(flags) as _, b"unshare", &none)?;
        // The modes in the plan are meant as given (the server's umask is 077).
        let umask = libc::umask(0);
        let host = b"nimbus";
        libc::sethostname(host.as_ptr().cast(), host.len());
        if ns.staging.is_none() {
            make_mounts_private()?;
        }
        check(
            libc::mount(
                c"tmpfs".as_ptr(),
                ns.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=16m,mode=0755".as_ptr().cast(),
            ) as _,
            b"mount root",
            &ns.root,
        )?;
        for op in &ns.ops {
            run_op(op)?;
        }
        if let Some(stage) = &ns.staging {
            check(
                libc::mount(
                    stage.dir.as_ptr(),
                    ns.task_in_root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) as _,
                b"bind task",
                &ns.task_in_root,
            )?;
        }
        if ns.network_none {
            loopback_up()?;
        }
        check(
            libc::syscall(libc::SYS_pivot_root, ns.root.as_ptr(), ns.put_old.as_ptr()),
            b"pivot_root",
            &ns.root,
        )?;
        check(libc::chdir(c"/".as_ptr()) as _, b"chdir", &none)?;
        check(
            libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH) as _,
            b"detach old root",
            &none,
        )?;
        libc::rmdir(c"/.old".as_ptr());
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ) as _,
            b"remount root read-only",
            &none,
        )?;
        check(libc::chdir(ns.cwd.as_ptr()) as _, b"chdir", &ns.cwd)?;
        libc::umask(umask);
    }
    Ok(())
}

fn run_op(op: &MountOp) -> io::Result<()> {
    // SAFETY: system calls with NUL-terminated strings prepared by
    // the parent, or nulls where the call allows them.
    unsafe {
        match op {
            MountOp::Dir(path, mode) => {
                if libc::mkdir(path.as_ptr(), *mode) != 0
                    && *libc::__errno_location() != libc::EEXIST
                {
                    return check(-1, b"mkdir", path);
                }
            }
            MountOp::File(path) => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                );
                check(fd as _, b"create", path)?;
                libc::close(fd);
            }
            MountOp::Bind { src, dst, remount } => {
                check(
                    libc::mount(
                        cstr_ptr(src),
                        cstr_ptr(dst),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ) as _,
                    b"bind",
                    src,
                )?;
                if let Some(flags) = remount {
                    check(
                        libc::mount(
                            std::ptr::null(),
                            cstr_ptr(dst),
                            std::ptr::null(),
                            libc::MS_REMOUNT | libc::MS_BIND | flags,
                            std::ptr::null(),
                        ) as _,
                        b"remount read-only",
                        dst,
                    )?;
                }
            }
            MountOp::Tmpfs { dst, flags, data } => check(
                libc::mount(
                    c"tmpfs".as_ptr(),
                    cstr_ptr(dst),
                    c"tmpfs".as_ptr(),
                    *flags,
                    data.as_ptr().cast(),
                ) as _,
                b"mount tmpfs",
                dst,
            )?,
            MountOp::Proc(dst) => check(
                libc::mount(
                    c"proc".as_ptr(),
                    cstr_ptr(dst),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) as _,
                b"mount proc",
                dst,
            )?,
            MountOp::Symlink { target, link } => {
                check(
                    libc::symlink(target.as_ptr(), link.as_ptr()) as _,
                    b"symlink",
                    link,
                )?;
            }
            MountOp::Write { path, contents } => write_file(path, contents, true)?,
        }
    }
    Ok(())
}

/// Brings `lo` up in a new network namespace (`network = "none"`).
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket/ioctl/close on a local ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(s as _, b"socket", &CString::default())?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        libc::close(s);
        check(rc as _, b"bring up", &CString::default())?;
    }
    Ok(())
}

/// The last steps: the host user (root mode), no capabilities, no new
/// privileges, descriptors closed at exec, the seccomp filters.
fn drop_privileges(plan: &ChildPlan) -> io::Result<()> {
    let none = CString::default();
    // SAFETY: prctl/setgroups/setgid/setuid/close_range with
    // integer arguments; `getppid` has no preconditions.
    unsafe {
        if plan.harden.is_some() {
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                    && *libc::__errno_location() != libc::EINVAL
                {
                    return check(-1, b"drop capability", &none);
                }
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
        }
        if let Some(u) = plan.user {
            check(
                libc::setgroups(0, std::ptr::null()) as _,
                b"setgroups",
                &none,
            )?;
            check(libc::setgid(u.gid) as _, b"setgid", &none)?;
            check(libc::setuid(u.uid) as _, b"setuid", &none)?;
        }
        if plan.namespaces.is_none() {
            // setuid cleared it; the keeper set it otherwise (it is the parent).
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != plan.parent_pid {
                // The server died between fork and prctl.
                libc::_exit(1);
            }
        } else {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        if let Some(filters) = &plan.harden {
            // Inherited descriptors (a supervisor's, a socket activation's) close
            // at exec; the exec error pipe must stay open until then.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _,
                b"no_new_privs",
                &none,
            )?;
            super::seccomp::install(filters)?;
        }
    }
    Ok(())
}

/// SIGKILLs a whole process group.
pub fn kill_group(pgid: u32) {
    // SAFETY: killpg(2) has no memory-safety preconditions.
    unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
}
