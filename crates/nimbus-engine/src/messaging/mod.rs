//! Messaging: the queue and topic service (the broker Nimbus's SQS and SNS
//! APIs speak to).
//!
//! - [`queues::Queues`] is the SQS model on top of the store: attribute rules,
//!   MD5s, long polling (a `Notify` per queue wakes waiting receivers when a
//!   message arrives), redrive settings.
//! - [`topics::TopicService`] is publish/subscribe: fan-out to functions (through
//!   the [`Dispatcher`](crate::dispatch::Dispatcher) into the durable async
//!   queue) and to queues, with filter policies.
//! - [`wiring`] builds the broker together with the queue mappings (the
//!   pollers in `sources/`, which consume queues) and the dispatcher (whose
//!   async invocations use queues and topics as destinations). It lives apart
//!   so this module, the broker, depends on nothing above it.
//!
//! Every delivery lands in durable storage (the event queue or a message
//! queue) before the caller is answered, so nothing published is lost to a crash.

pub mod attributes;
#[doc(hidden)]
pub mod filter;
pub mod queues;
pub mod topics;
pub mod wiring;

use std::sync::Arc;

use nimbus_store::StoreError;

/// Errors of queues, topics and mappings; the API layers map each to the
/// protocol's error code.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist(String),
    #[error("A queue already exists with the same name and a different value for attribute {0}")]
    QueueExists(String),
    #[error("Unknown Attribute {0}.")]
    InvalidAttributeName(String),
    #[error("Invalid value for the parameter {0}: {1}")]
    InvalidAttributeValue(String, String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid(String),
    #[error("Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight,
    #[error("Topic does not exist")]
    TopicNotFound(String),
    #[error("Subscription does not exist")]
    SubscriptionNotFound(String),
    #[error("The resource you requested does not exist.")]
    MappingNotFound(String),
    #[error(
        "An event source mapping with SQS arn (\" {0} \") and function (\" {1} \") already exists."
    )]
    MappingExists(String, String),
    #[error("Function not found: {0}")]
    FunctionNotFound(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl MessagingError {
    /// This error's row of the error table.
    pub fn code(&self) -> nimbus_core::ErrorCode {
        use nimbus_core::ErrorCode;
        match self {
            MessagingError::QueueDoesNotExist(_) => ErrorCode::QueueDoesNotExist,
            MessagingError::QueueExists(_) => ErrorCode::QueueNameExists,
            MessagingError::InvalidAttributeName(_) => ErrorCode::InvalidAttributeName,
            MessagingError::InvalidAttributeValue(..) => ErrorCode::InvalidAttributeValue,
            MessagingError::InvalidParameter(_) => ErrorCode::InvalidParameter,
            MessagingError::ReceiptHandleIsInvalid(_) => ErrorCode::ReceiptHandleIsInvalid,
            MessagingError::MessageNotInflight => ErrorCode::MessageNotInflight,
            MessagingError::TopicNotFound(_)
            | MessagingError::SubscriptionNotFound(_)
            | MessagingError::MappingNotFound(_) => ErrorCode::NotFound,
            MessagingError::MappingExists(..) => ErrorCode::Conflict,
            MessagingError::FunctionNotFound(_) => ErrorCode::FunctionNotFound,
            MessagingError::ShuttingDown => ErrorCode::ShuttingDown,
            MessagingError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// Region and account of ARNs.
#[derive(Debug, Clone)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

impl ArnScope {
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account_id)
    }

    pub fn topic_arn(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{name}", self.region, self.account_id)
    }
}

/// The resource name of an `arn:aws:<service>:<region>:<account>:<name>` ARN.
pub fn arn_resource<'a>(arn: &'a str, service: &str) -> Option<&'a str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.len() == 6 && parts[0] == "arn" && parts[2] == service && !parts[5].is_empty())
        // Lazily: `then_some(parts[5])` would index before the length check.
        .then(|| parts[5])
}

/// The attribute under which a subscription or a queue's redrive records the
/// function whose credentials set it up. Never shown to callers, never
/// settable by them (it is not a known attribute name).
pub const CREATOR_ATTRIBUTE: &str = "nimbus:Creator";

/// Re-checks, at delivery, the grant of the function that set a delivery up
/// (review finding L2): a subscription, a redrive or a bucket notification
/// created with function credentials delivers only while that function may
/// still perform the action on the target. Set up by an operator (no
/// creator): always delivered. A skipped delivery is logged and counted.
pub struct DeliveryGrants {
    registry: Arc<crate::Registry>,
    skipped: std::sync::atomic::AtomicU64,
    /// When each repeating refusal (a redrive, checked on every receive) was
    /// last logged, so a poller does not flood the log.
    logged: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How often one repeating refusal is logged.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl DeliveryGrants {
    pub fn new(registry: Arc<crate::Registry>) -> Self {
        Self {
            registry,
            skipped: std::sync::atomic::AtomicU64::new(0),
            logged: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether a delivery set up by `creator` may still happen; `what` names
    /// it for the log when it may not. Each refusal is counted.
    pub fn still_allowed(
        &self,
        creator: Option<&str>,
        action: &str,
        resource: &str,
        what: &str,
    ) -> bool {
        let allowed = self.check(creator, action, resource, what);
        if !allowed {
            self.skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        allowed
    }

    /// The same check for a setting consulted on every receive (a redrive):
    /// not counted (most receives redrive nothing) and logged once a minute.
    pub fn setting_allowed(
        &self,
        creator: Option<&str>,
        action: &str,
        resource: &str,
        what: &str,
    ) -> bool {
        self.check(creator, action, resource, what)
    }

    fn check(&self, creator: Option<&str>, action: &str, resource: &str, what: &str) -> bool {
        let Some(function) = creator else {
            return true;
        };
        if self.registry.function_allows(function, action, resource) {
            return true;
        }
        let now = std::time::Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() > 10_000 {
            logged.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        let due = logged
            .get(what)
            .is_none_or(|at| now.duration_since(*at) >= LOG_EVERY);
        if due {
            logged.insert(what.to_string(), now);
            tracing::warn!(
                "{what} skipped: it was set up by function {function}, which may no longer {action} on {resource}"
            );
        }
        false
    }

    /// Deliveries skipped because their creator's grant was revoked.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arn_resource_refuses_what_is_not_an_arn() {
        use super::arn_resource;
        assert_eq!(arn_resource("arn:aws:sqs:r:a:jobs", "sqs"), Some("jobs"));
        assert_eq!(arn_resource("arn:aws:sqs:r:a:jobs", "sns"), None);
        assert_eq!(arn_resource("jobs", "sqs"), None, "no panic on a bare name");
        assert_eq!(arn_resource("arn:aws:sqs:r:a:", "sqs"), None);
    }
}
