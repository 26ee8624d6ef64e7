//! API Gateway proxy payloads: the request events Lambda handlers expect and
//! the interpretation of what they return.
//!
//! Handlers (and typed event libraries such as `aws-lambda-go/events` or
//! `aws_lambda_events`) depend on exact field names, casing and the difference
//! between `null` and an absent field, so each format has its own module built
//! from `#[derive(Serialize)]` structs that borrow from the request: the shape
//! is visible in one place and serialising costs no intermediate tree.
//!
//! * [`v1`]: REST API proxy integration, payload format 1.0;
//! * [`v2`]: HTTP API, payload format 2.0;
//! * [`function_url`]: Lambda function URLs (2.0 with fixed placeholders).
//!
//! This module holds what they share: the request description
//! ([`ProxyRequest`], [`ApiInfo`]), body and query handling, API Gateway's time
//! format, and the typed [`ResponseError`] for output the gateway must refuse.

pub mod function_url;
pub mod v1;
pub mod v2;

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode, Uri, Version};
use percent_encoding::percent_decode_str;

use crate::auth::JwtPrincipal;
use crate::routes::{PathParams, RouteMatch};

/// Which payload format a route's integration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// REST API proxy format (`httpMethod`, `multiValueHeaders`, …).
    V1,
    /// HTTP API format (`version: "2.0"`, `routeKey`, `rawPath`, …).
    #[default]
    V2,
}

/// Identity of the API (fixed per deployment, not per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// `requestContext.accountId`.
    pub account_id: String,
    /// `requestContext.apiId`.
    pub api_id: String,
    /// `requestContext.domainName`: the host clients use.
    pub domain_name: String,
    /// `requestContext.domainPrefix`: first label of the domain name.
    pub domain_prefix: String,
    /// `requestContext.stage` (`$default` for an HTTP API default stage).
    pub stage: String,
}

impl ApiInfo {
    /// An API reached at `domain_name`, the prefix taken from its first label.
    pub fn new(account_id: &str, api_id: &str, domain_name: &str, stage: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            api_id: api_id.to_owned(),
            domain_prefix: domain_name
                .split('.')
                .next()
                .unwrap_or(domain_name)
                .to_owned(),
            domain_name: domain_name.to_owned(),
            stage: stage.to_owned(),
        }
    }
}

/// Everything an event is built from: the HTTP request, the route that took
/// it, and the gateway's own bookkeeping for it.
#[derive(Debug, Clone, Copy)]
pub struct ProxyRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target; only its path and query are used.
    pub uri: &'a Uri,
    /// HTTP version, reported as `protocol`.
    pub version: Version,
    /// Request headers (repeated names keep every value, in order).
    pub headers: &'a HeaderMap,
    /// The whole request body.
    pub body: &'a [u8],
    /// Client address (`sourceIp`).
    pub source_ip: &'a str,
    /// `GET /items/{id}` or `$default` (`routeKey`).
    pub route_key: &'a str,
    /// `/items/{id}` (`resource`, `resourcePath` in 1.0).
    pub resource: &'a str,
    /// Captured path parameters.
    pub path_params: &'a PathParams<'a, 'a>,
    /// Gateway request id (`requestId`).
    pub request_id: &'a str,
    /// When the gateway received the request, epoch milliseconds.
    pub time_epoch_ms: u64,
    /// The API it came through.
    pub api: &'a ApiInfo,
    /// The JWT principal, when a JWT authorizer accepted the request.
    pub jwt: Option<&'a JwtPrincipal>,
}

impl<'a> ProxyRequest<'a> {
    /// Describes a request taken by `route`; `jwt` starts as `None` (set it
    /// with struct-update syntax after a JWT authorizer accepted the request).
    pub fn from_parts<T>(
        parts: &'a http::request::Parts,
        body: &'a [u8],
        source_ip: &'a str,
        route: &'a RouteMatch<'a, 'a, T>,
        api: &'a ApiInfo,
        request_id: &'a str,
        time_epoch_ms: u64,
    ) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            body,
            source_ip,
            route_key: route.route_key,
            resource: route.resource,
            path_params: &route.params,
            request_id,
            time_epoch_ms,
            api,
            jwt: None,
        }
    }

    /// The path as received (still percent-encoded, as API Gateway sends it).
    pub fn path(&self) -> &'a str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }

    /// The raw query string without `?`, `""` when there is none.
    pub fn raw_query(&self) -> &'a str {
        self.uri.query().unwrap_or("")
    }

    fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        }
    }

    fn user_agent(&self) -> Option<Cow<'a, str>> {
        self.headers
            .get(http::header::USER_AGENT)
            .map(|v| header_str(v))
    }

    fn request_time(&self) -> String {
        format_request_time(self.time_epoch_ms)
    }
}

/// A header value as text; bytes that are not UTF-8 are replaced.
fn header_str(v: &HeaderValue) -> Cow<'_, str> {
    match v.to_str() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v.as_bytes()),
    }
}

/// Splits a query string into percent-decoded `(key, value)` pairs, in order.
///
/// `+` is kept as is: API Gateway only undoes percent-escapes. A key without
/// `=` has the value `""`; empty pieces (`a=1&&b=2`) are skipped.
pub fn query_pairs(raw: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (
            percent_decode_str(k).decode_utf8_lossy(),
            percent_decode_str(v).decode_utf8_lossy(),
        )
    })
}

/// Whether a request body goes into the event as base64.
///
/// API Gateway sends text as text and anything else base64-encoded. A body is
/// text when it is valid UTF-8 and its content type (if any) is a textual one:
/// `text/*`, JSON, XML, JavaScript, form-urlencoded, GraphQL, YAML, or any type
/// that declares a `charset`. Other declared types (images, octet-stream,
/// multipart, …) are binary even when their bytes happen to be UTF-8, so the
/// handler sees them the way AWS delivers them.
pub fn body_is_binary(headers: &HeaderMap, body: &[u8]) -> bool {
    if std::str::from_utf8(body).is_err() {
        return true;
    }
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    !is_text_content_type(ct)
}

fn is_text_content_type(ct: &str) -> bool {
    let ct = ct.to_ascii_lowercase();
    if ct.contains("charset=") {
        return true;
    }
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || matches!(
            sub,
            "json"
                | "xml"
                | "javascript"
                | "ecmascript"
                | "x-www-form-urlencoded"
                | "graphql"
                | "yaml"
                | "x-yaml"
                | "x-ndjson"
        )
}

/// The event's `body` and `isBase64Encoded`; `None` for an empty body.
fn event_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> (Option<Cow<'b, str>>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    if body_is_binary(headers, body) {
        (Some(Cow::Owned(BASE64.encode(body))), true)
    } else {
        // body_is_binary checked UTF-8 validity.
        let text = std::str::from_utf8(body).map(Cow::Borrowed);
        (
            Some(text.unwrap_or_else(|_| Cow::Owned(BASE64.encode(body)))),
            false,
        )
    }
}

/// Formats epoch milliseconds the way API Gateway does:
/// `15/Jan/2025:12:00:00 +0000`.
pub fn format_request_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = epoch_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic
/// Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why a function's output cannot be turned into an HTTP response.
///
/// The gateway answers these with [`v1::malformed_response`] or
/// [`v2::malformed_response`], never with the function's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The output is not JSON at all.
    #[error("function output is not valid JSON")]
    NotJson,
    /// 1.0 needs an object with `statusCode`.
    #[error("function output is not a JSON object")]
    NotAnObject,
    /// 1.0 output without `statusCode`.
    #[error("function output has no statusCode")]
    MissingStatusCode,
    /// `statusCode` is not an integer in 100..=599.
    #[error("function output has an invalid statusCode: {0}")]
    InvalidStatusCode(String),
    /// `headers`, `multiValueHeaders` or `cookies` has the wrong shape or a
    /// value that cannot be an HTTP header.
    #[error("function output has invalid headers: {0}")]
    InvalidHeaders(String),
    /// `body` is neither a string nor null.
    #[error("function output body is not a string")]
    BodyNotString,
    /// `isBase64Encoded` is set but `body` is not valid base64.
    #[error("function output body is not valid base64")]
    InvalidBase64,
}

/// Builds a JSON error answer from the gateway itself (not from a function):
/// `content-type: application/json`, and the request id in
/// `x-amzn-requestid` so a client can quote it when reporting the failure.
pub fn gateway_error(status: StatusCode, body: &'static str, request_id: &str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    resp
}

/// The answer when no route takes a request: 404 `{"message":"Not Found"}`.
pub fn not_found_response(request_id: &str) -> Response<Bytes> {
    gateway_error(
        StatusCode::NOT_FOUND,
        crate::routes::NOT_FOUND_BODY,
        request_id,
    )
}

// ---- helpers shared by the response parsers ----

type JsonMap = serde_json::Map<String, serde_json::Value>;

fn parse_status(v: &serde_json::Value) -> Result<StatusCode, ResponseError> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| ResponseError::InvalidStatusCode(v.to_string()))
}

/// A header value given by the function: strings as they are, numbers and
/// booleans in their JSON spelling (handlers often write `"Content-Length": 12`).
fn json_header_value(name: &str, v: &serde_json::Value) -> Result<HeaderValue, ResponseError> {
    let text: Cow<'_, str> = match v {
        serde_json::Value::String(s) => Cow::Borrowed(s),
        serde_json::Value::Number(n) => Cow::Owned(n.to_string()),
        serde_json::Value::Bool(b) => Cow::Owned(b.to_string()),
        _ => {
            return Err(ResponseError::InvalidHeaders(format!(
                "value of `{name}` must be a string"
            )));
        }
    };
    HeaderValue::from_str(&text).map_err(|_| {
        ResponseError::InvalidHeaders(format!("value of `{name}` is not a valid header value"))
    })
}

fn header_name(name: &str) -> Result<http::HeaderName, ResponseError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ResponseError::InvalidHeaders(format!("`{name}` is not a valid header name")))
}

/// Headers a function may not set on the wire, and what becomes of them.
///
/// Framing and hop-by-hop headers belong to the connection between the
/// gateway and its client, not to the function: a `Content-Length` that
/// disagrees with the body (hyper trusts it as given), `Transfer-Encoding`,
/// `Connection` or `Upgrade` from a function would let it end the response
/// early, splice a second response into a kept-alive connection, or hang the
/// client. API Gateway keeps the function's values readable where it can, as
/// `x-amzn-Remapped-<name>` (REST APIs do so for `Connection` and
/// `Content-Length`), and drops the rest; so does this. The body's real length
/// is computed by hyper.
const REMAPPED: [&str; 2] = ["connection", "content-length"];
const DROPPED: [&str; 6] = [
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
];

/// Removes the framing and hop-by-hop headers a function set (see
/// [`REMAPPED`] and [`DROPPED`]), keeping the remapped ones' values under
/// `x-amzn-Remapped-<name>`; `Proxy-*` headers are dropped too.
pub fn strip_framing_headers(headers: &mut HeaderMap) {
    for name in REMAPPED {
        let values: Vec<HeaderValue> = match headers.entry(name) {
            http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
            http::header::Entry::Vacant(_) => continue,
        };
        let remapped = http::HeaderName::from_bytes(format!("x-amzn-remapped-{name}").as_bytes())
            .expect("a valid header name");
        for v in values {
            headers.append(remapped.clone(), v);
        }
    }
    for name in DROPPED {
        headers.remove(name);
    }
    let proxy: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

fn object<'v>(obj: &'v JsonMap, field: &str) -> Result<Option<&'v JsonMap>, ResponseError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ResponseError::InvalidHeaders(format!(
            "`{field}` must be an object"
        ))),
    }
}

/// The response body: `body` (string or null/absent), base64-decoded when
/// `isBase64Encoded` is true.
fn response_body(obj: &JsonMap) -> Result<Bytes, ResponseError> {
    let body = match obj.get("body") {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err(ResponseError::BodyNotString),
    };
    let b64 = matches!(
        obj.get("isBase64Encoded"),
        Some(serde_json::Value::Bool(true))
    );
    if b64 {
        BASE64
            .decode(body.trim())
            .map(Bytes::from)
            .map_err(|_| ResponseError::InvalidBase64)
    } else {
        Ok(Bytes::copy_from_slice(body.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_matches_api_gateway_format() {
        assert_eq!(
            format_request_time(1_736_942_400_000),
            "15/Jan/2025:12:00:00 +0000"
        );
        assert_eq!(
            format_request_time(1_587_481_701_067),
            "21/Apr/2020:15:08:21 +0000"
        );
        assert_eq!(format_request_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            format_request_time(951_782_400_000),
            "29/Feb/2000:00:00:00 +0000"
        );
        assert_eq!(
            format_request_time(1_735_689_599_999),
            "31/Dec/2024:23:59:59 +0000"
        );
    }

    #[test]
    fn query_pairs_decode_and_keep_order() {
        let pairs: Vec<_> = query_pairs("a=1&b=x%20y&a=2&flag&&c=&d=1+2")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", "x y"),
                ("a", "2"),
                ("flag", ""),
                ("c", ""),
                ("d", "1+2")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(query_pairs("").count(), 0);
    }

    #[test]
    fn binary_detection_uses_utf8_and_content_type() {
        let mut h = HeaderMap::new();
        assert!(!body_is_binary(&h, b"hello"));
        assert!(body_is_binary(&h, &[0xff, 0xfe]));
        for (ct, binary) in [
            ("application/json", false),
            ("application/json; charset=utf-8", false),
            ("text/plain", false),
            ("application/vnd.api+json", false),
            ("application/x-www-form-urlencoded", false),
            ("image/svg+xml", false),
            ("application/octet-stream", true),
            ("image/png", true),
            ("multipart/form-data; boundary=x", true),
            ("application/pdf; charset=utf-8", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(body_is_binary(&h, b"abc"), binary, "{ct}");
        }
    }

    #[test]
    fn gateway_errors_carry_request_id() {
        let r = not_found_response("req-1");
        assert_eq!(r.status(), 404);
        assert_eq!(r.body().as_ref(), br#"{"message":"Not Found"}"#);
        assert_eq!(r.headers()["x-amzn-requestid"], "req-1");
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[test]
    fn framing_headers_from_functions_never_reach_the_wire() {
        let out = serde_json::json!({
            "statusCode": 200,
            "headers": {
                "Content-Length": "0",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Keep-Alive": "timeout=5",
                "Upgrade": "h2c",
                "Trailer": "x-t",
                "TE": "trailers",
                "Proxy-Authenticate": "Basic",
                "X-Kept": "yes"
            },
            "body": "hello"
        })
        .to_string();
        for resp in [
            v1::parse_response(out.as_bytes()).unwrap(),
            v2::parse_response(out.as_bytes()).unwrap(),
        ] {
            let h = resp.headers();
            for gone in [
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
                "upgrade",
                "trailer",
                "te",
                "proxy-authenticate",
            ] {
                assert!(!h.contains_key(gone), "{gone} kept");
            }
            assert_eq!(h["x-amzn-remapped-content-length"], "0");
            assert_eq!(h["x-amzn-remapped-connection"], "close");
            assert_eq!(h["x-kept"], "yes");
            assert_eq!(resp.body().as_ref(), b"hello");
        }
    }

    #[test]
    fn header_values_with_control_characters_are_refused() {
        for bad in [r"a\r\nSet-Cookie: x=1", r"a\nb", r"a\u0000b"] {
            let out = format!(r#"{{"statusCode":200,"headers":{{"X-A":"{bad}"}}}}"#);
            assert!(matches!(
                v1::parse_response(out.as_bytes()),
                Err(ResponseError::InvalidHeaders(_))
            ));
            assert!(matches!(
                v2::parse_response(out.as_bytes()),
                Err(ResponseError::InvalidHeaders(_))
            ));
            let cookies = format!(r#"{{"statusCode":200,"cookies":["{bad}"]}}"#);
            assert!(v2::parse_response(cookies.as_bytes()).is_err());
            let multi = format!(r#"{{"statusCode":200,"multiValueHeaders":{{"X-A":["{bad}"]}}}}"#);
            assert!(v1::parse_response(multi.as_bytes()).is_err());
        }
        let name = r#"{"statusCode":200,"headers":{"X-A\r\nX-B":"1"}}"#;
        assert!(v2::parse_response(name.as_bytes()).is_err());
    }

    #[test]
    fn api_info_derives_domain_prefix() {
        let api = ApiInfo::new(
            "1",
            "k3x9",
            "k3x9.execute-api.us-east-1.amazonaws.com",
            "prod",
        );
        assert_eq!(api.domain_prefix, "k3x9");
    }
}
