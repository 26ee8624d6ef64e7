//! Multipart uploads: parts are staged and stored like objects; completing
//! checks S3's rules (ascending part numbers, matching ETags, 5 MiB minimum
//! but for the last part) and assembles them into one object whose ETag is the
//! MD5 of the parts' MD5s, `-<count>`.

use nimbus_store::UploadInfo;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::NimbusS3;
use super::convert::{Headers, attrs, check_key, etag, put_body, store_error, timestamp};

impl NimbusS3 {
    /// The upload, if it belongs to `bucket/key` (NoSuchUpload otherwise).
    async fn upload_of(&self, id: &str, bucket: &str, key: &str) -> S3Result<UploadInfo> {
        let upload = self.state.objects.upload(id).await.map_err(store_error)?;
        if upload.bucket != bucket || upload.key != key {
            return Err(s3_error!(
                NoSuchUpload,
                "The specified upload does not exist"
            ));
        }
        Ok(upload)
    }

    pub(super) async fn create_multipart_upload_(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let stored = attrs(Headers {
            content_type: input.content_type.map(|c| c.to_string()),
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_encoding: input.content_encoding,
            content_language: input.content_language,
            metadata: input.metadata,
        });
        let upload = self
            .state
            .objects
            .create_upload(&input.bucket, &input.key, stored)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            upload_id: Some(upload.id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let number = u32::try_from(input.part_number)
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive"
                )
            })?;
        self.upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let body = put_body(
            input.body,
            input.content_md5.as_deref(),
            input.content_length,
        )?;
        let part = self
            .state
            .objects
            .put_part(&input.upload_id, number, body)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let region = req.region.as_ref().map(|r| r.to_string());
        let who = super::principal(&req);
        let input = req.input;
        let upload = self
            .upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let bucket = self.require_bucket(&upload.bucket).await?;
        let parts: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.part_number
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    p.e_tag.map(|e| e.value().to_string()).unwrap_or_default(),
                )
            })
            .collect();
        if parts.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let notifications = self.notifications(
            &who,
            &bucket,
            "ObjectCreated:CompleteMultipartUpload",
            &upload.key,
            region.as_deref(),
        );
        let meta = self
            .state
            .objects
            .complete_upload(&upload.id, &parts, &notifications)
            .await
            .map_err(store_error)?;
        self.notified(&notifications);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(upload.bucket.clone()),
            key: Some(meta.key.clone()),
            e_tag: Some(etag(&meta.etag)),
            location: Some(format!("/{}/{}", upload.bucket, meta.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        self.state
            .objects
            .abort_upload(&input.upload_id)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.upload_of(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let after = input
            .part_number_marker
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0);
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let all = self
            .state
            .objects
            .list_parts(&input.upload_id)
            .await
            .map_err(store_error)?;
        let mut parts: Vec<_> = all.into_iter().filter(|p| p.number > after).collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = truncated
            .then(|| parts.last().map(|p| p.number as i32))
            .flatten();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            next_part_number_marker: next,
            part_number_marker: input.part_number_marker,
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number as i32),
                        size: Some(p.size as i64),
                        e_tag: Some(etag(&p.etag)),
                        last_modified: Some(timestamp(p.modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}
