//! History events in the Step Functions wire shape.
//!
//! The executor stores each event as its AWS type name plus one flat details
//! object (the interpreter's `EventDetails`). AWS spreads details over one
//! member per event type (`stateEnteredEventDetails`, `taskScheduledEventDetails`,
//! …) and sends inputs and outputs as JSON *text*; this module does that
//! mapping, and nothing else.

use nimbus_engine::workflows::StoredEvent;
use serde_json::{Map, Value, json};

/// `{"truncated": false}`: Nimbus never truncates what it stores.
fn not_truncated() -> Value {
    json!({"truncated": false})
}

fn text(v: &Value) -> Value {
    Value::String(v.to_string())
}

/// `arn:aws:states:::lambda:invoke` → (`lambda`, `invoke`).
fn resource_parts(resource: &str) -> (String, String) {
    match resource.strip_prefix("arn:aws:states:::") {
        Some(rest) => match rest.split_once(':') {
            Some((t, r)) => (t.to_string(), r.to_string()),
            None => (rest.to_string(), rest.to_string()),
        },
        None => ("lambda".to_string(), resource.to_string()),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// One stored event as an AWS `HistoryEvent`.
pub fn aws_event(e: &StoredEvent, region: &str) -> Value {
    let d: Value = serde_json::from_str(&e.details).unwrap_or(json!({}));
    let get = |k: &str| d.get(k).filter(|v| !v.is_null());
    let mut details = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            details.insert(k.to_string(), v);
        }
    };
    let t = e.event_type.as_str();
    let key = if t.ends_with("StateEntered") {
        put("name", get("name").cloned());
        put("input", get("input").map(text));
        put("inputDetails", Some(not_truncated()));
        "stateEnteredEventDetails".to_string()
    } else if t.ends_with("StateExited") {
        put("name", get("name").cloned());
        put("output", get("output").map(text));
        put("outputDetails", Some(not_truncated()));
        "stateExitedEventDetails".to_string()
    } else {
        match t {
            "ExecutionStarted" => {
                put("input", get("input").map(text));
                put("inputDetails", Some(not_truncated()));
            }
            "ExecutionSucceeded" | "LambdaFunctionSucceeded" | "ActivitySucceeded" => {
                put("output", get("output").map(text));
                put("outputDetails", Some(not_truncated()));
            }
            "ExecutionFailed"
            | "ExecutionAborted"
            | "ExecutionTimedOut"
            | "LambdaFunctionFailed"
            | "LambdaFunctionTimedOut"
            | "LambdaFunctionStartFailed"
            | "LambdaFunctionScheduleFailed"
            | "ActivityFailed"
            | "ActivityTimedOut"
            | "ActivityScheduleFailed" => {
                put("error", get("error").cloned());
                put("cause", get("cause").cloned());
            }
            "MapStateStarted" => put("length", Some(get("length").cloned().unwrap_or(json!(0)))),
            "MapIterationStarted"
            | "MapIterationSucceeded"
            | "MapIterationFailed"
            | "MapIterationAborted" => {
                put("name", get("name").cloned());
                put("index", get("index").cloned());
            }
            "LambdaFunctionScheduled" | "ActivityScheduled" => {
                put("resource", get("resource").cloned());
                put("input", get("input").map(text));
                put("inputDetails", Some(not_truncated()));
                put("timeoutInSeconds", get("timeoutInSeconds").cloned());
                if t == "ActivityScheduled" {
                    put("heartbeatInSeconds", get("heartbeatInSeconds").cloned());
                }
            }
            "TaskScheduled" | "TaskStarted" | "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" => {
                let (rtype, resource) =
                    resource_parts(get("resource").and_then(Value::as_str).unwrap_or(""));
                put("resourceType", Some(json!(rtype)));
                put("resource", Some(json!(resource)));
                match t {
                    "TaskScheduled" => {
                        put("region", Some(json!(region)));
                        put("parameters", Some(text(get("input").unwrap_or(&json!({})))));
                        put("timeoutInSeconds", get("timeoutInSeconds").cloned());
                        put("heartbeatInSeconds", get("heartbeatInSeconds").cloned());
                    }
                    "TaskSucceeded" => {
                        put("output", get("output").map(text));
                        put("outputDetails", Some(not_truncated()));
                    }
                    "TaskFailed" | "TaskTimedOut" => {
                        put("error", get("error").cloned());
                        put("cause", get("cause").cloned());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        format!("{}EventDetails", lower_first(t))
    };
    let mut event = json!({
        "timestamp": e.ts_ms as f64 / 1000.0,
        "type": t,
        "id": e.id,
        "previousEventId": e.previous_id,
    });
    if !details.is_empty() {
        event[key] = Value::Object(details);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, details: Value) -> StoredEvent {
        StoredEvent {
            id: 2,
            previous_id: 1,
            ts_ms: 1500,
            event_type: t.into(),
            details: details.to_string(),
        }
    }

    #[test]
    fn shapes() {
        let v = aws_event(
            &ev("PassStateEntered", json!({"name": "P", "input": {"a": 1}})),
            "r",
        );
        assert_eq!(v["timestamp"], json!(1.5));
        assert_eq!(v["stateEnteredEventDetails"]["input"], json!("{\"a\":1}"));
        let v = aws_event(
            &ev(
                "TaskScheduled",
                json!({"resource": "arn:aws:states:::lambda:invoke", "input": {"FunctionName": "f"}}),
            ),
            "us-east-1",
        );
        let d = &v["taskScheduledEventDetails"];
        assert_eq!(
            (d["resourceType"].as_str(), d["resource"].as_str()),
            (Some("lambda"), Some("invoke"))
        );
        let v = aws_event(
            &ev("MapIterationStarted", json!({"name": "M", "index": 3})),
            "r",
        );
        assert_eq!(v["mapIterationStartedEventDetails"]["index"], json!(3));
        let v = aws_event(&ev("ParallelStateStarted", json!({})), "r");
        assert!(v.as_object().unwrap().len() == 4);
    }
}
