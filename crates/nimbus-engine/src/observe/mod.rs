//! What Nimbus tells its operators about the functions it runs: the log
//! pipeline (every line a function or the platform writes, batched into the log
//! store under byte quotas) and the metrics (counters and gauges for
//! `/metrics`, fed by the invoker's usage records).

pub mod logs;
pub mod metrics;

pub use logs::{DiskFloor, LogPipeline, LogRetention};
pub use metrics::{Gauges, Metrics};
