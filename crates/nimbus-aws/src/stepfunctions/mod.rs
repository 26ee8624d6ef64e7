//! The Step Functions API (2016-11-23) subset, in its JSON 1.0 protocol:
//! `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and a JSON body;
//! answers are JSON with epoch-second timestamps, errors are
//! `{"__type": "<Exception>", "message": "…"}` with HTTP 400 (botocore raises
//! the modelled exception classes from `__type`).
//!
//! Operations map one to one onto [`nimbus_engine::workflows::Workflows`];
//! operations of the API that Nimbus does not implement answer
//! `UnknownOperationException` naming the operation.

mod history;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;
use nimbus_engine::workflows::{
    CreateMachine, ExecutionRecord, StartExecution, StateMachineRecord, WorkflowError,
};
use serde_json::{Value, json};

use crate::AwsState;

/// The target prefix of this service.
pub const TARGET_PREFIX: &str = "AWSStepFunctions.";
/// Largest request: a 1 MB definition, JSON-escaped.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// An error in the JSON 1.0 protocol's shape.
#[derive(Debug)]
pub struct StatesError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The detail of an internal error, logged, never sent.
    internal: Option<String>,
}

impl StatesError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn with_status(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            internal: None,
        }
    }

    /// Step Functions' answer for a row of the error table; an internal
    /// error's message is masked (and logged by the listener's layer).
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let ex = code.row().states;
        let status = StatusCode::from_u16(ex.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (message, internal) = nimbus_api::mask(code, message.into());
        Self {
            internal,
            ..Self::with_status(status, ex.name, message)
        }
    }
}

impl From<WorkflowError> for StatesError {
    fn from(e: WorkflowError) -> Self {
        Self::from_code(e.code(), e.to_string())
    }
}

impl IntoResponse for StatesError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.code, "message": self.message});
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Ok(v) = HeaderValue::from_str(&self.code) {
            resp.headers_mut().insert("x-amzn-errortype", v);
        }
        if let Some(detail) = self.internal {
            nimbus_api::InternalDetail::attach(&mut resp, detail);
        }
        resp
    }
}

fn ok(body: Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn string(v: &Value, key: &str) -> Result<Option<String>, StatesError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(StatesError::new(
            "ValidationException",
            format!("1 validation error detected: '{key}' must be a string"),
        )),
    }
}

fn required(v: &Value, key: &str) -> Result<String, StatesError> {
    string(v, key)?.ok_or_else(|| {
        StatesError::new(
            "ValidationException",
            format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

fn max_results(v: &Value) -> Result<Option<usize>, StatesError> {
    match v.get("maxResults") {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| StatesError::new("ValidationException", "maxResults must be a number")),
    }
}

/// Handles one `AWSStepFunctions.*` request (already authenticated).
pub async fn handle(s: AwsState, operation: &str, body: Body) -> Response {
    let bytes = match nimbus_api::read_body(body, MAX_REQUEST_BYTES, "request").await {
        Ok(b) => b,
        Err(e) => return StatesError::new("ValidationException", e.message).into_response(),
    };
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return StatesError::new(
                    "SerializationException",
                    "the body must be a JSON object",
                )
                .into_response();
            }
        }
    };
    match dispatch(&s, operation, &input).await {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

async fn dispatch(s: &AwsState, op: &str, v: &Value) -> Result<Value, StatesError> {
    let w = &s.workflows;
    Ok(match op {
        "CreateStateMachine" => {
            let m = w
                .create_machine(CreateMachine {
                    name: required(v, "name")?,
                    definition: required(v, "definition")?,
                    role_arn: Some(required(v, "roleArn")?),
                    machine_type: string(v, "type")?,
                })
                .await?;
            json!({"stateMachineArn": m.arn, "creationDate": secs(m.created_ms)})
        }
        "DescribeStateMachine" => {
            let m = w.describe_machine(&required(v, "stateMachineArn")?).await?;
            describe_machine(&m)
        }
        "ListStateMachines" => {
            let (machines, next) = w
                .list_machines(max_results(v)?, string(v, "nextToken")?.as_deref())
                .await?;
            let items: Vec<Value> = machines
                .iter()
                .map(|m| {
                    json!({"stateMachineArn": m.arn, "name": m.name, "type": m.machine_type,
                           "creationDate": secs(m.created_ms)})
                })
                .collect();
            with_token(json!({"stateMachines": items}), next)
        }
        "UpdateStateMachine" => {
            let m = w
                .update_machine(
                    &required(v, "stateMachineArn")?,
                    string(v, "definition")?,
                    string(v, "roleArn")?,
                )
                .await?;
            json!({"updateDate": secs(m.updated_ms), "revisionId": m.revision})
        }
        "DeleteStateMachine" => {
            w.delete_machine(&required(v, "stateMachineArn")?).await?;
            json!({})
        }
        "StartExecution" => {
            let e = w.start(start_request(v)?).await?;
            json!({"executionArn": e.arn, "startDate": secs(e.start_ms)})
        }
        "StartSyncExecution" => {
            let e = w.start_sync(start_request(v)?).await?;
            let mut out = describe_execution(&e);
            if let Some(o) = out.as_object_mut() {
                o.remove("redriveCount");
                o.remove("redriveStatus");
                o.entry("stopDate").or_insert_with(|| secs(e.start_ms));
                o.insert(
                    "billingDetails".into(),
                    json!({"billedMemoryUsedInMB": 64,
                           "billedDurationInMilliseconds": ((e.stop_ms.unwrap_or(e.start_ms) - e.start_ms).max(0) as u64).div_ceil(100) * 100}),
                );
            }
            out
        }
        "DescribeExecution" => {
            let e = w.describe_execution(&required(v, "executionArn")?).await?;
            describe_execution(&e)
        }
        "ListExecutions" => {
            let machine = string(v, "stateMachineArn")?;
            if machine.is_none() {
                return Err(StatesError::new(
                    "ValidationException",
                    "Must provide a StateMachine ARN or MapRun ARN",
                ));
            }
            let (executions, next) = w
                .list_executions(
                    machine.as_deref(),
                    string(v, "statusFilter")?.as_deref(),
                    max_results(v)?,
                    string(v, "nextToken")?.as_deref(),
                )
                .await?;
            let items: Vec<Value> = executions.iter().map(list_item).collect();
            with_token(json!({"executions": items}), next)
        }
        "GetExecutionHistory" => {
            let (events, next) = w
                .history(
                    &required(v, "executionArn")?,
                    max_results(v)?,
                    string(v, "nextToken")?.as_deref(),
                    v.get("reverseOrder")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                )
                .await?;
            let region = &w.scope().region;
            let mut items: Vec<Value> = events
                .iter()
                .map(|e| history::aws_event(e, region))
                .collect();
            if v.get("includeExecutionData") == Some(&json!(false)) {
                strip_data(&mut items);
            }
            with_token(json!({"events": items}), next)
        }
        "StopExecution" => {
            let stop = w
                .stop(
                    &required(v, "executionArn")?,
                    string(v, "error")?,
                    string(v, "cause")?,
                )
                .await?;
            json!({"stopDate": secs(stop)})
        }
        other => {
            return Err(StatesError::new(
                "UnknownOperationException",
                format!("the Step Functions operation {other} is not supported by Nimbus"),
            ));
        }
    })
}

fn start_request(v: &Value) -> Result<StartExecution, StatesError> {
    Ok(StartExecution {
        machine: required(v, "stateMachineArn")?,
        name: string(v, "name")?,
        input: string(v, "input")?,
    })
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["nextToken"] = json!(t);
    }
    v
}

/// `includeExecutionData: false`: leave inputs and outputs out.
fn strip_data(events: &mut [Value]) {
    for e in events {
        if let Some(o) = e.as_object_mut() {
            for (_, d) in o.iter_mut() {
                if let Some(d) = d.as_object_mut() {
                    for k in ["input", "output", "parameters"] {
                        d.remove(k);
                    }
                }
            }
        }
    }
}

fn describe_machine(m: &StateMachineRecord) -> Value {
    json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": m.machine_type,
        "creationDate": secs(m.created_ms),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
        "tracingConfiguration": {"enabled": false},
        "revisionId": m.revision,
    })
}

fn list_item(e: &ExecutionRecord) -> Value {
    let mut v = json!({
        "executionArn": e.arn,
        "stateMachineArn": e.state_machine_arn,
        "name": e.name,
        "status": e.status,
        "startDate": secs(e.start_ms),
    });
    if let Some(t) = e.stop_ms {
        v["stopDate"] = secs(t);
    }
    v
}

fn describe_execution(e: &ExecutionRecord) -> Value {
    let mut v = list_item(e);
    v["input"] = json!(e.input);
    v["inputDetails"] = json!({"included": true});
    if let Some(o) = &e.output {
        v["output"] = json!(o);
        v["outputDetails"] = json!({"included": true});
    }
    if let Some(x) = &e.error {
        v["error"] = json!(x);
    }
    if let Some(x) = &e.cause {
        v["cause"] = json!(x);
    }
    v["redriveCount"] = json!(0);
    v["redriveStatus"] = json!("NOT_REDRIVABLE");
    v
}
