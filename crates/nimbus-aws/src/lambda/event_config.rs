//! Put/Update/Get/DeleteFunctionEventInvokeConfig: retries, maximum event age and
//! destinations of asynchronous invocations.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use nimbus_core::EventInvokeConfig;
use serde_json::{Map, Value, json};

use super::functions::{json_body, query_param};
use super::shapes::{FunctionId, parse_function_id};
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

fn target(s: &AwsState, raw: &str, q: &Option<String>) -> Result<FunctionId> {
    let id = parse_function_id(raw, query_param(q, "Qualifier").as_deref())?;
    match id.qualifier.as_deref() {
        None | Some("$LATEST") => Ok(id),
        Some(_) => {
            let _ = s;
            Err(AwsError::unsupported(
                "an event invoke configuration for a version or alias",
            ))
        }
    }
}

fn shape(s: &AwsState, id: &FunctionId, c: &EventInvokeConfig) -> Value {
    let dest = |d: &Option<String>| match d {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    json!({
        "FunctionArn": format!("{}:$LATEST", s.control.config().function_arn(id.name.as_str())),
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "MaximumRetryAttempts": c.max_retry_attempts,
        "MaximumEventAgeInSeconds": c.max_event_age_s,
        "DestinationConfig": { "OnSuccess": dest(&c.on_success), "OnFailure": dest(&c.on_failure) },
    })
}

/// Applies the request's fields onto `base`.
fn merge(base: EventInvokeConfig, m: &Map<String, Value>) -> Result<EventInvokeConfig> {
    let mut c = base;
    let num = |k: &str| -> Result<Option<u32>> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| AwsError::validation(format!("{k} must be a non-negative integer"))),
        }
    };
    if let Some(n) = num("MaximumRetryAttempts")? {
        c.max_retry_attempts = n;
    }
    if let Some(n) = num("MaximumEventAgeInSeconds")? {
        c.max_event_age_s = n;
    }
    if let Some(d) = m.get("DestinationConfig").and_then(Value::as_object) {
        let get = |k: &str| {
            d.get(k)
                .and_then(|v| v.get("Destination"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if d.contains_key("OnSuccess") {
            c.on_success = get("OnSuccess");
        }
        if d.contains_key("OnFailure") {
            c.on_failure = get("OnFailure");
        }
    }
    c.last_modified_ms = chrono::Utc::now().timestamp_millis();
    Ok(c)
}

async fn save(s: &AwsState, id: &FunctionId, c: EventInvokeConfig) -> Result<Json<Value>> {
    let record = s
        .control
        .set_event_invoke_config(&id.name, Some(c))
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(s)))?;
    let c = record.event_invoke_config.unwrap_or_default();
    Ok(Json(shape(s, id, &c)))
}

/// PUT: replaces the configuration (absent fields take their defaults).
pub async fn put(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<Value>> {
    let id = target(&s, &raw, &q)?;
    let m = json_body(body).await?;
    save(&s, &id, merge(EventInvokeConfig::default(), &m)?).await
}

/// POST: updates only the fields given.
pub async fn update(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<Value>> {
    let id = target(&s, &raw, &q)?;
    let m = json_body(body).await?;
    let current = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    save(
        &s,
        &id,
        merge(current.event_invoke_config.unwrap_or_default(), &m)?,
    )
    .await
}

pub async fn get(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let id = target(&s, &raw, &q)?;
    let record = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    match record.event_invoke_config {
        Some(c) => Ok(Json(shape(&s, &id, &c))),
        None => Err(AwsError::not_found(format!(
            "The function {}:$LATEST doesn't have an EventInvokeConfig",
            id.arn(&s)
        ))),
    }
}

pub async fn delete(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode> {
    let id = target(&s, &raw, &q)?;
    let record = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    if record.event_invoke_config.is_none() {
        return Err(AwsError::not_found(format!(
            "The function {}:$LATEST doesn't have an EventInvokeConfig",
            id.arn(&s)
        )));
    }
    s.control
        .set_event_invoke_config(&id.name, None)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(StatusCode::NO_CONTENT)
}
