//! The compiled, immutable configuration the request path reads.
//!
//! Declarations ([`crate::config`]) are compiled once per change into a
//! [`Snapshot`]: the route trie, function URLs by id, WebSocket routes, and
//! per target everything a request needs already resolved (key hashes that
//! may call it, the JWT verifier with its keys loaded, the CORS config, the
//! token bucket). The listener swaps whole snapshots atomically, so a request
//! sees one consistent configuration and never touches the database. Token
//! buckets are carried over from the previous snapshot while a route keeps its
//! id and limit, so a reload does not refill them.

use std::collections::HashMap;
use std::sync::Arc;

use nimbus_core::FunctionName;

use crate::apigw::function_url::FunctionUrl as UrlIdentity;
use crate::apigw::{ApiInfo, PayloadFormat};
use crate::auth::{JwtVerifier, KeyHash};
use crate::config::{
    ApiKind, AuthKind, DEFAULT_BODY_LIMIT, DEFAULT_ROUTE_SELECTION, FunctionUrl, GatewayKey,
    JwtSettings, KeyKind, Route,
};
use crate::cors::CorsConfig;
use crate::ratelimit::{RateLimit, TokenBucket};
use crate::routes::{DEFAULT_ROUTE_KEY, RouteTable};
use crate::websocket::RouteSelector;

/// The event shape a target is invoked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    Rest,
    Http,
    FunctionUrl,
    WebSocket,
}

/// How a target authenticates callers, resolved.
#[derive(Debug)]
pub enum Auth {
    None,
    FunctionKey(Vec<KeyHash>),
    ApiKey(Vec<KeyHash>),
    Jwt(Box<JwtVerifier>),
    /// Misconfigured (e.g. the JWKS file cannot be read): every request gets
    /// a 500 and the reason is logged, rather than opening the route.
    Broken(String),
}

/// Everything the request path needs about one route or URL.
#[derive(Debug)]
pub struct Target {
    pub route_id: String,
    pub route_key: String,
    /// What the route runs: a function (its name checked at compile
    /// time), or (HTTP routes) a workflow.
    pub runs: nimbus_core::Target,
    /// `name`, `name:qualifier` or `workflow:name`, for the access log.
    pub label: String,
    pub format: EventFormat,
    pub auth: Auth,
    pub cors: Option<CorsConfig>,
    pub limiter: Option<Arc<TokenBucket>>,
    pub body_limit: usize,
    /// A function URL's own identity (`<url-id>.lambda-url.<region>.on.aws`).
    pub url_api: Option<ApiInfo>,
    /// A function URL in `RESPONSE_STREAM` mode.
    pub streaming: bool,
}

/// One consistent view of the gateway's configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub http: RouteTable<Arc<Target>>,
    pub urls: HashMap<String, Arc<Target>>,
    pub ws: HashMap<String, Arc<Target>>,
    pub ws_selector: Option<RouteSelector>,
    buckets: HashMap<String, (RateLimit, Arc<TokenBucket>)>,
}

/// What the compiler needs besides the declarations.
pub struct CompileInput<'a> {
    pub routes: &'a [Route],
    pub urls: &'a [FunctionUrl],
    /// Keys with their hashes.
    pub keys: &'a [(GatewayKey, KeyHash)],
    pub region: &'a str,
    pub account_id: &'a str,
    /// The previous snapshot, whose token buckets are kept.
    pub previous: Option<&'a Snapshot>,
}

fn hashes_for(keys: &[(GatewayKey, KeyHash)], kind: KeyKind, function: &str) -> Vec<KeyHash> {
    keys.iter()
        .filter(|(k, _)| k.kind == kind && k.function.as_deref().is_none_or(|f| f == function))
        .map(|(_, h)| *h)
        .collect()
}

fn jwt_verifier(j: &JwtSettings) -> Result<JwtVerifier, String> {
    let aud: Vec<&str> = j.audience.iter().map(String::as_str).collect();
    let iss = j.issuer.as_deref();
    if let Some(path) = &j.jwks_file {
        return JwtVerifier::from_jwks_file(path, iss, &aud).map_err(|e| e.to_string());
    }
    if let Some(s) = &j.secret {
        return Ok(JwtVerifier::hs256(s.as_bytes(), iss, &aud));
    }
    if let Some(var) = &j.secret_env {
        return match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(JwtVerifier::hs256(s.as_bytes(), iss, &aud)),
            _ => Err(format!(
                "environment variable {var} (HS256 secret) is not set"
            )),
        };
    }
    Err("no JWT key source".into())
}

/// Resolves an auth mode against the keys; a JWT verifier is built (and its
/// JWKS file read) here, once.
pub fn resolve_auth(
    kind: AuthKind,
    jwt: Option<&JwtSettings>,
    keys: &[(GatewayKey, KeyHash)],
    function: &str,
) -> Auth {
    match kind {
        AuthKind::None => Auth::None,
        AuthKind::FunctionKey => Auth::FunctionKey(hashes_for(keys, KeyKind::Function, function)),
        AuthKind::ApiKey => Auth::ApiKey(hashes_for(keys, KeyKind::Api, function)),
        AuthKind::Jwt => match jwt.map(jwt_verifier) {
            Some(Ok(v)) => Auth::Jwt(Box::new(v)),
            Some(Err(e)) => Auth::Broken(e),
            None => Auth::Broken("auth = jwt without jwt settings".into()),
        },
    }
}

impl Snapshot {
    /// Compiles declarations. Routes were validated when declared; one that no
    /// longer inserts (it cannot, short of a hand-edited database) is skipped
    /// with a warning so the rest still serve.
    pub fn compile(input: CompileInput<'_>) -> Self {
        let mut snap = Snapshot::default();
        let mut selection: Option<&str> = None;
        for r in input.routes {
            let s = &r.spec;
            let function = s.target.function_name().unwrap_or_default();
            if s.target.function_name().is_some()
                && FunctionName::try_from(function.to_owned()).is_err()
            {
                tracing::warn!(route = %s.route, "gateway route skipped: invalid function name");
                continue;
            }
            let limiter = s.rate_limit.map(|l| {
                let limit = RateLimit {
                    rate_per_sec: l.rate,
                    burst: l.burst,
                };
                let bucket = input
                    .previous
                    .and_then(|p| p.buckets.get(&r.id))
                    .filter(|(old, _)| *old == limit)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_else(|| Arc::new(TokenBucket::new(limit)));
                snap.buckets.insert(r.id.clone(), (limit, bucket.clone()));
                bucket
            });
            let format = match (s.api, s.payload_format.as_deref()) {
                (ApiKind::Websocket, _) => EventFormat::WebSocket,
                (ApiKind::Http, Some("1.0")) => EventFormat::Rest,
                (ApiKind::Http, _) => EventFormat::Http,
            };
            let target = Arc::new(Target {
                route_id: r.id.clone(),
                route_key: s.route.clone(),
                label: s.target.to_string(),
                runs: s.target.clone(),
                format,
                auth: resolve_auth(s.auth, s.jwt.as_ref(), input.keys, function),
                cors: s.cors.as_ref().map(|c| c.to_config()),
                limiter,
                body_limit: s.body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
                url_api: None,
                streaming: false,
            });
            if let Auth::Broken(why) = &target.auth {
                tracing::error!(route = %s.route, "gateway route answers 500 until fixed: {why}");
            }
            match s.api {
                ApiKind::Http => {
                    if let Err(e) = snap.http.insert_key(&s.route, target) {
                        tracing::warn!("gateway route skipped: {e}");
                    }
                }
                ApiKind::Websocket => {
                    if let Some(e) = s.route_selection_expression.as_deref() {
                        selection = Some(e);
                    }
                    snap.ws.insert(s.route.clone(), target);
                }
            }
        }
        if !snap.ws.is_empty() {
            let expr = selection.unwrap_or(DEFAULT_ROUTE_SELECTION);
            snap.ws_selector = RouteSelector::parse(expr)
                .or_else(|_| RouteSelector::parse(DEFAULT_ROUTE_SELECTION))
                .ok();
        }
        for u in input.urls {
            if FunctionName::try_from(u.function.clone()).is_err() {
                continue;
            }
            let s = &u.spec;
            let runs = nimbus_core::Target::function(u.function.clone(), s.qualifier.clone());
            let target = Arc::new(Target {
                route_id: u.url_id.clone(),
                route_key: DEFAULT_ROUTE_KEY.to_owned(),
                label: runs.to_string(),
                runs,
                format: EventFormat::FunctionUrl,
                auth: resolve_auth(s.auth, None, input.keys, &u.function),
                cors: s.cors.as_ref().map(|c| c.to_config()),
                limiter: None,
                body_limit: s.body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
                url_api: Some(
                    UrlIdentity::with_account(
                        &u.url_id,
                        input.region,
                        if s.auth == AuthKind::None {
                            "anonymous"
                        } else {
                            input.account_id
                        },
                    )
                    .api()
                    .clone(),
                ),
                streaming: s.invoke_mode == crate::config::InvokeMode::ResponseStream,
            });
            snap.urls.insert(u.url_id.clone(), target);
        }
        snap
    }

    /// The payload format of a target's events (function URLs use 2.0).
    pub fn payload_format(format: EventFormat) -> PayloadFormat {
        match format {
            EventFormat::Rest => PayloadFormat::V1,
            _ => PayloadFormat::V2,
        }
    }
}
