//! The function model: what a user deploys and the rules that make it valid.
//!
//! A function is a name, a runtime, a handler, a code package (identified by the
//! sha256 of its zip) and a few limits. Validation happens here, once, so that every
//! way of deploying (native API, CLI manifest, AWS API) accepts and refuses exactly
//! the same things with the same messages.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::limits::*;

/// A validated function name: 1–64 characters of `[A-Za-z0-9_-]`, as on Lambda.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() || s.len() > 64 {
            return Err(ValidationError::param(format!(
                "function name must be 1 to 64 characters long, got {}",
                s.len()
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(ValidationError::param(format!(
                "function name {s:?} contains {c:?}; only letters, digits, '-' and '_' are allowed"
            )));
        }
        Ok(Self(s))
    }
}

impl FromStr for FunctionName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_string())
    }
}

impl From<FunctionName> for String {
    fn from(n: FunctionName) -> String {
        n.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an instance is started. Every runtime speaks the Lambda Runtime API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Runtime {
    /// The machine's CPython 3 with Nimbus's embedded bootstrap.
    Python3,
    /// The machine's Node.js with Nimbus's embedded bootstrap.
    Nodejs,
    /// The package's own executable `bootstrap` (any language, any runtime client).
    Provided,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python3 => "python3",
            Runtime::Nodejs => "nodejs",
            Runtime::Provided => "provided",
        }
    }

    /// Default handler for a runtime, as the Lambda console uses.
    pub fn default_handler(self) -> &'static str {
        match self {
            Runtime::Python3 => "lambda_function.lambda_handler",
            Runtime::Nodejs => "index.handler",
            Runtime::Provided => "bootstrap",
        }
    }
}

impl FromStr for Runtime {
    type Err = ValidationError;
    /// Accepts the Nimbus names and the AWS identifiers people already have in their
    /// templates (`python3.12`, `nodejs20.x`, `provided.al2023`): the code runs on
    /// the machine's interpreter either way.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let r = match s {
            "python3" | "python" => Runtime::Python3,
            s if s.starts_with("python3.")
                && s[8..].chars().all(|c| c.is_ascii_digit())
                && s.len() > 8 =>
            {
                Runtime::Python3
            }
            "nodejs" | "node" => Runtime::Nodejs,
            s if s.starts_with("nodejs")
                && s.ends_with(".x")
                && s[6..s.len() - 2].chars().all(|c| c.is_ascii_digit())
                && s.len() > 8 =>
            {
                Runtime::Nodejs
            }
            "provided" | "provided.al2" | "provided.al2023" => Runtime::Provided,
            other => {
                return Err(ValidationError::param(format!(
                    "unknown runtime {other:?}; expected python3 (or python3.x), nodejs (or nodejsNN.x) or provided"
                )));
            }
        };
        Ok(r)
    }
}

impl TryFrom<String> for Runtime {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Runtime> for String {
    fn from(r: Runtime) -> String {
        r.as_str().to_string()
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Environment variables the platform sets itself; users may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "NIMBUS_HANDLER_STYLE",
    "TZ",
];

/// The user-controlled configuration of a function (`$LATEST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub name: FunctionName,
    pub runtime: Runtime,
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub description: String,
    /// What the function's own credentials may reach: shorthand grants
    /// (`s3:photos`, `sqs:jobs`, …) and IAM policy statements; see
    /// [`crate::permissions`]. Empty: nothing.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::permissions::deserialize_list"
    )]
    pub permissions: Vec<crate::permissions::Permission>,
    /// Requested handler style; `None` (the default, `auto`) detects it from the
    /// package at deploy time (see [`crate::style`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_style: Option<crate::style::HandlerStyle>,
    /// Size of the private `/tmp` in MB (512 to 10,240).
    #[serde(default = "default_ephemeral_storage_mb")]
    pub ephemeral_storage_mb: u32,
    /// What the instances may reach on the network.
    #[serde(default, skip_serializing_if = "Network::is_default")]
    pub network: Network,
}

fn default_ephemeral_storage_mb() -> u32 {
    crate::limits::DEFAULT_EPHEMERAL_STORAGE_MB
}

/// A function's network access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network, without link-local addresses (cloud metadata
    /// services hand out the host's credentials) where the server can enforce it.
    #[default]
    Default,
    /// No network at all: an empty network namespace; the Runtime API stays
    /// reachable through its Unix socket.
    None,
}

impl Network {
    pub fn is_default(&self) -> bool {
        *self == Network::Default
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Default => "default",
            Network::None => "none",
        }
    }
}

impl FromStr for Network {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Network::Default),
            "none" => Ok(Network::None),
            other => Err(ValidationError::param(format!(
                "network must be \"default\" or \"none\", got {other:?}"
            ))),
        }
    }
}

impl FunctionConfig {
    /// Checks every field except the handler, which needs the code package
    /// (see [`crate::package::PackageListing::check_handler`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::permissions::validate(&self.permissions)?;
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(ValidationError::param(format!(
                "memory_mb must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB}, got {}",
                self.memory_mb
            )));
        }
        if !(MIN_EPHEMERAL_STORAGE_MB..=MAX_EPHEMERAL_STORAGE_MB)
            .contains(&self.ephemeral_storage_mb)
        {
            return Err(ValidationError::param(format!(
                "ephemeral_storage_mb must be between {MIN_EPHEMERAL_STORAGE_MB} and {MAX_EPHEMERAL_STORAGE_MB}, got {}",
                self.ephemeral_storage_mb
            )));
        }
        if !(MIN_TIMEOUT_S..=MAX_TIMEOUT_S).contains(&self.timeout_s) {
            return Err(ValidationError::param(format!(
                "timeout_s must be between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S} seconds, got {}",
                self.timeout_s
            )));
        }
        if self.handler.is_empty() || self.handler.len() > 128 {
            return Err(ValidationError::param(
                "handler must be 1 to 128 characters long",
            ));
        }
        if self
            .handler
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ValidationError::param(format!(
                "handler {:?} must not contain whitespace or control characters",
                self.handler
            )));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ValidationError::param(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        let mut total = 0;
        for (k, v) in &self.environment {
            let valid_key = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_key {
                return Err(ValidationError::param(format!(
                    "environment variable name {k:?} must start with a letter and contain only letters, digits and '_'"
                )));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(ValidationError::param(format!(
                    "environment variable {k} is reserved by the platform and cannot be set"
                )));
            }
            if v.contains('\0') {
                return Err(ValidationError::param(format!(
                    "environment variable {k} contains a NUL byte"
                )));
            }
            total += k.len() + v.len();
        }
        if total > MAX_ENV_BYTES {
            return Err(ValidationError::param(format!(
                "environment variables take {total} bytes; the limit is {MAX_ENV_BYTES}"
            )));
        }
        Ok(())
    }
}

/// A deployed function as the control plane stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    #[serde(flatten)]
    pub config: FunctionConfig,
    /// Always `$LATEST` until versions exist.
    pub version: String,
    /// The handler style instances run with: `config.handler_style`, or what
    /// deploy detected (records from before styles existed are `aws`).
    #[serde(default)]
    pub resolved_style: crate::style::HandlerStyle,
    /// Hex sha256 of the code zip; the code store is addressed by it.
    pub code_sha256: String,
    pub code_size: u64,
    /// Changes on every update; lets callers detect concurrent modifications.
    pub revision_id: String,
    pub created_at: String,
    pub last_modified: String,
    /// The runtime identifier as given through the AWS API (`python3.12`), echoed
    /// back there; the runtime that runs is `config.runtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// The execution role given through the AWS API (kept and echoed back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Reserved concurrency: both a guarantee and a cap (0 disables the function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_concurrency: Option<u32>,
    /// The highest version number ever published (numbers are never reused).
    #[serde(default)]
    pub last_version: u32,
    /// How asynchronous invocations are retried and where their results go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_invoke_config: Option<EventInvokeConfig>,
    /// Provisioned concurrency by qualifier (a version number or an alias).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioned: BTreeMap<String, u32>,
}

/// Retry and destination settings of asynchronous invocations (Lambda's
/// `FunctionEventInvokeConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    /// Retries after the first attempt: 0–2 (default 2).
    pub max_retry_attempts: u32,
    /// Events older than this are given up: 60–21600 s (default 21600).
    pub max_event_age_s: u32,
    /// Function ARN invoked with the record of a successful invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// Function ARN invoked with the record of a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    pub last_modified_ms: i64,
}

impl Default for EventInvokeConfig {
    fn default() -> Self {
        Self {
            max_retry_attempts: 2,
            max_event_age_s: 21_600,
            on_success: None,
            on_failure: None,
            last_modified_ms: 0,
        }
    }
}

impl EventInvokeConfig {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.max_retry_attempts > 2 {
            return Err(ValidationError::param(format!(
                "MaximumRetryAttempts must be between 0 and 2, got {}",
                self.max_retry_attempts
            )));
        }
        if !(60..=21_600).contains(&self.max_event_age_s) {
            return Err(ValidationError::param(format!(
                "MaximumEventAgeInSeconds must be between 60 and 21600, got {}",
                self.max_event_age_s
            )));
        }
        for d in [&self.on_success, &self.on_failure].into_iter().flatten() {
            let parts: Vec<&str> = d.split(':').collect();
            let is_function = parts.len() >= 7
                && parts[0] == "arn"
                && parts[2] == "lambda"
                && parts[5] == "function";
            // arn:aws:sqs:<region>:<account>:<queue>, arn:aws:sns:…:<topic>
            let is_queue_or_topic = parts.len() == 6
                && parts[0] == "arn"
                && (parts[2] == "sqs" || parts[2] == "sns")
                && !parts[5].is_empty();
            if !is_function && !is_queue_or_topic {
                return Err(ValidationError::param(format!(
                    "The destination ARN {d} is invalid: destinations are Lambda function, SQS queue or SNS topic ARNs"
                )));
            }
        }
        Ok(())
    }
}

/// A named pointer to a published version, optionally splitting traffic with a
/// second version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub function: FunctionName,
    pub name: String,
    pub function_version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<AliasRouting>,
    pub revision_id: String,
}

/// `weight` (0.0–1.0) of the traffic goes to `version`; the rest to the alias's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRouting {
    pub version: String,
    pub weight: f64,
}

/// Alias names: letters, digits, '-' and '_', not purely numeric (that is a version).
pub fn validate_alias_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ValidationError::param(format!(
            "alias name {name:?} must be 1-128 letters, digits, '-' or '_' and not purely numeric"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FunctionConfig {
        FunctionConfig {
            name: "hello".parse().unwrap(),
            runtime: Runtime::Python3,
            handler: "app.handler".into(),
            memory_mb: 128,
            timeout_s: 3,
            environment: BTreeMap::new(),
            description: String::new(),
            permissions: Vec::new(),
            handler_style: None,
            ephemeral_storage_mb: 512,
            network: Network::Default,
        }
    }

    #[test]
    fn names() {
        assert!("hello-world_1".parse::<FunctionName>().is_ok());
        assert!("".parse::<FunctionName>().is_err());
        assert!("a b".parse::<FunctionName>().is_err());
        assert!("x".repeat(65).parse::<FunctionName>().is_err());
        assert!("../etc".parse::<FunctionName>().is_err());
    }

    #[test]
    fn runtimes() {
        assert_eq!("python3.12".parse::<Runtime>().unwrap(), Runtime::Python3);
        assert_eq!("nodejs20.x".parse::<Runtime>().unwrap(), Runtime::Nodejs);
        assert_eq!(
            "provided.al2023".parse::<Runtime>().unwrap(),
            Runtime::Provided
        );
        assert!("python3.".parse::<Runtime>().is_err());
        assert!(
            "ruby3.2"
                .parse::<Runtime>()
                .unwrap_err()
                .message
                .contains("unknown runtime")
        );
    }

    #[test]
    fn limits() {
        let mut c = cfg();
        assert!(c.validate().is_ok());
        c.memory_mb = 64;
        assert!(c.validate().unwrap_err().message.contains("memory_mb"));
        c = cfg();
        c.timeout_s = 901;
        assert!(c.validate().unwrap_err().message.contains("timeout_s"));
        c = cfg();
        c.environment.insert("AWS_REGION".into(), "x".into());
        assert!(c.validate().unwrap_err().message.contains("reserved"));
        c = cfg();
        c.environment.insert("BIG".into(), "x".repeat(5000));
        assert!(c.validate().unwrap_err().message.contains("limit"));
    }
}
