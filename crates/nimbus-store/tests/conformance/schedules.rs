//! `ScheduleStore`: schedules by name, create refusing duplicates, update in place.

use std::sync::Arc;

use nimbus_core::schedule::ScheduleRecord;
use nimbus_store::StoreError;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{PgScheduleStore, ScheduleStore, SqliteScheduleStore};

use crate::helpers::fresh_pg;

async fn open_sqlite() -> (Arc<dyn ScheduleStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let conn = nimbus_store::open_database(&dir.path().join("nimbus.db")).unwrap();
    (Arc::new(SqliteScheduleStore::new(conn)), dir)
}

async fn open_pg() -> (Arc<dyn ScheduleStore>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgScheduleStore::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    create_get_list_delete,
    create_refuses_a_taken_name,
    replace_needs_an_existing_schedule,
    a_schedule_reads_back_whole,
));

fn record(name: &str, expression: &str) -> ScheduleRecord {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "expression": expression,
        "function": "fn-a",
        "created_ms": 1_700_000_000_000i64,
    }))
    .unwrap()
}

async fn create_get_list_delete(store: Arc<dyn ScheduleStore>) {
    assert!(store.list().await.unwrap().is_empty());
    store
        .put(&record("b", "rate(1 minute)"), true)
        .await
        .unwrap();
    store
        .put(&record("a", "rate(5 minutes)"), true)
        .await
        .unwrap();
    let got = store.get("a").await.unwrap().expect("a was created");
    assert_eq!(got.expression, "rate(5 minutes)");
    assert_eq!(got.target.function_name(), Some("fn-a"));
    let mut names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert!(store.delete("a").await.unwrap());
    assert!(
        !store.delete("a").await.unwrap(),
        "a second delete finds nothing"
    );
    assert!(store.get("a").await.unwrap().is_none());
}

async fn create_refuses_a_taken_name(store: Arc<dyn ScheduleStore>) {
    store
        .put(&record("a", "rate(1 minute)"), true)
        .await
        .unwrap();
    let again = store.put(&record("a", "rate(2 minutes)"), true).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let kept = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        kept.expression, "rate(1 minute)",
        "the refused create changed nothing"
    );
}

async fn replace_needs_an_existing_schedule(store: Arc<dyn ScheduleStore>) {
    let missing = store.put(&record("a", "rate(1 minute)"), false).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    store
        .put(&record("a", "rate(1 minute)"), true)
        .await
        .unwrap();
    store
        .put(&record("a", "rate(9 minutes)"), false)
        .await
        .unwrap();
    assert_eq!(
        store.get("a").await.unwrap().unwrap().expression,
        "rate(9 minutes)"
    );
}

/// The input is any JSON the user gave (NUL characters, large and
/// fractional numbers, nesting) and comes back as given, with every other
/// field.
async fn a_schedule_reads_back_whole(store: Arc<dyn ScheduleStore>) {
    let record: ScheduleRecord = serde_json::from_value(serde_json::json!({
        "name": "nightly",
        "expression": "cron(0 3 * * ? *)",
        "timezone": "Europe/Paris",
        "function": "fn-a",
        "qualifier": "live",
        "input": {"text": "nul \u{0} ✓", "n": [1, -2.5, 9007199254740993u64], "deep": {"a": null}},
        "enabled": false,
        "description": "every night \u{0}",
        "created_ms": 1_700_000_000_000i64,
    }))
    .unwrap();
    store.put(&record, true).await.unwrap();
    assert_eq!(store.get("nightly").await.unwrap(), Some(record.clone()));
    assert_eq!(store.list().await.unwrap(), vec![record]);
}
