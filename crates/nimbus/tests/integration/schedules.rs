//! Schedules, driven by the test clock (`--test-clock`): a `rate(1 minute)` rule
//! fires once per minute of clock time, with the EventBridge envelope; restarts
//! neither repeat nor (with `skip`) replay fires; `catch-up-once` fires once
//! for the time the server was down.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const RECORDER: &str = "import json\ndef handler(e, c):\n    print('fired', json.dumps(e, sort_keys=True), flush=True)\n";

fn advance(s: &Server, seconds: f64) {
    let (status, v) = s.send_json("POST", "/v1/debug/clock", &json!({ "advance_s": seconds }));
    assert_eq!(status, 200, "{v}");
}

/// The events of every fire logged so far by `function`.
fn fires(s: &Server, function: &str) -> Vec<Value> {
    let (status, v) = s.get(&format!("/v1/functions/{function}/logs?limit=10000"));
    assert_eq!(status, 200, "{v}");
    lines_of(v["events"].as_array().unwrap())
        .iter()
        .filter_map(|l| l.strip_prefix("fired "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

fn wait_for_fires(s: &Server, function: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = fires(s, function);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn times(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["time"].as_str().unwrap().to_string())
        .collect()
}

fn add_schedule(s: &Server, name: &str, body: Value) -> Value {
    let (status, v) = s.send_json("PUT", &format!("/v1/schedules/{name}"), &body);
    assert_eq!(status, 201, "{v}");
    v
}

#[test]
fn a_rate_schedule_fires_once_per_period_with_the_eventbridge_envelope() {
    let s = Server::start_with(&["--test-clock"]);
    deploy_py(&s, "ticker", RECORDER, json!({}));
    let v = add_schedule(
        &s,
        "every-minute",
        json!({"expression": "rate(1 minute)", "function": "ticker"}),
    );
    assert!(v["next_fire"].is_string(), "{v}");
    for _ in 0..5 {
        advance(&s, 60.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = wait_for_fires(&s, "ticker", 5);
    std::thread::sleep(Duration::from_millis(500));
    let got_later = fires(&s, "ticker");
    assert_eq!(
        got_later.len(),
        5,
        "exactly one fire per minute of clock time: {got_later:#?}"
    );
    assert_eq!(times(&got).len(), 5, "five different scheduled times");
    let e = &got[0];
    assert_eq!(e["detail-type"], "Scheduled Event");
    assert_eq!(e["source"], "aws.events");
    assert_eq!(e["version"], "0");
    assert_eq!(e["detail"], json!({}));
    assert_eq!(e["account"], "000000000000");
    assert_eq!(
        e["resources"],
        json!(["arn:aws:events:us-east-1:000000000000:rule/every-minute"])
    );
    let t = e["time"].as_str().unwrap();
    assert!(
        t.ends_with('Z') && !t.contains('.'),
        "ISO-8601 without ms: {t}"
    );
    // Listed with its last and next fire.
    let (_, list) = s.get("/v1/schedules");
    let listed = &list["schedules"][0];
    assert_eq!(listed["name"], "every-minute");
    assert!(
        listed["last_fire"].is_string() && listed["next_fire"].is_string(),
        "{listed}"
    );
}

#[test]
fn restarts_neither_repeat_nor_replay_fires_unless_asked_to_catch_up() {
    let mut s = Server::start_with(&["--test-clock"]);
    deploy_py(&s, "skipper", RECORDER, json!({}));
    deploy_py(&s, "catcher", RECORDER, json!({}));
    add_schedule(
        &s,
        "skip",
        json!({"expression": "rate(1 minute)", "function": "skipper"}),
    );
    add_schedule(
        &s,
        "catch",
        json!({"expression": "rate(1 minute)", "function": "catcher", "missed": "catch-up-once", "input": {"custom": true}}),
    );
    // One minute at a time: a jump over several periods at once would count
    // as missed fires.
    advance(&s, 60.0);
    std::thread::sleep(Duration::from_millis(200));
    advance(&s, 60.0);
    assert_eq!(wait_for_fires(&s, "skipper", 2).len(), 2);
    assert_eq!(wait_for_fires(&s, "catcher", 2).len(), 2);
    assert_eq!(
        fires(&s, "catcher")[0],
        json!({"custom": true}),
        "a schedule's own input replaces the envelope"
    );

    // Killed; the server comes back with its clock where it was (two minutes
    // ahead). Nothing is due again: no fire is repeated.
    signal(s.pid(), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    s.extra = vec!["--test-clock-offset".into(), "120s".into()];
    s.launch();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        fires(&s, "skipper").len(),
        2,
        "no repeated fire after a restart"
    );
    assert_eq!(fires(&s, "catcher").len(), 2);

    // Down for five minutes of clock time.
    s.stop();
    s.extra = vec!["--test-clock-offset".into(), "420s".into()];
    s.launch();
    let catcher = wait_for_fires(&s, "catcher", 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fires(&s, "skipper").len(),
        2,
        "skip: missed fires are skipped"
    );
    assert_eq!(
        fires(&s, "catcher").len(),
        3,
        "catch-up-once: one fire for the missed ones: {catcher:#?}"
    );
    // And both go on normally.
    advance(&s, 60.0);
    assert_eq!(wait_for_fires(&s, "skipper", 3).len(), 3);
    assert_eq!(wait_for_fires(&s, "catcher", 4).len(), 4);
}

#[test]
fn cron_schedules_validate_and_report_their_next_fire() {
    let s = Server::start_with(&["--test-clock"]);
    deploy_py(&s, "cronned", RECORDER, json!({}));
    let v = add_schedule(
        &s,
        "weekday-mornings",
        json!({"expression": "cron(0 9 ? * MON-FRI *)", "timezone": "Europe/Paris", "function": "cronned"}),
    );
    let next = v["next_fire"].as_str().unwrap();
    assert!(next.ends_with(":00:00Z"), "{next}");
    for (body, why) in [
        (
            json!({"expression": "cron(0 9 * * * *)", "function": "cronned"}),
            "exactly one",
        ),
        (
            json!({"expression": "rate(1 minutes)", "function": "cronned"}),
            "minute",
        ),
        (
            json!({"expression": "rate(5 minutes)", "function": "missing"}),
            "not found",
        ),
        (
            json!({"expression": "rate(5 minutes)"}),
            "exactly one of a function and a workflow",
        ),
        (
            json!({"expression": "cron(0 9 * * ? *)", "timezone": "Mars/Base", "function": "cronned"}),
            "time zone",
        ),
    ] {
        let (status, v) = s.send_json("PUT", "/v1/schedules/bad", &body);
        assert!(status == 400 || status == 404, "{status} {v}");
        assert!(v.to_string().contains(why), "{why}: {v}");
    }
    let (status, _) = s.send_json("DELETE", "/v1/schedules/weekday-mornings", &json!({}));
    assert_eq!(status, 204);
    let (status, _) = s.get("/v1/schedules/weekday-mornings");
    assert_eq!(status, 404);
}

/// The review's overflowing rates (one wrapped to a period of -16 s and was
/// refired in a loop, others panicked the handler) are refused with a 400 that
/// names the bound, and nothing is stored.
#[test]
fn huge_or_zero_rates_and_oversized_names_are_refused_at_creation() {
    let s = Server::start_with(&["--test-clock"]);
    deploy_py(&s, "target", RECORDER, json!({}));
    for (expr, why) in [
        ("rate(307445734561825860 minutes)", "at most 3650 days"),
        ("rate(4611686018427387904 minutes)", "at most 3650 days"),
        ("rate(100000000 days)", "at most 3650 days"),
        ("rate(0 minutes)", "positive integer"),
        ("rate(-1 minutes)", "positive integer"),
        ("cron(0 0 1 1 ? 2200)", "year field"),
    ] {
        let (status, v) = s.send_json(
            "PUT",
            "/v1/schedules/huge",
            &json!({"expression": expr, "function": "target"}),
        );
        assert_eq!(status, 400, "{expr}: {v}");
        assert!(v.to_string().contains(why), "{expr}: {v}");
    }
    let (status, v) = s.send_json(
        "PUT",
        "/v1/schedules/huge",
        &json!({"expression": "cron(0 9 * * ? *)", "timezone": "A".repeat(10 * 1024), "function": "target"}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("at most 50 characters"), "{v}");
    let (status, _) = s.get("/v1/schedules/huge");
    assert_eq!(status, 404, "nothing was stored");
    // The largest period is accepted and fires ten years later.
    let v = add_schedule(
        &s,
        "decade",
        json!({"expression": "rate(3650 days)", "function": "target"}),
    );
    let next = v["next_fire"].as_str().unwrap();
    let year: i32 = next[..4].parse().unwrap();
    assert!(
        year >= chrono::Datelike::year(&chrono::Utc::now()) + 9,
        "{next}"
    );
}

#[test]
fn the_clock_only_moves_in_test_mode() {
    let s = Server::start();
    let (status, v) = s.send_json("POST", "/v1/debug/clock", &json!({"advance_s": 60}));
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("--test-clock"), "{v}");
}

#[test]
fn a_schedule_can_start_a_workflow() {
    let s = Server::start_with(&["--test-clock"]);
    let (status, body) = s.send_json(
        "POST",
        "/v1/workflows",
        &json!({"name": "nightly", "definition": {
            "StartAt": "Echo",
            "States": {"Echo": {"Type": "Pass", "End": true}}
        }}),
    );
    assert_eq!(status, 201, "{body}");
    add_schedule(
        &s,
        "nightly.run",
        json!({"expression": "rate(1 hour)", "workflow": "nightly"}),
    );
    advance(&s, 3600.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let executions = loop {
        let (status, v) = s.get("/v1/workflows/nightly/executions");
        assert_eq!(status, 200, "{v}");
        let list = v["executions"].as_array().cloned().unwrap_or_default();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(executions.len(), 1, "{executions:#?}");
    let name = executions[0]["name"].as_str().unwrap();
    assert!(
        name.starts_with("nightly_run-"),
        "named after the fire: {name}"
    );
    let arn = executions[0]["arn"].as_str().unwrap();
    let (_, d) = s.get(&format!("/v1/executions/{arn}"));
    let input: Value = match &d["input"] {
        Value::String(t) => serde_json::from_str(t).unwrap(),
        other => other.clone(),
    };
    assert_eq!(input["detail-type"], "Scheduled Event", "{d}");
}

#[test]
fn schedules_from_the_manifest_and_the_cli() {
    let s = Server::start_with(&["--test-clock"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), RECORDER).unwrap();
    std::fs::write(
        dir.path().join("nimbus.toml"),
        "name = \"reporter\"\nruntime = \"python3\"\nhandler = \"app.handler\"\n\n\
         [[schedules]]\nname = \"hourly-report\"\nexpression = \"rate(1 hour)\"\nfunction = \"reporter\"\n\n\
         [[schedules]]\nname = \"monday\"\nexpression = \"cron(0 9 ? * MON *)\"\ntimezone = \"America/New_York\"\nfunction = \"reporter\"\ninput = { report = \"weekly\" }\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("deployed schedule hourly-report: rate(1 hour)"),
        "{text}"
    );
    assert!(text.contains("deployed schedule monday"), "{text}");
    // Deploying again replaces, it does not fail.
    assert!(
        s.cli(&["deploy", dir.path().to_str().unwrap()])
            .status
            .success()
    );

    let ls = s.cli(&["schedules", "ls"]);
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(
        text.contains("hourly-report") && text.contains("cron(0 9 ? * MON *)"),
        "{text}"
    );

    let add = s.cli(&[
        "schedules",
        "add",
        "often",
        "--expression",
        "rate(2 minutes)",
        "--function",
        "reporter",
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let bad = s.cli(&[
        "schedules",
        "add",
        "bad",
        "-e",
        "cron(61 * * * ? *)",
        "--function",
        "reporter",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("minutes field"));

    advance(&s, 120.0);
    let got = wait_for_fires(&s, "reporter", 1);
    assert_eq!(got.len(), 1, "the two-minute rule fired once: {got:#?}");
    assert!(s.cli(&["schedules", "rm", "often"]).status.success());
    let (_, list) = s.get("/v1/schedules");
    assert_eq!(list["schedules"].as_array().unwrap().len(), 2);
}
