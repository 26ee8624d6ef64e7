//! Put/Get/DeleteProvisionedConcurrencyConfig: instances kept initialised for a
//! version or alias, so its invocations never see a cold start.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_engine::EngineError;
use serde_json::{Value, json};

use super::functions::{json_body, query_param};
use super::shapes::{FunctionId, parse_function_id};
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

fn target(raw: &str, q: &Option<String>) -> Result<(FunctionId, String)> {
    let id = parse_function_id(raw, query_param(q, "Qualifier").as_deref())?;
    let qualifier = id
        .qualifier
        .clone()
        .ok_or_else(|| AwsError::validation("Qualifier is required for provisioned concurrency"))?;
    Ok((id, qualifier))
}

fn error(s: &AwsState, id: &FunctionId, e: EngineError) -> AwsError {
    match e {
        EngineError::ProvisionedNotFound(_) => AwsError::new(
            404,
            "ProvisionedConcurrencyConfigNotFoundException",
            "No Provisioned Concurrency Config found for this function",
        ),
        EngineError::AliasNotFound(_) => {
            AwsError::not_found(format!("Function not found: {}", id.arn(s)))
        }
        other => AwsError::from_engine(other, &id.arn(s)),
    }
}

async fn status(s: &AwsState, id: &FunctionId, qualifier: &str) -> Result<Value> {
    let (requested, available) = s
        .control
        .provisioned_status(&id.name, qualifier)
        .await
        .map_err(|e| error(s, id, e))?;
    let record = s.control.get(&id.name).await.map_err(|e| error(s, id, e))?;
    Ok(json!({
        "RequestedProvisionedConcurrentExecutions": requested,
        "AvailableProvisionedConcurrentExecutions": available,
        "AllocatedProvisionedConcurrentExecutions": available,
        "Status": if available >= requested { "READY" } else { "IN_PROGRESS" },
        "LastModified": record.last_modified,
    }))
}

pub async fn put(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response> {
    let (id, qualifier) = target(&raw, &q)?;
    let m = json_body(body).await?;
    let n = m
        .get("ProvisionedConcurrentExecutions")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            AwsError::validation("ProvisionedConcurrentExecutions must be a positive integer")
        })?;
    if n == 0 {
        return Err(AwsError::validation(
            "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ));
    }
    s.control
        .set_provisioned(&id.name, &qualifier, Some(n))
        .await
        .map_err(|e| error(&s, &id, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(status(&s, &id, &qualifier).await?),
    )
        .into_response())
}

pub async fn get(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let (id, qualifier) = target(&raw, &q)?;
    Ok(Json(status(&s, &id, &qualifier).await?))
}

pub async fn delete(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode> {
    let (id, qualifier) = target(&raw, &q)?;
    s.control
        .set_provisioned(&id.name, &qualifier, None)
        .await
        .map_err(|e| error(&s, &id, e))?;
    Ok(StatusCode::NO_CONTENT)
}
