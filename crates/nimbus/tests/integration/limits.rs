//! The asynchronous path's fair shares (review M7): a function whose events
//! all run to their timeout holds at most a quarter of the async workers (or
//! its reserved concurrency), so another function's event does not wait for
//! those timeouts.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, deploy_py, lines_of};

fn event(s: &Server, function: &str, payload: &serde_json::Value) {
    let r = s
        .http
        .post(format!(
            "{}/v1/functions/{function}/invoke?type=event",
            s.url
        ))
        .body(payload.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
}

#[test]
fn a_function_running_to_its_timeout_cannot_take_every_async_worker() {
    let s = Server::start_with(&["--async-workers", "4", "--shutdown-grace", "1s"]);
    deploy_py(
        &s,
        "hog",
        "import time\ndef handler(e, c):\n    time.sleep(60)\n",
        json!({"timeout_s": 4}),
    );
    deploy_py(
        &s,
        "quick",
        "def handler(e, c):\n    print('quick done', flush=True)\n",
        json!({}),
    );
    // Warm "quick" so its event does not pay a cold start under load.
    s.invoke("quick", &json!({}));
    for n in 0..8 {
        event(&s, "hog", &json!({ "n": n }));
    }
    // Let the workers claim the hog's events.
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    event(&s, "quick", &json!({}));
    let logs = s.logs_until("quick", |events| {
        lines_of(events)
            .iter()
            .filter(|l| l.contains("quick done"))
            .count()
            >= 2
    });
    let waited = sent.elapsed();
    let done = lines_of(&logs)
        .iter()
        .filter(|l| l.contains("quick done"))
        .count();
    assert_eq!(done, 2, "the async event ran");
    // Without shares the hog held all 4 workers until its 4 s timeout.
    assert!(
        waited < Duration::from_millis(2500),
        "the event waited {waited:?} behind the hog"
    );
    eprintln!("another function's event ran {waited:?} after it was sent");
}
