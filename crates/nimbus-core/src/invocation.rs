//! What every event source hands to the scheduler.
//!
//! Whatever triggered it (API call, HTTP route, schedule, queue), an invocation is
//! the same value: an id, a target, a payload and the caller's context. Everything
//! downstream of the event source is shared.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::function::FunctionName;

/// The request id of one invocation (a UUID, as Lambda's `aws_request_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvocationId(Arc<str>);

impl InvocationId {
    /// A fresh id: a version 7 UUID (RFC 9562), time-ordered with 74 random
    /// bits, where Lambda uses version 4. Every log line is indexed by its
    /// request id; with random ids each insert dirtied a random page of that
    /// index, and the log store wrote 16 KB to disk per warm invocation. Ids
    /// that grow with time append to the index instead. Clients only ever see
    /// an opaque UUID string.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string().into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for InvocationId {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl Default for InvocationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request to run a function once.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub id: InvocationId,
    pub function: FunctionName,
    /// `$LATEST` (also when absent), a version number or an alias.
    pub qualifier: Option<String>,
    pub payload: Bytes,
    /// JSON text of the mobile-SDK client context, already base64-decoded.
    pub client_context: Option<String>,
    /// X-Ray style trace header; generated when the caller sends none.
    pub trace_id: Option<String>,
    /// Return the last 4 KB of the invocation's log with the result.
    pub want_log_tail: bool,
    /// The function on whose authority this invocation happens, when one's
    /// credentials caused it (an Event invoke, an SNS subscription or a bucket
    /// notification it set up). Asynchronous attempts re-check that it may
    /// still invoke the target, so a revoked grant stops queued retries too.
    pub on_behalf_of: Option<String>,
}

impl InvokeRequest {
    pub fn new(function: FunctionName, payload: Bytes) -> Self {
        Self {
            id: InvocationId::new(),
            function,
            qualifier: None,
            payload,
            client_context: None,
            trace_id: None,
            want_log_tail: false,
            on_behalf_of: None,
        }
    }
}
