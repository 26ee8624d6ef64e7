//! `DeadLetters`: the events an `InvocationQueue` gave up on, listed and
//! replayed. The store under test is the pair a backend opens together.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{DeadLetters, InvocationQueue, PgEventQueue, SqliteEventQueue};

use crate::invocation_queue::{event, event_of, lease};

struct Pair {
    queue: Arc<dyn InvocationQueue>,
    dead: Arc<dyn DeadLetters>,
}

async fn open_sqlite() -> (Pair, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(SqliteEventQueue::open(&dir.path().join("events.db")).unwrap());
    (
        Pair {
            queue: q.clone(),
            dead: q,
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
            dead: q,
        },
        db,
    )
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    given_up_events_are_listed_oldest_failure_first,
    replay_puts_an_event_back_with_attempts_reset,
    replay_finds_only_dead_events,
));

async fn given_up_events_are_listed_oldest_failure_first(s: Pair) {
    assert!(s.dead.list(None).await.unwrap().is_empty());
    for (f, id) in [("f", "a"), ("g", "b"), ("f", "c")] {
        s.queue.enqueue(&event_of(f, id)).await.unwrap();
    }
    s.queue.claim(1000, 10, lease(500)).await.unwrap();
    s.queue.dead("c", 2000, 3, "boom c").await.unwrap();
    s.queue.dead("a", 3000, 2, "boom a").await.unwrap();
    s.queue.dead("b", 2500, 1, "boom b").await.unwrap();
    let all: Vec<String> = s
        .dead
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all, ["c", "b", "a"]);
    let of_f = s.dead.list(Some("f")).await.unwrap();
    assert_eq!(of_f.len(), 2);
    let a = &of_f[1];
    assert_eq!(a.id, "a");
    assert_eq!(a.attempts, 2);
    assert_eq!(a.error.as_deref(), Some("boom a"));
    assert_eq!(a.failed_at_ms, Some(3000));
    assert_eq!(a.payload, event("a").payload);
    assert_eq!(a.trace, event("a").trace);
    assert!(s.dead.list(Some("none")).await.unwrap().is_empty());
}

async fn replay_puts_an_event_back_with_attempts_reset(s: Pair) {
    s.queue.enqueue(&event("a")).await.unwrap();
    s.queue.claim(1000, 10, lease(500)).await.unwrap();
    s.queue.dead("a", 1200, 3, "boom").await.unwrap();
    assert!(s.dead.replay("a", 7000).await.unwrap());
    assert!(s.dead.list(None).await.unwrap().is_empty());
    assert_eq!(s.queue.next_due().await.unwrap(), Some(7000));
    assert_eq!(s.queue.stats().await.unwrap(), (1, Some(7000)));
    let again = s.queue.claim(7000, 10, lease(500)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    assert_eq!(again[0].enqueued_ms, 7000);
    assert_eq!(again[0].failed_at_ms, None);
}

async fn replay_finds_only_dead_events(s: Pair) {
    assert!(!s.dead.replay("missing", 1000).await.unwrap());
    s.queue.enqueue(&event("ready")).await.unwrap();
    assert!(
        !s.dead.replay("ready", 1000).await.unwrap(),
        "a ready event is not a dead letter"
    );
    s.queue.claim(1000, 10, lease(500)).await.unwrap();
    s.queue.dead("ready", 1100, 1, "x").await.unwrap();
    assert!(s.dead.replay("ready", 1200).await.unwrap());
    assert!(!s.dead.replay("ready", 1300).await.unwrap(), "once");
}
