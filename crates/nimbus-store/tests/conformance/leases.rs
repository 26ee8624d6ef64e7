//! `Leases`: one holder at a time, expiry by the caller's clock, renewal by
//! the holder only, epochs that tell holdings apart.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{Leases, LocalLeases, PgLeases};

async fn open_local() -> (Arc<dyn Leases>, ()) {
    (Arc::new(LocalLeases::default()), ())
}

async fn open_pg() -> (Arc<dyn Leases>, ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    (Arc::new(PgLeases::open(&pg).await.unwrap()), db)
}

/// Two nodes' leases on one database.
async fn open_two_pg() -> ([Arc<dyn Leases>; 2], ScratchDatabase) {
    let (pg, db) = crate::helpers::fresh_pg().await;
    let a = PgLeases::open(&pg).await.unwrap();
    let b = PgLeases::open(&pg).await.unwrap();
    ([Arc::new(a), Arc::new(b)], db)
}

conformance!([local = open_local(), postgres = open_pg()](
    one_holder_at_a_time,
    an_expired_lease_passes_to_another_owner,
    only_the_holder_renews,
    release_frees_the_lease_for_its_holder_only,
    leases_are_independent_by_name,
    racing_owners_get_one_holding,
));

/// A cluster: several nodes on one table of leases.
mod cluster {
    use super::*;

    conformance!([postgres = open_two_pg()](
        nodes_see_each_others_holdings,
        racing_nodes_get_one_holding,
    ));
}

async fn one_holder_at_a_time(l: Arc<dyn Leases>) {
    assert_eq!(l.holder("job", 0).await.unwrap(), None);
    let a = l.acquire("job", "node-a", 1000, 0).await.unwrap().unwrap();
    assert_eq!((a.name.as_str(), a.owner.as_str()), ("job", "node-a"));
    assert_eq!(a.expires_ms, 1000);
    assert_eq!(l.acquire("job", "node-b", 1000, 500).await.unwrap(), None);
    assert_eq!(l.holder("job", 999).await.unwrap(), Some(a.clone()));
    // The holder acquiring again renews, keeping the epoch.
    let again = l
        .acquire("job", "node-a", 1000, 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.expires_ms, again.epoch), (1600, a.epoch));
}

async fn an_expired_lease_passes_to_another_owner(l: Arc<dyn Leases>) {
    let a = l.acquire("job", "node-a", 1000, 0).await.unwrap().unwrap();
    assert_eq!(l.holder("job", 1000).await.unwrap(), None, "free at expiry");
    let b = l
        .acquire("job", "node-b", 1000, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.owner, "node-b");
    assert!(b.epoch > a.epoch, "a new holding, a new epoch");
    assert_eq!(l.renew("job", "node-a", 1000, 1100).await.unwrap(), None);
    assert_eq!(l.holder("job", 1100).await.unwrap(), Some(b));
    // The same owner taking it again after expiry is a new holding too.
    let b2 = l
        .acquire("job", "node-b", 1000, 5000)
        .await
        .unwrap()
        .unwrap();
    assert!(b2.epoch > a.epoch);
}

async fn only_the_holder_renews(l: Arc<dyn Leases>) {
    assert_eq!(
        l.renew("job", "node-a", 1000, 0).await.unwrap(),
        None,
        "never taken"
    );
    let a = l.acquire("job", "node-a", 1000, 0).await.unwrap().unwrap();
    assert_eq!(l.renew("job", "node-b", 1000, 500).await.unwrap(), None);
    let renewed = l.renew("job", "node-a", 1000, 900).await.unwrap().unwrap();
    assert_eq!((renewed.expires_ms, renewed.epoch), (1900, a.epoch));
    assert_eq!(l.holder("job", 1500).await.unwrap(), Some(renewed));
    assert_eq!(
        l.renew("job", "node-a", 1000, 1900).await.unwrap(),
        None,
        "too late: it expired"
    );
}

async fn release_frees_the_lease_for_its_holder_only(l: Arc<dyn Leases>) {
    assert!(!l.release("job", "node-a", 0).await.unwrap());
    let a = l.acquire("job", "node-a", 1000, 0).await.unwrap().unwrap();
    assert!(!l.release("job", "node-b", 100).await.unwrap());
    assert!(l.holder("job", 100).await.unwrap().is_some());
    assert!(l.release("job", "node-a", 100).await.unwrap());
    assert!(!l.release("job", "node-a", 100).await.unwrap(), "once");
    assert_eq!(l.holder("job", 100).await.unwrap(), None);
    let b = l
        .acquire("job", "node-b", 1000, 200)
        .await
        .unwrap()
        .unwrap();
    assert!(b.epoch > a.epoch);
}

async fn leases_are_independent_by_name(l: Arc<dyn Leases>) {
    assert!(l.acquire("one", "node-a", 1000, 0).await.unwrap().is_some());
    assert!(l.acquire("two", "node-b", 1000, 0).await.unwrap().is_some());
    assert_eq!(l.holder("one", 10).await.unwrap().unwrap().owner, "node-a");
    assert_eq!(l.holder("two", 10).await.unwrap().unwrap().owner, "node-b");
}

/// Races `owners` acquiring "job" at once on `stores` (in turn); returns the
/// leases granted.
async fn race_for_job(stores: &[Arc<dyn Leases>], owners: usize) -> Vec<nimbus_store::Lease> {
    let tasks: Vec<_> = (0..owners)
        .map(|n| {
            let l = stores[n % stores.len()].clone();
            tokio::spawn(async move { l.acquire("job", &format!("node-{n}"), 1000, 0).await })
        })
        .collect();
    let mut granted = Vec::new();
    for t in tasks {
        granted.extend(t.await.unwrap().unwrap());
    }
    granted
}

async fn racing_owners_get_one_holding(l: Arc<dyn Leases>) {
    let granted = race_for_job(std::slice::from_ref(&l), 16).await;
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(l.holder("job", 10).await.unwrap().as_ref(), granted.first());
}

async fn nodes_see_each_others_holdings(nodes: [Arc<dyn Leases>; 2]) {
    let [a, b] = nodes;
    let held = a.acquire("job", "node-a", 1000, 0).await.unwrap().unwrap();
    assert_eq!(b.holder("job", 500).await.unwrap(), Some(held.clone()));
    assert_eq!(b.acquire("job", "node-b", 1000, 500).await.unwrap(), None);
    // Node a stops renewing (it died): node b takes over at expiry.
    let taken = b
        .acquire("job", "node-b", 1000, 1000)
        .await
        .unwrap()
        .unwrap();
    assert!(taken.epoch > held.epoch);
    assert_eq!(a.renew("job", "node-a", 1000, 1000).await.unwrap(), None);
}

async fn racing_nodes_get_one_holding(nodes: [Arc<dyn Leases>; 2]) {
    let granted = race_for_job(&nodes, 16).await;
    assert_eq!(granted.len(), 1, "{granted:?}");
}
