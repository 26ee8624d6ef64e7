//! The CLI as users run it: deploy from a directory, invoke, list, inspect, logs, remove.

use serde_json::Value;

use crate::harness::*;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn deploy_invoke_ls_get_logs_rm() {
    let s = Server::start();
    let examples = repo_root().join("examples");
    for ex in ["hello-python", "hello-node"] {
        let out = ok(&s.cli(&["deploy", examples.join(ex).to_str().unwrap()]));
        assert!(out.starts_with(&format!("deployed {ex}:")), "{out}");
    }
    let out = s.cli(&[
        "invoke",
        "hello-python",
        "--data",
        r#"{"name":"Ada"}"#,
        "--logs",
    ]);
    let stdout = ok(&out);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["message"], "Hello, Ada!");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("START RequestId:") && stderr.contains("Init Duration:"),
        "{stderr}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let event = tmp.path().join("event.json");
    std::fs::write(&event, r#"{"name":"File"}"#).unwrap();
    let out = ok(&s.cli(&[
        "invoke",
        "hello-node",
        "--data",
        &format!("@{}", event.display()),
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["payload"]["message"], "Hello, File!");
    assert_eq!(v["cold_start"], true);
    assert!(v["log"].as_str().unwrap().contains("REPORT RequestId"));

    let ls = ok(&s.cli(&["ls"]));
    assert!(
        ls.contains("hello-python") && ls.contains("hello-node") && ls.starts_with("NAME"),
        "{ls}"
    );
    let ls: Value = serde_json::from_str(&ok(&s.cli(&["ls", "--json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 2);
    let get = ok(&s.cli(&["get", "hello-python"]));
    assert!(
        get.contains("handler        app.handler") && get.contains("GREETING=Hello"),
        "{get}"
    );

    let logs = ok(&s.cli(&["logs", "hello-python", "--since", "10m"]));
    assert!(
        logs.contains("greeting Ada") && logs.contains("REPORT RequestId"),
        "{logs}"
    );

    ok(&s.cli(&["rm", "hello-node"]));
    let out = s.cli(&["get", "hello-node"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
    assert!(err.contains("FunctionNotFound"), "{err}");
}

#[test]
fn failures_exit_non_zero_with_one_line() {
    let s = Server::start();
    // Function error: the payload is printed, the exit code is 2.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "def handler(e, c):\n    raise ValueError('nope')\n",
    )
    .unwrap();
    ok(&s.cli(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "fails",
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
    ]));
    let out = s.cli(&["invoke", "fails"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ValueError: nope"));

    // Bad flag values are refused by the server with its message.
    let out = s.cli(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "x",
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
        "--memory",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("memory_mb must be between 128 and 10240"),
        "{err}"
    );

    // Unreachable server.
    let out = std::process::Command::new(BIN)
        .args(["ls", "--endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach Nimbus"));
}

#[test]
fn logs_follow_streams_new_lines() {
    use std::io::{BufRead, BufReader};
    let s = Server::start();
    deploy_py(
        &s,
        "followed",
        "def handler(e, c):\n    print('event', e['n'])\n",
        serde_json::json!({}),
    );
    let mut child = std::process::Command::new(BIN)
        .args(["logs", "followed", "--follow"])
        .env("NIMBUS_ENDPOINT", &s.url)
        .env("NIMBUS_ACCESS_KEY_ID", ADMIN_KEY_ID)
        .env("NIMBUS_SECRET_ACCESS_KEY", ADMIN_SECRET)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    for n in 1..=2 {
        s.invoke("followed", &serde_json::json!({"n": n}));
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.iter().any(|l: &String| l.ends_with("event 2"))
        && std::time::Instant::now() < deadline
    {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|l| l.ends_with("event 1")), "{seen:#?}");
    assert!(seen.iter().any(|l| l.ends_with("event 2")), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("REPORT RequestId")),
        "{seen:#?}"
    );
}

#[test]
fn publish_alias_and_invoke_qualified() {
    let s = Server::start();
    let dir = repo_root().join("examples/hello-python");
    ok(&s.cli(&["deploy", dir.to_str().unwrap()]));
    let out = ok(&s.cli(&["publish", "hello-python"]));
    assert!(out.starts_with("published hello-python:1"), "{out}");
    // Publishing again without a change returns the same version.
    assert!(ok(&s.cli(&["publish", "hello-python"])).starts_with("published hello-python:1"));
    ok(&s.cli(&["deploy", dir.to_str().unwrap(), "--env", "GREETING=Hi"]));
    assert!(ok(&s.cli(&["publish", "hello-python"])).starts_with("published hello-python:2"));

    let greeting = |target: &str| -> String {
        let out = ok(&s.cli(&["invoke", target, "--data", r#"{"name":"Ada"}"#]));
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v["message"].as_str().unwrap().to_string()
    };
    assert_eq!(greeting("hello-python:1"), "Hello, Ada!");
    assert_eq!(greeting("hello-python:2"), "Hi, Ada!");
    assert_eq!(greeting("hello-python"), "Hi, Ada!");

    let out = ok(&s.cli(&["alias", "set", "hello-python", "live", "1"]));
    assert!(out.contains("hello-python:live → version 1"), "{out}");
    assert_eq!(greeting("hello-python:live"), "Hello, Ada!");
    // All traffic to the additional version.
    let out = ok(&s.cli(&[
        "alias",
        "set",
        "hello-python",
        "live",
        "1",
        "--weight",
        "2=1.0",
    ]));
    assert!(out.contains("version 2 (100%)"), "{out}");
    assert_eq!(greeting("hello-python:live"), "Hi, Ada!");
    let ls = ok(&s.cli(&["alias", "ls", "hello-python"]));
    assert!(ls.starts_with("live"), "{ls}");

    // A version an alias points to cannot be deleted.
    let r = s
        .http
        .delete(format!("{}/v1/functions/hello-python/versions/1", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    ok(&s.cli(&["alias", "rm", "hello-python", "live"]));
    let out = s.cli(&["invoke", "hello-python:live"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn usage_and_cost_match_what_ran() {
    let s = Server::start();
    deploy_py(
        &s,
        "metered",
        "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError('x')\n    return 1\n",
        serde_json::json!({"memory_mb": 256}),
    );
    let mut billed = 0u64;
    for payload in [
        serde_json::json!({}),
        serde_json::json!({}),
        serde_json::json!({"fail": true}),
    ] {
        let r = s.invoke("metered", &payload);
        billed += r
            .header("x-nimbus-billed-duration-ms")
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let f = loop {
        let v: Value = serde_json::from_str(&ok(&s.cli(&["usage", "metered", "--json"]))).unwrap();
        if v[0]["requests"] == 3 || std::time::Instant::now() > deadline {
            break v[0].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(f["function"], "metered");
    assert_eq!(f["requests"], 3, "{f}");
    assert_eq!(f["errors"], 1);
    assert_eq!(f["throttles"], 0);
    assert_eq!(f["cold_starts"], 1);
    assert_eq!(f["billed_ms"], billed);
    let gbs = f["gb_seconds"].as_f64().unwrap();
    assert!(
        (gbs - billed as f64 / 1000.0 * 0.25).abs() < 1e-9,
        "{gbs} vs {billed} ms at 256 MB"
    );
    let table = ok(&s.cli(&["usage"]));
    assert!(
        table.starts_with("FUNCTION") && table.contains("metered"),
        "{table}"
    );

    let cost: Value = serde_json::from_str(&ok(&s.cli(&["cost", "--json"]))).unwrap();
    assert!(
        (cost["request_cost_usd"].as_f64().unwrap() - 3.0 / 1_000_000.0 * 0.20).abs() < 1e-12,
        "{cost}"
    );
    assert!(
        (cost["compute_cost_usd"].as_f64().unwrap() - gbs * 0.0000166667).abs() < 1e-12,
        "{cost}"
    );
    let estimate: Value = serde_json::from_str(&ok(&s.cli(&[
        "cost",
        "--requests",
        "1000000",
        "--memory",
        "128",
        "--duration",
        "100ms",
        "--json",
    ])))
    .unwrap();
    assert_eq!(estimate["gb_seconds"], 12500.0);
    assert!(
        (estimate["total_usd"].as_f64().unwrap() - 0.408333).abs() < 1e-5,
        "{estimate}"
    );
}

/// examples/stream-node as the README runs it: `nimbus deploy` gives it a
/// streaming URL from its manifest; the events arrive one by one (the first
/// long before the last) with the status and headers of its prelude, and
/// `nimbus invoke --stream` prints the same stream.
#[test]
fn the_streaming_example_streams_through_its_url_and_the_cli() {
    use std::io::Read;
    let s = Server::start();
    let dir = repo_root().join("examples/stream-node");
    let out = ok(&s.cli(&["deploy", dir.to_str().unwrap()]));
    assert!(out.contains("deployed URL of stream-node: "), "{out}");
    let url = ok(&s.cli(&["url", "get", "stream-node"]));
    let started = std::time::Instant::now();
    let mut r = reqwest::blocking::get(format!("{}?count=4", url.trim())).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let mut first = vec![0u8; "data: step 1 of 4\n\n".len()];
    r.read_exact(&mut first).unwrap();
    let first_at = started.elapsed();
    assert_eq!(first, b"data: step 1 of 4\n\n");
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(
        rest,
        "data: step 2 of 4\n\ndata: step 3 of 4\n\ndata: step 4 of 4\n\ndata: done\n\n"
    );
    assert!(
        started.elapsed() - first_at >= std::time::Duration::from_millis(500),
        "the steps came together: first at {first_at:?}"
    );

    // The CLI prints the body, and the prelude (which a URL turns into the
    // status and headers) on stderr.
    let out = s.cli(&[
        "invoke",
        "stream-node",
        "--stream",
        "--data",
        r#"{"count": 2}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "data: step 1 of 2\n\ndata: step 2 of 2\n\ndata: done\n\n"
    );
    let prelude = String::from_utf8_lossy(&out.stderr);
    assert!(prelude.contains("\"statusCode\":200"), "{prelude}");
}
