//! Server lifecycle: restarts keep everything, shutdown is graceful, idle
//! instances are reaped, instances never outlive the server.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[test]
fn restart_keeps_every_function() {
    let mut s = Server::start();
    deploy_py(
        &s,
        "keep-py",
        "def handler(e, c): return 'py'\n",
        json!({"memory_mb": 192, "environment": {"K": "v"}}),
    );
    s.deploy(
        "keep-node",
        "nodejs",
        "index.handler",
        node("index.js", "exports.handler = async () => 'node';\n"),
        json!({}),
    );
    assert_eq!(s.invoke("keep-py", &json!({})).json(), json!("py"));
    let before = s.get("/v1/functions").1;
    s.restart();
    let after = s.get("/v1/functions").1;
    assert_eq!(before, after, "functions are identical after a restart");
    assert_eq!(s.invoke("keep-py", &json!({})).json(), json!("py"));
    assert_eq!(s.invoke("keep-node", &json!({})).json(), json!("node"));
    // Logs survive too.
    let lines = lines_of(&s.logs_until("keep-py", |ev| {
        lines_of(ev)
            .iter()
            .filter(|l| l.starts_with("START"))
            .count()
            >= 2
    }));
    assert_eq!(lines.iter().filter(|l| l.starts_with("START")).count(), 2);
}

#[test]
fn second_server_on_the_same_data_dir_is_refused() {
    let s = Server::start();
    let out = std::process::Command::new(BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another nimbus is already running"), "{err}");
}

#[test]
fn sigterm_lets_in_flight_invocations_finish() {
    let mut s = Server::start();
    deploy_py(
        &s,
        "slowdone",
        "import time\ndef handler(e, c):\n    time.sleep(1.5)\n    return 'finished'\n",
        json!({"timeout_s": 10}),
    );
    let url = s.url.clone();
    let call = std::thread::spawn(move || {
        let r = authed_client()
            .post(format!("{url}/v1/functions/slowdone/invoke"))
            .body("{}")
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let status = s.stop();
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        s.server_log()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "waited for the invocation"
    );
    assert_eq!(call.join().unwrap(), (200, "\"finished\"".to_string()));
}

#[test]
fn idle_instances_are_reaped_after_keep_alive() {
    let s = Server::start_with(&["--keep-alive", "1s"]);
    deploy_py(
        &s,
        "reaped",
        "import os\ndef handler(e, c): return os.getpid()\n",
        json!({}),
    );
    s.invoke("reaped", &json!({}));
    let pids = host_pids_of("reaped");
    assert!(!pids.is_empty());
    assert!(!s.invoke("reaped", &json!({})).cold());
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "idle instance process is gone"
    );
    assert!(
        s.invoke("reaped", &json!({})).cold(),
        "scaled to zero, so the next call is cold"
    );
}

#[test]
fn instances_die_with_a_killed_server() {
    let s = Server::start();
    deploy_py(
        &s,
        "orphan",
        "import os\ndef handler(e, c): return os.getpid()\n",
        json!({}),
    );
    s.invoke("orphan", &json!({}));
    let pids = host_pids_of("orphan");
    assert!(!pids.is_empty() && pids.iter().all(|&p| alive(p)));
    signal(s.pid(), libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(!alive(pid), "instance process {pid} outlived the server");
    }
}

#[test]
fn invocations_outliving_the_grace_period_are_stopped_and_answered() {
    let mut s = Server::start_with(&["--shutdown-grace", "1s"]);
    deploy_py(
        &s,
        "endless",
        "import time\ndef handler(e, c):\n    time.sleep(60)\n",
        json!({"timeout_s": 120}),
    );
    let url = s.url.clone();
    let call = std::thread::spawn(move || {
        let r = authed_client()
            .post(format!("{url}/v1/functions/endless/invoke"))
            .body("{}")
            .send()
            .unwrap();
        let fe = r
            .headers()
            .get("x-nimbus-function-error")
            .map(|v| v.to_str().unwrap().to_string());
        let rid = r
            .headers()
            .get("x-nimbus-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        (
            r.status().as_u16(),
            fe,
            rid,
            r.json::<serde_json::Value>().unwrap(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let status = s.stop();
    assert!(status.success(), "{}", s.server_log());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown does not wait for the handler's 60 s"
    );
    let (code, fe, rid, body) = call.join().unwrap();
    assert_eq!(code, 200);
    assert_eq!(fe.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Sandbox.Failure", "{body}");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("shut down"),
        "{body}"
    );
    // Its END/REPORT were written before the server exited.
    s.launch();
    let lines = lines_of(&s.logs_until("endless", |ev| {
        lines_of(ev).iter().any(|l| l.starts_with("REPORT"))
    }));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("REPORT RequestId: {rid}"))),
        "{lines:#?}"
    );
}

#[test]
fn accepted_async_events_survive_sigkill() {
    const EVENTS: usize = 300;
    const WORKERS: usize = 8;
    // Executions are counted outside the server (its logs of the last moments
    // before a SIGKILL may be lost; the count must not be): every run reports
    // its event number to a ledger the test keeps (over loopback: a sandboxed
    // function sees no host file).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let runs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let runs = runs.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = std::io::Read::read_to_string(&mut { conn }, &mut line);
                runs.lock().unwrap().push_str(&line);
            }
        });
    }
    let mut s = Server::start_with(&["--async-workers", &WORKERS.to_string()]);
    deploy_py(
        &s,
        "durable",
        "import os, socket, time\n\
         def handler(e, c):\n    \
             time.sleep(0.05)\n    \
             with socket.create_connection(('127.0.0.1', int(os.environ['LEDGER_PORT']))) as s:\n        \
                 s.sendall(b'%d\\n' % e['n'])\n",
        json!({"environment": {"LEDGER_PORT": port.to_string()}}),
    );
    for n in 0..EVENTS {
        let r = s
            .http
            .post(format!("{}/v1/functions/durable/invoke?type=event", s.url))
            .body(json!({ "n": n }).to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    // Killed while most events are queued and some are running: no chance to
    // clean up.
    signal(s.pid(), libc::SIGKILL);
    let counts = || {
        let mut counts = vec![0usize; EVENTS];
        for line in runs.lock().unwrap().lines() {
            counts[line.parse::<usize>().unwrap()] += 1;
        }
        counts
    };
    let ran_before_kill = counts().iter().filter(|&&c| c > 0).count();
    assert!(
        ran_before_kill < EVENTS,
        "the kill must find events still queued"
    );
    std::thread::sleep(Duration::from_millis(200));
    s.launch();
    // Well below the leases (timeout + 40 s): released at startup, not expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts().contains(&0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let counts = counts();
    let missing: Vec<usize> = (0..EVENTS).filter(|&n| counts[n] == 0).collect();
    assert!(
        missing.is_empty(),
        "every accepted event runs: missing {missing:?}"
    );
    // At least once, not at random: only events that were claimed (running, or
    // finished but not yet marked done) when the server died run twice.
    let again: usize = counts.iter().map(|c| c - 1).sum();
    assert!(
        again <= WORKERS,
        "{again} re-runs, but only {WORKERS} events can be claimed at a time: {counts:?}"
    );
    // Nothing runs a third time, and no run is left over afterwards.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counts, {
        let mut c = vec![0usize; EVENTS];
        for line in runs.lock().unwrap().lines() {
            c[line.parse::<usize>().unwrap()] += 1;
        }
        c
    });
}

#[test]
fn hybrid_keep_alive_policy_keeps_instances_warm_while_learning() {
    let s = Server::start_with(&["--keep-alive-policy", "hybrid", "--keep-alive", "2s"]);
    deploy_py(&s, "learner", "def handler(e, c): return 1\n", json!({}));
    assert!(s.invoke("learner", &json!({})).cold());
    assert!(
        !s.invoke("learner", &json!({})).cold(),
        "the fallback keep-alive applies while the histogram is young"
    );
    std::thread::sleep(Duration::from_millis(3000));
    assert!(
        s.invoke("learner", &json!({})).cold(),
        "and expires like a fixed one"
    );
}

/// Instances of `function` by state, from the Prometheus endpoint.
fn instances(s: &Server, function: &str) -> u64 {
    let text = s.metrics_text();
    text.lines()
        .filter(|l| l.starts_with(&format!("nimbus_instances{{function=\"{function}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn hybrid_policy_unloads_after_a_call_and_prewarms_before_the_next() {
    // 80 ms histogram bins (the paper's are a minute) and calls every 1.2 s: the
    // policy learns to pre-warm at ~1.08 s after a call and unload at ~1.41 s.
    let s = Server::start_with(&[
        "--keep-alive-policy",
        "hybrid",
        "--keep-alive-bin",
        "80ms",
        "--keep-alive",
        "60s",
    ]);
    deploy_py(&s, "periodic", "def handler(e, c): return 1\n", json!({}));
    let gap = Duration::from_millis(1200);
    let mut next = Instant::now();
    // Learning: the histogram needs ten idle times before it is trusted.
    for _ in 0..11 {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        s.invoke("periodic", &json!({}));
        next += gap;
    }
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            instances(&s, "periodic"),
            0,
            "round {round}: unloaded right after the call, not kept idle"
        );
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let r = s.invoke("periodic", &json!({}));
        assert!(
            !r.cold(),
            "round {round}: an instance was pre-warmed for the expected call"
        );
        next += gap;
    }
    // No call in the window: the pre-warmed instance goes at its end.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(instances(&s, "periodic"), 0);
}
