//! SNS subscription filter policies on message attributes (or, with
//! `FilterPolicyScope: MessageBody`, on the top-level keys of a JSON body).
//!
//! A policy is `{"key": [condition, …], …}`: every key must match, a key
//! matches when any of its conditions does. Conditions: an exact string or
//! number, `{"prefix": …}`, `{"suffix": …}`, `{"anything-but": value | [values] | {"prefix": …}}`,
//! `{"numeric": [">", 0, "<=", 10]}`, `{"exists": bool}`. An attribute of
//! type `String.Array` matches when any element does.

use serde_json::{Map, Value};

use super::MessagingError;

/// Checks a policy's shape (at Subscribe / SetSubscriptionAttributes).
pub fn validate(policy: &str) -> Result<Map<String, Value>, MessagingError> {
    let bad = |why: &str| {
        MessagingError::InvalidParameter(format!("Invalid parameter: FilterPolicy: {why}"))
    };
    let v: Value = serde_json::from_str(policy).map_err(|_| bad("not valid JSON"))?;
    let obj = v
        .as_object()
        .cloned()
        .ok_or_else(|| bad("must be a JSON object"))?;
    for (k, conds) in &obj {
        let Some(list) = conds.as_array() else {
            return Err(bad(&format!("\"{k}\" must be an array of conditions")));
        };
        for c in list {
            if let Some(o) = c.as_object() {
                let op = o.keys().next().map(String::as_str).unwrap_or("");
                if o.len() != 1
                    || !["prefix", "suffix", "anything-but", "numeric", "exists"].contains(&op)
                {
                    return Err(bad(&format!("unrecognized match type in \"{k}\"")));
                }
            }
        }
    }
    Ok(obj)
}

/// The values an attribute or body key offers to a policy: one, or the
/// elements of an array.
fn values_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// Whether a message with `attributes` (name → value as the policy sees it,
/// `None` when absent) passes the policy.
pub fn matches(policy: &Map<String, Value>, lookup: impl Fn(&str) -> Option<Value>) -> bool {
    policy.iter().all(|(key, conds)| {
        let value = lookup(key);
        conds
            .as_array()
            .is_some_and(|list| list.iter().any(|c| condition(c, value.as_ref())))
    })
}

fn condition(c: &Value, value: Option<&Value>) -> bool {
    if let Some(Value::Bool(want)) = c.get("exists") {
        return value.is_some() == *want;
    }
    let Some(value) = value else { return false };
    let values = values_of(value);
    values.iter().any(|v| single(c, v))
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn single(c: &Value, v: &Value) -> bool {
    match c {
        Value::String(s) => v.as_str() == Some(s),
        Value::Number(n) => as_number(v) == n.as_f64(),
        Value::Bool(b) => v.as_bool() == Some(*b),
        Value::Null => v.is_null(),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix").and_then(Value::as_str) {
                return v.as_str().is_some_and(|s| s.starts_with(p));
            }
            if let Some(p) = o.get("suffix").and_then(Value::as_str) {
                return v.as_str().is_some_and(|s| s.ends_with(p));
            }
            if let Some(not) = o.get("anything-but") {
                return match not {
                    Value::Array(list) => !list.iter().any(|n| single(n, v)),
                    Value::Object(_) => !single(not, v),
                    other => !single(other, v),
                };
            }
            if let Some(Value::Array(ops)) = o.get("numeric") {
                let Some(x) = as_number(v) else { return false };
                return ops.chunks(2).all(|pair| {
                    let (op, bound) = (pair[0].as_str(), pair.get(1).and_then(Value::as_f64));
                    match (op, bound) {
                        (Some("="), Some(b)) => x == b,
                        (Some(">"), Some(b)) => x > b,
                        (Some(">="), Some(b)) => x >= b,
                        (Some("<"), Some(b)) => x < b,
                        (Some("<="), Some(b)) => x <= b,
                        _ => false,
                    }
                });
            }
            false
        }
        Value::Array(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(policy: Value, attrs: Value) -> bool {
        let p = validate(&policy.to_string()).unwrap();
        matches(&p, |k| attrs.get(k).cloned())
    }

    #[test]
    fn policies() {
        assert!(check(json!({"kind": ["order"]}), json!({"kind": "order"})));
        assert!(!check(
            json!({"kind": ["order"]}),
            json!({"kind": "refund"})
        ));
        assert!(!check(json!({"kind": ["order"]}), json!({})));
        assert!(check(
            json!({"n": [{"numeric": [">", 1, "<=", 5]}]}),
            json!({"n": "5"})
        ));
        assert!(!check(
            json!({"n": [{"numeric": [">", 1]}]}),
            json!({"n": "1"})
        ));
        assert!(check(
            json!({"k": [{"anything-but": ["a", "b"]}]}),
            json!({"k": "c"})
        ));
        assert!(check(json!({"k": [{"prefix": "ab"}]}), json!({"k": "abc"})));
        assert!(check(json!({"k": [{"exists": false}]}), json!({})));
        assert!(check(json!({"k": ["x"]}), json!({"k": ["y", "x"]})));
        assert!(validate("[1]").is_err());
        assert!(validate(r#"{"k": [{"weird": 1}]}"#).is_err());
    }
}
