//! Function metadata. Records are stored as JSON documents keyed by name: the schema
//! of a function evolves quickly and is always read whole, so a document per row
//! keeps migrations rare without giving up transactions.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nimbus_core::{FunctionName, FunctionRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::sqlite::{Db, with_db};

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the name is taken.
    async fn insert_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// Fails with [`StoreError::NotFound`] when the function does not exist.
    async fn update_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    async fn get_function(&self, name: &FunctionName)
    -> Result<Option<FunctionRecord>, StoreError>;
    async fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Returns whether a function was deleted.
    async fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError>;
}

pub struct SqliteMetadataStore {
    db: Db,
}

impl SqliteMetadataStore {
    pub fn new(conn: Connection) -> Self {
        Self {
            db: Arc::new(Mutex::new(conn)),
        }
    }
}

fn decode(json: String) -> Result<FunctionRecord, StoreError> {
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("function record: {e}")))
}

fn encode(record: &FunctionRecord) -> String {
    serde_json::to_string(record).expect("function records always serialise")
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn insert_function(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let (name, json) = (record.config.name.to_string(), encode(record));
        with_db(&self.db, move |c| {
            let n = c.execute(
                "INSERT INTO functions(name, record) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, json],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("function {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn update_function(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let (name, json) = (record.config.name.to_string(), encode(record));
        with_db(&self.db, move |c| {
            let n = c.execute(
                "UPDATE functions SET record = ?2 WHERE name = ?1",
                params![name, json],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("function {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn get_function(
        &self,
        name: &FunctionName,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM functions WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            json.map(decode).transpose()
        })
        .await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        with_db(&self.db, |c| {
            let mut stmt = c.prepare("SELECT record FROM functions ORDER BY name")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| decode(r?)).collect()
        })
        .await
    }

    async fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM functions WHERE name = ?1", [&name])?;
            tx.execute("DELETE FROM logs WHERE function = ?1", [&name])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }
}
