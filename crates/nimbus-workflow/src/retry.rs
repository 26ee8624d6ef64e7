//! `Retry` and `Catch`: policy types, their validation and the backoff rule.
//!
//! Kept apart from the interpreter because the arithmetic (exponential
//! backoff, cap, jitter) is easy to get subtly wrong and deserves tests of
//! its own, and because an executor may want to show "next retry at" without
//! running the interpreter.

use serde_json::Value;

use crate::entropy::Entropy;
use crate::errors::{self, StateError};
use crate::path::Path;

/// How a retry delay is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the computed delay.
    #[default]
    None,
    /// Uniformly random in `[0, computed delay]`.
    Full,
}

/// One element of `Retry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    /// Error names this retrier handles.
    pub error_equals: Vec<String>,
    /// Delay before the first retry (default 1).
    pub interval_seconds: u64,
    /// Retries allowed (default 3; 0 = never).
    pub max_attempts: u64,
    /// Multiplier per retry (default 2.0, ≥ 1.0).
    pub backoff_rate: f64,
    /// Cap on each delay.
    pub max_delay_seconds: Option<u64>,
    /// Randomization.
    pub jitter: Jitter,
}

/// One element of `Catch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    /// Error names this catcher handles.
    pub error_equals: Vec<String>,
    /// The state to go to.
    pub next: String,
    /// Where the error output goes in the raw input; `None` = discard
    /// (`"ResultPath": null`). Default `$`.
    pub result_path: Option<Path>,
}

impl Retrier {
    /// Whether this retrier handles `error`.
    pub fn matches(&self, error: &StateError) -> bool {
        errors::error_equals_matches(&self.error_equals, &error.error)
    }

    /// Delay in milliseconds before the `n`-th retry by this retrier
    /// (`n` starts at 1): `min(Interval × Rate^(n−1), MaxDelay)`, then jitter.
    pub fn delay_millis(&self, n: u64, entropy: &mut dyn Entropy) -> u64 {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut seconds = self.interval_seconds as f64 * self.backoff_rate.powi(exponent);
        if let Some(cap) = self.max_delay_seconds {
            seconds = seconds.min(cap as f64);
        }
        // Even without a cap, never past AWS's longest execution (one year).
        seconds = seconds.min(31_622_400.0);
        if self.jitter == Jitter::Full {
            seconds *= entropy.next_f64();
        }
        (seconds * 1000.0).round() as u64
    }
}

impl Catcher {
    /// Whether this catcher handles `error`.
    pub fn matches(&self, error: &StateError) -> bool {
        errors::error_equals_matches(&self.error_equals, &error.error)
    }
}

fn error_equals(v: &Value, at: &str, is_last: bool, errs: &mut Vec<String>) -> Vec<String> {
    let Some(items) = v.get("ErrorEquals").and_then(Value::as_array) else {
        errs.push(format!(
            "{at}.ErrorEquals is required and must be an array of strings"
        ));
        return Vec::new();
    };
    if items.is_empty() {
        errs.push(format!("{at}.ErrorEquals must not be empty"));
    }
    let names: Vec<String> = items
        .iter()
        .filter_map(|i| {
            let s = i.as_str();
            if s.is_none() {
                errs.push(format!(
                    "{at}.ErrorEquals must contain only strings, got {i}"
                ));
            }
            s.map(str::to_string)
        })
        .collect();
    if names.iter().any(|n| n == errors::ALL) {
        if names.len() > 1 {
            errs.push(format!("{at}.ErrorEquals: States.ALL must appear alone"));
        }
        if !is_last {
            errs.push(format!(
                "{at}.ErrorEquals: States.ALL must be in the last element"
            ));
        }
    }
    names
}

fn unknown_fields(v: &Value, allowed: &[&str], at: &str, errs: &mut Vec<String>) {
    if let Some(map) = v.as_object() {
        for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let hint = if matches!(key.as_str(), "Assign" | "Output") {
                " (variables and JSONata are not supported)"
            } else {
                ""
            };
            errs.push(format!(
                "{at} has a field '{key}' that is not allowed{hint}"
            ));
        }
    }
}

fn uint(v: &Value, key: &str, at: &str, min: u64, default: u64, errs: &mut Vec<String>) -> u64 {
    match v.get(key) {
        None => default,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= min && n <= 99_999_999) => {
            n.as_u64().unwrap_or(default)
        }
        Some(other) => {
            let what = if min == 0 {
                "a non-negative"
            } else {
                "a positive"
            };
            errs.push(format!(
                "{at}.{key} must be {what} integer (at most 99999999), got {other}"
            ));
            default
        }
    }
}

/// Parses `Retry`; every problem is pushed to `errs` as `Retry[i].Field: …`.
pub fn parse_retry(value: &Value, errs: &mut Vec<String>) -> Vec<Retrier> {
    let Some(items) = value.as_array() else {
        errs.push("Retry must be an array".into());
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("Retry[{i}]");
            if !v.is_object() {
                errs.push(format!("{at} must be an object"));
            }
            unknown_fields(
                v,
                &[
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ],
                &at,
                errs,
            );
            let backoff_rate = match v.get("BackoffRate") {
                None => 2.0,
                Some(Value::Number(n)) if n.as_f64().is_some_and(|r| r >= 1.0) => {
                    n.as_f64().unwrap_or(2.0)
                }
                Some(other) => {
                    errs.push(format!(
                        "{at}.BackoffRate must be a number >= 1.0, got {other}"
                    ));
                    2.0
                }
            };
            let jitter = match v.get("JitterStrategy") {
                None => Jitter::None,
                Some(Value::String(s)) if s == "NONE" => Jitter::None,
                Some(Value::String(s)) if s == "FULL" => Jitter::Full,
                Some(other) => {
                    errs.push(format!(
                        "{at}.JitterStrategy must be \"FULL\" or \"NONE\", got {other}"
                    ));
                    Jitter::None
                }
            };
            Retrier {
                error_equals: error_equals(v, &at, i + 1 == items.len(), errs),
                interval_seconds: uint(v, "IntervalSeconds", &at, 1, 1, errs),
                max_attempts: uint(v, "MaxAttempts", &at, 0, 3, errs),
                backoff_rate,
                max_delay_seconds: v
                    .get("MaxDelaySeconds")
                    .map(|_| uint(v, "MaxDelaySeconds", &at, 1, 1, errs)),
                jitter,
            }
        })
        .collect()
}

/// Parses `Catch`; every problem is pushed to `errs` as `Catch[i].Field: …`.
pub fn parse_catch(value: &Value, errs: &mut Vec<String>) -> Vec<Catcher> {
    let Some(items) = value.as_array() else {
        errs.push("Catch must be an array".into());
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("Catch[{i}]");
            if !v.is_object() {
                errs.push(format!("{at} must be an object"));
            }
            unknown_fields(
                v,
                &["ErrorEquals", "Next", "ResultPath", "Comment"],
                &at,
                errs,
            );
            let next = match v.get("Next") {
                Some(Value::String(n)) => n.clone(),
                _ => {
                    errs.push(format!("{at}.Next is required and must be a state name"));
                    String::new()
                }
            };
            let result_path = match v.get("ResultPath") {
                None => Some(Path::root()),
                Some(Value::Null) => None,
                Some(Value::String(p)) => match Path::parse_reference(p) {
                    Ok(path) if path.root_kind() == crate::path::Root::Input => Some(path),
                    Ok(_) => {
                        errs.push(format!(
                            "{at}.ResultPath must not address the context object ('$$')"
                        ));
                        None
                    }
                    Err(e) => {
                        errs.push(format!("{at}.ResultPath: {e}"));
                        None
                    }
                },
                Some(other) => {
                    errs.push(format!(
                        "{at}.ResultPath must be a reference path or null, got {other}"
                    ));
                    None
                }
            };
            Catcher {
                error_equals: error_equals(v, &at, i + 1 == items.len(), errs),
                next,
                result_path,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use serde_json::json;

    fn retrier(v: Value) -> Retrier {
        let mut errs = Vec::new();
        let r = parse_retry(&json!([v]), &mut errs).remove(0);
        assert!(errs.is_empty(), "{errs:?}");
        r
    }

    #[test]
    fn defaults_and_backoff() {
        let r = retrier(json!({"ErrorEquals": ["E"]}));
        assert_eq!(
            (r.interval_seconds, r.max_attempts, r.backoff_rate),
            (1, 3, 2.0)
        );
        let mut e = SeededEntropy::new(0);
        let r = retrier(json!({"ErrorEquals": ["E"], "IntervalSeconds": 3, "BackoffRate": 2.0}));
        let delays: Vec<u64> = (1..=3).map(|n| r.delay_millis(n, &mut e)).collect();
        assert_eq!(delays, [3000, 6000, 12000]);
        let r = retrier(json!({"ErrorEquals": ["E"], "IntervalSeconds": 3, "MaxDelaySeconds": 5}));
        let delays: Vec<u64> = (1..=3).map(|n| r.delay_millis(n, &mut e)).collect();
        assert_eq!(delays, [3000, 5000, 5000]);
        let r = retrier(json!({"ErrorEquals": ["E"], "IntervalSeconds": 2, "BackoffRate": 1.5}));
        assert_eq!(r.delay_millis(3, &mut e), 4500);
        let r =
            retrier(json!({"ErrorEquals": ["E"], "IntervalSeconds": 10, "JitterStrategy": "FULL"}));
        for n in 1..=5 {
            let d = r.delay_millis(n, &mut e);
            assert!(d <= 10_000 * 2u64.pow(n as u32 - 1), "{d}");
        }
        let mut a = SeededEntropy::new(9);
        let mut b = SeededEntropy::new(9);
        assert_eq!(
            r.delay_millis(2, &mut a),
            r.delay_millis(2, &mut b),
            "jitter is injectable"
        );
    }

    #[test]
    fn validation_messages() {
        let mut errs = Vec::new();
        parse_retry(
            &json!([
                {"ErrorEquals": ["States.ALL", "E"], "MaxAttempts": -1, "BackoffRate": 0.5,
                 "IntervalSeconds": 0, "JitterStrategy": "SOME", "Bogus": 1},
                {"ErrorEquals": []}
            ]),
            &mut errs,
        );
        let all = errs.join("\n");
        for needle in [
            "Retry[0].MaxAttempts must be a non-negative integer",
            "Retry[0].BackoffRate must be a number >= 1.0, got 0.5",
            "Retry[0].IntervalSeconds must be a positive integer",
            "Retry[0].JitterStrategy must be \"FULL\" or \"NONE\"",
            "Retry[0] has a field 'Bogus' that is not allowed",
            "Retry[0].ErrorEquals: States.ALL must appear alone",
            "Retry[0].ErrorEquals: States.ALL must be in the last element",
            "Retry[1].ErrorEquals must not be empty",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        let mut errs = Vec::new();
        parse_catch(
            &json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"], "Next": "X", "ResultPath": "$.a[*]"}]),
            &mut errs,
        );
        let all = errs.join("\n");
        assert!(all.contains("Catch[0].Next is required"), "{all}");
        assert!(
            all.contains("Catch[0].ErrorEquals: States.ALL must be in the last element"),
            "{all}"
        );
        assert!(
            all.contains("Catch[1].ResultPath: invalid JSONPath '$.a[*]'"),
            "{all}"
        );
    }
}
