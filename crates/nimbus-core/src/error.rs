//! The public error vocabulary.
//!
//! Every error that crosses an API boundary maps to one [`ErrorCode`]. The code
//! decides the HTTP status and the stable machine-readable name; the message says
//! precisely what was wrong without leaking internals. The AWS-compatible API maps
//! the same codes onto the AWS exception names.

use std::fmt;

/// Stable error codes with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameter,
    InvalidCodePackage,
    FunctionNotFound,
    FunctionExists,
    Conflict,
    PayloadTooLarge,
    InvalidPayload,
    Unauthorized,
    /// Authenticated, but not allowed.
    Forbidden,
    TooManyRequests,
    PreconditionFailed,
    ShuttingDown,
    NotFound,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "InvalidParameter",
            ErrorCode::InvalidCodePackage => "InvalidCodePackage",
            ErrorCode::FunctionNotFound => "FunctionNotFound",
            ErrorCode::FunctionExists => "FunctionExists",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "PayloadTooLarge",
            ErrorCode::InvalidPayload => "InvalidPayload",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::TooManyRequests => "TooManyRequests",
            ErrorCode::PreconditionFailed => "PreconditionFailed",
            ErrorCode::ShuttingDown => "ShuttingDown",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Internal => "InternalError",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidParameter
            | ErrorCode::InvalidCodePackage
            | ErrorCode::InvalidPayload => 400,
            ErrorCode::FunctionNotFound | ErrorCode::NotFound => 404,
            ErrorCode::FunctionExists | ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::ShuttingDown => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value supplied by a user broke a rule. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: ErrorCode,
    pub message: String,
}

impl ValidationError {
    pub fn param(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidParameter,
            message: message.into(),
        }
    }
    pub fn package(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidCodePackage,
            message: message.into(),
        }
    }
}
