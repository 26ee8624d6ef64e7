//! Versions and aliases on the native API (`nimbus publish`, `nimbus alias`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::AliasRouting;
use nimbus_engine::{AliasUpdate, EngineError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::{ApiError, parse_json, read_body};
use crate::functions::name;

const JSON_LIMIT: usize = 64 * 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    description: Option<String>,
}

pub async fn publish(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, JSON_LIMIT, "request").await?;
    let b: PublishBody = if bytes.is_empty() {
        PublishBody::default()
    } else {
        parse_json(&bytes)?
    };
    let record = s
        .control
        .publish_version(&name(&raw)?, None, b.description, None)
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

pub async fn list_versions(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = s.control.list_versions(&name(&raw)?).await?;
    Ok(Json(json!({ "versions": versions })))
}

pub async fn delete_version(
    State(s): State<ApiState>,
    Path((raw, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.control.delete_version(&name(&raw)?, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_aliases(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let aliases = s.control.list_aliases(&name(&raw)?).await?;
    Ok(Json(json!({ "aliases": aliases })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: String,
    #[serde(default)]
    description: Option<String>,
    /// A second version and the share of traffic (0.0–1.0) it gets.
    #[serde(default)]
    routing: Option<AliasRouting>,
}

/// Creates the alias, or points an existing one elsewhere.
pub async fn put_alias(
    State(s): State<ApiState>,
    Path((raw, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: AliasBody = parse_json(&read_body(body, JSON_LIMIT, "request").await?)?;
    let function = name(&raw)?;
    match s.control.get_alias(&function, &alias).await {
        Err(EngineError::AliasNotFound(_)) => {
            let a = s
                .control
                .create_alias(
                    &function,
                    &alias,
                    b.version,
                    b.description.unwrap_or_default(),
                    b.routing,
                )
                .await?;
            Ok((StatusCode::CREATED, Json(a)).into_response())
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            let update = AliasUpdate {
                function_version: Some(b.version),
                description: b.description,
                routing: Some(b.routing),
                expected_revision: None,
            };
            Ok(Json(s.control.update_alias(&function, &alias, update).await?).into_response())
        }
    }
}

pub async fn delete_alias(
    State(s): State<ApiState>,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.control.delete_alias(&name(&raw)?, &alias).await?;
    Ok(StatusCode::NO_CONTENT)
}
