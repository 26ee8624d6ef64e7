//! Between the store's types and s3s's DTOs: errors with S3's codes, stored
//! attributes, timestamps, ETags, byte ranges, and request bodies as the
//! store's streams.

use futures::StreamExt;
use nimbus_store::{ByteRange, ObjectAttrs, ObjectError, PutBody};
use s3s::dto::{ETag, Range, StreamingBlob, Timestamp};
use s3s::{S3Error, S3ErrorCode, s3_error};

/// The largest single PUT or part: S3's own limit (data streams to disk).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's key length limit, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The S3 error for an object store error: its code from the error table's
/// `s3` column; an internal error's message masked, its detail logged.
pub fn store_error(e: ObjectError) -> S3Error {
    let code = match e {
        // The request body's own error (its stream ended badly, a chunk
        // signature failed, the size limit of `put_body`), as it was raised.
        ObjectError::Body(io) => {
            return match io.get_ref() {
                Some(inner) => body_error(inner),
                None => body_error(&io),
            };
        }
        ObjectError::IncompleteBody { .. } => {
            let mut err = S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string());
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            return err;
        }
        _ => e.code(),
    };
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

/// A request body as the store takes it: chunks counted against the size
/// limit as they stream (`EntityTooLarge` past it), the declared length, and
/// the `Content-MD5` when one was sent (checked by the store, which hashes the
/// body anyway for the ETag).
pub fn put_body(
    body: Option<StreamingBlob>,
    content_md5: Option<&str>,
    content_length: Option<i64>,
) -> Result<PutBody, S3Error> {
    let md5 = match content_md5 {
        Some(b64) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim())
                .ok()
                .and_then(|d| <[u8; 16]>::try_from(d).ok())
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                })?,
        ),
        None => None,
    };
    let stream: nimbus_store::ByteStream = match body {
        None => nimbus_store::body::once(bytes::Bytes::new()),
        Some(body) => {
            let mut received = 0u64;
            Box::pin(body.map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                received += chunk.len() as u64;
                if received > MAX_OBJECT_BYTES {
                    return Err(std::io::Error::other(s3_error!(
                        EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed object size (5 GiB)."
                    )));
                }
                Ok(chunk)
            }))
        }
    };
    Ok(PutBody {
        stream,
        len: content_length.and_then(|n| u64::try_from(n).ok()),
        md5,
    })
}

/// The store's form of a `Range` header.
pub fn byte_range(range: Range) -> ByteRange {
    match range {
        Range::Int { first, last } => ByteRange::Int { first, last },
        Range::Suffix { length } => ByteRange::Suffix { length },
    }
}
