//! Synchronous invocation over the native API.
//!
//! The body is the event, passed through byte for byte; the response body is the
//! function's result or its error document, as Lambda returns them. Metadata about
//! the run travels in `x-nimbus-*` headers so the body stays the function's own.
//! With `?stream=true` a streaming function's response goes out as written.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::InvokeRequest;
use nimbus_core::limits::MAX_SYNC_REQUEST_BYTES;
use nimbus_engine::{Outcome, Streamed};
use serde::Deserialize;

use crate::ApiState;
use crate::error::{ApiError, read_body};
use crate::functions::name;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InvokeParams {
    /// `tail` returns the last 4 KB of the invocation's log in `x-nimbus-log-result`.
    log: Option<String>,
    /// `$LATEST` (default), a version number or an alias.
    qualifier: Option<String>,
    /// `event` queues the invocation and answers 202 at once.
    #[serde(rename = "type")]
    invocation_type: Option<String>,
    /// `true`: a response the function streams is passed on as it is written
    /// (chunked; cut off if the function fails after it began). The `x-nimbus-*`
    /// figures known only at the end (duration, memory, the log tail) are then
    /// not sent.
    stream: Option<bool>,
}

pub async fn invoke(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    params: Result<Query<InvokeParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let want_tail = match p.log.as_deref() {
        None | Some("none") => false,
        Some("tail") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "log must be 'tail' or 'none', got {other:?}"
            )));
        }
    };
    let function = name(&raw)?;
    let payload = read_body(body, MAX_SYNC_REQUEST_BYTES, "request payload").await?;
    let mut req = InvokeRequest::new(function, payload);
    req.want_log_tail = want_tail;
    req.qualifier = p.qualifier.filter(|q| !q.is_empty());
    match p.invocation_type.as_deref() {
        None | Some("sync") => {}
        Some("event") if p.stream == Some(true) => {
            return Err(ApiError::bad_request(
                "stream=true needs a synchronous invocation, not type=event",
            ));
        }
        Some("event") => {
            let id = s.events.submit(req).await?;
            let body = serde_json::json!({ "request_id": id.to_string() }).to_string();
            return Ok((
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                body,
            )
                .into_response());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type must be 'sync' or 'event', got {other:?}"
            )));
        }
    }
    let r = if p.stream == Some(true) {
        let request_id = req.id.to_string();
        match s.invoker.invoke_streamed(req).await {
            Streamed::Started {
                content_type,
                executed_version,
                parts,
            } => {
                let mut headers = HeaderMap::new();
                for (k, v) in [
                    ("x-nimbus-request-id", request_id),
                    ("x-nimbus-executed-version", executed_version),
                    (
                        "content-type",
                        content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    ),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        headers.insert(k, v);
                    }
                }
                let body = Body::from_stream(parts.into_body());
                return Ok((StatusCode::OK, headers, body).into_response());
            }
            Streamed::Finished(r) => r?,
        }
    } else {
        s.invoker.invoke(req).await?
    };

    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("x-nimbus-request-id", r.request_id.to_string());
    set("x-nimbus-executed-version", r.executed_version.clone());
    set("x-nimbus-cold-start", r.cold_start.to_string());
    set(
        "x-nimbus-duration-ms",
        format!("{:.3}", r.duration.as_secs_f64() * 1000.0),
    );
    set("x-nimbus-billed-duration-ms", r.billed_ms.to_string());
    set(
        "x-nimbus-max-memory-used-mb",
        r.max_memory_used_mb.to_string(),
    );
    if let Some(init) = r.init_duration {
        set(
            "x-nimbus-init-duration-ms",
            format!("{:.3}", init.as_secs_f64() * 1000.0),
        );
    }
    if let Some(tail) = &r.log_tail {
        set(
            "x-nimbus-log-result",
            base64::engine::general_purpose::STANDARD.encode(tail),
        );
    }
    let body = match r.outcome {
        Outcome::Success { body, content_type } => {
            set(
                "content-type",
                content_type.unwrap_or_else(|| "application/json".into()),
            );
            body
        }
        Outcome::Error { error_type, body } => {
            set("content-type", "application/json".into());
            set("x-nimbus-function-error", "Unhandled".into());
            set("x-nimbus-error-type", error_type);
            body
        }
    };
    Ok((StatusCode::OK, headers, body).into_response())
}
