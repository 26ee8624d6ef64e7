//! What the HTTP gateway serves: routes, function URLs and gateway keys.
//!
//! The gateway keeps its whole configuration in memory and rebuilds it from
//! here when something changes, so these tables are read at startup and after
//! each change, never per request. Route settings are a JSON document (like
//! function records) because their shape belongs to the gateway crate; the
//! store only knows what it must enforce: one route per `(api, route key)`,
//! one URL per function. A JWT shared secret is sealed with the master key
//! (as access-key secrets are); gateway keys are stored as SHA-256 hashes only.

use async_trait::async_trait;

use crate::StoreError;

/// A declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRouteRow {
    pub id: String,
    /// `http` or `websocket`.
    pub api: String,
    /// `GET /users/{id}`, `$default`, `$connect`, …
    pub route_key: String,
    /// The gateway's settings document (JSON).
    pub config: String,
    /// A JWT shared secret, in clear here; sealed at rest.
    pub secret: Option<String>,
    pub created_at: String,
}

/// A function URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrlRow {
    pub function: String,
    pub url_id: String,
    /// The gateway's settings document (JSON).
    pub config: String,
    pub created_at: String,
}

/// A gateway key (function key or API key), by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayKeyRow {
    pub id: String,
    /// `function` or `api`.
    pub kind: String,
    /// Only valid for this function's routes; `None`: every route.
    pub function: Option<String>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    pub description: String,
    pub created_at: String,
}

#[async_trait]
pub trait GatewayStore: Send + Sync + 'static {
    async fn routes(&self) -> Result<Vec<GatewayRouteRow>, StoreError>;
    /// Inserts `row`, deleting the route `replaces` in the same transaction.
    async fn put_route(
        &self,
        row: GatewayRouteRow,
        replaces: Option<String>,
    ) -> Result<(), StoreError>;
    async fn delete_route(&self, id: &str) -> Result<bool, StoreError>;
    async fn function_urls(&self) -> Result<Vec<FunctionUrlRow>, StoreError>;
    /// Creates or replaces the URL of `row.function`.
    async fn put_function_url(&self, row: FunctionUrlRow) -> Result<(), StoreError>;
    async fn delete_function_url(&self, function: &str) -> Result<bool, StoreError>;
    async fn keys(&self) -> Result<Vec<GatewayKeyRow>, StoreError>;
    async fn insert_key(&self, row: GatewayKeyRow) -> Result<(), StoreError>;
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;
}
