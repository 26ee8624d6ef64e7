//! The embedded key store: access keys in `nimbus.db`, secrets sealed under
//! the master key (see [`crate::KeyStore`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, with_db};
use crate::StoreError;
use crate::keys::{
    AccessKey, FUNCTION_KEY_PREFIX, FunctionCredentials, FunctionKeys, ID_ALPHABET, KeyStore,
    MASTER_KEY_BYTES, NewAccessKey, SECRET_ALPHABET, check_import, now, open, random_string, seal,
};

pub struct SqliteKeyStore {
    db: Db,
    cipher: ChaCha20Poly1305,
    /// Decrypted secrets. Filled and emptied only while the database lock
    /// is held, in the same critical section as the row's read or write, so
    /// a lookup racing a delete cannot put the deleted secret back.
    cache: Arc<RwLock<HashMap<String, Arc<str>>>>,
    functions: FunctionKeys,
}

impl SqliteKeyStore {
    pub fn new(conn: Connection, master_key: &[u8; MASTER_KEY_BYTES]) -> Self {
        Self {
            db: super::durable(conn),
            cipher: ChaCha20Poly1305::new(master_key.into()),
            cache: Arc::new(RwLock::new(HashMap::new())),
            functions: FunctionKeys::new(master_key),
        }
    }

    fn seal(&self, access_key_id: &str, secret: &str) -> Result<Vec<u8>, StoreError> {
        seal(&self.cipher, access_key_id, secret.as_bytes())
    }

    async fn insert(
        &self,
        access_key_id: &str,
        secret: &str,
        description: &str,
        replace: bool,
    ) -> Result<AccessKey, StoreError> {
        let sealed = self.seal(access_key_id, secret)?;
        let key = AccessKey {
            access_key_id: access_key_id.to_string(),
            description: description.to_string(),
            created_at: now(),
        };
        let k = key.clone();
        let (cache, id, secret) = (self.cache.clone(), access_key_id.to_string(), secret.into());
        with_db(&self.db, move |c| {
            let sql = if replace {
                "INSERT INTO access_keys(access_key_id, secret, description, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(access_key_id) DO UPDATE SET secret = excluded.secret, description = excluded.description"
            } else {
                "INSERT INTO access_keys(access_key_id, secret, description, created_at) VALUES (?1, ?2, ?3, ?4)"
            };
            c.execute(sql, params![k.access_key_id, sealed, k.description, k.created_at])?;
            cache.write().unwrap().insert(id, secret);
            Ok(())
        })
        .await?;
        Ok(key)
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn create(&self, description: &str) -> Result<NewAccessKey, StoreError> {
        let id = random_string("NIMB", 20, ID_ALPHABET)?;
        let secret = random_string("", 40, SECRET_ALPHABET)?;
        let key = self.insert(&id, &secret, description, false).await?;
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
        self.insert(access_key_id, secret, description, true)
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<AccessKey>, StoreError> {
        with_db(&self.db, |c| {
            let mut stmt = c.prepare("SELECT access_key_id, description, created_at FROM access_keys ORDER BY created_at, access_key_id")?;
            let rows = stmt.query_map([], |r| Ok(AccessKey { access_key_id: r.get(0)?, description: r.get(1)?, created_at: r.get(2)? }))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete(&self, access_key_id: &str) -> Result<bool, StoreError> {
        let (id, cache) = (access_key_id.to_string(), self.cache.clone());
        let n = with_db(&self.db, move |c| {
            let n = c.execute("DELETE FROM access_keys WHERE access_key_id = ?1", [&id])?;
            cache.write().unwrap().remove(&id);
            Ok(n)
        })
        .await?;
        Ok(n > 0)
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

    async fn secret(&self, access_key_id: &str) -> Result<Option<Arc<str>>, StoreError> {
        if access_key_id.starts_with(FUNCTION_KEY_PREFIX) {
            // Function credentials live in memory only; an unknown one is no key.
            return Ok(self.functions.secret(access_key_id));
        }
        if let Some(s) = self.cache.read().unwrap().get(access_key_id) {
            return Ok(Some(s.clone()));
        }
        let (id, cache, cipher) = (
            access_key_id.to_string(),
            self.cache.clone(),
            self.cipher.clone(),
        );
        with_db(&self.db, move |c| {
            let sealed: Option<Vec<u8>> = c
                .query_row(
                    "SELECT secret FROM access_keys WHERE access_key_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(sealed) = sealed else {
                return Ok(None);
            };
            let plain = open(&cipher, &id, &sealed)?;
            let secret: Arc<str> = String::from_utf8(plain)
                .map_err(|_| StoreError::Corrupt(format!("secret of {id} is not UTF-8")))?
                .into();
            cache.write().unwrap().insert(id, secret.clone());
            Ok(Some(secret))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::load_or_create_master_key;

    #[tokio::test]
    async fn create_lookup_delete_and_encryption_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let master = load_or_create_master_key(&dir.path().join("master.key")).unwrap();
        assert_eq!(
            load_or_create_master_key(&dir.path().join("master.key")).unwrap(),
            master
        );
        let store = SqliteKeyStore::new(crate::open_database(&db).unwrap(), &master);
        let k = store.create("ci").await.unwrap();
        assert!(k.key.access_key_id.starts_with("NIMB") && k.key.access_key_id.len() == 20);
        assert_eq!(k.secret_access_key.len(), 40);
        // A fresh store (empty cache) decrypts from the database.
        let again = SqliteKeyStore::new(crate::open_database(&db).unwrap(), &master);
        assert_eq!(
            again.secret(&k.key.access_key_id).await.unwrap().as_deref(),
            Some(k.secret_access_key.as_str())
        );
        // The secret is not in the database file in clear.
        let raw = std::fs::read(&db).unwrap();
        let wal = std::fs::read(dir.path().join("db-wal")).unwrap_or_default();
        let needle = k.secret_access_key.as_bytes();
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle)
        );
        // A different master key cannot read it.
        let other = SqliteKeyStore::new(crate::open_database(&db).unwrap(), &[7u8; 32]);
        assert!(other.secret(&k.key.access_key_id).await.is_err());
        assert_eq!(again.list().await.unwrap().len(), 1);
        assert!(again.delete(&k.key.access_key_id).await.unwrap());
        assert!(again.secret(&k.key.access_key_id).await.unwrap().is_none());
        store
            .import(
                "AKIDEXAMPLE12345",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "env",
            )
            .await
            .unwrap();
        assert!(store.import("short", "x", "bad").await.is_err());
    }
}
