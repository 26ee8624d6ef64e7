//! The engine follows changes made by another node (cluster mode).
//!
//! The stand-in for "another node" is honest for one process: the change is
//! written straight into the shared stores (never through this engine's
//! control plane, schedules, gateway or queues), then its notice is published
//! on the engine's feed, as a cluster backend delivers it. Each test asserts
//! that the view follows within [`IN_FORCE`]; without the followers the
//! view would keep what it loaded, so each fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::schedule::MissedFires;
use nimbus_core::{AliasRecord, FunctionRecord, Target};
use nimbus_engine::follow::FollowChanges;
use nimbus_engine::messaging::queues::{Queues, ReceiveRequest, SendRequest};
use nimbus_engine::sources::queue_mappings::Mapping;
use nimbus_engine::workflows::{
    ArnScope, CreateMachine, StartExecution, WorkflowLimits, Workflows,
};
use nimbus_gateway::{Gateway, GatewaySettings, KeyKind, KeySpec, RouteSpec, UrlSpec};
use nimbus_store::{ChangeKind, StoredMapping};
use nimbus_testkit::{Options, TestEngine, function_name, wait_until};

/// A change made through one node is in force on every node within this.
const IN_FORCE: Duration = Duration::from_secs(1);

async fn publish(e: &TestEngine, kind: ChangeKind, key: &str) {
    e.stores.changes.publish(kind, key).await.expect("publish");
}

/// The stored record of `name`, as another node would read it.
async fn stored(e: &TestEngine, name: &str) -> FunctionRecord {
    e.stores
        .metadata
        .get_function(&function_name(name))
        .await
        .expect("read")
        .expect("stored")
}

/// Another node's write of a function record: a new revision.
async fn store_update(e: &TestEngine, mut record: FunctionRecord) -> FunctionRecord {
    record.revision_id = next_revision(&record.revision_id);
    e.stores
        .metadata
        .update_function(&record)
        .await
        .expect("update");
    record
}

fn next_revision(previous: &str) -> String {
    format!("{previous}-next")
}

/// A second code package (another handler file), stored as another node's
/// upload would be; its sha256.
async fn other_code(e: &TestEngine) -> String {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(b"def handler(event, context):\n    return {'v': 2}\n")
            .expect("zip write");
        zip.finish().expect("zip finish");
    }
    let package = nimbus_store::Package::check(Bytes::from(out.into_inner())).expect("package");
    e.stores.code.put(&package).await.expect("store code");
    package.info().sha256.clone()
}

async fn follows(cond: impl AsyncFnMut() -> bool) -> bool {
    wait_until(IN_FORCE, cond).await
}

#[tokio::test]
async fn new_code_from_another_node_is_served_by_new_instances() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.invoke("f").await.unwrap();
    let old = e.registry.get(&function_name("f")).unwrap();

    let mut record = stored(&e, "f").await;
    record.code_sha256 = other_code(&e).await;
    let record = store_update(&e, record).await;
    publish(&e, ChangeKind::Function, "f").await;

    assert!(
        follows(async || e
            .registry
            .get(&function_name("f"))
            .unwrap()
            .record
            .code_sha256
            == record.code_sha256)
        .await,
        "the registry runs the new code"
    );
    e.invoke("f").await.unwrap();
    let counts = e.factory.counts("f");
    assert_eq!(
        counts.starts, 2,
        "the warm instance of the old code served nothing"
    );
    assert!(
        wait_until(IN_FORCE, async || e.factory.counts("f").stops == 1).await,
        "the old code's instance stops"
    );
    assert!(!Arc::ptr_eq(
        &old.pool,
        &e.registry.get(&function_name("f")).unwrap().pool
    ));
}

#[tokio::test]
async fn a_configuration_change_from_another_node_reaches_new_instances() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.invoke("f").await.unwrap();

    let mut record = stored(&e, "f").await;
    record
        .config
        .environment
        .insert("STAGE".into(), "two".into());
    store_update(&e, record).await;
    publish(&e, ChangeKind::Function, "f").await;

    assert!(
        follows(async || {
            let d = e.registry.get(&function_name("f")).unwrap();
            d.spec.environment.get("STAGE").map(String::as_str) == Some("two")
        })
        .await,
        "instances start with the new environment"
    );
    e.invoke("f").await.unwrap();
    assert_eq!(e.factory.counts("f").starts, 2);
}

#[tokio::test]
async fn a_metadata_change_from_another_node_keeps_warm_instances() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.invoke("f").await.unwrap();

    let mut record = stored(&e, "f").await;
    record.tags.insert("team".into(), "blue".into());
    record.reserved_concurrency = Some(3);
    store_update(&e, record).await;
    publish(&e, ChangeKind::Function, "f").await;

    assert!(
        follows(async || {
            let d = e.registry.get(&function_name("f")).unwrap();
            d.record.tags.get("team").map(String::as_str) == Some("blue")
        })
        .await,
        "the registry has the new record"
    );
    e.invoke("f").await.unwrap();
    let counts = e.factory.counts("f");
    assert_eq!(
        (counts.starts, counts.invocations),
        (1, 2),
        "the warm instance served"
    );
}

#[tokio::test]
async fn a_notice_of_this_nodes_own_change_changes_nothing() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.invoke("f").await.unwrap();
    let before = e.registry.get(&function_name("f")).unwrap();

    publish(&e, ChangeKind::Function, "f").await;
    e.changes.resync();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = e.registry.get(&function_name("f")).unwrap();
    assert!(Arc::ptr_eq(&before, &after), "the same deployment runs");
    e.invoke("f").await.unwrap();
    assert_eq!(e.factory.counts("f").starts, 1);
}

#[tokio::test]
async fn a_function_deleted_on_another_node_stops_here_and_its_credentials_go() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.invoke("f").await.unwrap();
    let key_id = e
        .registry
        .get(&function_name("f"))
        .unwrap()
        .spec
        .environment["AWS_ACCESS_KEY_ID"]
        .clone();
    assert_eq!(e.stores.keys.function_of(&key_id).as_deref(), Some("f"));

    assert!(
        e.stores
            .metadata
            .delete_function(&function_name("f"))
            .await
            .unwrap()
    );
    publish(&e, ChangeKind::Function, "f").await;

    assert!(
        follows(async || e.registry.get(&function_name("f")).is_none()).await,
        "the function is gone from the registry"
    );
    assert!(e.invoke("f").await.is_err());
    assert_eq!(
        e.stores.keys.function_of(&key_id),
        None,
        "its credentials are forgotten"
    );
    assert!(
        wait_until(IN_FORCE, async || e.factory.counts("f").stops == 1).await,
        "its instance stops"
    );
}

#[tokio::test]
async fn a_function_created_on_another_node_runs_here_with_its_credentials() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    let mut record = stored(&e, "f").await;
    record.config.name = function_name("g");
    record.created_at = "2026-01-01T00:00:00.000+0000".into();
    e.stores.metadata.insert_function(&record).await.unwrap();
    publish(&e, ChangeKind::Function, "g").await;

    assert!(follows(async || e.registry.get(&function_name("g")).is_some()).await);
    e.invoke("g").await.unwrap();
    let d = e.registry.get(&function_name("g")).unwrap();
    let key_id = &d.spec.environment["AWS_ACCESS_KEY_ID"];
    assert_eq!(e.stores.keys.function_of(key_id).as_deref(), Some("g"));
}

#[tokio::test]
async fn versions_and_aliases_from_another_node_resolve_here() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    let name = function_name("f");

    // Another node publishes version 1 and points `live` at it.
    let mut latest = stored(&e, "f").await;
    let mut v1 = latest.clone();
    v1.version = "1".into();
    v1.revision_id = "v1".into();
    e.stores.metadata.insert_version(&v1).await.unwrap();
    latest.last_version = 1;
    store_update(&e, latest).await;
    let alias = AliasRecord {
        function: name.clone(),
        name: "live".into(),
        function_version: "1".into(),
        description: String::new(),
        routing: None,
        revision_id: "a1".into(),
    };
    e.stores.metadata.put_alias(&alias, true).await.unwrap();
    publish(&e, ChangeKind::Function, "f").await;

    assert!(
        follows(async || e
            .registry
            .resolve(&name, Some("live"), 0.0)
            .is_some_and(|d| d.record.version == "1"))
        .await,
        "the alias resolves to version 1"
    );
    e.invoke("f:live").await.unwrap();

    // Then it deletes both.
    assert!(e.stores.metadata.delete_alias(&name, "live").await.unwrap());
    assert!(e.stores.metadata.delete_version(&name, 1).await.unwrap());
    publish(&e, ChangeKind::Function, "f").await;
    assert!(
        follows(async || e.registry.get_alias(&name, "live").is_none()
            && e.registry.get_version(&name, 1).is_none())
        .await,
        "the alias and the version are gone"
    );
    assert!(e.invoke("f:live").await.is_err());
}

#[tokio::test]
async fn schedules_created_changed_and_deleted_on_another_node_are_armed_here() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    let mut record = TestEngine::schedule("tick", "rate(1 minute)", "f", MissedFires::Skip);
    record.created_ms = e.schedules.now().timestamp_millis();
    e.stores.schedules.put(&record, true).await.unwrap();
    publish(&e, ChangeKind::Schedule, "tick").await;

    assert!(
        follows(async || e.schedules.get("tick").await.is_ok()).await,
        "armed"
    );
    e.schedules.advance_clock(Duration::from_secs(60)).unwrap();
    assert!(
        e.wait_for_invocations("f", 1, Duration::from_secs(5)).await,
        "it fires here"
    );

    record.expression = "rate(5 minutes)".into();
    e.stores.schedules.put(&record, false).await.unwrap();
    publish(&e, ChangeKind::Schedule, "tick").await;
    assert!(
        follows(async || e
            .schedules
            .get("tick")
            .await
            .is_ok_and(|v| v.record.expression == "rate(5 minutes)"))
        .await,
        "re-armed with the new expression"
    );

    assert!(e.stores.schedules.delete("tick").await.unwrap());
    publish(&e, ChangeKind::Schedule, "tick").await;
    assert!(
        follows(async || e.schedules.get("tick").await.is_err()).await,
        "disarmed"
    );
}

/// A mapping from queue `q` to `f`, stored as another node's API would.
async fn store_mapping(e: &TestEngine, uuid: &str, enabled: bool) {
    let m = Mapping {
        uuid: uuid.into(),
        target: Target::function("f", None),
        source_arn: "arn:aws:sqs:us-east-1:123456789012:q".into(),
        batch_size: 1,
        batching_window_s: 0,
        enabled,
        report_batch_item_failures: false,
        maximum_concurrency: None,
        last_modified_ms: i64::from(enabled),
    };
    e.stores
        .mappings
        .put_mapping(&StoredMapping {
            uuid: uuid.into(),
            function: "f".into(),
            source_arn: m.source_arn.clone(),
            config: serde_json::to_string(&m).unwrap(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn mappings_created_disabled_and_deleted_on_another_node_follow_here() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    let queues = &e.messaging.queues;
    queues.create("q", &BTreeMap::new(), None).await.unwrap();
    let mappings = &e.messaging.mappings;

    store_mapping(&e, "m-1", true).await;
    publish(&e, ChangeKind::Mapping, "m-1").await;
    assert!(
        follows(async || mappings.running() == ["m-1"]).await,
        "its poller runs"
    );
    queues
        .send("q", SendRequest::body("one".into(), "test"))
        .await
        .unwrap();
    assert!(
        e.wait_for_invocations("f", 1, Duration::from_secs(5)).await,
        "the poller hands the message to f"
    );

    store_mapping(&e, "m-1", false).await;
    publish(&e, ChangeKind::Mapping, "m-1").await;
    assert!(
        follows(async || mappings.running().is_empty()).await,
        "disabled: stopped"
    );

    store_mapping(&e, "m-1", true).await;
    publish(&e, ChangeKind::Mapping, "m-1").await;
    assert!(
        follows(async || mappings.running() == ["m-1"]).await,
        "enabled again"
    );

    assert!(e.stores.mappings.delete_mapping("m-1").await.unwrap());
    publish(&e, ChangeKind::Mapping, "m-1").await;
    assert!(
        follows(async || mappings.running().is_empty()).await,
        "deleted: stopped"
    );
}

#[tokio::test]
async fn a_message_sent_through_another_node_wakes_a_long_poll_here_at_once() {
    let e = TestEngine::start(Options::default()).await;
    let here = e.messaging.queues.clone();
    here.create("q", &BTreeMap::new(), None).await.unwrap();
    // Another node's queues: the same stores, long polls of its own.
    let there = Queues::new(
        e.stores.queue_catalog.clone(),
        e.stores.queue_data.clone(),
        here.arns.clone(),
        e.messaging.grants.clone(),
    );

    let poll = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let got = here
            .receive(
                "q",
                ReceiveRequest {
                    max: 1,
                    visibility_s: None,
                    wait: Some(Duration::from_secs(20)),
                },
                None,
            )
            .await
            .unwrap();
        (got.len(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    there
        .send("q", SendRequest::body("hi".into(), "test"))
        .await
        .unwrap();
    publish(&e, ChangeKind::Messages, "q").await;

    let (n, waited) = tokio::time::timeout(IN_FORCE * 2, poll)
        .await
        .expect("the long poll returned")
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        waited < IN_FORCE + Duration::from_millis(100),
        "woken at once ({waited:?})"
    );
}

#[tokio::test]
async fn a_state_machine_created_on_another_node_runs_here() {
    let e = TestEngine::start(Options::default()).await;
    let there = Workflows::new(
        e.stores.workflows.clone(),
        e.invoker.clone(),
        ArnScope {
            region: e.config.region.clone(),
            account_id: e.config.account_id.clone(),
        },
        WorkflowLimits::default(),
    );
    let machine = there
        .create_machine(CreateMachine {
            name: "sm".into(),
            definition: r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#.into(),
            role_arn: None,
            machine_type: None,
        })
        .await
        .unwrap();
    publish(&e, ChangeKind::StateMachine, &machine.arn).await;

    let started = e
        .workflows
        .start(StartExecution {
            machine: "sm".into(),
            name: None,
            input: None,
        })
        .await;
    assert!(started.is_ok(), "{started:?}");
}

#[tokio::test]
async fn a_resync_reloads_everything_missed() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    e.deploy("gone").await;
    let queues = &e.messaging.queues;
    queues.create("q", &BTreeMap::new(), None).await.unwrap();

    // Changes whose notices were lost.
    let mut record = stored(&e, "f").await;
    record.config.name = function_name("g");
    e.stores.metadata.insert_function(&record).await.unwrap();
    assert!(
        e.stores
            .metadata
            .delete_function(&function_name("gone"))
            .await
            .unwrap()
    );
    let schedule = TestEngine::schedule("tick", "rate(1 minute)", "f", MissedFires::Skip);
    e.stores.schedules.put(&schedule, true).await.unwrap();
    store_mapping(&e, "m-1", true).await;
    e.changes.resync();

    assert!(
        follows(async || e.registry.get(&function_name("g")).is_some()
            && e.registry.get(&function_name("gone")).is_none()
            && e.schedules.get("tick").await.is_ok()
            && e.messaging.mappings.running() == ["m-1"])
        .await,
        "created, deleted, armed and polling after the resync"
    );
}

/// This node's gateway and another node's, on the same store; this one
/// follows the feed.
async fn two_gateways(e: &TestEngine) -> (Arc<Gateway>, Gateway) {
    let subscription = e.stores.changes.subscribe();
    let load = async || {
        Gateway::load(
            e.stores.gateway.clone(),
            e.control.clone(),
            e.dispatcher.clone(),
            GatewaySettings {
                public_url: "http://127.0.0.1:9".into(),
                region: e.config.region.clone(),
                account_id: e.config.account_id.clone(),
            },
        )
        .await
        .unwrap()
    };
    let here = Arc::new(load().await);
    let followers = Arc::new(FollowChanges::new(
        subscription,
        e.stores.changes.clone(),
        vec![here.clone()],
    ));
    tokio::spawn(nimbus_engine::lifecycle::Service::run(
        followers,
        nimbus_engine::lifecycle::Context {
            cancel: tokio_util::sync::CancellationToken::new(),
        },
    ));
    (here, load().await)
}

fn route_found(g: &Gateway, path: &str) -> bool {
    matches!(
        g.snapshot().load().http.lookup(&http::Method::GET, path),
        nimbus_gateway::Lookup::Found(_)
    )
}

/// The API-key hashes the URL of `f` accepts, in this gateway's snapshot.
fn url_key_count(g: &Gateway) -> Option<usize> {
    let snap = g.snapshot().load_full();
    let target = snap.urls.values().next()?;
    match &target.auth {
        nimbus_gateway::snapshot::Auth::ApiKey(hashes) => Some(hashes.len()),
        _ => None,
    }
}

#[tokio::test]
async fn routes_urls_and_keys_changed_on_another_node_are_served_here() {
    let e = TestEngine::start(Options::default()).await;
    e.deploy("f").await;
    let (here, there) = two_gateways(&e).await;

    let spec: RouteSpec =
        serde_json::from_value(serde_json::json!({"route": "GET /hello", "function": "f"}))
            .unwrap();
    let route = there.add_route(spec, false).await.unwrap();
    publish(&e, ChangeKind::Gateway, &route.id).await;
    assert!(
        follows(async || route_found(&here, "/hello")).await,
        "the route serves here"
    );

    let url: UrlSpec = serde_json::from_value(serde_json::json!({"auth": "api_key"})).unwrap();
    there.put_url("f", url).await.unwrap();
    publish(&e, ChangeKind::Gateway, "f").await;
    assert!(
        follows(async || url_key_count(&here) == Some(0)).await,
        "the URL serves here"
    );

    let key = there
        .create_key(KeySpec {
            kind: KeyKind::Api,
            function: Some("f".into()),
            global: false,
            description: String::new(),
        })
        .await
        .unwrap();
    publish(&e, ChangeKind::Gateway, &key.key.id).await;
    assert!(
        follows(async || url_key_count(&here) == Some(1)).await,
        "the key is accepted"
    );

    there.remove_key(&key.key.id).await.unwrap();
    publish(&e, ChangeKind::Gateway, &key.key.id).await;
    assert!(
        follows(async || url_key_count(&here) == Some(0)).await,
        "the key is revoked"
    );

    there.remove_route(&route.id).await.unwrap();
    publish(&e, ChangeKind::Gateway, &route.id).await;
    assert!(
        follows(async || !route_found(&here, "/hello")).await,
        "the route is gone"
    );
}
