//! Access keys on PostgreSQL, shared by every node.
//!
//! Secrets are sealed with the master key before they leave the node (every
//! node has the same key), so the database and its backups hold none in
//! clear. Each node caches what it decrypted, since every signed request
//! looks a secret up; that cache is what makes revocation a cluster
//! concern: a key deleted or re-imported through one node must stop
//! verifying with its old secret on all of them. Each write announces the
//! key's id, and each store follows the change feed, evicting the id named
//! (or everything, after a [`ChangeNotice::Resync`]), so a revocation
//! reaches every node as fast as the feed delivers it.
//!
//! A lookup may read a row just before a delete and store the secret after
//! the delete evicted it. The cache counts its evictions, and a lookup
//! fills it only if none happened since it began, so a delete that returned
//! (or a notice that was applied) is never undone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use tokio::task::AbortHandle;

use super::{Pg, is_unique_violation, migrate, notify};
use crate::keys::{
    AccessKey, FUNCTION_KEY_PREFIX, FunctionCredentials, FunctionKeys, ID_ALPHABET, KeyStore,
    MASTER_KEY_BYTES, NewAccessKey, SECRET_ALPHABET, check_import, now, open, random_string, seal,
};
use crate::{ChangeFeed, ChangeKind, ChangeNotice, ChangeStream, StoreError};

const MIGRATIONS: &[&str] = &[
    // v1: access keys, listed by creation time then id.
    r#"CREATE TABLE access_keys (
        access_key_id TEXT COLLATE "C" PRIMARY KEY,
        secret BYTEA NOT NULL,
        description TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
     );
     CREATE INDEX access_keys_by_creation ON access_keys (created_at, access_key_id);"#,
];

/// Decrypted secrets of this node.
#[derive(Default)]
struct SecretCache {
    secrets: HashMap<String, Arc<str>>,
    /// Evictions so far: a lookup that began before one must not fill.
    evictions: u64,
}

impl SecretCache {
    /// The cached secret, or the eviction count a lookup fills against.
    fn get(&self, access_key_id: &str) -> Result<Arc<str>, u64> {
        self.secrets
            .get(access_key_id)
            .cloned()
            .ok_or(self.evictions)
    }

    /// Caches what a lookup that began at `evictions` read, unless an
    /// eviction happened since (the secret read may be revoked already).
    fn fill(&mut self, access_key_id: String, secret: Arc<str>, evictions: u64) {
        if self.evictions == evictions {
            self.secrets.insert(access_key_id, secret);
        }
    }

    fn evict(&mut self, access_key_id: &str) {
        self.secrets.remove(access_key_id);
        self.evictions += 1;
    }

    fn clear(&mut self) {
        self.secrets.clear();
        self.evictions += 1;
    }
}

pub struct PgKeyStore {
    pg: Pg,
    cipher: ChaCha20Poly1305,
    cache: Arc<Mutex<SecretCache>>,
    functions: FunctionKeys,
    /// The task applying the change feed to `cache`; stopped on drop.
    follower: AbortHandle,
}

impl PgKeyStore {
    /// Opens the store, bringing its table to this build's schema, and
    /// follows `changes` for keys changed through other nodes.
    pub async fn open(
        pg: &Pg,
        master_key: &[u8; MASTER_KEY_BYTES],
        changes: Arc<dyn ChangeFeed>,
    ) -> Result<Self, StoreError> {
        migrate(pg, "keys", MIGRATIONS).await?;
        let cache = Arc::new(Mutex::new(SecretCache::default()));
        let follower = follow(changes.subscribe(), cache.clone());
        Ok(Self {
            pg: pg.clone(),
            cipher: ChaCha20Poly1305::new(master_key.into()),
            cache,
            functions: FunctionKeys::new(master_key),
            follower,
        })
    }

    fn cache(&self) -> MutexGuard<'_, SecretCache> {
        lock(&self.cache)
    }

    /// Inserts a key, or with `replace` replaces an existing key's secret
    /// and description (keeping its creation time), announcing it.
    async fn store(
        &self,
        access_key_id: &str,
        secret: &str,
        description: &str,
        replace: bool,
    ) -> Result<AccessKey, StoreError> {
        let sealed = seal(&self.cipher, access_key_id, secret.as_bytes())?;
        let key = AccessKey {
            access_key_id: access_key_id.to_string(),
            description: description.to_string(),
            created_at: now(),
        };
        let sql = if replace {
            "INSERT INTO access_keys (access_key_id, secret, description, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (access_key_id)
             DO UPDATE SET secret = EXCLUDED.secret, description = EXCLUDED.description"
        } else {
            "INSERT INTO access_keys (access_key_id, secret, description, created_at)
             VALUES ($1, $2, $3, $4)"
        };
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            sql,
            &[
                &key.access_key_id,
                &sealed,
                &key.description,
                &key.created_at,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("access key {access_key_id}"))
            } else {
                e.into()
            }
        })?;
        notify(&tx, ChangeKind::AccessKey, access_key_id).await?;
        tx.commit().await?;
        // A replaced secret must not verify from this node's cache either.
        self.cache().evict(access_key_id);
        Ok(key)
    }

    /// Reads and unseals a key's secret; `None` when there is no such key.
    async fn load(&self, access_key_id: &str) -> Result<Option<Arc<str>>, StoreError> {
        let client = self.pg.client().await?;
        // On the request path (a key not cached yet): one round trip.
        let statement = client
            .prepare_cached("SELECT secret FROM access_keys WHERE access_key_id = $1")
            .await?;
        let row = client.query_opt(&statement, &[&access_key_id]).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let plain = open(&self.cipher, access_key_id, row.get(0))?;
        let secret = String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt(format!("secret of {access_key_id} is not UTF-8")))?;
        Ok(Some(secret.into()))
    }
}

impl Drop for PgKeyStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn lock(cache: &Mutex<SecretCache>) -> MutexGuard<'_, SecretCache> {
    // Every update of the cache is whole before it can panic: a poisoned
    // lock guards a consistent cache.
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies the notices of `changes` to `cache` until aborted or the feed
/// ends: a changed key is evicted (the next lookup re-reads it), and after
/// a possible loss of notices every key is.
fn follow(mut changes: ChangeStream, cache: Arc<Mutex<SecretCache>>) -> AbortHandle {
    tokio::spawn(async move {
        while let Some(notice) = changes.next().await {
            match notice {
                ChangeNotice::Changed(change) if change.kind == ChangeKind::AccessKey => {
                    lock(&cache).evict(&change.key)
                }
                ChangeNotice::Changed(_) => {}
                ChangeNotice::Resync => lock(&cache).clear(),
            }
        }
    })
    .abort_handle()
}

#[async_trait]
impl KeyStore for PgKeyStore {
    async fn create(&self, description: &str) -> Result<NewAccessKey, StoreError> {
        let id = random_string("NIMB", 20, ID_ALPHABET)?;
        let secret = random_string("", 40, SECRET_ALPHABET)?;
        let key = self.store(&id, &secret, description, false).await?;
        Ok(NewAccessKey {
            key,
            secret_access_key: secret,
        })
    }

    async fn import(
        &self,
        access_key_id: &str,
        secret: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        check_import(access_key_id, secret)?;
        self.store(access_key_id, secret, description, true)
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<AccessKey>, StoreError> {
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT access_key_id, description, created_at FROM access_keys
                 ORDER BY created_at, access_key_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AccessKey {
                access_key_id: r.get(0),
                description: r.get(1),
                created_at: r.get(2),
            })
            .collect())
    }

    async fn delete(&self, access_key_id: &str) -> Result<bool, StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM access_keys WHERE access_key_id = $1",
                &[&access_key_id],
            )
            .await?;
        if n > 0 {
            notify(&tx, ChangeKind::AccessKey, access_key_id).await?;
        }
        tx.commit().await?;
        self.cache().evict(access_key_id);
        Ok(n > 0)
    }

    async fn secret(&self, access_key_id: &str) -> Result<Option<Arc<str>>, StoreError> {
        if access_key_id.starts_with(FUNCTION_KEY_PREFIX) {
            // Function credentials live in memory only; an unknown one is no key.
            return Ok(self.functions.secret(access_key_id));
        }
        let evictions = match self.cache().get(access_key_id) {
            Ok(secret) => return Ok(Some(secret)),
            Err(evictions) => evictions,
        };
        let secret = self.load(access_key_id).await?;
        if let Some(secret) = &secret {
            self.cache()
                .fill(access_key_id.to_string(), secret.clone(), evictions);
        }
        Ok(secret)
    }

    fn function_credentials(&self, function: &str, generation: &str) -> FunctionCredentials {
        self.functions.register(function, generation)
    }

    fn forget_function(&self, function: &str) {
        self.functions.forget(function);
    }

    fn function_of(&self, access_key_id: &str) -> Option<String> {
        self.functions.function_of(access_key_id)
    }
}
