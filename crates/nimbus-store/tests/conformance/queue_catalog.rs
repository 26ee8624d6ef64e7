//! `QueueCatalog`: queue definitions by name, create idempotent, attributes
//! merged, delete taking the messages along.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{PgMessages, QueueCatalog, QueueData, QueueRecord, SqliteMessages};

use crate::helpers::fresh_pg;
use crate::queue_data::{message, opts};

struct Pair {
    catalog: Arc<dyn QueueCatalog>,
    data: Arc<dyn QueueData>,
}

async fn open_sqlite() -> (Pair, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteMessages::open(&dir.path().join("messages.db")).unwrap());
    (
        Pair {
            catalog: s.clone(),
            data: s,
        },
        dir,
    )
}

async fn open_pg() -> (Pair, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let s = Arc::new(PgMessages::open(&pg).await.unwrap());
    (
        Pair {
            catalog: s.clone(),
            data: s,
        },
        db,
    )
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    create_get_list_by_name,
    create_returns_the_existing_queue_unchanged,
    attributes_merge_and_an_empty_redrive_policy_removes_it,
    delete_takes_the_messages_along,
));

pub(crate) fn queue(name: &str) -> QueueRecord {
    QueueRecord {
        name: name.into(),
        created_ms: 10,
        modified_ms: 10,
        attributes: BTreeMap::from([("VisibilityTimeout".into(), "30".into())]),
    }
}

async fn create_get_list_by_name(s: Pair) {
    assert!(s.catalog.list_queues().await.unwrap().is_empty());
    assert_eq!(
        s.catalog.create_queue(&queue("b")).await.unwrap(),
        queue("b")
    );
    s.catalog.create_queue(&queue("a")).await.unwrap();
    assert_eq!(s.catalog.get_queue("a").await.unwrap(), Some(queue("a")));
    assert_eq!(s.catalog.get_queue("c").await.unwrap(), None);
    let names: Vec<String> = s
        .catalog
        .list_queues()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

async fn create_returns_the_existing_queue_unchanged(s: Pair) {
    s.catalog.create_queue(&queue("q")).await.unwrap();
    let mut other = queue("q");
    other.created_ms = 99;
    other.attributes.insert("DelaySeconds".into(), "5".into());
    assert_eq!(s.catalog.create_queue(&other).await.unwrap(), queue("q"));
    assert_eq!(s.catalog.get_queue("q").await.unwrap(), Some(queue("q")));
}

async fn attributes_merge_and_an_empty_redrive_policy_removes_it(s: Pair) {
    assert!(
        !s.catalog
            .set_queue_attributes("missing", BTreeMap::new(), 20)
            .await
            .unwrap()
    );
    s.catalog.create_queue(&queue("q")).await.unwrap();
    let set = BTreeMap::from([
        ("DelaySeconds".to_string(), "5".to_string()),
        ("RedrivePolicy".to_string(), "{}".to_string()),
    ]);
    assert!(s.catalog.set_queue_attributes("q", set, 20).await.unwrap());
    let q = s.catalog.get_queue("q").await.unwrap().unwrap();
    assert_eq!(q.modified_ms, 20);
    assert_eq!(q.created_ms, 10);
    assert_eq!(q.attributes.len(), 3, "{:?}", q.attributes);
    let clear = BTreeMap::from([("RedrivePolicy".to_string(), String::new())]);
    assert!(
        s.catalog
            .set_queue_attributes("q", clear, 30)
            .await
            .unwrap()
    );
    let q = s.catalog.get_queue("q").await.unwrap().unwrap();
    assert!(!q.attributes.contains_key("RedrivePolicy"));
    assert_eq!(q.attributes["DelaySeconds"], "5");
}

async fn delete_takes_the_messages_along(s: Pair) {
    s.catalog.create_queue(&queue("q")).await.unwrap();
    s.data.send("q", vec![message("m", 0)]).await.unwrap();
    assert!(s.catalog.delete_queue("q").await.unwrap());
    assert!(!s.catalog.delete_queue("q").await.unwrap());
    assert_eq!(s.catalog.get_queue("q").await.unwrap(), None);
    s.catalog.create_queue(&queue("q")).await.unwrap();
    assert!(
        s.data
            .receive("q", opts(10, None))
            .await
            .unwrap()
            .is_empty(),
        "a new queue of the same name starts empty"
    );
}
