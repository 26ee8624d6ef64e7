//! Logs: function output and Lambda-style START/END/REPORT lines, stored and queryable.

use serde_json::json;

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
}

fn chrono_like_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
