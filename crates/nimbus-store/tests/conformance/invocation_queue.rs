//! `InvocationQueue`: enqueue, fair claims under budgets, leases that expire,
//! complete, retry later, give up.

use std::sync::Arc;

use std::collections::HashSet;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    BudgetFn, InvocationQueue, LeaseFn, PgEventQueue, QueuedEvent, SqliteEventQueue, StoreError,
};

async fn open_sqlite() -> (Arc<dyn InvocationQueue>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteEventQueue::open(&dir.path().join("events.db")).unwrap();
    (Arc::new(q), dir)
}

async fn open_pg() -> (Arc<dyn InvocationQueue>, ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    (Arc::new(PgEventQueue::open(&pg).await.unwrap()), db)
}

/// Two nodes' queues on one database.
async fn open_two_pg() -> ([Arc<dyn InvocationQueue>; 2], ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    let a = PgEventQueue::open(&pg).await.unwrap();
    let b = PgEventQueue::open(&pg).await.unwrap();
    ([Arc::new(a), Arc::new(b)], db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    claim_lease_complete_retry,
    an_expired_lease_is_claimed_again,
    claims_keep_each_function_within_its_budget,
    claims_are_fair_across_functions_and_leases_follow_the_function,
    a_duplicate_id_fails_alone,
    dead_events_leave_the_queue,
    stats_count_ready_events,
    a_duplicate_id_is_a_conflict,
    concurrent_claims_never_hand_out_an_event_twice,
));

/// A cluster: several nodes on one queue.
mod cluster {
    use super::*;

    conformance!([postgres = open_two_pg()](
        nodes_claiming_together_never_share_an_event,
        a_node_starting_leaves_the_leases_of_others,
        an_event_leased_by_a_dead_node_is_claimed_by_another,
    ));
}

pub(crate) fn lease(ms: i64) -> LeaseFn {
    Arc::new(move |_| ms)
}

pub(crate) fn event(id: &str) -> QueuedEvent {
    event_of("f", id)
}

pub(crate) fn event_of(function: &str, id: &str) -> QueuedEvent {
    QueuedEvent {
        id: id.into(),
        request_id: format!("r-{id}"),
        function: function.into(),
        qualifier: None,
        payload: b"{\"n\":1}".to_vec(),
        enqueued_ms: 1000,
        attempts: 0,
        error: None,
        failed_at_ms: None,
        creator: Some("caller".into()),
        trace: Some(format!("Root=1-0-{id};Lineage=0badcafe:3")),
    }
}

async fn claim_lease_complete_retry(q: Arc<dyn InvocationQueue>) {
    assert_eq!(q.next_due().await.unwrap(), None);
    q.enqueue(&event("a")).await.unwrap();
    q.enqueue(&event("b")).await.unwrap();
    assert!(
        q.claim(999, 10, lease(500)).await.unwrap().is_empty(),
        "not due before its enqueue time"
    );
    let got = q.claim(1000, 10, lease(500)).await.unwrap();
    assert_eq!(got.len(), 2);
    let a = got.iter().find(|e| e.id == "a").unwrap();
    assert_eq!(*a, event("a"), "every field comes back as enqueued");
    // Leased: not claimable again until the lease ends.
    assert!(q.claim(1200, 10, lease(500)).await.unwrap().is_empty());
    assert_eq!(
        q.next_due().await.unwrap(),
        Some(1500),
        "due at the lease's end"
    );
    q.complete("a").await.unwrap();
    q.retry("b", 5000, 1, "boom").await.unwrap();
    assert!(q.claim(4000, 10, lease(500)).await.unwrap().is_empty());
    assert_eq!(q.next_due().await.unwrap(), Some(5000));
    let b = q.claim(5000, 10, lease(500)).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempts, 1);
    assert_eq!(b[0].error.as_deref(), Some("boom"));
    assert_eq!(b[0].trace, event("b").trace, "the trace header is kept");
    q.complete("b").await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), None);
    assert!(
        q.claim(i64::MAX / 2, 10, lease(500))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_expired_lease_is_claimed_again(q: Arc<dyn InvocationQueue>) {
    q.enqueue(&event("a")).await.unwrap();
    assert_eq!(q.claim(1000, 10, lease(500)).await.unwrap().len(), 1);
    // The worker died: at the lease's end the event is due again.
    let again = q.claim(1500, 10, lease(500)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0, "a lost lease is not a failed attempt");
}

async fn claims_keep_each_function_within_its_budget(q: Arc<dyn InvocationQueue>) {
    for n in 0..20 {
        q.enqueue(&event_of("slow", &format!("s{n}")))
            .await
            .unwrap();
    }
    q.enqueue(&event_of("other", "o1")).await.unwrap();
    let budget: BudgetFn = Arc::new(|f| if f == "slow" { 2 } else { usize::MAX });
    let got = q
        .claim_within(1000, 10, lease(500), budget.clone())
        .await
        .unwrap();
    let slow = got.iter().filter(|e| e.function == "slow").count();
    assert_eq!((slow, got.len()), (2, 3), "{got:?}");
    let none: BudgetFn = Arc::new(|_| 0);
    assert!(
        q.claim_within(1000, 10, lease(500), none)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn claims_are_fair_across_functions_and_leases_follow_the_function(
    q: Arc<dyn InvocationQueue>,
) {
    // A flood for "busy", queued first, then one event each for two others.
    for n in 0..50 {
        q.enqueue(&event_of("busy", &format!("b{n}")))
            .await
            .unwrap();
    }
    q.enqueue(&event_of("quiet", "q0")).await.unwrap();
    q.enqueue(&event_of("rare", "r0")).await.unwrap();
    let leases: LeaseFn = Arc::new(|f| if f == "quiet" { 100 } else { 10_000 });
    let got = q.claim(1000, 3, leases.clone()).await.unwrap();
    let mut functions: Vec<&str> = got.iter().map(|e| e.function.as_str()).collect();
    functions.sort();
    assert_eq!(
        functions,
        ["busy", "quiet", "rare"],
        "one each, not three of the flood"
    );
    // The short lease of "quiet" expires first; the others stay claimed.
    let again = q.claim(1200, 10, leases).await.unwrap();
    assert!(
        again.iter().any(|e| e.id == "q0"),
        "expired lease is claimable"
    );
    assert!(again.iter().all(|e| e.id != "r0"));
    assert_eq!(again.len(), 10);
}

async fn a_duplicate_id_fails_alone(q: Arc<dyn InvocationQueue>) {
    q.enqueue(&event("dup")).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let id = if n == 100 {
                "dup".to_string()
            } else {
                format!("e{n}")
            };
            q.enqueue(&event(&id)).await
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the duplicate id is refused");
    assert_eq!(q.stats().await.unwrap().0, 200);
}

async fn dead_events_leave_the_queue(q: Arc<dyn InvocationQueue>) {
    q.enqueue(&event("a")).await.unwrap();
    q.claim(1000, 10, lease(500)).await.unwrap();
    q.dead("a", 1200, 3, "boom").await.unwrap();
    assert_eq!(q.next_due().await.unwrap(), None);
    assert_eq!(q.stats().await.unwrap(), (0, None));
    assert!(q.claim(10_000, 10, lease(500)).await.unwrap().is_empty());
}

async fn stats_count_ready_events(q: Arc<dyn InvocationQueue>) {
    assert_eq!(q.stats().await.unwrap(), (0, None));
    let mut late = event("late");
    late.enqueued_ms = 3000;
    q.enqueue(&late).await.unwrap();
    q.enqueue(&event("early")).await.unwrap();
    assert_eq!(q.stats().await.unwrap(), (2, Some(1000)));
    // A claimed (running) event still counts.
    q.claim(5000, 1, lease(500)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().0, 2);
}

async fn a_duplicate_id_is_a_conflict(q: Arc<dyn InvocationQueue>) {
    q.enqueue(&event("a")).await.unwrap();
    let again = q.enqueue(&event("a")).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(what)) if what == "event a"),
        "{again:?}"
    );
}

/// Runs `workers` claim loops at once, each on the queue `queues[n % len]`,
/// until the queue has nothing due; returns every id each claim got.
async fn claim_everything(queues: &[Arc<dyn InvocationQueue>], workers: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for n in 0..workers {
        let q = queues[n % queues.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                // Leases far longer than the test: a claimed event stays claimed.
                let claimed = q.claim(1000, 7, lease(3_600_000)).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.into_iter().map(|e| e.id));
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// Enqueues `n` events over three functions; returns their ids.
async fn enqueue_many(q: &Arc<dyn InvocationQueue>, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let id = format!("e{i}");
        q.enqueue(&event_of(["f", "g", "h"][i % 3], &id))
            .await
            .unwrap();
        ids.insert(id);
    }
    ids
}

/// Every claimed id exactly once, and all of `expected`.
fn assert_each_once(claimed: Vec<String>, expected: &HashSet<String>) {
    let mut seen = HashSet::new();
    for id in &claimed {
        assert!(seen.insert(id.clone()), "{id} was handed out twice");
    }
    assert_eq!(&seen, expected, "every event was claimed");
}

async fn concurrent_claims_never_hand_out_an_event_twice(q: Arc<dyn InvocationQueue>) {
    let expected = enqueue_many(&q, 300).await;
    let claimed = claim_everything(&[q], 8).await;
    assert_each_once(claimed, &expected);
}

async fn nodes_claiming_together_never_share_an_event(nodes: [Arc<dyn InvocationQueue>; 2]) {
    let expected = enqueue_many(&nodes[0], 300).await;
    let claimed = claim_everything(&nodes, 8).await;
    assert_each_once(claimed, &expected);
}

async fn a_node_starting_leaves_the_leases_of_others(nodes: [Arc<dyn InvocationQueue>; 2]) {
    let [a, b] = nodes;
    a.enqueue(&event("a")).await.unwrap();
    assert_eq!(a.claim(1000, 10, lease(3_600_000)).await.unwrap().len(), 1);
    // `b` opened beside `a`: the event `a` runs is not `b`'s to take.
    assert!(b.claim(2000, 10, lease(500)).await.unwrap().is_empty());
    assert_eq!(b.next_due().await.unwrap(), Some(3_601_000));
}

async fn an_event_leased_by_a_dead_node_is_claimed_by_another(
    nodes: [Arc<dyn InvocationQueue>; 2],
) {
    let [a, b] = nodes;
    a.enqueue(&event("a")).await.unwrap();
    assert_eq!(a.claim(1000, 10, lease(500)).await.unwrap().len(), 1);
    drop(a);
    assert!(b.claim(1499, 10, lease(500)).await.unwrap().is_empty());
    let again = b.claim(1500, 10, lease(500)).await.unwrap();
    assert_eq!(again.len(), 1);
    b.complete("a").await.unwrap();
    assert_eq!(b.next_due().await.unwrap(), None);
}
