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
use chacha20poly1305::ChaCha20Poly1305;

use crate::StoreError;
use crate::keys::{open, seal};

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
    /// Every route, whole (secrets in clear), by creation time and, among
    /// routes created in the same instant, in insertion order. A secret that
    /// cannot be unsealed (another master key) is an error.
    async fn routes(&self) -> Result<Vec<GatewayRouteRow>, StoreError>;
    /// Inserts `row`, deleting the route `replaces` in the same transaction.
    /// `row.id` may be `replaces` itself (a redeploy keeps the id); a
    /// `replaces` that names no route just inserts. Fails, changing nothing
    /// (the deletion included), when another route has the id or the
    /// `(api, route_key)`; the gateway checks for overlaps first, so the
    /// error is a guard and need not be `Conflict`. The secret is sealed at rest.
    async fn put_route(
        &self,
        row: GatewayRouteRow,
        replaces: Option<String>,
    ) -> Result<(), StoreError>;
    /// Returns whether the route existed.
    async fn delete_route(&self, id: &str) -> Result<bool, StoreError>;
    /// Every function URL, whole, by function name in byte order.
    async fn function_urls(&self) -> Result<Vec<FunctionUrlRow>, StoreError>;
    /// Creates the URL of `row.function`, or, when it has one, replaces only
    /// its config: the `url_id` and `created_at` stay (a published URL never
    /// changes). Fails, changing nothing, when another function has the `url_id`.
    async fn put_function_url(&self, row: FunctionUrlRow) -> Result<(), StoreError>;
    /// Returns whether the function had a URL.
    async fn delete_function_url(&self, function: &str) -> Result<bool, StoreError>;
    /// Every gateway key, whole, by creation time and, among keys created in
    /// the same instant, in insertion order.
    async fn keys(&self) -> Result<Vec<GatewayKeyRow>, StoreError>;
    /// Stores a key as given (only its hash: the value never reaches the
    /// store). Fails, changing nothing, when the id or the hash is taken.
    async fn insert_key(&self, row: GatewayKeyRow) -> Result<(), StoreError>;
    /// Returns whether the key existed.
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// Associated data binding a sealed secret to its route, so a ciphertext
/// copied to another route's row does not open.
fn secret_aad(id: &str) -> String {
    format!("gateway-route:{id}")
}

/// The JWT secret of `row` as a backend stores it: sealed, bound to the
/// route's id.
pub(crate) fn seal_route_secret(
    cipher: &ChaCha20Poly1305,
    row: &GatewayRouteRow,
) -> Result<Option<Vec<u8>>, StoreError> {
    row.secret
        .as_ref()
        .map(|s| seal(cipher, &secret_aad(&row.id), s.as_bytes()))
        .transpose()
}

/// The inverse of [`seal_route_secret`] for the route `id`.
pub(crate) fn open_route_secret(
    cipher: &ChaCha20Poly1305,
    id: &str,
    sealed: &[u8],
) -> Result<String, StoreError> {
    let plain = open(cipher, &secret_aad(id), sealed)?;
    String::from_utf8(plain)
        .map_err(|_| StoreError::Corrupt(format!("secret of route {id} is not UTF-8")))
}
