//! What a function may touch through the AWS-compatible APIs, with the
//! credentials Nimbus gives each of its instances.
//!
//! Least privilege by default: a function's credentials reach nothing until its
//! manifest (or deployment) grants it, one grant per resource, written
//! `service:name` — `s3:photos`, `sqs:jobs`, `sns:alerts`, `lambda:resize`,
//! `states:checkout` — where the name may hold `*` wildcards (`s3:tmp-*`).
//! Grants are deliberately coarse (a resource, not an action): the point is that
//! one function's compromise cannot reach another's data, not to re-create IAM.

use crate::error::ValidationError;

/// Services a grant can name.
pub const SERVICES: &[&str] = &["s3", "sqs", "sns", "lambda", "states"];

/// Most grants one function may hold.
pub const MAX_GRANTS: usize = 100;

/// Checks a list of grants, naming the first bad one.
pub fn validate(grants: &[String]) -> Result<(), ValidationError> {
    if grants.len() > MAX_GRANTS {
        return Err(ValidationError::param(format!(
            "permissions: at most {MAX_GRANTS} grants, got {}",
            grants.len()
        )));
    }
    for g in grants {
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
    }
    Ok(())
}

/// Whether `grants` allow `service` on `resource`.
pub fn allows(grants: &[String], service: &str, resource: &str) -> bool {
    grants.iter().any(|g| {
        g.split_once(':')
            .is_some_and(|(s, pattern)| s == service && glob(pattern, resource))
    })
}

/// `*` matches any run of characters (including none); everything else is literal.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(head) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grants_name_a_service_and_a_resource_pattern() {
        let g = grants(&["s3:photos", "sqs:jobs-*", "sns:*"]);
        assert!(allows(&g, "s3", "photos"));
        assert!(!allows(&g, "s3", "photos2"), "literal names are exact");
        assert!(!allows(&g, "s3", "jobs-1"), "a grant names its service");
        assert!(allows(&g, "sqs", "jobs-1"));
        assert!(allows(&g, "sqs", "jobs-"));
        assert!(!allows(&g, "sqs", "job"));
        assert!(allows(&g, "sns", "anything"));
        assert!(!allows(&[], "s3", "photos"), "nothing by default");
    }

    #[test]
    fn wildcards_match_anywhere() {
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(glob("*-prod", "db-prod"));
        assert!(!glob("*-prod", "db-prod2"));
        assert!(glob("*", ""));
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
