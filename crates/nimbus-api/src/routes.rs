//! The HTTP gateway's configuration over the native API: routes, function
//! URLs and gateway keys (`nimbus routes`, `nimbus url`, `nimbus gateway-keys`).
//!
//! Handlers only parse and render; validation, conflict checks and the swap
//! of the live route table happen in [`nimbus_gateway::Gateway`].

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_gateway::{GatewayError, KeySpec, RouteSpec, UrlSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};

/// Largest configuration document accepted.
const CONFIG_LIMIT: usize = 64 * 1024;

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        Self::from_code(e.code(), e)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AddParams {
    /// Replace a route with the same key that targets the same function.
    #[serde(default)]
    replace: bool,
}

pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let routes = s.gateway.routes().await?;
    Ok(Json(json!({ "routes": routes })))
}

pub async fn add(
    State(s): State<ApiState>,
    params: Result<Query<AddParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let raw = read_body(body, CONFIG_LIMIT, "request").await?;
    let spec: RouteSpec = parse_json(&raw)?;
    let route = s.gateway.add_route(spec, p.replace).await?;
    Ok((StatusCode::CREATED, Json(route)).into_response())
}

pub async fn remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.gateway.remove_route(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_url(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.gateway.url(&name).await?).into_response())
}

pub async fn put_url(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = read_body(body, CONFIG_LIMIT, "request").await?;
    let spec: UrlSpec = if raw.iter().all(u8::is_ascii_whitespace) {
        UrlSpec::default()
    } else {
        parse_json(&raw)?
    };
    let (url, created) = s.gateway.put_url(&name, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(url)).into_response())
}

pub async fn delete_url(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.gateway.remove_url(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_keys(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "keys": s.gateway.keys().await? })))
}

pub async fn create_key(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let raw = read_body(body, CONFIG_LIMIT, "request").await?;
    let spec: KeySpec = if raw.iter().all(u8::is_ascii_whitespace) {
        KeySpec::default()
    } else {
        parse_json(&raw)?
    };
    let key = s.gateway.create_key(spec).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

pub async fn delete_key(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.gateway.remove_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
