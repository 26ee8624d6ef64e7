//! The gateway's routes, function URLs and keys on PostgreSQL, shared by
//! every node.
//!
//! Each node's gateway serves from a snapshot compiled in memory, so every
//! write announces what it changed and the other nodes rebuild. Settings
//! stay the gateway's JSON text (`TEXT`, not `JSONB`: the store hands back
//! exactly the document it was given). Listings in creation order break
//! ties by an identity column, the insertion order SQLite gets from its
//! rowid. A unique violation is reported as a `Conflict` naming what was
//! taken, read from the constraint that refused the row.

use async_trait::async_trait;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use tokio_postgres::types::ToSql;

use super::{Pg, is_unique_violation, migrate, notify};
use crate::gateway::{
    FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, open_route_secret,
    seal_route_secret,
};
use crate::{ChangeKind, StoreError};

const MIGRATIONS: &[&str] = &[
    // v1: routes (one per API and route key), function URLs (one per
    // function, one function per URL id) and keys (one per hash). The
    // `(created_at, seq)` indexes serve the listings.
    r#"CREATE TABLE gateway_routes (
        id TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        api TEXT NOT NULL,
        route_key TEXT NOT NULL,
        config TEXT NOT NULL,
        secret BYTEA,
        created_at TEXT COLLATE "C" NOT NULL,
        CONSTRAINT gateway_routes_route_key UNIQUE (api, route_key)
     );
     CREATE INDEX gateway_routes_by_creation ON gateway_routes (created_at, seq);
     CREATE TABLE gateway_function_urls (
        function TEXT COLLATE "C" PRIMARY KEY,
        url_id TEXT NOT NULL CONSTRAINT gateway_function_urls_url_id UNIQUE,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE gateway_keys (
        id TEXT PRIMARY KEY,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        kind TEXT NOT NULL,
        function TEXT,
        hash TEXT NOT NULL CONSTRAINT gateway_keys_hash UNIQUE,
        description TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
     );
     CREATE INDEX gateway_keys_by_creation ON gateway_keys (created_at, seq);"#,
];

pub struct PgGatewayStore {
    pg: Pg,
    cipher: ChaCha20Poly1305,
}

impl PgGatewayStore {
    /// Opens the store, bringing its tables to this build's schema.
    pub async fn open(pg: &Pg, master_key: &[u8; 32]) -> Result<Self, StoreError> {
        migrate(pg, "gateway", MIGRATIONS).await?;
        Ok(Self {
            pg: pg.clone(),
            cipher: ChaCha20Poly1305::new(master_key.into()),
        })
    }

    /// Runs `sql`, a delete of the row `key` (its `$1`), announcing it if
    /// there was one.
    async fn delete(&self, sql: &str, key: &str) -> Result<bool, StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute(sql, &[&key]).await?;
        if n > 0 {
            notify(&tx, ChangeKind::Gateway, key).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Runs one insert and announces `key`, mapping a unique violation to
    /// a `Conflict` through `taken` (given the constraint's name).
    async fn insert(
        &self,
        key: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        taken: impl FnOnce(&str) -> String,
    ) -> Result<(), StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        tx.execute(sql, params)
            .await
            .map_err(|e| conflict(e, taken))?;
        notify(&tx, ChangeKind::Gateway, key).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `e` as a `Conflict` naming what `taken` says the violated constraint
/// guards, or as a backend error.
fn conflict(e: tokio_postgres::Error, taken: impl FnOnce(&str) -> String) -> StoreError {
    if !is_unique_violation(&e) {
        return e.into();
    }
    let constraint = e
        .as_db_error()
        .and_then(|d| d.constraint())
        .unwrap_or_default();
    StoreError::Conflict(taken(constraint))
}

fn route_row(r: &tokio_postgres::Row) -> (GatewayRouteRow, Option<Vec<u8>>) {
    let row = GatewayRouteRow {
        id: r.get("id"),
        api: r.get("api"),
        route_key: r.get("route_key"),
        config: r.get("config"),
        secret: None,
        created_at: r.get("created_at"),
    };
    (row, r.get("secret"))
}

#[async_trait]
impl GatewayStore for PgGatewayStore {
    async fn routes(&self) -> Result<Vec<GatewayRouteRow>, StoreError> {
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT id, api, route_key, config, secret, created_at FROM gateway_routes
                 ORDER BY created_at, seq",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let (mut row, sealed) = route_row(r);
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
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        if let Some(old) = &replaces {
            tx.execute("DELETE FROM gateway_routes WHERE id = $1", &[old])
                .await?;
            if *old != row.id {
                notify(&tx, ChangeKind::Gateway, old).await?;
            }
        }
        tx.execute(
            "INSERT INTO gateway_routes (id, api, route_key, config, secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &row.id,
                &row.api,
                &row.route_key,
                &row.config,
                &sealed,
                &row.created_at,
            ],
        )
        .await
        .map_err(|e| {
            conflict(e, |constraint| match constraint {
                "gateway_routes_route_key" => format!("route {} {}", row.api, row.route_key),
                _ => format!("route {}", row.id),
            })
        })?;
        notify(&tx, ChangeKind::Gateway, &row.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_route(&self, id: &str) -> Result<bool, StoreError> {
        self.delete("DELETE FROM gateway_routes WHERE id = $1", id)
            .await
    }

    async fn function_urls(&self) -> Result<Vec<FunctionUrlRow>, StoreError> {
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT function, url_id, config, created_at FROM gateway_function_urls
                 ORDER BY function",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FunctionUrlRow {
                function: r.get(0),
                url_id: r.get(1),
                config: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    async fn put_function_url(&self, row: FunctionUrlRow) -> Result<(), StoreError> {
        self.insert(
            &row.function,
            "INSERT INTO gateway_function_urls (function, url_id, config, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (function) DO UPDATE SET config = EXCLUDED.config",
            &[&row.function, &row.url_id, &row.config, &row.created_at],
            |_| format!("function URL {}", row.url_id),
        )
        .await
    }

    async fn delete_function_url(&self, function: &str) -> Result<bool, StoreError> {
        self.delete(
            "DELETE FROM gateway_function_urls WHERE function = $1",
            function,
        )
        .await
    }

    async fn keys(&self) -> Result<Vec<GatewayKeyRow>, StoreError> {
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT id, kind, function, hash, description, created_at FROM gateway_keys
                 ORDER BY created_at, seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| GatewayKeyRow {
                id: r.get(0),
                kind: r.get(1),
                function: r.get(2),
                hash: r.get(3),
                description: r.get(4),
                created_at: r.get(5),
            })
            .collect())
    }

    async fn insert_key(&self, row: GatewayKeyRow) -> Result<(), StoreError> {
        self.insert(
            &row.id,
            "INSERT INTO gateway_keys (id, kind, function, hash, description, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &row.id,
                &row.kind,
                &row.function,
                &row.hash,
                &row.description,
                &row.created_at,
            ],
            |constraint| match constraint {
                "gateway_keys_hash" => "a gateway key with this hash".to_string(),
                _ => format!("gateway key {}", row.id),
            },
        )
        .await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        self.delete("DELETE FROM gateway_keys WHERE id = $1", id)
            .await
    }
}
