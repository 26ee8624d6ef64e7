//! The scheduler: cold starts, limits, throttling, keep-alive, provisioned
//! instances, and what happens to instances that crash or fail to start.

use std::time::Duration;

use nimbus_engine::EngineError;
use nimbus_runtime::Outcome;
use nimbus_testkit::{Options, Script, TestEngine, function_name, wait_until};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn scales_from_zero_then_reuses_the_warm_instance() {
    let e = TestEngine::start(Options::default()).await;
    e.factory
        .script("f", Script::default().init(300 * MS).latency(50 * MS));
    e.deploy("f").await;
    assert_eq!(
        e.instances("f"),
        (0, 0),
        "nothing runs before the first call"
    );

    let t0 = Instant::now();
    let first = e.invoke("f").await.unwrap();
    assert!(first.cold_start);
    assert_eq!(first.init_duration, Some(300 * MS));
    assert_eq!(t0.elapsed(), 350 * MS, "init, then the invocation");
    assert_eq!(e.instances("f"), (1, 1));

    let t1 = Instant::now();
    let second = e.invoke("f").await.unwrap();
    assert!(!second.cold_start);
    assert_eq!(second.init_duration, None);
    assert_eq!(t1.elapsed(), 50 * MS, "a warm call pays no init");
    assert_eq!(e.factory.counts("f").starts, 1);

    // Three at once: the idle instance takes one, two more start (with no
    // init now, so all three run together).
    e.factory.script("f", Script::default().latency(50 * MS));
    let (a, b, c) = tokio::join!(e.invoke("f"), e.invoke("f"), e.invoke("f"));
    let cold = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|r| r.cold_start)
        .count();
    assert_eq!(cold, 2);
    let counts = e.factory.counts("f");
    assert_eq!(counts.starts, 3);
    assert_eq!(counts.peak_running, 3);
    assert_eq!(counts.invocations, 5);
    assert_eq!(e.instances("f"), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_function_at_its_instance_limit_throttles_the_next_caller() {
    let e = TestEngine::start(Options {
        max_instances_per_function: 2,
        queue_wait: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    e.factory
        .script("f", Script::default().latency(Duration::from_secs(10)));
    e.deploy("f").await;

    let (a, b, c) = tokio::join!(e.invoke("f"), e.invoke("f"), e.invoke("f"));
    let results = [a, b, c];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let throttled: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Err(EngineError::TooManyRequests { reason, message }) => {
                assert_eq!(*reason, nimbus_core::Throttle::InstanceLimit);
                Some(message.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ok, 2, "{results:?}");
    assert_eq!(throttled.len(), 1, "{results:?}");
    assert!(
        throttled[0].contains("limit of 2 concurrent instances"),
        "{throttled:?}"
    );
    let counts = e.factory.counts("f");
    assert_eq!(counts.starts, 2);
    assert_eq!(counts.peak_running, 2);

    // Once they are done, a call is served warm again.
    let r = e.invoke("f").await.unwrap();
    assert!(!r.cold_start);
    assert_eq!(e.factory.counts("f").starts, 2);
}

#[tokio::test(start_paused = true)]
async fn the_account_limit_throttles_across_functions() {
    let e = TestEngine::start(Options {
        account_concurrency: 2,
        queue_wait: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    for f in ["f", "g"] {
        e.factory
            .script(f, Script::default().latency(Duration::from_secs(10)));
        e.deploy(f).await;
    }
    let invoker = e.invoker.clone();
    let call = |name: &'static str| {
        let invoker = invoker.clone();
        tokio::spawn(async move {
            invoker
                .invoke(nimbus_core::InvokeRequest::new(
                    function_name(name),
                    bytes::Bytes::from_static(b"{}"),
                ))
                .await
        })
    };
    let f1 = call("f");
    let g1 = call("g");
    // Both hold their account slot before the third caller comes.
    tokio::time::sleep(10 * MS).await;
    assert_eq!(
        e.factory.counts("f").running + e.factory.counts("g").running,
        2
    );
    let third = e.invoke("f").await;
    match &third {
        Err(EngineError::TooManyRequests { reason, message }) => {
            assert_eq!(*reason, nimbus_core::Throttle::AccountConcurrency);
            assert!(
                message.contains("account concurrency limit of 2"),
                "{message}"
            )
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    assert!(f1.await.unwrap().is_ok());
    assert!(g1.await.unwrap().is_ok());
    assert_eq!(e.factory.counts("f").starts, 1);
    assert_eq!(e.factory.counts("f").invocations, 1);
}

/// On the real clock: the pools time idleness with `std::time::Instant`, which
/// a paused tokio clock does not move.
#[tokio::test]
async fn the_reaper_stops_an_instance_once_its_keep_alive_passed() {
    let keep_alive = Duration::from_secs(1);
    let e = TestEngine::start(Options {
        keep_alive,
        ..Options::default()
    })
    .await;
    e.deploy("f").await;
    // Before the call: the instance went idle after this.
    let called = std::time::Instant::now();
    e.invoke("f").await.unwrap();
    assert_eq!(e.instances("f"), (1, 1));

    tokio::time::sleep(keep_alive / 4).await;
    assert_eq!(e.instances("f"), (1, 1), "still within its keep-alive");
    assert_eq!(e.factory.counts("f").stops, 0);

    assert!(
        wait_until(Duration::from_secs(5), async || e.factory.counts("f").stops
            == 1)
        .await,
        "the reaper never stopped it"
    );
    assert!(called.elapsed() >= keep_alive, "stopped early");
    assert_eq!(e.instances("f"), (0, 0));

    // The next call starts a new instance.
    assert!(e.invoke("f").await.unwrap().cold_start);
    assert_eq!(e.factory.counts("f").starts, 2);
}

#[tokio::test(start_paused = true)]
async fn provisioned_instances_start_ahead_and_serve_warm() {
    let e = TestEngine::start(Options::default()).await;
    e.factory.script("f", Script::default().init(500 * MS));
    e.deploy("f").await;
    let name = function_name("f");
    e.control
        .publish_version(&name, None, None, None)
        .await
        .unwrap();
    e.control
        .set_provisioned(&name, "1", Some(2))
        .await
        .unwrap();

    assert!(
        wait_until(Duration::from_secs(5), async || {
            e.control.provisioned_status(&name, "1").await.unwrap() == (2, 2)
        })
        .await,
        "two provisioned instances ready"
    );
    assert_eq!(e.factory.counts("f").starts, 2);

    let t0 = Instant::now();
    let r = e.invoke("f:1").await.unwrap();
    assert!(!r.cold_start, "served by a provisioned instance");
    assert_eq!(r.init_duration, None);
    assert!(t0.elapsed() < 500 * MS, "no init on the call's path");
    assert_eq!(e.factory.counts("f").starts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_instance_is_replaced() {
    let e = TestEngine::start(Options::default()).await;
    e.factory.script("f", Script::default().crashes());
    e.deploy("f").await;

    let r = e.invoke("f").await.unwrap();
    match &r.outcome {
        Outcome::Error { error_type, .. } => assert_eq!(error_type, "Runtime.ExitError"),
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_eq!(e.instances("f"), (0, 0), "a crashed instance is not kept");
    assert!(
        wait_until(Duration::from_secs(1), async || e.factory.counts("f").stops
            == 1)
        .await
    );

    e.factory.script("f", Script::default());
    let again = e.invoke("f").await.unwrap();
    assert!(again.cold_start);
    assert!(matches!(again.outcome, Outcome::Success { .. }));
    assert_eq!(e.factory.counts("f").starts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_or_init_leaves_no_instance() {
    let e = TestEngine::start(Options::default()).await;
    e.factory.script("f", Script::default().start_fails());
    e.deploy("f").await;
    match e.invoke("f").await {
        Err(EngineError::InstanceStart(why)) => {
            assert!(why.contains("scripted start failure"), "{why}")
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    assert_eq!(e.factory.counts("f").failed_starts, 1);
    assert_eq!(e.instances("f"), (0, 0));

    e.factory.script("f", Script::default().init_fails());
    let r = e.invoke("f").await.unwrap();
    match &r.outcome {
        Outcome::Error { error_type, .. } => assert_eq!(error_type, "Runtime.InitError"),
        other => panic!("expected an init error, got {other:?}"),
    }
    assert_eq!(e.instances("f"), (0, 0));
    assert_eq!(
        e.factory.counts("f").invocations,
        0,
        "the handler never ran"
    );
}
