//! Access key management: `nimbus keys create|ls|rm`. A new key's secret is
//! returned once, at creation; afterwards only its id is ever shown.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};

fn store_error(e: nimbus_store::StoreError) -> ApiError {
    ApiError::from(nimbus_engine::EngineError::from(e))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    description: String,
}

pub async fn create(State(s): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let raw = read_body(body, 16 * 1024, "request").await?;
    let req: CreateKey = if raw.is_empty() {
        CreateKey::default()
    } else {
        parse_json(&raw)?
    };
    if req.description.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "description must be at most 256 characters",
        ));
    }
    let key = s.keys.create(&req.description).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let keys = s.keys.list().await.map_err(store_error)?;
    Ok(Json(json!({ "keys": keys })))
}

pub async fn delete(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.keys.delete(&id).await.map_err(store_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("access key {id} not found"),
        ))
    }
}
