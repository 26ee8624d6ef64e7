//! The native control-plane API: JSON over HTTP, described by `openapi.json`.
//!
//! Handlers are thin: they parse, call the engine, and render. All errors leave
//! through [`ApiError`], one JSON shape with a stable code, so clients (the CLI
//! first) can rely on it. Request bodies are read with explicit limits per route,
//! never the framework's default, so an oversized payload gets a precise 413.

mod auth;
mod dlq;
mod error;
mod functions;
mod invoke;
mod keys;
mod routes;
mod schedules;
mod usage;
mod versions;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use nimbus_engine::{ControlPlane, Invoker};
use nimbus_store::{KeyStore, LogStore};

pub use auth::AuthMode;
pub use error::{ApiError, INTERNAL_MESSAGE, InternalDetail, log_internal_errors, mask, read_body};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub control: Arc<ControlPlane>,
    pub invoker: Arc<Invoker>,
    pub logs: Arc<dyn LogStore>,
    pub keys: Arc<dyn KeyStore>,
    pub events: Arc<nimbus_engine::AsyncInvoker>,
    /// Routes, function URLs and keys of the HTTP gateway.
    pub gateway: Arc<nimbus_gateway::Gateway>,
    pub scheduler: Arc<nimbus_engine::scheduler::Scheduler>,
    /// State machines and their executions (`/v1/workflows`, Step Functions API).
    pub workflows: Arc<nimbus_engine::workflows::Workflows>,
    /// Queues, topics and event source mappings (for their usage counters).
    pub messaging: Arc<nimbus_engine::messaging::wiring::Messaging>,
    /// Rate and cron rules that invoke functions or start workflows.
    pub schedules: Arc<nimbus_engine::sources::schedules::Schedules>,
    /// Whether requests must carry an access key.
    pub auth: AuthMode,
}

pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/v1/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/v1/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/v1/code", post(functions::upload_code))
        .route(
            "/v1/functions",
            get(functions::list).post(functions::create),
        )
        .route(
            "/v1/functions/{name}",
            get(functions::get)
                .put(functions::put)
                .patch(functions::patch)
                .delete(functions::delete),
        )
        .route("/v1/functions/{name}/code", put(functions::update_code))
        .route("/v1/functions/{name}/invoke", post(invoke::invoke))
        .route("/v1/functions/{name}/logs", get(functions::logs))
        .route(
            "/v1/functions/{name}/versions",
            get(versions::list_versions).post(versions::publish),
        )
        .route(
            "/v1/functions/{name}/versions/{version}",
            axum::routing::delete(versions::delete_version),
        )
        .route("/v1/functions/{name}/aliases", get(versions::list_aliases))
        .route(
            "/v1/functions/{name}/aliases/{alias}",
            put(versions::put_alias).delete(versions::delete_alias),
        )
        .route("/v1/code/{sha256}", get(functions::download_code))
        .route("/v1/usage", get(usage::usage))
        .route("/metrics", get(usage::metrics))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/{id}/replay", post(dlq::replay))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", axum::routing::delete(keys::delete))
        .route("/v1/routes", get(routes::list).post(routes::add))
        .route("/v1/routes/{id}", axum::routing::delete(routes::remove))
        .route(
            "/v1/functions/{name}/url",
            get(routes::get_url)
                .put(routes::put_url)
                .delete(routes::delete_url),
        )
        .route(
            "/v1/gateway/keys",
            get(routes::list_keys).post(routes::create_key),
        )
        .route(
            "/v1/gateway/keys/{id}",
            axum::routing::delete(routes::delete_key),
        )
        .route(
            "/v1/workflows",
            get(workflows::list).post(workflows::create),
        )
        .route(
            "/v1/workflows/{name}",
            get(workflows::get)
                .put(workflows::put)
                .delete(workflows::delete),
        )
        .route(
            "/v1/workflows/{name}/executions",
            get(workflows::list_executions).post(workflows::start),
        )
        .route("/v1/executions/{id}", get(workflows::describe_execution))
        .route("/v1/executions/{id}/history", get(workflows::history))
        .route("/v1/executions/{id}/stop", post(workflows::stop))
        .route(
            "/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/v1/schedules/{name}",
            get(schedules::get)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route("/v1/debug/clock", post(schedules::advance_clock))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
