//! Bucket operations. A function's ListBuckets shows only the buckets it was
//! granted; every other bucket operation was checked by `auth::Grants`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert::{store_error, timestamp};
use super::{NimbusS3, principal};

impl NimbusS3 {
    pub(super) async fn list_buckets_(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = principal(&req);
        let prefix = req.input.prefix.unwrap_or_default();
        let buckets = self
            .state
            .objects
            .list_buckets()
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|b| {
                b.name.starts_with(&prefix)
                    && who.allows(
                        &self.state,
                        "s3:ListBucket",
                        &nimbus_core::policy::ArnScope::bucket(&b.name),
                    )
            })
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("nimbus".into()),
                id: Some("nimbus".into()),
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn create_bucket_(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket;
        self.state
            .objects
            .create_bucket(&name)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(super) async fn delete_bucket_(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.state
            .objects
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn head_bucket_(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn get_bucket_location_(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    /// The bucket, or NoSuchBucket.
    pub(super) async fn require_bucket(&self, name: &str) -> S3Result<nimbus_store::BucketInfo> {
        self.state
            .objects
            .bucket(name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }
}
