//! What an instance sees: the private root filesystem, prepared in the parent.
//!
//! The root is a small tmpfs, read-only once built, holding:
//!
//! | path | what | how |
//! |---|---|---|
//! | `/usr`, `/bin`, `/lib*`, `/sbin` | the system | read-only binds (or the host's symlinks) |
//! | interpreter prefixes, bootstraps, `--python-path` | the runtime | read-only binds at their host paths |
//! | `/etc` | name service, TLS roots, loader cache | copies made at startup, a generated `passwd` |
//! | `/var/task` | the function's code (`LAMBDA_TASK_ROOT`) | a read-only bind |
//! | `/tmp` | scratch | a tmpfs of the function's ephemeral storage size |
//! | `/dev` | null, zero, full, random, urandom, a private `shm` | binds and a tmpfs |
//! | `/proc` | the instance's own processes | a new procfs for its PID namespace |
//! | `/run/runtime-api` | the Runtime API's Unix socket | a read-only bind |
//!
//! Nothing else of the host exists inside: no host `/tmp` or `/dev/shm`, no
//! data or run directory, no other function's code. The host view (which
//! directories, their locked mount flags, the `/etc` copies) is computed once
//! at startup ([`SystemView`]); each instance only prefixes paths with its root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::child::MountOp;

/// The directories and files of the host every instance sees, read-only.
#[derive(Debug, Clone, Default)]
pub struct SystemView {
    /// Directories bound at their own path, with the flags of their read-only
    /// remount (the source mount's locked flags kept).
    binds: Vec<(PathBuf, libc::c_ulong)>,
    /// Top-level symlinks of the host (`/bin -> usr/bin`), recreated.
    symlinks: Vec<(PathBuf, PathBuf)>,
    /// `/etc` files copied at startup.
    etc: Vec<(PathBuf, Arc<[u8]>)>,
    /// Flags for binding a function's code (the code cache's file system).
    code_flags: libc::c_ulong,
}

/// System directories shown when present.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// `/etc` directories shown read-only (TLS roots, alternatives symlinks).
const ETC_DIRS: &[&str] = &[
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
];
/// `/etc` files copied (name service, loader cache, time zone data).
const ETC_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/mime.types",
];

impl SystemView {
    /// The view for runtimes under `extra` (interpreter prefixes, bootstrap
    /// directories, library paths) with code cached under `code_root`.
    pub fn discover(extra: &[PathBuf], code_root: &Path) -> Self {
        let mut view = SystemView {
            code_flags: remount_flags(code_root),
            ..Default::default()
        };
        for dir in SYSTEM_DIRS {
            let p = Path::new(dir);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(p) {
                        view.symlinks.push((p.to_path_buf(), t));
                    }
                }
                Ok(m) if m.is_dir() => view.binds.push((p.to_path_buf(), remount_flags(p))),
                _ => {}
            }
        }
        for dir in ETC_DIRS {
            let p = Path::new(dir);
            if p.is_dir() {
                view.binds.push((p.to_path_buf(), remount_flags(p)));
            }
        }
        for file in ETC_FILES {
            if let Ok(bytes) = std::fs::read(file) {
                view.etc.push((PathBuf::from(file), bytes.into()));
            }
        }
        for p in extra {
            let Ok(p) = std::fs::canonicalize(p) else {
                continue;
            };
            if view.shows(&p) || !p.is_dir() {
                continue;
            }
            // A deeper path already bound is covered by this one.
            view.binds.retain(|(b, _)| !b.starts_with(&p));
            let flags = remount_flags(&p);
            view.binds.push((p, flags));
        }
        view
    }

    /// Whether `path` is visible inside (under a bound directory).
    fn shows(&self, path: &Path) -> bool {
        self.binds.iter().any(|(b, _)| path.starts_with(b))
            || self.symlinks.iter().any(|(l, _)| path.starts_with(l))
    }
}

/// What varies per instance.
pub struct InstanceView<'a> {
    /// The instance's root mount point (an empty host directory).
    pub root: &'a Path,
    /// The function's code, or `None` for a spare (mounted on assignment).
    pub code: Option<&'a Path>,
    /// The directory holding the Runtime API socket.
    pub socket_dir: &'a Path,
    /// The runtime's bootstrap directory, shown at `/var/runtime`.
    pub runtime: Option<&'a Path>,
    pub tmp_mb: u32,
    /// The uid and gid the instance's files belong to, as seen inside.
    pub uid: u32,
    pub gid: u32,
}

/// Where things are inside every instance.
pub const TASK_ROOT: &str = "/var/task";
pub const SOCKET_DIR: &str = "/run/runtime-api";
/// The bootstrap's directory (`LAMBDA_RUNTIME_DIR`).
pub const RUNTIME_DIR: &str = "/var/runtime";
/// The private `/dev/shm` (POSIX shared memory, multiprocessing).
const SHM_MB: u32 = 64;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// `root` joined with an absolute inside path.
fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// Builds the steps that make `iv.root` the instance's root.
pub(crate) fn build(view: &SystemView, iv: &InstanceView<'_>) -> Vec<MountOp> {
    let mut ops = Vec::with_capacity(64);
    let (uid, gid) = (iv.uid, iv.gid);
    let mut made: Vec<PathBuf> = Vec::new();
    let mkdirs =
        |made: &mut Vec<PathBuf>, ops: &mut Vec<MountOp>, inside: &Path, mode: libc::mode_t| {
            let mut acc = PathBuf::from("/");
            for c in inside.components().skip(1) {
                acc.push(c);
                if !made.contains(&acc) {
                    made.push(acc.clone());
                    ops.push(MountOp::Dir(cstr(&under(iv.root, &acc)), mode));
                }
            }
        };
    mkdirs(&mut made, &mut ops, Path::new("/tmp"), 0o755);
    ops.push(MountOp::Tmpfs {
        dst: cstr(&under(iv.root, Path::new("/tmp"))),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: CString::new(format!(
            "size={}m,mode=0700,uid={uid},gid={gid}",
            iv.tmp_mb.max(1)
        ))
        .unwrap_or_default(),
    });
    for (link, target) in &view.symlinks {
        ops.push(MountOp::Symlink {
            target: cstr(target),
            link: cstr(&under(iv.root, link)),
        });
        made.push(link.clone());
    }
    for (dir, flags) in &view.binds {
        mkdirs(&mut made, &mut ops, dir, 0o755);
        ops.push(MountOp::Bind {
            src: cstr(dir),
            dst: cstr(&under(iv.root, dir)),
            remount: Some(*flags),
        });
    }
    mkdirs(&mut made, &mut ops, Path::new("/etc"), 0o755);
    for (file, contents) in &view.etc {
        ops.push(MountOp::Write {
            path: cstr(&under(iv.root, file)),
            contents: contents.clone(),
        });
    }
    ops.push(MountOp::Write {
        path: cstr(&under(iv.root, Path::new("/etc/passwd"))),
        contents: format!(
            "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:{uid}:{gid}::/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        )
        .into_bytes()
        .into(),
    });
    ops.push(MountOp::Write {
        path: cstr(&under(iv.root, Path::new("/etc/group"))),
        contents: format!("root:x:0:\nsbx_user1051:x:{gid}:\nnogroup:x:65534:\n")
            .into_bytes()
            .into(),
    });
    if let Ok(zone) = std::fs::read_link("/etc/localtime") {
        ops.push(MountOp::Symlink {
            target: cstr(&zone),
            link: cstr(&under(iv.root, Path::new("/etc/localtime"))),
        });
    }

    // /dev: a few device nodes and a private shm.
    mkdirs(&mut made, &mut ops, Path::new("/dev"), 0o755);
    ops.push(MountOp::Tmpfs {
        dst: cstr(&under(iv.root, Path::new("/dev"))),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: c"size=64k,mode=0755".into(),
    });
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(dev);
        if !host.exists() {
            continue;
        }
        let inside = under(iv.root, &host);
        ops.push(MountOp::File(cstr(&inside)));
        ops.push(MountOp::Bind {
            src: cstr(&host),
            dst: cstr(&inside),
            remount: None,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: CString::new(target).unwrap_or_default(),
            link: cstr(&under(iv.root, &Path::new("/dev").join(link))),
        });
    }
    let shm = under(iv.root, Path::new("/dev/shm"));
    ops.push(MountOp::Dir(cstr(&shm), 0o755));
    ops.push(MountOp::Tmpfs {
        dst: cstr(&shm),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: CString::new(format!("size={SHM_MB}m,mode=0700,uid={uid},gid={gid}"))
            .unwrap_or_default(),
    });

    mkdirs(&mut made, &mut ops, Path::new("/proc"), 0o555);
    ops.push(MountOp::Proc(cstr(&under(iv.root, Path::new("/proc")))));

    mkdirs(&mut made, &mut ops, Path::new(TASK_ROOT), 0o755);
    ops.push(MountOp::Symlink {
        target: c"/tmp".into(),
        link: cstr(&under(iv.root, Path::new("/var/tmp"))),
    });
    if let Some(code) = iv.code {
        ops.push(MountOp::Bind {
            src: cstr(code),
            dst: cstr(&under(iv.root, Path::new(TASK_ROOT))),
            remount: Some(view.code_flags),
        });
    }
    if let Some(dir) = iv.runtime {
        mkdirs(&mut made, &mut ops, Path::new(RUNTIME_DIR), 0o755);
        ops.push(MountOp::Bind {
            src: cstr(dir),
            dst: cstr(&under(iv.root, Path::new(RUNTIME_DIR))),
            remount: Some(view.code_flags),
        });
    }
    mkdirs(&mut made, &mut ops, Path::new("/opt"), 0o755);
    mkdirs(&mut made, &mut ops, Path::new(SOCKET_DIR), 0o755);
    ops.push(MountOp::Bind {
        src: cstr(iv.socket_dir),
        dst: cstr(&under(iv.root, Path::new(SOCKET_DIR))),
        remount: Some(
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | view.code_flags,
        ),
    });
    mkdirs(&mut made, &mut ops, Path::new("/.old"), 0o700);
    ops
}

/// `root/.old` and `root/var/task` for the plan.
pub(crate) fn pivot_paths(root: &Path) -> (CString, CString, CString) {
    (
        cstr(root),
        cstr(&root.join(".old")),
        cstr(&under(root, Path::new(TASK_ROOT))),
    )
}

pub(crate) fn path_cstr(p: &Path) -> CString {
    cstr(p)
}

/// The flags of a read-only remount of a bind of `path`: read-only, nosuid,
/// nodev, plus the flags the source mount has (a user namespace may not clear
/// them: `EPERM`).
fn remount_flags(path: &Path) -> libc::c_ulong {
    let mut flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    let c = cstr(path);
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) into a local struct with a NUL-terminated path.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
        let f = st.f_flag;
        for (st_flag, ms_flag) in [
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if f & st_flag != 0 {
                flags |= ms_flag;
            }
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_are_bound_or_linked_and_extra_prefixes_added() {
        let view = SystemView::discover(
            &[PathBuf::from("/usr/bin"), PathBuf::from("/etc")],
            Path::new("/"),
        );
        assert!(view.shows(Path::new("/usr/bin/env")));
        // /usr/bin is under /usr already; /etc itself is never shown whole.
        assert!(!view.binds.iter().any(|(p, _)| p == Path::new("/usr/bin")));
        assert!(view.binds.iter().any(|(p, _)| p == Path::new("/etc")));
    }

    #[test]
    fn every_mount_target_has_its_directory_made_first() {
        let view = SystemView::discover(&[], Path::new("/"));
        let ops = build(
            &view,
            &InstanceView {
                root: Path::new("/r"),
                code: Some(Path::new("/code/abc")),
                socket_dir: Path::new("/w/rt"),
                runtime: Some(Path::new("/rt/python")),
                tmp_mb: 512,
                uid: 993,
                gid: 990,
            },
        );
        let mut dirs: Vec<&[u8]> = vec![b"/r"];
        for op in &ops {
            let target: &CString = match op {
                MountOp::Dir(p, _) => {
                    dirs.push(p.as_bytes());
                    continue;
                }
                MountOp::Bind { dst, .. } | MountOp::Tmpfs { dst, .. } | MountOp::Proc(dst) => dst,
                MountOp::File(p) | MountOp::Write { path: p, .. } => p,
                MountOp::Symlink { link, .. } => link,
            };
            let parent = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()))
                .parent()
                .unwrap();
            let linked = view
                .symlinks
                .iter()
                .any(|(l, _)| under(Path::new("/r"), l) == parent);
            assert!(
                linked || dirs.contains(&parent.as_os_str().as_bytes()),
                "{target:?} before its directory"
            );
        }
        let tmp = ops.iter().find_map(|op| match op {
            MountOp::Tmpfs { dst, data, .. } if dst.as_bytes() == b"/r/tmp" => Some(data),
            _ => None,
        });
        assert_eq!(
            tmp.unwrap().to_str().unwrap(),
            "size=512m,mode=0700,uid=993,gid=990"
        );
    }
}
