//! Translating between Lambda's wire shapes and Nimbus's function records.

use base64::Engine as _;
use nimbus_core::{FunctionName, FunctionRecord};
use serde_json::{Value, json};

use crate::ApiState;
use crate::aws::AwsError;

/// A function named the ways Lambda allows: `name`, `name:qualifier`,
/// `123456789012:function:name[:q]` or a full ARN.
pub struct FunctionId {
    pub name: FunctionName,
    pub qualifier: Option<String>,
}

pub fn parse_function_id(raw: &str, query_qualifier: Option<&str>) -> Result<FunctionId, AwsError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, from_name) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        [_, "function", name] => (*name, None),
        [_, "function", name, q] => (*name, Some(*q)),
        ["arn", _, "lambda", _, _, "function", name] => (*name, None),
        ["arn", _, "lambda", _, _, "function", name, q] => (*name, Some(*q)),
        _ => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
            )));
        }
    };
    let qualifier = match (from_name, query_qualifier.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) if a != b => {
            return Err(AwsError::invalid(
                "The derived qualifier from the function name does not match the specified qualifier.",
            ));
        }
        (a, b) => a.or(b).map(str::to_string),
    };
    let name = name
        .parse::<FunctionName>()
        .map_err(|e| AwsError::validation(e.message))?;
    Ok(FunctionId { name, qualifier })
}

/// A function named without a qualifier; `refusal` says why one is not allowed.
pub fn unqualified(raw: &str, refusal: &str) -> Result<FunctionId, AwsError> {
    let id = parse_function_id(raw, None)?;
    if id.qualifier.is_some() {
        return Err(AwsError::invalid(refusal));
    }
    Ok(id)
}

impl FunctionId {
    pub fn arn(&self, s: &ApiState) -> String {
        let base = s.control.config().function_arn(self.name.as_str());
        match &self.qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }

    /// Only `$LATEST` exists until versions arrive; anything else is not found.
    pub fn require_latest(&self, s: &ApiState) -> Result<(), AwsError> {
        match self.qualifier.as_deref() {
            None | Some("$LATEST") => Ok(()),
            Some(_) => Err(AwsError::not_found(format!(
                "Function not found: {}",
                self.arn(s)
            ))),
        }
    }
}

pub fn code_sha256_b64(hex_digest: &str) -> String {
    let bytes = hex::decode(hex_digest).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `FunctionConfiguration` shape.
pub fn configuration(s: &ApiState, r: &FunctionRecord, qualified: bool) -> Value {
    let c = &r.config;
    let base = s.control.config().function_arn(c.name.as_str());
    let arn = if qualified {
        format!("{base}:{}", r.version)
    } else {
        base
    };
    json!({
        "FunctionName": c.name.as_str(),
        "FunctionArn": arn,
        "Runtime": r.runtime_id.clone().unwrap_or_else(|| c.runtime.as_str().to_string()),
        "Role": r.role.clone().unwrap_or_else(|| format!("arn:aws:iam::{}:role/nimbus-function", s.control.config().account_id)),
        "Handler": c.handler,
        "CodeSize": r.code_size,
        "CodeSha256": code_sha256_b64(&r.code_sha256),
        "Description": c.description,
        "Timeout": c.timeout_s,
        "MemorySize": c.memory_mb,
        "LastModified": r.last_modified,
        "Version": r.version,
        "RevisionId": r.revision_id,
        "Environment": { "Variables": c.environment },
        "TracingConfig": { "Mode": "PassThrough" },
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": { "Size": c.ephemeral_storage_mb },
        "LoggingConfig": { "LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", c.name) },
        "SnapStart": { "ApplyOn": "None", "OptimizationStatus": "Off" },
        "State": "Active",
        "LastUpdateStatus": "Successful",
    })
}
