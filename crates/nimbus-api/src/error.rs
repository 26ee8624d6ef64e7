//! The native API's error shape, and what every API on the listener shares
//! about errors: internal ones are masked with one message and logged once,
//! by one layer ([`log_internal_errors`]).

use std::fmt::Display;

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;
use nimbus_engine::EngineError;

/// What a client reads instead of an internal error's detail (paths, SQL).
pub const INTERNAL_MESSAGE: &str = "An internal error occurred; see the server log";

/// An internal error's detail, for the server log only. Error responses
/// carry it as an extension; [`log_internal_errors`] logs it.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl InternalDetail {
    /// Attaches `detail` to an error response.
    pub fn attach(resp: &mut Response, detail: impl Display) {
        resp.extensions_mut()
            .insert(InternalDetail(detail.to_string()));
    }

    /// Logs an internal error; the one place that does, for responses that
    /// cannot carry the extension (S3's, rendered by `s3s`).
    pub fn log(detail: impl Display) {
        tracing::error!("internal error: {detail}");
    }
}

/// What a client may read for an error of `code`, and the detail to log:
/// an internal error's message is replaced by [`INTERNAL_MESSAGE`] and kept
/// as the detail. Every protocol's error type builds itself through this.
pub fn mask(code: ErrorCode, message: String) -> (String, Option<String>) {
    if code.is_internal() {
        (INTERNAL_MESSAGE.to_owned(), Some(message))
    } else {
        (message, None)
    }
}

/// The layer around every API on the listener that logs the detail of the
/// internal errors its handlers masked.
pub async fn log_internal_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if let Some(InternalDetail(detail)) = resp.extensions().get::<InternalDetail>() {
        InternalDetail::log(detail);
    }
    resp
}

/// Every error the native API returns: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The detail of an internal error, logged, never sent.
    internal: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            internal: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The error for a domain error's table row: its message, unless it is
    /// internal.
    pub fn from_code(code: ErrorCode, error: impl Display) -> Self {
        let (message, internal) = mask(code, error.to_string());
        Self {
            internal,
            ..Self::new(code, message)
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self::from_code(e.code(), e)
    }
}

impl From<nimbus_core::ValidationError> for ApiError {
    fn from(v: nimbus_core::ValidationError) -> Self {
        Self::new(v.code, v.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut resp = (status, Json(body)).into_response();
        if let Some(detail) = self.internal {
            InternalDetail::attach(&mut resp, detail);
        }
        resp
    }
}

/// Past the limit, keep reading (and discarding) up to this much more before
/// answering, so that a client still sending its body reads the 413 instead of a
/// connection reset.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads a request body up to `limit` bytes, with a precise 413 past it.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    what: &str,
) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{what} is larger than the limit of {limit} bytes"),
        )
    };
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > limit + DRAIN_BYTES {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// Parses a JSON body with a message that says what was wrong and where.
///
/// JSON has one number type, so `30.0` is the integer 30 to JSON Schema (and
/// to the OpenAPI document): a body refused for it alone is read again with
/// integral floats taken as integers.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).or_else(|e| {
        let mut value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        if !integral_floats_to_integers(&mut value) {
            return Err(ApiError::bad_request(format!("invalid JSON body: {e}")));
        }
        serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    })
}

/// Rewrites every float with no fractional part (within i64) as an integer;
/// whether any was.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let integral = f.fract() == 0.0 && f.abs() < 9.0e15;
            if integral {
                *value = Value::from(f as i64);
            }
            integral
        }
        Value::Array(items) => {
            let mut any = false;
            for v in items {
                any |= integral_floats_to_integers(v);
            }
            any
        }
        Value::Object(map) => {
            let mut any = false;
            for v in map.values_mut() {
                any |= integral_floats_to_integers(v);
            }
            any
        }
        _ => false,
    }
}
