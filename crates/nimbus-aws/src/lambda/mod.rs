//! The Lambda API (2015-03-31) subset: functions, invoke, account settings,
//! tags, and function URLs (on the gateway).
//!
//! Routes accept both the old botocore forms with a trailing slash and the new ones.
//! Operations of the API that Nimbus does not implement yet answer with a clear
//! error naming the operation, never a silent success.

mod event_config;
mod event_sources;
mod functions;
mod invoke;
mod provisioned;
mod shapes;
mod urls;
mod versions;

use axum::Router;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};

use super::AwsError;
use crate::AwsState;

pub fn routes() -> Router<AwsState> {
    Router::new()
        .route(
            "/2015-03-31/functions",
            get(functions::list).post(functions::create),
        )
        .route(
            "/2015-03-31/functions/",
            get(functions::list).post(functions::create),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(functions::get).delete(functions::delete),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(functions::get_configuration).put(functions::update_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            axum::routing::put(functions::update_code),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            post(invoke::invoke_with_response_stream),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            get(versions::list_versions).post(versions::publish),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            get(versions::list_aliases).post(versions::create_alias),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(versions::get_alias)
                .put(versions::update_alias)
                .delete(versions::delete_alias),
        )
        .route(
            "/2015-03-31/event-source-mappings",
            get(event_sources::list).post(event_sources::create),
        )
        .route(
            "/2015-03-31/event-source-mappings/",
            get(event_sources::list).post(event_sources::create),
        )
        .route(
            "/2015-03-31/event-source-mappings/{uuid}",
            get(event_sources::get)
                .put(event_sources::update)
                .delete(event_sources::delete),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(event_config::get)
                .put(event_config::put)
                .post(event_config::update)
                .delete(event_config::delete),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            get(provisioned::get)
                .put(provisioned::put)
                .delete(provisioned::delete),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            axum::routing::put(functions::put_concurrency).delete(functions::delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(functions::get_concurrency),
        )
        .route(
            "/2016-08-19/account-settings",
            get(functions::account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(functions::account_settings),
        )
        .route(
            "/2017-03-31/tags/{arn}",
            get(functions::list_tags)
                .post(functions::tag)
                .delete(functions::untag),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            get(urls::get)
                .post(urls::create)
                .put(urls::update)
                .delete(urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(urls::list))
        // The rest of the Lambda API, by version prefix: a clear error, not a 404.
        .route("/2014-11-13/{*rest}", any(not_implemented))
        .route("/2015-03-31/{*rest}", any(not_implemented))
        .route("/2017-03-31/{*rest}", any(not_implemented))
        .route("/2017-10-31/{*rest}", any(not_implemented))
        .route("/2019-09-25/{*rest}", any(not_implemented))
        .route("/2019-09-30/{*rest}", any(not_implemented))
        .route("/2020-04-22/{*rest}", any(not_implemented))
        .route("/2020-06-30/{*rest}", any(not_implemented))
        .route("/2021-10-31/{*rest}", any(not_implemented))
        .route("/2021-11-15/{*rest}", any(not_implemented))
}

async fn not_implemented(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    AwsError::unsupported(&format!("the Lambda operation {method} {}", uri.path()))
}
