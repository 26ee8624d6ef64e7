//! The S3-compatible object API, path-style, on the API listener.
//!
//! # Why `s3s`
//!
//! The S3 wire protocol (rest-xml, dozens of headers per operation, aws-chunked
//! bodies, presigned URLs, S3's own SigV4 canonicalisation) is large and full of
//! client-specific corners. [`s3s`] parses and renders all of it from the
//! published Smithy model, so this module only maps operations onto the
//! [`ObjectStore`](nimbus_store::ObjectStore) trait.
//!
//! # Dispatch
//!
//! S3 shares the listener with `/v1/…`, the Lambda paths and `/metrics`. As
//! LocalStack does, a request is S3 when its SigV4 credential scope (the
//! `Authorization` header or a presigned `X-Amz-Credential`) names the `s3`
//! service (or it is a SigV2 presigned URL, which only S3 has), so a bucket called `metrics` still works and `GET /` signed for
//! `s3` is ListBuckets. [`dispatch`] is a layer on the whole router that hands
//! those requests to the s3s service before any route runs. An answer to an
//! `Expect: 100-continue` request whose body was never read closes the
//! connection, or the client's next request would be taken for that body
//! ([`framing`]).
//!
//! # Authentication and authorisation
//!
//! S3 requests do **not** go through Nimbus's SigV4 middleware
//! (`aws/auth.rs`): that one buffers the whole body (70 MB cap) before
//! verifying, which objects outgrow. s3s verifies SigV4 itself while
//! streaming — signed payload hashes, `UNSIGNED-PAYLOAD`, presigned URLs and
//! aws-chunked bodies with chunk signatures or unsigned trailers — with secrets
//! from Nimbus's [`KeyStore`](nimbus_store::KeyStore) ([`auth::KeyAuth`]).
//! [`auth::Grants`] then turns the access key into a [`Principal`] and checks
//! that a function's `permissions` grant the bucket (AccessDenied otherwise);
//! handlers read the principal from the request extensions (ListBuckets
//! filters by it, CopyObject checks the source bucket too). Under `--dev`
//! the `Authorization` header is dropped and everyone is an operator
//! (presigned URLs and aws-chunked uploads need a real key then).
//!
//! # Limits
//!
//! Bodies stream into the store while hashed, never into memory, so a single
//! PUT may be as large as S3 allows (5 GiB, `EntityTooLarge` beyond), and a
//! multipart upload up to 10,000 parts. XML bodies are capped by s3s (20 MB).

mod auth;
mod buckets;
mod convert;
mod framing;
mod multipart;
pub(crate) mod notify;
mod objects;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use super::Principal;
use crate::AwsState;

/// The S3 operations Nimbus implements, over the API state.
#[derive(Clone)]
pub(crate) struct NimbusS3 {
    pub state: AwsState,
}

/// Whether a request is signed for the `s3` service.
pub(crate) fn is_s3_request(req: &Request) -> bool {
    let scope_is_s3 = |credential: &str| credential.split('/').nth(3) == Some("s3");
    if let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return auth
            .split(['=', ',', ' '])
            .skip_while(|p| *p != "Credential")
            .nth(1)
            .is_some_and(scope_is_s3);
    }
    // Presigned: SigV4 names the service in `X-Amz-Credential`; SigV2 URLs
    // (boto3's default for `generate_presigned_url`) only exist for S3.
    req.uri().query().is_some_and(|q| {
        q.split('&').any(|pair| {
            pair.starts_with("AWSAccessKeyId=")
                || pair
                    .strip_prefix("X-Amz-Credential=")
                    .is_some_and(|v| scope_is_s3(&v.replace("%2F", "/").replace("%2f", "/")))
        })
    })
}

/// Router layer: S3-signed requests go to the object API, others on.
pub async fn dispatch(State(state): State<AwsState>, req: Request, next: Next) -> Response {
    if !is_s3_request(&req) {
        return next.run(req).await;
    }
    serve(state, req).await
}

async fn serve(state: AwsState, req: Request) -> Response {
    let dev = state.auth == crate::AuthMode::Dev;
    let mut builder = s3s::service::S3ServiceBuilder::new(NimbusS3 {
        state: state.clone(),
    });
    if !dev {
        builder.set_auth(auth::KeyAuth {
            keys: state.keys.clone(),
        });
        builder.set_access(auth::Grants { state });
    }
    let service = builder.build();
    let (mut parts, body) = req.into_parts();
    if dev {
        parts.headers.remove(http::header::AUTHORIZATION);
    }
    let expects_continue = framing::expects_continue(parts.version, &parts.headers);
    let (body, consumed) = framing::track(body);
    let req = http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
    match service.call(req).await {
        Ok(mut resp) => {
            framing::close_if_unread(expects_continue, &consumed, resp.headers_mut());
            resp.map(axum::body::Body::new)
        }
        Err(e) => {
            tracing::warn!("S3 request failed: {e:?}");
            let mut resp = http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
            framing::close_if_unread(expects_continue, &consumed, resp.headers_mut());
            resp
        }
    }
}

fn principal<T>(req: &S3Request<T>) -> Principal {
    req.extensions
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Operator)
}

#[async_trait::async_trait]
impl S3 for NimbusS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_(req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket_(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket_(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_(req).await
    }
    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        self.put_notifications(req).await
    }
    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.get_notifications(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.put_object_(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object_(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects_(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_(req).await
    }
}
