//! Create/Get/List/Update/DeleteEventSourceMapping for SQS queues. Mappings
//! are stored and their pollers run in the engine (`sources::sqs`); these
//! handlers translate the Lambda shapes (`UUID`, `EventSourceArn`,
//! `FunctionResponseTypes`, `ScalingConfig`, `LastModified` in epoch seconds).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::Target;
use nimbus_engine::messaging::MessagingError;
use nimbus_engine::sources::queue_mappings::{Mapping, MappingPatch};
use serde_json::{Map, Value, json};

use super::functions::{json_body, query_param, str_field};
use super::shapes::parse_function_id;
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

/// The exception comes from the error table; only Lambda's wording is here.
fn error(e: MessagingError) -> AwsError {
    let code = e.code();
    let message = match e {
        MessagingError::MappingNotFound(_) => "The resource you requested does not exist.".into(),
        MessagingError::FunctionNotFound(arn) => format!("Function not found: {arn}"),
        MessagingError::QueueDoesNotExist(q) => format!(
            "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue {q} does not exist."
        ),
        other => other.to_string(),
    };
    AwsError::from_code(code, message)
}

fn shape(s: &AwsState, m: &Mapping, state: &str) -> Value {
    let mut v = json!({
        "UUID": m.uuid,
        "EventSourceArn": m.source_arn,
        "FunctionArn": s.messaging.mappings.function_arn(m),
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.batching_window_s,
        "FunctionResponseTypes": if m.report_batch_item_failures { json!(["ReportBatchItemFailures"]) } else { json!([]) },
        "LastModified": m.last_modified_ms as f64 / 1000.0,
        "State": state,
        "StateTransitionReason": "USER_INITIATED",
    });
    if let Some(c) = m.maximum_concurrency {
        v["ScalingConfig"] = json!({ "MaximumConcurrency": c });
    }
    v
}

fn current_state(m: &Mapping) -> &'static str {
    if m.enabled { "Enabled" } else { "Disabled" }
}

fn u32_of(m: &Map<String, Value>, key: &str) -> Result<Option<u32>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| AwsError::validation(format!("{key} must be a non-negative integer"))),
    }
}

fn patch(m: &Map<String, Value>) -> Result<MappingPatch> {
    // A state machine ARN targets a workflow (Nimbus's extension, as an
    // EventBridge Pipe would): each batch starts an execution.
    let target = match str_field(m, "FunctionName")? {
        Some(raw) if raw.starts_with("arn:aws:states:") => {
            let name = raw
                .split(':')
                .nth(6)
                .filter(|_| raw.split(':').nth(5) == Some("stateMachine"))
                .ok_or_else(|| AwsError::validation(format!("{raw} is not a state machine ARN")))?;
            Some(Target::workflow(name))
        }
        Some(raw) => {
            let id = parse_function_id(&raw, None)?;
            Some(Target::function(id.name.as_str(), id.qualifier))
        }
        None => None,
    };
    let report = match m.get("FunctionResponseTypes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut report = false;
            for t in list {
                match t.as_str() {
                    Some("ReportBatchItemFailures") => report = true,
                    _ => {
                        return Err(AwsError::validation(format!(
                            "1 validation error detected: Value '{t}' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy enum value set: [ReportBatchItemFailures]"
                        )));
                    }
                }
            }
            Some(report)
        }
        Some(_) => return Err(AwsError::validation("FunctionResponseTypes must be a list")),
    };
    let concurrency = match m.get("ScalingConfig") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(u32_of(c, "MaximumConcurrency")?),
        Some(_) => return Err(AwsError::validation("ScalingConfig must be an object")),
    };
    let enabled = match m.get("Enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(AwsError::validation("Enabled must be a boolean")),
    };
    Ok(MappingPatch {
        target,
        batch_size: u32_of(m, "BatchSize")?,
        batching_window_s: u32_of(m, "MaximumBatchingWindowInSeconds")?,
        enabled,
        report_batch_item_failures: report,
        maximum_concurrency: concurrency,
    })
}

pub async fn create(State(s): State<AwsState>, body: Body) -> Result<Response> {
    let m = json_body(body).await?;
    let source = str_field(&m, "EventSourceArn")?
        .ok_or_else(|| AwsError::validation("EventSourceArn is required"))?;
    let p = patch(&m)?;
    if p.target.is_none() {
        return Err(AwsError::validation("FunctionName is required"));
    }
    let mapping = s
        .messaging
        .mappings
        .create(&source, p)
        .await
        .map_err(error)?;
    Ok((StatusCode::ACCEPTED, Json(shape(&s, &mapping, "Creating"))).into_response())
}

pub async fn list(State(s): State<AwsState>, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    let function = match query_param(&q, "FunctionName") {
        Some(raw) => Some(parse_function_id(&raw, None)?),
        None => None,
    };
    let source = query_param(&q, "EventSourceArn");
    let max = query_param(&q, "MaxItems")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 10_000);
    let marker = query_param(&q, "Marker").unwrap_or_default();
    let all: Vec<Mapping> = s
        .messaging
        .mappings
        .list()
        .await
        .map_err(error)?
        .into_iter()
        .filter(|m| {
            function.as_ref().is_none_or(|f| {
                m.target.function_name() == Some(f.name.as_str())
                    && (f.qualifier.is_none() || f.qualifier.as_deref() == m.target.qualifier())
            })
        })
        .filter(|m| source.as_ref().is_none_or(|a| &m.source_arn == a))
        .filter(|m| m.uuid.as_str() > marker.as_str())
        .collect();
    let page: Vec<Value> = all
        .iter()
        .take(max)
        .map(|m| shape(&s, m, current_state(m)))
        .collect();
    let mut out = json!({ "EventSourceMappings": page });
    if all.len() > max {
        out["NextMarker"] = json!(all[max - 1].uuid);
    }
    Ok(Json(out))
}

pub async fn get(State(s): State<AwsState>, Path(uuid): Path<String>) -> Result<Json<Value>> {
    let m = s.messaging.mappings.get(&uuid).await.map_err(error)?;
    Ok(Json(shape(&s, &m, current_state(&m))))
}

pub async fn update(
    State(s): State<AwsState>,
    Path(uuid): Path<String>,
    body: Body,
) -> Result<Response> {
    let p = patch(&json_body(body).await?)?;
    let m = s.messaging.mappings.update(&uuid, p).await.map_err(error)?;
    Ok((StatusCode::ACCEPTED, Json(shape(&s, &m, "Updating"))).into_response())
}

pub async fn delete(State(s): State<AwsState>, Path(uuid): Path<String>) -> Result<Response> {
    let m = s.messaging.mappings.delete(&uuid).await.map_err(error)?;
    Ok((StatusCode::ACCEPTED, Json(shape(&s, &m, "Deleting"))).into_response())
}
