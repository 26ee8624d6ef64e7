//! AWS-compatible APIs on the API listener: requests are authenticated with
//! Signature Version 4 against Nimbus-managed access keys, and answered in the AWS
//! wire formats, so boto3, the AWS CLI and the AWS SDKs work by changing only the
//! endpoint. Each service lives in its own module and maps onto the same engine
//! commands as the native API (`nimbus-api`), whose body reader, key mode and
//! error masking it shares; the binary mounts both on one listener ([`app`]).

use std::sync::Arc;

mod auth;
pub mod connections;
mod error;
pub(crate) mod eventstream;
#[doc(hidden)]
pub mod fuzzing;
mod lambda;
pub mod principal;
pub mod s3;
pub mod sigv4;
mod sns;
mod sqs;
mod stepfunctions;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};

pub use error::AwsError;
pub use nimbus_api::AuthMode;
pub use principal::Principal;

/// What the AWS handlers share: the engine services the protocols map onto,
/// and the stores they read directly.
#[derive(Clone)]
pub struct AwsState {
    pub control: Arc<nimbus_engine::ControlPlane>,
    pub invoker: Arc<nimbus_engine::Invoker>,
    pub keys: Arc<dyn nimbus_store::KeyStore>,
    /// Asynchronous invocations (`InvocationType: Event`, event invoke configs).
    pub events: Arc<nimbus_engine::AsyncInvoker>,
    /// Function URLs.
    pub gateway: Arc<nimbus_gateway::Gateway>,
    /// State machines and their executions (Step Functions API).
    pub workflows: Arc<nimbus_engine::workflows::Workflows>,
    /// Queues, topics and event source mappings (SQS and SNS APIs).
    pub messaging: Arc<nimbus_engine::messaging::wiring::Messaging>,
    /// Bucket notifications (the S3 API's event source).
    pub object_events: Arc<nimbus_engine::sources::object_events::ObjectEvents>,
    /// Whether AWS API requests must be signed.
    pub auth: AuthMode,
    /// Buckets and objects of the S3-compatible API.
    pub objects: Arc<dyn nimbus_store::ObjectStore>,
}

/// The whole API listener: the native API (`/v1/...`) and the AWS APIs on
/// one router. S3 (signed for `s3`) is recognised by its signature, before
/// any route, so its layer wraps both; outermost, one layer logs the
/// internal errors every handler masked.
pub fn app(native: Router, state: AwsState) -> Router {
    native
        .merge(routes(state.clone()).with_state(state.clone()))
        .layer(middleware::from_fn_with_state(state, s3::dispatch))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn(nimbus_api::log_internal_errors))
}

/// The AWS routes, behind SigV4 authentication.
pub fn routes(state: AwsState) -> Router<AwsState> {
    lambda::routes()
        .route("/", axum::routing::post(json_target))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            principal::limit_functions,
        ))
        .layer(middleware::from_fn_with_state(state, auth::authenticate))
        .layer(middleware::from_fn(auth::request_id))
}

/// `POST /` of the AWS JSON protocols: the service and operation are in
/// `X-Amz-Target` (`AWSStepFunctions.StartExecution`), so dispatch on its prefix.
/// Other JSON-protocol services (SQS: `AmazonSQS.*`) add their prefix here.
async fn json_target(State(s): State<AwsState>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(op) = target.strip_prefix(stepfunctions::TARGET_PREFIX) {
        return stepfunctions::handle(s, op, req.into_body()).await;
    }
    if let Some(op) = target.strip_prefix(sqs::TARGET_PREFIX) {
        let (principal, headers) = (Principal::of(&req), req.headers().clone());
        return sqs::handle(s, principal, &headers, op, req.into_body()).await;
    }
    if sns::is_sns(req.method(), req.uri().path(), req.headers()) {
        return sns::handle(s.clone(), Principal::of(&req), req.into_body()).await;
    }
    stepfunctions::StatesError::new(
        "UnknownOperationException",
        format!("unknown X-Amz-Target '{target}'"),
    )
    .into_response()
}

/// The SigV4 service a request must be signed for.
pub(crate) fn expected_service(req: &axum::http::request::Parts) -> sigv4::Service {
    if is_json_protocol(req.uri.path(), &req.headers) {
        sigv4::Service::Other("states")
    } else if is_sqs(req.uri.path(), &req.headers) {
        sigv4::Service::Other("sqs")
    } else if sns::is_sns(&req.method, req.uri.path(), &req.headers) {
        sigv4::Service::Other("sns")
    } else {
        sigv4::Service::Lambda
    }
}

/// Whether a request is a Step Functions (JSON 1.0 protocol) call.
pub(crate) fn is_json_protocol(path: &str, headers: &axum::http::HeaderMap) -> bool {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    path == "/" && target.starts_with(stepfunctions::TARGET_PREFIX)
}

/// Whether a request is an SQS (JSON 1.0 protocol, `AmazonSQS.*`) call.
pub(crate) fn is_sqs(path: &str, headers: &axum::http::HeaderMap) -> bool {
    path == "/"
        && headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(sqs::TARGET_PREFIX))
}
