//! AWS Signature Version 4: verifying (and producing) signed requests.
//!
//! # Why
//!
//! Nimbus speaks a subset of the Lambda and S3 wire APIs so that boto3, the AWS
//! CLI and the AWS SDKs work against it unchanged: point `endpoint_url` at Nimbus,
//! give the client an access key that Nimbus issued, and nothing else changes.
//! Those clients always sign their requests with SigV4, so Nimbus must check that
//! signature the way AWS does, byte for byte, or every call fails with
//! `InvalidSignatureException`.
//!
//! # How a caller uses it
//!
//! ```ignore
//! let req = SignedRequest { method, raw_path, raw_query, headers, body_sha256_hex };
//! let parsed = sigv4::parse(&req)?;                        // no secret needed yet
//! sigv4::check_service(&parsed, Service::Lambda)?;         // this endpoint's service
//! let secret = keys
//!     .secret_for(&parsed.credential.access_key_id)        // caller's key store
//!     .ok_or(SigV4Error::UnrecognizedClient)?;
//! let verified = sigv4::verify(&req, &parsed, &secret, Utc::now(), DEFAULT_MAX_SKEW)?;
//! // `verified.payload` says what is still to be checked about the body.
//! ```
//!
//! Errors carry the AWS error code ([`SigV4Error::aws_code`] for the JSON services,
//! [`SigV4Error::s3_code`] for S3), the HTTP status and an AWS-like message.
//!
//! # What is verified
//!
//! * The `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
//!   header, or the presigned-URL form (`X-Amz-Algorithm`, `X-Amz-Credential`,
//!   `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` in
//!   the query string). Both at once is rejected, as S3 does.
//! * The canonical request exactly as botocore builds it: the raw path
//!   re-encoded (so `%3A` becomes `%253A`) after removing `.`, `..` and empty
//!   segments, except for S3, whose raw path is used as received; the query
//!   decoded, re-encoded (space as `%20`) and sorted, `key` without a value
//!   becoming `key=`; the headers named in `SignedHeaders`, values trimmed with
//!   inner whitespace collapsed, repeated headers joined with `,`. `host` must be
//!   signed, and every signed header must be present.
//! * The payload hash: the literal `X-Amz-Content-SHA256` value when present
//!   (S3 always sends it), else the caller's SHA-256 of the body; for presigned S3
//!   URLs `UNSIGNED-PAYLOAD`. When both a hex header value and the caller's body
//!   hash are known they must agree.
//! * The request time (`X-Amz-Date`, or `Date` when absent) against the scope
//!   date and against the clock (`max_skew`, 15 minutes by default); for
//!   presigned URLs, `X-Amz-Date + X-Amz-Expires` (at most 7 days).
//! * The canonicalisation follows the service named in the credential scope
//!   (`s3` → raw path), which is how the client signed; [`check_service`] makes
//!   sure it is the endpoint's [`Service`]. The region is accepted as sent;
//!   [`check_region`] insists on one.
//! * The signature, compared in constant time.
//!
//! # What is not verified here
//!
//! * The body itself when the caller could not hash it before verifying (S3
//!   streams): [`Verified::payload`] then says what to check once it is read
//!   (a hex hash to compare, or an `aws-chunked` body to decode).
//! * **Chunk signatures** of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`
//!   bodies (Java/Go/JS SDKs, not boto3). Only the seed signature (the headers)
//!   is verified; the chunks are accepted without checking their signatures, so
//!   such a body is as unauthenticated as an `UNSIGNED-PAYLOAD` one. The seed is
//!   handed back in [`PayloadKind::StreamingSigned`] for a later chunk verifier.
//! * Session tokens (`X-Amz-Security-Token`): they are required to be signed and
//!   returned in [`ParsedAuth::session_token`]; judging them is the caller's job.
//! * SigV4a (`AWS4-ECDSA-P256-SHA256`), SigV2 and browser POST policies.
//! * A `+` in the query string is a literal plus (RFC 3986), not a space.
//! * `Host` must be in the header map as the client sent it: behind a proxy that
//!   rewrites it the caller must restore the original (e.g. from
//!   `X-Forwarded-Host`), and over HTTP/2 insert it from the `:authority`.
//!
//! Signing keys are derived per request (four HMACs); callers that care may
//! cache [`derive_signing_key`] per key, day, region and service.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use http::header::{AUTHORIZATION, DATE};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

mod canonical;
mod parse;
mod sign;
#[cfg(test)]
mod tests;
mod verify;

pub(crate) use canonical::percent_decode;
pub use canonical::{canonical_request, derive_signing_key, string_to_sign};
pub use parse::{parse, parse_authorization, parse_presigned};
pub use sign::{SigningParams, presign, sign};
pub use verify::{check_region, check_service, declared_payload_hash, verify};
// The steps share their helpers: each submodule sees the others' through `super::*`.
use canonical::*;
use parse::*;
use verify::*;

/// The only algorithm supported.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty string, the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Payload-hash value for a body that is not signed (presigned URLs and others).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// aws-chunked body with an unsigned trailer checksum (boto3 ≥ 1.36 over HTTPS).
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// aws-chunked body with a signature per chunk (Java/Go/JS SDKs).
pub const STREAMING_SIGNED_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// aws-chunked body with chunk signatures and a signed trailer.
pub const STREAMING_SIGNED_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// Allowed distance between the request time and the server clock (S3's value).
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Longest lifetime of a presigned URL: 7 days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const SCOPE_TERMINATOR: &str = "aws4_request";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
const SIGNATURE_PARAM: &str = "X-Amz-Signature";
const INVALID_SIGNATURE_MESSAGE: &str = "The request signature we calculated does not match the \
     signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
     service documentation for details.";
const MISSING_PRESIGN_PARAMS: &str = "Query-string authentication version 4 requires the \
     X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and \
     X-Amz-Expires parameters.";
const ONLY_ONE_MECHANISM: &str = "Only one auth mechanism allowed; only the X-Amz-Algorithm query \
     parameter, Signature query string parameter or the Authorization header should be specified";

/// The AWS service an endpoint implements, as named in the credential scope. It
/// decides how the path is canonicalised: S3 signs the raw path, every other
/// service a normalised, re-encoded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Lambda,
    S3,
    Other(&'static str),
}

impl Service {
    /// The name in the credential scope (`lambda`, `s3`, …).
    pub fn name(self) -> &'static str {
        match self {
            Service::Lambda => "lambda",
            Service::S3 => "s3",
            Service::Other(name) => name,
        }
    }
}

/// S3 signs the raw path and presigns with `UNSIGNED-PAYLOAD`.
fn is_s3(service: &str) -> bool {
    service == "s3"
}

/// The parts of an HTTP request that take part in the signature.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, … (upper-cased for signing).
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded (`/a%3Ab`).
    pub raw_path: &'a str,
    /// The query exactly as received, without the `?`.
    pub raw_query: Option<&'a str>,
    /// All request headers, `host` included.
    pub headers: &'a HeaderMap,
    /// Lower-case hex SHA-256 of the body, if the caller has it. Required for
    /// services whose clients send no `X-Amz-Content-SHA256` (Lambda).
    pub body_sha256_hex: Option<&'a str>,
}

/// `Credential=<access key>/<yyyymmdd>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    /// `<yyyymmdd>/<region>/<service>/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{SCOPE_TERMINATOR}",
            self.date, self.region, self.service
        )
    }

    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.rsplitn(5, '/');
        let terminator = parts.next()?;
        let service = parts.next()?;
        let region = parts.next()?;
        let date = parts.next()?;
        let access_key_id = parts.next()?;
        let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        let all_present = [access_key_id, region, service]
            .iter()
            .all(|p| !p.is_empty());
        (terminator == SCOPE_TERMINATOR && date_ok && all_present).then(|| Credential {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }
}

/// Where the signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLocation {
    /// The `Authorization` header.
    Header,
    /// A presigned URL, valid for `expires_secs` after its `X-Amz-Date`.
    Query { expires_secs: u64 },
}

/// The signature's claims, read without the secret so the caller can look the
/// key up (by `credential.access_key_id`) between [`parse`] and [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    pub credential: Credential,
    /// `SignedHeaders` exactly as sent (`host;x-amz-date`).
    pub signed_headers: String,
    /// `Signature` as sent (64 hex digits from a well-behaved client).
    pub signature: String,
    /// The request time in the `YYYYMMDDTHHMMSSZ` form used in the string to sign.
    pub amz_date: String,
    pub request_time: DateTime<Utc>,
    /// `X-Amz-Security-Token`, if any: the caller decides whether to accept it.
    pub session_token: Option<String>,
    pub location: AuthLocation,
}

/// What the signed payload hash says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadKind {
    /// The body must hash to this (lower-case hex). Already checked if the
    /// caller passed [`SignedRequest::body_sha256_hex`]; otherwise the caller
    /// must compare once the body is read (S3: 400 `XAmzContentSHA256Mismatch`).
    Sha256(String),
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// aws-chunked body with an unsigned trailer checksum.
    StreamingUnsignedTrailer,
    /// aws-chunked body whose chunk signatures this module does **not** verify.
    StreamingSigned { seed_signature: String },
    /// As [`PayloadKind::StreamingSigned`], with a signed trailer (not verified either).
    StreamingSignedTrailer { seed_signature: String },
}

impl PayloadKind {
    fn classify(value: &str, seed_signature: &str) -> Result<Self, SigV4Error> {
        let seed_signature = seed_signature.to_owned();
        Ok(match value {
            UNSIGNED_PAYLOAD => PayloadKind::Unsigned,
            STREAMING_UNSIGNED_PAYLOAD_TRAILER => PayloadKind::StreamingUnsignedTrailer,
            STREAMING_SIGNED_PAYLOAD => PayloadKind::StreamingSigned { seed_signature },
            STREAMING_SIGNED_PAYLOAD_TRAILER => {
                PayloadKind::StreamingSignedTrailer { seed_signature }
            }
            hex if is_sha256_hex(hex) => PayloadKind::Sha256(hex.to_ascii_lowercase()),
            _ => return Err(SigV4Error::InvalidContentSha256),
        })
    }

    /// Whether the body is `aws-chunked` framing that must be decoded.
    pub fn is_aws_chunked(&self) -> bool {
        matches!(
            self,
            PayloadKind::StreamingUnsignedTrailer
                | PayloadKind::StreamingSigned { .. }
                | PayloadKind::StreamingSignedTrailer { .. }
        )
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub payload: PayloadKind,
}

/// Why a request was not authenticated. `Display` gives the AWS-like message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The `Authorization` header is malformed or lacks a part.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The presigned-URL parameters are malformed or incomplete.
    #[error("{0}")]
    PresignedQueryMalformed(String),
    /// Unknown access key: produced by callers when their key lookup fails.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The credential scope names another service, region or date.
    #[error("{0}")]
    CredentialScope(String),
    /// A header listed in `SignedHeaders` is not in the request.
    #[error("Signed header '{0}' is not present in the request.")]
    SignedHeaderMissing(String),
    /// The request time is older than `now - max_skew`.
    #[error("Signature expired: {request_time} is now earlier than {earliest} ({now} - {skew}.)")]
    SignatureExpired {
        request_time: String,
        earliest: String,
        now: String,
        skew: String,
    },
    /// The request time is later than `now + max_skew`.
    #[error(
        "Signature not yet current: {request_time} is still later than {latest} ({now} + {skew}.)"
    )]
    SignatureNotYetCurrent {
        request_time: String,
        latest: String,
        now: String,
        skew: String,
    },
    /// A presigned URL past `X-Amz-Date + X-Amz-Expires`.
    #[error("Request has expired")]
    RequestExpired,
    /// The signature does not match. The canonical request and string to sign
    /// are kept for logs and for S3's error body, never for the JSON message.
    #[error("{INVALID_SIGNATURE_MESSAGE}")]
    InvalidSignature {
        canonical_request: String,
        string_to_sign: String,
    },
    /// `X-Amz-Content-SHA256` is neither a hex SHA-256 nor a known keyword.
    #[error(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a \
         valid sha256 value."
    )]
    InvalidContentSha256,
    /// No payload hash: no `X-Amz-Content-SHA256` and no body hash from the caller.
    #[error("Missing required header for this request: x-amz-content-sha256")]
    MissingContentSha256,
    /// `X-Amz-Content-SHA256` disagrees with the body the caller hashed.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch { claimed: String, computed: String },
    /// `UNSIGNED-PAYLOAD` or `STREAMING-*` on a service whose bodies must be
    /// signed (everything but S3): see [`declared_payload_hash`].
    #[error(
        "x-amz-content-sha256 must be the hex SHA-256 of the body for service '{0}': \
         unsigned and streaming payloads are accepted only by s3."
    )]
    UnsignedPayloadRefused(String),
}

impl SigV4Error {
    /// The error code for AWS's JSON services (`x-amzn-ErrorType`).
    pub fn aws_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::UnrecognizedClient => "UnrecognizedClientException",
            SigV4Error::IncompleteSignature(_)
            | SigV4Error::PresignedQueryMalformed(_)
            | SigV4Error::InvalidContentSha256
            | SigV4Error::MissingContentSha256
            | SigV4Error::UnsignedPayloadRefused(_) => "IncompleteSignatureException",
            SigV4Error::CredentialScope(_)
            | SigV4Error::SignedHeaderMissing(_)
            | SigV4Error::SignatureExpired { .. }
            | SigV4Error::SignatureNotYetCurrent { .. }
            | SigV4Error::RequestExpired
            | SigV4Error::InvalidSignature { .. }
            | SigV4Error::ContentSha256Mismatch { .. } => "InvalidSignatureException",
        }
    }

    /// The error code for S3's XML errors (`<Code>`).
    pub fn s3_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken | SigV4Error::RequestExpired => "AccessDenied",
            SigV4Error::IncompleteSignature(_) => "AuthorizationHeaderMalformed",
            SigV4Error::PresignedQueryMalformed(_) => "AuthorizationQueryParametersError",
            SigV4Error::UnrecognizedClient => "InvalidAccessKeyId",
            SigV4Error::SignatureExpired { .. } | SigV4Error::SignatureNotYetCurrent { .. } => {
                "RequestTimeTooSkewed"
            }
            SigV4Error::CredentialScope(_)
            | SigV4Error::SignedHeaderMissing(_)
            | SigV4Error::InvalidSignature { .. } => "SignatureDoesNotMatch",
            SigV4Error::InvalidContentSha256 => "InvalidArgument",
            SigV4Error::MissingContentSha256 | SigV4Error::UnsignedPayloadRefused(_) => {
                "InvalidRequest"
            }
            SigV4Error::ContentSha256Mismatch { .. } => "XAmzContentSHA256Mismatch",
        }
    }

    /// 400 for malformed signing data, 403 for everything else, as AWS does.
    pub fn http_status(&self) -> u16 {
        match self {
            SigV4Error::IncompleteSignature(_)
            | SigV4Error::PresignedQueryMalformed(_)
            | SigV4Error::InvalidContentSha256
            | SigV4Error::MissingContentSha256
            | SigV4Error::UnsignedPayloadRefused(_)
            | SigV4Error::ContentSha256Mismatch { .. } => 400,
            _ => 403,
        }
    }
}

/// Which form of authentication is being parsed, to pick the error variant.
#[derive(Clone, Copy)]
enum Form {
    Header,
    Query,
}

impl Form {
    fn malformed(self, message: impl Into<String>) -> SigV4Error {
        match self {
            Form::Header => SigV4Error::IncompleteSignature(message.into()),
            Form::Query => SigV4Error::PresignedQueryMalformed(message.into()),
        }
    }
}
