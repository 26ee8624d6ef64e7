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
