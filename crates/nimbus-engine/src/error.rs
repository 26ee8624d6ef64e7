use nimbus_core::{ErrorCode, Throttle, ValidationError};
use nimbus_store::StoreError;

/// Errors of the engine, each mapped to a row of the [`ErrorCode`] table.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("function {0} not found")]
    FunctionNotFound(String),
    #[error("function {0} already exists")]
    FunctionExists(String),
    #[error("{0} not found; upload it first")]
    CodeNotFound(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(
        "request payload is {size} bytes; the limit for synchronous invocations is {limit} bytes"
    )]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("could not parse request body into json: {0}")]
    InvalidJson(String),
    #[error("rate exceeded: {message}")]
    TooManyRequests { reason: Throttle, message: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("could not start an instance: {0}")]
    InstanceStart(String),
    #[error("{0}")]
    Conflict(String),
    #[error("alias {0} not found")]
    AliasNotFound(String),
    #[error("no provisioned concurrency config for {0}")]
    ProvisionedNotFound(String),
    #[error("the revision id provided does not match the latest revision id {0}")]
    PreconditionFailed(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("storage: {0}")]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => EngineError::Invalid(v),
            other => EngineError::Store(other),
        }
    }
}

impl EngineError {
    pub fn too_many_requests(reason: Throttle, message: impl Into<String>) -> Self {
        EngineError::TooManyRequests {
            reason,
            message: message.into(),
        }
    }

    /// This error's row of the error table.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::FunctionNotFound(_) => ErrorCode::FunctionNotFound,
            EngineError::FunctionExists(_) => ErrorCode::FunctionExists,
            EngineError::Conflict(_) => ErrorCode::Conflict,
            EngineError::AliasNotFound(_)
            | EngineError::ProvisionedNotFound(_)
            | EngineError::NotFound(_) => ErrorCode::NotFound,
            EngineError::CodeNotFound(_) => ErrorCode::InvalidParameter,
            EngineError::Invalid(v) => v.code,
            EngineError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            EngineError::InvalidJson(_) => ErrorCode::InvalidPayload,
            EngineError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            EngineError::ShuttingDown => ErrorCode::ShuttingDown,
            EngineError::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            EngineError::InstanceStart(_) | EngineError::Store(_) => ErrorCode::Internal,
        }
    }
}
