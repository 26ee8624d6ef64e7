//! Runtimes: how an instance starts, how it is contained, and how it talks.
//!
//! Every instance here is a sandboxed process tree that speaks the AWS Lambda
//! Runtime API to a small HTTP server Nimbus runs for that instance alone
//! ([`runtime_api`]). Python and Node instances run Nimbus's embedded bootstraps
//! ([`bootstraps`]); `provided` instances run the package's own `bootstrap`, so the
//! official runtime clients (awslambdaric, lambda_runtime, aws-lambda-ric) work
//! unchanged. Containment ([`sandbox`]) comes from the OS: a process group, cgroups
//! for memory and process count when the host offers them, rlimits, an
//! unprivileged user and a scrubbed environment.
//!
//! The scheduler only sees the [`InstanceFactory`] and [`Instance`] traits, so a
//! WebAssembly runtime can slot in beside the process runtime.

pub mod bootstraps;
mod instance;
pub mod listener;
mod log_pipe;
pub mod runtime_api;
pub mod sandbox;
mod spare;
mod spec;

use async_trait::async_trait;

pub use instance::{Interpreter, ProcessFactory, ProcessRuntimeConfig};
pub use log_pipe::{LINE_OVERHEAD, LogCharge, LogDrops, LogGate, LogLine, install_log_gate};
pub use spec::{Dispatch, InstanceSpec, InvokeResult, Outcome, StreamPart, StreamTarget};

/// Why an instance could not be started at all (not a function failure).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare the instance directory {path}: {source}")]
    Workdir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the Runtime API server: {0}")]
    RuntimeApi(std::io::Error),
    #[error("cannot create the log pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot set up the sandbox: {0}")]
    Sandbox(String),
}

/// Starts instances of one kind (process, later wasm).
#[async_trait]
pub trait InstanceFactory: Send + Sync + 'static {
    /// Starts an instance. Initialisation continues in the background; the first
    /// [`Instance::invoke`] waits for it and reports its duration.
    async fn start(
        &self,
        spec: std::sync::Arc<InstanceSpec>,
        logs: tokio::sync::mpsc::Sender<LogLine>,
    ) -> Result<Box<dyn Instance>, StartError>;

    /// Stops whatever the factory keeps running by itself (spare instances).
    async fn shutdown(&self) {}
}

/// One execution environment: serves one invocation at a time.
#[async_trait]
pub trait Instance: Send + 'static {
    fn id(&self) -> &str;
    /// False once the instance died on its own (e.g. while idle); the scheduler
    /// then discards it instead of handing it an invocation.
    fn is_alive(&mut self) -> bool {
        true
    }
    /// Waits until the runtime finished initialising (provisioned concurrency:
    /// start ahead of demand, so the first invocation is warm).
    async fn wait_ready(&mut self, _limit: std::time::Duration) -> Result<(), String> {
        Ok(())
    }
    /// Runs one invocation to its end (success, function error, timeout or crash).
    /// After a result with `healthy == false` the instance must be dropped.
    async fn invoke(&mut self, dispatch: Dispatch) -> InvokeResult;
    /// Stops the instance and releases everything it holds.
    async fn shutdown(self: Box<Self>);
}
