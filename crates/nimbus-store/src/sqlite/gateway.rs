//! The embedded gateway store: routes, function URLs and gateway keys in
//! `nimbus.db`, JWT secrets sealed with the master key.

use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use rusqlite::{Connection, params};

use super::{Db, with_db};
use crate::StoreError;
use crate::gateway::{
    FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, open_route_secret,
    seal_route_secret,
};

pub struct SqliteGatewayStore {
    db: Db,
    cipher: Arc<ChaCha20Poly1305>,
}

impl SqliteGatewayStore {
    pub fn new(conn: Connection, master_key: &[u8; 32]) -> Self {
        Self {
            db: super::durable(conn),
            cipher: Arc::new(ChaCha20Poly1305::new(master_key.into())),
        }
    }
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
                    row.secret = Some(open_route_secret(&self.cipher, &row.id, &sealed)?);
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
        let sealed = seal_route_secret(&self.cipher, &row)?;
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
