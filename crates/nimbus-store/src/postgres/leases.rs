//! The cluster's leases: one row per name, each call one conditional
//! statement, so the row lock of that statement is all the coordination
//! two nodes racing for a lease need (`INSERT … ON CONFLICT DO UPDATE …
//! WHERE` takes a free or own lease and leaves another owner's untouched).
//!
//! A released lease keeps its row with no owner: its epoch must outlive the
//! release, or the next holder could reuse an epoch and fencing would fail.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{Pg, migrate};
use crate::StoreError;
use crate::leases::{Lease, Leases};

/// The schema of the leases, one step per version (see [`migrate`]).
const MIGRATIONS: &[&str] = &[
    // v1: a lease is held while it has an owner and `now < expires_ms`.
    "CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT,
        expires_ms BIGINT NOT NULL,
        epoch BIGINT NOT NULL
     );",
];

/// Takes `$1` for `$2` until `$4 + $3` if it is free (never taken, released,
/// expired at `$4`) or already `$2`'s; a new holding gets the next epoch, a
/// renewal by the holder keeps it. No row when another owner holds it.
const ACQUIRE: &str = "
    INSERT INTO leases AS l (name, owner, expires_ms, epoch) VALUES ($1, $2, $4::int8 + $3::int8, 1)
    ON CONFLICT (name) DO UPDATE SET
        owner = EXCLUDED.owner,
        expires_ms = EXCLUDED.expires_ms,
        epoch = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_ms > $4
                     THEN l.epoch ELSE l.epoch + 1 END
    WHERE l.owner IS NULL OR l.expires_ms <= $4 OR l.owner = EXCLUDED.owner
    RETURNING name, owner, expires_ms, epoch";

/// Extends `$2`'s holding of `$1` to `$4 + $3` if it holds it at `$4`.
const RENEW: &str = "
    UPDATE leases SET expires_ms = $4::int8 + $3::int8
    WHERE name = $1 AND owner = $2 AND expires_ms > $4
    RETURNING name, owner, expires_ms, epoch";

/// Frees `$1` if `$2` holds it at `$3` (the row and its epoch stay).
const RELEASE: &str = "
    UPDATE leases SET owner = NULL
    WHERE name = $1 AND owner = $2 AND expires_ms > $3";

/// The holding of `$1` at `$2`, if any.
const HOLDER: &str = "
    SELECT name, owner, expires_ms, epoch FROM leases
    WHERE name = $1 AND owner IS NOT NULL AND expires_ms > $2";

/// The leases of a cluster (see the module docs).
pub struct PgLeases {
    pg: Pg,
}

impl PgLeases {
    /// Opens the leases on `pg`, bringing their schema up to date.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "leases", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }

    /// Runs one of the statements above; returns the lease it yields, if any.
    async fn lease(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Lease>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(sql).await?;
        client
            .query_opt(&statement, params)
            .await?
            .as_ref()
            .map(lease_of)
            .transpose()
    }
}

/// Reads a row of `(name, owner, expires_ms, epoch)`.
fn lease_of(r: &Row) -> Result<Lease, StoreError> {
    let epoch: i64 = r.try_get(3)?;
    Ok(Lease {
        name: r.try_get(0)?,
        owner: r.try_get(1)?,
        expires_ms: r.try_get(2)?,
        epoch: u64::try_from(epoch)
            .map_err(|_| StoreError::Corrupt(format!("lease epoch {epoch}")))?,
    })
}

#[async_trait]
impl Leases for PgLeases {
    async fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.lease(ACQUIRE, &[&name, &owner, &ttl_ms, &now_ms])
            .await
    }

    async fn renew(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.lease(RENEW, &[&name, &owner, &ttl_ms, &now_ms]).await
    }

    async fn release(&self, name: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(RELEASE).await?;
        Ok(client
            .execute(&statement, &[&name, &owner, &now_ms])
            .await?
            > 0)
    }

    async fn holder(&self, name: &str, now_ms: i64) -> Result<Option<Lease>, StoreError> {
        self.lease(HOLDER, &[&name, &now_ms]).await
    }
}
