//! Logs: function output and Lambda-style START/END/REPORT lines, stored and queryable.

use serde_json::{Value, json};

use crate::harness::*;

fn field(report: &str, name: &str) -> Option<String> {
    report
        .split('\t')
        .find_map(|f| f.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// An invocation that writes nothing stores its START with END and REPORT
/// (one row instead of three); it still reads back as the three lines, in
/// order, each with the request id, between the lines of its neighbours.
#[test]
fn a_silent_invocation_still_has_start_end_and_report() {
    let s = Server::start();
    deploy_py(
        &s,
        "quiet",
        "def handler(e, c):\n    if e.get('say'):\n        print(e['say'])\n    return 1\n",
        json!({}),
    );
    let ids: Vec<String> = [json!({}), json!({"say": "between"}), json!({})]
        .iter()
        .map(|e| s.invoke("quiet", e).request_id())
        .collect();
    let events = s.logs_until("quiet", |ev| {
        lines_of(ev)
            .iter()
            .filter(|l| l.starts_with("REPORT"))
            .count()
            == 3
    });
    let lines = lines_of(&events);
    let pos = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} not in {lines:#?}"))
    };
    let mut last = 0;
    for (i, id) in ids.iter().enumerate() {
        let order = [
            pos(&format!("START RequestId: {id} ")),
            pos(&format!("END RequestId: {id}")),
            pos(&format!("REPORT RequestId: {id}\t")),
        ];
        assert!(
            last <= order[0] && order[0] < order[1] && order[1] < order[2],
            "invocation {i}: {lines:#?}"
        );
        last = order[2];
        for p in order {
            assert_eq!(events[p]["request_id"], json!(id), "{}", events[p]);
        }
    }
    let said = pos("between");
    assert!(pos(&format!("START RequestId: {} ", ids[1])) < said);
    assert!(said < pos(&format!("END RequestId: {}", ids[1])));
}

#[test]
fn start_end_report_lines_with_lambda_fields() {
    let s = Server::start();
    deploy_py(
        &s,
        "logged",
        "print('init line')\ndef handler(e, c):\n    print('in handler', e['n'])\n    return 1\n",
        json!({"memory_mb": 256}),
    );
    let cold = s.invoke("logged", &json!({"n": 1}));
    let warm = s.invoke("logged", &json!({"n": 2}));
    let (cid, wid) = (cold.request_id(), warm.request_id());
    let events = s.logs_until("logged", |ev| {
        lines_of(ev)
            .iter()
            .filter(|l| l.starts_with("REPORT"))
            .count()
            == 2
    });
    let lines = lines_of(&events);
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l == needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {lines:#?}"))
    };
    assert!(pos(&format!("START RequestId: {cid} Version: $LATEST")) < pos("in handler 1"));
    assert!(pos("in handler 1") < pos(&format!("END RequestId: {cid}")));
    assert!(pos(&format!("END RequestId: {wid}")) > pos("in handler 2"));
    assert!(lines.iter().any(|l| l == "init line"));

    let report = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("REPORT RequestId: {id}\t")))
            .unwrap()
            .clone()
    };
    let cold_report = report(&cid);
    let warm_report = report(&wid);
    assert!(cold_report.ends_with('\t'), "REPORT ends with a tab");
    let duration: f64 = field(&cold_report, "Duration")
        .unwrap()
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    let billed: f64 = field(&cold_report, "Billed Duration")
        .unwrap()
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(
        billed >= duration && billed < duration + 1.0,
        "{cold_report}"
    );
    assert_eq!(field(&cold_report, "Memory Size").unwrap(), "256 MB");
    let used: u64 = field(&cold_report, "Max Memory Used")
        .unwrap()
        .trim_end_matches(" MB")
        .parse()
        .unwrap();
    assert!(used > 0 && used < 256, "{cold_report}");
    assert!(
        field(&cold_report, "Init Duration").is_some(),
        "cold start has Init Duration: {cold_report}"
    );
    assert!(
        field(&warm_report, "Init Duration").is_none(),
        "warm call has none: {warm_report}"
    );

    // Every line of an invocation carries its request id and instance.
    let in_handler = events
        .iter()
        .find(|e| e["message"] == "in handler 2")
        .unwrap();
    assert_eq!(in_handler["request_id"], wid.as_str());
    assert!(in_handler["instance"].as_str().unwrap().len() >= 16);

    // Filter by request id.
    let (_, v) = s.get(&format!("/v1/functions/logged/logs?request_id={wid}"));
    let only = lines_of(v["events"].as_array().unwrap());
    assert!(
        only.iter().all(|l| !l.contains("in handler 1"))
            && only.iter().any(|l| l == "in handler 2"),
        "{only:?}"
    );

    // The tail returned with the call is this invocation's log.
    let tail = warm.log_tail();
    assert!(
        tail.starts_with(&format!("START RequestId: {wid}")),
        "{tail}"
    );
    assert!(
        tail.contains("in handler 2") && !tail.contains("in handler 1"),
        "{tail}"
    );
}

#[test]
fn log_cursor_and_since() {
    let s = Server::start();
    deploy_py(
        &s,
        "cursor",
        "def handler(e, c):\n    print('n', e['n'])\n",
        json!({}),
    );
    s.invoke("cursor", &json!({"n": 1}));
    let first = s.logs_until("cursor", |ev| ev.len() >= 4);
    let last_id = first.last().unwrap()["id"].as_i64().unwrap();
    s.invoke("cursor", &json!({"n": 2}));
    let after = s.logs_until("cursor", |ev| ev.len() >= 8);
    assert!(after.len() >= 8);
    let (_, v) = s.get(&format!("/v1/functions/cursor/logs?after_id={last_id}"));
    let newer = lines_of(v["events"].as_array().unwrap());
    assert!(
        newer.iter().any(|l| l == "n 2") && !newer.iter().any(|l| l == "n 1"),
        "{newer:?}"
    );
    let future = chrono_like_now_ms() + 60_000;
    let (_, v) = s.get(&format!("/v1/functions/cursor/logs?since_ms={future}"));
    assert!(v["events"].as_array().unwrap().is_empty());
    let (status, _) = s.get("/v1/functions/missing/logs");
    assert_eq!(status, 404);
    // At most 10,000 lines a page, said plainly (L6).
    let (status, v) = s.get("/v1/functions/cursor/logs?limit=10001");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit must be at most 10000 lines"),
        "{v}"
    );
}

fn chrono_like_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sum of the sizes of `logs.db` and its WAL.
fn log_db_bytes(s: &Server) -> u64 {
    ["logs.db", "logs.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(s.data_dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

/// Peak resident memory of a process (kB), from /proc.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// The value of a Prometheus sample, if present.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// Two functions printing 256 KB lines as fast as they can for a few seconds
/// (test item 61, scaled down by small quotas): each keeps only its own quota
/// of lines, its logs open with the notice saying how many were dropped, the
/// log database stays within the quotas plus a stated slack, the server's
/// memory does not follow the flood, what the queue dropped is counted in
/// /metrics, and a quiet function's earlier lines all survive.
#[test]
fn a_log_flood_costs_only_the_flooding_function() {
    const FUNCTION_QUOTA: u64 = 2 << 20;
    const TOTAL_QUOTA: u64 = 3 << 20;
    let s = Server::start_with(&[
        "--log-function-bytes",
        "2m",
        "--log-total-bytes",
        "3m",
        "--log-queue-bytes",
        "4m",
    ]);
    deploy_py(
        &s,
        "quiet",
        "def handler(e, c):\n    for i in range(50):\n        print('quiet', i)\n    return 1\n",
        json!({}),
    );
    let quiet_id = s.invoke("quiet", &json!({})).request_id();
    let quiet_lines = |events: &[Value]| {
        lines_of(events)
            .iter()
            .filter(|l| l.starts_with("quiet "))
            .count()
    };
    assert_eq!(
        quiet_lines(&s.logs_until("quiet", |ev| quiet_lines(ev) == 50)),
        50
    );
    let flood = "import sys\nLINE = 'y' * (256 * 1024 - 1) + '\\n'\ndef handler(e, c):\n    for _ in range(40):\n        sys.stdout.write(LINE)\n    sys.stdout.flush()\n    return 1\n";
    for f in ["flood-a", "flood-b"] {
        deploy_py(&s, f, flood, json!({}));
        s.invoke(f, &json!({}));
    }
    let rss_before = peak_rss_kb(s.pid());

    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let calls = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let f = if i % 2 == 0 { "flood-a" } else { "flood-b" };
                    let mut n = 0;
                    while std::time::Instant::now() < until {
                        assert_eq!(s.invoke_raw(f, "{}", false).status, 200);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    // Each call printed 10 MB (8 MB of it kept per invocation).
    eprintln!("{calls} flood calls");
    assert!(calls >= 4, "{calls}");

    let rss_after = peak_rss_kb(s.pid());
    assert!(
        rss_after < rss_before + 128 * 1024,
        "server peak RSS grew from {rss_before} kB to {rss_after} kB"
    );
    // Quotas are enforced after every eighth of the smaller one written, on
    // batches of at most the queue (4 MB); the WAL keeps up to 16 MB after a
    // checkpoint. Stated slack: 24 MB over the total quota, against the
    // hundreds of MB the flood printed.
    let on_disk = log_db_bytes(&s);
    eprintln!(
        "peak RSS {rss_before} kB before, {rss_after} kB after; logs.db + WAL {on_disk} bytes"
    );
    assert!(
        on_disk < TOTAL_QUOTA + (24 << 20),
        "logs.db and its WAL take {on_disk} bytes"
    );
    assert!(
        std::fs::metadata(s.data_dir.join("nimbus.db"))
            .unwrap()
            .len()
            < 1 << 20,
        "no logs in the metadata database"
    );

    // The quiet function lost nothing, in order, with its frame.
    let quiet = s.logs_until("quiet", |_| true);
    let lines = lines_of(&quiet);
    let numbered: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("quiet "))
        .cloned()
        .collect();
    assert_eq!(
        numbered,
        (0..50).map(|i| format!("quiet {i}")).collect::<Vec<_>>()
    );
    assert!(
        lines[0].starts_with(&format!("START RequestId: {quiet_id}")),
        "{lines:?}"
    );

    for f in ["flood-a", "flood-b"] {
        // Oldest first: the notice stands where the dropped lines were.
        let (status, v) = s.get(&format!("/v1/functions/{f}/logs?after_id=0&limit=2"));
        assert_eq!(status, 200);
        let first = v["events"][0]["message"].as_str().unwrap().to_string();
        assert!(
            first.starts_with("nimbus: ")
                && first.contains(" older log lines of this function were dropped to stay within "),
            "{f} starts with {first:.200}"
        );
        let dropped: u64 = first["nimbus: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(dropped > 0, "{first}");
        // What is kept fits the function's quota (plus one pass's worth).
        let (_, v) = s.get(&format!("/v1/functions/{f}/logs?limit=10000"));
        let kept: u64 = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().len() as u64)
            .sum();
        assert!(
            kept <= FUNCTION_QUOTA + FUNCTION_QUOTA / 8 + (4 << 20),
            "{f} keeps {kept} bytes"
        );
    }

    let text = s.metrics_text();
    let dropped = metric(
        &text,
        "nimbus_log_lines_dropped_total{function=\"flood-a\"}",
    )
    .unwrap_or_else(|| panic!("no drop counter for flood-a in\n{text}"));
    assert!(dropped > 0.0);
    assert_eq!(
        metric(&text, "nimbus_log_lines_dropped_total{function=\"quiet\"}"),
        None,
        "the quiet function lost nothing"
    );
}

/// A function printing more one-byte lines than an invocation may (test
/// item 62, scaled to 300,000 a call): the per-invocation budget cuts it off with a notice,
/// and every invocation's START comes first and its END and REPORT last.
#[test]
fn a_flood_of_tiny_lines_keeps_start_and_end_in_order() {
    let s = Server::start();
    deploy_py(
        &s,
        "tiny",
        "import sys\ndef handler(e, c):\n    sys.stdout.write('x\\n' * 300_000)\n    sys.stdout.flush()\n    return 1\n",
        json!({"timeout_s": 30}),
    );
    let mut last_end = 0;
    for _ in 0..2 {
        let id = s.invoke("tiny", &json!({})).request_id();
        // Newest first: the invocation ends with END and REPORT.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tail = loop {
            let (_, v) = s.get(&format!("/v1/functions/tiny/logs?request_id={id}&limit=2"));
            let ev = v["events"].as_array().unwrap().clone();
            if lines_of(&ev)
                .last()
                .is_some_and(|l| l.starts_with("REPORT"))
                || std::time::Instant::now() > deadline
            {
                break ev;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let tail_lines = lines_of(&tail);
        assert!(
            tail_lines[0].starts_with("[nimbus] output exceeded 8 MB"),
            "{tail_lines:?}"
        );
        assert_eq!(tail_lines[1], format!("END RequestId: {id}"));
        assert!(tail_lines[2].starts_with(&format!("REPORT RequestId: {id}\t")));
        // Oldest first: START, after everything of the invocation before.
        let (_, v) = s.get(&format!(
            "/v1/functions/tiny/logs?request_id={id}&after_id={last_end}&limit=1"
        ));
        let first = &v["events"][0];
        assert!(
            first["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("START RequestId: {id}")),
            "{first}"
        );
        // Only this function writes, so the ids between its START and its END
        // count the lines it kept: 8 MB at 65 bytes a line, plus the notice.
        let start_id = first["id"].as_i64().unwrap();
        let end_id = tail[1]["id"].as_i64().unwrap();
        let count = (end_id - start_id - 1) as usize;
        assert!(count <= 8 * 1024 * 1024 / 65 + 1, "{count} lines");
        assert!(count > 100_000, "{count} lines");
        last_end = end_id;
    }
}

/// Below the free-space floor (here: one no disk can have), function output
/// is dropped and counted instead of written, and the platform keeps working:
/// calls answer and a deploy still succeeds.
#[test]
fn below_the_disk_floor_output_is_dropped_and_deploys_still_work() {
    let s = Server::start_with(&["--log-min-free-disk", "1000000t"]);
    deploy_py(
        &s,
        "talker",
        "def handler(e, c):\n    print('x' * 1000)\n    return 'ok'\n",
        json!({}),
    );
    for _ in 0..5 {
        assert_eq!(s.invoke("talker", &json!({})).json(), json!("ok"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let dropped = loop {
        let n = metric(
            &s.metrics_text(),
            "nimbus_log_lines_dropped_low_disk_total ",
        )
        .unwrap_or(0.0);
        // At least the printed line, END and REPORT of each call.
        if n >= 15.0 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(dropped >= 15.0, "{dropped}");
    let (st, body) = s.get("/v1/functions/talker/logs");
    assert_eq!(st, 200, "{body}");
    assert!(!body.to_string().contains("xxxxxxxx"), "{body}");
    // Metadata writes are not logs: a second deploy works.
    deploy_py(&s, "other", "def handler(e, c):\n    return 2\n", json!({}));
    assert_eq!(s.invoke("other", &json!({})).json(), json!(2));
}
