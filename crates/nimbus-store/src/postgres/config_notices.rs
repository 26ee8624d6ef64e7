//! The notices the configuration stores send, as a listening node receives
//! them from the database: the conformance suites cannot see these (the
//! embedded backend sends none), yet a missing one leaves other nodes
//! serving stale configuration.

use std::time::Duration;

use futures::StreamExt;
use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::scratch::ScratchDatabase;
use super::{CHANGE_CHANNEL, Pg};
use crate::{
    ChangeFeed, FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, KeyStore,
    LocalChangeFeed, MetadataStore, PgGatewayStore, PgKeyStore, PgMetadataStore, PgScheduleStore,
    ScheduleStore,
};

/// A session listening on the change channel, as a node's feed does.
struct Listener {
    pg: Pg,
    /// Keeps the session (and so the `LISTEN`) open.
    _client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
}

impl Listener {
    async fn start(pg: &Pg) -> Self {
        let (client, mut conn) = pg.dedicated().await.unwrap();
        let (tx, payloads) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_string());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
            .await
            .unwrap();
        Listener {
            pg: pg.clone(),
            _client: client,
            payloads,
        }
    }

    /// Asserts that exactly `want` arrived since the last call, in order.
    /// A marker notice sent last bounds the wait: notices arrive in commit
    /// order, so everything committed before it has arrived with it.
    async fn expect(&mut self, want: &[&str]) {
        const END: &str = "end-of-step";
        self.pg
            .client()
            .await
            .unwrap()
            .execute("SELECT pg_notify($1, $2)", &[&CHANGE_CHANNEL, &END])
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            let payload = tokio::time::timeout(Duration::from_secs(5), self.payloads.recv())
                .await
                .expect("the marker notice arrives")
                .unwrap();
            if payload == END {
                break;
            }
            got.push(payload);
        }
        assert_eq!(got, want);
    }
}

async fn scratch() -> (Pg, ScratchDatabase) {
    let db = ScratchDatabase::create().await.unwrap();
    (Pg::connect(&db.url).await.unwrap(), db)
}

fn function(name: &str, version: &str) -> FunctionRecord {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "runtime": "python3",
        "handler": "app.handler",
        "memory_mb": 128,
        "timeout_s": 3,
        "version": version,
        "code_sha256": "ab".repeat(32),
        "code_size": 1,
        "revision_id": "r",
        "created_at": "2026-01-01T00:00:00.000+0000",
        "last_modified": "2026-01-01T00:00:00.000+0000",
    }))
    .unwrap()
}

#[tokio::test]
async fn metadata_writes_announce_their_function() {
    let (pg, _db) = scratch().await;
    let store = PgMetadataStore::open(&pg).await.unwrap();
    let mut listener = Listener::start(&pg).await;
    let f: FunctionName = "f".parse().unwrap();
    store
        .insert_function(&function("f", "$LATEST"))
        .await
        .unwrap();
    assert!(
        store
            .insert_function(&function("f", "$LATEST"))
            .await
            .is_err()
    );
    assert!(
        store
            .update_function(&function("g", "$LATEST"))
            .await
            .is_err()
    );
    listener.expect(&["function:f"]).await;
    store
        .update_function(&function("f", "$LATEST"))
        .await
        .unwrap();
    store.insert_version(&function("f", "1")).await.unwrap();
    let alias: AliasRecord = serde_json::from_value(serde_json::json!({
        "function": "f", "name": "live", "function_version": "1",
        "description": "", "revision_id": "r",
    }))
    .unwrap();
    store.put_alias(&alias, true).await.unwrap();
    store.put_alias(&alias, false).await.unwrap();
    assert!(!store.delete_alias(&f, "none").await.unwrap());
    listener
        .expect(&["function:f", "function:f", "function:f", "function:f"])
        .await;
    assert!(store.delete_alias(&f, "live").await.unwrap());
    assert!(store.delete_version(&f, 1).await.unwrap());
    assert!(store.delete_function(&f).await.unwrap());
    listener
        .expect(&["function:f", "function:f", "function:f"])
        .await;
}

#[tokio::test]
async fn schedule_writes_announce_their_schedule() {
    let (pg, _db) = scratch().await;
    let store = PgScheduleStore::open(&pg).await.unwrap();
    let mut listener = Listener::start(&pg).await;
    let record = serde_json::from_value(serde_json::json!({
        "name": "nightly", "expression": "rate(1 day)", "function": "f", "created_ms": 0,
    }))
    .unwrap();
    store.put(&record, true).await.unwrap();
    assert!(store.put(&record, true).await.is_err());
    store.put(&record, false).await.unwrap();
    assert!(store.delete("nightly").await.unwrap());
    assert!(!store.delete("nightly").await.unwrap());
    listener
        .expect(&["schedule:nightly", "schedule:nightly", "schedule:nightly"])
        .await;
}

#[tokio::test]
async fn key_writes_announce_their_key() {
    let (pg, _db) = scratch().await;
    let changes: std::sync::Arc<dyn ChangeFeed> = std::sync::Arc::new(LocalChangeFeed::default());
    let store = PgKeyStore::open(&pg, &[7; 32], changes).await.unwrap();
    let mut listener = Listener::start(&pg).await;
    let id = "AKIDEXAMPLE12345";
    store
        .import(id, "a-secret-long-enough", "env")
        .await
        .unwrap();
    let created = store.create("ci").await.unwrap().key.access_key_id;
    assert!(store.delete(id).await.unwrap());
    assert!(!store.delete(id).await.unwrap());
    let (imported, created, deleted) = (
        format!("access-key:{id}"),
        format!("access-key:{created}"),
        format!("access-key:{id}"),
    );
    listener.expect(&[&imported, &created, &deleted]).await;
}

#[tokio::test]
async fn gateway_writes_announce_what_they_change() {
    let (pg, _db) = scratch().await;
    let store = PgGatewayStore::open(&pg, &[7; 32]).await.unwrap();
    let mut listener = Listener::start(&pg).await;
    let route = |id: &str| GatewayRouteRow {
        id: id.into(),
        api: "http".into(),
        route_key: "GET /a".into(),
        config: "{}".into(),
        secret: None,
        created_at: "t".into(),
    };
    store.put_route(route("r1"), None).await.unwrap();
    assert!(store.put_route(route("r2"), None).await.is_err());
    store
        .put_route(route("r2"), Some("r1".into()))
        .await
        .unwrap();
    store
        .put_route(route("r2"), Some("r2".into()))
        .await
        .unwrap();
    assert!(store.delete_route("r2").await.unwrap());
    listener
        .expect(&[
            "gateway:r1",
            "gateway:r1",
            "gateway:r2",
            "gateway:r2",
            "gateway:r2",
        ])
        .await;
    let url = FunctionUrlRow {
        function: "f".into(),
        url_id: "u".into(),
        config: "{}".into(),
        created_at: "t".into(),
    };
    store.put_function_url(url.clone()).await.unwrap();
    store.put_function_url(url).await.unwrap();
    assert!(store.delete_function_url("f").await.unwrap());
    let key = GatewayKeyRow {
        id: "k".into(),
        kind: "api".into(),
        function: None,
        hash: "00".repeat(32),
        description: String::new(),
        created_at: "t".into(),
    };
    store.insert_key(key.clone()).await.unwrap();
    assert!(store.insert_key(key).await.is_err());
    assert!(store.delete_key("k").await.unwrap());
    assert!(!store.delete_key("k").await.unwrap());
    listener
        .expect(&[
            "gateway:f",
            "gateway:f",
            "gateway:f",
            "gateway:k",
            "gateway:k",
        ])
        .await;
}
