//! What the HTTP gateway serves: routes, function URLs and gateway keys.
//!
//! The gateway keeps its whole configuration in memory and rebuilds it from
//! here when something changes, so these tables are read at startup and after
//! each change, never per request. Route settings are a JSON document (like
//! function records) because their shape belongs to the gateway crate; the
//! store only knows what it must enforce: one route per `(api, route key)`,
//! one URL per function. A JWT shared secret is sealed with the master key
//! (as access-key secrets are); gateway keys are stored as SHA-256 hashes only.

use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use rusqlite::{Connection, params};

use crate::StoreError;
use crate::keys::{open, seal};
use crate::sqlite::{Db, with_db};

/// A declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRouteRow {
    pub id: String,
    /// `http` or `websocket`.
    pub api: String,
    /// `GET /users/{id}`, `$default`, `$connect`, …
    pub route_key: String,
    /// The gateway's settings document (JSON).
    pub config: String,
    /// A JWT shared secret, in clear here; sealed at rest.
    pub secret: Option<String>,
    pub created_at: String,
}

/// A function URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrlRow {
    pub function: String,
    pub url_id: String,
    /// The gateway's settings document (JSON).
    pub config: String,
    pub created_at: String,
}

/// A gateway key (function key or API key), by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayKeyRow {
    pub id: String,
    /// `function` or `api`.
    pub kind: String,
    /// Only valid for this function's routes; `None`: every route.
    pub function: Option<String>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    pub description: String,
    pub created_at: String,
}

#[async_trait]
pub trait GatewayStore: Send + Sync + 'static {
    /// Every route, whole (secrets in clear), by creation time and, among
    /// routes created in the same instant, in insertion order. A secret that
    /// cannot be unsealed (another master key) is an error.
    async fn routes(&self) -> Result<Vec<GatewayRouteRow>, StoreError>;
    /// Inserts `row`, deleting the route `replaces` in the same transaction.
    /// `row.id` may be `replaces` itself (a redeploy keeps the id); a
    /// `replaces` that names no route just inserts. Fails, changing nothing
    /// (the deletion included), when another route has the id or the
    /// `(api, route_key)`; the gateway checks for overlaps first, so the
    /// error is a guard and need not be `Conflict`. The secret is sealed at rest.
    async fn put_route(
        &self,
        row: GatewayRouteRow,
        replaces: Option<String>,
    ) -> Result<(), StoreError>;
    /// Returns whether the route existed.
    async fn delete_route(&self, id: &str) -> Result<bool, StoreError>;
    /// Every function URL, whole, by function name in byte order.
    async fn function_urls(&self) -> Result<Vec<FunctionUrlRow>, StoreError>;
    /// Creates the URL of `row.function`, or, when it has one, replaces only
    /// its config: the `url_id` and `created_at` stay (a published URL never
    /// changes). Fails, changing nothing, when another function has the `url_id`.
    async fn put_function_url(&self, row: FunctionUrlRow) -> Result<(), StoreError>;
    /// Returns whether the function had a URL.
    async fn delete_function_url(&self, function: &str) -> Result<bool, StoreError>;
    /// Every gateway key, whole, by creation time and, among keys created in
    /// the same instant, in insertion order.
    async fn keys(&self) -> Result<Vec<GatewayKeyRow>, StoreError>;
    /// Stores a key as given (only its hash: the value never reaches the
    /// store). Fails, changing nothing, when the id or the hash is taken.
    async fn insert_key(&self, row: GatewayKeyRow) -> Result<(), StoreError>;
    /// Returns whether the key existed.
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;
}

pub struct SqliteGatewayStore {
    db: Db,
    cipher: Arc<ChaCha20Poly1305>,
}

impl SqliteGatewayStore {
    pub fn new(conn: Connection, master_key: &[u8; 32]) -> Self {
        Self {
            db: crate::sqlite::durable(conn),
            cipher: Arc::new(ChaCha20Poly1305::new(master_key.into())),
        }
    }
}

/// Associated data binding a sealed secret to its route.
fn secret_aad(id: &str) -> String {
    format!("gateway-route:{id}")
}

#[async_trait]
impl GatewayStore for SqliteGatewayStore {
    async fn routes(&self) -> Result<Vec<GatewayRouteRow>, StoreError> {
        let rows: Vec<(GatewayRouteRow, Option<Vec<u8>>)> = with_db(&self.db, |c| {
            let mut stmt = c.prepare(
                "SELECT id, api, route_key, config, secret, created_at FROM gateway_routes ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    GatewayRouteRow {
                        id: r.get(0)?,
                        api: r.get(1)?,
                        route_key: r.get(2)?,
                        config: r.get(3)?,
                        secret: None,
                        created_at: r.get(5)?,
                    },
                    r.get(4)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
        rows.into_iter()
            .map(|(mut row, sealed)| {
                if let Some(sealed) = sealed {
                    let plain = open(&self.cipher, &secret_aad(&row.id), &sealed)?;
                    row.secret = Some(String::from_utf8(plain).map_err(|_| {
                        StoreError::Corrupt(format!("secret of route {} is not UTF-8", row.id))
                    })?);
                }
                Ok(row)
            })
            .collect()
    }

    async fn put_route(
        &self,
        row: GatewayRouteRow,
        replaces: Option<String>,
    ) -> Result<(), StoreError> {
        let sealed = match &row.secret {
            Some(s) => Some(seal(&self.cipher, &secret_aad(&row.id), s.as_bytes())?),
            None => None,
        };
        with_db(&self.db, move |c| {
            let tx = c.transaction()?;
            if let Some(old) = replaces {
                tx.execute("DELETE FROM gateway_routes WHERE id = ?1", [old])?;
            }
            tx.execute(
                "INSERT INTO gateway_routes(id, api, route_key, config, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.id, row.api, row.route_key, row.config, sealed, row.created_at],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_route(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let n = with_db(&self.db, move |c| {
            Ok(c.execute("DELETE FROM gateway_routes WHERE id = ?1", [id])?)
        })
        .await?;
        Ok(n > 0)
    }

    async fn function_urls(&self) -> Result<Vec<FunctionUrlRow>, StoreError> {
        with_db(&self.db, |c| {
            let mut stmt = c.prepare(
                "SELECT function, url_id, config, created_at FROM gateway_function_urls ORDER BY function",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(FunctionUrlRow {
                    function: r.get(0)?,
                    url_id: r.get(1)?,
                    config: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_function_url(&self, row: FunctionUrlRow) -> Result<(), StoreError> {
        with_db(&self.db, move |c| {
            c.execute(
                "INSERT INTO gateway_function_urls(function, url_id, config, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(function) DO UPDATE SET config = excluded.config",
                params![row.function, row.url_id, row.config, row.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_function_url(&self, function: &str) -> Result<bool, StoreError> {
        let f = function.to_owned();
        let n = with_db(&self.db, move |c| {
            Ok(c.execute("DELETE FROM gateway_function_urls WHERE function = ?1", [f])?)
        })
        .await?;
        Ok(n > 0)
    }

    async fn keys(&self) -> Result<Vec<GatewayKeyRow>, StoreError> {
        with_db(&self.db, |c| {
            let mut stmt = c.prepare(
                "SELECT id, kind, function, hash, description, created_at FROM gateway_keys ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(GatewayKeyRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    function: r.get(2)?,
                    hash: r.get(3)?,
                    description: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn insert_key(&self, row: GatewayKeyRow) -> Result<(), StoreError> {
        with_db(&self.db, move |c| {
            c.execute(
                "INSERT INTO gateway_keys(id, kind, function, hash, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.id, row.kind, row.function, row.hash, row.description, row.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let n = with_db(&self.db, move |c| {
            Ok(c.execute("DELETE FROM gateway_keys WHERE id = ?1", [id])?)
        })
        .await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::OptionalExtension;

    use super::*;

    fn route_exists(c: &Connection, id: &str) -> bool {
        c.query_row("SELECT 1 FROM gateway_routes WHERE id = ?1", [id], |_| {
            Ok(())
        })
        .optional()
        .unwrap()
        .is_some()
    }

    fn route(id: &str, key: &str, secret: Option<&str>) -> GatewayRouteRow {
        GatewayRouteRow {
            id: id.into(),
            api: "http".into(),
            route_key: key.into(),
            config: "{}".into(),
            secret: secret.map(Into::into),
            created_at: "2025-01-01T00:00:00.000+0000".into(),
        }
    }

    #[tokio::test]
    async fn routes_urls_keys_round_trip_with_sealed_secret() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let master = [7u8; 32];
        let store = SqliteGatewayStore::new(crate::open_database(&db).unwrap(), &master);
        store
            .put_route(route("r1", "GET /a", Some("hs256-secret")), None)
            .await
            .unwrap();
        // Same key twice is refused by the schema.
        assert!(
            store
                .put_route(route("r2", "GET /a", None), None)
                .await
                .is_err()
        );
        // ... unless it replaces the old one.
        store
            .put_route(route("r2", "GET /a", None), Some("r1".into()))
            .await
            .unwrap();
        store
            .put_route(route("r3", "POST /b", Some("s3")), None)
            .await
            .unwrap();
        let routes = store.routes().await.unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].secret.as_deref(), Some("s3"));
        // At rest the secret is sealed.
        {
            let c = store.db.lock().unwrap();
            assert!(!route_exists(&c, "r1"));
            let sealed: Vec<u8> = c
                .query_row("SELECT secret FROM gateway_routes WHERE id='r3'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(!sealed.windows(2).any(|w| w == b"s3"));
        }
        assert!(store.delete_route("r3").await.unwrap());
        assert!(!store.delete_route("r3").await.unwrap());

        let url = FunctionUrlRow {
            function: "f".into(),
            url_id: "abc".into(),
            config: "{}".into(),
            created_at: "t".into(),
        };
        store.put_function_url(url.clone()).await.unwrap();
        store
            .put_function_url(FunctionUrlRow {
                config: r#"{"auth":"none"}"#.into(),
                url_id: "other".into(),
                ..url
            })
            .await
            .unwrap();
        let urls = store.function_urls().await.unwrap();
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].url_id, "abc", "the URL id survives a config update");
        assert!(store.delete_function_url("f").await.unwrap());

        let key = GatewayKeyRow {
            id: "k1".into(),
            kind: "api".into(),
            function: None,
            hash: "00".repeat(32),
            description: "d".into(),
            created_at: "t".into(),
        };
        store.insert_key(key.clone()).await.unwrap();
        assert_eq!(store.keys().await.unwrap(), vec![key.clone()]);
        assert!(store.delete_key("k1").await.unwrap());

        // Keys created within the same second are listed in creation order,
        // not by their random ids.
        for (i, id) in ["kz", "ka", "km"].into_iter().enumerate() {
            store
                .insert_key(GatewayKeyRow {
                    id: id.into(),
                    hash: format!("{i:02}").repeat(32),
                    ..key.clone()
                })
                .await
                .unwrap();
        }
        let ids: Vec<String> = store
            .keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["kz", "ka", "km"]);
    }
}
