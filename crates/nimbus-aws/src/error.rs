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
    /// The detail of an internal error, logged, never sent.
    internal: Option<String>,
}

impl AwsError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            extra: Vec::new(),
            internal: None,
        }
    }

    /// The Lambda API's answer for a row of the error table; an internal
    /// error's message is masked (and logged by the listener's layer).
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let ex = code.row().lambda;
        let (message, internal) = nimbus_api::mask(code, message.into());
        Self {
            internal,
            ..Self::new(ex.status, ex.name, message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::InvalidParameter, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::NotFound, message)
    }
    pub fn unsupported(what: &str) -> Self {
        Self::invalid(format!("{what} is not supported by Nimbus yet"))
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::from_code(ErrorCode::PayloadTooLarge, message)
    }

    /// Maps an engine error; `arn` names the function in not-found messages.
    /// The exception comes from the error table; only Lambda's wording is here.
    pub fn from_engine(e: EngineError, arn: &str) -> Self {
        let code = e.code();
        let message = match e {
            EngineError::FunctionNotFound(_) => format!("Function not found: {arn}"),
            EngineError::FunctionExists(name) => format!("Function already exist: {name}"),
            EngineError::AliasNotFound(_) => format!("Alias not found: {arn}"),
            EngineError::PreconditionFailed(_) => "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
            EngineError::PayloadTooLarge { limit, .. } => format!(
                "Request must be smaller than {limit} bytes for the InvokeFunction operation"
            ),
            EngineError::InvalidJson(detail) => format!(
                "Could not parse request body into json: Could not parse payload into json: {detail}"
            ),
            EngineError::TooManyRequests { reason, .. } => {
                let mut err = Self::from_code(code, "Rate Exceeded.");
                err.extra.push(("Reason", json!(reason.lambda_reason())));
                return err;
            }
            EngineError::Invalid(v) => v.message,
            EngineError::ShuttingDown => "The service is shutting down".into(),
            other => other.to_string(),
        };
        Self::from_code(code, message)
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
        if let Some(detail) = self.internal {
            nimbus_api::InternalDetail::attach(&mut resp, detail);
        }
        resp
    }
}
