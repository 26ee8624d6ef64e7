//! Who may use the gateway's WebSocket connections endpoint
//! (`/@connections/{id}`): the caller AWS would let call
//! `execute-api:ManageConnections`.
//!
//! The endpoint lives on the gateway's public listener, but deciding needs
//! the key store and the grants, which are this crate's; so the gateway asks
//! this [`nimbus_gateway::ConnectionsAuth`]. A request must be SigV4-signed
//! for the `execute-api` service (as boto3's `apigatewaymanagementapi`
//! signs) with an operator key, or with a function's credentials when the
//! function is granted `execute-api:ManageConnections` on the connection's
//! ARN (`execute-api:<api>` grants every action on that API). `--dev`
//! accepts everyone, as on the AWS APIs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nimbus_engine::ControlPlane;
use nimbus_gateway::{ConnectionsAuth, ManageDenied, ManageRequest};
use nimbus_store::KeyStore;
use sha2::{Digest, Sha256};

use super::sigv4;
use nimbus_api::AuthMode;

/// The IAM action the endpoint requires.
pub const MANAGE_CONNECTIONS: &str = "execute-api:ManageConnections";
/// Clock skew tolerated between client and server (as on the AWS APIs).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Checks connections-endpoint requests against the key store and grants.
pub struct ConnectionsAuthorizer {
    keys: Arc<dyn KeyStore>,
    control: Arc<ControlPlane>,
    mode: AuthMode,
}

impl ConnectionsAuthorizer {
    pub fn new(keys: Arc<dyn KeyStore>, control: Arc<ControlPlane>, mode: AuthMode) -> Self {
        Self {
            keys,
            control,
            mode,
        }
    }

    async fn check(&self, req: ManageRequest<'_>) -> Result<(), ManageDenied> {
        if self.mode == AuthMode::Dev {
            return Ok(());
        }
        let denied = |e: sigv4::SigV4Error| ManageDenied(e.to_string());
        let parsed = sigv4::parse_authorization(req.headers).map_err(denied)?;
        sigv4::check_service(&parsed, sigv4::Service::Other("execute-api")).map_err(denied)?;
        let secret = self
            .keys
            .secret(&parsed.credential.access_key_id)
            .await
            .map_err(|e| {
                tracing::warn!("key store: {e}");
                ManageDenied("Forbidden".into())
            })?
            .ok_or_else(|| denied(sigv4::SigV4Error::UnrecognizedClient))?;
        let body_hash = hex::encode(Sha256::digest(req.body));
        let signed = sigv4::SignedRequest {
            method: req.method.as_str(),
            raw_path: req.uri.path(),
            raw_query: req.uri.query(),
            headers: req.headers,
            body_sha256_hex: Some(&body_hash),
        };
        sigv4::verify(&signed, &parsed, &secret, chrono::Utc::now(), MAX_SKEW).map_err(denied)?;
        match self.keys.function_of(&parsed.credential.access_key_id) {
            None => Ok(()),
            Some(function) => {
                if self.control.registry().function_allows(
                    &function,
                    MANAGE_CONNECTIONS,
                    req.resource,
                ) {
                    Ok(())
                } else {
                    Err(ManageDenied(format!(
                        "User: function {function} is not authorized to perform: {MANAGE_CONNECTIONS} on resource: {} \
                         (grant it in the function's permissions, e.g. \"execute-api:nimbus\")",
                        req.resource
                    )))
                }
            }
        }
    }
}

impl ConnectionsAuth for ConnectionsAuthorizer {
    fn authorize<'a>(
        &'a self,
        req: ManageRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ManageDenied>> + Send + 'a>> {
        Box::pin(self.check(req))
    }
}
