//! Spare instances: processes started before any function needs them.
//!
//! Most of a cold start is the interpreter starting and the bootstrap loading;
//! only the rest (importing the handler) depends on the function. A spare is an
//! instance started with its runtime's bootstrap but no function: it waits on its
//! Runtime API for an assignment. A cold start of that runtime takes the spare,
//! which receives its function's task root and environment and goes on exactly as
//! a freshly started instance would, while a replacement spare starts in the
//! background. SOCK (USENIX ATC 2018) forks pre-initialised "zygote"
//! interpreters instead; forking needs the interpreter's cooperation and rules
//! out Node, whereas a waiting process works for every bootstrap and keeps each
//! instance its own process, uid, cgroup and private `/tmp` from the start.
//!
//! Spares are kept per *shape*, the command line a process was started with:
//! one for Python, one per memory size for Node (V8's heap limit is a flag). A
//! shape gets spares once an instance of it was started and loses them after
//! `spare_idle` without one, so an idle server still scales to zero.
//!
//! Some settings only act when a process starts (`LD_PRELOAD`,
//! `LD_LIBRARY_PATH` for the process itself, `PYTHON*` interpreter flags,
//! `NODE_OPTIONS`): functions that set such variables are always started fresh.

use crate::runtime_api::RuntimeApiServer;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::Runtime;
use tokio::sync::{mpsc, oneshot};

use crate::LogLine;
use crate::instance::{
    InstancePaths, Launcher, ProcessInstance, node_heap_mb, process_environment,
};
use crate::spec::InstanceSpec;

/// Which spares an instance can use: the process command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    runtime: Runtime,
    /// Node's `--max-old-space-size`; 0 for Python.
    heap_mb: u64,
    /// The size of the private `/tmp` and the network namespace are made
    /// when the process starts.
    tmp_mb: u32,
    network: nimbus_core::Network,
}

struct Spares {
    ready: Vec<ProcessInstance>,
    starting: usize,
    /// When an instance of this shape was last started.
    wanted: Instant,
}

#[derive(Default)]
pub(crate) struct SparePool {
    shapes: Mutex<HashMap<Shape, Spares>>,
    reaper: AtomicBool,
}

impl SparePool {
    /// Every spare, taken out (server shutdown).
    pub(crate) fn drain(&self) -> Vec<ProcessInstance> {
        let mut shapes = self.shapes.lock().unwrap_or_else(|p| p.into_inner());
        shapes.drain().flat_map(|(_, s)| s.ready).collect()
    }

    /// Spares ready now, for tests and metrics.
    pub(crate) fn ready(&self) -> usize {
        let shapes = self.shapes.lock().unwrap_or_else(|p| p.into_inner());
        shapes.values().map(|s| s.ready.len()).sum()
    }
}

/// Environment variables that only take effect when a process starts.
fn acts_at_startup(name: &str) -> bool {
    name.starts_with("LD_")
        || name.starts_with("MALLOC_")
        || name == "GLIBC_TUNABLES"
        || (name.starts_with("PYTHON") && name != "PYTHONPATH")
        || (name.starts_with("NODE_") && name != "NODE_PATH")
        || name == "UV_THREADPOOL_SIZE"
}

fn shape_of(launcher: &Launcher, spec: &InstanceSpec) -> Option<Shape> {
    if launcher.config.spares == 0 || spec.environment.keys().any(|k| acts_at_startup(k)) {
        return None;
    }
    match spec.runtime {
        Runtime::Python3 => Some(Shape {
            runtime: Runtime::Python3,
            heap_mb: 0,
            tmp_mb: spec.ephemeral_storage_mb,
            network: spec.network,
        }),
        Runtime::Nodejs => Some(Shape {
            runtime: Runtime::Nodejs,
            heap_mb: node_heap_mb(spec.memory_mb),
            tmp_mb: spec.ephemeral_storage_mb,
            network: spec.network,
        }),
        Runtime::Provided => None,
    }
}

/// A started instance of `spec` made from a spare, if one of its shape is ready.
/// Either way, the shape is marked as wanted and its spares are topped up.
pub(crate) async fn take(
    launcher: &Arc<Launcher>,
    spec: &Arc<InstanceSpec>,
    logs: &mpsc::Sender<LogLine>,
) -> Option<ProcessInstance> {
    let shape = shape_of(launcher, spec)?;
    let mut taken = None;
    {
        let mut shapes = launcher
            .spares
            .shapes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let spares = shapes.entry(shape).or_insert_with(|| Spares {
            ready: Vec::new(),
            starting: 0,
            wanted: Instant::now(),
        });
        spares.wanted = Instant::now();
        while let Some(mut spare) = spares.ready.pop() {
            if !spare.has_exited() {
                taken = Some(spare);
                break;
            }
        }
    }
    refill(launcher, shape, spec, logs);
    let mut spare = taken?;
    match spare.assign(spec.clone(), &launcher.config).await {
        Ok(()) => Some(spare),
        Err(e) => {
            tracing::warn!(function = %spec.function, "cannot use a spare instance: {e}");
            None
        }
    }
}

/// Starts spares of `shape` in the background until `config.spares` are ready
/// or starting.
fn refill(
    launcher: &Arc<Launcher>,
    shape: Shape,
    template: &InstanceSpec,
    logs: &mpsc::Sender<LogLine>,
) {
    let need = {
        let mut shapes = launcher
            .spares
            .shapes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(spares) = shapes.get_mut(&shape) else {
            return;
        };
        let need = launcher
            .config
            .spares
            .saturating_sub(spares.ready.len() + spares.starting);
        spares.starting += need;
        need
    };
    for _ in 0..need {
        let launcher = launcher.clone();
        let logs = logs.clone();
        let spec = Arc::new(InstanceSpec {
            function: "(spare)".into(),
            version: String::new(),
            handler: String::new(),
            environment: BTreeMap::new(),
            ..template.clone()
        });
        tokio::spawn(async move {
            let started = launcher.launch(spec, logs, Some(oneshot::channel())).await;
            let mut shapes = launcher
                .spares
                .shapes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A shape reaped meanwhile drops the new spare here.
            if let Some(spares) = shapes.get_mut(&shape) {
                spares.starting -= 1;
                match started {
                    Ok(spare) => spares.ready.push(spare),
                    Err(e) => tracing::warn!("cannot start a spare instance: {e}"),
                }
            }
        });
    }
    start_reaper(launcher);
}

/// Stops the spares of shapes nobody started an instance of for `spare_idle`.
fn start_reaper(launcher: &Arc<Launcher>) {
    if launcher.spares.reaper.swap(true, Ordering::AcqRel) {
        return;
    }
    let idle = launcher.config.spare_idle;
    let weak: Weak<Launcher> = Arc::downgrade(launcher);
    tokio::spawn(async move {
        let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::time::sleep(period).await;
            let Some(launcher) = weak.upgrade() else {
                return;
            };
            let stale: Vec<ProcessInstance> = {
                let mut shapes = launcher
                    .spares
                    .shapes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let expired: Vec<Shape> = shapes
                    .iter()
                    .filter(|(_, s)| s.wanted.elapsed() >= idle)
                    .map(|(k, _)| *k)
                    .collect();
                expired
                    .into_iter()
                    .filter_map(|k| shapes.remove(&k))
                    .flat_map(|s| s.ready)
                    .collect()
            };
            for spare in stale {
                crate::Instance::shutdown(Box::new(spare)).await;
            }
        }
    });
}

/// The environment a spare starts with: enough to load its bootstrap and reach
/// its Runtime API, nothing of any function.
pub(crate) fn environment(
    spec: &InstanceSpec,
    api: &RuntimeApiServer,
    runtime_dir: &Path,
    paths: &InstancePaths,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("AWS_LAMBDA_RUNTIME_API".to_string(), api.addr.to_string()),
        ("NIMBUS_SPARE".to_string(), "1".to_string()),
        (
            "LAMBDA_RUNTIME_DIR".to_string(),
            runtime_dir.display().to_string(),
        ),
    ]);
    process_environment(&mut env, spec.runtime, paths, api);
    env
}

/// The assignment a spare's bootstrap receives: the task root, then
/// `NAME=value` entries, NUL-separated (environment strings cannot hold NUL).
pub(crate) fn assignment(code_dir: &Path, env: &BTreeMap<String, String>) -> Bytes {
    use std::os::unix::ffi::OsStrExt;
    let mut body = code_dir.as_os_str().as_bytes().to_vec();
    for (k, v) in env {
        body.push(0);
        body.extend_from_slice(k.as_bytes());
        body.push(b'=');
        body.extend_from_slice(v.as_bytes());
    }
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_only_variables_keep_a_function_off_spares() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PYTHONHASHSEED",
            "NODE_OPTIONS",
        ] {
            assert!(acts_at_startup(name), "{name}");
        }
        for name in ["PYTHONPATH", "NODE_PATH", "TABLE_NAME", "AWS_REGION"] {
            assert!(!acts_at_startup(name), "{name}");
        }
    }

    #[test]
    fn assignment_is_the_task_root_then_nul_separated_entries() {
        let env = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("B".into(), "x=y".into()),
        ]);
        let body = assignment(Path::new("/code"), &env);
        assert_eq!(&body[..], b"/code\0A=1\0B=x=y");
    }
}
