//! The public error vocabulary.
//!
//! Every error that crosses an API boundary maps to one [`ErrorCode`]. The code
//! decides the HTTP status and the stable machine-readable name; the message says
//! precisely what was wrong without leaking internals. The AWS-compatible API maps
//! the same codes onto the AWS exception names, from the same table.

use std::fmt;

/// How one AWS protocol answers an error: the HTTP status and the modelled
/// exception name (`x-amzn-ErrorType`, `__type`, the Query `Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsException {
    pub status: u16,
    pub name: &'static str,
    /// SQS only: the Query-protocol code (`x-amzn-query-error`), which the
    /// AWS CLI and older SDKs read instead of the JSON `__type`.
    pub query_code: &'static str,
}

const fn ex(status: u16, name: &'static str) -> AwsException {
    AwsException {
        status,
        name,
        query_code: name,
    }
}

const fn sqs(status: u16, shape: &'static str, query_code: &'static str) -> AwsException {
    AwsException {
        status,
        name: shape,
        query_code,
    }
}

/// One row of the error table.
#[derive(Debug, Clone, Copy)]
pub struct ErrorRow {
    /// The native API's code (`{"error": {"code"}}`) and status.
    pub name: &'static str,
    pub status: u16,
    /// The Lambda API (REST-JSON).
    pub lambda: AwsException,
    /// SQS (JSON 1.0, with the Query code alongside).
    pub sqs: AwsException,
    /// Step Functions (JSON 1.0).
    pub states: AwsException,
    /// SNS (Query, XML errors).
    pub sns: AwsException,
    /// The S3 error code (`s3s` decides the status from it).
    pub s3: &'static str,
}

/// The error table: declares every [`ErrorCode`] with its native name and
/// HTTP status and the exception each AWS protocol answers with.
///
/// The first rows are the public codes of the native API. The rows after
/// them are finer codes for errors one protocol names more precisely (SQS's
/// `QueueDoesNotExist`, Step Functions' `StateMachineDoesNotExist`, S3's
/// `NoSuchBucket`); each says `..General` and inherits the rest, its native
/// name and status among it, from that public code.
macro_rules! error_table {
    ($(
        $(#[$doc:meta])*
        $code:ident { $($field:ident: $value:expr,)* $(..$general:ident)? }
    )*) => {
        /// Stable error codes; [`ErrorCode::row`] says what each becomes on
        /// the wire of each protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// This code's row of the table.
            pub fn row(self) -> ErrorRow {
                match self {
                    $(ErrorCode::$code => ErrorRow {
                        $($field: $value,)*
                        $(..ErrorCode::$general.row())?
                    },)*
                }
            }
        }
    };
}

error_table! {
    InvalidParameter {
        name: "InvalidParameter", status: 400,
        lambda: ex(400, "InvalidParameterValueException"),
        sqs: sqs(400, "InvalidParameterValueException", "InvalidParameterValue"),
        states: ex(400, "ValidationException"),
        sns: ex(400, "InvalidParameter"),
        s3: "InvalidArgument",
    }
    InvalidCodePackage { name: "InvalidCodePackage", ..InvalidParameter }
    // SQS and SNS have no not-found or conflict shapes of their own for
    // functions and mappings: they answer those as invalid parameters.
    FunctionNotFound {
        name: "FunctionNotFound", status: 404,
        lambda: ex(404, "ResourceNotFoundException"),
        ..InvalidParameter
    }
    FunctionExists {
        name: "FunctionExists", status: 409,
        lambda: ex(409, "ResourceConflictException"),
        ..InvalidParameter
    }
    Conflict {
        name: "Conflict", status: 409,
        lambda: ex(409, "ResourceConflictException"),
        ..InvalidParameter
    }
    PayloadTooLarge {
        name: "PayloadTooLarge", status: 413,
        lambda: ex(413, "RequestEntityTooLargeException"),
        s3: "EntityTooLarge",
        ..InvalidParameter
    }
    InvalidPayload {
        name: "InvalidPayload", status: 400,
        lambda: ex(400, "InvalidRequestContentException"),
        ..InvalidParameter
    }
    // As the SigV4 check answers an unknown key (`SigV4Error`, which has its
    // own finer table for every way a signature fails).
    Unauthorized {
        name: "Unauthorized", status: 401,
        lambda: ex(403, "UnrecognizedClientException"),
        sqs: ex(403, "UnrecognizedClientException"),
        states: ex(403, "UnrecognizedClientException"),
        sns: ex(403, "UnrecognizedClientException"),
        s3: "InvalidAccessKeyId",
    }
    /// Authenticated, but not allowed.
    Forbidden {
        name: "Forbidden", status: 403,
        lambda: ex(403, "AccessDeniedException"),
        sqs: sqs(403, "AccessDeniedException", "AccessDenied"),
        states: ex(403, "AccessDeniedException"),
        sns: ex(403, "AuthorizationError"),
        s3: "AccessDenied",
    }
    TooManyRequests {
        name: "TooManyRequests", status: 429,
        lambda: ex(429, "TooManyRequestsException"),
        sqs: sqs(400, "RequestThrottled", "RequestThrottled"),
        states: ex(400, "ThrottlingException"),
        sns: ex(400, "Throttled"),
        s3: "SlowDown",
    }
    PreconditionFailed {
        name: "PreconditionFailed", status: 412,
        lambda: ex(412, "PreconditionFailedException"),
        s3: "PreconditionFailed",
        ..InvalidParameter
    }
    ShuttingDown {
        name: "ShuttingDown", status: 503,
        lambda: ex(503, "ServiceException"),
        sqs: sqs(503, "ServiceUnavailable", "ServiceUnavailable"),
        states: ex(503, "ServiceUnavailable"),
        sns: ex(503, "ServiceUnavailable"),
        s3: "ServiceUnavailable",
    }
    NotFound {
        name: "NotFound", status: 404,
        lambda: ex(404, "ResourceNotFoundException"),
        sns: ex(404, "NotFound"),
        ..InvalidParameter
    }
    Internal {
        name: "InternalError", status: 500,
        lambda: ex(500, "ServiceException"),
        sqs: sqs(500, "InternalError", "InternalError"),
        states: ex(500, "InternalError"),
        sns: ex(500, "InternalError"),
        s3: "InternalError",
    }

    // SQS: queues and messages.
    QueueDoesNotExist {
        sqs: sqs(400, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
        lambda: ex(400, "InvalidParameterValueException"),
        sns: ex(400, "InvalidParameter"),
        ..NotFound
    }
    QueueNameExists { sqs: sqs(400, "QueueNameExists", "QueueAlreadyExists"), ..Conflict }
    InvalidAttributeName {
        sqs: sqs(400, "InvalidAttributeName", "InvalidAttributeName"),
        ..InvalidParameter
    }
    InvalidAttributeValue {
        sqs: sqs(400, "InvalidAttributeValue", "InvalidAttributeValue"),
        ..InvalidParameter
    }
    ReceiptHandleIsInvalid {
        sqs: sqs(400, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
        ..InvalidParameter
    }
    MessageNotInflight {
        sqs: sqs(400, "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"),
        ..InvalidParameter
    }

    // Step Functions: state machines and executions.
    InvalidDefinition { states: ex(400, "InvalidDefinition"), ..InvalidParameter }
    InvalidName { states: ex(400, "InvalidName"), ..InvalidParameter }
    InvalidArn { states: ex(400, "InvalidArn"), ..InvalidParameter }
    InvalidExecutionInput { states: ex(400, "InvalidExecutionInput"), ..InvalidParameter }
    InvalidToken { states: ex(400, "InvalidToken"), ..InvalidParameter }
    StateMachineTypeNotSupported {
        states: ex(400, "StateMachineTypeNotSupported"),
        ..InvalidParameter
    }
    StateMachineAlreadyExists { states: ex(400, "StateMachineAlreadyExists"), ..Conflict }
    StateMachineDoesNotExist { states: ex(400, "StateMachineDoesNotExist"), ..NotFound }
    ExecutionAlreadyExists { states: ex(400, "ExecutionAlreadyExists"), ..Conflict }
    ExecutionDoesNotExist { states: ex(400, "ExecutionDoesNotExist"), ..NotFound }
    ExecutionLimitExceeded { states: ex(400, "ExecutionLimitExceeded"), ..TooManyRequests }

    // S3: buckets, objects and multipart uploads.
    NoSuchBucket { s3: "NoSuchBucket", ..NotFound }
    NoSuchKey { s3: "NoSuchKey", ..NotFound }
    NoSuchUpload { s3: "NoSuchUpload", ..NotFound }
    BucketAlreadyOwnedByYou { s3: "BucketAlreadyOwnedByYou", ..Conflict }
    BucketNotEmpty { s3: "BucketNotEmpty", ..Conflict }
    InvalidPart { s3: "InvalidPart", ..InvalidParameter }
    InvalidPartOrder { s3: "InvalidPartOrder", ..InvalidParameter }
    EntityTooSmall { s3: "EntityTooSmall", ..InvalidParameter }
    BadDigest { s3: "BadDigest", ..InvalidParameter }
}

impl ErrorCode {
    /// The native API's name of this code.
    pub fn as_str(self) -> &'static str {
        self.row().name
    }

    pub fn http_status(self) -> u16 {
        self.row().status
    }

    /// Whether the server is at fault (logged, and its detail masked).
    pub fn is_internal(self) -> bool {
        self.row().status == 500
    }
}

/// Why a call was throttled (`TooManyRequests`): the Lambda API reports the
/// host-wide limits and the per-function ones under different reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The account (server-wide) concurrency limit.
    AccountConcurrency,
    /// The server's memory budget, like the account limit host-wide.
    MemoryBudget,
    /// The function's reserved concurrency.
    ReservedConcurrency,
    /// The function's cap on concurrent instances.
    InstanceLimit,
    /// The function's rate of new instances (scale-out).
    ScaleOutRate,
}

impl Throttle {
    /// The `Reason` member of Lambda's `TooManyRequestsException`.
    pub fn lambda_reason(self) -> &'static str {
        match self {
            Throttle::AccountConcurrency | Throttle::MemoryBudget => {
                "ConcurrentInvocationLimitExceeded"
            }
            Throttle::ReservedConcurrency | Throttle::InstanceLimit | Throttle::ScaleOutRate => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
        }
    }
}

/// The `errorType`s Nimbus itself reports when an invocation fails outside
/// the handler (Lambda's names), in `Outcome::Error` beside the handlers' own.
pub mod platform_error {
    pub const SANDBOX_TIMEDOUT: &str = "Sandbox.Timedout";
    pub const SANDBOX_FAILURE: &str = "Sandbox.Failure";
    pub const RUNTIME_EXIT_ERROR: &str = "Runtime.ExitError";
    pub const RUNTIME_OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";
    pub const RUNTIME_INVALID_ENTRYPOINT: &str = "Runtime.InvalidEntrypoint";
    pub const RUNTIME_TRUNCATED_RESPONSE: &str = "Runtime.TruncatedResponse";
    pub const RUNTIME_UNKNOWN: &str = "Runtime.Unknown";
    pub const RUNTIME_INVALID_RESPONSE_MODE_HEADER: &str = "Runtime.InvalidResponseModeHeader";
    pub const FUNCTION_RESPONSE_SIZE_TOO_LARGE: &str = "Function.ResponseSizeTooLarge";
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The native API's codes, pinned: a finer code shows its general one.
    #[test]
    fn native_names_and_statuses() {
        let pinned = [
            (ErrorCode::InvalidParameter, "InvalidParameter", 400),
            (ErrorCode::InvalidCodePackage, "InvalidCodePackage", 400),
            (ErrorCode::FunctionNotFound, "FunctionNotFound", 404),
            (ErrorCode::FunctionExists, "FunctionExists", 409),
            (ErrorCode::Conflict, "Conflict", 409),
            (ErrorCode::PayloadTooLarge, "PayloadTooLarge", 413),
            (ErrorCode::InvalidPayload, "InvalidPayload", 400),
            (ErrorCode::Unauthorized, "Unauthorized", 401),
            (ErrorCode::Forbidden, "Forbidden", 403),
            (ErrorCode::TooManyRequests, "TooManyRequests", 429),
            (ErrorCode::PreconditionFailed, "PreconditionFailed", 412),
            (ErrorCode::ShuttingDown, "ShuttingDown", 503),
            (ErrorCode::NotFound, "NotFound", 404),
            (ErrorCode::Internal, "InternalError", 500),
            (ErrorCode::QueueDoesNotExist, "NotFound", 404),
            (ErrorCode::StateMachineAlreadyExists, "Conflict", 409),
            (ErrorCode::ExecutionLimitExceeded, "TooManyRequests", 429),
            (ErrorCode::NoSuchBucket, "NotFound", 404),
        ];
        for (code, name, status) in pinned {
            assert_eq!(
                (code.as_str(), code.http_status()),
                (name, status),
                "{code:?}"
            );
        }
    }

    #[test]
    fn finer_codes_keep_the_other_protocols_answers() {
        let q = ErrorCode::QueueDoesNotExist.row();
        assert_eq!(
            (q.sqs.name, q.sqs.query_code),
            (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue"
            )
        );
        assert_eq!(q.states, ErrorCode::InvalidParameter.row().states);
        assert_eq!(ErrorCode::NoSuchKey.row().lambda.status, 404);
        assert_eq!(ErrorCode::StateMachineDoesNotExist.row().states.status, 400);
    }
}
