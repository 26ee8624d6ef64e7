//! The values that cross the scheduler/runtime boundary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::Runtime;

/// Everything needed to start an instance of one function version.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub function: String,
    pub version: String,
    pub runtime: Runtime,
    pub handler: String,
    /// Whose calling convention the handler follows (`NIMBUS_HANDLER_STYLE`
    /// for the bootstraps; not set for `aws`).
    pub handler_style: nimbus_core::HandlerStyle,
    pub memory_mb: u32,
    /// Size of the private `/tmp`, MB.
    pub ephemeral_storage_mb: u32,
    pub network: nimbus_core::Network,
    pub timeout: Duration,
    /// The unpacked, read-only code (`LAMBDA_TASK_ROOT`).
    pub code_dir: PathBuf,
    pub environment: BTreeMap<String, String>,
    pub region: String,
    /// `on-demand` or `provisioned-concurrency`.
    pub initialization_type: &'static str,
}

/// One invocation handed to an instance.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub request_id: nimbus_core::InvocationId,
    pub payload: Bytes,
    pub invoked_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    /// Keep the function's output of this invocation for the caller.
    pub capture_output: bool,
    /// The invocation's `START` line. The instance logs it just ahead of the
    /// function's first line of output; an invocation that writes nothing
    /// leaves it to the caller, which stores it with `END` and `REPORT` in one
    /// row (see [`InvokeResult::start_logged`]).
    pub start_line: String,
    /// When the invocation started (ms since the epoch): the START line's time,
    /// whichever of the two logs it.
    pub start_ms: i64,
    /// Fires when the server gives up waiting (shutdown after the grace period):
    /// the instance is stopped and the caller told so.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Where a streamed response goes as it is produced (InvokeWithResponseStream,
    /// function URLs in `RESPONSE_STREAM` mode). Without it, a function that
    /// streams is answered buffered, as Lambda's `Invoke` does.
    pub stream: Option<StreamTarget>,
}

/// The caller of a streamed invocation.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    pub tx: tokio::sync::mpsc::Sender<StreamPart>,
    /// The version that runs, for the caller's response head (an alias may pick
    /// one of two versions only when the invocation starts).
    pub executed_version: String,
}

/// A piece of a streamed response, in order: one `Head`, then its chunks. The
/// sender is dropped when the stream ends; whether it ended well is the
/// invocation's [`Outcome`] (a failure after the head is an `Error` there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPart {
    /// The runtime began a streamed response of this `Content-Type`.
    Head {
        content_type: Option<String>,
        executed_version: String,
    },
    Chunk(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `body` is empty when the response went to [`Dispatch::stream`].
    Success {
        body: Bytes,
        content_type: Option<String>,
    },
    /// Any failure the caller sees as a function error: the handler raised, init
    /// failed, the runtime crashed, the invocation timed out or ran out of memory.
    /// `body` is the Lambda error document, returned to the caller unchanged.
    Error { error_type: String, body: Bytes },
}

#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub outcome: Outcome,
    /// False when the instance is gone (crash, timeout, init failure) or must not be reused.
    pub healthy: bool,
    /// Set on the first invocation of an instance: how long its init took.
    pub init_duration: Option<Duration>,
    /// Invoke time, excluding init.
    pub duration: Duration,
    /// Peak memory of the instance so far, in bytes.
    pub max_memory_bytes: u64,
    /// The function's output during this invocation (when asked for).
    pub output: String,
    /// Lines the platform adds after REPORT (timeout or crash notices).
    pub platform_lines: Vec<String>,
    /// Whether the `START` line was logged (ahead of the function's output).
    pub start_logged: bool,
}

/// A Lambda error document, `{"errorType", "errorMessage"}`: what the caller of
/// a failed invocation receives when the platform, not the runtime, wrote it.
pub(crate) fn error_doc(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

/// The `errorType` of an error document, if it is one and names it.
pub(crate) fn error_type_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("errorType")?
        .as_str()
        .map(str::to_string)
}
