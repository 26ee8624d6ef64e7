//! `KeyStore`: operator access keys (secrets sealed at rest, shown once,
//! revoked by delete) and the derived credentials of functions' instances.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    ChangeFeed, ChangeKind, ChangeNotice, ChangeStream, KeyStore, LocalChangeFeed, PgKeyStore,
    SqliteKeyStore, StoreError,
};
use tokio::sync::broadcast;

use crate::helpers::{AtRest, Reopen, any_file_holds, any_row_holds, block_on, fresh_pg, race};

/// The master key every opener uses; `other master key` cases use another.
const MASTER: [u8; 32] = [7; 32];

/// A fresh key store, plus what the cases need beyond the trait: another
/// store on the same data (a restart, or another node of a cluster) and a
/// look at the bytes the backend keeps at rest.
struct Keys {
    store: Arc<dyn KeyStore>,
    /// Opens another store on the same data with the given master key.
    reopen: Reopen<dyn KeyStore>,
    /// Whether these bytes occur anywhere in what the backend stores.
    at_rest: AtRest,
}

async fn open_sqlite() -> (Keys, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (path, root) = (dir.path().join("nimbus.db"), dir.path().to_owned());
    let open = move |master: &[u8; 32]| -> Arc<dyn KeyStore> {
        let conn = nimbus_store::open_database(&path).unwrap();
        Arc::new(SqliteKeyStore::new(conn, master))
    };
    let keys = Keys {
        store: open(&MASTER),
        reopen: Box::new(open),
        at_rest: Box::new(move |needle| any_file_holds(&root, needle)),
    };
    (keys, dir)
}

async fn open_pg() -> (Keys, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let changes: Arc<dyn ChangeFeed> = Arc::new(LocalChangeFeed::default());
    let store = PgKeyStore::open(&pg, &MASTER, changes.clone())
        .await
        .unwrap();
    let open = move |master: &[u8; 32]| -> Arc<dyn KeyStore> {
        Arc::new(block_on(PgKeyStore::open(&pg, master, changes.clone())).unwrap())
    };
    let url = db.url.clone();
    let keys = Keys {
        store: Arc::new(store),
        reopen: Box::new(open),
        at_rest: Box::new(move |needle| any_row_holds(&url, needle)),
    };
    (keys, db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_created_key_verifies_with_its_secret,
    created_keys_are_distinct,
    keys_are_listed_in_creation_order_without_secrets,
    import_stores_a_chosen_secret,
    import_again_replaces_secret_and_description,
    import_refuses_weak_keys,
    delete_revokes_at_once,
    a_lookup_racing_a_delete_does_not_undo_it,
    secrets_are_sealed_at_rest,
    another_store_on_the_same_data_reads_the_secret,
    another_master_key_reveals_nothing,
    unknown_keys_have_no_secret,
    function_credentials_are_derived_not_stored,
    function_credentials_are_forgotten_and_replaced,
    concurrent_creates_make_distinct_keys,
    concurrent_imports_of_one_id_leave_one_key,
));

async fn secret_of(store: &dyn KeyStore, id: &str) -> Option<String> {
    store.secret(id).await.unwrap().map(|s| s.to_string())
}

async fn a_created_key_verifies_with_its_secret(k: Keys) {
    let new = k.store.create("ci pipeline").await.unwrap();
    let id = &new.key.access_key_id;
    // Operator keys look like AWS ones (20 characters) and start with
    // NIMB; NIMF is reserved for function credentials.
    assert_eq!(id.len(), 20, "{id}");
    assert!(id.starts_with("NIMB"), "{id}");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    assert_eq!(new.secret_access_key.len(), 40);
    assert_eq!(new.key.description, "ci pipeline");
    assert!(!new.key.created_at.is_empty());
    assert_eq!(
        secret_of(&*k.store, id).await.as_deref(),
        Some(new.secret_access_key.as_str())
    );
    assert_eq!(k.store.list().await.unwrap(), vec![new.key.clone()]);
}

async fn created_keys_are_distinct(k: Keys) {
    let a = k.store.create("a").await.unwrap();
    let b = k.store.create("a").await.unwrap();
    assert_ne!(a.key.access_key_id, b.key.access_key_id);
    assert_ne!(a.secret_access_key, b.secret_access_key);
    assert_eq!(k.store.list().await.unwrap().len(), 2);
}

async fn keys_are_listed_in_creation_order_without_secrets(k: Keys) {
    assert!(k.store.list().await.unwrap().is_empty());
    let mut created = Vec::new();
    for d in ["first", "second", "third"] {
        created.push(k.store.create(d).await.unwrap());
        // Creation times have millisecond precision; ties are ordered by id.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let listed = k.store.list().await.unwrap();
    assert_eq!(
        listed,
        created.iter().map(|n| n.key.clone()).collect::<Vec<_>>()
    );
    let shown = serde_json::to_string(&listed).unwrap();
    for n in &created {
        assert!(
            !shown.contains(&n.secret_access_key),
            "a listed key never carries its secret"
        );
    }
}

async fn import_stores_a_chosen_secret(k: Keys) {
    k.store
        .import(
            "AKIDEXAMPLE12345",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "env",
        )
        .await
        .unwrap();
    assert_eq!(
        secret_of(&*k.store, "AKIDEXAMPLE12345").await.as_deref(),
        Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    );
    let listed = k.store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].access_key_id, "AKIDEXAMPLE12345");
    assert_eq!(listed[0].description, "env");
}

/// The server imports its environment's key at every start: the same id
/// again replaces the secret and description and keeps the creation time.
async fn import_again_replaces_secret_and_description(k: Keys) {
    let id = "AKIDEXAMPLE12345";
    k.store
        .import(id, "first-secret-0123456789", "old")
        .await
        .unwrap();
    let created_at = k.store.list().await.unwrap()[0].created_at.clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    k.store
        .import(id, "second-secret-0123456789", "new")
        .await
        .unwrap();
    assert_eq!(
        secret_of(&*k.store, id).await.as_deref(),
        Some("second-secret-0123456789")
    );
    let listed = k.store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].description, "new");
    assert_eq!(listed[0].created_at, created_at);
    let fresh = (k.reopen)(&MASTER);
    assert_eq!(
        secret_of(&*fresh, id).await.as_deref(),
        Some("second-secret-0123456789"),
        "the replaced secret is what is stored, not only cached"
    );
}

async fn import_refuses_weak_keys(k: Keys) {
    for (id, secret) in [
        ("SHORT", "a-long-enough-secret"),
        ("AKID-WITH-DASHES-1234", "a-long-enough-secret"),
        (&*"A".repeat(129), "a-long-enough-secret"),
        ("AKIDEXAMPLE12345", "too-short"),
        // Reserved for function credentials: such a key would never verify.
        ("NIMF0123456789ABCDEF", "a-long-enough-secret"),
    ] {
        let refused = k.store.import(id, secret, "bad").await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{id:?}: {refused:?}"
        );
    }
    assert!(k.store.list().await.unwrap().is_empty());
    k.store
        .import(&"A".repeat(16), &"s".repeat(16), "the shortest allowed")
        .await
        .unwrap();
}

async fn delete_revokes_at_once(k: Keys) {
    let a = k.store.create("a").await.unwrap();
    let b = k.store.create("b").await.unwrap();
    let id = a.key.access_key_id.clone();
    // Looked up once (a backend may cache what it decrypted).
    assert!(secret_of(&*k.store, &id).await.is_some());
    assert!(k.store.delete(&id).await.unwrap());
    assert!(!k.store.delete(&id).await.unwrap(), "deleted once");
    assert_eq!(secret_of(&*k.store, &id).await, None, "revoked at once");
    assert_eq!(k.store.list().await.unwrap(), vec![b.key.clone()]);
    assert_eq!(secret_of(&*(k.reopen)(&MASTER), &id).await, None);
    assert_eq!(
        secret_of(&*k.store, &b.key.access_key_id).await.as_deref(),
        Some(b.secret_access_key.as_str()),
        "the other key still verifies"
    );
    assert!(!k.store.delete("NIMBNEVERCREATED000").await.unwrap());
}

/// A lookup that read the key just before the delete must not leave the
/// secret behind (in a cache) once the delete has returned.
async fn a_lookup_racing_a_delete_does_not_undo_it(k: Keys) {
    for round in 0..1000 {
        let id = format!("AKIDRACE{round:08}");
        k.store
            .import(&id, "a-secret-long-enough", "race")
            .await
            .unwrap();
        // A store that has not looked the key up yet.
        let cold = (k.reopen)(&MASTER);
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let (cold, id) = (cold.clone(), id.clone());
                tokio::spawn(async move { cold.secret(&id).await.unwrap() })
            })
            .collect();
        assert!(cold.delete(&id).await.unwrap());
        for l in lookups {
            l.await.unwrap();
        }
        assert_eq!(
            secret_of(&*cold, &id).await,
            None,
            "round {round}: a deleted key verified"
        );
    }
}

async fn secrets_are_sealed_at_rest(k: Keys) {
    let created = k.store.create("created").await.unwrap();
    let imported = "imported-secret-that-is-long-enough";
    k.store
        .import("AKIDEXAMPLE12345", imported, "imported")
        .await
        .unwrap();
    // The probe sees the stored data (the ids are stored in clear) ...
    assert!((k.at_rest)(created.key.access_key_id.as_bytes()));
    assert!((k.at_rest)(b"AKIDEXAMPLE12345"));
    // ... and no secret among it.
    assert!(!(k.at_rest)(created.secret_access_key.as_bytes()));
    assert!(!(k.at_rest)(imported.as_bytes()));
}

async fn another_store_on_the_same_data_reads_the_secret(k: Keys) {
    let created = k.store.create("a").await.unwrap();
    let other = (k.reopen)(&MASTER);
    assert_eq!(
        secret_of(&*other, &created.key.access_key_id)
            .await
            .as_deref(),
        Some(created.secret_access_key.as_str())
    );
    assert_eq!(other.list().await.unwrap(), vec![created.key]);
}

async fn another_master_key_reveals_nothing(k: Keys) {
    let created = k.store.create("a").await.unwrap();
    let other = (k.reopen)(&[9; 32]);
    // Never a wrong secret, never the right one: an error.
    assert!(other.secret(&created.key.access_key_id).await.is_err());
}

async fn unknown_keys_have_no_secret(k: Keys) {
    k.store.create("a").await.unwrap();
    assert_eq!(secret_of(&*k.store, "NIMBUNKNOWNKEY00000").await, None);
    assert_eq!(secret_of(&*k.store, "NIMF0000000000000000").await, None);
    assert_eq!(secret_of(&*k.store, "").await, None);
    assert_eq!(k.store.function_of("NIMF0000000000000000"), None);
}

async fn function_credentials_are_derived_not_stored(k: Keys) {
    let creds = k
        .store
        .function_credentials("resize", "2026-01-01T00:00:00Z");
    assert!(creds.access_key_id.starts_with("NIMF"), "{creds:?}");
    assert_eq!(creds.access_key_id.len(), 20);
    assert_eq!(creds.secret_access_key.len(), 40);
    assert_eq!(
        secret_of(&*k.store, &creds.access_key_id).await.as_deref(),
        Some(creds.secret_access_key.as_str())
    );
    assert_eq!(
        k.store.function_of(&creds.access_key_id).as_deref(),
        Some("resize")
    );
    assert!(
        k.store.list().await.unwrap().is_empty(),
        "function credentials are not access keys"
    );
    assert!(!(k.at_rest)(creds.secret_access_key.as_bytes()));
    // Derived: the same on another store with the same master key (a
    // restart, another node), different for another generation, function
    // or master key.
    let other = (k.reopen)(&MASTER);
    assert_eq!(
        other.function_credentials("resize", "2026-01-01T00:00:00Z"),
        creds
    );
    let next = k
        .store
        .function_credentials("resize", "2026-02-01T00:00:00Z");
    assert_ne!(next.access_key_id, creds.access_key_id);
    assert_ne!(next.secret_access_key, creds.secret_access_key);
    let sibling = k
        .store
        .function_credentials("thumb", "2026-01-01T00:00:00Z");
    assert_ne!(sibling.access_key_id, creds.access_key_id);
    let foreign = (k.reopen)(&[9; 32]).function_credentials("resize", "2026-01-01T00:00:00Z");
    assert_ne!(foreign, creds);
}

async fn function_credentials_are_forgotten_and_replaced(k: Keys) {
    let old = k.store.function_credentials("f", "gen-1");
    let keep = k.store.function_credentials("g", "gen-1");
    // A function created again: its new credentials replace the old ones.
    let new = k.store.function_credentials("f", "gen-2");
    assert_eq!(secret_of(&*k.store, &old.access_key_id).await, None);
    assert_eq!(k.store.function_of(&old.access_key_id), None);
    assert_eq!(
        secret_of(&*k.store, &new.access_key_id).await.as_deref(),
        Some(new.secret_access_key.as_str())
    );
    // Registering the same credentials again changes nothing.
    assert_eq!(k.store.function_credentials("f", "gen-2"), new);
    assert_eq!(
        k.store.function_of(&new.access_key_id).as_deref(),
        Some("f")
    );
    // A deleted function's credentials stop verifying.
    k.store.forget_function("f");
    assert_eq!(secret_of(&*k.store, &new.access_key_id).await, None);
    assert_eq!(k.store.function_of(&new.access_key_id), None);
    k.store.forget_function("never-registered");
    assert_eq!(
        k.store.function_of(&keep.access_key_id).as_deref(),
        Some("g"),
        "the other function keeps its credentials"
    );
}

async fn concurrent_creates_make_distinct_keys(k: Keys) {
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let store = k.store.clone();
            tokio::spawn(async move { store.create(&format!("k{i}")).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        let new = h.await.unwrap();
        assert_eq!(
            secret_of(&*k.store, &new.key.access_key_id)
                .await
                .as_deref(),
            Some(new.secret_access_key.as_str())
        );
        ids.push(new.key.access_key_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    assert_eq!(k.store.list().await.unwrap().len(), 16);
}

/// Two nodes starting at once both import the environment's key: both
/// succeed and one key remains.
async fn concurrent_imports_of_one_id_leave_one_key(k: Keys) {
    let won = race(8, |i| {
        let store = k.store.clone();
        async move {
            store
                .import("AKIDEXAMPLE12345", &format!("secret-number-{i:04}"), "env")
                .await
        }
    })
    .await;
    assert_eq!(won.len(), 8, "an import is not a create: none conflicts");
    assert_eq!(k.store.list().await.unwrap().len(), 1);
    let stored = secret_of(&*(k.reopen)(&MASTER), "AKIDEXAMPLE12345")
        .await
        .unwrap();
    assert!(stored.starts_with("secret-number-"), "{stored}");
    assert_eq!(
        secret_of(&*k.store, "AKIDEXAMPLE12345").await.as_deref(),
        Some(stored.as_str()),
        "the store that imported verifies with the secret that was stored last"
    );
}

/// Two nodes of a cluster: key stores on one database, told of each
/// other's writes by a change feed. A single-node backend has no other node
/// (its writes update the only cache there is), so these cases run against
/// the cluster backend only.
struct Nodes {
    a: Arc<dyn KeyStore>,
    b: Arc<dyn KeyStore>,
    feed: Arc<NoticeFeed>,
}

/// The feed between the nodes of these cases: an in-process broadcast, as
/// [`LocalChangeFeed`] is, that can also announce a lost connection. A case
/// publishes what the database's feed delivers when a write commits (that
/// feed is tested on its own, in the `change_feed` suite).
struct NoticeFeed {
    tx: broadcast::Sender<ChangeNotice>,
}

impl NoticeFeed {
    /// Announces that notices may have been missed.
    fn resync(&self) {
        let _ = self.tx.send(ChangeNotice::Resync);
    }
}

#[async_trait]
impl ChangeFeed for NoticeFeed {
    async fn publish(&self, kind: ChangeKind, key: &str) -> Result<(), StoreError> {
        let change = nimbus_store::Change {
            kind,
            key: key.to_string(),
        };
        let _ = self.tx.send(ChangeNotice::Changed(change));
        Ok(())
    }

    fn subscribe(&self) -> ChangeStream {
        ChangeStream::new(&self.tx)
    }
}

async fn open_pg_nodes() -> (Nodes, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let feed = Arc::new(NoticeFeed {
        tx: broadcast::channel(64).0,
    });
    let node = || PgKeyStore::open(&pg, &MASTER, feed.clone());
    let (a, b) = (node().await.unwrap(), node().await.unwrap());
    let nodes = Nodes {
        a: Arc::new(a),
        b: Arc::new(b),
        feed: feed.clone(),
    };
    (nodes, db)
}

conformance!([postgres_nodes = open_pg_nodes()](
    a_key_revoked_on_one_node_stops_verifying_on_the_other,
    a_key_imported_again_verifies_with_its_new_secret_on_every_node,
    a_resync_forgets_what_every_node_cached,
    a_dropped_store_stops_following_the_feed,
));

/// How long a change may take to reach another node.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Waits (at most [`PROPAGATION`]) until `id`'s secret on `store` is `want`.
async fn until_secret_is(store: &dyn KeyStore, id: &str, want: Option<&str>) {
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let got = secret_of(store, id).await;
        if got.as_deref() == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: still {got:?} after {PROPAGATION:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_key_revoked_on_one_node_stops_verifying_on_the_other(n: Nodes) {
    let new = n.a.create("ci").await.unwrap();
    let (id, secret) = (&new.key.access_key_id, &new.secret_access_key);
    // Node b verified a request with it (and may have cached the secret).
    assert_eq!(secret_of(&*n.b, id).await.as_deref(), Some(secret.as_str()));
    assert!(n.a.delete(id).await.unwrap());
    n.feed.publish(ChangeKind::AccessKey, id).await.unwrap();
    until_secret_is(&*n.b, id, None).await;
}

async fn a_key_imported_again_verifies_with_its_new_secret_on_every_node(n: Nodes) {
    let id = "AKIDEXAMPLE12345";
    n.a.import(id, "first-secret-0123456789", "env")
        .await
        .unwrap();
    until_secret_is(&*n.b, id, Some("first-secret-0123456789")).await;
    n.a.import(id, "second-secret-0123456789", "env")
        .await
        .unwrap();
    n.feed.publish(ChangeKind::AccessKey, id).await.unwrap();
    until_secret_is(&*n.b, id, Some("second-secret-0123456789")).await;
}

/// Notices lost with the feed's connection: the resync that follows makes
/// every node forget what it decrypted, so none verifies a revoked key.
async fn a_resync_forgets_what_every_node_cached(n: Nodes) {
    let (k1, k2) = (
        n.a.create("one").await.unwrap(),
        n.a.create("two").await.unwrap(),
    );
    let keep = n.a.create("kept").await.unwrap();
    for k in [&k1, &k2, &keep] {
        let id = &k.key.access_key_id;
        assert!(secret_of(&*n.b, id).await.is_some());
    }
    assert!(n.a.delete(&k1.key.access_key_id).await.unwrap());
    assert!(n.a.delete(&k2.key.access_key_id).await.unwrap());
    n.feed.resync();
    until_secret_is(&*n.b, &k1.key.access_key_id, None).await;
    until_secret_is(&*n.b, &k2.key.access_key_id, None).await;
    let kept = Some(keep.secret_access_key.as_str());
    until_secret_is(&*n.b, &keep.key.access_key_id, kept).await;
}

/// A store follows the feed only while it exists: nothing is left running
/// (nor subscribed) once it is dropped.
async fn a_dropped_store_stops_following_the_feed(n: Nodes) {
    assert_eq!(n.feed.tx.receiver_count(), 2, "each node follows the feed");
    drop(n.b);
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    while n.feed.tx.receiver_count() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped store still follows the feed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(n.feed.tx.receiver_count(), 1, "the other node still does");
}
