//! Authentication of the native API with the same access keys as the AWS APIs:
//! `Authorization: Bearer <access key id>:<secret>`. Deploying code is running code
//! on the host, so every route that reads or changes state needs a key; only the
//! health check and the OpenAPI document are open. (SigV4 on the native API is the
//! next step; bearer keeps `curl` usable.)

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;

use crate::ApiState;
use crate::error::ApiError;

/// Whether requests must be authenticated (with a bearer key on the native
/// API, a SigV4 signature on the AWS APIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Verify credentials against the key store (the default).
    Verify,
    /// Accept any request (`nimbus up --dev`); never for shared machines.
    Dev,
}

pub async fn require_key(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if s.auth == AuthMode::Dev || matches!(req.uri().path(), "/v1/health" | "/v1/openapi.json") {
        return next.run(req).await;
    }
    let header = req.headers().get("authorization").cloned();
    match check(&s, header).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

async fn check(s: &ApiState, header: Option<axum::http::HeaderValue>) -> Result<(), ApiError> {
    let header = header.ok_or_else(|| {
        unauthorized("missing credentials: send Authorization: Bearer <access key id>:<secret>")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("expected Authorization: Bearer <access key id>:<secret>"))?;
    let (id, secret) = token
        .split_once(':')
        .ok_or_else(|| unauthorized("the bearer token must be <access key id>:<secret>"))?;
    if s.keys.function_of(id).is_some() {
        // Least privilege: a function's own credentials reach the AWS APIs it
        // was granted, never the operator's API.
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "function credentials cannot use the native API",
        ));
    }
    let known = s
        .keys
        .secret(id)
        .await
        .map_err(|e| ApiError::from(nimbus_engine::EngineError::from(e)))?;
    match known {
        Some(k) if constant_time_eq(k.as_bytes(), secret.as_bytes()) => Ok(()),
        // One message for both cases: do not reveal which key ids exist.
        _ => Err(unauthorized("invalid access key id or secret")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
