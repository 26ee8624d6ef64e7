//! Event source mappings, stored and replaced whole.
//!
//! Why every put announces itself: each node runs pollers for the mappings
//! it knows, so a put or delete on one node must reach the others' pollers.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgMessages, write_announced};
use crate::messages::{SourceMappings, StoredMapping};
use crate::{ChangeKind, StoreError};

const MAPPING_COLUMNS: &str = "uuid, function, source_arn, config";

fn mapping_row(r: &Row) -> Result<StoredMapping, StoreError> {
    Ok(StoredMapping {
        uuid: r.try_get(0)?,
        function: r.try_get(1)?,
        source_arn: r.try_get(2)?,
        config: r.try_get(3)?,
    })
}

#[async_trait]
impl SourceMappings for PgMessages {
    async fn put_mapping(&self, m: &StoredMapping) -> Result<(), StoreError> {
        write_announced(
            &self.pg,
            ChangeKind::Mapping,
            "INSERT INTO mappings (uuid, function, source_arn, config) VALUES ($1, $2, $3, $4)
             ON CONFLICT (uuid) DO UPDATE
             SET function = EXCLUDED.function, source_arn = EXCLUDED.source_arn,
                 config = EXCLUDED.config
             RETURNING uuid",
            &[&m.uuid, &m.function, &m.source_arn, &m.config],
        )
        .await?;
        Ok(())
    }

    async fn get_mapping(&self, uuid: &str) -> Result<Option<StoredMapping>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {MAPPING_COLUMNS} FROM mappings WHERE uuid = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&uuid])
            .await?
            .as_ref()
            .map(mapping_row)
            .transpose()
    }

    async fn list_mappings(&self) -> Result<Vec<StoredMapping>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {MAPPING_COLUMNS} FROM mappings ORDER BY uuid"
            ))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(mapping_row)
            .collect()
    }

    async fn delete_mapping(&self, uuid: &str) -> Result<bool, StoreError> {
        write_announced(
            &self.pg,
            ChangeKind::Mapping,
            "DELETE FROM mappings WHERE uuid = $1 RETURNING uuid",
            &[&uuid],
        )
        .await
    }
}
