//! `MetadataStore`: functions (`$LATEST`), their published versions and their
//! aliases. Records are stored and returned whole; names are unique per kind;
//! deleting a function takes its versions and aliases with it.

use std::sync::Arc;

use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{MetadataStore, PgMetadataStore, SqliteMetadataStore, StoreError};

use crate::helpers::{fresh_pg, race};

async fn open_sqlite() -> (Arc<dyn MetadataStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let conn = nimbus_store::open_database(&dir.path().join("nimbus.db")).unwrap();
    (Arc::new(SqliteMetadataStore::new(conn)), dir)
}

async fn open_pg() -> (Arc<dyn MetadataStore>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgMetadataStore::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_function_reads_back_whole,
    any_character_of_a_description_reads_back,
    insert_refuses_a_taken_name,
    update_replaces_the_whole_record,
    update_needs_an_existing_function,
    functions_are_listed_by_name,
    delete_reports_whether_it_found_the_function,
    delete_takes_versions_and_aliases_with_it,
    versions_read_back_whole_and_are_snapshots,
    versions_are_listed_oldest_first_by_number,
    insert_version_refuses_a_taken_number,
    a_version_number_must_be_a_number,
    delete_version_removes_only_that_version,
    alias_create_refuses_a_taken_name,
    alias_replace_needs_an_existing_alias,
    aliases_read_back_whole_and_are_listed_by_name,
    delete_alias_removes_only_that_alias,
    concurrent_inserts_of_one_name_one_wins,
    concurrent_alias_creates_one_wins,
    concurrent_version_inserts_one_wins,
));

fn name(s: &str) -> FunctionName {
    s.parse().unwrap()
}

/// A `$LATEST` record using most optional fields, so that a backend that
/// drops one is caught by the whole-record comparisons.
fn function(fname: &str) -> FunctionRecord {
    serde_json::from_value(serde_json::json!({
        "name": fname,
        "runtime": "python3",
        "handler": "app.handler",
        "memory_mb": 256,
        "timeout_s": 30,
        "environment": {"GREETING": "grüß dich ✓", "EMPTY": ""},
        "description": "a function with \"quotes\", newlines\nand unicode ☃",
        "permissions": ["s3:photos"],
        "ephemeral_storage_mb": 1024,
        "network": "none",
        "version": "$LATEST",
        "resolved_style": "aws",
        "code_sha256": "ab".repeat(32),
        "code_size": 1234,
        "revision_id": "rev-1",
        "created_at": "2026-01-01T00:00:00.000+0000",
        "last_modified": "2026-01-01T00:00:00.000+0000",
        "runtime_id": "python3.12",
        "role": "arn:aws:iam::000000000000:role/r",
        "tags": {"team": "a", "cost-centre": "42"},
        "reserved_concurrency": 5,
        "last_version": 0,
        "event_invoke_config": {
            "max_retry_attempts": 1,
            "max_event_age_s": 600,
            "on_failure": "arn:aws:sqs:us-east-1:000000000000:dlq",
            "last_modified_ms": 1_700_000_000_000i64,
        },
        "provisioned": {"live": 2},
    }))
    .unwrap()
}

fn version(fname: &str, n: u32) -> FunctionRecord {
    let mut r = function(fname);
    r.version = n.to_string();
    r.revision_id = format!("rev-v{n}");
    r.config.description = format!("version {n}");
    r
}

fn alias(fname: &str, alias: &str, to: &str) -> AliasRecord {
    serde_json::from_value(serde_json::json!({
        "function": fname,
        "name": alias,
        "function_version": to,
        "description": format!("{alias} of {fname}"),
        "revision_id": format!("rev-{alias}-{to}"),
    }))
    .unwrap()
}

fn numbers(records: &[FunctionRecord]) -> Vec<String> {
    records.iter().map(|r| r.version.clone()).collect()
}

async fn a_function_reads_back_whole(store: Arc<dyn MetadataStore>) {
    assert!(store.get_function(&name("f")).await.unwrap().is_none());
    let record = function("f");
    store.insert_function(&record).await.unwrap();
    assert_eq!(store.get_function(&name("f")).await.unwrap(), Some(record));
    assert!(
        store.get_function(&name("F")).await.unwrap().is_none(),
        "names are case-sensitive"
    );
}

/// A description is free text: control characters, NUL included, are
/// stored and read back as given, in `$LATEST` and in versions.
async fn any_character_of_a_description_reads_back(store: Arc<dyn MetadataStore>) {
    let mut record = function("f");
    record.config.description = "nul \u{0} bell \u{7} tab \t \\ \"q\" \u{10FFFF}".into();
    store.insert_function(&record).await.unwrap();
    let mut v1 = record.clone();
    v1.version = "1".into();
    store.insert_version(&v1).await.unwrap();
    assert_eq!(store.get_function(&name("f")).await.unwrap(), Some(record));
    assert_eq!(store.list_versions(&name("f")).await.unwrap(), vec![v1]);
}

async fn insert_refuses_a_taken_name(store: Arc<dyn MetadataStore>) {
    let first = function("f");
    store.insert_function(&first).await.unwrap();
    let mut second = function("f");
    second.revision_id = "rev-other".into();
    second.config.memory_mb = 512;
    let again = store.insert_function(&second).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.get_function(&name("f")).await.unwrap(),
        Some(first),
        "the refused insert changed nothing"
    );
}

async fn update_replaces_the_whole_record(store: Arc<dyn MetadataStore>) {
    store.insert_function(&function("f")).await.unwrap();
    let mut updated = function("f");
    updated.revision_id = "rev-2".into();
    updated.config.memory_mb = 1024;
    updated.config.environment.clear();
    updated.tags.clear();
    updated.reserved_concurrency = None;
    updated.event_invoke_config = None;
    updated.last_version = 3;
    store.update_function(&updated).await.unwrap();
    assert_eq!(
        store.get_function(&name("f")).await.unwrap(),
        Some(updated),
        "fields cleared by the update are gone, not merged"
    );
}

async fn update_needs_an_existing_function(store: Arc<dyn MetadataStore>) {
    let missing = store.update_function(&function("f")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(
        store.get_function(&name("f")).await.unwrap().is_none(),
        "an update never creates"
    );
}

async fn functions_are_listed_by_name(store: Arc<dyn MetadataStore>) {
    assert!(store.list_functions().await.unwrap().is_empty());
    for n in ["m", "B", "a", "z-1", "z_0", "A"] {
        store.insert_function(&function(n)).await.unwrap();
    }
    let names: Vec<String> = store
        .list_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.config.name.to_string())
        .collect();
    // Byte order (what `ORDER BY` on text gives in SQLite and with the C
    // collation in PostgreSQL): upper case before lower case.
    assert_eq!(names, ["A", "B", "a", "m", "z-1", "z_0"]);
    let listed = store.list_functions().await.unwrap();
    assert_eq!(listed[0], function("A"), "listed records are whole");
}

async fn delete_reports_whether_it_found_the_function(store: Arc<dyn MetadataStore>) {
    assert!(!store.delete_function(&name("f")).await.unwrap());
    store.insert_function(&function("f")).await.unwrap();
    store.insert_function(&function("g")).await.unwrap();
    assert!(store.delete_function(&name("f")).await.unwrap());
    assert!(!store.delete_function(&name("f")).await.unwrap());
    assert!(store.get_function(&name("f")).await.unwrap().is_none());
    assert_eq!(
        store.list_functions().await.unwrap(),
        vec![function("g")],
        "the other function is untouched"
    );
    // The name is free again.
    store.insert_function(&function("f")).await.unwrap();
}

async fn delete_takes_versions_and_aliases_with_it(store: Arc<dyn MetadataStore>) {
    for f in ["f", "g"] {
        store.insert_function(&function(f)).await.unwrap();
        store.insert_version(&version(f, 1)).await.unwrap();
        store.insert_version(&version(f, 2)).await.unwrap();
        store.put_alias(&alias(f, "live", "1"), true).await.unwrap();
    }
    assert!(store.delete_function(&name("f")).await.unwrap());
    let f = name("f");
    assert!(store.list_versions(&f).await.unwrap().is_empty());
    assert!(store.get_version(&f, 1).await.unwrap().is_none());
    assert!(store.list_aliases(&f).await.unwrap().is_empty());
    assert!(store.get_alias(&f, "live").await.unwrap().is_none());
    // A function created again under the name starts with none, and may
    // publish version 1 and create the alias again.
    store.insert_function(&function("f")).await.unwrap();
    assert!(store.list_versions(&f).await.unwrap().is_empty());
    store.insert_version(&version("f", 1)).await.unwrap();
    store
        .put_alias(&alias("f", "live", "1"), true)
        .await
        .unwrap();
    // The other function kept everything.
    let g = name("g");
    assert_eq!(numbers(&store.list_versions(&g).await.unwrap()), ["1", "2"]);
    assert_eq!(
        store.get_alias(&g, "live").await.unwrap(),
        Some(alias("g", "live", "1"))
    );
}

async fn versions_read_back_whole_and_are_snapshots(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    assert!(store.get_version(&f, 1).await.unwrap().is_none());
    let v1 = version("f", 1);
    store.insert_version(&v1).await.unwrap();
    assert_eq!(store.get_version(&f, 1).await.unwrap(), Some(v1.clone()));
    // Changing $LATEST afterwards leaves the published version as it was.
    let mut latest = function("f");
    latest.config.memory_mb = 2048;
    latest.code_sha256 = "cd".repeat(32);
    latest.last_version = 1;
    store.update_function(&latest).await.unwrap();
    assert_eq!(store.get_version(&f, 1).await.unwrap(), Some(v1.clone()));
    assert_eq!(store.list_versions(&f).await.unwrap(), vec![v1]);
    assert!(
        store.get_version(&name("g"), 1).await.unwrap().is_none(),
        "versions belong to their function"
    );
}

async fn versions_are_listed_oldest_first_by_number(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    assert!(store.list_versions(&f).await.unwrap().is_empty());
    // Inserted out of order, and across a digit boundary: 10 sorts after 9
    // (numbers, not text).
    for n in [10, 2, 9, 1, 11] {
        store.insert_version(&version("f", n)).await.unwrap();
    }
    store.insert_function(&function("g")).await.unwrap();
    store.insert_version(&version("g", 5)).await.unwrap();
    assert_eq!(
        numbers(&store.list_versions(&f).await.unwrap()),
        ["1", "2", "9", "10", "11"]
    );
    assert_eq!(
        numbers(&store.list_versions(&name("g")).await.unwrap()),
        ["5"]
    );
}

async fn insert_version_refuses_a_taken_number(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    store.insert_version(&version("f", 1)).await.unwrap();
    let mut other = version("f", 1);
    other.config.description = "another snapshot".into();
    let again = store.insert_version(&other).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.get_version(&f, 1).await.unwrap(),
        Some(version("f", 1)),
        "the refused insert changed nothing"
    );
    // The same number of another function is another version.
    store.insert_function(&function("g")).await.unwrap();
    store.insert_version(&version("g", 1)).await.unwrap();
}

async fn a_version_number_must_be_a_number(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    let mut bad = version("f", 1);
    bad.version = "$LATEST".into();
    assert!(store.insert_version(&bad).await.is_err());
    assert!(store.list_versions(&f).await.unwrap().is_empty());
}

async fn delete_version_removes_only_that_version(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    for n in 1..=3 {
        store.insert_version(&version("f", n)).await.unwrap();
    }
    store.insert_function(&function("g")).await.unwrap();
    store.insert_version(&version("g", 2)).await.unwrap();
    assert!(!store.delete_version(&f, 7).await.unwrap());
    assert!(store.delete_version(&f, 2).await.unwrap());
    assert!(!store.delete_version(&f, 2).await.unwrap());
    assert!(store.get_version(&f, 2).await.unwrap().is_none());
    assert_eq!(numbers(&store.list_versions(&f).await.unwrap()), ["1", "3"]);
    assert!(store.get_version(&name("g"), 2).await.unwrap().is_some());
    assert!(
        store.get_function(&f).await.unwrap().is_some(),
        "$LATEST is not a version"
    );
}

async fn alias_create_refuses_a_taken_name(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    store
        .put_alias(&alias("f", "live", "1"), true)
        .await
        .unwrap();
    let again = store.put_alias(&alias("f", "live", "2"), true).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.get_alias(&f, "live").await.unwrap(),
        Some(alias("f", "live", "1")),
        "the refused create changed nothing"
    );
    // The same alias name on another function is another alias.
    store.insert_function(&function("g")).await.unwrap();
    store
        .put_alias(&alias("g", "live", "2"), true)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_alias(&f, "live")
            .await
            .unwrap()
            .unwrap()
            .function_version,
        "1"
    );
}

async fn alias_replace_needs_an_existing_alias(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    let missing = store.put_alias(&alias("f", "live", "1"), false).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(
        store.get_alias(&f, "live").await.unwrap().is_none(),
        "a replace never creates"
    );
    store
        .put_alias(&alias("f", "live", "1"), true)
        .await
        .unwrap();
    let mut moved = alias("f", "live", "2");
    moved.routing = Some(nimbus_core::AliasRouting {
        version: "3".into(),
        weight: 0.125,
    });
    store.put_alias(&moved, false).await.unwrap();
    assert_eq!(store.get_alias(&f, "live").await.unwrap(), Some(moved));
    // And a replace that drops the routing drops it.
    store
        .put_alias(&alias("f", "live", "2"), false)
        .await
        .unwrap();
    assert_eq!(
        store.get_alias(&f, "live").await.unwrap(),
        Some(alias("f", "live", "2"))
    );
}

async fn aliases_read_back_whole_and_are_listed_by_name(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    assert!(store.list_aliases(&f).await.unwrap().is_empty());
    let mut weighted = alias("f", "canary", "1");
    weighted.routing = Some(nimbus_core::AliasRouting {
        version: "2".into(),
        weight: 0.3,
    });
    for a in [
        alias("f", "prod", "2"),
        weighted.clone(),
        alias("f", "Beta", "1"),
    ] {
        store.put_alias(&a, true).await.unwrap();
    }
    store.insert_function(&function("g")).await.unwrap();
    store
        .put_alias(&alias("g", "other", "1"), true)
        .await
        .unwrap();
    let listed = store.list_aliases(&f).await.unwrap();
    assert_eq!(
        listed,
        vec![
            alias("f", "Beta", "1"),
            weighted.clone(),
            alias("f", "prod", "2")
        ],
        "by name (byte order), whole, only this function's"
    );
    assert_eq!(
        store.get_alias(&f, "canary").await.unwrap(),
        Some(weighted),
        "the weight survives exactly"
    );
    assert!(store.get_alias(&f, "other").await.unwrap().is_none());
}

async fn delete_alias_removes_only_that_alias(store: Arc<dyn MetadataStore>) {
    let f = name("f");
    store.insert_function(&function("f")).await.unwrap();
    store.insert_function(&function("g")).await.unwrap();
    for a in [
        alias("f", "a", "1"),
        alias("f", "b", "1"),
        alias("g", "a", "1"),
    ] {
        store.put_alias(&a, true).await.unwrap();
    }
    assert!(!store.delete_alias(&f, "c").await.unwrap());
    assert!(store.delete_alias(&f, "a").await.unwrap());
    assert!(!store.delete_alias(&f, "a").await.unwrap());
    assert!(store.get_alias(&f, "a").await.unwrap().is_none());
    assert_eq!(
        store.list_aliases(&f).await.unwrap(),
        vec![alias("f", "b", "1")]
    );
    assert!(store.get_alias(&name("g"), "a").await.unwrap().is_some());
    // The name can be created again.
    store.put_alias(&alias("f", "a", "1"), true).await.unwrap();
}

async fn concurrent_inserts_of_one_name_one_wins(store: Arc<dyn MetadataStore>) {
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            let mut r = function("f");
            r.revision_id = format!("rev-{i}");
            store.insert_function(&r).await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one insert wins: {won:?}");
    let stored = store.get_function(&name("f")).await.unwrap().unwrap();
    assert_eq!(stored.revision_id, format!("rev-{}", won[0]));
    assert_eq!(store.list_functions().await.unwrap().len(), 1);
}

async fn concurrent_alias_creates_one_wins(store: Arc<dyn MetadataStore>) {
    store.insert_function(&function("f")).await.unwrap();
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            store
                .put_alias(&alias("f", "live", &(i + 1).to_string()), true)
                .await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one create wins: {won:?}");
    let stored = store.get_alias(&name("f"), "live").await.unwrap().unwrap();
    assert_eq!(stored.function_version, (won[0] + 1).to_string());
}

async fn concurrent_version_inserts_one_wins(store: Arc<dyn MetadataStore>) {
    store.insert_function(&function("f")).await.unwrap();
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            let mut v = version("f", 1);
            v.revision_id = format!("rev-{i}");
            store.insert_version(&v).await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one insert wins: {won:?}");
    let stored = store.get_version(&name("f"), 1).await.unwrap().unwrap();
    assert_eq!(stored.revision_id, format!("rev-{}", won[0]));
}
