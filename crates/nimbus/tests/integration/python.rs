//! Python functions through the embedded bootstrap: Lambda handler semantics.

use serde_json::json;

use crate::harness::*;

#[test]
fn result_context_and_warm_state() {
    let s = Server::start();
    deploy_py(
        &s,
        "ctx",
        r#"
import os
count = 0
def handler(event, context):
    global count
    count += 1
    return {
        "event": event,
        "count": count,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"] == os.getcwd(),
        "handler_env": os.environ["_HANDLER"],
        "trace": os.environ.get("_X_AMZN_TRACE_ID", ""),
        "user_env": os.environ.get("COLOR"),
    }
"#,
        json!({"memory_mb": 256, "timeout_s": 5, "environment": {"COLOR": "blue"}}),
    );
    let first = s.invoke("ctx", &json!({"k": [1, 2, 3]}));
    assert!(first.function_error().is_none());
    assert!(first.cold());
    let v = first.json();
    assert_eq!(v["event"], json!({"k": [1, 2, 3]}));
    assert_eq!(v["count"], 1);
    assert_eq!(v["request_id"], first.request_id());
    assert_eq!(v["function_name"], "ctx");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(v["memory"], "256");
    assert_eq!(
        v["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:ctx"
    );
    assert_eq!(v["log_group"], "/aws/lambda/ctx");
    assert!(v["log_stream"].as_str().unwrap().contains("[$LATEST]"));
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(
        remaining > 4000 && remaining <= 5000,
        "remaining {remaining}"
    );
    assert_eq!(v["task_root"], true);
    assert_eq!(v["handler_env"], "app.handler");
    assert!(v["trace"].as_str().unwrap().starts_with("Root=1-"));
    assert_eq!(v["user_env"], "blue");

    // Warm: same instance, module state survives, no init.
    let second = s.invoke("ctx", &json!(null));
    assert!(!second.cold());
    assert!(second.header("x-nimbus-init-duration-ms").is_none());
    assert_eq!(second.json()["count"], 2);
    assert_eq!(second.json()["event"], json!(null));
}

#[test]
fn handler_exception_is_a_function_error_and_instance_is_kept() {
    let s = Server::start();
    deploy_py(
        &s,
        "boom",
        r#"
count = 0
def handler(event, context):
    global count
    count += 1
    if event.get("fail"):
        raise ValueError("boom " + str(count))
    return count
"#,
        json!({}),
    );
    let r = s.invoke("boom", &json!({"fail": true}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    let v = r.json();
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "boom 1");
    assert_eq!(v["requestId"], r.request_id());
    assert!(
        v["stackTrace"].as_array().is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    assert!(
        r.log_tail().contains("[ERROR] ValueError: boom 1"),
        "{}",
        r.log_tail()
    );
    // The instance survived: state continues.
    let ok = s.invoke("boom", &json!({}));
    assert!(ok.function_error().is_none());
    assert!(!ok.cold());
    assert_eq!(ok.json(), json!(2));
}

#[test]
fn init_errors_are_reported_with_their_type() {
    let s = Server::start();
    // An exception at import time.
    deploy_py(
        &s,
        "import-raise",
        "raise RuntimeError('startup fails')\ndef handler(e, c): return 1\n",
        json!({}),
    );
    let r = s.invoke("import-raise", &json!({}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "RuntimeError");
    assert_eq!(r.json()["errorMessage"], "startup fails");
    // A fresh init is attempted on the next call (and fails again).
    let again = s.invoke("import-raise", &json!({}));
    assert!(again.cold());
    assert_eq!(again.json()["errorType"], "RuntimeError");

    deploy_py(&s, "syntax", "def handler(e, c) return 1\n", json!({}));
    assert_eq!(
        s.invoke("syntax", &json!({})).json()["errorType"],
        "Runtime.UserCodeSyntaxError"
    );

    deploy_py(&s, "nofn", "def other(e, c): return 1\n", json!({}));
    assert_eq!(
        s.invoke("nofn", &json!({})).json()["errorType"],
        "Runtime.HandlerNotFound"
    );

    deploy_py(
        &s,
        "badimport",
        "import not_a_module_anywhere\ndef handler(e, c): return 1\n",
        json!({}),
    );
    let v = s.invoke("badimport", &json!({})).json();
    assert_eq!(v["errorType"], "Runtime.ImportModuleError");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not_a_module_anywhere"),
        "{v}"
    );
}

#[test]
fn return_values_serialise_like_lambda() {
    let s = Server::start();
    deploy_py(
        &s,
        "values",
        r#"
import decimal
def handler(event, context):
    kind = event["kind"]
    if kind == "none": return None
    if kind == "str": return "text"
    if kind == "decimal": return {"d": decimal.Decimal("1.5")}
    if kind == "unserialisable": return {"s": {1, 2}}
    if kind == "unicode": return {"s": "héllo ✓"}
"#,
        json!({}),
    );
    assert_eq!(
        s.invoke("values", &json!({"kind": "none"})).json(),
        json!(null)
    );
    assert_eq!(
        s.invoke("values", &json!({"kind": "str"})).json(),
        json!("text")
    );
    assert_eq!(
        s.invoke("values", &json!({"kind": "decimal"})).json(),
        json!({"d": 1.5})
    );
    assert_eq!(
        s.invoke("values", &json!({"kind": "unicode"})).json(),
        json!({"s": "héllo ✓"})
    );
    let r = s.invoke("values", &json!({"kind": "unserialisable"}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "Runtime.MarshalError");
}

/// The log streams (one per instance) that `callers` threads, starting
/// together, saw over `calls` invocations each of `function`.
fn streams_of_concurrent_callers(
    s: &Server,
    function: &str,
    callers: usize,
    calls: usize,
) -> std::collections::HashSet<String> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(callers));
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let url = format!("{}/v1/functions/{function}/invoke", s.url);
            let start = start.clone();
            std::thread::spawn(move || {
                let client = authed_client();
                start.wait();
                (0..calls)
                    .map(|_| {
                        let r = client.post(&url).body("{}").send().unwrap();
                        assert_eq!(r.status(), 200);
                        r.json::<serde_json::Value>()
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// Short invocations wait for a busy instance rather than start one per
/// concurrent caller once `--queue-after-instances` are busy (a cold start
/// costs more than the wait); slow ones still scale out
/// (`busy_function_scales_out`).
#[test]
fn short_calls_share_busy_instances_instead_of_scaling_out() {
    let s = Server::start_with(&["--queue-after-instances", "2"]);
    deploy_py(
        &s,
        "quick",
        "def handler(e, c):\n    return c.log_stream_name\n",
        json!({}),
    );
    // One cold and a few warm calls teach the pool both timings.
    for _ in 0..5 {
        s.invoke("quick", &json!({})).json();
    }
    let callers = 16;
    let streams = streams_of_concurrent_callers(&s, "quick", callers, 25);
    assert!(
        streams.len() <= callers / 2,
        "{callers} concurrent callers of a sub-millisecond handler ran on {} instances: {streams:?}",
        streams.len()
    );
}

/// A burst at a function that has never run (no timings learned yet) waits for
/// the cold starts already on their way instead of starting an instance per
/// caller: otherwise those instances stay, and the host runs all of them.
#[test]
fn a_first_burst_waits_for_the_cold_starts_on_their_way() {
    let s = Server::start_with(&["--queue-after-instances", "2"]);
    deploy_py(
        &s,
        "fresh",
        "def handler(e, c):\n    return c.log_stream_name\n",
        json!({}),
    );
    let callers = 16;
    let streams = streams_of_concurrent_callers(&s, "fresh", callers, 5);
    assert!(
        streams.len() <= callers / 2,
        "{callers} simultaneous first callers ran on {} instances: {streams:?}",
        streams.len()
    );
}

/// An instance is replaced after `--max-invocations-per-instance` calls, so a
/// slow leak (glibc keeps every value the runtime sets for _X_AMZN_TRACE_ID)
/// cannot grow into an out-of-memory kill.
#[test]
fn instances_are_replaced_after_their_maximum_invocations() {
    let s = Server::start_with(&["--max-invocations-per-instance", "3"]);
    deploy_py(
        &s,
        "worn",
        "def handler(e, c):\n    return c.log_stream_name\n",
        json!({}),
    );
    let calls: Vec<_> = (0..4).map(|_| s.invoke("worn", &json!({}))).collect();
    let cold: Vec<bool> = calls.iter().map(|r| r.cold()).collect();
    assert_eq!(cold, [true, false, false, true]);
    let streams: Vec<String> = calls
        .into_iter()
        .map(|r| r.json().as_str().unwrap().to_string())
        .collect();
    assert_eq!(streams[0], streams[2], "three calls on the first instance");
    assert_ne!(streams[2], streams[3], "then a new instance");
}

#[test]
fn busy_function_scales_out() {
    let s = Server::start();
    deploy_py(
        &s,
        "slow",
        "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return c.log_stream_name\n",
        json!({}),
    );
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = s.url.clone();
            std::thread::spawn(move || {
                let r = authed_client()
                    .post(format!("{url}/v1/functions/slow/invoke"))
                    .body("{}")
                    .send()
                    .unwrap();
                r.json::<serde_json::Value>()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    let streams: std::collections::HashSet<String> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        streams.len(),
        4,
        "each concurrent call got its own instance: {streams:?}"
    );
}
