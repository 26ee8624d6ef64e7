//! Object operations: put (streamed into the store, then committed), get
//! with single ranges and conditionals, head, delete, copy, and listings (v1
//! and v2; continuation tokens are the last returned name, base64). A create
//! or remove commits the bucket notifications it triggers with it (the
//! store's outbox), so an acknowledged write's events are never lost.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nimbus_store::{ListEntry, ListQuery, ObjectMeta};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::auth::check;
use super::convert::{
    Headers, attrs, byte_range, check_key, content_type, etag, header, metadata, put_body,
    store_error, timestamp,
};
use super::{NimbusS3, principal};
use crate::Principal;
use nimbus_core::policy::ArnScope;

/// S3's default and largest page.
const MAX_KEYS: i32 = 1000;
/// Most keys one DeleteObjects names (S3: 1,000, else `MalformedXML`).
const MAX_DELETE_KEYS: usize = 1000;

fn to_object(o: ObjectMeta) -> Object {
    Object {
        key: Some(o.key),
        size: Some(o.size as i64),
        e_tag: Some(etag(&o.etag)),
        last_modified: Some(timestamp(o.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// If-Match / If-None-Match / If-(Un)Modified-Since, in S3's order.
fn preconditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == meta.etag,
    };
    let modified = meta.modified_ms / 1000;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if if_unmodified_since.is_some_and(|t| modified > seconds(t)) {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(s3_error!(NotModified));
        }
    } else if if_modified_since.is_some_and(|t| modified <= seconds(t)) {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

fn token(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name)
}

fn untoken(t: &str) -> S3Result<String> {
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be non-negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

fn split(entries: Vec<ListEntry>) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for e in entries {
        match e {
            ListEntry::Object(o) => objects.push(to_object(o)),
            ListEntry::CommonPrefix(p) => prefixes.push(CommonPrefix { prefix: Some(p) }),
        }
    }
    (objects, prefixes)
}

impl NimbusS3 {
    pub(super) async fn put_object_(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let region = req.region.as_ref().map(|r| r.to_string());
        let who = principal(&req);
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.require_bucket(&input.bucket).await?;
        if input.if_none_match.as_ref().is_some_and(|c| c.is_any()) {
            match self.state.objects.head(&input.bucket, &input.key).await {
                Ok(_) => {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
                Err(nimbus_store::ObjectError::NoSuchKey(_)) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        let body = put_body(
            input.body,
            input.content_md5.as_deref(),
            input.content_length,
        )?;
        let stored = attrs(Headers {
            content_type: input.content_type.map(|c| c.to_string()),
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_encoding: input.content_encoding,
            content_language: input.content_language,
            metadata: input.metadata,
        });
        let notifications = self.notifications(
            &who,
            &bucket,
            "ObjectCreated:Put",
            &input.key,
            region.as_deref(),
        );
        let meta = self
            .state
            .objects
            .put(&input.bucket, &input.key, body, stored, &notifications)
            .await
            .map_err(store_error)?;
        self.notified(&notifications);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    pub(super) async fn get_object_(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let read = self
            .state
            .objects
            .open(&input.bucket, &input.key, input.range.map(byte_range))
            .await
            .map_err(store_error)?;
        let meta = read.meta;
        preconditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = read
            .range
            .ok_or_else(|| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
        let content_range = input
            .range
            .is_some()
            .then(|| format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size));
        let len = range.end - range.start;
        let a = &meta.attrs;
        let output = GetObjectOutput {
            // s3s wants a `Sync` stream; the store's are only `Send`.
            body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(
                read.body,
            ))),
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some(
                input
                    .response_content_type
                    .unwrap_or_else(|| content_type(a)),
            ),
            cache_control: input
                .response_cache_control
                .or_else(|| header(a, "cache-control")),
            content_disposition: input
                .response_content_disposition
                .or_else(|| header(a, "content-disposition")),
            content_encoding: input
                .response_content_encoding
                .or_else(|| header(a, "content-encoding")),
            content_language: input
                .response_content_language
                .or_else(|| header(a, "content-language")),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(timestamp(meta.modified_ms)),
            metadata: metadata(a),
            ..Default::default()
        };
        let status = output
            .content_range
            .is_some()
            .then_some(http::StatusCode::PARTIAL_CONTENT);
        let mut resp = S3Response::new(output);
        resp.status = status;
        Ok(resp)
    }

    pub(super) async fn head_object_(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let meta = self
            .state
            .objects
            .head(&input.bucket, &input.key)
            .await
            .map_err(store_error)?;
        preconditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let a = &meta.attrs;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(meta.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: Some(content_type(a)),
            cache_control: header(a, "cache-control"),
            content_disposition: header(a, "content-disposition"),
            content_encoding: header(a, "content-encoding"),
            content_language: header(a, "content-language"),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(timestamp(meta.modified_ms)),
            metadata: metadata(a),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_object_(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let region = req.region.as_ref().map(|r| r.to_string());
        let who = principal(&req);
        let bucket = self.require_bucket(&req.input.bucket).await?;
        self.delete_one(&who, &bucket, &req.input.key, region.as_deref())
            .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_one(
        &self,
        who: &Principal,
        bucket: &nimbus_store::BucketInfo,
        key: &str,
        region: Option<&str>,
    ) -> S3Result<()> {
        let notifications = self.notifications(who, bucket, "ObjectRemoved:Delete", key, region);
        let removed = self
            .state
            .objects
            .delete(&bucket.name, key, &notifications)
            .await
            .map_err(store_error)?;
        if removed.is_some() {
            self.notified(&notifications);
        }
        Ok(())
    }

    pub(super) async fn delete_objects_(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        if req.input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema (at most {MAX_DELETE_KEYS} keys per request)"
            ));
        }
        let region = req.region.as_ref().map(|r| r.to_string());
        let who = principal(&req);
        let bucket = self.require_bucket(&req.input.bucket).await?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in req.input.delete.objects {
            let allowed = check(
                &self.state,
                &who,
                "s3:DeleteObject",
                &ArnScope::object(&bucket.name, &o.key),
            );
            let result = match allowed {
                Ok(()) => {
                    self.delete_one(&who, &bucket, &o.key, region.as_deref())
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    key: Some(o.key),
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn copy_object_(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let region = req.region.as_ref().map(|r| r.to_string());
        let who = principal(&req);
        let input = req.input;
        check_key(&input.key)?;
        let CopySource::Bucket {
            bucket: src_bucket,
            key: src_key,
            ..
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "access point copy sources"));
        };
        // The source is a resource too: reading it needs s3:GetObject there.
        check(
            &self.state,
            &who,
            "s3:GetObject",
            &ArnScope::object(src_bucket, src_key),
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && **src_bucket == *input.bucket && **src_key == *input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
                 without changing the object's metadata, storage class, website redirect \
                 location or encryption attributes."
            ));
        }
        let bucket = self.require_bucket(&input.bucket).await?;
        let source = self
            .state
            .objects
            .head(src_bucket, src_key)
            .await
            .map_err(store_error)?;
        preconditions(
            &source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| {
            if *e.code() == s3s::S3ErrorCode::NotModified {
                s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )
            } else {
                e
            }
        })?;
        let new_attrs = replace.then(|| {
            attrs(Headers {
                content_type: input.content_type.map(|c| c.to_string()),
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                metadata: input.metadata,
            })
        });
        let notifications = self.notifications(
            &who,
            &bucket,
            "ObjectCreated:Copy",
            &input.key,
            region.as_deref(),
        );
        let meta = self
            .state
            .objects
            .copy(
                (src_bucket, src_key),
                (&input.bucket, &input.key),
                new_attrs,
                &notifications,
            )
            .await
            .map_err(store_error)?;
        self.notified(&notifications);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&meta.etag)),
                last_modified: Some(timestamp(meta.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2_(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = match &input.continuation_token {
            Some(t) => Some(untoken(t)?),
            None => input.start_after.clone(),
        };
        let max_keys = page_size(input.max_keys)?;
        let page = self
            .state
            .objects
            .list(
                &input.bucket,
                &ListQuery {
                    prefix: input.prefix.clone().unwrap_or_default(),
                    delimiter: input.delimiter.clone(),
                    after,
                    max_keys,
                },
            )
            .await
            .map_err(store_error)?;
        let next = page
            .truncated
            .then(|| page.entries.last().map(|e| token(e.name())))
            .flatten();
        let count = page.entries.len() as i32;
        let (contents, prefixes) = split(page.entries);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(input.prefix.unwrap_or_default()),
            delimiter: input.delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(count),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after: input.start_after,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max_keys = page_size(input.max_keys)?;
        let page = self
            .state
            .objects
            .list(
                &input.bucket,
                &ListQuery {
                    prefix: input.prefix.clone().unwrap_or_default(),
                    delimiter: input.delimiter.clone(),
                    after: input.marker.clone().filter(|m| !m.is_empty()),
                    max_keys,
                },
            )
            .await
            .map_err(store_error)?;
        let next_marker = page
            .truncated
            .then(|| page.entries.last().map(|e| e.name().to_string()))
            .flatten();
        let (contents, prefixes) = split(page.entries);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(input.prefix.unwrap_or_default()),
            delimiter: input.delimiter,
            marker: Some(input.marker.unwrap_or_default()),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }
}
