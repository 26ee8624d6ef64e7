//! Function management: upload code, create, read, update, delete, logs.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::limits::{
    DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, MAX_LOG_QUERY_LINES, MAX_ZIP_BYTES,
};
use nimbus_core::{FunctionConfig, FunctionName, FunctionRecord, Runtime};
use nimbus_engine::{ConfigPatch, CreateFunction};
use nimbus_store::LogQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};

pub(crate) fn name(raw: &str) -> Result<FunctionName, ApiError> {
    raw.parse().map_err(ApiError::from)
}

fn view(state: &ApiState, r: &FunctionRecord) -> Value {
    let mut v = serde_json::to_value(r).expect("records serialise");
    v["arn"] = json!(state.control.config().function_arn(r.config.name.as_str()));
    v["state"] = json!("Active");
    v
}

pub async fn upload_code(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let zip = read_body(body, MAX_ZIP_BYTES as usize, "code package").await?;
    if zip.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a zip file; it was empty",
        ));
    }
    let info = s.control.upload_code(zip).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionBody {
    name: Option<String>,
    runtime: String,
    handler: Option<String>,
    memory_mb: Option<u32>,
    timeout_s: Option<u32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    description: String,
    /// What the function's own credentials may reach: shorthand grants
    /// (`s3:photos`, …) and IAM statements, or a policy document.
    #[serde(
        default,
        deserialize_with = "nimbus_core::permissions::deserialize_list"
    )]
    permissions: Vec<nimbus_core::permissions::Permission>,
    /// `aws`, `azure`, `google` or `auto` (the default: detected at deploy).
    handler_style: Option<String>,
    /// Size of the private `/tmp` in MB (512 to 10,240).
    ephemeral_storage_mb: Option<u32>,
    /// `default` or `none` (no network beyond the Runtime API).
    network: Option<String>,
    code_sha256: String,
}

impl FunctionBody {
    fn into_command(self, path_name: Option<&str>) -> Result<CreateFunction, ApiError> {
        let raw_name = match (path_name, self.name.as_deref()) {
            (Some(p), Some(b)) if p != b => {
                return Err(ApiError::bad_request(format!(
                    "name {b:?} in the body differs from {p:?} in the path"
                )));
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => return Err(ApiError::bad_request("missing field `name`")),
        };
        let runtime: Runtime = self.runtime.parse()?;
        Ok(CreateFunction {
            config: FunctionConfig {
                name: name(&raw_name)?,
                runtime,
                handler: self
                    .handler
                    .unwrap_or_else(|| runtime.default_handler().to_string()),
                memory_mb: self.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
                timeout_s: self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S),
                environment: self.environment,
                description: self.description,
                permissions: self.permissions,
                handler_style: match self.handler_style.as_deref() {
                    None => None,
                    Some(s) => nimbus_core::HandlerStyle::parse_requested(s)?,
                },
                ephemeral_storage_mb: self
                    .ephemeral_storage_mb
                    .unwrap_or(nimbus_core::limits::DEFAULT_EPHEMERAL_STORAGE_MB),
                network: match self.network.as_deref() {
                    None => Default::default(),
                    Some(s) => s.parse()?,
                },
            },
            code_sha256: self.code_sha256,
            role: None,
            tags: Default::default(),
            runtime_id: None,
        })
    }
}

const JSON_LIMIT: usize = 256 * 1024;

pub async fn create(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let body: FunctionBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let record = s.control.create(body.into_command(None)?).await?;
    Ok((StatusCode::CREATED, Json(view(&s, &record))).into_response())
}

pub async fn put(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body: FunctionBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let (record, created) = s.control.put(body.into_command(Some(&raw))?).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&s, &record))).into_response())
}

pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let all = s.control.list().await?;
    Ok(Json(
        json!({"functions": all.iter().map(|r| view(&s, r)).collect::<Vec<_>>() }),
    ))
}

pub async fn get(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = s.control.get(&name(&raw)?).await?;
    Ok(Json(view(&s, &record)))
}

pub async fn patch(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let patch: ConfigPatch = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let record = s.control.update_config(&name(&raw)?, patch, None).await?;
    Ok(Json(view(&s, &record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code_sha256: String,
}

pub async fn update_code(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body: CodeBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let record = s
        .control
        .update_code(&name(&raw)?, body.code_sha256, None)
        .await?;
    Ok(Json(view(&s, &record)))
}

pub async fn delete(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.control.delete(&name(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    since_ms: Option<i64>,
    after_id: Option<i64>,
    request_id: Option<String>,
    limit: Option<usize>,
}

pub async fn logs(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if p.limit.is_some_and(|l| l > MAX_LOG_QUERY_LINES) {
        return Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LOG_QUERY_LINES} lines; page with after_id for more"
        )));
    }
    let name = name(&raw)?;
    // 404 for unknown functions, like every other route.
    s.control.get(&name).await?;
    let events = s
        .logs
        .query(LogQuery {
            function: name.to_string(),
            since_ms: p.since_ms,
            after_id: p.after_id,
            request_id: p.request_id,
            limit: p.limit.unwrap_or(1000),
        })
        .await
        .map_err(|e| ApiError::from(nimbus_engine::EngineError::Store(e)))?;
    let next = events.last().map(|e| e.id).or(p.after_id);
    Ok(Json(json!({"events": events, "next_after_id": next})))
}

/// The stored zip of a code package (the Lambda API's `Code.Location` points here).
pub async fn download_code(
    State(s): State<ApiState>,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    let (info, zip) = s.control.code_zip(&sha).await.map_err(|e| match e {
        nimbus_engine::EngineError::CodeNotFound(what) => ApiError::new(
            nimbus_core::ErrorCode::NotFound,
            format!("{what} not found"),
        ),
        other => other.into(),
    })?;
    // Streamed from the store, never held whole; the length is known.
    let headers = [
        (
            axum::http::header::CONTENT_TYPE,
            "application/zip".to_string(),
        ),
        (axum::http::header::CONTENT_LENGTH, info.size.to_string()),
    ];
    Ok((headers, Body::from_stream(zip)).into_response())
}
