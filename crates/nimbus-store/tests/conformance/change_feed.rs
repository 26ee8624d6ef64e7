//! `ChangeFeed`: notices reach every subscription made before them, in
//! publication order, and anything missed is announced by a `Resync`.

use std::sync::Arc;
use std::time::Duration;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    Change, ChangeFeed, ChangeKind, ChangeNotice, LocalChangeFeed, PgChangeFeed, StoreError,
};

async fn open_local() -> (Arc<dyn ChangeFeed>, ()) {
    (Arc::new(LocalChangeFeed::default()), ())
}

async fn open_pg() -> (Arc<dyn ChangeFeed>, ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    (Arc::new(PgChangeFeed::open(&pg).await.unwrap()), db)
}

/// Two nodes' feeds on one database, each with a pool of its own.
async fn open_two_pg() -> ([Arc<dyn ChangeFeed>; 2], ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    let other = nimbus_store::postgres::Pg::connect(&db.url).await.unwrap();
    let a = PgChangeFeed::open(&pg).await.unwrap();
    let b = PgChangeFeed::open(&other).await.unwrap();
    ([Arc::new(a), Arc::new(b)], db)
}

conformance!([local = open_local(), postgres = open_pg()](
    every_subscriber_gets_what_is_published_after_it_subscribed,
    a_slow_subscriber_is_told_to_resync,
    keys_have_a_bound,
));

/// A cluster: several nodes on one feed.
mod cluster {
    use super::*;

    conformance!([postgres = open_two_pg()](
        each_node_receives_what_the_other_publishes
    ));
}

fn changed(kind: ChangeKind, key: &str) -> ChangeNotice {
    ChangeNotice::Changed(Change {
        kind,
        key: key.into(),
    })
}

/// How long a notice may take to arrive.
const DELIVERY: Duration = Duration::from_secs(5);

async fn every_subscriber_gets_what_is_published_after_it_subscribed(feed: Arc<dyn ChangeFeed>) {
    feed.publish(ChangeKind::Function, "before").await.unwrap();
    let mut one = feed.subscribe();
    let mut two = feed.subscribe();
    feed.publish(ChangeKind::Function, "f").await.unwrap();
    feed.publish(ChangeKind::Gateway, "route-1").await.unwrap();
    feed.publish(ChangeKind::Function, "f").await.unwrap();
    for sub in [&mut one, &mut two] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                tokio::time::timeout(DELIVERY, sub.next())
                    .await
                    .expect("delivered")
                    .expect("feed open"),
            );
        }
        assert_eq!(
            got,
            [
                changed(ChangeKind::Function, "f"),
                changed(ChangeKind::Gateway, "route-1"),
                changed(ChangeKind::Function, "f"),
            ],
            "in order, nothing from before the subscription"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), one.next())
            .await
            .is_err(),
        "nothing more"
    );
}

async fn a_slow_subscriber_is_told_to_resync(feed: Arc<dyn ChangeFeed>) {
    const N: usize = 20_000;
    let mut sub = feed.subscribe();
    for n in 0..N {
        feed.publish(ChangeKind::Schedule, &format!("s{n}"))
            .await
            .unwrap();
    }
    // Either every notice arrives in order, or a Resync stands for what was missed.
    let (mut seen, mut resync, mut last) = (0, false, None::<usize>);
    while seen < N {
        let Ok(Some(notice)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        else {
            break;
        };
        match notice {
            ChangeNotice::Resync => resync = true,
            ChangeNotice::Changed(c) => {
                let n: usize = c.key[1..].parse().unwrap();
                assert!(last.is_none_or(|l| n > l), "in order");
                last = Some(n);
                seen += 1;
            }
        }
    }
    assert!(
        seen == N || resync,
        "{seen} of {N} notices and no Resync: changes were lost silently"
    );
}

async fn keys_have_a_bound(feed: Arc<dyn ChangeFeed>) {
    let long = "k".repeat(nimbus_store::MAX_CHANGE_KEY_BYTES + 1);
    let refused = feed.publish(ChangeKind::Queue, &long).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let longest = "k".repeat(nimbus_store::MAX_CHANGE_KEY_BYTES);
    feed.publish(ChangeKind::Queue, &longest).await.unwrap();
}

async fn each_node_receives_what_the_other_publishes(nodes: [Arc<dyn ChangeFeed>; 2]) {
    let mut subs = [nodes[0].subscribe(), nodes[1].subscribe()];
    nodes[0]
        .publish(ChangeKind::Function, "from-a")
        .await
        .unwrap();
    nodes[1]
        .publish(ChangeKind::Gateway, "from-b")
        .await
        .unwrap();
    for sub in &mut subs {
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(
                tokio::time::timeout(DELIVERY, sub.next())
                    .await
                    .expect("delivered")
                    .expect("feed open"),
            );
        }
        // No order across nodes: compare as a set.
        for expected in [
            changed(ChangeKind::Function, "from-a"),
            changed(ChangeKind::Gateway, "from-b"),
        ] {
            assert!(got.contains(&expected), "{expected:?} not in {got:?}");
        }
    }
}
