//! The engine: from an event to a result.
//!
//! ```text
//! sources/ (queue mappings, schedules, object events)   gateway, SNS (messaging/)
//!        └──────────────────────────┬──────────────────────────┘
//!                                   ▼
//!                     Dispatcher (dispatch.rs): Target × Sync | Async | Stream
//!                ┌──────────────────┼──────────────────────┐
//!                ▼                  ▼                      ▼
//!        AsyncInvoker ──────► Invoker ◄────────────── Workflows
//!   (invoker/async_queue.rs)  (invoker/)              (workflows/)
//!                                   │
//!                                   ▼
//!                Scheduler (pool per function) ──► Instance ──► InvocationResult
//!                                   │                             │
//!                                   └── START/END/REPORT ──► LogPipeline (observe/) ◄── function output
//! ```
//!
//! Every event source goes through one door, the [`Dispatcher`]: it is given a
//! [`nimbus_core::Target`] (a function or a workflow) and a payload, and
//! picks the service that runs it, so no source knows whether a function
//! runs synchronously, through the durable async queue, or as a workflow
//! task. Services are wired by their constructors only; the one cycle
//! (async destinations publish to topics, whose Lambda subscriptions enqueue
//! async invocations) is closed in `messaging/wiring.rs`.
//!
//! [`ControlPlane`] changes what is deployed; [`Invoker`] runs it. Both share the
//! [`Registry`] of deployed functions, which is loaded from the metadata store at
//! startup and kept in memory, so the invocation path never touches the database.

pub mod control;
pub mod dispatch;
mod error;
pub mod follow;
pub mod invoker;
pub mod lifecycle;
pub mod messaging;
pub mod observe;
pub mod scheduler;
pub mod sources;
pub mod workflows;

use std::path::PathBuf;
use std::time::Duration;

pub use control::registry::Registry;
pub use control::{AliasUpdate, ConfigPatch, ControlPlane, CreateFunction, FunctionAccess};
pub use dispatch::{Accepted, Call, DispatchError, Dispatcher, Reply};
pub use error::EngineError;
pub use invoker::{
    AsyncInvoker, AsyncSettings, DestinationSink, InvocationResult, Invoker, StreamParts, Streamed,
};
pub use nimbus_runtime::{Outcome, StreamPart};
pub use observe::{DiskFloor, Gauges, LogPipeline, LogRetention, Metrics};

/// Settings of the engine that are the host's business, not a function's.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Region and account used in ARNs and given to functions.
    pub region: String,
    pub account_id: String,
    /// Where code packages are unpacked for instances.
    pub code_cache_dir: PathBuf,
    /// How long an idle instance is kept warm.
    pub keep_alive: Duration,
    /// Most instances of one function at a time.
    pub max_instances_per_function: usize,
    /// Most invocations running at once across all functions.
    pub account_concurrency: usize,
    /// How long a synchronous call waits for a free instance before a 429.
    pub queue_wait: Duration,
}

impl EngineConfig {
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, name
        )
    }
}
