//! Who may call the object API: s3s verifies the signature with a secret from
//! Nimbus's key store, then [`Grants`] maps the operation to its IAM action
//! and resource ([`action_of`]: `GetObject` is `s3:GetObject` on
//! `arn:aws:s3:::bucket/key`, `ListObjectsV2` is `s3:ListBucket` on
//! `arn:aws:s3:::bucket`, as the service authorization reference defines)
//! and asks the policy evaluator. Operators may do anything; a function's
//! credentials reach only what its `permissions` allow, read live from the
//! registry. Operations naming a second resource check it in their handler
//! (CopyObject's source, DeleteObjects' keys, notification targets).

use std::sync::Arc;

use nimbus_store::KeyStore;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::AwsState;
use crate::Principal;

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
    pub state: AwsState,
}

/// AccessDenied unless `principal` may perform `action` on `resource`.
pub(crate) fn check(
    state: &AwsState,
    principal: &Principal,
    action: &str,
    resource: &str,
) -> S3Result<()> {
    if principal.allows(state, action, resource) {
        Ok(())
    } else {
        Err(s3_error!(
            AccessDenied,
            "{}",
            principal.denial(action, resource)
        ))
    }
}

/// The IAM action of an S3 operation and whether it acts on the object
/// (`true`) or the bucket. Operations Nimbus does not implement map to
/// `s3:<Operation>` (s3s answers NotImplemented after the check).
pub(crate) fn action_of(op: &str) -> (String, bool) {
    let (action, object) = match op {
        "GetObject" | "HeadObject" => ("s3:GetObject", true),
        "PutObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => ("s3:PutObject", true),
        "DeleteObject" => ("s3:DeleteObject", true),
        "AbortMultipartUpload" => ("s3:AbortMultipartUpload", true),
        "ListParts" => ("s3:ListMultipartUploadParts", true),
        // Each key is checked for s3:DeleteObject by the handler.
        "DeleteObjects" => ("s3:DeleteObject", false),
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => ("s3:ListBucket", false),
        "ListMultipartUploads" => ("s3:ListBucketMultipartUploads", false),
        "CreateBucket" => ("s3:CreateBucket", false),
        "DeleteBucket" => ("s3:DeleteBucket", false),
        "GetBucketLocation" => ("s3:GetBucketLocation", false),
        "PutBucketNotificationConfiguration" => ("s3:PutBucketNotification", false),
        "GetBucketNotificationConfiguration" => ("s3:GetBucketNotification", false),
        other => return (format!("s3:{other}"), other.contains("Object")),
    };
    (action.to_string(), object)
}

#[async_trait::async_trait]
impl S3Access for Grants {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let principal = match self.state.keys.function_of(&credentials.access_key) {
            Some(function) => Principal::function_with(function, cx.headers()),
            None => Principal::Operator,
        };
        let (action, on_object) = action_of(cx.s3_op().name());
        match cx.s3_path() {
            // ListBuckets: filtered by the handler.
            S3Path::Root => {}
            // DeleteObjects: each key is checked by the handler.
            S3Path::Bucket { .. } if cx.s3_op().name() == "DeleteObjects" => {}
            S3Path::Bucket { bucket } => {
                let resource = nimbus_core::policy::ArnScope::bucket(bucket);
                check(&self.state, &principal, &action, &resource)?;
            }
            S3Path::Object { bucket, key } => {
                let resource = if on_object {
                    nimbus_core::policy::ArnScope::object(bucket, key)
                } else {
                    nimbus_core::policy::ArnScope::bucket(bucket)
                };
                check(&self.state, &principal, &action, &resource)?;
            }
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }
}
