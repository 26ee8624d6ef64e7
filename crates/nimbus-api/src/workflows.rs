//! Workflows on the native API (`nimbus workflow …`): state machines under
//! `/v1/workflows`, executions under `/v1/executions/{arn or machine:name}`.
//!
//! Same engine calls as the Step Functions API, in the native shapes:
//! snake_case keys, JSON values (not JSON text), epoch-millisecond times.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nimbus_core::ErrorCode;
use nimbus_engine::workflows::{
    CreateMachine, ExecutionRecord, StartExecution, StateMachineRecord, StoredEvent, WorkflowError,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};

const BODY_LIMIT: usize = 4 * 1024 * 1024;

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        Self::from_code(e.code(), e)
    }
}

/// A definition given as a JSON object or as its text.
fn definition_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Object(_) => Ok(v.to_string()),
        _ => Err(ApiError::bad_request(
            "definition must be a JSON object or a string holding one",
        )),
    }
}

fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn machine_json(m: &StateMachineRecord) -> Value {
    json!({
        "name": m.name,
        "arn": m.arn,
        "type": m.machine_type,
        "role_arn": m.role_arn,
        "definition": json_text(&m.definition),
        "created_at": m.created_ms,
        "updated_at": m.updated_ms,
        "revision": m.revision,
    })
}

fn execution_json(e: &ExecutionRecord) -> Value {
    json!({
        "arn": e.arn,
        "name": e.name,
        "state_machine_arn": e.state_machine_arn,
        "status": e.status,
        "input": json_text(&e.input),
        "output": e.output.as_deref().map(json_text),
        "error": e.error,
        "cause": e.cause,
        "started_at": e.start_ms,
        "stopped_at": e.stop_ms,
    })
}

fn event_json(e: &StoredEvent) -> Value {
    json!({
        "id": e.id,
        "previous_id": e.previous_id,
        "timestamp": e.ts_ms,
        "type": e.event_type,
        "details": json_text(&e.details),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineBody {
    name: Option<String>,
    definition: Option<Value>,
    role_arn: Option<String>,
    #[serde(rename = "type")]
    machine_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    max_results: Option<usize>,
    next_token: Option<String>,
    status: Option<String>,
    #[serde(default)]
    reverse: bool,
}

pub async fn list(
    State(s): State<ApiState>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (machines, next) = s
        .workflows
        .list_machines(p.max_results, p.next_token.as_deref())
        .await?;
    let items: Vec<Value> = machines.iter().map(machine_json).collect();
    Ok(Json(json!({"workflows": items, "next_token": next})))
}

pub async fn create(
    State(s): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: MachineBody = parse_json(&read_body(body, BODY_LIMIT, "workflow").await?)?;
    let name = b
        .name
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let definition = definition_text(
        b.definition
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("definition is required"))?,
    )?;
    let m = s
        .workflows
        .create_machine(CreateMachine {
            name,
            definition,
            role_arn: b.role_arn,
            machine_type: b.machine_type,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(machine_json(&m))))
}

/// Creates or updates (what `nimbus deploy` does for `[[workflows]]`).
pub async fn put(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: MachineBody = parse_json(&read_body(body, BODY_LIMIT, "workflow").await?)?;
    if b.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request(
            "the name in the body differs from the path",
        ));
    }
    let definition = definition_text(
        b.definition
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("definition is required"))?,
    )?;
    match s.workflows.describe_machine(&name).await {
        Ok(old) => {
            if b.machine_type
                .as_ref()
                .is_some_and(|t| *t != old.machine_type)
            {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "the type of a workflow cannot change; delete it first",
                ));
            }
            let m = s
                .workflows
                .update_machine(&name, Some(definition), b.role_arn)
                .await?;
            Ok((StatusCode::OK, Json(machine_json(&m))))
        }
        Err(WorkflowError::StateMachineDoesNotExist(_)) => {
            let m = s
                .workflows
                .create_machine(CreateMachine {
                    name,
                    definition,
                    role_arn: b.role_arn,
                    machine_type: b.machine_type,
                })
                .await?;
            Ok((StatusCode::CREATED, Json(machine_json(&m))))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(machine_json(
        &s.workflows.describe_machine(&name).await?,
    )))
}

pub async fn delete(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.workflows.describe_machine(&name).await?;
    s.workflows.delete_machine(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    name: Option<String>,
    input: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// Wait for the end (at most this many seconds) and return the final state.
    wait: Option<u64>,
}

pub async fn start(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    params: Result<Query<StartParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let bytes = read_body(body, BODY_LIMIT, "execution").await?;
    let b: StartBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        parse_json(&bytes)?
    };
    let mut e = s
        .workflows
        .start(StartExecution {
            machine: name,
            name: b.name,
            input: b.input.map(|v| v.to_string()),
        })
        .await?;
    if let Some(secs) = p.wait {
        e = s
            .workflows
            .wait(&e.arn, Some(std::time::Duration::from_secs(secs)))
            .await?;
    }
    Ok((StatusCode::CREATED, Json(execution_json(&e))))
}

pub async fn list_executions(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (items, next) = s
        .workflows
        .list_executions(
            Some(&name),
            p.status.as_deref(),
            p.max_results,
            p.next_token.as_deref(),
        )
        .await?;
    let items: Vec<Value> = items.iter().map(execution_json).collect();
    Ok(Json(json!({"executions": items, "next_token": next})))
}

pub async fn describe_execution(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(execution_json(
        &s.workflows.describe_execution(&id).await?,
    )))
}

pub async fn history(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (events, next) = s
        .workflows
        .history(&id, p.max_results, p.next_token.as_deref(), p.reverse)
        .await?;
    let items: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({"events": items, "next_token": next})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopBody {
    error: Option<String>,
    cause: Option<String>,
}

pub async fn stop(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, BODY_LIMIT, "stop request").await?;
    let b: StopBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        StopBody::default()
    } else {
        parse_json(&bytes)?
    };
    s.workflows.stop(&id, b.error, b.cause).await?;
    Ok(Json(execution_json(
        &s.workflows.describe_execution(&id).await?,
    )))
}
