//! Managing the gateway: declare and remove routes, function URLs and keys.
//!
//! The native API, the Lambda API and `nimbus.toml` all come through here,
//! so validation is the same whichever door a change used. A change is
//! validated against the current declarations (conflicts are found by
//! building a [`RouteTable`], the same code that routes requests), written to
//! the store, and then a new [`Snapshot`] is compiled and swapped in. Writes
//! are serialised by one lock; requests never wait for it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use nimbus_core::{FunctionName, Target};
use nimbus_engine::{ControlPlane, Dispatcher};
use nimbus_store::{FunctionUrlRow, GatewayKeyRow, GatewayRouteRow, GatewayStore, StoreError};

use crate::auth::{KeyHash, generate_key};
use crate::config::{
    ApiKind, AuthKind, FunctionUrl, GatewayKey, KeyKind, KeySpec, MAX_ROUTES, NewGatewayKey, Route,
    RouteSpec, UrlSpec, check_auth, check_body_limit,
};
use crate::routes::{RouteError, RouteTable};
use crate::snapshot::{CompileInput, Snapshot};

/// Why a gateway change was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("function {0} not found")]
    FunctionNotFound(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl GatewayError {
    /// This error's row of the error table.
    pub fn code(&self) -> nimbus_core::ErrorCode {
        use nimbus_core::ErrorCode;
        match self {
            GatewayError::Invalid(_) => ErrorCode::InvalidParameter,
            GatewayError::Conflict(_) => ErrorCode::Conflict,
            GatewayError::NotFound(_) => ErrorCode::NotFound,
            GatewayError::FunctionNotFound(_) => ErrorCode::FunctionNotFound,
            GatewayError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<RouteError> for GatewayError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Conflict { .. } => Self::Conflict(e.to_string()),
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// Host facts the gateway reports in events and URLs.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `http://127.0.0.1:8471`: the base of function URLs.
    pub public_url: String,
    pub region: String,
    pub account_id: String,
}

pub struct Gateway {
    store: Arc<dyn GatewayStore>,
    control: Arc<ControlPlane>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    settings: GatewaySettings,
    writes: tokio::sync::Mutex<()>,
    /// Runs routes' targets; checks that the state machines routes name exist.
    dispatcher: Arc<Dispatcher>,
    /// Stamps creation times.
    clock: nimbus_core::Clock,
}

fn random_id(prefix: &str) -> Result<String, GatewayError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 10];
    getrandom::fill(&mut b)
        .map_err(|e| GatewayError::Store(StoreError::Task(format!("no randomness: {e}"))))?;
    let s: String = b
        .iter()
        .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
        .collect();
    Ok(format!("{prefix}{s}"))
}

/// Whether a redeployed route targets what the route it replaces did: the
/// same function (whatever the qualifier) or the same workflow.
fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Function { name: x, .. }, Target::Function { name: y, .. }) => x == y,
        (Target::Workflow { machine: x }, Target::Workflow { machine: y }) => x == y,
        _ => false,
    }
}

fn route_from_row(row: GatewayRouteRow) -> Result<Route, GatewayError> {
    let mut spec: RouteSpec = serde_json::from_str(&row.config).map_err(|e| {
        StoreError::Corrupt(format!("route {} has an unreadable config: {e}", row.id))
    })?;
    if let Some(secret) = row.secret
        && let Some(j) = spec.jwt.as_mut()
    {
        j.secret = Some(secret);
    }
    Ok(Route {
        id: row.id,
        spec,
        created_at: row.created_at,
    })
}

impl Gateway {
    fn now(&self) -> String {
        self.clock
            .now()
            .format("%Y-%m-%dT%H:%M:%S%.3f%z")
            .to_string()
    }

    /// Loads the declarations and compiles the first snapshot.
    pub async fn load(
        store: Arc<dyn GatewayStore>,
        control: Arc<ControlPlane>,
        dispatcher: Arc<Dispatcher>,
        settings: GatewaySettings,
    ) -> Result<Self, GatewayError> {
        let g = Self {
            store,
            control,
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            settings,
            writes: tokio::sync::Mutex::new(()),
            dispatcher,
            clock: nimbus_core::Clock::system(),
        };
        g.reload().await?;
        Ok(g)
    }

    /// What the listener runs routes' targets through.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The shared snapshot the listener reads.
    pub fn snapshot(&self) -> Arc<ArcSwap<Snapshot>> {
        self.snapshot.clone()
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    /// Recompiles from the store and swaps the result in.
    pub async fn reload(&self) -> Result<(), GatewayError> {
        let routes = self.routes().await?;
        let urls = self.urls().await?;
        let keys: Vec<(GatewayKey, KeyHash)> = self
            .store
            .keys()
            .await?
            .into_iter()
            .filter_map(|row| {
                let hash = KeyHash::from_hex(&row.hash)?;
                Some((key_from_row(row), hash))
            })
            .collect();
        let previous = self.snapshot.load_full();
        let snap = Snapshot::compile(CompileInput {
            routes: &routes,
            urls: &urls,
            keys: &keys,
            region: &self.settings.region,
            account_id: &self.settings.account_id,
            previous: Some(&previous),
        });
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    // ------------------------------------------------------------ routes --

    pub async fn routes(&self) -> Result<Vec<Route>, GatewayError> {
        self.store
            .routes()
            .await?
            .into_iter()
            .map(route_from_row)
            .collect()
    }

    async fn check_workflow(&self, name: &str) -> Result<(), GatewayError> {
        self.dispatcher
            .check(&Target::workflow(name))
            .await
            .map_err(|e| GatewayError::Invalid(format!("workflow `{name}`: {e}")))
    }

    async fn check_function(&self, name: &str) -> Result<(), GatewayError> {
        let fname = FunctionName::try_from(name.to_owned())
            .map_err(|e| GatewayError::Invalid(e.to_string()))?;
        match self.control.get(&fname).await {
            Ok(_) => Ok(()),
            Err(nimbus_engine::EngineError::FunctionNotFound(_)) => {
                Err(GatewayError::FunctionNotFound(name.to_owned()))
            }
            Err(e) => Err(GatewayError::Invalid(e.to_string())),
        }
    }

    /// Declares a route. With `replace`, an existing route with the same key
    /// that targets the same function is replaced (what redeploying a
    /// manifest does); any other overlap is a conflict naming both routes.
    pub async fn add_route(
        &self,
        mut spec: RouteSpec,
        replace: bool,
    ) -> Result<Route, GatewayError> {
        spec.normalize().map_err(GatewayError::Invalid)?;
        match &spec.target {
            Target::Workflow { machine } => self.check_workflow(machine).await?,
            Target::Function { name, .. } => self.check_function(name).await?,
        }
        let _w = self.writes.lock().await;
        let existing = self.routes().await?;
        let mut replaces = None;
        let mut http = RouteTable::new();
        let mut selection: Option<(&str, &str)> = None;
        for r in &existing {
            if r.spec.api == spec.api && r.spec.route == spec.route {
                if replace && same_target(&r.spec.target, &spec.target) {
                    replaces = Some(r.id.clone());
                    continue;
                }
                return Err(GatewayError::Conflict(format!(
                    "route `{}` already exists (id {}, function {}); remove it first",
                    r.spec.route,
                    r.id,
                    r.spec.target.function_name().unwrap_or_default()
                )));
            }
            match r.spec.api {
                ApiKind::Http => http.insert_key(&r.spec.route, ())?,
                ApiKind::Websocket => {
                    if let Some(e) = &r.spec.route_selection_expression {
                        selection = Some((e, &r.spec.route));
                    }
                }
            }
        }
        let same_api = existing.iter().filter(|r| r.spec.api == spec.api).count();
        if replaces.is_none() && same_api >= MAX_ROUTES {
            return Err(GatewayError::Invalid(format!(
                "the {} API already has {MAX_ROUTES} routes, the most one API may have",
                spec.api.as_str()
            )));
        }
        match spec.api {
            ApiKind::Http => http.insert_key(&spec.route, ())?,
            ApiKind::Websocket => {
                if let (Some((old, route)), Some(new)) =
                    (selection, spec.route_selection_expression.as_deref())
                    && old != new
                {
                    return Err(GatewayError::Conflict(format!(
                        "the WebSocket API already selects routes with `{old}` (route {route}); one expression per API"
                    )));
                }
            }
        }
        let id = replaces.clone().map_or_else(|| random_id("r-"), Ok)?;
        let secret = spec.jwt.as_ref().and_then(|j| j.secret.clone());
        let config = serde_json::to_string(&spec).expect("a route spec serialises");
        let row = GatewayRouteRow {
            id: id.clone(),
            api: spec.api.as_str().to_owned(),
            route_key: spec.route.clone(),
            config,
            secret,
            created_at: self.now(),
        };
        let created_at = row.created_at.clone();
        self.store.put_route(row, replaces).await?;
        self.reload().await?;
        Ok(Route {
            id,
            spec,
            created_at,
        })
    }

    /// Removes a route by id, or by its key (`GET /users/{id}`, `$connect`;
    /// an HTTP route wins when both APIs have the key).
    pub async fn remove_route(&self, id_or_key: &str) -> Result<Route, GatewayError> {
        let _w = self.writes.lock().await;
        let routes = self.routes().await?;
        let found = routes
            .iter()
            .find(|r| r.id == id_or_key)
            .or_else(|| {
                routes
                    .iter()
                    .find(|r| r.spec.route == id_or_key && r.spec.api == ApiKind::Http)
            })
            .or_else(|| routes.iter().find(|r| r.spec.route == id_or_key))
            .cloned()
            .ok_or_else(|| GatewayError::NotFound(format!("route {id_or_key} not found")))?;
        self.store.delete_route(&found.id).await?;
        self.reload().await?;
        Ok(found)
    }

    // -------------------------------------------------------------- URLs --

    fn url_of(&self, row: FunctionUrlRow) -> Result<FunctionUrl, GatewayError> {
        let spec: UrlSpec = serde_json::from_str(&row.config).map_err(|e| {
            StoreError::Corrupt(format!(
                "URL of {} has an unreadable config: {e}",
                row.function
            ))
        })?;
        Ok(FunctionUrl {
            url: format!("{}/@url/{}/", self.settings.public_url, row.url_id),
            function: row.function,
            url_id: row.url_id,
            spec,
            created_at: row.created_at,
        })
    }

    pub async fn urls(&self) -> Result<Vec<FunctionUrl>, GatewayError> {
        self.store
            .function_urls()
            .await?
            .into_iter()
            .map(|r| self.url_of(r))
            .collect()
    }

    pub async fn url(&self, function: &str) -> Result<FunctionUrl, GatewayError> {
        self.urls()
            .await?
            .into_iter()
            .find(|u| u.function == function)
            .ok_or_else(|| GatewayError::NotFound(format!("function {function} has no URL")))
    }

    /// Creates a function's URL, or updates its settings (the URL stays).
    /// Returns the URL and whether it was created.
    pub async fn put_url(
        &self,
        function: &str,
        spec: UrlSpec,
    ) -> Result<(FunctionUrl, bool), GatewayError> {
        if spec.auth == AuthKind::Jwt {
            return Err(GatewayError::Invalid(
                "function URLs support auth none, function_key or api_key".into(),
            ));
        }
        check_auth(spec.auth, None).map_err(GatewayError::Invalid)?;
        check_body_limit(spec.body_limit).map_err(GatewayError::Invalid)?;
        if let Some(c) = &spec.cors {
            c.validate().map_err(GatewayError::Invalid)?;
        }
        self.check_function(function).await?;
        let _w = self.writes.lock().await;
        let existing = self.url(function).await.ok();
        let row = FunctionUrlRow {
            function: function.to_owned(),
            url_id: match &existing {
                Some(u) => u.url_id.clone(),
                None => crate::apigw::function_url::generate_url_id().map_err(|e| {
                    GatewayError::Store(StoreError::Task(format!("no randomness: {e}")))
                })?,
            },
            config: serde_json::to_string(&spec).expect("a URL spec serialises"),
            created_at: existing
                .as_ref()
                .map_or_else(|| self.now(), |u| u.created_at.clone()),
        };
        self.store.put_function_url(row.clone()).await?;
        self.reload().await?;
        Ok((self.url_of(row)?, existing.is_none()))
    }

    pub async fn remove_url(&self, function: &str) -> Result<(), GatewayError> {
        let _w = self.writes.lock().await;
        if !self.store.delete_function_url(function).await? {
            return Err(GatewayError::NotFound(format!(
                "function {function} has no URL"
            )));
        }
        self.reload().await
    }

    // -------------------------------------------------------------- keys --

    pub async fn keys(&self) -> Result<Vec<GatewayKey>, GatewayError> {
        Ok(self
            .store
            .keys()
            .await?
            .into_iter()
            .map(key_from_row)
            .collect())
    }

    /// Creates a key; its value is returned once and only its hash is kept.
    pub async fn create_key(&self, spec: KeySpec) -> Result<NewGatewayKey, GatewayError> {
        if spec.description.chars().count() > 256 {
            return Err(GatewayError::Invalid(
                "description must be at most 256 characters".into(),
            ));
        }
        match (&spec.function, spec.global) {
            (Some(f), false) => self.check_function(f).await?,
            (None, true) => {}
            (Some(_), true) => {
                return Err(GatewayError::Invalid(
                    "a gateway key is either for one function (`function`) or `global`, not both"
                        .into(),
                ));
            }
            (None, false) => {
                return Err(GatewayError::Invalid(
                    "say which routes accept the key: `function` (that function's routes and \
                     URL) or `global: true` (every key-protected route)"
                        .into(),
                ));
            }
        }
        let (value, hash) = generate_key()
            .map_err(|e| GatewayError::Store(StoreError::Task(format!("no randomness: {e}"))))?;
        let key = GatewayKey {
            id: random_id("gk-")?,
            kind: spec.kind,
            function: spec.function,
            description: spec.description,
            created_at: self.now(),
        };
        let _w = self.writes.lock().await;
        self.store
            .insert_key(GatewayKeyRow {
                id: key.id.clone(),
                kind: key.kind.as_str().to_owned(),
                function: key.function.clone(),
                hash: hash.to_hex(),
                description: key.description.clone(),
                created_at: key.created_at.clone(),
            })
            .await?;
        self.reload().await?;
        Ok(NewGatewayKey { key, value })
    }

    pub async fn remove_key(&self, id: &str) -> Result<(), GatewayError> {
        let _w = self.writes.lock().await;
        if !self.store.delete_key(id).await? {
            return Err(GatewayError::NotFound(format!(
                "gateway key {id} not found"
            )));
        }
        self.reload().await
    }
}

fn key_from_row(row: GatewayKeyRow) -> GatewayKey {
    GatewayKey {
        id: row.id,
        kind: if row.kind == "api" {
            KeyKind::Api
        } else {
            KeyKind::Function
        },
        function: row.function,
        description: row.description,
        created_at: row.created_at,
    }
}

/// The snapshot follows other nodes' route, URL and key changes. It is
/// compiled from every declaration at once, so any change recompiles it
/// (token buckets survive the swap, and a node's own notices compile the
/// same snapshot again); a revoked key stops matching at once.
#[async_trait::async_trait]
impl nimbus_engine::follow::Follower for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn follows(&self, kind: nimbus_store::ChangeKind) -> bool {
        kind == nimbus_store::ChangeKind::Gateway
    }

    async fn changed(
        self: Arc<Self>,
        _change: &nimbus_store::Change,
    ) -> Result<(), nimbus_engine::follow::FollowError> {
        self.resync().await
    }

    async fn resync(self: Arc<Self>) -> Result<(), nimbus_engine::follow::FollowError> {
        let _w = self.writes.lock().await;
        Ok(self.reload().await?)
    }
}
