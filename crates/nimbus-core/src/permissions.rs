//! What a function may touch through the AWS-compatible APIs, with the
//! credentials Nimbus gives each of its instances.
//!
//! Least privilege by default: a function's credentials reach nothing until its
//! manifest (or deployment) grants it. A function's `permissions` is a list
//! whose entries are either
//!
//! - a **shorthand grant** `service:name` — `s3:photos`, `sqs:jobs`,
//!   `sns:alerts`, `lambda:resize`, `states:checkout` — where the name may hold
//!   `*` wildcards (`s3:tmp-*`). It allows every action on that resource (for
//!   S3, the bucket and its objects; for Lambda, every version and alias; for
//!   a state machine, its executions too); or
//! - an IAM **policy statement**: `{"Effect": "Allow"|"Deny", "Action": ..,
//!   "Resource": ..}` with one action or a list (`s3:GetObject`, `sqs:Send*`,
//!   `s3:*`) and one ARN pattern or a list (`arn:aws:s3:::photos/*`,
//!   `arn:aws:sqs:*:*:jobs`), `*` and `?` wildcards. An optional `Sid` is kept.
//!
//! A whole policy document `{"Version": "2012-10-17", "Statement": [..]}` is
//! accepted wherever the list is. The evaluation rules (default deny, explicit
//! Deny wins) are [`crate::policy`]'s. Elements Nimbus does not evaluate
//! (`NotAction`, `NotResource`, `Condition`, `Principal`) are refused rather
//! than ignored: ignoring a condition would grant more than was written.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::ValidationError;

/// Services a grant can name.
pub const SERVICES: &[&str] = &["s3", "sqs", "sns", "lambda", "states", "execute-api"];

/// Most entries (grants plus statements) one function may hold.
pub const MAX_GRANTS: usize = 100;
/// Most actions, and most resources, one statement may list.
pub const MAX_PER_STATEMENT: usize = 100;
/// Longest action or resource pattern.
const MAX_PATTERN: usize = 2048;

/// One entry of a function's `permissions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// `service:name`: every action on the named resource.
    Grant(String),
    /// An IAM statement.
    Statement(Statement),
}

/// An IAM policy statement, in the subset Nimbus evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    /// `Allow` or `Deny` (kept as written so validation can name a bad one).
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Permission::Grant(g) => s.serialize_str(g),
            Permission::Statement(st) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                if let Some(sid) = &st.sid {
                    m.serialize_entry("Sid", sid)?;
                }
                m.serialize_entry("Effect", &st.effect)?;
                m.serialize_entry("Action", &st.actions)?;
                m.serialize_entry("Resource", &st.resources)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Permission::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl From<&str> for Permission {
    fn from(g: &str) -> Self {
        Permission::Grant(g.to_string())
    }
}

impl Permission {
    /// Reads one entry: a string is a shorthand grant, an object a statement.
    pub fn from_value(v: Value) -> Result<Permission, String> {
        match v {
            Value::String(g) => Ok(Permission::Grant(g)),
            Value::Object(o) => {
                let mut st = Statement {
                    sid: None,
                    effect: String::new(),
                    actions: Vec::new(),
                    resources: Vec::new(),
                };
                let mut seen_effect = false;
                for (k, v) in o {
                    // IAM spells elements capitalised; TOML users may not.
                    match k.to_ascii_lowercase().as_str() {
                        "sid" => {
                            st.sid = Some(
                                v.as_str()
                                    .ok_or("policy statement: Sid must be a string")?
                                    .to_string(),
                            )
                        }
                        "effect" => {
                            seen_effect = true;
                            st.effect = v
                                .as_str()
                                .ok_or("policy statement: Effect must be a string")?
                                .to_string();
                        }
                        "action" => st.actions = one_or_many(v, "Action")?,
                        "resource" => st.resources = one_or_many(v, "Resource")?,
                        "notaction" | "notresource" | "condition" | "principal"
                        | "notprincipal" => {
                            return Err(format!(
                                "policy statement: {k} is not supported by Nimbus (use Effect, Action and Resource)"
                            ));
                        }
                        _ => {
                            return Err(format!(
                                "policy statement: unknown element {k:?} (Sid, Effect, Action, Resource)"
                            ));
                        }
                    }
                }
                if !seen_effect {
                    return Err("policy statement: Effect is required (Allow or Deny)".into());
                }
                Ok(Permission::Statement(st))
            }
            other => Err(format!(
                "a permission is a \"service:name\" string or a policy statement object, got {other}"
            )),
        }
    }

    /// Reads a whole `permissions` value: a list of entries, one statement,
    /// or a policy document `{"Version": .., "Statement": [..]}`.
    pub fn list_from_value(v: Value) -> Result<Vec<Permission>, String> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items.into_iter().map(Permission::from_value).collect(),
            Value::Object(mut o)
                if o.keys()
                    .any(|k| k.eq_ignore_ascii_case("Statement") || k == "Version") =>
            {
                if let Some(v) = o.remove("Version") {
                    match v.as_str() {
                        Some("2012-10-17" | "2008-10-17") => {}
                        _ => {
                            return Err(format!(
                                "policy document: Version must be \"2012-10-17\", got {v}"
                            ));
                        }
                    }
                }
                o.remove("Id");
                let key = o
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case("Statement"))
                    .cloned()
                    .ok_or("policy document: Statement is required")?;
                let statements = o.remove(&key).unwrap_or_default();
                if let Some(k) = o.keys().next() {
                    return Err(format!(
                        "policy document: unknown element {k:?} (Version, Id, Statement)"
                    ));
                }
                match statements {
                    Value::Array(items) => items.into_iter().map(Permission::from_value).collect(),
                    one @ Value::Object(_) => Ok(vec![Permission::from_value(one)?]),
                    _ => Err("policy document: Statement must be a list of statements".into()),
                }
            }
            one @ Value::Object(_) => Ok(vec![Permission::from_value(one)?]),
            other => Err(format!(
                "permissions must be a list, a statement or a policy document, got {other}"
            )),
        }
    }
}

fn one_or_many(v: Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "policy statement: {what} entries must be strings, got {other}"
                )),
            })
            .collect(),
        other => Err(format!(
            "policy statement: {what} must be a string or a list of strings, got {other}"
        )),
    }
}

/// `deserialize_with` for a `permissions` field: a list, one statement or a
/// policy document.
pub fn deserialize_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Permission>, D::Error> {
    Permission::list_from_value(Value::deserialize(d)?).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional `permissions` field (patches).
pub fn deserialize_optional_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Permission>>, D::Error> {
    deserialize_list(d).map(Some)
}

/// The statement a shorthand grant stands for, if it is well formed.
pub fn expand_grant(grant: &str) -> Option<Statement> {
    let (service, name) = grant.split_once(':')?;
    let resources = match service {
        "s3" => vec![
            format!("arn:aws:s3:::{name}"),
            format!("arn:aws:s3:::{name}/*"),
        ],
        "sqs" | "sns" => vec![format!("arn:aws:{service}:*:*:{name}")],
        "lambda" => vec![
            format!("arn:aws:lambda:*:*:function:{name}"),
            format!("arn:aws:lambda:*:*:function:{name}:*"),
        ],
        "states" => vec![
            format!("arn:aws:states:*:*:stateMachine:{name}"),
            format!("arn:aws:states:*:*:execution:{name}:*"),
        ],
        // The gateway's WebSocket API (`nimbus`): its connections endpoint.
        "execute-api" => vec![format!("arn:aws:execute-api:*:*:{name}/*")],
        _ => return None,
    };
    Some(Statement {
        sid: None,
        effect: "Allow".into(),
        actions: vec![format!("{service}:*")],
        resources,
    })
}

/// Checks a function's permissions, naming the first bad entry precisely.
pub fn validate(permissions: &[Permission]) -> Result<(), ValidationError> {
    if permissions.len() > MAX_GRANTS {
        return Err(ValidationError::param(format!(
            "permissions: at most {MAX_GRANTS} grants and statements, got {}",
            permissions.len()
        )));
    }
    for (i, p) in permissions.iter().enumerate() {
        match p {
            Permission::Grant(g) => validate_grant(g)?,
            Permission::Statement(st) => validate_statement(st).map_err(|m| {
                ValidationError::param(format!("permissions[{i}] (policy statement): {m}"))
            })?,
        }
    }
    Ok(())
}

fn validate_grant(g: &str) -> Result<(), ValidationError> {
    let Some((service, name)) = g.split_once(':') else {
        return Err(ValidationError::param(format!(
            "permission {g:?} must be service:name, e.g. s3:photos"
        )));
    };
    if !SERVICES.contains(&service) {
        return Err(ValidationError::param(format!(
            "permission {g:?}: unknown service {service:?} (one of {})",
            SERVICES.join(", ")
        )));
    }
    if name.is_empty()
        || name.len() > 256
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(ValidationError::param(format!(
            "permission {g:?}: the resource name must be 1 to 256 characters without spaces or ':'"
        )));
    }
    Ok(())
}

fn validate_statement(st: &Statement) -> Result<(), String> {
    if st.effect != "Allow" && st.effect != "Deny" {
        return Err(format!("unknown Effect {:?} (Allow or Deny)", st.effect));
    }
    if st.actions.is_empty() {
        return Err("Action is empty: name at least one action, e.g. s3:GetObject".into());
    }
    if st.resources.is_empty() {
        return Err(
            "Resource is empty: name at least one ARN pattern, e.g. arn:aws:s3:::photos/*".into(),
        );
    }
    if st.actions.len() > MAX_PER_STATEMENT || st.resources.len() > MAX_PER_STATEMENT {
        return Err(format!(
            "at most {MAX_PER_STATEMENT} actions and {MAX_PER_STATEMENT} resources per statement"
        ));
    }
    for a in &st.actions {
        validate_action(a)?;
    }
    for r in &st.resources {
        validate_resource(r)?;
    }
    Ok(())
}

fn validate_action(a: &str) -> Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, name)) = a.split_once(':') else {
        return Err(format!(
            "bad action {a:?}: write service:Action, e.g. s3:GetObject or sqs:Send*"
        ));
    };
    if !SERVICES.contains(&service.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "bad action {a:?}: unknown service {service:?} (one of {})",
            SERVICES.join(", ")
        ));
    }
    if name.is_empty()
        || a.len() > MAX_PATTERN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
    {
        return Err(format!(
            "bad action {a:?}: the action name is letters with * and ? wildcards"
        ));
    }
    if !name.contains(['*', '?'])
        && !crate::policy::ACTIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(a))
    {
        return Err(format!(
            "unknown action {a:?}: Nimbus's {service} actions are {}",
            crate::policy::ACTIONS
                .iter()
                .filter(|k| k.starts_with(&format!("{}:", service.to_ascii_lowercase())))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

fn validate_resource(r: &str) -> Result<(), String> {
    if r == "*" {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "bad ARN pattern {r:?}: {why} (e.g. arn:aws:s3:::photos/*, arn:aws:sqs:*:*:jobs, or *)"
        ))
    };
    if r.len() > MAX_PATTERN || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("at most 2048 characters, no spaces");
    }
    let parts: Vec<&str> = r.splitn(6, ':').collect();
    if parts.len() != 6 {
        return bad("an ARN has six parts arn:partition:service:region:account:resource");
    }
    if parts[0] != "arn" {
        return bad("it must start with arn:");
    }
    let partition = parts[1];
    if !(partition.starts_with("aws") || crate::policy::glob(partition.as_bytes(), b"aws")) {
        return bad("the partition must be aws");
    }
    let service = parts[2];
    if !SERVICES.contains(&service) && !service.contains(['*', '?']) {
        return bad(&format!(
            "unknown service {service:?} (one of {})",
            SERVICES.join(", ")
        ));
    }
    if parts[5].is_empty() {
        return bad("the resource part is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allows;

    fn grants(g: &[&str]) -> Vec<Permission> {
        g.iter().map(|s| Permission::from(*s)).collect()
    }

    fn parse(json: &str) -> Result<Vec<Permission>, String> {
        Permission::list_from_value(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn shorthand_grants_name_a_service_and_a_resource_pattern() {
        let g = grants(&["s3:photos", "sqs:jobs-*", "sns:*"]);
        let q = |n: &str| format!("arn:aws:sqs:us-east-1:000000000000:{n}");
        assert!(allows(&g, "s3:GetObject", "arn:aws:s3:::photos/x"));
        assert!(!allows(&g, "s3:GetObject", "arn:aws:s3:::photos2/x"));
        assert!(!allows(&g, "sqs:SendMessage", "arn:aws:s3:::jobs-1"));
        assert!(allows(&g, "sqs:SendMessage", &q("jobs-1")));
        assert!(allows(&g, "sqs:SendMessage", &q("jobs-")));
        assert!(!allows(&g, "sqs:SendMessage", &q("job")));
        assert!(allows(&g, "sns:Publish", "arn:aws:sns:r:a:anything"));
    }

    #[test]
    fn lists_statements_and_documents_parse_to_the_same_thing() {
        let doc = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}]}"#,
        )
        .unwrap();
        let list = parse(
            r#"[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::photos/*"]}]"#,
        )
        .unwrap();
        let one = parse(
            r#"{"effect":"Allow","action":"s3:GetObject","resource":"arn:aws:s3:::photos/*"}"#,
        )
        .unwrap();
        assert_eq!(doc, list);
        assert_eq!(doc, one);
        validate(&doc).unwrap();
        // Round trip through the stored form.
        let mixed =
            parse(r#"["s3:photos", {"Sid":"ro","Effect":"Deny","Action":"s3:*","Resource":"*"}]"#)
                .unwrap();
        let json = serde_json::to_string(&mixed).unwrap();
        assert_eq!(parse(&json).unwrap(), mixed);
    }

    #[test]
    fn unsupported_elements_are_refused_not_ignored() {
        let e = parse(r#"[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{}}]"#)
            .unwrap_err();
        assert!(e.contains("Condition is not supported"), "{e}");
        let e = parse(r#"[{"Effect":"Allow","NotAction":"s3:*","Resource":"*"}]"#).unwrap_err();
        assert!(e.contains("NotAction"), "{e}");
        let e = parse(r#"[{"Action":"s3:*","Resource":"*"}]"#).unwrap_err();
        assert!(e.contains("Effect is required"), "{e}");
        let e = parse(r#"{"Version":"2099-01-01","Statement":[]}"#).unwrap_err();
        assert!(e.contains("Version"), "{e}");
        let e = parse(r#"[{"Effect":"Allow","Action":5,"Resource":"*"}]"#).unwrap_err();
        assert!(e.contains("Action must be"), "{e}");
    }

    fn invalid(json: &str) -> String {
        validate(&parse(json).unwrap()).unwrap_err().message
    }

    #[test]
    fn bad_statements_are_named_precisely() {
        let e = invalid(r#"[{"Effect":"Alow","Action":"s3:*","Resource":"*"}]"#);
        assert!(e.contains("unknown Effect \"Alow\""), "{e}");
        assert!(e.contains("permissions[0]"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":[],"Resource":"*"}]"#);
        assert!(e.contains("Action is empty"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:*","Resource":[]}]"#);
        assert!(e.contains("Resource is empty"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"ec2:RunInstances","Resource":"*"}]"#);
        assert!(e.contains("unknown service"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:GetObjects","Resource":"*"}]"#);
        assert!(e.contains("unknown action"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:*","Resource":"photos"}]"#);
        assert!(e.contains("bad ARN pattern"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:photos"}]"#);
        assert!(e.contains("six parts"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:ec2:::x"}]"#);
        assert!(e.contains("unknown service"), "{e}");
        let e = invalid(r#"[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::"}]"#);
        assert!(e.contains("resource part is empty"), "{e}");
        let many: Vec<String> = (0..=MAX_GRANTS).map(|i| format!("\"s3:b{i}\"")).collect();
        let e = invalid(&format!("[{}]", many.join(",")));
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn bad_grants_are_named() {
        assert!(validate(&grants(&["s3:photos", "lambda:*"])).is_ok());
        let e = validate(&grants(&["photos"])).unwrap_err();
        assert!(e.message.contains("service:name"), "{}", e.message);
        let e = validate(&grants(&["ec2:box"])).unwrap_err();
        assert!(e.message.contains("unknown service"), "{}", e.message);
        let e = validate(&grants(&["s3:"])).unwrap_err();
        assert!(e.message.contains("resource name"), "{}", e.message);
    }
}
