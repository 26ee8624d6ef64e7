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
//!     .ok_or(AuthError::UnrecognizedClient)?;
//! let verified = sigv4::verify(&req, &parsed, &secret, Utc::now(), DEFAULT_MAX_SKEW)?;
//! // `verified.payload` says what is still to be checked about the body.
//! ```
//!
//! Errors carry the AWS error code ([`AuthError::aws_code`] for the JSON services,
//! [`AuthError::s3_code`] for S3), the HTTP status and an AWS-like message.
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
    fn classify(value: &str, seed_signature: &str) -> Result<Self, AuthError> {
        let seed_signature = seed_signature.to_owned();
        Ok(match value {
            UNSIGNED_PAYLOAD => PayloadKind::Unsigned,
            STREAMING_UNSIGNED_PAYLOAD_TRAILER => PayloadKind::StreamingUnsignedTrailer,
            STREAMING_SIGNED_PAYLOAD => PayloadKind::StreamingSigned { seed_signature },
            STREAMING_SIGNED_PAYLOAD_TRAILER => {
                PayloadKind::StreamingSignedTrailer { seed_signature }
            }
            hex if is_sha256_hex(hex) => PayloadKind::Sha256(hex.to_ascii_lowercase()),
            _ => return Err(AuthError::InvalidContentSha256),
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
pub enum AuthError {
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

impl AuthError {
    /// The error code for AWS's JSON services (`x-amzn-ErrorType`).
    pub fn aws_code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
            AuthError::IncompleteSignature(_)
            | AuthError::PresignedQueryMalformed(_)
            | AuthError::InvalidContentSha256
            | AuthError::MissingContentSha256
            | AuthError::UnsignedPayloadRefused(_) => "IncompleteSignatureException",
            AuthError::CredentialScope(_)
            | AuthError::SignedHeaderMissing(_)
            | AuthError::SignatureExpired { .. }
            | AuthError::SignatureNotYetCurrent { .. }
            | AuthError::RequestExpired
            | AuthError::InvalidSignature { .. }
            | AuthError::ContentSha256Mismatch { .. } => "InvalidSignatureException",
        }
    }

    /// The error code for S3's XML errors (`<Code>`).
    pub fn s3_code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken | AuthError::RequestExpired => "AccessDenied",
            AuthError::IncompleteSignature(_) => "AuthorizationHeaderMalformed",
            AuthError::PresignedQueryMalformed(_) => "AuthorizationQueryParametersError",
            AuthError::UnrecognizedClient => "InvalidAccessKeyId",
            AuthError::SignatureExpired { .. } | AuthError::SignatureNotYetCurrent { .. } => {
                "RequestTimeTooSkewed"
            }
            AuthError::CredentialScope(_)
            | AuthError::SignedHeaderMissing(_)
            | AuthError::InvalidSignature { .. } => "SignatureDoesNotMatch",
            AuthError::InvalidContentSha256 => "InvalidArgument",
            AuthError::MissingContentSha256 | AuthError::UnsignedPayloadRefused(_) => {
                "InvalidRequest"
            }
            AuthError::ContentSha256Mismatch { .. } => "XAmzContentSHA256Mismatch",
        }
    }

    /// 400 for malformed signing data, 403 for everything else, as AWS does.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::IncompleteSignature(_)
            | AuthError::PresignedQueryMalformed(_)
            | AuthError::InvalidContentSha256
            | AuthError::MissingContentSha256
            | AuthError::UnsignedPayloadRefused(_)
            | AuthError::ContentSha256Mismatch { .. } => 400,
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
    fn malformed(self, message: impl Into<String>) -> AuthError {
        match self {
            Form::Header => AuthError::IncompleteSignature(message.into()),
            Form::Query => AuthError::PresignedQueryMalformed(message.into()),
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Reads the signature from the `Authorization` header or, failing that, from
/// presigned-URL query parameters.
pub fn parse(req: &SignedRequest<'_>) -> Result<ParsedAuth, AuthError> {
    let presigned = req.raw_query.filter(|q| has_presign_params(q));
    match (req.headers.contains_key(AUTHORIZATION), presigned) {
        (true, Some(_)) => Err(AuthError::IncompleteSignature(ONLY_ONE_MECHANISM.into())),
        (true, None) => parse_authorization(req.headers),
        (false, Some(query)) => parse_presigned(query),
        (false, None) => Err(AuthError::MissingAuthenticationToken),
    }
}

/// Reads `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
/// and the request time (`X-Amz-Date`, else `Date`).
pub fn parse_authorization(headers: &HeaderMap) -> Result<ParsedAuth, AuthError> {
    let form = Form::Header;
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingAuthenticationToken)?
        .to_str()
        .map_err(|_| form.malformed("The Authorization header contains invalid characters."))?
        .trim();
    let (algorithm, params) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(form.malformed(format!("Unsupported AWS 'algorithm': '{algorithm}'")));
    }
    let fields = AuthFields::parse(params)?;
    let credential = parse_credential(form, fields.credential)?;
    let (amz_date, request_time) = header_request_time(headers)?;
    check_scope_date(&credential, &amz_date)?;
    check_signed_headers(form, fields.signed_headers)?;
    let session_token = match headers.get(X_AMZ_SECURITY_TOKEN) {
        Some(token) => Some(
            token
                .to_str()
                .map_err(|_| form.malformed("X-Amz-Security-Token contains invalid characters."))?
                .to_owned(),
        ),
        None => None,
    };
    Ok(ParsedAuth {
        credential,
        signed_headers: fields.signed_headers.to_owned(),
        signature: fields.signature.to_owned(),
        amz_date,
        request_time,
        session_token,
        location: AuthLocation::Header,
    })
}

/// Reads the `X-Amz-*` parameters of a presigned URL from the raw query.
pub fn parse_presigned(raw_query: &str) -> Result<ParsedAuth, AuthError> {
    let form = Form::Query;
    let param = |name: &str| query_param(raw_query, name);
    let (
        Some(algorithm),
        Some(credential),
        Some(amz_date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param("X-Amz-Date"),
        param("X-Amz-Expires"),
        param("X-Amz-SignedHeaders"),
        param(SIGNATURE_PARAM),
    )
    else {
        return Err(form.malformed(MISSING_PRESIGN_PARAMS));
    };
    if algorithm != ALGORITHM {
        return Err(form.malformed(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let credential = parse_credential(form, &credential)?;
    let request_time =
        parse_amz_date(&amz_date).ok_or_else(|| form.malformed(bad_amz_date_message(&amz_date)))?;
    let expires_secs = parse_expires(&expires)?;
    check_scope_date(&credential, &amz_date)?;
    check_signed_headers(form, &signed_headers)?;
    Ok(ParsedAuth {
        credential,
        signed_headers,
        signature,
        amz_date,
        request_time,
        session_token: param("X-Amz-Security-Token"),
        location: AuthLocation::Query { expires_secs },
    })
}

/// The three parameters of the `Authorization` header.
struct AuthFields<'h> {
    credential: &'h str,
    signed_headers: &'h str,
    signature: &'h str,
}

impl<'h> AuthFields<'h> {
    fn parse(params: &'h str) -> Result<Self, AuthError> {
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                Form::Header.malformed(format!(
                    "Invalid key=value pair (missing equal-sign) in Authorization header: '{part}'"
                ))
            })?;
            match key.trim() {
                "Credential" => credential = Some(value.trim()),
                "SignedHeaders" => signed_headers = Some(value.trim()),
                "Signature" => signature = Some(value.trim()),
                _ => {}
            }
        }
        match (credential, signed_headers, signature) {
            (Some(credential), Some(signed_headers), Some(signature)) => Ok(AuthFields {
                credential,
                signed_headers,
                signature,
            }),
            _ => {
                let missing: Vec<String> = [
                    ("Credential", credential.is_none()),
                    ("Signature", signature.is_none()),
                    ("SignedHeaders", signed_headers.is_none()),
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
                .collect();
                Err(Form::Header.malformed(missing.join(" ")))
            }
        }
    }
}

fn parse_credential(form: Form, value: &str) -> Result<Credential, AuthError> {
    Credential::parse(value).ok_or_else(|| {
        form.malformed(format!(
            "Credential must have the form \
             '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got '{value}'."
        ))
    })
}

fn parse_expires(value: &str) -> Result<u64, AuthError> {
    let secs: u64 = value
        .parse()
        .map_err(|_| Form::Query.malformed("X-Amz-Expires should be a number"))?;
    if secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(Form::Query.malformed(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is \
             {MAX_PRESIGNED_EXPIRES_SECS}"
        )));
    }
    Ok(secs)
}

/// `host` must be signed (AWS insists, and it pins the request to this endpoint).
fn check_signed_headers(form: Form, signed_headers: &str) -> Result<(), AuthError> {
    let names: Vec<&str> = signed_headers.split(';').collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(form.malformed(format!("SignedHeaders is malformed: '{signed_headers}'.")));
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err(form.malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(())
}

/// The request time from `X-Amz-Date`, else `Date` (RFC 1123), in both forms.
fn header_request_time(headers: &HeaderMap) -> Result<(String, DateTime<Utc>), AuthError> {
    let form = Form::Header;
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(value) = headers.get(X_AMZ_DATE) {
        let value = text(value);
        let time =
            parse_amz_date(&value).ok_or_else(|| form.malformed(bad_amz_date_message(&value)))?;
        return Ok((value, time));
    }
    if let Some(value) = headers.get(DATE) {
        let value = text(value);
        let time = DateTime::parse_from_rfc2822(value.trim())
            .map_err(|_| {
                form.malformed(format!("Date header is not an RFC 1123 date: '{value}'."))
            })?
            .with_timezone(&Utc);
        return Ok((format_amz_date(time), time));
    }
    Err(form.malformed(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

fn parse_amz_date(value: &str) -> Option<DateTime<Utc>> {
    let time = NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT)
        .ok()?
        .and_utc();
    // Reject lenient parses (extra digits, missing padding).
    (format_amz_date(time) == value).then_some(time)
}

fn format_amz_date(time: DateTime<Utc>) -> String {
    time.format(AMZ_DATE_FORMAT).to_string()
}

fn bad_amz_date_message(value: &str) -> String {
    format!("Date must be in ISO-8601 'basic format'. Got '{value}'.")
}

fn check_scope_date(credential: &Credential, amz_date: &str) -> Result<(), AuthError> {
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if credential.date == day {
        return Ok(());
    }
    Err(AuthError::CredentialScope(format!(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '{}' != '{day}', from '{amz_date}'.",
        credential.date
    )))
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Checks the signature of `req` as described by `parsed` with the caller's
/// `secret` for `parsed.credential.access_key_id`.
pub fn verify(
    req: &SignedRequest<'_>,
    parsed: &ParsedAuth,
    secret: &str,
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<Verified, AuthError> {
    let credential = &parsed.credential;
    check_clock(parsed, now, max_skew)?;
    check_session_token_signed(parsed)?;
    let payload_hash = payload_hash(req, &credential.service, parsed.location)?;
    let payload = PayloadKind::classify(&payload_hash, &parsed.signature)?;
    let canonical_request = canonical_request(
        req,
        &credential.service,
        &parsed.signed_headers,
        &payload_hash,
    )?;
    let string_to_sign = string_to_sign(&parsed.amz_date, &credential.scope(), &canonical_request);
    let key = derive_signing_key(
        secret,
        &credential.date,
        &credential.region,
        &credential.service,
    );
    if !signature_matches(&key, &string_to_sign, &parsed.signature) {
        return Err(AuthError::InvalidSignature {
            canonical_request,
            string_to_sign,
        });
    }
    check_body_hash(req, &payload)?;
    Ok(Verified { payload })
}

/// Insists on the region of the credential scope (boto3 signs with the
/// client's `region_name`); [`verify`] accepts any region.
pub fn check_region(parsed: &ParsedAuth, expected: &str) -> Result<(), AuthError> {
    let region = &parsed.credential.region;
    if region == expected {
        return Ok(());
    }
    Err(AuthError::CredentialScope(format!(
        "Credential should be scoped to a valid region, not '{region}'. Expected '{expected}'."
    )))
}

/// Insists that the credential scope names this endpoint's service, as AWS
/// does; [`verify`] canonicalises for whatever service the client signed for.
pub fn check_service(parsed: &ParsedAuth, service: Service) -> Result<(), AuthError> {
    if parsed.credential.service == service.name() {
        return Ok(());
    }
    Err(AuthError::CredentialScope(format!(
        "Credential should be scoped to correct service: '{}'.",
        service.name()
    )))
}

fn check_clock(
    parsed: &ParsedAuth,
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), AuthError> {
    let max_skew = TimeDelta::from_std(max_skew).unwrap_or(TimeDelta::MAX);
    let time = parsed.request_time;
    let latest = now
        .checked_add_signed(max_skew)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if time > latest {
        return Err(AuthError::SignatureNotYetCurrent {
            request_time: parsed.amz_date.clone(),
            latest: format_amz_date(latest),
            now: format_amz_date(now),
            skew: format_skew(max_skew),
        });
    }
    match parsed.location {
        AuthLocation::Header => {
            let earliest = now
                .checked_sub_signed(max_skew)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            if time < earliest {
                return Err(AuthError::SignatureExpired {
                    request_time: parsed.amz_date.clone(),
                    earliest: format_amz_date(earliest),
                    now: format_amz_date(now),
                    skew: format_skew(max_skew),
                });
            }
        }
        AuthLocation::Query { expires_secs } => {
            let lifetime = TimeDelta::try_seconds(i64::try_from(expires_secs).unwrap_or(i64::MAX))
                .unwrap_or(TimeDelta::MAX);
            let deadline = time
                .checked_add_signed(lifetime)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if now > deadline {
                return Err(AuthError::RequestExpired);
            }
        }
    }
    Ok(())
}

/// `15 min` for whole minutes, else `90 sec`.
fn format_skew(skew: TimeDelta) -> String {
    let secs = skew.num_seconds();
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} sec")
    }
}

/// A session token in a header must be signed, or it could be swapped.
fn check_session_token_signed(parsed: &ParsedAuth) -> Result<(), AuthError> {
    let needs_check = parsed.session_token.is_some() && parsed.location == AuthLocation::Header;
    let signed = parsed
        .signed_headers
        .split(';')
        .any(|n| n.eq_ignore_ascii_case(X_AMZ_SECURITY_TOKEN));
    if needs_check && !signed {
        return Err(AuthError::IncompleteSignature(
            "X-Amz-Security-Token must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(())
}

/// The last line of the canonical request: `X-Amz-Content-SHA256` if sent,
/// `UNSIGNED-PAYLOAD` for presigned S3 URLs, else the caller's body hash.
fn payload_hash(
    req: &SignedRequest<'_>,
    service: &str,
    location: AuthLocation,
) -> Result<String, AuthError> {
    if let Some(value) = req.headers.get(X_AMZ_CONTENT_SHA256) {
        return value
            .to_str()
            .map(str::to_owned)
            .map_err(|_| AuthError::InvalidContentSha256);
    }
    if matches!(location, AuthLocation::Query { .. }) && is_s3(service) {
        return Ok(UNSIGNED_PAYLOAD.to_owned());
    }
    req.body_sha256_hex
        .map(str::to_owned)
        .ok_or(AuthError::MissingContentSha256)
}

/// The body hash a request to a service other than S3 declares in
/// `X-Amz-Content-SHA256`, lower-cased, or `None` when it sends none (the
/// caller must then hash the body before [`verify`]). With a declared hash
/// the signature can be verified from the headers alone, before the body is
/// read, and the body compared once read. Lambda, SQS, SNS and Step Functions
/// clients sign their bodies, so `UNSIGNED-PAYLOAD` and `STREAMING-*` there
/// could only leave a body unauthenticated: refused (L3 of the review). For
/// `s3`, where they are legal, the answer is `None` (s3s checks those bodies).
pub fn declared_payload_hash(
    parsed: &ParsedAuth,
    headers: &HeaderMap,
) -> Result<Option<String>, AuthError> {
    let Some(value) = headers.get(X_AMZ_CONTENT_SHA256) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidContentSha256)?;
    match PayloadKind::classify(value, &parsed.signature)? {
        PayloadKind::Sha256(hex) => Ok(Some(hex)),
        _ if is_s3(&parsed.credential.service) => Ok(None),
        _ => Err(AuthError::UnsignedPayloadRefused(
            parsed.credential.service.clone(),
        )),
    }
}

/// When the client claimed a hash and the caller hashed the body, they must agree.
fn check_body_hash(req: &SignedRequest<'_>, payload: &PayloadKind) -> Result<(), AuthError> {
    let (PayloadKind::Sha256(claimed), Some(computed)) = (payload, req.body_sha256_hex) else {
        return Ok(());
    };
    if claimed.eq_ignore_ascii_case(computed) {
        return Ok(());
    }
    Err(AuthError::ContentSha256Mismatch {
        claimed: claimed.clone(),
        computed: computed.to_owned(),
    })
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Constant-time comparison of the expected signature with the provided hex.
fn signature_matches(signing_key: &[u8; 32], string_to_sign: &str, provided_hex: &str) -> bool {
    let Ok(provided) = hex::decode(provided_hex) else {
        return false;
    };
    new_mac(signing_key)
        .chain_update(string_to_sign.as_bytes())
        .verify_slice(&provided)
        .is_ok()
}

// ---------------------------------------------------------------------------
// Canonical request, string to sign, signing key
// ---------------------------------------------------------------------------

/// `Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n PayloadHash`.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    service: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> Result<String, AuthError> {
    let headers = canonical_headers(req.headers, signed_headers)?;
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{signed_headers}\n{payload_hash}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.raw_path, service),
        canonical_query(req.raw_query),
    ))
}

/// `AWS4-HMAC-SHA256 \n <amz date> \n <scope> \n hex(sha256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// `kSigning` = HMAC chain over `"AWS4"+secret`, date, region, service, `aws4_request`.
pub fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, SCOPE_TERMINATOR.as_bytes())
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    new_mac(key)
        .chain_update(data)
        .finalize()
        .into_bytes()
        .into()
}

/// Every service but S3: drop `.`, `..` and empty segments (keeping a trailing
/// `/`), then percent-encode the still-encoded path again. S3: the raw path.
fn canonical_uri(raw_path: &str, service: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    if is_s3(service) {
        return raw_path.to_owned();
    }
    uri_encode(remove_dot_segments(raw_path).as_bytes(), true)
}

/// RFC 3986 §5.2.4 plus removal of empty segments, exactly as botocore does it.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !segments.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", segments.join("/"))
}

/// Decode each `key=value`, re-encode strictly, sort by key then value, join
/// with `&`. `X-Amz-Signature` (presigned URLs) is left out.
fn canonical_query(raw_query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(raw_query.unwrap_or(""))
        .filter(|(key, _)| key.as_slice() != SIGNATURE_PARAM.as_bytes())
        .map(|(key, value)| (uri_encode(&key, false), uri_encode(&value, false)))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decoded `(key, value)` pairs of a raw query; `key` alone gives an empty value.
fn query_pairs(raw_query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    raw_query
        .split('&')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            (percent_decode(key), percent_decode(value))
        })
}

fn query_param(raw_query: &str, name: &str) -> Option<String> {
    query_pairs(raw_query)
        .find(|(key, _)| key.as_slice() == name.as_bytes())
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
}

fn has_presign_params(raw_query: &str) -> bool {
    query_pairs(raw_query).any(|(key, _)| {
        [
            b"X-Amz-Algorithm".as_slice(),
            b"X-Amz-Credential",
            b"X-Amz-Signature",
        ]
        .contains(&key.as_slice())
    })
}

/// `name:value\n` for each signed header, sorted by name. Values are trimmed,
/// inner whitespace collapsed to one space, repeated headers joined with `,`.
fn canonical_headers(headers: &HeaderMap, signed_headers: &str) -> Result<String, AuthError> {
    let mut names: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| trim_all(&header_text(v)))
            .collect();
        if values.is_empty() {
            return Err(AuthError::SignedHeaderMissing(name));
        }
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Header bytes as text: UTF-8 if valid, else Latin-1, which is how Python's
/// `http.client` puts botocore's header strings on the wire.
fn header_text(value: &HeaderValue) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Percent-encodes everything but `A-Za-z0-9-_.~` (and `/` if asked), upper-case hex.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// `%XX` → byte; a `%` not followed by two hex digits stays literal; `+` stays `+`.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex_pair = (b == b'%')
            .then(|| {
                Some((
                    hex_digit(*bytes.get(i + 1)?)?,
                    hex_digit(*bytes.get(i + 2)?)?,
                ))
            })
            .flatten();
        match hex_pair {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// Who signs, where, and when.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: Service,
    pub time: DateTime<Utc>,
}

impl SigningParams<'_> {
    fn credential(&self) -> Credential {
        Credential {
            access_key_id: self.access_key_id.to_owned(),
            date: self.time.format("%Y%m%d").to_string(),
            region: self.region.to_owned(),
            service: self.service.name().to_owned(),
        }
    }

    fn signature(&self, credential: &Credential, canonical_request: &str) -> String {
        let sts = string_to_sign(
            &format_amz_date(self.time),
            &credential.scope(),
            canonical_request,
        );
        let key = derive_signing_key(
            self.secret,
            &credential.date,
            &credential.region,
            &credential.service,
        );
        hex::encode(hmac_sha256(&key, sts.as_bytes()))
    }
}

/// Produces the `Authorization` header value for `req`, signing the named
/// headers (case-insensitive, any order). `req.headers` must already hold them,
/// `host` and `x-amz-date` (equal to `params.time`) included. The payload hash is
/// taken as [`verify`] takes it: `X-Amz-Content-SHA256`, else `body_sha256_hex`.
pub fn sign(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
    signed_headers: &[&str],
) -> Result<String, AuthError> {
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    names.sort_unstable();
    names.dedup();
    let signed_headers = names.join(";");
    let service = params.service.name();
    let payload_hash = payload_hash(req, service, AuthLocation::Header)?;
    let canonical_request = canonical_request(req, service, &signed_headers, &payload_hash)?;
    let credential = params.credential();
    let signature = params.signature(&credential, &canonical_request);
    Ok(format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        credential.access_key_id,
        credential.scope()
    ))
}

/// Produces the query string of a presigned URL for `req` (its own query first,
/// then the `X-Amz-*` parameters, `X-Amz-Signature` last), signing only `host`,
/// as botocore's `generate_presigned_url` does. `req.headers` must hold `host`.
pub fn presign(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
    expires_secs: u64,
) -> Result<String, AuthError> {
    if expires_secs == 0 || expires_secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(Form::Query.malformed(format!(
            "X-Amz-Expires must be between 1 and {MAX_PRESIGNED_EXPIRES_SECS} seconds"
        )));
    }
    let credential = params.credential();
    let full_credential = format!("{}/{}", credential.access_key_id, credential.scope());
    let mut query = req
        .raw_query
        .filter(|q| !q.is_empty())
        .map(|q| format!("{q}&"))
        .unwrap_or_default();
    query.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={expires_secs}\
         &X-Amz-SignedHeaders=host",
        uri_encode(full_credential.as_bytes(), false),
        format_amz_date(params.time),
    ));
    let presigned = SignedRequest {
        raw_query: Some(&query),
        ..*req
    };
    let service = params.service.name();
    let payload_hash = payload_hash(&presigned, service, AuthLocation::Query { expires_secs })?;
    let canonical_request = canonical_request(&presigned, service, "host", &payload_hash)?;
    let signature = params.signature(&credential, &canonical_request);
    Ok(format!("{query}&{SIGNATURE_PARAM}={signature}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use http::header::HeaderName;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const AKID: &str = "AKIDEXAMPLE";

    fn at(amz_date: &str) -> DateTime<Utc> {
        parse_amz_date(amz_date).expect("valid test date")
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap()
    }

    fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn request<'a>(
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        body_sha256_hex: Option<&'a str>,
    ) -> SignedRequest<'a> {
        SignedRequest {
            method,
            raw_path: path,
            raw_query: query,
            headers,
            body_sha256_hex,
        }
    }

    fn params(service: Service, time: DateTime<Utc>) -> SigningParams<'static> {
        SigningParams {
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            service,
            time,
        }
    }

    fn sha256_hex(body: &[u8]) -> String {
        hex::encode(Sha256::digest(body))
    }

    /// Signs `headers` in place (adds `authorization`) with all of its headers signed.
    fn sign_in_place(
        service: Service,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &mut HeaderMap,
        body_hash: Option<&str>,
    ) {
        let names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let req = request(method, path, query, headers, body_hash);
        let auth = sign(&req, &params(service, t0()), &names).unwrap();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
    }

    fn parse_and_verify(
        req: &SignedRequest<'_>,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, AuthError> {
        let parsed = parse(req)?;
        verify(req, &parsed, secret, now, DEFAULT_MAX_SKEW)
    }

    // -- the reference vectors ------------------------------------------------

    #[test]
    fn lambda_reference_vector_section_12_3() {
        let body_hash = sha256_hex(br#"{"hello":"world"}"#);
        let headers = header_map(&[
            ("host", "localhost:9000"),
            ("x-amz-date", "20250115T120000Z"),
            ("x-amz-invocation-type", "RequestResponse"),
        ]);
        let req = request(
            "POST",
            "/2015-03-31/functions/my-fn%3Aprod/invocations",
            Some("Qualifier=%24LATEST"),
            &headers,
            Some(&body_hash),
        );
        let signed = "host;x-amz-date;x-amz-invocation-type";
        let canonical = canonical_request(&req, "lambda", signed, &body_hash).unwrap();
        assert_eq!(
            canonical,
            "POST\n\
             /2015-03-31/functions/my-fn%253Aprod/invocations\n\
             Qualifier=%24LATEST\n\
             host:localhost:9000\n\
             x-amz-date:20250115T120000Z\n\
             x-amz-invocation-type:RequestResponse\n\
             \n\
             host;x-amz-date;x-amz-invocation-type\n\
             93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"
        );
        let sts = string_to_sign(
            "20250115T120000Z",
            "20250115/us-east-1/lambda/aws4_request",
            &canonical,
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20250115T120000Z\n20250115/us-east-1/lambda/aws4_request\n\
             647ec2e0c88762e4a106099d2145a251852705cd3b411e50d37e740ede11dfcb"
        );
        let auth = sign(
            &req,
            &params(Service::Lambda, t0()),
            &signed.split(';').collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-invocation-type, \
             Signature=6d61dcdc66a7f30206e647b66ecadd18bd28a2e154adb12b5d2fd16fcf9d0378"
        );

        let mut headers = headers.clone();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        let req = SignedRequest {
            headers: &headers,
            ..req
        };
        let verified = parse_and_verify(&req, SECRET, t0()).unwrap();
        assert_eq!(verified.payload, PayloadKind::Sha256(body_hash.clone()));
    }

    #[test]
    fn s3_reference_vector() {
        let headers = header_map(&[
            ("host", "localhost:9000"),
            ("range", "bytes=0-99"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20250115T120000Z"),
        ]);
        let req = request("GET", "/my-bucket/photos/a%20b.jpg", None, &headers, None);
        let signed = "host;range;x-amz-content-sha256;x-amz-date";
        let canonical = canonical_request(&req, "s3", signed, EMPTY_SHA256).unwrap();
        assert_eq!(
            canonical,
            "GET\n/my-bucket/photos/a%20b.jpg\n\n\
             host:localhost:9000\nrange:bytes=0-99\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20250115T120000Z\n\n\
             host;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(
            "20250115T120000Z",
            "20250115/us-east-1/s3/aws4_request",
            &canonical,
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20250115T120000Z\n20250115/us-east-1/s3/aws4_request\n\
             3dca78d235e0afbb7a6e4b377828f4c66385bc58cff08194db9dfe1eff3d19c9"
        );
        let auth = sign(
            &req,
            &params(Service::S3, t0()),
            &signed.split(';').collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(auth.ends_with(
            "Signature=5b0f0881d877b5aada63df52d133a2250df57ec839a45faeb4f0cee20bdb7d41"
        ));
    }

    // -- botocore cross-checks ------------------------------------------------

    /// A request signed by botocore 1.44.5 (`SigV4Auth`, `S3SigV4Auth`, and the
    /// query-string variants) at 2025-01-15T12:00:00Z.
    struct BotoVector {
        name: &'static str,
        service: Service,
        access_key_id: &'static str,
        secret: &'static str,
        region: &'static str,
        method: &'static str,
        path: &'static str,
        /// For presigned vectors, the full query botocore produced.
        query: Option<&'static str>,
        /// As sent by botocore, plus the `host` it derives from the URL.
        headers: &'static [(&'static str, &'static str)],
        body_sha256: &'static str,
        canonical_request: &'static str,
        /// `Authorization` header value; `None` for presigned vectors.
        authorization: Option<&'static str>,
    }

    const BOTO_VECTORS: &[BotoVector] = &[
        BotoVector {
            name: "lambda invoke, ARN in path, other region, odd secret",
            service: Service::Lambda,
            access_key_id: "NIMBUSAK0001",
            secret: "s3cr3t/with+odd=chars",
            region: "eu-west-1",
            method: "POST",
            path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations",
            query: Some("Qualifier=%24LATEST"),
            headers: &[
                ("host", "127.0.0.1:18080"),
                ("X-Amz-Log-Type", "Tail"),
                ("X-Amz-Client-Context", "eyJjdXN0b20iOnt9fQ=="),
                ("X-Amz-Invocation-Type", "RequestResponse"),
                ("User-Agent", "Boto3/1.43.11"),
                ("Content-Type", "application/json"),
                ("X-Amz-Date", "20250115T120000Z"),
                (
                    "amz-sdk-invocation-id",
                    "30a0b3d4-0000-0000-0000-000000000000",
                ),
            ],
            body_sha256: "4be281edc378f1c5e5eb9c15f9dbf5a80da2977981850f93553d5d70b75f1626",
            canonical_request: "POST\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A123456789012%253Afunction%253Amy-fn/invocations\nQualifier=%24LATEST\ncontent-type:application/json\nhost:127.0.0.1:18080\nx-amz-client-context:eyJjdXN0b20iOnt9fQ==\nx-amz-date:20250115T120000Z\nx-amz-invocation-type:RequestResponse\nx-amz-log-type:Tail\n\ncontent-type;host;x-amz-client-context;x-amz-date;x-amz-invocation-type;x-amz-log-type\n4be281edc378f1c5e5eb9c15f9dbf5a80da2977981850f93553d5d70b75f1626",
            authorization: Some(
                "AWS4-HMAC-SHA256 Credential=NIMBUSAK0001/20250115/eu-west-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-client-context;x-amz-date;x-amz-invocation-type;x-amz-log-type, Signature=cae1128ab5745187dcb2cfcb672a30fa80b48f9721937699321796b58438e352",
            ),
        },
        BotoVector {
            name: "lambda GET, sub-delims and dot segments in path, messy query, whitespace",
            service: Service::Lambda,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            method: "GET",
            path: "/2015-03-31/functions/my%20fn%C3%A9~!$'()*,;=@:x/./aliases//v1/../",
            query: Some("FunctionVersion=ALL&Marker=a%20b%2Bc%2F&MaxItems=10&empty=&flag"),
            headers: &[
                ("host", "localhost:9000"),
                ("X-Custom", "  spaced \t  value  "),
                ("Content-Type", "application/json"),
                ("X-Amz-Date", "20250115T120000Z"),
            ],
            body_sha256: EMPTY_SHA256,
            canonical_request: "GET\n/2015-03-31/functions/my%2520fn%25C3%25A9~%21%24%27%28%29%2A%2C%3B%3D%40%3Ax/aliases/\nFunctionVersion=ALL&Marker=a%20b%2Bc%2F&MaxItems=10&empty=&flag=\ncontent-type:application/json\nhost:localhost:9000\nx-amz-date:20250115T120000Z\nx-custom:spaced value\n\ncontent-type;host;x-amz-date;x-custom\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            authorization: Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-custom, Signature=600c1ac72df595bff965f48fff07d7127df026e54721ff1cc5c67c6c4817551e",
            ),
        },
        BotoVector {
            name: "s3 PUT, encoded key, metadata with spaces",
            service: Service::S3,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            method: "PUT",
            path: "/bkt/dir/my%20file%2Bx.txt",
            query: None,
            headers: &[
                ("host", "localhost:9000"),
                ("Content-Type", "text/plain"),
                ("x-amz-meta-note", "  a   b  "),
                ("Expect", "100-continue"),
                ("X-Amz-Date", "20250115T120000Z"),
                (
                    "X-Amz-Content-SHA256",
                    "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
                ),
            ],
            body_sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            canonical_request: "PUT\n/bkt/dir/my%20file%2Bx.txt\n\ncontent-type:text/plain\nhost:localhost:9000\nx-amz-content-sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9\nx-amz-date:20250115T120000Z\nx-amz-meta-note:a b\n\ncontent-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note\nb94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            authorization: Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note, Signature=ac002271957db6afb7625b02d0d47e3a61b48d12a7528fee16cda358c51fe4d9",
            ),
        },
        BotoVector {
            name: "s3 ListObjectsV2, query to sort, us-west-2",
            service: Service::S3,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-west-2",
            method: "GET",
            path: "/bkt",
            query: Some(
                "list-type=2&prefix=photos%2F2025%20jan&delimiter=%2F&encoding-type=url&max-keys=5",
            ),
            headers: &[
                ("host", "localhost:9000"),
                ("X-Amz-Date", "20250115T120000Z"),
                ("X-Amz-Content-SHA256", EMPTY_SHA256),
            ],
            body_sha256: EMPTY_SHA256,
            canonical_request: "GET\n/bkt\ndelimiter=%2F&encoding-type=url&list-type=2&max-keys=5&prefix=photos%2F2025%20jan\nhost:localhost:9000\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20250115T120000Z\n\nhost;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            authorization: Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-west-2/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=c12a2c33f7fd46ddf525dc528fc5d2f621c3ad023a17846ed316c6b63b9740ae",
            ),
        },
        BotoVector {
            name: "s3 CreateMultipartUpload, raw path with .. kept, bare ?uploads",
            service: Service::S3,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            method: "POST",
            path: "/bkt/odd%20key!(x)/../y",
            query: Some("uploads"),
            headers: &[
                ("host", "localhost:9000"),
                ("Content-Type", "application/octet-stream"),
                ("X-Amz-Date", "20250115T120000Z"),
                ("X-Amz-Content-SHA256", EMPTY_SHA256),
            ],
            body_sha256: EMPTY_SHA256,
            canonical_request: "POST\n/bkt/odd%20key!(x)/../y\nuploads=\ncontent-type:application/octet-stream\nhost:localhost:9000\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20250115T120000Z\n\ncontent-type;host;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            authorization: Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=61a65a498e9b60b2ecd37cff4eadb95eee4836331362cdd0d2969f7ff8cf8fc7",
            ),
        },
        BotoVector {
            name: "s3 presigned GET (S3SigV4QueryAuth)",
            service: Service::S3,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            method: "GET",
            path: "/bkt/a%20b.txt",
            query: Some(
                "response-content-type=text%2Fplain&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=03ecd4b123c3a24f15dd9b31c5f0d00918e80b7c413dae295fce89d7e8a053f6",
            ),
            headers: &[("host", "localhost:9000")],
            body_sha256: EMPTY_SHA256,
            canonical_request: "GET\n/bkt/a%20b.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&response-content-type=text%2Fplain\nhost:localhost:9000\n\nhost\nUNSIGNED-PAYLOAD",
            authorization: None,
        },
        BotoVector {
            name: "lambda presigned GET (SigV4QueryAuth): body hash, not UNSIGNED-PAYLOAD",
            service: Service::Lambda,
            access_key_id: AKID,
            secret: SECRET,
            region: "us-east-1",
            method: "GET",
            path: "/2015-03-31/functions/my-fn%3Aprod",
            query: Some(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=e73b33c145d2fa167727c95132cf3c6ac7592bf3be271edcdaac6269c62c585b",
            ),
            headers: &[("host", "localhost:9000")],
            body_sha256: EMPTY_SHA256,
            canonical_request: "GET\n/2015-03-31/functions/my-fn%253Aprod\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\nhost:localhost:9000\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            authorization: None,
        },
    ];

    #[test]
    fn botocore_vectors_verify_and_reproduce() {
        for v in BOTO_VECTORS {
            let mut headers = header_map(v.headers);
            if let Some(auth) = v.authorization {
                headers.insert(AUTHORIZATION, HeaderValue::from_static(auth));
            }
            let req = request(v.method, v.path, v.query, &headers, Some(v.body_sha256));
            let parsed = parse(&req).unwrap_or_else(|e| panic!("{}: parse: {e}", v.name));
            assert_eq!(
                parsed.credential.access_key_id, v.access_key_id,
                "{}",
                v.name
            );
            check_service(&parsed, v.service).unwrap();
            let service = v.service.name();
            let payload_hash = payload_hash(&req, service, parsed.location).unwrap();
            let canonical =
                canonical_request(&req, service, &parsed.signed_headers, &payload_hash).unwrap();
            assert_eq!(canonical, v.canonical_request, "{}", v.name);
            verify(&req, &parsed, v.secret, t0(), DEFAULT_MAX_SKEW)
                .unwrap_or_else(|e| panic!("{}: verify: {e}", v.name));
            assert!(
                matches!(
                    verify(&req, &parsed, "wrong", t0(), DEFAULT_MAX_SKEW),
                    Err(AuthError::InvalidSignature { .. })
                ),
                "{}",
                v.name
            );

            let signer = SigningParams {
                access_key_id: v.access_key_id,
                secret: v.secret,
                region: v.region,
                service: v.service,
                time: t0(),
            };
            match (v.authorization, parsed.location) {
                (Some(auth), _) => {
                    let names: Vec<&str> = parsed.signed_headers.split(';').collect();
                    assert_eq!(sign(&req, &signer, &names).unwrap(), auth, "{}", v.name);
                }
                (None, AuthLocation::Query { expires_secs }) => {
                    let query = v.query.unwrap_or_default();
                    let own = query
                        .split_once("X-Amz-Algorithm")
                        .map(|(own, _)| own.trim_end_matches('&'));
                    let unsigned = SignedRequest {
                        raw_query: own.filter(|q| !q.is_empty()),
                        ..req
                    };
                    assert_eq!(
                        presign(&unsigned, &signer, expires_secs).unwrap(),
                        query,
                        "{}",
                        v.name
                    );
                }
                (None, AuthLocation::Header) => panic!("{}: expected a presigned vector", v.name),
            }
        }
    }

    // -- canonicalisation -----------------------------------------------------

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query(None), "");
        assert_eq!(canonical_query(Some("")), "");
        assert_eq!(
            canonical_query(Some(
                "b=2&a=z&a=y&space=a%20b&plus=a+b&key&empty=&tilde=%7E&slash=%2f&raw=a b*&X-Amz-Signature=x"
            )),
            "a=y&a=z&b=2&empty=&key=&plus=a%2Bb&raw=a%20b%2A&slash=%2F&space=a%20b&tilde=~"
        );
        // Sorting is by the encoded bytes: upper case before lower case.
        assert_eq!(canonical_query(Some("b=1&B=2&a%20b=3")), "B=2&a%20b=3&b=1");
        // A lone or broken percent sign is a literal.
        assert_eq!(canonical_query(Some("p=100%&q=%zz")), "p=100%25&q=%25zz");
    }

    #[test]
    fn header_values_are_trimmed_collapsed_and_joined() {
        let mut headers = header_map(&[
            ("host", "example.com"),
            ("x-amz-meta-a", "  a   b \t c  "),
            ("x-multi", "1"),
            ("x-multi", " two  words "),
            ("x-empty", ""),
        ]);
        headers.append("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert_eq!(
            canonical_headers(&headers, "Host;x-amz-meta-a;x-multi;x-empty;x-latin1").unwrap(),
            "host:example.com\nx-amz-meta-a:a b c\nx-empty:\nx-latin1:café\nx-multi:1,two words\n"
        );
    }

    #[test]
    fn s3_uses_the_raw_path_and_lambda_double_encodes() {
        let path = "/bkt/a%20b/./c//d/../e:f%3A/";
        assert_eq!(canonical_uri(path, "s3"), path);
        assert_eq!(canonical_uri(path, "lambda"), "/bkt/a%2520b/c/e%3Af%253A/");
        assert_eq!(canonical_uri(path, Service::Other("s3").name()), path);
        assert_eq!(canonical_uri("", "lambda"), "/");
        assert_eq!(canonical_uri("/", "lambda"), "/");
        assert_eq!(canonical_uri("/..", "lambda"), "/");
        assert_eq!(canonical_uri("", "s3"), "/");
    }

    // -- failures -------------------------------------------------------------

    fn signed_lambda_headers(extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs = vec![
            ("host", "localhost:9000"),
            ("x-amz-date", "20250115T120000Z"),
        ];
        pairs.extend_from_slice(extra);
        let mut headers = header_map(&pairs);
        sign_in_place(
            Service::Lambda,
            "GET",
            "/2015-03-31/functions",
            None,
            &mut headers,
            Some(EMPTY_SHA256),
        );
        headers
    }

    fn lambda_get(headers: &HeaderMap) -> SignedRequest<'_> {
        request(
            "GET",
            "/2015-03-31/functions",
            None,
            headers,
            Some(EMPTY_SHA256),
        )
    }

    #[test]
    fn a_missing_signed_header_is_rejected() {
        let mut headers = signed_lambda_headers(&[("x-amz-log-type", "Tail")]);
        assert!(parse_and_verify(&lambda_get(&headers), SECRET, t0()).is_ok());
        headers.remove("x-amz-log-type");
        let err = parse_and_verify(&lambda_get(&headers), SECRET, t0()).unwrap_err();
        assert_eq!(err, AuthError::SignedHeaderMissing("x-amz-log-type".into()));
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        // A name that cannot even be a header is just as missing (and no panic).
        let err = canonical_headers(&headers, "host;bad name").unwrap_err();
        assert_eq!(err, AuthError::SignedHeaderMissing("bad name".into()));
    }

    #[test]
    fn tampering_with_a_signed_part_is_rejected() {
        let headers = signed_lambda_headers(&[("x-amz-log-type", "Tail")]);
        let zeros = "0".repeat(64);
        let tampered = [
            SignedRequest {
                method: "DELETE",
                ..lambda_get(&headers)
            },
            SignedRequest {
                raw_path: "/2015-03-31/functions/x",
                ..lambda_get(&headers)
            },
            SignedRequest {
                raw_query: Some("MaxItems=1"),
                ..lambda_get(&headers)
            },
            SignedRequest {
                body_sha256_hex: Some(&zeros),
                ..lambda_get(&headers)
            },
        ];
        for req in tampered {
            let err = parse_and_verify(&req, SECRET, t0()).unwrap_err();
            assert!(
                matches!(err, AuthError::InvalidSignature { .. }),
                "{req:?}: {err}"
            );
        }
        // Unsigned headers may change freely.
        let mut more = headers.clone();
        more.insert("user-agent", HeaderValue::from_static("something else"));
        assert!(parse_and_verify(&lambda_get(&more), SECRET, t0()).is_ok());
    }

    #[test]
    fn clock_skew_is_enforced() {
        let headers = signed_lambda_headers(&[]);
        let req = lambda_get(&headers);
        assert!(parse_and_verify(&req, SECRET, at("20250115T121500Z")).is_ok());
        assert!(parse_and_verify(&req, SECRET, at("20250115T114500Z")).is_ok());

        let err = parse_and_verify(&req, SECRET, at("20250115T123000Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature expired: 20250115T120000Z is now earlier than 20250115T121500Z \
             (20250115T123000Z - 15 min.)"
        );
        assert_eq!(
            (err.aws_code(), err.http_status()),
            ("InvalidSignatureException", 403)
        );
        assert_eq!(err.s3_code(), "RequestTimeTooSkewed");

        let err = parse_and_verify(&req, SECRET, at("20250115T113000Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature not yet current: 20250115T120000Z is still later than 20250115T114500Z \
             (20250115T113000Z + 15 min.)"
        );

        let parsed = parse(&req).unwrap();
        let err = verify(
            &req,
            &parsed,
            SECRET,
            at("20250115T120600Z"),
            Duration::from_secs(5 * 60),
        );
        assert!(matches!(err, Err(AuthError::SignatureExpired { .. })));
        let err = verify(
            &req,
            &parsed,
            SECRET,
            at("20250115T120200Z"),
            Duration::from_secs(90),
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .ends_with("(20250115T120200Z - 90 sec.)")
        );
    }

    #[test]
    fn a_wrong_secret_is_an_invalid_signature() {
        let headers = signed_lambda_headers(&[]);
        let err = parse_and_verify(&lambda_get(&headers), "not-the-secret", t0()).unwrap_err();
        let AuthError::InvalidSignature {
            canonical_request,
            string_to_sign,
        } = &err
        else {
            panic!("expected InvalidSignature, got {err:?}");
        };
        assert!(canonical_request.starts_with("GET\n/2015-03-31/functions\n"));
        assert!(string_to_sign.starts_with("AWS4-HMAC-SHA256\n20250115T120000Z\n"));
        assert_eq!(err.to_string(), INVALID_SIGNATURE_MESSAGE);
        assert_eq!(
            (err.aws_code(), err.http_status()),
            ("InvalidSignatureException", 403)
        );
        assert_eq!(err.s3_code(), "SignatureDoesNotMatch");
    }

    #[test]
    fn a_malformed_signature_value_is_an_invalid_signature() {
        let headers = signed_lambda_headers(&[]);
        for bad in ["zz", "", "abcd"] {
            let mut parsed = parse(&lambda_get(&headers)).unwrap();
            parsed.signature = bad.into();
            let err = verify(
                &lambda_get(&headers),
                &parsed,
                SECRET,
                t0(),
                DEFAULT_MAX_SKEW,
            );
            assert!(
                matches!(err, Err(AuthError::InvalidSignature { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_authorization_is_a_missing_token() {
        let headers = header_map(&[
            ("host", "localhost:9000"),
            ("x-amz-date", "20250115T120000Z"),
        ]);
        let err = parse(&lambda_get(&headers)).unwrap_err();
        assert_eq!(err, AuthError::MissingAuthenticationToken);
        assert_eq!(err.to_string(), "Missing Authentication Token");
        assert_eq!(
            (err.aws_code(), err.http_status()),
            ("MissingAuthenticationTokenException", 403)
        );
        assert_eq!(
            parse_authorization(&headers),
            Err(AuthError::MissingAuthenticationToken)
        );
    }

    #[test]
    fn malformed_authorization_is_an_incomplete_signature() {
        let cases = [
            ("Bearer abc", "Unsupported AWS 'algorithm': 'Bearer'"),
            (
                "AWS4-HMAC-SHA256",
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date",
                "Authorization header requires 'Signature' parameter.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders, Signature=ab",
                "Invalid key=value pair (missing equal-sign) in Authorization header: 'SignedHeaders'",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda, SignedHeaders=host, Signature=ab",
                "Credential must have the form '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got 'AKIDEXAMPLE/20250115/us-east-1/lambda'.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2025011/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab",
                "Credential must have the form '<access key>/<yyyymmdd>/<region>/<service>/aws4_request', got 'AKIDEXAMPLE/2025011/us-east-1/lambda/aws4_request'.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=x-amz-date, Signature=ab",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ),
        ];
        for (auth, message) in cases {
            let headers = header_map(&[
                ("host", "localhost:9000"),
                ("x-amz-date", "20250115T120000Z"),
                ("authorization", auth),
            ]);
            let err = parse(&lambda_get(&headers)).unwrap_err();
            assert_eq!(
                err,
                AuthError::IncompleteSignature(message.into()),
                "{auth}"
            );
            assert_eq!(
                (err.aws_code(), err.http_status()),
                ("IncompleteSignatureException", 400)
            );
        }
    }

    #[test]
    fn request_time_must_be_present_valid_and_match_the_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250115/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab";
        let no_date = header_map(&[("host", "h"), ("authorization", auth)]);
        assert!(
            matches!(parse(&lambda_get(&no_date)), Err(AuthError::IncompleteSignature(m)) if m.contains("'X-Amz-Date' or a 'Date'"))
        );
        let bad_date = header_map(&[
            ("host", "h"),
            ("x-amz-date", "2025-01-15T12:00:00Z"),
            ("authorization", auth),
        ]);
        assert!(
            matches!(parse(&lambda_get(&bad_date)), Err(AuthError::IncompleteSignature(m)) if m.contains("ISO-8601"))
        );
        let other_day = header_map(&[
            ("host", "h"),
            ("x-amz-date", "20250116T000000Z"),
            ("authorization", auth),
        ]);
        let err = parse(&lambda_get(&other_day)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '20250115' != '20250116', from '20250116T000000Z'."
        );
        assert_eq!(err.aws_code(), "InvalidSignatureException");
    }

    #[test]
    fn the_date_header_is_used_without_x_amz_date() {
        let mut headers = header_map(&[
            ("host", "localhost:9000"),
            ("date", "Wed, 15 Jan 2025 12:00:00 GMT"),
        ]);
        sign_in_place(
            Service::Lambda,
            "GET",
            "/2015-03-31/functions",
            None,
            &mut headers,
            Some(EMPTY_SHA256),
        );
        let parsed = parse(&lambda_get(&headers)).unwrap();
        assert_eq!(parsed.amz_date, "20250115T120000Z");
        assert!(
            verify(
                &lambda_get(&headers),
                &parsed,
                SECRET,
                t0(),
                DEFAULT_MAX_SKEW
            )
            .is_ok()
        );
    }

    #[test]
    fn the_scope_must_name_this_service_and_optionally_region() {
        let headers = signed_lambda_headers(&[]);
        let parsed = parse(&lambda_get(&headers)).unwrap();
        assert!(check_service(&parsed, Service::Lambda).is_ok());
        let err = check_service(&parsed, Service::S3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Credential should be scoped to correct service: 's3'."
        );
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        assert!(check_region(&parsed, "us-east-1").is_ok());
        assert!(matches!(
            check_region(&parsed, "eu-west-1"),
            Err(AuthError::CredentialScope(_))
        ));
    }

    #[test]
    fn a_session_token_must_be_signed() {
        let mut headers = signed_lambda_headers(&[]);
        headers.insert("x-amz-security-token", HeaderValue::from_static("tok"));
        let err = parse_and_verify(&lambda_get(&headers), SECRET, t0()).unwrap_err();
        assert!(
            matches!(err, AuthError::IncompleteSignature(m) if m.contains("X-Amz-Security-Token"))
        );

        let headers = signed_lambda_headers(&[("x-amz-security-token", "tok")]);
        let parsed = parse(&lambda_get(&headers)).unwrap();
        assert_eq!(parsed.session_token.as_deref(), Some("tok"));
        assert!(
            verify(
                &lambda_get(&headers),
                &parsed,
                SECRET,
                t0(),
                DEFAULT_MAX_SKEW
            )
            .is_ok()
        );
    }

    // -- payload modes --------------------------------------------------------

    fn signed_s3_put(content_sha256: &str) -> HeaderMap {
        let mut headers = header_map(&[
            ("host", "localhost:9000"),
            ("x-amz-date", "20250115T120000Z"),
            ("x-amz-content-sha256", content_sha256),
        ]);
        sign_in_place(Service::S3, "PUT", "/bkt/k", None, &mut headers, None);
        headers
    }

    #[test]
    fn s3_payload_modes() {
        let hello = sha256_hex(b"hello world");
        let cases = [
            (hello.as_str(), PayloadKind::Sha256(hello.clone())),
            (UNSIGNED_PAYLOAD, PayloadKind::Unsigned),
            (
                STREAMING_UNSIGNED_PAYLOAD_TRAILER,
                PayloadKind::StreamingUnsignedTrailer,
            ),
        ];
        for (value, expected) in cases {
            let headers = signed_s3_put(value);
            let req = request("PUT", "/bkt/k", None, &headers, None);
            assert_eq!(
                parse_and_verify(&req, SECRET, t0()).unwrap().payload,
                expected
            );
        }
        let headers = signed_s3_put(STREAMING_SIGNED_PAYLOAD);
        let req = request("PUT", "/bkt/k", None, &headers, None);
        let payload = parse_and_verify(&req, SECRET, t0()).unwrap().payload;
        let seed = parse(&req).unwrap().signature;
        assert!(payload.is_aws_chunked());
        assert_eq!(
            payload,
            PayloadKind::StreamingSigned {
                seed_signature: seed
            }
        );
    }

    #[test]
    fn s3_body_hash_must_match_the_claimed_one() {
        let hello = sha256_hex(b"hello world");
        let headers = signed_s3_put(&hello);
        let ok = request("PUT", "/bkt/k", None, &headers, Some(&hello));
        assert!(parse_and_verify(&ok, SECRET, t0()).is_ok());
        let other = sha256_hex(b"bye");
        let bad = request("PUT", "/bkt/k", None, &headers, Some(&other));
        let err = parse_and_verify(&bad, SECRET, t0()).unwrap_err();
        assert!(matches!(err, AuthError::ContentSha256Mismatch { .. }));
        assert_eq!(
            (err.s3_code(), err.http_status()),
            ("XAmzContentSHA256Mismatch", 400)
        );
    }

    #[test]
    fn an_unknown_content_sha256_or_none_at_all_is_rejected() {
        let headers = signed_s3_put("not-a-hash");
        let req = request("PUT", "/bkt/k", None, &headers, None);
        let err = parse_and_verify(&req, SECRET, t0()).unwrap_err();
        assert_eq!(
            (err.clone(), err.s3_code()),
            (AuthError::InvalidContentSha256, "InvalidArgument")
        );

        let headers = header_map(&[("host", "h"), ("x-amz-date", "20250115T120000Z")]);
        let req = request("PUT", "/bkt/k", None, &headers, None);
        assert_eq!(
            sign(&req, &params(Service::S3, t0()), &["host"]),
            Err(AuthError::MissingContentSha256)
        );
    }

    // -- presigned URLs -------------------------------------------------------

    #[test]
    fn presigned_round_trip_and_expiry() {
        let headers = header_map(&[("host", "localhost:9000")]);
        let base = request("GET", "/bkt/a%20b.txt", Some("versionId=3"), &headers, None);
        let query = presign(&base, &params(Service::S3, t0()), 60).unwrap();
        let req = SignedRequest {
            raw_query: Some(&query),
            ..base
        };
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed.location, AuthLocation::Query { expires_secs: 60 });
        let verify_at = |now| verify(&req, &parsed, SECRET, now, DEFAULT_MAX_SKEW);
        assert_eq!(
            verify_at(at("20250115T120100Z")).unwrap().payload,
            PayloadKind::Unsigned
        );
        assert_eq!(
            verify_at(at("20250115T120101Z")),
            Err(AuthError::RequestExpired)
        );
        assert!(matches!(
            verify_at(at("20250115T113000Z")),
            Err(AuthError::SignatureNotYetCurrent { .. })
        ));

        let tampered_query = query.replace("versionId=3", "versionId=4");
        let tampered = SignedRequest {
            raw_query: Some(&tampered_query),
            ..base
        };
        assert!(matches!(
            parse_and_verify(&tampered, SECRET, t0()),
            Err(AuthError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn presigned_parameters_are_checked() {
        let missing =
            parse_presigned("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab").unwrap_err();
        assert_eq!(
            missing,
            AuthError::PresignedQueryMalformed(MISSING_PRESIGN_PARAMS.into())
        );
        assert_eq!(
            (missing.s3_code(), missing.http_status()),
            ("AuthorizationQueryParametersError", 400)
        );

        let too_long = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250115%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250115T120000Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=ab";
        assert!(
            matches!(parse_presigned(too_long), Err(AuthError::PresignedQueryMalformed(m)) if m.contains("604800"))
        );

        let headers = header_map(&[("host", "h"), ("authorization", "AWS4-HMAC-SHA256 x")]);
        let both = request("GET", "/b", Some("X-Amz-Signature=ab"), &headers, None);
        assert_eq!(
            parse(&both),
            Err(AuthError::IncompleteSignature(ONLY_ONE_MECHANISM.into()))
        );
        assert!(presign(&both, &params(Service::S3, t0()), 0).is_err());
    }

    #[test]
    fn error_codes_and_statuses() {
        assert_eq!(
            AuthError::UnrecognizedClient.aws_code(),
            "UnrecognizedClientException"
        );
        assert_eq!(AuthError::UnrecognizedClient.http_status(), 403);
        assert_eq!(
            AuthError::UnrecognizedClient.s3_code(),
            "InvalidAccessKeyId"
        );
        assert_eq!(
            AuthError::UnrecognizedClient.to_string(),
            "The security token included in the request is invalid."
        );
        assert_eq!(AuthError::RequestExpired.s3_code(), "AccessDenied");
    }

    #[test]
    fn percent_decoding_and_encoding() {
        assert_eq!(
            percent_decode("a%20b%2fc+%e2%82%ac%"),
            b"a b/c+\xe2\x82\xac%"
        );
        assert_eq!(uri_encode("a b/~é".as_bytes(), false), "a%20b%2F~%C3%A9");
        assert_eq!(uri_encode(b"a b/", true), "a%20b/");
        assert_eq!(parse_amz_date("20250115T120000Z"), Some(t0()));
        assert_eq!(parse_amz_date("2025115T120000Z"), None);
        assert_eq!(parse_amz_date("20250115T120000"), None);
    }

    #[test]
    fn a_declared_hash_lets_the_signature_be_checked_before_the_body() {
        let body = br#"{"hello":"world"}"#;
        let hash = sha256_hex(body);
        let mut headers = header_map(&[
            ("host", "localhost:8470"),
            ("x-amz-date", "20250115T120000Z"),
            ("x-amz-content-sha256", &hash),
        ]);
        let path = "/2015-03-31/functions/f/invocations";
        sign_in_place(Service::Lambda, "POST", path, None, &mut headers, None);
        let parsed = parse_authorization(&headers).unwrap();
        assert_eq!(
            declared_payload_hash(&parsed, &headers).unwrap(),
            Some(hash.clone())
        );
        // No body hash from the caller: verified from the headers alone.
        let req = request("POST", path, None, &headers, None);
        assert!(verify(&req, &parsed, SECRET, t0(), DEFAULT_MAX_SKEW).is_ok());
        assert!(matches!(
            verify(&req, &parsed, "another secret", t0(), DEFAULT_MAX_SKEW),
            Err(AuthError::InvalidSignature { .. })
        ));
        // Without the header the caller must hash the body first.
        headers.remove("x-amz-content-sha256");
        assert_eq!(declared_payload_hash(&parsed, &headers).unwrap(), None);
    }

    #[test]
    fn unsigned_and_streaming_payloads_are_refused_outside_s3() {
        for (service, value) in [
            ("lambda", UNSIGNED_PAYLOAD),
            ("sqs", STREAMING_SIGNED_PAYLOAD),
            ("sns", STREAMING_UNSIGNED_PAYLOAD_TRAILER),
            ("states", STREAMING_SIGNED_PAYLOAD_TRAILER),
        ] {
            let headers = header_map(&[
                ("host", "localhost:8470"),
                ("x-amz-date", "20250115T120000Z"),
                ("x-amz-content-sha256", value),
                (
                    "authorization",
                    &format!(
                        "AWS4-HMAC-SHA256 Credential={AKID}/20250115/us-east-1/{service}/aws4_request, \
                         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                        "0".repeat(64)
                    ),
                ),
            ]);
            let parsed = parse_authorization(&headers).unwrap();
            let err = declared_payload_hash(&parsed, &headers).unwrap_err();
            assert_eq!(err, AuthError::UnsignedPayloadRefused(service.into()));
            assert_eq!(err.http_status(), 400);
        }
        let s3 = header_map(&[
            ("host", "localhost:8470"),
            ("x-amz-date", "20250115T120000Z"),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential={AKID}/20250115/us-east-1/s3/aws4_request, \
                     SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                    "0".repeat(64)
                ),
            ),
        ]);
        let parsed = parse_authorization(&s3).unwrap();
        assert_eq!(declared_payload_hash(&parsed, &s3).unwrap(), None);
        let mut bad = s3.clone();
        bad.insert("x-amz-content-sha256", HeaderValue::from_static("xyz"));
        assert_eq!(
            declared_payload_hash(&parsed, &bad).unwrap_err(),
            AuthError::InvalidContentSha256
        );
    }
}
