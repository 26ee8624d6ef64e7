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
    /// The Step Functions exception name.
    pub fn aws_code(&self) -> &'static str {
        match self {
            WorkflowError::InvalidDefinition(_) => "InvalidDefinition",
            WorkflowError::InvalidName(_) => "InvalidName",
            WorkflowError::InvalidArn(_) => "InvalidArn",
            WorkflowError::InvalidExecutionInput(_) => "InvalidExecutionInput",
            WorkflowError::InvalidToken(_) => "InvalidToken",
            WorkflowError::Validation(_) => "ValidationException",
            WorkflowError::StateMachineAlreadyExists(_) => "StateMachineAlreadyExists",
            WorkflowError::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            WorkflowError::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            WorkflowError::ExecutionDoesNotExist(_) => "ExecutionDoesNotExist",
            WorkflowError::StateMachineTypeNotSupported(_) => "StateMachineTypeNotSupported",
            WorkflowError::ExecutionLimitExceeded(_) => "ExecutionLimitExceeded",
            WorkflowError::ShuttingDown => "ServiceUnavailable",
            WorkflowError::Store(_) | WorkflowError::Corrupt(_) => "InternalError",
        }
    }

    /// Whether the client is at fault (4xx) rather than the server (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            WorkflowError::ShuttingDown | WorkflowError::Store(_) | WorkflowError::Corrupt(_)
        )
    }
}
