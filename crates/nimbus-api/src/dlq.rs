//! Dead letters: asynchronous events that failed every attempt and had no
//! failure destination. They can be listed and replayed (`nimbus dlq`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nimbus_core::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqParams {
    function: Option<String>,
}

pub async fn list(
    State(s): State<ApiState>,
    params: Result<Query<DlqParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let dead = s.events.dead_letters(p.function.as_deref()).await?;
    let events: Vec<Value> = dead
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).expect("events serialise");
            if let Some(o) = v.as_object_mut() {
                o.remove("failed_at_ms");
                o.remove("enqueued_ms");
                o.insert("failed_at".into(), json!(e.failed_at_ms));
                o.insert("enqueued_at".into(), json!(e.enqueued_ms));
            }
            v
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

pub async fn replay(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if s.events.replay(&id).await? {
        Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": id }))))
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("dead letter {id} not found"),
        ))
    }
}
