//! SigV4 authentication of AWS API requests.
//!
//! The signature covers the body, so the body is read (with the largest limit any
//! operation allows) before the handler runs and handed on unchanged. Keys are looked
//! up in the key store; unknown keys, bad signatures and stale clocks get the AWS
//! error codes clients expect. `--dev` turns checking off, loudly, for local work.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::sigv4;
use super::{AwsError, Principal};
use crate::ApiState;

/// Whether AWS requests must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Verify SigV4 signatures against the key store (the default).
    Verify,
    /// Accept any request (`nimbus up --dev`); never for shared machines.
    Dev,
}

/// The largest request any AWS operation accepts (CreateFunction with a 50 MB zip, base64).
const MAX_REQUEST_BYTES: usize = 70_167_211;
/// Clock skew tolerated between client and server.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

pub async fn authenticate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if s.auth == AuthMode::Dev {
        return next.run(req).await;
    }
    // JSON-protocol services read the error code from `__type` in the body.
    let json_protocol = super::is_json_protocol(req.uri().path(), req.headers())
        || super::is_sqs(req.uri().path(), req.headers());
    // SNS (the Query protocol) reads an XML error document.
    let query_protocol = super::sns::is_sns(req.method(), req.uri().path(), req.headers());
    match verify(&s, req).await {
        Ok(req) => next.run(req).await,
        Err(e) if query_protocol => super::sns::auth_error(e.status, e.code, &e.message),
        Err(e) if json_protocol => super::stepfunctions::StatesError {
            status: e.status,
            code: e.code.to_string(),
            message: e.message,
        }
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn auth_error(e: sigv4::AuthError) -> AwsError {
    AwsError::new(e.http_status(), e.aws_code(), e.to_string())
}

async fn verify(s: &ApiState, req: Request) -> Result<Request, AwsError> {
    let (parts, body) = req.into_parts();
    let parsed = sigv4::parse_authorization(&parts.headers).map_err(auth_error)?;
    sigv4::check_service(&parsed, super::expected_service(&parts)).map_err(auth_error)?;
    let secret = s
        .keys
        .secret(&parsed.credential.access_key_id)
        .await
        .map_err(|e| AwsError::from_engine(nimbus_engine::EngineError::Store(e), ""))?
        .ok_or_else(|| auth_error(sigv4::AuthError::UnrecognizedClient))?;
    let bytes = crate::error::read_body(body, MAX_REQUEST_BYTES, "request")
        .await
        .map_err(|e| AwsError::too_large(e.message))?;
    let body_hash = hex::encode(Sha256::digest(&bytes));
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body_sha256_hex: Some(&body_hash),
    };
    sigv4::verify(&signed, &parsed, &secret, chrono::Utc::now(), MAX_SKEW).map_err(auth_error)?;
    let principal = match s.keys.function_of(&parsed.credential.access_key_id) {
        Some(function) => Principal::Function(function),
        None => Principal::Operator,
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(principal);
    Ok(req)
}

/// Every AWS response carries a request id (botocore's `ResponseMetadata.RequestId`).
pub async fn request_id(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}
