//! Function metadata. Records are stored as JSON documents keyed by name: the schema
//! of a function evolves quickly and is always read whole, so a document per row
//! keeps migrations rare without giving up transactions.

use async_trait::async_trait;
use nimbus_core::{AliasRecord, FunctionName, FunctionRecord};

use crate::StoreError;

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the name is taken.
    async fn insert_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// Fails with [`StoreError::NotFound`] when the function does not exist.
    async fn update_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    async fn get_function(&self, name: &FunctionName)
    -> Result<Option<FunctionRecord>, StoreError>;
    async fn list_functions(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Returns whether a function was deleted (with its versions and aliases).
    async fn delete_function(&self, name: &FunctionName) -> Result<bool, StoreError>;

    /// Stores a published version (`record.version` is its number); Conflict if it exists.
    async fn insert_version(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    /// Published versions, oldest first.
    async fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionRecord>, StoreError>;
    async fn get_version(
        &self,
        name: &FunctionName,
        version: u32,
    ) -> Result<Option<FunctionRecord>, StoreError>;
    async fn delete_version(&self, name: &FunctionName, version: u32) -> Result<bool, StoreError>;

    /// Creates (`create`, Conflict if taken) or replaces (NotFound if missing) an alias.
    async fn put_alias(&self, alias: &AliasRecord, create: bool) -> Result<(), StoreError>;
    async fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    async fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasRecord>, StoreError>;
    async fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError>;
}
