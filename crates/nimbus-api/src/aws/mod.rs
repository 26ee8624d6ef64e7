//! AWS-compatible APIs on the API listener: requests are authenticated with
//! Signature Version 4 against Nimbus-managed access keys, and answered in the AWS
//! wire formats, so boto3, the AWS CLI and the AWS SDKs work by changing only the
//! endpoint. Each service lives in its own module and maps onto the same engine
//! commands as the native API.

mod auth;
mod error;
mod lambda;
pub mod sigv4;

use axum::Router;
use axum::middleware;

pub use auth::AuthMode;
pub use error::AwsError;

use crate::ApiState;

/// The AWS routes, behind SigV4 authentication.
pub fn routes(state: ApiState) -> Router<ApiState> {
    lambda::routes()
        .layer(middleware::from_fn_with_state(state, auth::authenticate))
        .layer(middleware::from_fn(auth::request_id))
}
