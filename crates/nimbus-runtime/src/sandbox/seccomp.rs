//! The system calls a function never needs, refused by a seccomp filter.
//!
//! A deny list, not an allow list: CPython, Node and arbitrary static
//! `bootstrap` binaries use a wide and changing set of calls, and an allow list
//! that misses one breaks a function in ways its author cannot diagnose. What
//! is refused is what reaches the kernel's least-audited paths or undoes the
//! sandbox: tracing other processes, mounting, new namespaces (user
//! namespaces above all), BPF, perf events, keyrings, userfaultfd, io_uring,
//! module loading, kexec, clock and swap changes, raw handle opens. Refused
//! calls fail with `EPERM` (the process can handle it) rather than killing it.
//! `clone3` answers `ENOSYS`, because its flags sit behind a pointer the filter
//! cannot read; glibc and Go then fall back to `clone`, whose flags the filter
//! checks. The x32 ABI (syscall numbers with bit 30 set) is refused as a whole.
//!
//! The filter is compiled once with `seccompiler` (Firecracker's compiler) and
//! installed in the child after `no_new_privs`, as the last step before `exec`.
//!
//! It is installed with `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: by default the kernel
//! forces its per-task speculative-execution mitigations on every filtered
//! process, which on the reference machine made a fresh Python cold start
//! ~40 ms slower. Functions then get the host's global policy, like every
//! other process; an operator who wants the mitigations for all of them sets
//! `spectre_v2_user=on spec_store_bypass_disable=on` on the kernel command line.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
};

/// Keeps the kernel from forcing its per-task speculation mitigations
/// (SSBD, STIBP, IBPB on every switch) on a process because it is filtered.
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;

/// Calls refused outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_uselib,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_fanotify_init,
    libc::SYS_personality,
];

/// `clone` flags that would create a namespace.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// The compiled filters, installed in this order.
#[derive(Debug, Clone)]
pub struct Filters {
    pub(crate) programs: Vec<BpfProgram>,
}

/// Compiles the instance filters for the architecture Nimbus was built for.
pub fn compile() -> Result<Filters, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    // `personality` is refused only for changes: glibc and Python query it.
    rules.insert(
        libc::SYS_personality,
        vec![
            SeccompRule::new(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0xffff_ffff)
                    .map_err(|e| e.to_string())?,
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0)
                    .map_err(|e| e.to_string())?,
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 8)
                    .map_err(|e| e.to_string())?,
            ])
            .map_err(|e| e.to_string())?,
        ],
    );
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )
            .map_err(|e| e.to_string())?;
            SeccompRule::new(vec![cond]).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let main: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e}"))?;
    Ok(Filters {
        programs: vec![x32_and_clone3(), main],
    })
}

/// A hand-written filter: `ENOSYS` for `clone3` and for every x32 call.
fn x32_and_clone3() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JGE_K, 0, 1, 0x4000_0000),
        op(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
        op(JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        op(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs `filters` on the calling thread. Runs between fork and exec: one
/// `seccomp(2)` call per filter, no allocation. `no_new_privs` must be set.
pub(crate) fn install(filters: &Filters) -> std::io::Result<()> {
    for p in &filters.programs {
        #[repr(C)]
        struct SockFprog {
            len: libc::c_ushort,
            filter: *const sock_filter,
        }
        let prog = SockFprog {
            len: p.len() as libc::c_ushort,
            filter: p.as_ptr(),
        };
        let install = |flags: libc::c_ulong| {
            // SAFETY: `prog` points at a live, correctly sized BPF program; the
            // kernel copies it before returning.
            unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &prog as *const SockFprog,
                )
            }
        };
        // SPEC_ALLOW: see the module documentation (kernels before 4.17 lack it).
        let mut rc = install(SECCOMP_FILTER_FLAG_SPEC_ALLOW);
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            rc = install(0);
        }
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
