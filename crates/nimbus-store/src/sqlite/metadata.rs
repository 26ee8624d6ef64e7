//! The embedded metadata store: functions, versions and aliases in `nimbus.db`,
//! one JSON document per row.

use async_trait::async_trait;
use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, with_db};
use crate::StoreError;
use crate::metadata::MetadataStore;

pub struct SqliteMetadataStore {
    db: Db,
}

impl SqliteMetadataStore {
    pub fn new(conn: Connection) -> Self {
        Self {
            db: super::durable(conn),
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
