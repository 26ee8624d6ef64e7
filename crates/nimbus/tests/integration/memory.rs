//! Memory admission: the memory sizes of all instances together stay within
//! `--memory-budget`, and the kernel's OOM killer is pointed at instances,
//! never at the server.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const SLEEPER: &str =
    "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return 1\n";

/// Committed memory, from /metrics.
fn committed_mb(s: &Server) -> u64 {
    let text = s.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix("nimbus_memory_committed_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no committed memory gauge in\n{text}"))
        >> 20
}

/// Whether this process (and so the server it starts) may lower an
/// `oom_score_adj`: CAP_SYS_RESOURCE (bit 24) among its effective capabilities.
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With a 512 MB budget, two 256 MB instances run and a third call, which
/// would need a third instance, is refused with 429 once its queue wait is
/// over; the memory comes back when the instances are reaped.
#[test]
fn a_start_beyond_the_memory_budget_is_refused() {
    let s = Server::start_with(&[
        "--dev",
        "--memory-budget",
        "512m",
        "--queue-wait",
        "300ms",
        "--keep-alive",
        "1s",
        "--spare-instances",
        "0",
    ]);
    deploy_py(&s, "big", SLEEPER, json!({"memory_mb": 256}));
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| s.invoke_raw("big", r#"{"s": 2}"#, false).status))
            .collect();
        wait_for("two instances", Duration::from_secs(10), || {
            committed_mb(&s) == 512
        });
        let third = s.invoke_raw("big", r#"{"s": 0}"#, false);
        assert_eq!(
            third.status,
            429,
            "{}",
            String::from_utf8_lossy(&third.body)
        );
        let body = String::from_utf8_lossy(&third.body);
        assert!(body.contains("memory budget of 512 MB"), "{body}");
        // The Lambda API says it its own way (--dev: unsigned requests).
        let lambda = reqwest::blocking::Client::new()
            .post(format!("{}/2015-03-31/functions/big/invocations", s.url))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(lambda.status().as_u16(), 429);
        assert_eq!(
            lambda.headers()["x-amzn-errortype"],
            "TooManyRequestsException"
        );
        let body = lambda.text().unwrap();
        assert!(body.contains("ConcurrentInvocationLimitExceeded"), "{body}");
        for r in running {
            assert_eq!(r.join().unwrap(), 200);
        }
    });
    assert_eq!(committed_mb(&s), 512, "idle instances keep their memory");
    // A warm instance needs no more memory.
    assert_eq!(s.invoke_raw("big", "{}", false).status, 200);
    // Reaped after --keep-alive: the budget is free again.
    wait_for("the reaper", Duration::from_secs(10), || {
        committed_mb(&s) == 0
    });
}

/// With a longer queue wait the third call waits for a running instance and
/// runs on it; idle instances of another function are evicted to make room
/// for a start instead of refusing it. Instances are the OOM killer's first
/// choice, the server its last.
#[test]
fn a_start_beyond_the_budget_waits_or_evicts_idle_instances() {
    let s = Server::start_with(&[
        "--memory-budget",
        "512m",
        "--queue-wait",
        "10s",
        "--spare-instances",
        "0",
    ]);
    deploy_py(&s, "big", SLEEPER, json!({"memory_mb": 256}));
    deploy_py(&s, "huge", SLEEPER, json!({"memory_mb": 512}));
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| s.invoke_raw("big", r#"{"s": 1}"#, false).status))
            .collect();
        wait_for("two instances", Duration::from_secs(10), || {
            committed_mb(&s) == 512
        });
        let t = Instant::now();
        let third = s.invoke_raw("big", "{}", false);
        assert_eq!(
            third.status,
            200,
            "{}",
            String::from_utf8_lossy(&third.body)
        );
        assert!(
            third.header("x-nimbus-cold-start").as_deref() == Some("false"),
            "ran on a released instance"
        );
        assert!(t.elapsed() > Duration::from_millis(300), "it waited");
        for r in running {
            assert_eq!(r.join().unwrap(), 200);
        }
    });

    if server_is_root() {
        let adj = |pid: u32| -> i32 {
            std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        if has_cap_sys_resource() {
            assert_eq!(adj(s.pid()), -900, "the server protects itself");
        } else {
            // Root without CAP_SYS_RESOURCE (some containers) cannot lower
            // a score: the server says so.
            assert!(
                s.server_log()
                    .contains("cannot set the server's oom_score_adj to -900"),
                "{}",
                s.server_log()
            );
        }
        let pids = host_pids_of("big");
        assert!(!pids.is_empty());
        for pid in pids {
            assert!(adj(pid) > 0, "instance process {pid}: {}", adj(pid));
        }
    }

    // A function larger than the whole budget is refused at once.
    deploy_py(&s, "too-big", SLEEPER, json!({"memory_mb": 1024}));
    let t = Instant::now();
    let r = s.invoke_raw("too-big", "{}", false);
    assert_eq!(r.status, 429);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "not after the queue wait"
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("needs 1024 MB, more than the server's whole memory budget of 512 MB"),
        "{body}"
    );

    // Both idle 256 MB instances make way for one of 512 MB.
    assert_eq!(committed_mb(&s), 512);
    let t = Instant::now();
    let r = s.invoke_raw("huge", "{}", false);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < Duration::from_secs(5), "evicted, not waited");
    assert_eq!(committed_mb(&s), 512);
    wait_for(
        "the evicted instances to exit",
        Duration::from_secs(5),
        || host_pids_of("big").is_empty() || !server_is_root(),
    );
}
