//! Runtime errors as ASL sees them: a name and an optional cause.
//!
//! Error *names* are the currency of `Retry` and `Catch`, so they are plain
//! strings (user errors such as `Payment.Declined` are as valid as the
//! predefined `States.*` ones). The matching rules live here, next to the
//! names, because they are the only place where names are interpreted:
//! `States.ALL` and `States.TaskFailed` are wildcards, and a few errors
//! (`States.Runtime`, `States.DataLimitExceeded`) are never caught at all,
//! following the behaviour recorded on AWS (reference §6.1).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Wildcard matching every catchable error.
pub const ALL: &str = "States.ALL";
/// A Task failed; as a matcher, every catchable error except `States.Timeout`.
pub const TASK_FAILED: &str = "States.TaskFailed";
/// A task or the execution ran out of time (or missed a heartbeat).
pub const TIMEOUT: &str = "States.Timeout";
/// A task missed its heartbeat (AWS lists it for Retry/Catch).
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
/// Unprocessable runtime error (bad path, wrong type); never caught.
pub const RUNTIME: &str = "States.Runtime";
/// Payload over the size quota; never caught.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
/// `ResultPath` cannot be applied to the input.
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
/// A `.$` path in Parameters failed (spec name; AWS reports `States.Runtime`).
pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
/// A Parallel branch failed (spec name; AWS propagates the branch's error).
pub const BRANCH_FAILED: &str = "States.BranchFailed";
/// A Choice matched nothing and has no `Default`.
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
/// An intrinsic function failed.
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
/// A task lacked privileges.
pub const PERMISSIONS: &str = "States.Permissions";
/// Distributed Map: too many failed items.
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
/// Distributed Map: the item reader failed.
pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
/// Distributed Map: the result writer failed.
pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
/// JSONata evaluation failed (listed for completeness; JSONata is rejected).
pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";

/// Every predefined name, for validation and documentation.
pub const PREDEFINED: &[&str] = &[
    ALL,
    TASK_FAILED,
    TIMEOUT,
    HEARTBEAT_TIMEOUT,
    RUNTIME,
    DATA_LIMIT_EXCEEDED,
    RESULT_PATH_MATCH_FAILURE,
    PARAMETER_PATH_FAILURE,
    BRANCH_FAILED,
    NO_CHOICE_MATCHED,
    INTRINSIC_FAILURE,
    PERMISSIONS,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    ITEM_READER_FAILED,
    RESULT_WRITER_FAILED,
    QUERY_EVALUATION_ERROR,
];

/// An error raised while running a state: what `Retry`/`Catch` match on and
/// what a failed execution reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}{}", cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
pub struct StateError {
    /// The error name, e.g. `States.Timeout` or `Payment.Declined`.
    pub error: String,
    /// Free text; for Lambda failures the JSON-encoded error object.
    pub cause: Option<String>,
}

impl StateError {
    /// An error with a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> StateError {
        StateError {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// `States.Runtime` with a cause.
    pub fn runtime(cause: impl Into<String>) -> StateError {
        StateError::new(RUNTIME, cause)
    }

    /// `States.IntrinsicFailure` with a cause.
    pub fn intrinsic(cause: impl Into<String>) -> StateError {
        StateError::new(INTRINSIC_FAILURE, cause)
    }

    /// Whether no retrier or catcher may ever handle this error.
    pub fn is_uncatchable(&self) -> bool {
        is_uncatchable(&self.error)
    }

    /// The error output a catcher passes on: `{"Error": …, "Cause": …}`.
    pub fn to_error_output(&self) -> Value {
        let mut out = Map::new();
        out.insert("Error".into(), Value::String(self.error.clone()));
        if let Some(cause) = &self.cause {
            out.insert("Cause".into(), Value::String(cause.clone()));
        }
        Value::Object(out)
    }
}

/// Whether `name` is an error that always fails the execution.
pub fn is_uncatchable(name: &str) -> bool {
    name == RUNTIME || name == DATA_LIMIT_EXCEEDED
}

/// Whether one `ErrorEquals` entry matches the error `name`.
pub fn matcher_matches(matcher: &str, name: &str) -> bool {
    if is_uncatchable(name) {
        return false;
    }
    match matcher {
        ALL => true,
        TASK_FAILED => name != TIMEOUT,
        _ => matcher == name,
    }
}

/// Whether an `ErrorEquals` list matches the error `name`.
pub fn error_equals_matches(error_equals: &[String], name: &str) -> bool {
    error_equals.iter().any(|m| matcher_matches(m, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_the_reference() {
        assert!(matcher_matches(ALL, "Custom.Error"));
        assert!(matcher_matches(ALL, TIMEOUT));
        assert!(!matcher_matches(ALL, RUNTIME));
        assert!(!matcher_matches(RUNTIME, RUNTIME));
        assert!(!matcher_matches(ALL, DATA_LIMIT_EXCEEDED));
        assert!(matcher_matches(TASK_FAILED, "Lambda.Unknown"));
        assert!(matcher_matches(TASK_FAILED, INTRINSIC_FAILURE));
        assert!(!matcher_matches(TASK_FAILED, TIMEOUT));
        assert!(matcher_matches(TIMEOUT, TIMEOUT));
        assert!(
            !matcher_matches("Custom.error", "Custom.Error"),
            "case-sensitive"
        );
        assert!(error_equals_matches(&["A".into(), "B".into()], "B"));
        assert!(!error_equals_matches(&["A".into()], "B"));
    }

    #[test]
    fn error_output_shape() {
        assert_eq!(
            StateError::new("E", "why").to_error_output(),
            serde_json::json!({"Error": "E", "Cause": "why"})
        );
        let bare = StateError {
            error: "E".into(),
            cause: None,
        };
        assert_eq!(bare.to_error_output(), serde_json::json!({"Error": "E"}));
        assert_eq!(StateError::new("E", "why").to_string(), "E: why");
    }
}
