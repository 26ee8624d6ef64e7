use nimbus_core::ErrorCode;
use nimbus_store::StoreError;

/// Errors of the workflow service, named after the Step Functions exceptions
/// they become on the AWS API.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("{0}")]
    InvalidDefinition(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidExecutionInput(String),
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Validation(String),
    #[error("State Machine Already Exists: '{0}'")]
    StateMachineAlreadyExists(String),
    #[error("State Machine Does Not Exist: '{0}'")]
    StateMachineDoesNotExist(String),
    #[error("Execution Already Exists: '{0}'")]
    ExecutionAlreadyExists(String),
    #[error("Execution Does Not Exist: '{0}'")]
    ExecutionDoesNotExist(String),
    #[error("{0}")]
    StateMachineTypeNotSupported(String),
    /// Too many executions running (Step Functions throttles StartExecution
    /// the same way past its open-executions quota).
    #[error("{0}")]
    ExecutionLimitExceeded(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("corrupt workflow state: {0}")]
    Corrupt(String),
}

impl WorkflowError {
    /// This error's row of the error table.
    pub fn code(&self) -> ErrorCode {
        match self {
            WorkflowError::InvalidDefinition(_) => ErrorCode::InvalidDefinition,
            WorkflowError::InvalidName(_) => ErrorCode::InvalidName,
            WorkflowError::InvalidArn(_) => ErrorCode::InvalidArn,
            WorkflowError::InvalidExecutionInput(_) => ErrorCode::InvalidExecutionInput,
            WorkflowError::InvalidToken(_) => ErrorCode::InvalidToken,
            WorkflowError::Validation(_) => ErrorCode::InvalidParameter,
            WorkflowError::StateMachineAlreadyExists(_) => ErrorCode::StateMachineAlreadyExists,
            WorkflowError::StateMachineDoesNotExist(_) => ErrorCode::StateMachineDoesNotExist,
            WorkflowError::ExecutionAlreadyExists(_) => ErrorCode::ExecutionAlreadyExists,
            WorkflowError::ExecutionDoesNotExist(_) => ErrorCode::ExecutionDoesNotExist,
            WorkflowError::StateMachineTypeNotSupported(_) => {
                ErrorCode::StateMachineTypeNotSupported
            }
            WorkflowError::ExecutionLimitExceeded(_) => ErrorCode::ExecutionLimitExceeded,
            WorkflowError::ShuttingDown => ErrorCode::ShuttingDown,
            WorkflowError::Store(_) | WorkflowError::Corrupt(_) => ErrorCode::Internal,
        }
    }
}
