//! Task states run Nimbus functions: resolve the `Resource`, invoke through the
//! [`Invoker`], and turn the outcome into what the interpreter expects.
//!
//! Resources understood (reference §3 Task):
//! - `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, and as a Nimbus
//!   shorthand a bare `NAME[:QUALIFIER]`: the result is the function's return value;
//! - `arn:aws:states:::lambda:invoke`: `Parameters.FunctionName` (name, partial
//!   or full ARN, optional `Qualifier`) and `Parameters.Payload`; the result is
//!   the Invoke envelope `{ExecutedVersion, Payload, SdkHttpMetadata,
//!   SdkResponseMetadata, StatusCode}`.
//!
//! A function error becomes a task error named by its `errorType` (what
//! `ErrorEquals` matches) with the JSON error document as `Cause`, as on AWS.
//! Failures of the platform map to the `Lambda.*` names Step Functions uses.
//! Other resources (activities, `.sync`/`.waitForTaskToken` integrations) fail
//! with `States.Runtime`: Nimbus has nothing to run them with.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{FunctionName, InvokeRequest};
use nimbus_runtime::Outcome;
use nimbus_workflow::{StateError, TaskRequest};
use serde_json::{Value, json};

use crate::{EngineError, Invoker};

/// The outcome of one task attempt, or `None` when it was cut short by
/// shutdown (it runs again after the restart).
pub(super) type TaskOutcome = Option<Result<Value, StateError>>;

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// What to invoke and how to shape the result.
#[derive(Debug, PartialEq)]
struct Target {
    function: String,
    qualifier: Option<String>,
    payload: Value,
    envelope: bool,
}

fn split_function(spec: &str) -> (String, Option<String>) {
    // `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`,
    // `ACCOUNT:function:NAME[:QUALIFIER]` or `NAME[:QUALIFIER]`.
    let rest = match spec.find("function:") {
        Some(i) => &spec[i + "function:".len()..],
        None => spec,
    };
    match rest.split_once(':') {
        Some((name, q)) => (name.to_string(), Some(q.to_string())),
        None => (rest.to_string(), None),
    }
}

fn target(req: &TaskRequest) -> Result<Target, StateError> {
    let r = req.resource.as_str();
    if r == LAMBDA_INVOKE {
        let name = req
            .input
            .get("FunctionName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                StateError::runtime(
                    "arn:aws:states:::lambda:invoke needs Parameters.FunctionName (a string)",
                )
            })?;
        let (function, mut qualifier) = split_function(name);
        if let Some(q) = req.input.get("Qualifier").and_then(Value::as_str) {
            qualifier = Some(q.to_string());
        }
        return Ok(Target {
            function,
            qualifier,
            payload: req.input.get("Payload").cloned().unwrap_or(json!({})),
            envelope: true,
        });
    }
    let plain = r.starts_with("arn:aws:lambda:") || !r.starts_with("arn:");
    if !plain || r.is_empty() {
        return Err(StateError::runtime(format!(
            "Nimbus cannot run the resource '{r}': use a function name or ARN, or arn:aws:states:::lambda:invoke"
        )));
    }
    let (function, qualifier) = split_function(r);
    Ok(Target {
        function,
        qualifier,
        payload: req.input.clone(),
        envelope: false,
    })
}

/// Runs one task attempt with its timeout (`TimeoutSeconds`, and
/// `HeartbeatSeconds`: a function cannot send heartbeats, so a heartbeat
/// shorter than the run fails the task just as on AWS).
pub(super) async fn run(invoker: Arc<Invoker>, req: TaskRequest) -> TaskOutcome {
    let target = match target(&req) {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let limit = match (req.timeout_seconds, req.heartbeat_seconds) {
        (Some(t), Some(h)) if h < t => Some((h, nimbus_workflow::errors::HEARTBEAT_TIMEOUT)),
        (None, Some(h)) => Some((h, nimbus_workflow::errors::HEARTBEAT_TIMEOUT)),
        (Some(t), _) => Some((t, nimbus_workflow::errors::TIMEOUT)),
        (None, None) => None,
    };
    let call = invoke(&invoker, target);
    match limit {
        None => call.await,
        Some((secs, error)) => match tokio::time::timeout(Duration::from_secs(secs), call).await {
            Ok(r) => r,
            Err(_) => Some(Err(StateError::new(
                error,
                format!("The task did not finish within {secs} seconds"),
            ))),
        },
    }
}

async fn invoke(invoker: &Invoker, t: Target) -> TaskOutcome {
    let function: FunctionName = match t.function.parse() {
        Ok(f) => f,
        Err(e) => {
            return Some(Err(StateError::new(
                "Lambda.ResourceNotFoundException",
                format!("invalid function name '{}': {e}", t.function),
            )));
        }
    };
    let mut request = InvokeRequest::new(function, Bytes::from(t.payload.to_string()));
    request.qualifier = t.qualifier;
    let request_id = request.id.to_string();
    let result = invoker.invoke(request).await;
    let r = match result {
        Ok(r) => r,
        Err(EngineError::ShuttingDown) => return None,
        Err(e) => return Some(Err(engine_error(e))),
    };
    match r.outcome {
        Outcome::Success { body, .. } => {
            let value = serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            Some(Ok(if t.envelope {
                envelope(value, &r.executed_version, &request_id)
            } else {
                value
            }))
        }
        Outcome::Error { error_type, body } => {
            if invoker.is_shutting_down() {
                // Cut short by shutdown: not the function's failure.
                return None;
            }
            let error = if error_type.is_empty() {
                "Lambda.Unknown".to_string()
            } else {
                error_type
            };
            Some(Err(StateError::new(
                error,
                String::from_utf8_lossy(&body).into_owned(),
            )))
        }
    }
}

/// The result of `arn:aws:states:::lambda:invoke` (an Invoke API response).
fn envelope(payload: Value, version: &str, request_id: &str) -> Value {
    let headers = json!({
        "Connection": "keep-alive",
        "Content-Type": "application/json",
        "X-Amz-Executed-Version": version,
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": request_id,
    });
    json!({
        "ExecutedVersion": version,
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": headers.as_object().map(|m| m.iter()
                .map(|(k, v)| (k.clone(), json!([v]))).collect::<serde_json::Map<_, _>>()),
            "HttpHeaders": headers,
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    })
}

/// Platform failures, named as Step Functions names Lambda's exceptions.
fn engine_error(e: EngineError) -> StateError {
    let name = match &e {
        EngineError::FunctionNotFound(_) | EngineError::AliasNotFound(_) => {
            "Lambda.ResourceNotFoundException"
        }
        EngineError::TooManyRequests { .. } => "Lambda.TooManyRequestsException",
        EngineError::PayloadTooLarge { .. } => "Lambda.RequestTooLargeException",
        EngineError::InvalidJson(_) => "Lambda.InvalidRequestContentException",
        _ => "Lambda.ServiceException",
    };
    StateError::new(name, e.to_string())
}

#[cfg(test)]
mod tests {
    use nimbus_workflow::{FrameId, TaskKind, Ticket};

    use super::*;

    fn req(resource: &str, input: Value) -> TaskRequest {
        TaskRequest {
            ticket: Ticket(1),
            frame: FrameId(0),
            state_name: "T".into(),
            resource: resource.into(),
            kind: TaskKind::of(resource),
            input,
            credentials: None,
            timeout_seconds: None,
            heartbeat_seconds: None,
            attempt: 0,
            task_token: None,
        }
    }

    #[test]
    fn resources_resolve_to_functions() {
        let t = target(&req(
            "arn:aws:lambda:us-east-1:000000000000:function:f:prod",
            json!(1),
        ))
        .unwrap();
        assert_eq!(
            (t.function.as_str(), t.qualifier.as_deref(), t.envelope),
            ("f", Some("prod"), false)
        );
        let t = target(&req("f", json!(1))).unwrap();
        assert_eq!((t.function.as_str(), t.qualifier), ("f", None));
        let t = target(&req(
            LAMBDA_INVOKE,
            json!({"FunctionName": "arn:aws:lambda:us-east-1:0:function:g", "Payload": {"a": 1}}),
        ))
        .unwrap();
        assert_eq!(t.function, "g");
        assert_eq!(t.payload, json!({"a": 1}));
        assert!(t.envelope);
        assert!(target(&req(LAMBDA_INVOKE, json!({}))).is_err());
        assert!(target(&req("arn:aws:states:::sqs:sendMessage", json!({}))).is_err());
    }

    #[test]
    fn envelope_shape() {
        let v = envelope(json!({"x": 1}), "$LATEST", "rid");
        for k in [
            "ExecutedVersion",
            "Payload",
            "SdkHttpMetadata",
            "SdkResponseMetadata",
            "StatusCode",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["Payload"], json!({"x": 1}));
    }
}
