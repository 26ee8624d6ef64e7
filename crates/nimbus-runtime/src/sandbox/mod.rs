//! Containment of an instance by the operating system.
//!
//! Limits are enforced by the kernel, never trusted to the handler:
//! - a new process group, so the whole tree is killed together;
//! - a cgroup per instance (v1 or v2, whichever the host offers) capping memory at
//!   the function's setting and the number of processes/threads, so a memory hog is
//!   OOM-killed and a fork bomb hits a wall without touching anyone else;
//! - rlimits for open files, core dumps and file size;
//! - when Nimbus runs as root, an unprivileged uid of the instance's own, so that
//!   instances cannot signal each other or read each other's files;
//! - `PR_SET_PDEATHSIG`, so instances die with the server instead of lingering.
//!
//! Without cgroups (an unprivileged user on a host without delegation) memory is
//! policed by sampling the instance's RSS, and process count by `RLIMIT_NPROC`;
//! Nimbus says so at startup.

mod cgroup;
mod process;

pub use cgroup::{CgroupSupport, InstanceCgroup};
pub use process::{ChildLimits, SandboxUser, UserPolicy, apply_in_child, kill_group};
