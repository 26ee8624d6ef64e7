//! SigV4 authentication of AWS API requests (Lambda, SQS, SNS, Step Functions;
//! S3 verifies its own while streaming).
//!
//! Who is calling is decided from the headers before the body is read, since a
//! key id is no secret (every function has its own in its environment) and a
//! body can be 70 MB: an unknown key is refused at once; a request that
//! declares its body hash in `X-Amz-Content-SHA256` has its signature checked
//! first, then its body read while hashing and compared at the end. Only a
//! request without a declared hash (boto3 and the AWS CLI send none for these
//! services) must be read before the signature can be checked, and then no
//! more than its operation accepts. A refusal decided from the headers is
//! answered at once and the connection closed without reading the body
//! (`nimbus_runtime::listener`). The body is handed on unchanged. Unknown keys,
//! bad signatures and stale clocks get the AWS error codes clients expect.
//! `--dev` turns checking off, loudly, for local work.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::sigv4;
use super::{AwsError, Principal};
use crate::AwsState;
use nimbus_api::AuthMode;

/// The largest request CreateFunction and UpdateFunctionCode accept (a 50 MB
/// zip, base64 in JSON).
const MAX_CODE_REQUEST_BYTES: usize = 70_167_211;
/// The largest request of every other operation: Invoke's 6 MB payload, with
/// room for the operation's own, more precise 413 just past it.
const MAX_REQUEST_BYTES: usize = nimbus_core::limits::MAX_SYNC_REQUEST_BYTES + 64 * 1024;
/// Clock skew tolerated between client and server.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

pub async fn authenticate(State(s): State<AwsState>, req: Request, next: Next) -> Response {
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
        Err(e) if json_protocol => {
            super::stepfunctions::StatesError::with_status(e.status, e.code, e.message)
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn auth_error(e: sigv4::SigV4Error) -> AwsError {
    AwsError::new(e.http_status(), e.aws_code(), e.to_string())
}

async fn verify(s: &AwsState, req: Request) -> Result<Request, AwsError> {
    let (parts, body) = req.into_parts();
    let parsed = sigv4::parse_authorization(&parts.headers).map_err(auth_error)?;
    sigv4::check_service(&parsed, super::expected_service(&parts)).map_err(auth_error)?;
    let declared = sigv4::declared_payload_hash(&parsed, &parts.headers).map_err(auth_error)?;
    let secret = s
        .keys
        .secret(&parsed.credential.access_key_id)
        .await
        .map_err(|e| AwsError::from_engine(nimbus_engine::EngineError::Store(e), ""))?
        .ok_or_else(|| auth_error(sigv4::SigV4Error::UnrecognizedClient))?;
    let limit = request_limit(&parts);
    let signed = |body_sha256_hex| sigv4::SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body_sha256_hex,
    };
    let bytes = match declared {
        // The signature covers the declared hash: check it before reading.
        Some(claimed) => {
            sigv4::verify(
                &signed(None),
                &parsed,
                &secret,
                chrono::Utc::now(),
                MAX_SKEW,
            )
            .map_err(auth_error)?;
            let (bytes, computed) = read_hashing(body, &parts.headers, limit).await?;
            if computed != claimed {
                return Err(auth_error(sigv4::SigV4Error::ContentSha256Mismatch {
                    claimed,
                    computed,
                }));
            }
            bytes
        }
        None => {
            let (bytes, computed) = read_hashing(body, &parts.headers, limit).await?;
            sigv4::verify(
                &signed(Some(&computed)),
                &parsed,
                &secret,
                chrono::Utc::now(),
                MAX_SKEW,
            )
            .map_err(auth_error)?;
            bytes
        }
    };
    let principal = match s.keys.function_of(&parsed.credential.access_key_id) {
        Some(function) => {
            // In a cluster, a grant changed (or the function deleted)
            // through another node is in force here before this request is
            // judged by it.
            s.control.registry().catch_up_revision(&function).await;
            if s.keys
                .function_of(&parsed.credential.access_key_id)
                .is_none()
            {
                return Err(auth_error(sigv4::SigV4Error::UnrecognizedClient));
            }
            Principal::function_with(function, &parts.headers)
        }
        None => Principal::Operator,
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(principal);
    Ok(req)
}

/// The most a request may carry: only code uploads need more than Invoke.
fn request_limit(parts: &axum::http::request::Parts) -> usize {
    let path = parts.uri.path().trim_end_matches('/');
    let create = parts.method == Method::POST && path == "/2015-03-31/functions";
    let update_code = parts.method == Method::PUT
        && path.starts_with("/2015-03-31/functions/")
        && path.ends_with("/code");
    if create || update_code {
        MAX_CODE_REQUEST_BYTES
    } else {
        MAX_REQUEST_BYTES
    }
}

/// Reads the body (at most `limit` bytes; a larger declared length is refused
/// before reading) and its lower-case hex SHA-256.
async fn read_hashing(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<(Bytes, String), AwsError> {
    let too_large = || {
        AwsError::too_large(format!(
            "the request is larger than the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = body;
    let mut hasher = Sha256::new();
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if nimbus_runtime::listener::BodyTimeout::is(&*e.into_inner()) {
                AwsError::new(
                    408,
                    "RequestTimeoutException",
                    "the request body was not received in time",
                )
            } else {
                AwsError::new(
                    400,
                    "InvalidRequestContentException",
                    "could not read the request body",
                )
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return Err(too_large());
        }
        hasher.update(&data);
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), hex::encode(hasher.finalize())))
}

/// Every AWS response carries a request id (botocore's `ResponseMetadata.RequestId`).
pub async fn request_id(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}
