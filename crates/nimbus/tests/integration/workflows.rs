//! Workflows end to end: state machines running real Python functions,
//! Retry/Catch on a custom error type, durable Wait and Map across SIGKILL,
//! a 10,000-item Map with its history paged, stop, the CLI and nimbus.toml;
//! Step Functions' quotas: looping definitions end at 25,000 history events
//! or 256 KiB payloads with the server's memory flat, and a cap on running
//! executions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, deploy_py, signal};

fn create(s: &Server, name: &str, definition: Value) {
    let (status, body) = s.send_json(
        "POST",
        "/v1/workflows",
        &json!({"name": name, "definition": definition}),
    );
    assert_eq!(status, 201, "{body}");
}

fn start(s: &Server, workflow: &str, name: &str, input: Value) -> String {
    let (status, body) = s.send_json(
        "POST",
        &format!("/v1/workflows/{workflow}/executions"),
        &json!({"name": name, "input": input}),
    );
    assert_eq!(status, 201, "{body}");
    body["arn"].as_str().unwrap().to_string()
}

fn describe(s: &Server, arn: &str) -> Value {
    let (status, body) = s.get(&format!("/v1/executions/{arn}"));
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_done(s: &Server, arn: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let d = describe(s, arn);
        if d["status"] != "RUNNING" {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{arn} still running: {d}\n{}",
            s.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every history event, fetched in pages of `page`.
fn history(s: &Server, arn: &str, page: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/v1/executions/{arn}/history?max_results={page}");
        if let Some(t) = &token {
            path.push_str(&format!("&next_token={t}"));
        }
        let (status, body) = s.get(&path);
        assert_eq!(status, 200, "{body}");
        let batch = body["events"].as_array().unwrap();
        assert!(batch.len() <= page);
        events.extend(batch.iter().cloned());
        match body["next_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return events,
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn count(events: &[Value], t: &str) -> usize {
    events.iter().filter(|e| e["type"] == t).count()
}

/// Ids are dense from 1: no event was lost or written twice across a crash.
fn assert_dense(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"], json!(i + 1), "event {i}: {e}");
    }
}

#[test]
fn workflow_chain_of_python_functions() {
    let s = Server::start();
    deploy_py(
        &s,
        "wf-add",
        "def handler(e, c):\n    return {'x': e['x'] + 1}\n",
        json!({}),
    );
    deploy_py(
        &s,
        "wf-double",
        "def handler(e, c):\n    return {'x': e['x'] * 2}\n",
        json!({}),
    );
    deploy_py(
        &s,
        "wf-show",
        "def handler(e, c):\n    return {'value': e['x'], 'text': 'v=%d' % e['x']}\n",
        json!({}),
    );
    create(
        &s,
        "chain",
        json!({"StartAt": "Add", "States": {
            "Add": {"Type": "Task", "Resource": "wf-add", "Next": "Double"},
            "Double": {"Type": "Task",
                       "Resource": "arn:aws:lambda:us-east-1:000000000000:function:wf-double",
                       "Next": "Show"},
            "Show": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": "wf-show", "Payload.$": "$"},
                     "OutputPath": "$.Payload", "End": true}}}),
    );
    let arn = start(&s, "chain", "first", json!({"x": 3}));
    let d = wait_done(&s, &arn, Duration::from_secs(60));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["output"], json!({"value": 8, "text": "v=8"}));
    let events = history(&s, &arn, 100);
    assert_dense(&events);
    // A function ARN reports LambdaFunction* events; a bare name and the
    // lambda:invoke integration report Task* events.
    assert_eq!(count(&events, "LambdaFunctionSucceeded"), 1);
    assert_eq!(count(&events, "TaskSucceeded"), 2);
    assert_eq!(types(&events).last(), Some(&"ExecutionSucceeded"));
}

#[test]
fn workflow_retry_then_catch_on_a_custom_error_type() {
    let s = Server::start();
    deploy_py(
        &s,
        "wf-charge",
        "class PaymentDeclined(Exception):\n    pass\n\
         def handler(e, c):\n    raise PaymentDeclined('card ' + e['card'])\n",
        json!({}),
    );
    create(
        &s,
        "pay",
        json!({"StartAt": "Charge", "States": {
            "Charge": {"Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:000000000000:function:wf-charge",
                "Retry": [{"ErrorEquals": ["PaymentDeclined"], "IntervalSeconds": 1,
                           "MaxAttempts": 2, "BackoffRate": 1.0}],
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Oops"},
                          {"ErrorEquals": ["PaymentDeclined"], "ResultPath": "$.error", "Next": "Declined"}],
                "End": true},
            "Oops": {"Type": "Fail", "Error": "Unexpected"},
            "Declined": {"Type": "Pass", "Result": "declined", "ResultPath": "$.status", "End": true}}}),
    );
    let started = Instant::now();
    let arn = start(&s, "pay", "p1", json!({"card": "42"}));
    let d = wait_done(&s, &arn, Duration::from_secs(60));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two 1 s retry delays"
    );
    let out = &d["output"];
    assert_eq!(out["card"], "42");
    assert_eq!(out["status"], "declined");
    assert_eq!(out["error"]["Error"], "PaymentDeclined");
    let cause: Value = serde_json::from_str(out["error"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["errorType"], "PaymentDeclined");
    assert_eq!(cause["errorMessage"], "card 42");
    let events = history(&s, &arn, 100);
    assert_eq!(
        count(&events, "LambdaFunctionFailed"),
        3,
        "{:?}",
        types(&events)
    );
    assert_eq!(count(&events, "LambdaFunctionScheduled"), 3);
}

#[test]
fn workflow_wait_survives_sigkill_and_fires_on_time() {
    let mut s = Server::start();
    create(
        &s,
        "sleepy",
        json!({"StartAt": "Before", "States": {
            "Before": {"Type": "Pass", "Result": {"stage": "waited"}, "ResultPath": "$.r", "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 3, "Next": "After"},
            "After": {"Type": "Pass", "Parameters": {"stage.$": "$.r.stage", "id.$": "$.id"}, "End": true}}}),
    );
    let arn = start(&s, "sleepy", "w1", json!({"id": 7}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(describe(&s, &arn)["status"], "RUNNING");
    signal(s.pid(), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    s.launch();
    let d = wait_done(&s, &arn, Duration::from_secs(20));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["output"], json!({"stage": "waited", "id": 7}));
    let took = d["stopped_at"].as_i64().unwrap() - d["started_at"].as_i64().unwrap();
    assert!(
        (3000..6000).contains(&took),
        "the wait fired after {took} ms"
    );
    let events = history(&s, &arn, 2);
    assert_dense(&events);
    assert_eq!(count(&events, "WaitStateEntered"), 1);
    assert_eq!(count(&events, "WaitStateExited"), 1);
}

#[test]
fn workflow_map_resumes_after_sigkill_with_the_right_output() {
    const ITEMS: i64 = 12;
    let mut s = Server::start();
    deploy_py(
        &s,
        "wf-slow-double",
        "import time\ndef handler(e, c):\n    time.sleep(0.4)\n    return e * 2\n",
        json!({}),
    );
    create(
        &s,
        "slowmap",
        json!({"StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3, "ResultPath": "$.doubled",
            "ItemProcessor": {"StartAt": "D", "States": {
                "D": {"Type": "Task", "Resource": "wf-slow-double", "End": true}}},
            "End": true}}}),
    );
    let items: Vec<i64> = (0..ITEMS).collect();
    let arn = start(&s, "slowmap", "m1", json!({"items": items}));
    // Kill once some iterations are done and others are not.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(&history(&s, &arn, 1000), "MapIterationSucceeded");
        if done >= 3 {
            assert!(done < ITEMS as usize, "the Map finished before the kill");
            break;
        }
        assert!(Instant::now() < deadline, "no iteration finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(s.pid(), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    s.launch();
    let d = wait_done(&s, &arn, Duration::from_secs(60));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let expected: Vec<i64> = (0..ITEMS).map(|i| i * 2).collect();
    assert_eq!(d["output"]["doubled"], json!(expected));
    let events = history(&s, &arn, 1000);
    assert_dense(&events);
    assert_eq!(count(&events, "MapIterationStarted"), ITEMS as usize);
    assert_eq!(count(&events, "MapIterationSucceeded"), ITEMS as usize);
}

#[test]
fn workflow_map_of_10000_items_completes_with_paged_history() {
    // Six events per item: 60,000, past Step Functions' 25,000 (which a
    // Distributed Map would avoid there), so this server allows more.
    let s = Server::start_with(&["--max-history-events", "100000"]);
    create(
        &s,
        "bigmap",
        json!({"StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 50,
            "ItemProcessor": {"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Choices": [
                        {"Variable": "$", "NumericGreaterThanEquals": 5000, "Next": "Big"}],
                      "Default": "Small"},
                "Big": {"Type": "Pass", "Result": "big", "End": true},
                "Small": {"Type": "Pass", "Result": "small", "End": true}}},
            "End": true}}}),
    );
    let items: Vec<i64> = (0..10_000).collect();
    let started = Instant::now();
    let arn = start(&s, "bigmap", "big", json!({"items": items}));
    let d = wait_done(&s, &arn, Duration::from_secs(120));
    assert_eq!(d["status"], "SUCCEEDED");
    eprintln!("10,000-item Map finished in {:?}", started.elapsed());
    let out = d["output"].as_array().unwrap();
    assert_eq!(out.len(), 10_000);
    assert_eq!(
        (out[0].as_str(), out[9_999].as_str()),
        (Some("small"), Some("big"))
    );
    let events = history(&s, &arn, 1000);
    assert_dense(&events);
    assert_eq!(count(&events, "MapIterationSucceeded"), 10_000);
    assert_eq!(count(&events, "ChoiceStateEntered"), 10_000);
    assert_eq!(types(&events).last(), Some(&"ExecutionSucceeded"));
    let (status, newest) = s.get(&format!(
        "/v1/executions/{arn}/history?max_results=3&reverse=true"
    ));
    assert_eq!(status, 200);
    assert_eq!(newest["events"][0]["id"], json!(events.len()));
}

#[test]
fn workflow_stop_aborts_a_waiting_execution() {
    let s = Server::start();
    create(
        &s,
        "forever",
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
    );
    let arn = start(&s, "forever", "f1", json!({}));
    let (status, body) = s.send_json(
        "POST",
        &format!("/v1/executions/{arn}/stop"),
        &json!({"error": "Halt", "cause": "test"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ABORTED");
    assert_eq!(body["error"], "Halt");
    let events = history(&s, &arn, 100);
    assert_eq!(types(&events).last(), Some(&"ExecutionAborted"));
    let (status, _) = s.get("/v1/executions/forever:missing");
    assert_eq!(status, 404);
}

#[test]
fn workflow_cli_and_manifest() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("app.py"),
        "def handler(e, c):\n    return {'greeting': 'hello ' + e['who']}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("greet.asl.json"),
        r#"{"StartAt": "Greet", "States": {"Greet": {"Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:000000000000:function:wf-greeter", "End": true}}}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("nimbus.toml"),
        "name = \"wf-greeter\"\nruntime = \"python3\"\nhandler = \"app.handler\"\n\n\
         [[workflows]]\nname = \"greet\"\ndefinition = \"greet.asl.json\"\n\n\
         [[workflows]]\nname = \"pause\"\n[workflows.definition]\nStartAt = \"W\"\n\
         [workflows.definition.States.W]\nType = \"Wait\"\nSeconds = 600\nEnd = true\n",
    )
    .unwrap();
    let ok = |args: &[&str]| {
        let out = s.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let deployed = ok(&["deploy", d.to_str().unwrap()]);
    assert!(deployed.contains("deployed workflow greet"), "{deployed}");

    let run = ok(&[
        "workflow",
        "start",
        "greet",
        "--input",
        r#"{"who": "Ada"}"#,
        "--name",
        "r1",
        "--wait",
        "30",
    ]);
    assert!(
        run.contains("SUCCEEDED") && run.contains("hello Ada"),
        "{run}"
    );
    let ls = ok(&["workflow", "ls"]);
    assert!(ls.contains("greet") && ls.contains("pause"), "{ls}");
    let runs = ok(&["workflow", "ls", "greet"]);
    assert!(runs.contains("r1") && runs.contains("SUCCEEDED"), "{runs}");
    let described = ok(&["workflow", "describe", "greet:r1"]);
    assert!(described.contains("hello Ada"), "{described}");
    let machine = ok(&["workflow", "describe", "greet"]);
    assert!(machine.contains("STANDARD"), "{machine}");
    let hist = ok(&["workflow", "history", "greet:r1"]);
    assert!(
        hist.contains("LambdaFunctionSucceeded") && hist.contains("ExecutionSucceeded"),
        "{hist}"
    );

    let arn = ok(&["workflow", "start", "pause"]).trim().to_string();
    assert!(arn.contains(":execution:pause:"), "{arn}");
    let stopped = ok(&["workflow", "stop", &arn, "--cause", "enough"]);
    assert!(stopped.contains("ABORTED"), "{stopped}");
    let out = s.cli(&["workflow", "describe", "greet:nope"]);
    assert!(!out.status.success());

    // Creating from a file with the CLI, and an invalid definition.
    std::fs::write(
        d.join("bad.json"),
        r#"{"StartAt": "Nowhere", "States": {}}"#,
    )
    .unwrap();
    let out = s.cli(&[
        "workflow",
        "create",
        "bad",
        "--definition",
        d.join("bad.json").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid State Machine Definition"));
    ok(&[
        "workflow",
        "create",
        "again",
        "--definition",
        d.join("greet.asl.json").to_str().unwrap(),
    ]);
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The review's self-loop (H7): it used to hold a runtime thread and grow the
/// server to 3 GB. Now it fails as Step Functions fails it, at 25,000 history
/// events, within seconds, while the server stays small and answers.
#[test]
fn workflow_self_looping_pass_fails_at_the_history_quota_with_memory_flat() {
    let s = Server::start();
    create(
        &s,
        "loop",
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}),
    );
    create(
        &s,
        "choiceloop",
        json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "C"}],
                  "Default": "D"},
            "D": {"Type": "Succeed"}}}),
    );
    let before = rss_kb(s.pid());
    let started = Instant::now();
    // Before the budget this call never returned (one interpreter call ran
    // the loop forever, growing to gigabytes).
    let arn = start(&s, "loop", "l1", json!({"pad": "p".repeat(512)}));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "StartExecution returned after {:?}",
        started.elapsed()
    );
    let choice = start(&s, "choiceloop", "c1", json!({"x": 1}));
    let (mut peak, mut slowest) = (before, Duration::ZERO);
    let d = loop {
        let t = Instant::now();
        let (status, _) = s.get("/v1/health");
        assert_eq!(status, 200);
        slowest = slowest.max(t.elapsed());
        peak = peak.max(rss_kb(s.pid()));
        let d = describe(&s, &arn);
        if d["status"] != "RUNNING" {
            break d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running after {:?}: {}",
            started.elapsed(),
            d["status"]
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "self-loop failed after {:?}; RSS {} -> peak {} kB; slowest health check {slowest:?}",
        started.elapsed(),
        before,
        peak
    );
    assert_eq!(d["status"], "FAILED", "{d}");
    assert_eq!(d["error"], "States.Runtime", "{d}");
    assert!(
        d["cause"]
            .as_str()
            .unwrap()
            .contains("maximum number of history events (25000)"),
        "{d}"
    );
    assert!(
        peak < before + 120 * 1024,
        "RSS grew from {before} kB to {peak} kB"
    );
    assert!(slowest < Duration::from_secs(1), "health took {slowest:?}");
    let events = history(&s, &arn, 1000);
    assert!(events.len() <= 25_000, "{} events", events.len());
    assert_dense(&events);
    assert_eq!(types(&events).last(), Some(&"ExecutionFailed"));
    let c = wait_done(&s, &choice, Duration::from_secs(20));
    assert_eq!(c["status"], "FAILED", "{c}");
    assert_eq!(c["error"], "States.Runtime", "{c}");
}

/// A Pass state doubling a string with States.Format fails with
/// States.DataLimitExceeded once its output passes 256 KiB.
#[test]
fn workflow_doubling_format_loop_fails_at_the_payload_quota() {
    let s = Server::start();
    create(
        &s,
        "doubler",
        json!({"StartAt": "A", "States": {"A": {
            "Type": "Pass", "Parameters": {"s.$": "States.Format('{}{}', $.s, $.s)"},
            "Next": "A"}}}),
    );
    let arn = start(&s, "doubler", "d1", json!({"s": "x"}));
    let d = wait_done(&s, &arn, Duration::from_secs(10));
    assert_eq!(d["status"], "FAILED", "{d}");
    assert_eq!(d["error"], "States.DataLimitExceeded", "{d}");
    assert!(d["cause"].as_str().unwrap().contains("'A'"), "{d}");
    // StartExecution's own input is held to the same quota.
    let (status, body) = s.send_json(
        "POST",
        "/v1/workflows/doubler/executions",
        &json!({"name": "big", "input": {"s": "x".repeat(256 * 1024)}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("262144"), "{body}");
}

/// `--max-running-executions`: past it StartExecution is throttled, and a
/// place frees up when an execution ends.
#[test]
fn workflow_running_executions_are_capped() {
    let s = Server::start_with(&["--max-running-executions", "2"]);
    create(
        &s,
        "waiter",
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
    );
    let first = start(&s, "waiter", "w1", json!({}));
    start(&s, "waiter", "w2", json!({}));
    let (status, body) = s.send_json(
        "POST",
        "/v1/workflows/waiter/executions",
        &json!({"name": "w3"}),
    );
    assert_eq!(status, 429, "{body}");
    assert!(
        body.to_string().contains("--max-running-executions 2"),
        "{body}"
    );
    let (status, body) = s.send_json("POST", &format!("/v1/executions/{first}/stop"), &json!({}));
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = s.send_json(
            "POST",
            "/v1/workflows/waiter/executions",
            &json!({"name": "w3"}),
        );
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
