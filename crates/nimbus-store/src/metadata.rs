//! Function metadata. Records are stored as JSON documents keyed by name: the schema
//! of a function evolves quickly and is always read whole, so a document per row
//! keeps migrations rare without giving up transactions.

use async_trait::async_trait;
use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::sqlite::{Db, with_db};

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the name is taken.
    async fn insert_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// Replaces the whole record (fields it clears are cleared, not merged).
    /// Fails with [`StoreError::NotFound`] when the function does not exist,
    /// and never creates it. The store checks no revision: the last write
    /// wins, and the control plane serialises its read-modify-writes.
    async fn update_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// The record as last written, whole; `None` when there is none.
    async fn get_function(&self, name: &FunctionName)
    -> Result<Option<FunctionRecord>, StoreError>;
    /// Every function, whole, by name in byte order (`B` before `a`).
    async fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Returns whether a function was deleted. Its versions and aliases go
    /// with it in the same transaction, so a function created again under
    /// the name starts with none.
    async fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError>;

    /// Stores a published version (`record.version` is its number, an error
    /// if it is not one); Conflict if that function has that number, and
    /// then nothing changes. The store does not check that the function
    /// exists, nor that numbers grow: the control plane numbers versions.
    async fn insert_version(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// Published versions, whole, oldest first: by number (10 after 9).
    async fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError>;
    async fn get_version(
        &self,
        name: &FunctionName,
        version: u32,
    ) -> Result<Option<FunctionRecord>, StoreError>;
    /// Returns whether the version existed; other versions are untouched.
    async fn delete_version(&self, name: &FunctionName, version: u32) -> Result<bool, StoreError>;

    /// Creates (`create`, Conflict if taken) or replaces (NotFound if missing) an alias.
    /// A replace writes the whole record (a routing it omits is removed);
    /// neither changes anything when it fails.
    async fn put_alias(&self, alias: &AliasRecord, create: bool) -> Result<(), StoreError>;
    async fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// One function's aliases, whole, by alias name in byte order.
    async fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasRecord>, StoreError>;
    /// Returns whether the alias existed.
    async fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError>;
}

pub struct SqliteMetadataStore {
    db: Db,
}

impl SqliteMetadataStore {
    pub fn new(conn: Connection) -> Self {
        Self {
            db: crate::sqlite::durable(conn),
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
            tx.execute("DELETE FROM function_versions WHERE name = ?1", [&name])?;
            tx.execute("DELETE FROM aliases WHERE name = ?1", [&name])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn insert_version(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let name = record.config.name.to_string();
        let version: i64 = record.version.parse().map_err(|_| {
            StoreError::Corrupt(format!("version {:?} is not a number", record.version))
        })?;
        let json = encode(record);
        with_db(&self.db, move |c| {
            let n = c.execute(
                "INSERT INTO function_versions(name, version, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name, version, json],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("version {version} of {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            let mut stmt =
                c.prepare("SELECT record FROM function_versions WHERE name = ?1 ORDER BY version")?;
            let rows = stmt.query_map([name], |r| r.get::<_, String>(0))?;
            rows.map(|r| decode(r?)).collect()
        })
        .await
    }

    async fn get_version(
        &self,
        name: &FunctionName,
        version: u32,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM function_versions WHERE name = ?1 AND version = ?2",
                    params![name, version],
                    |r| r.get(0),
                )
                .optional()?;
            json.map(decode).transpose()
        })
        .await
    }

    async fn delete_version(&self, name: &FunctionName, version: u32) -> Result<bool, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            Ok(c.execute(
                "DELETE FROM function_versions WHERE name = ?1 AND version = ?2",
                params![name, version],
            )? > 0)
        })
        .await
    }

    async fn put_alias(&self, alias: &AliasRecord, create: bool) -> Result<(), StoreError> {
        let (name, label) = (alias.function.to_string(), alias.name.clone());
        let json = serde_json::to_string(alias).expect("aliases serialise");
        with_db(&self.db, move |c| {
            let n = if create {
                c.execute(
                    "INSERT INTO aliases(name, alias, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![name, label, json],
                )?
            } else {
                c.execute("UPDATE aliases SET record = ?3 WHERE name = ?1 AND alias = ?2", params![name, label, json])?
            };
            match (n, create) {
                (0, true) => Err(StoreError::Conflict(format!("alias {label} of {name}"))),
                (0, false) => Err(StoreError::NotFound(format!("alias {label} of {name}"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let (name, alias) = (name.to_string(), alias.to_string());
        with_db(&self.db, move |c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM aliases WHERE name = ?1 AND alias = ?2",
                    params![name, alias],
                    |r| r.get(0),
                )
                .optional()?;
            json.map(|j| {
                serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("alias record: {e}")))
            })
            .transpose()
        })
        .await
    }

    async fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            let mut stmt =
                c.prepare("SELECT record FROM aliases WHERE name = ?1 ORDER BY alias")?;
            let rows = stmt.query_map([name], |r| r.get::<_, String>(0))?;
            rows.map(|r| {
                serde_json::from_str(&r?)
                    .map_err(|e| StoreError::Corrupt(format!("alias record: {e}")))
            })
            .collect()
        })
        .await
    }

    async fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError> {
        let (name, alias) = (name.to_string(), alias.to_string());
        with_db(&self.db, move |c| {
            Ok(c.execute(
                "DELETE FROM aliases WHERE name = ?1 AND alias = ?2",
                params![name, alias],
            )? > 0)
        })
        .await
    }
}
