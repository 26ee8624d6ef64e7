//! Freezing idle instances, as Lambda freezes an execution environment
//! between invocations: a process a handler left running (a spinning child, a
//! timer) makes no progress while nobody invokes the function, and resumes
//! with the next invocation.
//!
//! Freezing is not free: on cgroup v1 a freeze and a thaw cost about 0.75 ms
//! together on the reference machine, far more than a warm invocation. So an
//! instance is frozen only once it has been idle for `after` (default 100 ms),
//! by a task of its own, off the invocation path; an instance called more
//! often than that never pays for it, and the warm path costs two atomic
//! operations and a wake-up. The thaw of a frozen instance is on the path of
//! its next invocation (a cgroup write).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use super::cgroup::FreezeFile;

struct Shared {
    file: FreezeFile,
    /// Changes whenever the instance starts or ends an invocation.
    generation: AtomicU64,
    busy: AtomicBool,
    /// Whether the group is frozen; held while the state changes.
    frozen: Mutex<bool>,
    wake: Notify,
    after: Duration,
}

/// The freezer of one instance.
pub struct Freezer {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Freezer {
    pub(crate) fn start(file: FreezeFile, after: Duration) -> Self {
        let shared = Arc::new(Shared {
            file,
            generation: AtomicU64::new(0),
            busy: AtomicBool::new(true),
            frozen: Mutex::new(false),
            wake: Notify::new(),
            after,
        });
        let task = tokio::spawn(run(shared.clone()));
        Self { shared, task }
    }

    /// Before an invocation: thaws the instance if it was frozen.
    pub async fn busy(&self) {
        self.shared.busy.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let mut frozen = self.shared.frozen.lock().await;
        if *frozen {
            let file = self.shared.file.clone();
            let _ = tokio::task::spawn_blocking(move || file.set(false)).await;
            *frozen = false;
        }
    }

    /// After an invocation: the instance is idle, and frozen if it stays so.
    pub fn idle(&self) {
        self.shared.busy.store(false, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Thaws for good (before the instance is killed: frozen tasks act on
    /// SIGKILL only once thawed) and stops the task.
    pub fn stop(&self) {
        self.task.abort();
        let _ = self.shared.file.set(false);
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        loop {
            let seen = shared.generation.load(Ordering::SeqCst);
            tokio::time::sleep(shared.after).await;
            if shared.busy.load(Ordering::SeqCst) {
                break;
            }
            if shared.generation.load(Ordering::SeqCst) != seen {
                // Invoked and idle again meanwhile: wait a full period from now.
                continue;
            }
            let mut frozen = shared.frozen.lock().await;
            if shared.busy.load(Ordering::SeqCst)
                || shared.generation.load(Ordering::SeqCst) != seen
            {
                break;
            }
            let file = shared.file.clone();
            if let Ok(Ok(())) = tokio::task::spawn_blocking(move || file.set(true)).await {
                *frozen = true;
            }
            break;
        }
    }
}
