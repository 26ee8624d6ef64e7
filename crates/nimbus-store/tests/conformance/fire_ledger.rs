//! `FireLedger`: a schedule's fire is enqueued once and never for an earlier
//! time. The store under test is the ledger with the queue it enqueues into.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{FireLedger, InvocationQueue, PgEventQueue, SqliteEventQueue};

use crate::invocation_queue::{event, lease};

struct Pair {
    queue: Arc<dyn InvocationQueue>,
    fires: Arc<dyn FireLedger>,
}

async fn open_sqlite() -> (Pair, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(SqliteEventQueue::open(&dir.path().join("events.db")).unwrap());
    (
        Pair {
            queue: q.clone(),
            fires: q,
        },
        dir,
    )
}

async fn open_pg() -> (Pair, ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    let q = Arc::new(PgEventQueue::open(&pg).await.unwrap());
    (
        Pair {
            queue: q.clone(),
            fires: q,
        },
        db,
    )
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_fire_is_enqueued_once_and_never_for_an_earlier_time,
    marks_move_forward_only,
    marks_and_enqueues_share_one_record,
    a_refused_enqueue_records_no_fire,
    racing_fires_of_one_time_enqueue_once,
));

async fn a_fire_is_enqueued_once_and_never_for_an_earlier_time(s: Pair) {
    let once = |id: &'static str, source: &'static str, at: i64| {
        let fires = s.fires.clone();
        async move { fires.enqueue_once(&event(id), source, at).await.unwrap() }
    };
    assert!(once("f1", "schedule/s/1", 60_000).await);
    assert!(
        !once("f2", "schedule/s/1", 60_000).await,
        "the same fire again (after a crash) is not enqueued twice"
    );
    assert!(!once("f3", "schedule/s/1", 30_000).await);
    assert!(once("f4", "schedule/s/1", 120_000).await);
    assert!(once("g1", "schedule/other/1", 60_000).await);
    assert_eq!(
        s.fires.last_fired("schedule/s/1").await.unwrap(),
        Some(120_000)
    );
    assert_eq!(s.fires.last_fired("schedule/none/1").await.unwrap(), None);
    let mut ids: Vec<String> = s
        .queue
        .claim(1000, 10, lease(500))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["f1", "f4", "g1"],
        "the fires' events are in the queue"
    );
}

async fn marks_move_forward_only(s: Pair) {
    assert!(s.fires.mark_fired("src", 1000).await.unwrap());
    assert!(!s.fires.mark_fired("src", 1000).await.unwrap());
    assert!(!s.fires.mark_fired("src", 500).await.unwrap());
    assert_eq!(s.fires.last_fired("src").await.unwrap(), Some(1000));
    assert!(s.fires.mark_fired("src", 2000).await.unwrap());
    assert_eq!(s.fires.last_fired("src").await.unwrap(), Some(2000));
    assert_eq!(
        s.queue.stats().await.unwrap().0,
        0,
        "a mark enqueues nothing"
    );
}

async fn marks_and_enqueues_share_one_record(s: Pair) {
    assert!(s.fires.mark_fired("src", 5000).await.unwrap());
    assert!(
        !s.fires
            .enqueue_once(&event("e"), "src", 4000)
            .await
            .unwrap(),
        "marked later than this fire"
    );
    assert!(
        s.fires
            .enqueue_once(&event("e"), "src", 6000)
            .await
            .unwrap()
    );
    assert!(!s.fires.mark_fired("src", 6000).await.unwrap());
}

async fn a_refused_enqueue_records_no_fire(s: Pair) {
    s.queue.enqueue(&event("taken")).await.unwrap();
    // The event cannot be stored (its id is taken): neither is the fire.
    assert!(
        s.fires
            .enqueue_once(&event("taken"), "src", 1000)
            .await
            .is_err()
    );
    assert_eq!(s.fires.last_fired("src").await.unwrap(), None);
}

async fn racing_fires_of_one_time_enqueue_once(s: Pair) {
    // Every node's armer fires the schedule at the same time.
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let fires = s.fires.clone();
            tokio::spawn(async move {
                fires
                    .enqueue_once(&event(&format!("fire-{n}")), "schedule/s/1", 60_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut enqueued = 0;
    for t in tasks {
        enqueued += usize::from(t.await.unwrap());
    }
    assert_eq!(enqueued, 1, "one fire, one event");
    assert_eq!(s.queue.stats().await.unwrap().0, 1);
}
