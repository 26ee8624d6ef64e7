//! `Topics`: topics by name (create is idempotent), their subscriptions
//! (one per topic, protocol and endpoint; gone with their topic), and the
//! attribute updates of both.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    PgMessages, SqliteMessages, StoreError, SubscriptionRecord, TopicRecord, Topics,
};

use crate::helpers::fresh_pg;

async fn open_sqlite() -> (Arc<dyn Topics>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMessages::open(&dir.path().join("messages.db")).unwrap();
    (Arc::new(store), dir)
}

async fn open_pg() -> (Arc<dyn Topics>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgMessages::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_topic_reads_back_whole,
    creating_a_topic_again_returns_the_existing_one,
    topics_are_listed_by_name,
    topic_attributes_merge,
    delete_topic_takes_its_subscriptions_with_it,
    a_subscription_reads_back_whole,
    subscribe_needs_the_topic,
    one_subscription_per_topic_protocol_and_endpoint,
    subscriptions_are_listed_in_creation_order,
    unsubscribe_reports_whether_it_found_it,
    subscription_attributes_merge_and_empty_values_remove,
    concurrent_creates_of_one_topic_agree,
    concurrent_subscribes_of_one_endpoint_agree,
));

const SQS: &str = "arn:aws:sqs:us-east-1:000000000000:";
const LAMBDA: &str = "arn:aws:lambda:us-east-1:000000000000:function:";
const SNS: &str = "arn:aws:sns:us-east-1:000000000000:";

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn topic(name: &str) -> TopicRecord {
    TopicRecord {
        name: name.into(),
        created_ms: 1_000,
        attributes: attrs(&[("DisplayName", "Orders ✓")]),
    }
}

fn sub(topic: &str, protocol: &str, endpoint: &str, id: &str) -> SubscriptionRecord {
    let endpoint = match protocol {
        "sqs" => format!("{SQS}{endpoint}"),
        _ => format!("{LAMBDA}{endpoint}"),
    };
    SubscriptionRecord {
        arn: format!("{SNS}{topic}:{id}"),
        topic: topic.into(),
        protocol: protocol.into(),
        endpoint,
        attributes: attrs(&[("RawMessageDelivery", "true")]),
        created_ms: 2_000,
    }
}

fn arns(subs: &[SubscriptionRecord]) -> Vec<String> {
    subs.iter().map(|s| s.arn.clone()).collect()
}

async fn a_topic_reads_back_whole(store: Arc<dyn Topics>) {
    assert!(store.get_topic("t").await.unwrap().is_none());
    let t = topic("t");
    assert_eq!(store.create_topic(&t).await.unwrap(), t);
    assert_eq!(store.get_topic("t").await.unwrap(), Some(t));
    assert!(
        store.get_topic("T").await.unwrap().is_none(),
        "case-sensitive"
    );
}

/// CreateTopic on an existing name succeeds and changes nothing: the
/// answer is the stored topic, not the one asked for.
async fn creating_a_topic_again_returns_the_existing_one(store: Arc<dyn Topics>) {
    let first = topic("t");
    store.create_topic(&first).await.unwrap();
    let second = TopicRecord {
        name: "t".into(),
        created_ms: 9_000,
        attributes: attrs(&[("DisplayName", "other")]),
    };
    assert_eq!(store.create_topic(&second).await.unwrap(), first);
    assert_eq!(store.get_topic("t").await.unwrap(), Some(first));
    assert_eq!(store.list_topics().await.unwrap().len(), 1);
}

async fn topics_are_listed_by_name(store: Arc<dyn Topics>) {
    assert!(store.list_topics().await.unwrap().is_empty());
    for n in ["orders", "Alerts", "audit", "z-1"] {
        store.create_topic(&topic(n)).await.unwrap();
    }
    let listed = store.list_topics().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Alerts", "audit", "orders", "z-1"]);
    assert_eq!(listed[0], topic("Alerts"), "whole records");
}

/// Given attributes replace those of the same name; the others stay. An
/// empty value is stored as an empty value (SNS's `DisplayName` may be
/// set to "").
async fn topic_attributes_merge(store: Arc<dyn Topics>) {
    assert!(
        !store
            .set_topic_attributes("t", attrs(&[("DisplayName", "x")]))
            .await
            .unwrap(),
        "no such topic"
    );
    assert!(store.get_topic("t").await.unwrap().is_none(), "not created");
    store.create_topic(&topic("t")).await.unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[]}"#;
    assert!(
        store
            .set_topic_attributes("t", attrs(&[("Policy", policy)]))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_topic_attributes("t", attrs(&[("DisplayName", "")]))
            .await
            .unwrap()
    );
    let got = store.get_topic("t").await.unwrap().unwrap();
    assert_eq!(
        got.attributes,
        attrs(&[("DisplayName", ""), ("Policy", policy)])
    );
    assert_eq!(got.created_ms, 1_000);
}

async fn delete_topic_takes_its_subscriptions_with_it(store: Arc<dyn Topics>) {
    assert!(!store.delete_topic("t").await.unwrap());
    store.create_topic(&topic("t")).await.unwrap();
    store.create_topic(&topic("u")).await.unwrap();
    store.subscribe(&sub("t", "sqs", "q", "1")).await.unwrap();
    store
        .subscribe(&sub("t", "lambda", "f", "2"))
        .await
        .unwrap();
    let kept = store.subscribe(&sub("u", "sqs", "q", "3")).await.unwrap();
    assert!(store.delete_topic("t").await.unwrap());
    assert!(!store.delete_topic("t").await.unwrap());
    assert!(store.get_topic("t").await.unwrap().is_none());
    assert!(
        store
            .get_subscription(&sub("t", "sqs", "q", "1").arn)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_subscriptions(None).await.unwrap(), vec![kept]);
    assert!(
        store
            .list_subscriptions(Some("t"))
            .await
            .unwrap()
            .is_empty()
    );
    // A topic created again under the name starts without subscriptions.
    store.create_topic(&topic("t")).await.unwrap();
    assert!(
        store
            .list_subscriptions(Some("t"))
            .await
            .unwrap()
            .is_empty()
    );
    store.subscribe(&sub("t", "sqs", "q", "4")).await.unwrap();
}

async fn a_subscription_reads_back_whole(store: Arc<dyn Topics>) {
    store.create_topic(&topic("t")).await.unwrap();
    let mut s = sub("t", "sqs", "q", "1");
    s.attributes.insert(
        "FilterPolicy".into(),
        r#"{"store":["example_corp"],"price":[{"numeric":[">",0]}]}"#.into(),
    );
    assert!(store.get_subscription(&s.arn).await.unwrap().is_none());
    assert_eq!(store.subscribe(&s).await.unwrap(), s);
    assert_eq!(store.get_subscription(&s.arn).await.unwrap(), Some(s));
}

async fn subscribe_needs_the_topic(store: Arc<dyn Topics>) {
    let missing = store.subscribe(&sub("t", "sqs", "q", "1")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(store.list_subscriptions(None).await.unwrap().is_empty());
}

/// Subscribe is idempotent: the same topic, protocol and endpoint again
/// returns the existing subscription (its ARN, its attributes), whatever
/// ARN and attributes the second call brought.
async fn one_subscription_per_topic_protocol_and_endpoint(store: Arc<dyn Topics>) {
    store.create_topic(&topic("t")).await.unwrap();
    store.create_topic(&topic("u")).await.unwrap();
    let first = store.subscribe(&sub("t", "sqs", "q", "1")).await.unwrap();
    let mut again = sub("t", "sqs", "q", "2");
    again.attributes = attrs(&[("RawMessageDelivery", "false")]);
    again.created_ms = 5_000;
    assert_eq!(store.subscribe(&again).await.unwrap(), first);
    assert!(store.get_subscription(&again.arn).await.unwrap().is_none());
    // Another endpoint, protocol or topic is another subscription.
    store.subscribe(&sub("t", "sqs", "q2", "3")).await.unwrap();
    store
        .subscribe(&sub("t", "lambda", "q", "4"))
        .await
        .unwrap();
    store.subscribe(&sub("u", "sqs", "q", "5")).await.unwrap();
    assert_eq!(store.list_subscriptions(None).await.unwrap().len(), 4);
}

/// By creation time, then ARN; all of them, or one topic's.
async fn subscriptions_are_listed_in_creation_order(store: Arc<dyn Topics>) {
    assert!(store.list_subscriptions(None).await.unwrap().is_empty());
    store.create_topic(&topic("t")).await.unwrap();
    store.create_topic(&topic("u")).await.unwrap();
    let at = |mut s: SubscriptionRecord, ms| {
        s.created_ms = ms;
        s
    };
    let rows = [
        at(sub("t", "sqs", "a", "3"), 30),
        at(sub("u", "sqs", "b", "1"), 10),
        at(sub("t", "sqs", "c", "2"), 20),
        at(sub("t", "lambda", "d", "5"), 20),
        at(sub("t", "lambda", "e", "4"), 20),
    ];
    for s in &rows {
        store.subscribe(s).await.unwrap();
    }
    let t = |id: &str| format!("{SNS}t:{id}");
    assert_eq!(
        arns(&store.list_subscriptions(None).await.unwrap()),
        [format!("{SNS}u:1"), t("2"), t("4"), t("5"), t("3")]
    );
    assert_eq!(
        arns(&store.list_subscriptions(Some("t")).await.unwrap()),
        [t("2"), t("4"), t("5"), t("3")]
    );
    assert!(
        store
            .list_subscriptions(Some("v"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unsubscribe_reports_whether_it_found_it(store: Arc<dyn Topics>) {
    store.create_topic(&topic("t")).await.unwrap();
    let a = store.subscribe(&sub("t", "sqs", "a", "1")).await.unwrap();
    let b = store.subscribe(&sub("t", "sqs", "b", "2")).await.unwrap();
    assert!(!store.unsubscribe("arn:nothing").await.unwrap());
    assert!(store.unsubscribe(&a.arn).await.unwrap());
    assert!(!store.unsubscribe(&a.arn).await.unwrap());
    assert!(store.get_subscription(&a.arn).await.unwrap().is_none());
    assert_eq!(store.list_subscriptions(Some("t")).await.unwrap(), vec![b]);
    assert!(
        store.get_topic("t").await.unwrap().is_some(),
        "the topic stays"
    );
    // The endpoint may subscribe again, under a new ARN.
    let again = store.subscribe(&sub("t", "sqs", "a", "3")).await.unwrap();
    assert_eq!(again.arn, format!("{SNS}t:3"));
}

/// Given attributes replace those of the same name, the others stay, and
/// an empty value removes the attribute (clearing a `FilterPolicy`).
async fn subscription_attributes_merge_and_empty_values_remove(store: Arc<dyn Topics>) {
    assert!(
        !store
            .set_subscription_attributes("arn:nothing", attrs(&[("RawMessageDelivery", "true")]))
            .await
            .unwrap()
    );
    store.create_topic(&topic("t")).await.unwrap();
    let s = store.subscribe(&sub("t", "sqs", "q", "1")).await.unwrap();
    let filter = r#"{"kind":["a"]}"#;
    assert!(
        store
            .set_subscription_attributes(&s.arn, attrs(&[("FilterPolicy", filter)]))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_subscription(&s.arn)
            .await
            .unwrap()
            .unwrap()
            .attributes,
        attrs(&[("FilterPolicy", filter), ("RawMessageDelivery", "true")])
    );
    assert!(
        store
            .set_subscription_attributes(
                &s.arn,
                attrs(&[("FilterPolicy", ""), ("RawMessageDelivery", "false")])
            )
            .await
            .unwrap()
    );
    let got = store.get_subscription(&s.arn).await.unwrap().unwrap();
    assert_eq!(got.attributes, attrs(&[("RawMessageDelivery", "false")]));
    assert_eq!(
        (got.topic.as_str(), got.protocol.as_str(), got.created_ms),
        ("t", "sqs", 2_000),
        "only the attributes change"
    );
}

async fn concurrent_creates_of_one_topic_agree(store: Arc<dyn Topics>) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let t = TopicRecord {
                    created_ms: 1_000 + i,
                    ..topic("t")
                };
                store.create_topic(&t).await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    let stored = store.get_topic("t").await.unwrap().unwrap();
    assert!(
        answers.iter().all(|a| *a == stored),
        "every caller is answered with the one stored topic: {answers:?}"
    );
    assert_eq!(store.list_topics().await.unwrap().len(), 1);
}

async fn concurrent_subscribes_of_one_endpoint_agree(store: Arc<dyn Topics>) {
    store.create_topic(&topic("t")).await.unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .subscribe(&sub("t", "sqs", "q", &i.to_string()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    let stored = store.list_subscriptions(Some("t")).await.unwrap();
    assert_eq!(stored.len(), 1, "one subscription: {stored:?}");
    assert!(
        answers.iter().all(|a| *a == stored[0]),
        "every caller is answered with it: {answers:?}"
    );
}
