//! Schedules on the engine's test clock (`Schedules::advance_clock`): a rate
//! fires once per period, and missed fires follow the schedule's policy when
//! the runner starts again after downtime.

use std::time::Duration;

use nimbus_core::schedule::MissedFires;
use nimbus_testkit::{Options, TestEngine};

/// Long enough for a fire that is due to reach the function; a fire that is
/// not due must not happen in it either.
const SETTLE: Duration = Duration::from_millis(300);

async fn invocations_settle_at(e: &TestEngine, n: u64) {
    assert!(
        e.wait_for_invocations("f", n, Duration::from_secs(5)).await,
        "expected {n} fires, got {}",
        e.factory.counts("f").invocations
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(e.factory.counts("f").invocations, n, "one fire per period");
}

#[tokio::test]
async fn a_rate_schedule_fires_once_per_period() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.schedules
        .put(
            TestEngine::schedule("tick", "rate(1 minute)", "f", MissedFires::Skip),
            true,
        )
        .await
        .unwrap();

    e.schedules.advance_clock(Duration::from_secs(50)).unwrap();
    tokio::time::sleep(SETTLE).await;
    assert_eq!(e.factory.counts("f").invocations, 0, "not due yet");

    e.schedules.advance_clock(Duration::from_secs(10)).unwrap();
    invocations_settle_at(&e, 1).await;

    e.schedules.advance_clock(Duration::from_secs(60)).unwrap();
    invocations_settle_at(&e, 2).await;

    // The EventBridge envelope names the schedule's time.
    let payload: serde_json::Value =
        serde_json::from_slice(&e.factory.calls("f")[0].payload).unwrap();
    assert_eq!(payload["detail-type"], "Scheduled Event", "{payload}");
}

/// Fires once at 1 minute, then "restarts" the runner as if the server had
/// been down for five more minutes.
async fn down_for_five_minutes(missed: MissedFires) -> TestEngine {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.schedules
        .put(
            TestEngine::schedule("tick", "rate(1 minute)", "f", missed),
            true,
        )
        .await
        .unwrap();
    e.schedules.advance_clock(Duration::from_secs(60)).unwrap();
    invocations_settle_at(&e, 1).await;
    e.restart_schedules(Duration::from_secs(60 + 300)).await;
    e
}

#[tokio::test]
async fn missed_fires_are_skipped_by_default() {
    let e = down_for_five_minutes(MissedFires::Skip).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        e.factory.counts("f").invocations,
        1,
        "five missed fires, none run"
    );
}

#[tokio::test]
async fn catch_up_once_runs_one_missed_fire() {
    let e = down_for_five_minutes(MissedFires::CatchUpOnce).await;
    invocations_settle_at(&e, 2).await;
}
