//! Nimbus's HTTP gateway: API Gateway-style routes, function URLs and
//! WebSocket APIs in front of the engine's `Dispatcher` (the one door of
//! every event source: a route runs a function or starts a workflow).
//!
//! The gateway lets functions written for API Gateway (REST and HTTP APIs),
//! Lambda function URLs and WebSocket APIs run unchanged behind Nimbus. What
//! makes that work is not the listener but the details: which route wins,
//! what the event looks like down to `null` versus absent, how a handler's
//! return value becomes a response. Those details live here as pure
//! functions over `http` types and bytes, so they are unit-tested exhaustively
//! and the listener stays a thin piece of wiring.
//!
//! One request, in order:
//!
//! 0. [`path::normalize`]: dot segments resolved, encoded slashes refused
//!    (400), so a route's auth covers every spelling of its paths;
//! 1. CORS preflight: [`cors::is_preflight`] → [`cors::CorsConfig::preflight`]
//!    (answered by the gateway, no function runs);
//! 2. [`routes::RouteTable::lookup`] → 404 via [`apigw::not_found_response`];
//! 3. [`ratelimit::RateLimiter::check`] → 429 via [`ratelimit::Throttled::response`];
//! 4. [`auth`]: keys or [`auth::JwtVerifier::verify_request`] → 401/403 via
//!    [`auth::GatewayAuthError::response`];
//! 5. build the event: [`apigw::v1::build_event`], [`apigw::v2::build_event`]
//!    or [`apigw::function_url::build_event`] from an [`apigw::ProxyRequest`];
//! 6. run the route's target with those bytes (the engine's `Dispatcher`:
//!    a function, or a workflow);
//! 7. map its output: `parse_response` of the same format (framing and
//!    hop-by-hop headers removed, [`apigw::strip_framing_headers`]), and on
//!    error or function failure the format's `malformed_response`;
//! 8. [`cors::CorsConfig::apply`] on the response headers;
//! 9. log an [`access_log::AccessLog`] line.
//!
//! Those building blocks are pure and unit-tested. Around them:
//! [`config`] (what users declare), [`snapshot`] (the compiled, immutable view
//! the request path reads, swapped atomically on change), [`control`]
//! ([`Gateway`]: validated changes, stored and recompiled), and the I/O:
//! [`server`] (the listener) and [`ws_server`] (WebSocket sessions and the
//! connections endpoint, replying with [`ws_reply`]'s route responses;
//! [`peers`] reaches the connections other nodes of a cluster hold).

pub mod access_log;
pub mod apigw;
pub mod auth;
pub mod config;
pub mod control;
pub mod cors;
pub mod path;
pub mod peers;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod snapshot;
mod streaming;
pub mod websocket;
pub mod ws_reply;
pub mod ws_server;

pub use access_log::AccessLog;
pub use apigw::{ApiInfo, PayloadFormat, ProxyRequest, ResponseError};
pub use auth::{GatewayAuthError, JwtPrincipal, JwtVerifier, KeyHash};
pub use config::{
    ApiKind, AuthKind, FunctionUrl, GatewayKey, InvokeMode, KeyKind, KeySpec, NewGatewayKey, Route,
    RouteSpec, UrlSpec,
};
pub use control::{Gateway, GatewayError, GatewaySettings};
pub use cors::CorsConfig;
pub use peers::Peers;
pub use ratelimit::{RateLimit, RateLimiter, Throttled, TokenBucket};
pub use routes::{
    Lookup, PathParams, RouteError, RouteMatch, RouteMethod, RouteTable, RouteTarget,
};
pub use server::{GatewayServer, ServerOptions};
pub use ws_server::{ConnectionsAuth, ManageDenied, ManageRequest, WsLimits};
