//! Translating between Lambda's wire shapes and Nimbus's function records.

use base64::Engine as _;
use nimbus_core::{FunctionName, FunctionRecord};
use serde_json::{Value, json};

use crate::AwsError;
use crate::AwsState;

/// A function named the ways Lambda allows: `name`, `name:qualifier`,
/// `123456789012:function:name[:q]` or a full ARN.
pub struct FunctionId {
    pub name: FunctionName,
    pub qualifier: Option<String>,
}

pub fn parse_function_id(raw: &str, query_qualifier: Option<&str>) -> Result<FunctionId, AwsError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let account = |a: &str| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
    let partition = |p: &str| {
        p == "aws"
            || p.strip_prefix("aws-").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            })
    };
    let region = |r: &str| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let (name, from_name) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        [a, "function", name] if account(a) => (*name, None),
        [a, "function", name, q] if account(a) => (*name, Some(*q)),
        ["arn", p, "lambda", r, a, "function", name] if partition(p) && region(r) && account(a) => {
            (*name, None)
        }
        ["arn", p, "lambda", r, a, "function", name, q]
            if partition(p) && region(r) && account(a) =>
        {
            (*name, Some(*q))
        }
        _ => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
            )));
        }
    };
    if let Some(q) = from_name
        && !valid_qualifier(q)
    {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"
        )));
    }
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

/// `$LATEST`, a version number or an alias name.
fn valid_qualifier(q: &str) -> bool {
    q == "$LATEST"
        || (!q.is_empty()
            && q.len() <= 128
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
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
    /// Refuses the request unless `principal` may invoke this function (with
    /// its qualifier: the ARN of what actually runs). Called by the invoke
    /// handlers on the id they resolved, so authorisation and execution
    /// cannot disagree about the target.
    pub fn authorize_invoke(
        &self,
        s: &AwsState,
        principal: &crate::Principal,
    ) -> Result<(), AwsError> {
        let arn = crate::principal::arns(s).function(self.name.as_str(), self.qualifier.as_deref());
        if principal.allows(s, "lambda:InvokeFunction", &arn) {
            Ok(())
        } else {
            Err(AwsError::new(
                403,
                "AccessDeniedException",
                principal.denial("lambda:InvokeFunction", &arn),
            ))
        }
    }

    pub fn arn(&self, s: &AwsState) -> String {
        let base = s.control.config().function_arn(self.name.as_str());
        match &self.qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }

    /// Only `$LATEST` exists until versions arrive; anything else is not found.
    pub fn require_latest(&self, s: &AwsState) -> Result<(), AwsError> {
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
pub fn configuration(s: &AwsState, r: &FunctionRecord, qualified: bool) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What an id resolves to, after the one percent-decoding the router's
    /// `Path` does: the name and qualifier both authorisation
    /// ([`FunctionId::authorize_invoke`]) and execution use, or `None` when
    /// refused. There is one parse, so they cannot disagree; this pins which
    /// forms are accepted at all.
    type Resolved = Option<(String, Option<String>)>;

    fn resolve(encoded: &str) -> Resolved {
        let raw = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .ok()?;
        parse_function_id(&raw, None)
            .ok()
            .map(|id| (id.name.as_str().to_string(), id.qualifier))
    }

    #[test]
    fn every_id_form_is_refused_or_names_what_runs() {
        let victim = Some(("victim".to_string(), None));
        let table: &[(&str, Resolved)] = &[
            ("victim", victim.clone()),
            ("victim:prod", Some(("victim".into(), Some("prod".into())))),
            (
                "victim:$LATEST",
                Some(("victim".into(), Some("$LATEST".into()))),
            ),
            ("123456789012:function:victim", victim.clone()),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:victim",
                victim.clone(),
            ),
            (
                "arn:aws-cn:lambda:cn-north-1:123456789012:function:victim:7",
                Some(("victim".into(), Some("7".into()))),
            ),
            // The review's C1 forms: a wildcard account position, an empty
            // one, a short account, a foreign partition, too many parts.
            ("helper:function:victim", None),
            ("x:function:victim:q", None),
            (":function:victim", None),
            ("arn:aws:lambda:r:a:function:victim", None),
            ("arn:x:lambda:r:123456789012:function:victim", None),
            ("arn:aws:lambda:r:123456789012:function:helper:x:y", None),
            ("arn:aws:sqs:r:123456789012:function:victim", None),
            ("arn:aws:lambda::123456789012:function:victim", None),
            ("helper:bad qualifier", None),
            ("helper:", None),
            // URL-encoded: decoded once by the router, then the same rules.
            ("helper%3Afunction%3Avictim", None),
            ("arn%3Aaws%3Alambda%3Ar%3Aa%3Afunction%3Avictim", None),
            (
                "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Avictim",
                victim.clone(),
            ),
            // Double-encoded: after one decoding, `%3A` is not a valid name.
            ("helper%253Afunction%253Avictim", None),
            ("victim%2500", None),
        ];
        for (id, want) in table {
            assert_eq!(&resolve(id), want, "{id}");
        }
    }
}
