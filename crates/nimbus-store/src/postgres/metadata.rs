//! Functions, versions and aliases on PostgreSQL, shared by every node.
//!
//! Records stay whole JSON documents, as in the embedded backend, kept as
//! `TEXT` rather than `JSONB`: `JSONB` refuses a string holding `\u0000`,
//! which a function's description may (the embedded backend keeps it), and
//! nothing here queries inside a record. Names are `COLLATE "C"` so
//! listings come out in byte order whatever the server's locale, as the
//! contract (and SQLite) orders them.
//!
//! Every write announces the function it touched: each node keeps a
//! registry of functions in memory and re-reads the one named.

use async_trait::async_trait;
use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;

use super::{Pg, migrate, notify};
use crate::metadata::MetadataStore;
use crate::{ChangeKind, StoreError};

const MIGRATIONS: &[&str] = &[
    // v1: functions, their published versions and their aliases. The
    // primary keys serve every lookup and listing (by name, then version or
    // alias).
    r#"CREATE TABLE functions (
        name TEXT COLLATE "C" PRIMARY KEY,
        record TEXT NOT NULL
     );
     CREATE TABLE function_versions (
        name TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (name, version)
     );
     CREATE TABLE aliases (
        name TEXT COLLATE "C" NOT NULL,
        alias TEXT COLLATE "C" NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (name, alias)
     );"#,
];

pub struct PgMetadataStore {
    pg: Pg,
}

impl PgMetadataStore {
    /// Opens the store, bringing its tables to this build's schema.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "metadata", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }

    /// Runs one write and, when it changed a row, announces `function` in
    /// the same transaction. Returns the number of rows changed.
    async fn write(
        &self,
        function: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let statement = tx.prepare_cached(sql).await?;
        let n = tx.execute(&statement, params).await?;
        if n > 0 {
            notify(&tx, ChangeKind::Function, function).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn read_one<T: DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let row = client.query_opt(&statement, params).await?;
        row.map(|r| decode(what, &r)).transpose()
    }

    async fn read_all<T: DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let rows = client.query(&statement, params).await?;
        rows.iter().map(|r| decode(what, r)).collect()
    }
}

/// The document in the first column of `row`.
fn decode<T: DeserializeOwned>(what: &str, row: &Row) -> Result<T, StoreError> {
    serde_json::from_str(row.get(0)).map_err(|e| StoreError::Corrupt(format!("{what} record: {e}")))
}

fn encode(record: &impl Serialize) -> String {
    serde_json::to_string(record).expect("function and alias records always serialise")
}

/// A version's number, which the record carries as text.
fn version_number(record: &FunctionRecord) -> Result<i64, StoreError> {
    record
        .version
        .parse::<u32>()
        .map(i64::from)
        .map_err(|_| StoreError::Corrupt(format!("version {:?} is not a number", record.version)))
}

#[async_trait]
impl MetadataStore for PgMetadataStore {
    async fn insert_function(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let name = record.config.name.to_string();
        let n = self
            .write(
                &name,
                "INSERT INTO functions (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &encode(record)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("function {name}")));
        }
        Ok(())
    }

    async fn update_function(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let name = record.config.name.to_string();
        let n = self
            .write(
                &name,
                "UPDATE functions SET record = $2 WHERE name = $1",
                &[&name, &encode(record)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("function {name}")));
        }
        Ok(())
    }

    async fn get_function(
        &self,
        name: &FunctionName,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        self.read_one(
            "function",
            "SELECT record FROM functions WHERE name = $1",
            &[&name.as_str()],
        )
        .await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        self.read_all(
            "function",
            "SELECT record FROM functions ORDER BY name",
            &[],
        )
        .await
    }

    async fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError> {
        // One statement, so the versions and aliases go with the function
        // atomically; it counts only the function itself. Announced even
        // when no function was there: versions or aliases of the name (the
        // store does not require the function) may have gone.
        let sql = "WITH gone AS (DELETE FROM functions WHERE name = $1 RETURNING 1),
                        versions AS (DELETE FROM function_versions WHERE name = $1),
                        aliases AS (DELETE FROM aliases WHERE name = $1)
                   SELECT count(*) FROM gone";
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let deleted: i64 = tx.query_one(sql, &[&name.as_str()]).await?.get(0);
        notify(&tx, ChangeKind::Function, name.as_str()).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn insert_version(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let name = record.config.name.to_string();
        let version = version_number(record)?;
        let n = self
            .write(
                &name,
                "INSERT INTO function_versions (name, version, record) VALUES ($1, $2, $3)
                 ON CONFLICT (name, version) DO NOTHING",
                &[&name, &version, &encode(record)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("version {version} of {name}")));
        }
        Ok(())
    }

    async fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError> {
        self.read_all(
            "function",
            "SELECT record FROM function_versions WHERE name = $1 ORDER BY version",
            &[&name.as_str()],
        )
        .await
    }

    async fn get_version(
        &self,
        name: &FunctionName,
        version: u32,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        self.read_one(
            "function",
            "SELECT record FROM function_versions WHERE name = $1 AND version = $2",
            &[&name.as_str(), &i64::from(version)],
        )
        .await
    }

    async fn delete_version(&self, name: &FunctionName, version: u32) -> Result<bool, StoreError> {
        let n = self
            .write(
                name.as_str(),
                "DELETE FROM function_versions WHERE name = $1 AND version = $2",
                &[&name.as_str(), &i64::from(version)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn put_alias(&self, alias: &AliasRecord, create: bool) -> Result<(), StoreError> {
        let (name, label) = (alias.function.to_string(), alias.name.as_str());
        let sql = if create {
            "INSERT INTO aliases (name, alias, record) VALUES ($1, $2, $3)
             ON CONFLICT (name, alias) DO NOTHING"
        } else {
            "UPDATE aliases SET record = $3 WHERE name = $1 AND alias = $2"
        };
        let n = self
            .write(&name, sql, &[&name, &label, &encode(alias)])
            .await?;
        match (n, create) {
            (0, true) => Err(StoreError::Conflict(format!("alias {label} of {name}"))),
            (0, false) => Err(StoreError::NotFound(format!("alias {label} of {name}"))),
            _ => Ok(()),
        }
    }

    async fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        self.read_one(
            "alias",
            "SELECT record FROM aliases WHERE name = $1 AND alias = $2",
            &[&name.as_str(), &alias],
        )
        .await
    }

    async fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasRecord>, StoreError> {
        self.read_all(
            "alias",
            "SELECT record FROM aliases WHERE name = $1 ORDER BY alias",
            &[&name.as_str()],
        )
        .await
    }

    async fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError> {
        let n = self
            .write(
                name.as_str(),
                "DELETE FROM aliases WHERE name = $1 AND alias = $2",
                &[&name.as_str(), &alias],
            )
            .await?;
        Ok(n > 0)
    }
}
