//! Between the store's types and s3s's DTOs: errors with S3's codes, stored
//! attributes, timestamps, ETags, and request bodies streamed into a writer.

use futures::StreamExt;
use md5::{Digest, Md5};
use nimbus_store::{ObjectAttrs, ObjectError, ObjectWriter};
use s3s::dto::{ETag, StreamingBlob, Timestamp};
use s3s::{S3Error, S3ErrorCode, s3_error};

/// The largest single PUT or part: S3's own limit (data streams to disk).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's key length limit, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The S3 error for an object store error: its code from the error table's
/// `s3` column; an internal error's message masked, its detail logged.
pub fn store_error(e: ObjectError) -> S3Error {
    let code = e.code();
    let s3_code =
        S3ErrorCode::from_bytes(code.row().s3.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let (message, internal) = nimbus_api::mask(code, e.to_string());
    if let Some(detail) = internal {
        nimbus_api::InternalDetail::log(format!("object store: {detail}"));
    }
    S3Error::with_message(s3_code, message)
}

pub fn timestamp(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

pub fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_string())
}

pub fn check_key(key: &str) -> Result<(), S3Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long (at most 1024 bytes)"
        ));
    }
    Ok(())
}

/// Headers stored with an object and returned on GET/HEAD.
pub struct Headers {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub metadata: Option<s3s::dto::Metadata>,
}

pub fn attrs(h: Headers) -> ObjectAttrs {
    let mut a = ObjectAttrs {
        content_type: h.content_type,
        ..ObjectAttrs::default()
    };
    // `aws-chunked` is framing, never part of what is stored.
    let encoding = h.content_encoding.and_then(|e| {
        let rest: Vec<&str> = e
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "aws-chunked")
            .collect();
        (!rest.is_empty()).then(|| rest.join(","))
    });
    for (name, value) in [
        ("cache-control", h.cache_control),
        ("content-disposition", h.content_disposition),
        ("content-encoding", encoding),
        ("content-language", h.content_language),
    ] {
        if let Some(v) = value {
            a.headers.insert(name.to_string(), v);
        }
    }
    a.user = h.metadata.unwrap_or_default().into_iter().collect();
    a
}

pub fn content_type(a: &ObjectAttrs) -> String {
    a.content_type
        .clone()
        .unwrap_or_else(|| "binary/octet-stream".into())
}

pub fn header(a: &ObjectAttrs, name: &str) -> Option<String> {
    a.headers.get(name).cloned()
}

pub fn metadata(a: &ObjectAttrs) -> Option<s3s::dto::Metadata> {
    (!a.user.is_empty()).then(|| a.user.clone().into_iter().collect())
}

/// Maps an error from s3s's body stream (hash and chunk checks happen while
/// it is read) to the S3 error clients expect. s3s's stream error types are
/// private, so this goes by their names.
fn body_error(e: &(dyn std::error::Error + 'static)) -> S3Error {
    if let Some(s3) = e.downcast_ref::<S3Error>() {
        return S3Error::with_message(s3.code().clone(), s3.message().unwrap_or("").to_string());
    }
    let text = e.to_string();
    let (code, status) = if text.contains("Sha256Mismatch") {
        ("XAmzContentSHA256Mismatch", http::StatusCode::BAD_REQUEST)
    } else if text.contains("SignatureMismatch") {
        ("SignatureDoesNotMatch", http::StatusCode::FORBIDDEN)
    } else {
        ("IncompleteBody", http::StatusCode::BAD_REQUEST)
    };
    let mut err = S3Error::with_message(
        S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InvalidRequest),
        text,
    );
    err.set_status_code(status);
    err
}

/// Streams a request body into `writer`, checking the size limit and a
/// `Content-MD5` when one was sent.
pub async fn receive(
    body: Option<StreamingBlob>,
    writer: &mut ObjectWriter,
    content_md5: Option<&str>,
) -> Result<(), S3Error> {
    let expected_md5 = match content_md5 {
        Some(b64) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim())
                .ok()
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                })?,
        ),
        None => None,
    };
    let mut md5 = expected_md5.as_ref().map(|_| Md5::new());
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| body_error(&*e))?;
            if writer.size() + chunk.len() as u64 > MAX_OBJECT_BYTES {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed object size (5 GiB)."
                ));
            }
            if let Some(h) = md5.as_mut() {
                h.update(&chunk);
            }
            writer.write(&chunk).await.map_err(store_error)?;
        }
    }
    if let (Some(expected), Some(h)) = (expected_md5, md5)
        && h.finalize().as_slice() != expected.as_slice()
    {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    Ok(())
}
