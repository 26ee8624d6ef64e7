use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which cgroup hierarchy Nimbus can use on this host.
#[derive(Debug, Clone)]
pub enum CgroupSupport {
    /// cgroup v2: one directory per instance under `base`.
    V2 { base: PathBuf },
    /// cgroup v1: parallel directories in the memory and pids hierarchies, and
    /// in the cpu and freezer hierarchies when the host mounts them.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
        freezer: Option<PathBuf>,
    },
    /// No usable cgroups; limits fall back to rlimits and RSS sampling.
    None { reason: String },
}

impl CgroupSupport {
    /// Finds a writable hierarchy and creates Nimbus's parent group in it, named
    /// after `tag` so that several servers on one host do not collide.
    pub fn detect(tag: &str) -> Self {
        match Self::try_detect(tag) {
            Ok(s) => s,
            Err(e) => CgroupSupport::None {
                reason: e.to_string(),
            },
        }
    }

    fn try_detect(tag: &str) -> io::Result<Self> {
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers");
        if unified.exists() {
            // cgroup v2: controllers can only be enabled for children of a group
            // without processes of its own, so move ourselves into a leaf first.
            let rel = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let mine = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
            let server_leaf = mine.join(format!("{tag}-server"));
            fs::create_dir_all(&server_leaf)?;
            fs::write(
                server_leaf.join("cgroup.procs"),
                std::process::id().to_string(),
            )?;
            fs::write(mine.join("cgroup.subtree_control"), "+memory +pids")?;
            // CPU limits where the controller can be delegated (not fatal).
            let _ = fs::write(mine.join("cgroup.subtree_control"), "+cpu");
            let base = mine.join(tag);
            fs::create_dir_all(&base)?;
            fs::write(base.join("cgroup.subtree_control"), "+memory +pids")?;
            let _ = fs::write(base.join("cgroup.subtree_control"), "+cpu");
            return Ok(CgroupSupport::V2 { base });
        }
        let find = |controller: &str| -> io::Result<PathBuf> {
            let rel = own
                .lines()
                .find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                    ctrls
                        .split(',')
                        .any(|c| c == controller)
                        .then(|| path.to_string())
                })
                .ok_or_else(|| io::Error::other(format!("no {controller} cgroup controller")))?;
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(rel.trim_start_matches('/'))
                .join(tag);
            fs::create_dir_all(&dir)?;
            Ok(dir)
        };
        let memory = find("memory")?;
        let pids = find("pids")?;
        let cpu = find("cpu").ok();
        let freezer = find("freezer").ok();
        // Probe that we may actually create and configure groups here.
        let probe = memory.join("probe");
        fs::create_dir_all(&probe)?;
        let ok = fs::write(probe.join("memory.limit_in_bytes"), "134217728");
        let _ = fs::remove_dir(&probe);
        ok?;
        Ok(CgroupSupport::V1 {
            memory,
            pids,
            cpu,
            freezer,
        })
    }

    /// What the groups control, for `nimbus up`.
    pub fn controllers(&self) -> Vec<&'static str> {
        match self {
            CgroupSupport::None { .. } => vec![],
            CgroupSupport::V2 { base } => {
                let mut c = vec!["memory", "pids", "freezer"];
                if fs::read_to_string(base.join("cgroup.subtree_control"))
                    .is_ok_and(|s| s.split_whitespace().any(|x| x == "cpu"))
                {
                    c.push("cpu");
                }
                c
            }
            CgroupSupport::V1 { cpu, freezer, .. } => {
                let mut c = vec!["memory", "pids"];
                if cpu.is_some() {
                    c.push("cpu");
                }
                if freezer.is_some() {
                    c.push("freezer");
                }
                c
            }
        }
    }

    /// This server's groups, one per hierarchy, whose children are the
    /// instances' groups.
    pub fn server_groups(&self) -> Vec<&Path> {
        match self {
            CgroupSupport::None { .. } => vec![],
            CgroupSupport::V2 { base } => vec![base],
            CgroupSupport::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => [Some(memory), Some(pids), cpu.as_ref(), freezer.as_ref()]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
                .collect(),
        }
    }

    /// Removes instance groups left by servers that died without cleaning up
    /// (their tags hold their pid, and that pid is gone or is not a nimbus).
    pub fn sweep_stale(&self) {
        if !self.is_available() {
            return;
        }
        let parents: Vec<PathBuf> = self
            .server_groups()
            .into_iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            // A hybrid host's unified hierarchy holds the network filter's group.
            .chain([PathBuf::from("/sys/fs/cgroup/unified")])
            .collect();
        for parent in parents {
            let Ok(entries) = fs::read_dir(&parent) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name
                    .strip_prefix("nimbus-")
                    .and_then(|p| p.trim_end_matches("-server").parse::<u32>().ok())
                else {
                    continue;
                };
                let alive = fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "nimbus");
                if alive {
                    continue;
                }
                let dir = e.path();
                if let Ok(kids) = fs::read_dir(&dir) {
                    for k in kids.flatten().filter(|k| k.path().is_dir()) {
                        let procs = k.path().join("cgroup.procs");
                        if let Ok(list) = fs::read_to_string(&procs) {
                            for p in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                                // SAFETY: kill(2) has no memory-safety preconditions.
                                unsafe { libc::kill(p, libc::SIGKILL) };
                            }
                        }
                        let _ = fs::write(k.path().join("freezer.state"), "THAWED");
                        let _ = fs::write(k.path().join("cgroup.freeze"), "0");
                        let _ = fs::remove_dir(k.path());
                    }
                }
                let _ = fs::remove_dir(&dir);
            }
        }
    }

    pub fn is_available(&self) -> bool {
        !matches!(self, CgroupSupport::None { .. })
    }

    /// Creates the group for one instance with its limits set. The CPU share
    /// (weight under contention) is in proportion to memory from the start; the
    /// CFS quota is set once initialisation is done
    /// ([`InstanceCgroup::set_cpu_quota`]), as Lambda boosts init.
    pub fn create(
        &self,
        instance: &str,
        memory_bytes: u64,
        max_pids: u32,
    ) -> io::Result<Option<InstanceCgroup>> {
        match self {
            CgroupSupport::None { .. } => Ok(None),
            CgroupSupport::V2 { base } => {
                let dir = base.join(instance);
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                fs::write(dir.join("pids.max"), max_pids.to_string())?;
                // Kill the whole group on OOM, so a later, unrelated exit is never
                // mistaken for an out-of-memory kill of one child.
                let _ = fs::write(dir.join("memory.oom.group"), "1");
                let cpu = dir.join("cpu.max");
                let has_cpu = cpu.exists();
                if has_cpu {
                    let _ = fs::write(
                        dir.join("cpu.weight"),
                        weight(memory_bytes, 100).to_string(),
                    );
                }
                Ok(Some(InstanceCgroup {
                    procs: vec![dir.join("cgroup.procs")],
                    dirs: vec![dir.clone()],
                    peak: File::open(dir.join("memory.peak")).ok(),
                    oom_events: dir.join("memory.events"),
                    cpu: has_cpu.then_some(CpuFile::V2(cpu)),
                    freeze: Some(FreezeFile::V2(dir.join("cgroup.freeze"))),
                }))
            }
            CgroupSupport::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => {
                let m = memory.join(instance);
                let p = pids.join(instance);
                fs::create_dir_all(&m)?;
                fs::create_dir_all(&p)?;
                fs::write(m.join("memory.limit_in_bytes"), memory_bytes.to_string())?;
                // Without swap accounting this file is absent; the limit above still holds.
                let _ = fs::write(
                    m.join("memory.memsw.limit_in_bytes"),
                    memory_bytes.to_string(),
                );
                fs::write(p.join("pids.max"), max_pids.to_string())?;
                let mut procs = vec![m.join("cgroup.procs"), p.join("cgroup.procs")];
                let mut dirs = vec![m.clone(), p];
                let mut cpu_file = None;
                if let Some(cpu) = cpu {
                    let c = cpu.join(instance);
                    fs::create_dir_all(&c)?;
                    let _ = fs::write(c.join("cpu.shares"), weight(memory_bytes, 1024).to_string());
                    procs.push(c.join("cgroup.procs"));
                    cpu_file = Some(CpuFile::V1(c.clone()));
                    dirs.push(c);
                }
                let mut freeze = None;
                if let Some(fz) = freezer {
                    let f = fz.join(instance);
                    fs::create_dir_all(&f)?;
                    procs.push(f.join("cgroup.procs"));
                    freeze = Some(FreezeFile::V1(f.join("freezer.state")));
                    dirs.push(f);
                }
                Ok(Some(InstanceCgroup {
                    procs,
                    dirs,
                    peak: File::open(m.join("memory.max_usage_in_bytes")).ok(),
                    oom_events: m.join("memory.oom_control"),
                    cpu: cpu_file,
                    freeze,
                }))
            }
        }
    }
}

/// The cgroup(s) of one instance.
#[derive(Debug)]
pub struct InstanceCgroup {
    procs: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    /// Kept open: read after every invocation, one `pread` instead of open/read/close.
    peak: Option<File>,
    oom_events: PathBuf,
    cpu: Option<CpuFile>,
    freeze: Option<FreezeFile>,
}

/// Where an instance's CFS quota is set.
#[derive(Debug, Clone)]
enum CpuFile {
    /// The group's directory (`cpu.cfs_quota_us`, `cpu.cfs_period_us`).
    V1(PathBuf),
    /// `cpu.max`.
    V2(PathBuf),
}

/// Where an instance is frozen and thawed.
#[derive(Debug, Clone)]
pub(crate) enum FreezeFile {
    /// `freezer.state`: `FROZEN` / `THAWED`.
    V1(PathBuf),
    /// `cgroup.freeze`: `1` / `0`.
    V2(PathBuf),
}

impl FreezeFile {
    pub(crate) fn set(&self, frozen: bool) -> io::Result<()> {
        match (self, frozen) {
            (FreezeFile::V1(p), true) => fs::write(p, "FROZEN"),
            (FreezeFile::V1(p), false) => fs::write(p, "THAWED"),
            (FreezeFile::V2(p), true) => fs::write(p, "1"),
            (FreezeFile::V2(p), false) => fs::write(p, "0"),
        }
    }
}

/// CPU weight in proportion to memory: `unit` for 1,769 MB (one vCPU).
fn weight(memory_bytes: u64, unit: u64) -> u64 {
    (memory_bytes / (1024 * 1024) * unit / 1769).clamp(2, 10_000)
}

/// CFS period for quotas: 20 ms, so a throttled instance waits at most that long.
const CFS_PERIOD_US: u64 = 20_000;

impl InstanceCgroup {
    /// Opens the `cgroup.procs` files for the child to write its own pid into
    /// before exec (see [`super::apply_in_child`]); this leaves no window in which the
    /// child runs outside its limits.
    pub fn open_procs(&self) -> io::Result<Vec<File>> {
        self.procs
            .iter()
            .map(|p| OpenOptions::new().write(true).open(p))
            .collect()
    }

    /// Changes the memory limit (a spare instance taking on a function).
    pub fn set_memory_limit(&self, bytes: u64) -> io::Result<()> {
        let dir = &self.dirs[0];
        let v2 = dir.join("memory.max");
        if v2.exists() {
            return fs::write(v2, bytes.to_string());
        }
        // v1 keeps memory+swap >= memory: write the pair in whichever order the
        // direction of the change allows (one of the memsw writes fails, harmlessly).
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let _ = fs::write(&memsw, bytes.to_string());
        fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
        let _ = fs::write(&memsw, bytes.to_string());
        Ok(())
    }

    /// Sets the CFS quota to `cpus` CPUs (`None`: no limit).
    pub fn set_cpu_quota(&self, cpus: Option<f64>) -> io::Result<()> {
        let Some(file) = &self.cpu else {
            return Ok(());
        };
        let quota = cpus.map(|c| ((c * CFS_PERIOD_US as f64) as u64).max(1000));
        match file {
            CpuFile::V1(dir) => {
                // The quota must fit the current period: widen the quota first.
                let _ = fs::write(dir.join("cpu.cfs_quota_us"), "-1");
                fs::write(dir.join("cpu.cfs_period_us"), CFS_PERIOD_US.to_string())?;
                match quota {
                    Some(q) => fs::write(dir.join("cpu.cfs_quota_us"), q.to_string()),
                    None => Ok(()),
                }
            }
            CpuFile::V2(path) => match quota {
                Some(q) => fs::write(path, format!("{q} {CFS_PERIOD_US}")),
                None => fs::write(path, format!("max {CFS_PERIOD_US}")),
            },
        }
    }

    /// The freezer file, when the host has the freezer.
    pub(crate) fn freezer(&self) -> Option<FreezeFile> {
        self.freeze.clone()
    }

    /// Peak memory use of the group in bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 32];
        let n = self.peak.as_ref()?.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// Whether the kernel OOM-killed something in the group.
    pub fn oom_killed(&self) -> bool {
        fs::read_to_string(&self.oom_events)
            .map(|s| {
                s.lines().any(|l| {
                    let mut it = l.split_whitespace();
                    matches!((it.next(), it.next()), (Some("oom_kill"), Some(n)) if n != "0")
                })
            })
            .unwrap_or(false)
    }

    /// SIGKILLs every process left in the group (including any that left the
    /// process group with `setsid`).
    pub fn kill_all(&self) {
        for p in &self.procs {
            if let Ok(s) = fs::read_to_string(p) {
                for pid in s.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        // Frozen tasks act on SIGKILL only once thawed.
        if let Some(f) = &self.freeze {
            let _ = f.set(false);
        }
    }

    /// Removes the group; retries briefly while the kernel reaps the last tasks.
    pub async fn remove(self) {
        for dir in &self.dirs {
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => {
                        self.kill_all();
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }
}

/// Writes `pid` into an open `cgroup.procs` file without allocating
/// (this runs between fork and exec).
pub(crate) fn write_pid(file: &mut File, pid: i32) -> io::Result<()> {
    let mut buf = [0u8; 12];
    let mut n = pid as u32;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    file.write_all(&buf[i..])
}
