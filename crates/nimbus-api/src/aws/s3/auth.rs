//! Who may call the object API: s3s verifies the signature with a secret from
//! Nimbus's key store, then [`Grants`] decides per bucket. Operators may do
//! anything; a function's credentials reach only the buckets its
//! `permissions` grant (`s3:<bucket-or-glob>`), read live from the registry.

use std::sync::Arc;

use nimbus_store::KeyStore;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::ApiState;
use crate::aws::Principal;

pub(crate) struct KeyAuth {
    pub keys: Arc<dyn KeyStore>,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.secret(access_key).await {
            Ok(Some(secret)) => Ok(SecretKey::from(&*secret)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Err(e) => Err(s3_error!(InternalError, "key store: {e}")),
        }
    }
}

pub(crate) struct Grants {
    pub state: ApiState,
}

/// AccessDenied for `bucket` unless `principal` was granted it.
pub(crate) fn check_bucket(state: &ApiState, principal: &Principal, bucket: &str) -> S3Result<()> {
    if principal.allows(state, "s3", bucket) {
        Ok(())
    } else {
        Err(s3_error!(
            AccessDenied,
            "{} is not granted s3:{bucket}",
            principal.describe()
        ))
    }
}

#[async_trait::async_trait]
impl S3Access for Grants {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let principal = match self.state.keys.function_of(&credentials.access_key) {
            Some(function) => Principal::Function(function),
            None => Principal::Operator,
        };
        match cx.s3_path() {
            S3Path::Root => {}
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => {
                check_bucket(&self.state, &principal, bucket)?;
            }
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }
}
