//! Asynchronous invocations: retries with the documented backoff (`delay`,
//! then `2·delay`), dead letters after the last attempt, and the maximum
//! event age. On the real clock: the queue times retries on the wall clock.

use std::time::Duration;

use nimbus_core::EventInvokeConfig;
use nimbus_store::QueuedEvent;
use nimbus_testkit::{Options, Reply, Script, TestEngine, function_name, wait_until};

const RETRY_DELAY: Duration = Duration::from_millis(100);

async fn engine() -> TestEngine {
    TestEngine::start(Options {
        retry_delay: RETRY_DELAY,
        ..Options::default()
    })
    .await
}

async fn set_retries(e: &TestEngine, function: &str, config: EventInvokeConfig) {
    e.control
        .set_event_invoke_config(&function_name(function), Some(config))
        .await
        .unwrap();
}

/// An engine where every invocation of `f` fails with `Boom`, retried
/// `max_retry_attempts` times.
async fn always_failing(max_retry_attempts: u32) -> TestEngine {
    let e = engine().await;
    e.factory.script("f", Script::default().fails("Boom"));
    e.deploy("f").await;
    set_retries(
        &e,
        "f",
        EventInvokeConfig {
            max_retry_attempts,
            ..EventInvokeConfig::default()
        },
    )
    .await;
    e
}

async fn dead_letters(e: &TestEngine, function: &str) -> Vec<QueuedEvent> {
    e.events.dead_letters(Some(function)).await.unwrap()
}

/// Waits (up to 10 s) until `f` has exactly one dead letter.
async fn wait_for_dead_letter(e: &TestEngine) {
    let one = async || dead_letters(e, "f").await.len() == 1;
    assert!(
        wait_until(Duration::from_secs(10), one).await,
        "no dead letter"
    );
}

#[tokio::test]
async fn a_failing_event_is_retried_with_backoff_then_dead_lettered() {
    let e = always_failing(2).await;

    let request_id = e.submit("f", r#"{"n":1}"#).await;
    wait_for_dead_letter(&e).await;
    let calls = e.factory.calls("f");
    assert_eq!(calls.len(), 3, "the first attempt and two retries");
    assert!(
        calls.iter().all(|c| c.request_id == request_id),
        "one request id for every attempt"
    );
    let delay = RETRY_DELAY.as_millis() as i64;
    let gaps = [
        calls[1].wall_ms - calls[0].wall_ms,
        calls[2].wall_ms - calls[1].wall_ms,
    ];
    assert!(
        gaps[0] >= delay,
        "first retry after {}ms, before {delay}ms",
        gaps[0]
    );
    assert!(
        gaps[1] >= 2 * delay,
        "second retry after {}ms, before {}ms",
        gaps[1],
        2 * delay
    );
    // The worker wakes for the due time (it polls at most a second apart).
    assert!(
        gaps[1] < 2 * delay + 1_500,
        "second retry late: {}ms",
        gaps[1]
    );

    let dead = dead_letters(&e, "f").await;
    assert_eq!(dead[0].request_id, request_id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error.as_deref(), Some("Boom"));
    assert_eq!(dead[0].payload, br#"{"n":1}"#);

    // Nothing more happens to it.
    tokio::time::sleep(4 * RETRY_DELAY).await;
    assert_eq!(e.factory.counts("f").invocations, 3);
}

#[tokio::test]
async fn an_event_that_succeeds_on_a_retry_is_not_dead_lettered() {
    let e = engine().await;
    e.factory.script(
        "f",
        Script::default().reply(|n| {
            if n == 1 {
                Reply::Error("Flaky".into())
            } else {
                Reply::Ok(bytes::Bytes::from_static(b"\"done\""))
            }
        }),
    );
    e.deploy("f").await;

    e.submit("f", "{}").await;
    assert!(
        e.wait_for_invocations("f", 2, Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(4 * RETRY_DELAY).await;
    assert_eq!(
        e.factory.counts("f").invocations,
        2,
        "no retry after the success"
    );
    assert!(dead_letters(&e, "f").await.is_empty());
    let (depth, _) = e.events.queue_stats().await;
    assert_eq!(depth, 0, "the event is done");
}

#[tokio::test]
async fn without_retries_a_failure_is_dead_lettered_at_once() {
    let e = always_failing(0).await;
    e.submit("f", "{}").await;
    wait_for_dead_letter(&e).await;
    assert_eq!(e.factory.counts("f").invocations, 1);
    assert_eq!(dead_letters(&e, "f").await[0].attempts, 1);
}

#[tokio::test]
async fn an_event_older_than_the_maximum_age_is_given_up_unrun() {
    let e = engine().await;
    e.deploy("f").await;
    set_retries(
        &e,
        "f",
        EventInvokeConfig {
            max_event_age_s: 60,
            ..EventInvokeConfig::default()
        },
    )
    .await;
    // Queued 61 s ago (as if it had waited behind a backlog since).
    let now = chrono::Utc::now().timestamp_millis();
    e.stores
        .invocations
        .enqueue(&QueuedEvent {
            id: "old-event".into(),
            request_id: "old-request".into(),
            function: "f".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            enqueued_ms: now - 61_000,
            attempts: 0,
            error: None,
            failed_at_ms: None,
            creator: None,
            trace: None,
        })
        .await
        .unwrap();
    // And one queued now, which runs.
    e.submit("f", "{}").await;

    wait_for_dead_letter(&e).await;
    let dead = dead_letters(&e, "f").await;
    assert_eq!(dead[0].request_id, "old-request");
    assert_eq!(dead[0].error.as_deref(), Some("event too old"));
    assert!(
        e.wait_for_invocations("f", 1, Duration::from_secs(10))
            .await
    );
    let calls = e.factory.calls("f");
    assert_ne!(
        calls[0].request_id, "old-request",
        "the old event never ran"
    );
}
