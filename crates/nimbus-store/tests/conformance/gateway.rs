//! `GatewayStore`: routes (one per API and route key, JWT secrets sealed at
//! rest), function URLs (one per function, the URL stable across updates)
//! and gateway keys (stored as hashes, one key per hash).

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, PgGatewayStore,
    SqliteGatewayStore,
};

use crate::helpers::{AtRest, Reopen, any_file_holds, any_row_holds, block_on, fresh_pg, race};

const MASTER: [u8; 32] = [7; 32];

/// A fresh gateway store, another store on the same data (a restart, or
/// another node) and a look at the bytes the backend keeps at rest.
struct Gateway {
    store: Arc<dyn GatewayStore>,
    reopen: Reopen<dyn GatewayStore>,
    at_rest: AtRest,
}

async fn open_sqlite() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (path, root) = (dir.path().join("nimbus.db"), dir.path().to_owned());
    let open = move |master: &[u8; 32]| -> Arc<dyn GatewayStore> {
        let conn = nimbus_store::open_database(&path).unwrap();
        Arc::new(SqliteGatewayStore::new(conn, master))
    };
    let gateway = Gateway {
        store: open(&MASTER),
        reopen: Box::new(open),
        at_rest: Box::new(move |needle| any_file_holds(&root, needle)),
    };
    (gateway, dir)
}

async fn open_pg() -> (Gateway, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let store = PgGatewayStore::open(&pg, &MASTER).await.unwrap();
    let open = move |master: &[u8; 32]| -> Arc<dyn GatewayStore> {
        Arc::new(block_on(PgGatewayStore::open(&pg, master)).unwrap())
    };
    let url = db.url.clone();
    let gateway = Gateway {
        store: Arc::new(store),
        reopen: Box::new(open),
        at_rest: Box::new(move |needle| any_row_holds(&url, needle)),
    };
    (gateway, db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    routes_read_back_whole,
    routes_are_listed_in_creation_order,
    one_route_per_api_and_route_key,
    a_route_replaces_another_atomically,
    a_route_may_replace_itself_under_the_same_id,
    a_failed_replacement_keeps_the_old_route,
    delete_route_reports_whether_it_found_it,
    jwt_secrets_are_sealed_at_rest,
    another_master_key_cannot_read_the_routes,
    concurrent_routes_with_one_key_one_wins,
    function_urls_are_listed_by_function,
    a_function_url_update_keeps_its_url,
    url_ids_are_unique,
    concurrent_first_urls_of_one_function_leave_one_url,
    delete_function_url_reports_whether_it_found_it,
    gateway_keys_read_back_in_creation_order,
    gateway_keys_are_unique_by_id_and_by_hash,
    delete_key_reports_whether_it_found_it,
));

const T0: &str = "2026-01-01T00:00:00.000+0000";
const T1: &str = "2026-01-01T00:00:01.000+0000";

fn route(id: &str, api: &str, key: &str, secret: Option<&str>) -> GatewayRouteRow {
    GatewayRouteRow {
        id: id.into(),
        api: api.into(),
        route_key: key.into(),
        config: format!(r#"{{"function":"f","route":"{key}","note":"ünïcode ✓"}}"#),
        secret: secret.map(Into::into),
        created_at: T0.into(),
    }
}

fn url(function: &str, url_id: &str, config: &str) -> FunctionUrlRow {
    FunctionUrlRow {
        function: function.into(),
        url_id: url_id.into(),
        config: config.into(),
        created_at: T0.into(),
    }
}

fn key(id: &str, hash_byte: u8, function: Option<&str>) -> GatewayKeyRow {
    GatewayKeyRow {
        id: id.into(),
        kind: if function.is_some() {
            "function"
        } else {
            "api"
        }
        .into(),
        function: function.map(Into::into),
        hash: format!("{hash_byte:02x}").repeat(32),
        description: format!("key {id}"),
        created_at: T0.into(),
    }
}

fn ids<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| id(r).to_owned()).collect()
}

/// Adds a route that replaces none.
async fn add(store: &dyn GatewayStore, row: GatewayRouteRow) {
    store.put_route(row, None).await.unwrap();
}

async fn route_ids(store: &dyn GatewayStore) -> Vec<String> {
    ids(&store.routes().await.unwrap(), |r| &r.id)
}

async fn routes_read_back_whole(g: Gateway) {
    assert!(g.store.routes().await.unwrap().is_empty());
    let with_secret = route("r1", "http", "GET /users/{id}", Some("hs256 secret ✓"));
    let without = route("r2", "websocket", "$connect", None);
    add(&*g.store, with_secret.clone()).await;
    add(&*g.store, without.clone()).await;
    assert_eq!(
        g.store.routes().await.unwrap(),
        vec![with_secret.clone(), without.clone()],
        "the secret comes back in clear, None stays None"
    );
    assert_eq!(
        (g.reopen)(&MASTER).routes().await.unwrap(),
        vec![with_secret, without],
        "and from another store on the same data"
    );
}

/// By creation time, and in insertion order among routes created in the
/// same instant (ids are random and must not decide the order).
async fn routes_are_listed_in_creation_order(g: Gateway) {
    for id in ["rz", "ra", "rm"] {
        let r = route(id, "http", &format!("GET /{id}"), None);
        add(&*g.store, r).await;
    }
    let mut later = route("r0", "http", "GET /later", None);
    later.created_at = T1.into();
    add(&*g.store, later).await;
    let mut earlier = route("r9", "http", "GET /earlier", None);
    earlier.created_at = "2025-12-31T23:59:59.999+0000".into();
    add(&*g.store, earlier).await;
    assert_eq!(route_ids(&*g.store).await, ["r9", "rz", "ra", "rm", "r0"]);
}

async fn one_route_per_api_and_route_key(g: Gateway) {
    add(&*g.store, route("r1", "http", "GET /a", Some("s1"))).await;
    let taken = g
        .store
        .put_route(route("r2", "http", "GET /a", None), None)
        .await;
    assert!(taken.is_err(), "{taken:?}");
    // Another id is not the guard: the same id twice is refused too.
    let same_id = g
        .store
        .put_route(route("r1", "http", "GET /b", None), None)
        .await;
    assert!(same_id.is_err(), "{same_id:?}");
    assert_eq!(
        g.store.routes().await.unwrap(),
        vec![route("r1", "http", "GET /a", Some("s1"))],
        "the refused puts changed nothing"
    );
    // The same key on the other API, another key on the same API: fine.
    add(&*g.store, route("r3", "websocket", "GET /a", None)).await;
    add(&*g.store, route("r4", "http", "GET /a/b", None)).await;
    assert_eq!(route_ids(&*g.store).await, ["r1", "r3", "r4"]);
}

async fn a_route_replaces_another_atomically(g: Gateway) {
    add(&*g.store, route("r1", "http", "GET /a", Some("old"))).await;
    add(&*g.store, route("r2", "http", "GET /b", None)).await;
    let mut new = route("r3", "http", "GET /a", Some("new"));
    new.created_at = T1.into();
    g.store
        .put_route(new.clone(), Some("r1".into()))
        .await
        .unwrap();
    assert_eq!(
        g.store.routes().await.unwrap(),
        vec![route("r2", "http", "GET /b", None), new]
    );
    // Replacing a route that is not there just adds the new one.
    let mut r4 = route("r4", "http", "GET /c", None);
    r4.created_at = T1.into();
    g.store.put_route(r4, Some("gone".into())).await.unwrap();
    assert_eq!(route_ids(&*g.store).await, ["r2", "r3", "r4"]);
}

/// What redeploying a manifest does: the replacement keeps the old id.
async fn a_route_may_replace_itself_under_the_same_id(g: Gateway) {
    add(&*g.store, route("r1", "http", "GET /a", Some("old"))).await;
    let mut again = route("r1", "http", "GET /a", Some("new"));
    again.config = r#"{"function":"g"}"#.into();
    again.created_at = T1.into();
    g.store
        .put_route(again.clone(), Some("r1".into()))
        .await
        .unwrap();
    assert_eq!(g.store.routes().await.unwrap(), vec![again]);
}

async fn a_failed_replacement_keeps_the_old_route(g: Gateway) {
    let old = route("r1", "http", "GET /a", None);
    let other = route("r2", "http", "GET /b", None);
    add(&*g.store, old.clone()).await;
    add(&*g.store, other.clone()).await;
    // The new route collides with r2, so r1 must not be deleted either.
    let failed = g
        .store
        .put_route(route("r3", "http", "GET /b", None), Some("r1".into()))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(g.store.routes().await.unwrap(), vec![old, other]);
}

async fn delete_route_reports_whether_it_found_it(g: Gateway) {
    assert!(!g.store.delete_route("r1").await.unwrap());
    add(&*g.store, route("r1", "http", "GET /a", Some("s"))).await;
    add(&*g.store, route("r2", "http", "GET /b", None)).await;
    assert!(g.store.delete_route("r1").await.unwrap());
    assert!(!g.store.delete_route("r1").await.unwrap());
    assert_eq!(route_ids(&*g.store).await, ["r2"]);
    // Its key is free again.
    add(&*g.store, route("r3", "http", "GET /a", None)).await;
}

async fn jwt_secrets_are_sealed_at_rest(g: Gateway) {
    let secret = "a-jwt-shared-secret-of-some-length";
    add(&*g.store, route("r1", "http", "GET /private", Some(secret))).await;
    assert!((g.at_rest)(b"GET /private"), "the probe sees the route");
    assert!(!(g.at_rest)(secret.as_bytes()), "but not its secret");
}

async fn another_master_key_cannot_read_the_routes(g: Gateway) {
    add(&*g.store, route("r1", "http", "GET /a", Some("secret"))).await;
    // Never a route with a wrong secret: an error.
    assert!((g.reopen)(&[9; 32]).routes().await.is_err());
}

async fn concurrent_routes_with_one_key_one_wins(g: Gateway) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = g.store.clone();
            tokio::spawn(async move {
                store
                    .put_route(route(&format!("r{i}"), "http", "GET /a", None), None)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(g.store.routes().await.unwrap().len(), 1);
}

async fn function_urls_are_listed_by_function(g: Gateway) {
    assert!(g.store.function_urls().await.unwrap().is_empty());
    for (f, id) in [("m", "u1"), ("a", "u2"), ("Z", "u3")] {
        g.store
            .put_function_url(url(f, id, r#"{"auth":"none"}"#))
            .await
            .unwrap();
    }
    assert_eq!(
        g.store.function_urls().await.unwrap(),
        vec![
            url("Z", "u3", r#"{"auth":"none"}"#),
            url("a", "u2", r#"{"auth":"none"}"#),
            url("m", "u1", r#"{"auth":"none"}"#),
        ],
        "whole, by function name (byte order)"
    );
}

/// A second put for a function changes only its settings: the URL id and
/// the creation time stay (a published URL never changes).
async fn a_function_url_update_keeps_its_url(g: Gateway) {
    g.store
        .put_function_url(url("f", "abc", r#"{"auth":"none"}"#))
        .await
        .unwrap();
    let mut update = url("f", "other", r#"{"auth":"api_key"}"#);
    update.created_at = T1.into();
    g.store.put_function_url(update).await.unwrap();
    assert_eq!(
        g.store.function_urls().await.unwrap(),
        vec![url("f", "abc", r#"{"auth":"api_key"}"#)]
    );
}

async fn url_ids_are_unique(g: Gateway) {
    g.store
        .put_function_url(url("f", "abc", "{}"))
        .await
        .unwrap();
    let taken = g.store.put_function_url(url("g", "abc", "{}")).await;
    assert!(taken.is_err(), "{taken:?}");
    assert_eq!(
        g.store.function_urls().await.unwrap(),
        vec![url("f", "abc", "{}")]
    );
}

/// Two deploys giving a function its URL at once: one URL, the first
/// stored one's id, and no error (a put is a create or an update).
async fn concurrent_first_urls_of_one_function_leave_one_url(g: Gateway) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = g.store.clone();
            tokio::spawn(async move {
                let config = format!(r#"{{"n":{i}}}"#);
                store
                    .put_function_url(url("f", &format!("id{i}"), &config))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let urls = g.store.function_urls().await.unwrap();
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert!(urls[0].url_id.starts_with("id"), "{urls:?}");
}

async fn delete_function_url_reports_whether_it_found_it(g: Gateway) {
    assert!(!g.store.delete_function_url("f").await.unwrap());
    g.store
        .put_function_url(url("f", "abc", "{}"))
        .await
        .unwrap();
    g.store
        .put_function_url(url("g", "def", "{}"))
        .await
        .unwrap();
    assert!(g.store.delete_function_url("f").await.unwrap());
    assert!(!g.store.delete_function_url("f").await.unwrap());
    assert_eq!(
        g.store.function_urls().await.unwrap(),
        vec![url("g", "def", "{}")]
    );
    // A new URL for the function gets whatever id it is given.
    g.store
        .put_function_url(url("f", "xyz", "{}"))
        .await
        .unwrap();
    assert_eq!(g.store.function_urls().await.unwrap()[0].url_id, "xyz");
}

async fn gateway_keys_read_back_in_creation_order(g: Gateway) {
    assert!(g.store.keys().await.unwrap().is_empty());
    // Created in the same instant: insertion order, not id order.
    let mut rows = vec![
        key("kz", 1, Some("f")),
        key("ka", 2, None),
        key("km", 3, None),
    ];
    let mut later = key("k0", 4, None);
    later.created_at = T1.into();
    rows.push(later);
    for r in &rows {
        g.store.insert_key(r.clone()).await.unwrap();
    }
    let mut earlier = key("k9", 5, Some("g"));
    earlier.created_at = "2025-12-31T23:59:59.999+0000".into();
    g.store.insert_key(earlier.clone()).await.unwrap();
    rows.insert(0, earlier);
    assert_eq!(
        g.store.keys().await.unwrap(),
        rows,
        "whole, in creation order"
    );
}

async fn gateway_keys_are_unique_by_id_and_by_hash(g: Gateway) {
    g.store.insert_key(key("k1", 1, None)).await.unwrap();
    let same_id = g.store.insert_key(key("k1", 2, None)).await;
    assert!(same_id.is_err(), "{same_id:?}");
    // Two keys with one hash would make a presented key ambiguous.
    let same_hash = g.store.insert_key(key("k2", 1, Some("f"))).await;
    assert!(same_hash.is_err(), "{same_hash:?}");
    assert_eq!(g.store.keys().await.unwrap(), vec![key("k1", 1, None)]);
    let won = race(8, |i| {
        let store = g.store.clone();
        async move {
            store
                .insert_key(key(&format!("c{i}"), 9, None))
                .await
                .map_err(|_| nimbus_store::StoreError::Conflict("hash".into()))
        }
    })
    .await;
    assert_eq!(won.len(), 1, "one of the keys with one hash is stored");
    assert_eq!(g.store.keys().await.unwrap().len(), 2);
}

async fn delete_key_reports_whether_it_found_it(g: Gateway) {
    assert!(!g.store.delete_key("k1").await.unwrap());
    g.store.insert_key(key("k1", 1, None)).await.unwrap();
    g.store.insert_key(key("k2", 2, None)).await.unwrap();
    assert!(g.store.delete_key("k1").await.unwrap());
    assert!(!g.store.delete_key("k1").await.unwrap());
    assert_eq!(g.store.keys().await.unwrap(), vec![key("k2", 2, None)]);
    // The revoked key's hash can never match again, but may be reused.
    g.store.insert_key(key("k3", 1, None)).await.unwrap();
}
