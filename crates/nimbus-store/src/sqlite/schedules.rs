//! The embedded schedule store: `schedules` in `nimbus.db`, one JSON document
//! per row.

use async_trait::async_trait;
use nimbus_core::schedule::ScheduleRecord;
use rusqlite::{OptionalExtension, params};

use super::{Db, with_db};
use crate::StoreError;
use crate::schedules::ScheduleStore;

pub struct SqliteScheduleStore {
    db: Db,
}

impl SqliteScheduleStore {
    pub fn new(conn: rusqlite::Connection) -> Self {
        Self {
            db: super::durable(conn),
        }
    }
}

fn decode(text: String) -> Result<ScheduleRecord, StoreError> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("schedule record: {e}")))
}

#[async_trait]
impl ScheduleStore for SqliteScheduleStore {
    async fn put(&self, record: &ScheduleRecord, create: bool) -> Result<(), StoreError> {
        let name = record.name.clone();
        let text = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("schedule record: {e}")))?;
        with_db(&self.db, move |c| {
            if create {
                let n = c.execute(
                    "INSERT OR IGNORE INTO schedules(name, record) VALUES (?1, ?2)",
                    params![name, text],
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict(format!(
                        "schedule {name} already exists"
                    )));
                }
            } else {
                let n = c.execute(
                    "UPDATE schedules SET record = ?2 WHERE name = ?1",
                    params![name, text],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("schedule {name}")));
                }
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            c.query_row(
                "SELECT record FROM schedules WHERE name = ?1",
                [name],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(decode)
            .transpose()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        with_db(&self.db, |c| {
            let mut stmt = c.prepare("SELECT record FROM schedules ORDER BY name")?;
            let texts = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            texts.into_iter().map(decode).collect()
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        with_db(&self.db, move |c| {
            Ok(c.execute("DELETE FROM schedules WHERE name = ?1", [name])? > 0)
        })
        .await
    }
}
