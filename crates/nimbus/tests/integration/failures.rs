//! Misbehaving functions are contained and reported precisely; the server and
//! every other function carry on.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[test]
fn timeout_kills_and_replaces_the_instance() {
    let s = Server::start();
    deploy_py(
        &s,
        "sleepy",
        "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return 'done'\n",
        json!({"timeout_s": 1}),
    );
    assert_eq!(s.invoke("sleepy", &json!({})).json(), json!("done"));
    let started = Instant::now();
    let r = s.invoke("sleepy", &json!({"s": 30}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout enforced promptly"
    );
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    let v = r.json();
    assert_eq!(v["errorType"], "Sandbox.Timedout");
    assert_eq!(
        v["errorMessage"],
        format!(
            "RequestId: {} Error: Task timed out after 1.00 seconds",
            r.request_id()
        )
    );
    assert!(
        r.log_tail().contains("Task timed out after 1.0"),
        "{}",
        r.log_tail()
    );
    let next = s.invoke("sleepy", &json!({}));
    assert!(next.cold(), "a timed-out instance is replaced");
    assert_eq!(next.json(), json!("done"));
}

#[test]
fn memory_hog_is_killed_and_reported() {
    let s = Server::start();
    deploy_py(
        &s,
        "hog",
        "def handler(e, c):\n    blob = b'x' * (400 * 1024 * 1024)\n    return len(blob)\n",
        json!({"memory_mb": 128, "timeout_s": 10}),
    );
    let r = s.invoke("hog", &json!({}));
    assert_eq!(
        r.function_error().as_deref(),
        Some("Unhandled"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["errorType"], "Runtime.OutOfMemory", "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("memory limit of 128 MB exceeded"),
        "{v}"
    );
    let tail = r.log_tail();
    assert!(
        tail.contains("Max Memory Used: 12") || tail.contains("Max Memory Used: 13"),
        "peak is near the limit: {tail}"
    );
}

#[test]
fn crashes_are_reported_and_the_next_call_gets_a_new_instance() {
    let s = Server::start();
    deploy_py(
        &s,
        "crashy",
        "import os, ctypes\ndef handler(e, c):\n    if e.get('exit'): os._exit(3)\n    if e.get('segv'): ctypes.string_at(0)\n    return 'fine'\n",
        json!({}),
    );
    let r = s.invoke("crashy", &json!({"exit": true}));
    let v = r.json();
    assert_eq!(v["errorType"], "Runtime.ExitError");
    assert_eq!(
        v["errorMessage"],
        format!(
            "RequestId: {} Error: Runtime exited with error: exit status 3",
            r.request_id()
        )
    );
    let r = s.invoke("crashy", &json!({"segv": true}));
    assert!(
        r.json()["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("signal: segmentation fault"),
        "{}",
        r.json()
    );
    let ok = s.invoke("crashy", &json!({}));
    assert!(ok.cold());
    assert_eq!(ok.json(), json!("fine"));
}

#[test]
fn fork_bomb_hits_the_process_limit() {
    let s = Server::start_with(&["--max-pids", "64"]);
    deploy_py(
        &s,
        "forky",
        r#"
import os, time
def handler(e, c):
    n = 0
    err = None
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as ex:
            err = ex.strerror
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    return {"forked": n, "error": err}
"#,
        json!({"timeout_s": 20}),
    );
    deploy_py(
        &s,
        "bystander",
        "def handler(e, c): return 'unaffected'\n",
        json!({}),
    );
    let v = s.invoke("forky", &json!({})).json();
    assert!(v["forked"].as_i64().unwrap() < 64, "{v}");
    assert!(v["error"].is_string(), "fork eventually failed: {v}");
    assert_eq!(
        s.invoke("bystander", &json!({})).json(),
        json!("unaffected")
    );
}

#[test]
fn endless_output_is_bounded() {
    let s = Server::start();
    deploy_py(
        &s,
        "noisy",
        "def handler(e, c):\n    while True:\n        print('x' * 1000)\n",
        json!({"timeout_s": 2}),
    );
    let r = s.invoke("noisy", &json!({}));
    assert_eq!(r.json()["errorType"], "Sandbox.Timedout");
    let events = s.logs_until("noisy", |ev| {
        lines_of(ev).iter().any(|l| l.contains("Task timed out"))
    });
    let lines = lines_of(&events);
    assert!(
        lines.iter().any(|l| l.contains("output exceeded 8 MB")),
        "truncation notice present"
    );
    assert!(
        lines.len() < 10_000,
        "stored lines are capped: {}",
        lines.len()
    );
    let (status, _) = s.get("/v1/health");
    assert_eq!(status, 200);
}

#[test]
fn oversized_and_malformed_payloads_are_refused() {
    let s = Server::start();
    deploy_py(&s, "echo", "def handler(e, c): return e\n", json!({}));
    let big = format!("\"{}\"", "a".repeat(6 * 1024 * 1024));
    let r = s.invoke_raw("echo", big, false);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "PayloadTooLarge");
    let r = s.invoke_raw("echo", "{not json", false);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "InvalidPayload");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("json")
    );
    // Just under the limit works.
    let ok = format!("\"{}\"", "a".repeat(6 * 1024 * 1024 - 10));
    let r = s.invoke_raw("echo", ok, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 6 * 1024 * 1024 - 8);
}

#[test]
fn oversized_response_is_reported() {
    let s = Server::start();
    deploy_py(
        &s,
        "big",
        "def handler(e, c): return 'y' * 7000000\n",
        json!({}),
    );
    let r = s.invoke("big", &json!({}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "Function.ResponseSizeTooLarge");
}

#[test]
fn a_hung_function_does_not_disturb_others() {
    let s = Server::start();
    deploy_py(
        &s,
        "hang",
        "import time\ndef handler(e, c):\n    time.sleep(60)\n",
        json!({"timeout_s": 4}),
    );
    deploy_py(
        &s,
        "quick",
        "def handler(e, c): return 'quick'\n",
        json!({}),
    );
    let url = s.url.clone();
    let hung = std::thread::spawn(move || {
        authed_client()
            .post(format!("{url}/v1/functions/hang/invoke"))
            .body("{}")
            .send()
            .unwrap()
            .status()
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(s.invoke("quick", &json!({})).json(), json!("quick"));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(hung.join().unwrap(), 200);
}

#[test]
fn a_burst_is_held_to_the_scale_out_rate() {
    let s = Server::start_with(&[
        "--scale-out-rate",
        "0.5",
        "--scale-out-burst",
        "2",
        "--queue-wait",
        "0s",
    ]);
    deploy_py(
        &s,
        "bursty",
        "import time\ndef handler(e, c):\n    time.sleep(1.5)\n    return 'ok'\n",
        json!({}),
    );
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let url = s.url.clone();
            std::thread::spawn(move || {
                let r = authed_client()
                    .post(format!("{url}/v1/functions/bursty/invoke"))
                    .body("{}")
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.text().unwrap())
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|(st, _)| *st == 200).count();
    let throttled: Vec<_> = results.iter().filter(|(st, _)| *st == 429).collect();
    assert_eq!(
        ok, 2,
        "only the burst of 2 new instances starts at once: {results:?}"
    );
    assert_eq!(throttled.len(), 3, "{results:?}");
    assert!(
        throttled[0].1.contains("scaling out faster"),
        "{}",
        throttled[0].1
    );
}
