//! `QueueData`: messages of the catalog's queues: visibility, receipts,
//! receive counts, redrive, retention, purge and counts.

use std::sync::Arc;

use std::collections::BTreeSet;

use nimbus_store::postgres::Pg;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    PgMessages, QueueCatalog, QueueCounts, QueueData, ReceiveOptions, Redrive, SqliteMessages,
    StoreError, StoredMessage, VisibilityChange,
};

use crate::helpers::fresh_pg;
use crate::queue_catalog::queue;

struct Pair {
    catalog: Arc<dyn QueueCatalog>,
    data: Arc<dyn QueueData>,
    /// The same queues through another store on the same data: another
    /// node of a cluster.
    other: Arc<dyn QueueData>,
}

/// `node` with the queues `q` and `dlq`, and `other`, a second store on its data.
async fn with_queues<S: QueueCatalog + QueueData>(node: Arc<S>, other: Arc<S>) -> Pair {
    node.create_queue(&queue("q")).await.unwrap();
    node.create_queue(&queue("dlq")).await.unwrap();
    Pair {
        catalog: node.clone(),
        data: node,
        other,
    }
}

async fn open_sqlite() -> (Pair, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.db");
    let node = Arc::new(SqliteMessages::open(&path).unwrap());
    let other = Arc::new(SqliteMessages::open(&path).unwrap());
    (with_queues(node, other).await, dir)
}

async fn open_pg() -> (Pair, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let node = Arc::new(PgMessages::open(&pg).await.unwrap());
    let other_pool = Pg::connect(&db.url).await.unwrap();
    let other = Arc::new(PgMessages::open(&other_pool).await.unwrap());
    (with_queues(node, other).await, db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    send_needs_the_queue,
    a_received_message_is_hidden_for_the_visibility_timeout,
    a_stale_receipt_cannot_change_visibility,
    messages_received_too_often_move_to_the_dead_letter_queue,
    delays_retention_and_order,
    delete_purge_and_counts,
    receivers_on_two_nodes_never_share_a_message,
    a_failing_send_among_concurrent_ones_fails_alone,
    concurrent_deletes_of_one_message_find_it_once,
));

pub(crate) fn message(id: &str, sent_ms: i64) -> StoredMessage {
    StoredMessage {
        id: id.into(),
        body: format!("body {id}"),
        attributes: "{}".into(),
        md5_body: "md5".into(),
        md5_attributes: None,
        sent_ms,
        sender_id: "s".into(),
        visible_ms: sent_ms,
        receive_count: 0,
        first_receive_ms: None,
        receipt: None,
        dead_letter_source: None,
        trace: Some(format!("Root=1-0-{id}")),
    }
}

pub(crate) fn opts(now_ms: i64, redrive: Option<Redrive>) -> ReceiveOptions {
    ReceiveOptions {
        now_ms,
        max: 10,
        visibility_ms: 1000,
        redrive,
        retention_ms: i64::MAX / 2,
    }
}

async fn send_needs_the_queue(s: Pair) {
    let sent = s.data.send("nope", vec![message("x", 0)]).await;
    assert!(matches!(sent, Err(StoreError::NotFound(_))), "{sent:?}");
    assert!(s.catalog.get_queue("nope").await.unwrap().is_none());
}

async fn a_received_message_is_hidden_for_the_visibility_timeout(s: Pair) {
    s.data
        .send("q", vec![message("a", 0), message("b", 0)])
        .await
        .unwrap();
    let got = s.data.receive("q", opts(10, None)).await.unwrap();
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_eq!(m.receive_count, 1);
        assert_eq!(m.first_receive_ms, Some(10));
        assert_eq!(m.visible_ms, 1010);
        assert!(m.receipt.is_some());
        assert_eq!(m.trace, message(&m.id, 0).trace);
    }
    assert!(
        s.data
            .receive("q", opts(500, None))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.data.next_visible("q", 500).await.unwrap(), Some(1010));
    let again = s.data.receive("q", opts(1010, None)).await.unwrap();
    assert_eq!(again.len(), 2, "not deleted: seen again");
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].first_receive_ms, Some(10));
    assert_ne!(
        again[0].receipt, got[0].receipt,
        "a new receipt per receive"
    );
}

async fn a_stale_receipt_cannot_change_visibility(s: Pair) {
    s.data.send("q", vec![message("a", 0)]).await.unwrap();
    let first = s.data.receive("q", opts(10, None)).await.unwrap();
    let old = first[0].receipt.clone().unwrap();
    let second = s.data.receive("q", opts(1100, None)).await.unwrap();
    let new = second[0].receipt.clone().unwrap();
    assert_eq!(
        s.data.change_visibility("q", "a", &old, 0).await.unwrap(),
        VisibilityChange::NotInflight
    );
    assert_eq!(
        s.data
            .change_visibility("q", "missing", &new, 0)
            .await
            .unwrap(),
        VisibilityChange::NotFound
    );
    assert_eq!(
        s.data
            .change_visibility("q", "a", &new, 1200)
            .await
            .unwrap(),
        VisibilityChange::Changed
    );
    assert_eq!(
        s.data.receive("q", opts(1200, None)).await.unwrap().len(),
        1
    );
}

async fn messages_received_too_often_move_to_the_dead_letter_queue(s: Pair) {
    s.data.send("q", vec![message("b", 0)]).await.unwrap();
    let redrive = Some(Redrive {
        max_receive_count: 2,
        dead_letter_queue: "dlq".into(),
    });
    assert_eq!(
        s.data
            .receive("q", opts(10, redrive.clone()))
            .await
            .unwrap()
            .len(),
        1
    );
    let again = s
        .data
        .receive("q", opts(1100, redrive.clone()))
        .await
        .unwrap();
    assert_eq!(again[0].receive_count, 2);
    // The third receive redrives it instead.
    assert!(
        s.data
            .receive("q", opts(2200, redrive))
            .await
            .unwrap()
            .is_empty()
    );
    let dead = s.data.receive("dlq", opts(2300, None)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "b");
    assert_eq!(dead[0].receive_count, 1, "the count starts over in the dlq");
    assert_eq!(dead[0].dead_letter_source.as_deref(), Some("q"));
    assert_eq!(
        s.data.counts("q", 2300).await.unwrap(),
        QueueCounts::default()
    );
}

async fn delays_retention_and_order(s: Pair) {
    let mut delayed = message("late", 0);
    delayed.visible_ms = 5000;
    s.data
        .send(
            "q",
            vec![message("first", 0), delayed, message("second", 0)],
        )
        .await
        .unwrap();
    let counts = s.data.counts("q", 100).await.unwrap();
    assert_eq!((counts.visible, counts.delayed), (2, 1));
    let mut o = opts(100, None);
    o.max = 1;
    let one = s.data.receive("q", o.clone()).await.unwrap();
    assert_eq!(one[0].id, "first", "oldest visible first");
    assert_eq!(s.data.receive("q", o).await.unwrap()[0].id, "second");
    // Past the retention period a message is dropped, not received.
    let mut expired = opts(10_000, None);
    expired.retention_ms = 1000;
    assert!(s.data.receive("q", expired).await.unwrap().is_empty());
    assert_eq!(s.data.counts("q", 10_000).await.unwrap().visible, 0);
}

async fn delete_purge_and_counts(s: Pair) {
    s.data
        .send("q", vec![message("a", 0), message("b", 0), message("c", 0)])
        .await
        .unwrap();
    let mut o = opts(10, None);
    o.max = 1;
    s.data.receive("q", o).await.unwrap();
    assert_eq!(
        s.data.counts("q", 20).await.unwrap(),
        QueueCounts {
            visible: 2,
            in_flight: 1,
            delayed: 0
        }
    );
    assert!(s.data.delete_message("q", "a").await.unwrap());
    assert!(!s.data.delete_message("q", "a").await.unwrap());
    assert!(
        !s.data.delete_message("dlq", "b").await.unwrap(),
        "wrong queue"
    );
    assert_eq!(s.data.purge("q").await.unwrap(), 2);
    assert_eq!(
        s.data.counts("q", 20).await.unwrap(),
        QueueCounts::default()
    );
    assert_eq!(s.data.next_visible("q", 20).await.unwrap(), None);
}

/// Two nodes on one database, four receivers on each, all at once: every
/// message (sent half through each node) is received, by exactly one
/// receiver, while its visibility timeout runs.
async fn receivers_on_two_nodes_never_share_a_message(s: Pair) {
    let ids: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    for (n, chunk) in ids.chunks(10).enumerate() {
        let node = if n % 2 == 0 { &s.data } else { &s.other };
        let batch = chunk.iter().map(|id| message(id, 0)).collect();
        node.send("q", batch).await.unwrap();
    }
    let receivers: Vec<_> = (0..8)
        .map(|r| {
            let node = if r % 2 == 0 { &s.data } else { &s.other }.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let mut o = opts(10, None);
                    o.max = 7;
                    o.visibility_ms = 60_000;
                    let batch = node.receive("q", o).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| (m.id, m.receive_count)));
                }
            })
        })
        .collect();
    let mut received = Vec::new();
    for r in receivers {
        received.extend(r.await.unwrap());
    }
    assert!(
        received.iter().all(|(_, count)| *count == 1),
        "each received once"
    );
    let distinct: BTreeSet<&str> = received.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(received.len(), ids.len(), "no message handed out twice");
    assert_eq!(distinct.len(), ids.len(), "every message handed out");
    let counts = s.other.counts("q", 20).await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (0, ids.len() as u64));
}

/// Sends at once, some to a queue that does not exist: those fail with
/// `NotFound` and every other is stored (a backend that batches concurrent
/// sends must not fail one for another's fault).
async fn a_failing_send_among_concurrent_ones_fails_alone(s: Pair) {
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let data = s.data.clone();
            tokio::spawn(async move {
                let queue = if i % 4 == 0 { "nope" } else { "q" };
                data.send(queue, vec![message(&format!("m{i}"), 0)]).await
            })
        })
        .collect();
    for (i, sent) in sends.into_iter().enumerate() {
        let sent = sent.await.unwrap();
        if i % 4 == 0 {
            assert!(matches!(sent, Err(StoreError::NotFound(_))), "{sent:?}");
        } else {
            sent.unwrap();
        }
    }
    assert_eq!(s.data.counts("q", 0).await.unwrap().visible, 30);
}

/// Deletes of one message at once, on both nodes (a retried
/// `DeleteMessage`, two consumers): exactly one finds it.
async fn concurrent_deletes_of_one_message_find_it_once(s: Pair) {
    s.data.send("q", vec![message("a", 0)]).await.unwrap();
    let deletes: Vec<_> = (0..8)
        .map(|i| {
            let node = if i % 2 == 0 { &s.data } else { &s.other }.clone();
            tokio::spawn(async move { node.delete_message("q", "a").await.unwrap() })
        })
        .collect();
    let mut found = 0;
    for d in deletes {
        found += usize::from(d.await.unwrap());
    }
    assert_eq!(found, 1);
    assert_eq!(s.data.counts("q", 0).await.unwrap(), QueueCounts::default());
}
