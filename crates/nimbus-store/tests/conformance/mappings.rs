//! `SourceMappings`: event source mappings by UUID, stored whole (the
//! settings are the engine's JSON document) and replaced whole.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{PgMessages, SourceMappings, SqliteMessages, StoredMapping};

use crate::helpers::fresh_pg;

async fn open_sqlite() -> (Arc<dyn SourceMappings>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMessages::open(&dir.path().join("messages.db")).unwrap();
    (Arc::new(store), dir)
}

async fn open_pg() -> (Arc<dyn SourceMappings>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgMessages::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_mapping_reads_back_whole,
    put_replaces_the_whole_mapping,
    mappings_are_listed_by_uuid,
    one_source_may_feed_several_mappings,
    delete_reports_whether_it_found_the_mapping,
    concurrent_puts_of_one_uuid_leave_one_whole_mapping,
));

fn mapping(uuid: &str, function: &str, queue: &str) -> StoredMapping {
    StoredMapping {
        uuid: uuid.into(),
        function: function.into(),
        source_arn: format!("arn:aws:sqs:us-east-1:000000000000:{queue}"),
        config: format!(
            r#"{{"uuid":"{uuid}","function":"{function}","batch_size":10,"enabled":true,"note":"ü ✓"}}"#
        ),
    }
}

fn uuids(rows: &[StoredMapping]) -> Vec<&str> {
    rows.iter().map(|m| m.uuid.as_str()).collect()
}

async fn a_mapping_reads_back_whole(store: Arc<dyn SourceMappings>) {
    let m = mapping("6d1f0000-0000-4000-8000-000000000001", "f", "jobs");
    assert!(store.get_mapping(&m.uuid).await.unwrap().is_none());
    store.put_mapping(&m).await.unwrap();
    assert_eq!(store.get_mapping(&m.uuid).await.unwrap(), Some(m.clone()));
    assert_eq!(store.list_mappings().await.unwrap(), vec![m]);
}

/// A put on an existing UUID replaces every field (updates re-save the
/// whole mapping: a new function, a new state in the settings).
async fn put_replaces_the_whole_mapping(store: Arc<dyn SourceMappings>) {
    store
        .put_mapping(&mapping("u1", "f", "jobs"))
        .await
        .unwrap();
    let mut changed = mapping("u1", "g", "other");
    changed.config = r#"{"enabled":false}"#.into();
    store.put_mapping(&changed).await.unwrap();
    assert_eq!(
        store.get_mapping("u1").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(store.list_mappings().await.unwrap(), vec![changed]);
}

async fn mappings_are_listed_by_uuid(store: Arc<dyn SourceMappings>) {
    assert!(store.list_mappings().await.unwrap().is_empty());
    for u in ["c3", "a1", "b2", "B0"] {
        store.put_mapping(&mapping(u, "f", "q")).await.unwrap();
    }
    let listed = store.list_mappings().await.unwrap();
    assert_eq!(uuids(&listed), ["B0", "a1", "b2", "c3"]);
    assert_eq!(listed[1], mapping("a1", "f", "q"), "whole records");
}

/// The store does not police which sources feed which functions: that is
/// the engine's rule, not a storage one.
async fn one_source_may_feed_several_mappings(store: Arc<dyn SourceMappings>) {
    store.put_mapping(&mapping("u1", "f", "q")).await.unwrap();
    store.put_mapping(&mapping("u2", "f", "q")).await.unwrap();
    store.put_mapping(&mapping("u3", "g", "q")).await.unwrap();
    assert_eq!(
        uuids(&store.list_mappings().await.unwrap()),
        ["u1", "u2", "u3"]
    );
}

async fn delete_reports_whether_it_found_the_mapping(store: Arc<dyn SourceMappings>) {
    assert!(!store.delete_mapping("u1").await.unwrap());
    store.put_mapping(&mapping("u1", "f", "q")).await.unwrap();
    store.put_mapping(&mapping("u2", "f", "q")).await.unwrap();
    assert!(store.delete_mapping("u1").await.unwrap());
    assert!(!store.delete_mapping("u1").await.unwrap());
    assert!(store.get_mapping("u1").await.unwrap().is_none());
    assert_eq!(
        store.list_mappings().await.unwrap(),
        vec![mapping("u2", "f", "q")]
    );
}

async fn concurrent_puts_of_one_uuid_leave_one_whole_mapping(store: Arc<dyn SourceMappings>) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let m = mapping("u1", &format!("f{i}"), &format!("q{i}"));
                store.put_mapping(&m).await.unwrap();
                m
            })
        })
        .collect();
    let mut written = Vec::new();
    for h in handles {
        written.push(h.await.unwrap());
    }
    let listed = store.list_mappings().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        written.contains(&listed[0]),
        "one of the puts, whole, never a mix: {:?}",
        listed[0]
    );
}
