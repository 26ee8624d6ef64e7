//! Errors in the AWS wire format, so botocore raises the modelled exception
//! classes: the code travels in `x-amzn-ErrorType`, the message in the body under
//! the key the service model uses for that shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nimbus_core::ErrorCode;
use nimbus_engine::EngineError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct AwsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error shape (e.g. `Reason` of TooManyRequestsException).
    pub extra: Vec<(&'static str, Value)>,
}

impl AwsError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValueException", message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFoundException", message)
    }
    pub fn unsupported(what: &str) -> Self {
        Self::invalid(format!("{what} is not supported by Nimbus yet"))
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLargeException", message)
    }

    /// Maps an engine error; `arn` names the function in not-found messages.
    pub fn from_engine(e: EngineError, arn: &str) -> Self {
        match e {
            EngineError::FunctionNotFound(_) => {
                Self::not_found(format!("Function not found: {arn}"))
            }
            EngineError::FunctionExists(name) => Self::new(
                409,
                "ResourceConflictException",
                format!("Function already exist: {name}"),
            ),
            EngineError::AliasNotFound(_) => Self::not_found(format!("Alias not found: {arn}")),
            EngineError::Conflict(message) => Self::new(409, "ResourceConflictException", message),
            EngineError::PreconditionFailed(_) => Self::new(
                412,
                "PreconditionFailedException",
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            ),
            EngineError::PayloadTooLarge { limit, .. } => Self::too_large(format!(
                "Request must be smaller than {limit} bytes for the InvokeFunction operation"
            )),
            EngineError::InvalidJson(detail) => Self::new(
                400,
                "InvalidRequestContentException",
                format!(
                    "Could not parse request body into json: Could not parse payload into json: {detail}"
                ),
            ),
            EngineError::TooManyRequests(why) => {
                let mut err = Self::new(429, "TooManyRequestsException", "Rate Exceeded.");
                // The memory budget, like the account limit, is host-wide.
                let reason = if why.contains("account") || why.contains("memory budget") {
                    "ConcurrentInvocationLimitExceeded"
                } else {
                    "ReservedFunctionConcurrentInvocationLimitExceeded"
                };
                err.extra.push(("Reason", json!(reason)));
                err
            }
            EngineError::CodeNotFound(_) => Self::invalid(e.to_string()),
            EngineError::Invalid(v) if v.code == ErrorCode::PayloadTooLarge => {
                Self::too_large(v.message)
            }
            EngineError::Invalid(v) => Self::invalid(v.message),
            EngineError::ShuttingDown => {
                Self::new(503, "ServiceException", "The service is shutting down")
            }
            other => {
                tracing::error!("internal error: {other}");
                Self::new(
                    500,
                    "ServiceException",
                    "An internal error occurred; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        // Shapes modelled with `Message` (capital M); botocore reads either.
        let key = match self.code {
            "ResourceNotFoundException" | "ServiceException" | "AccessDeniedException" => "Message",
            _ => "message",
        };
        let kind = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        let mut body = json!({ "Type": kind, key: self.message });
        for (k, v) in self.extra {
            body[k] = v;
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        resp
    }
}
