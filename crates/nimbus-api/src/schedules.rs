//! Schedules on the native API: `rate(...)`/`cron(...)` rules that invoke a
//! function or start a workflow (`nimbus schedules`), and the test clock that
//! lets tests (and demos) fast-forward them when the server runs with
//! `--test-clock`.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::Target;
use nimbus_core::schedule::{MissedFires, ScheduleRecord};
use serde::Deserialize;
use serde_json::json;

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};

const JSON_LIMIT: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    name: Option<String>,
    expression: String,
    timezone: Option<String>,
    function: Option<String>,
    qualifier: Option<String>,
    workflow: Option<String>,
    input: Option<serde_json::Value>,
    #[serde(default)]
    missed: MissedFires,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    description: String,
}

fn yes() -> bool {
    true
}

impl ScheduleBody {
    fn into_record(self, path_name: Option<&str>) -> Result<ScheduleRecord, ApiError> {
        let name = match (path_name, self.name) {
            (Some(p), Some(b)) if p != b => {
                return Err(ApiError::bad_request(format!(
                    "name {b:?} in the body differs from {p:?} in the path"
                )));
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b,
            (None, None) => return Err(ApiError::bad_request("missing field `name`")),
        };
        // `function` may carry its qualifier: `resize:prod`.
        let (function, qualifier) = match self.function {
            Some(f) => match f.split_once(':') {
                Some((f, q)) if self.qualifier.is_none() => {
                    (Some(f.to_string()), Some(q.to_string()))
                }
                _ => (Some(f), self.qualifier),
            },
            None => (None, self.qualifier),
        };
        let target = Target::from_parts(function, qualifier, self.workflow, "a schedule")
            .map_err(ApiError::from)?;
        Ok(ScheduleRecord {
            name,
            expression: self.expression,
            timezone: self.timezone,
            target,
            input: self.input,
            missed: self.missed,
            enabled: self.enabled,
            description: self.description,
            created_ms: 0,
        })
    }
}

pub async fn list(State(s): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({ "schedules": s.schedules.list().await }))
}

pub async fn create(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let body: ScheduleBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let view = s.schedules.put(body.into_record(None)?, true).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn put(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body: ScheduleBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let created = s.schedules.get(&name).await.is_err();
    let view = s
        .schedules
        .put(body.into_record(Some(&name))?, created)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

pub async fn get(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.schedules.get(&name).await?).into_response())
}

pub async fn delete(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.schedules.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    advance_s: f64,
}

/// `POST /v1/debug/clock {"advance_s": 60}`: only with `--test-clock`.
pub async fn advance_clock(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let body: Advance = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    if !(0.0..=366.0 * 86_400.0 * 10.0).contains(&body.advance_s) {
        return Err(ApiError::bad_request(
            "advance_s must be between 0 and ten years of seconds",
        ));
    }
    let now = s
        .schedules
        .advance_clock(Duration::from_secs_f64(body.advance_s))?;
    Ok(Json(json!({ "now": now.to_rfc3339() })).into_response())
}
