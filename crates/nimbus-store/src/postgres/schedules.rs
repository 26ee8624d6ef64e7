//! Schedule definitions on PostgreSQL, shared by every node.
//!
//! One JSON document per schedule, as the embedded backend keeps, in a
//! `TEXT` column: a schedule's input is any JSON the user gave, which may
//! hold a `\u0000` that `JSONB` refuses.
//!
//! Every write announces the schedule's name: each node arms the schedules
//! it knows in memory and re-reads the one named. When a schedule fires is
//! not kept here (see [`crate::FireLedger`]), so a node that re-arms late
//! neither repeats nor loses a fire.

use async_trait::async_trait;
use nimbus_core::schedule::ScheduleRecord;
use tokio_postgres::Row;

use super::{Pg, migrate, notify};
use crate::schedules::ScheduleStore;
use crate::{ChangeKind, StoreError};

const MIGRATIONS: &[&str] = &[
    // v1: schedules by name (byte order, as SQLite lists them).
    r#"CREATE TABLE schedules (
        name TEXT COLLATE "C" PRIMARY KEY,
        record TEXT NOT NULL
     );"#,
];

pub struct PgScheduleStore {
    pg: Pg,
}

impl PgScheduleStore {
    /// Opens the store, bringing its table to this build's schema.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "schedules", MIGRATIONS).await?;
        Ok(Self { pg: pg.clone() })
    }
}

fn decode(row: &Row) -> Result<ScheduleRecord, StoreError> {
    serde_json::from_str(row.get(0))
        .map_err(|e| StoreError::Corrupt(format!("schedule record: {e}")))
}

#[async_trait]
impl ScheduleStore for PgScheduleStore {
    async fn put(&self, record: &ScheduleRecord, create: bool) -> Result<(), StoreError> {
        let name = record.name.as_str();
        let text = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("schedule record: {e}")))?;
        let sql = if create {
            "INSERT INTO schedules (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
        } else {
            "UPDATE schedules SET record = $2 WHERE name = $1"
        };
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute(sql, &[&name, &text]).await?;
        match (n, create) {
            (0, true) => return Err(StoreError::Conflict(format!("schedule {name}"))),
            (0, false) => return Err(StoreError::NotFound(format!("schedule {name}"))),
            _ => {}
        }
        notify(&tx, ChangeKind::Schedule, name).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt("SELECT record FROM schedules WHERE name = $1", &[&name])
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let client = self.pg.client().await?;
        let rows = client
            .query("SELECT record FROM schedules ORDER BY name", &[])
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("DELETE FROM schedules WHERE name = $1", &[&name])
            .await?;
        if n > 0 {
            notify(&tx, ChangeKind::Schedule, name).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }
}
