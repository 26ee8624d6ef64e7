//! Payload format 2.0 (HTTP API; function URLs reuse it, see
//! [`super::function_url`]).
//!
//! Request: header names lower-cased and repeated headers joined with `,`;
//! the `Cookie` header moves to the `cookies` array (one entry per
//! `name=value`) and is not repeated in `headers`; `rawQueryString` is the
//! query as received and `queryStringParameters` joins repeated keys with
//! `,`. Empty optional fields are **absent** (not `null`) except
//! `isBase64Encoded`, which is always present.
//!
//! Response: a JSON object with a `statusCode` key is the full form
//! (`headers`, `cookies` → one `Set-Cookie` each, `body`, `isBase64Encoded`);
//! any other valid JSON (object without `statusCode`, array, string, number,
//! …) is answered 200 `application/json` with the function's output verbatim
//! as the body. Output that is not JSON is an error (500).

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::{
    ProxyRequest, ResponseError, event_body, gateway_error, header_name, header_str,
    json_header_value, object, parse_status, query_pairs, response_body,
};
use crate::auth::JwtPrincipal;

/// HTTP API status for a function error or output that is not JSON.
pub const MALFORMED_STATUS: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;
/// HTTP API body for a function error or output that is not JSON.
pub const MALFORMED_BODY: &str = r#"{"message":"Internal Server Error"}"#;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event<'a> {
    pub version: &'static str,
    pub route_key: &'a str,
    pub raw_path: &'a str,
    pub raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<Cow<'a, str>>,
    pub headers: BTreeMap<&'a str, Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_string_parameters: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub path_parameters: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_variables: Option<BTreeMap<String, String>>,
    pub request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Cow<'a, str>>,
    pub is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestContext<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<Authorizer<'a>>,
    pub domain_name: &'a str,
    pub domain_prefix: &'a str,
    pub http: Http<'a>,
    pub request_id: &'a str,
    pub route_key: &'a str,
    pub stage: &'a str,
    pub time: String,
    pub time_epoch: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Http<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'static str,
    pub source_ip: &'a str,
    pub user_agent: Cow<'a, str>,
}

#[derive(Serialize)]
pub(super) struct Authorizer<'a> {
    pub jwt: Jwt<'a>,
}

#[derive(Serialize)]
pub(super) struct Jwt<'a> {
    pub claims: &'a BTreeMap<String, String>,
    pub scopes: Option<&'a [String]>,
}

impl<'a> Authorizer<'a> {
    fn from(p: &'a JwtPrincipal) -> Self {
        Self {
            jwt: Jwt {
                claims: &p.claims,
                scopes: p.scopes.as_deref(),
            },
        }
    }
}

/// The `cookies` array: every `name=value` of every `Cookie` header.
pub fn request_cookies(headers: &HeaderMap) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    for v in headers.get_all(COOKIE) {
        match header_str(v) {
            Cow::Borrowed(s) => out.extend(
                s.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(Cow::Borrowed),
            ),
            Cow::Owned(s) => out.extend(
                s.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Cow::Owned(c.to_owned())),
            ),
        }
    }
    out
}

/// Lower-cased headers, repeated ones joined with `,`, `Cookie` left out.
fn joined_headers(headers: &HeaderMap) -> BTreeMap<&str, Cow<'_, str>> {
    let mut out = BTreeMap::new();
    for name in headers.keys() {
        if name == COOKIE {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let mut joined = header_str(first);
        for v in values {
            let s = joined.to_mut();
            s.push(',');
            s.push_str(&header_str(v));
        }
        out.insert(name.as_str(), joined);
    }
    out
}

/// The 2.0 event structure; function URLs adjust a few fields before
/// serialising it.
pub(super) fn event<'a>(req: &'a ProxyRequest<'a>) -> Event<'a> {
    let mut query: BTreeMap<Cow<'a, str>, Cow<'a, str>> = BTreeMap::new();
    for (k, v) in query_pairs(req.raw_query()) {
        match query.get_mut(&k) {
            Some(existing) => {
                let s = existing.to_mut();
                s.push(',');
                s.push_str(&v);
            }
            None => {
                query.insert(k, v);
            }
        }
    }
    let (body, is_base64_encoded) = event_body(req.headers, req.body);
    Event {
        version: "2.0",
        route_key: req.route_key,
        raw_path: req.path(),
        raw_query_string: req.raw_query(),
        cookies: request_cookies(req.headers),
        headers: joined_headers(req.headers),
        query_string_parameters: query,
        path_parameters: req.path_params.iter().collect(),
        stage_variables: None,
        request_context: RequestContext {
            account_id: &req.api.account_id,
            api_id: &req.api.api_id,
            authorizer: req.jwt.map(Authorizer::from),
            domain_name: &req.api.domain_name,
            domain_prefix: &req.api.domain_prefix,
            http: Http {
                method: req.method.as_str(),
                path: req.path(),
                protocol: req.protocol(),
                source_ip: req.source_ip,
                user_agent: req.user_agent().unwrap_or(Cow::Borrowed("")),
            },
            request_id: req.request_id,
            route_key: req.route_key,
            stage: &req.api.stage,
            time: req.request_time(),
            time_epoch: req.time_epoch_ms,
        },
        body,
        is_base64_encoded,
    }
}

/// Builds the 2.0 request event, serialised (the bytes to invoke with).
pub fn build_event(req: &ProxyRequest<'_>) -> Vec<u8> {
    // Only string-keyed maps and plain values: serialisation cannot fail.
    serde_json::to_vec(&event(req)).expect("a 2.0 event always serialises")
}

/// Interprets a function's output (the bytes the invocation returned) as a
/// 2.0 response, inferring one when there is no `statusCode`.
pub fn parse_response(payload: &[u8]) -> Result<Response<Bytes>, ResponseError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| ResponseError::NotJson)?;
    let full = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(obj) = full else {
        let mut resp = Response::new(Bytes::copy_from_slice(payload));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(resp);
    };
    let status = parse_status(&obj["statusCode"])?;
    let body = response_body(obj)?;
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let out = resp.headers_mut();
    if let Some(headers) = object(obj, "headers")? {
        for (name, v) in headers {
            if !v.is_null() {
                out.append(header_name(name)?, json_header_value(name, v)?);
            }
        }
    }
    match obj.get("cookies") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(cookies)) => {
            for c in cookies {
                out.append(SET_COOKIE, json_header_value("cookies", c)?);
            }
        }
        Some(_) => {
            return Err(ResponseError::InvalidHeaders(
                "`cookies` must be an array of strings".to_owned(),
            ));
        }
    }
    super::strip_framing_headers(resp.headers_mut());
    Ok(resp)
}

/// The HTTP API answer to a function error or unusable output: 500
/// `{"message":"Internal Server Error"}`.
pub fn malformed_response(request_id: &str) -> Response<Bytes> {
    gateway_error(MALFORMED_STATUS, MALFORMED_BODY, request_id)
}

#[cfg(test)]
mod tests {
    use http::{Method, Request, Version};
    use serde_json::{Value, json};

    use super::*;
    use crate::apigw::ApiInfo;
    use crate::routes::RouteTable;

    fn api() -> ApiInfo {
        ApiInfo::new(
            "123456789012",
            "q7w8",
            "q7w8.execute-api.eu-west-1.amazonaws.com",
            "$default",
        )
    }

    fn event_json(route_key: &str, req: &Request<Vec<u8>>, jwt: Option<&JwtPrincipal>) -> Value {
        let mut t = RouteTable::new();
        t.insert_key(route_key, ()).unwrap();
        let m = t.lookup(req.method(), req.uri().path()).found().unwrap();
        let api = api();
        let proxy = ProxyRequest {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            body: req.body(),
            source_ip: "198.51.100.7",
            route_key: m.route_key,
            resource: m.resource,
            path_params: &m.params,
            request_id: "Ab1Cd2Ef3Gh=",
            time_epoch_ms: 1_736_942_400_000,
            api: &api,
            jwt,
        };
        serde_json::from_slice(&build_event(&proxy)).unwrap()
    }

    fn reference_request() -> Request<Vec<u8>> {
        Request::builder()
            .method(Method::POST)
            .uri("/orders?dry=1&tag=a&tag=b")
            .version(Version::HTTP_11)
            .header("content-type", "application/json")
            .header("host", "q7w8.execute-api.eu-west-1.amazonaws.com")
            .header("x-forwarded-for", "198.51.100.7")
            .header("cookie", "session=abc123; theme=dark")
            .header("user-agent", "python-requests/2.32")
            .body(br#"{"sku":"X1","qty":2}"#.to_vec())
            .unwrap()
    }

    #[test]
    fn reference_example_field_by_field() {
        let e = event_json("POST /orders", &reference_request(), None);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "POST /orders");
        assert_eq!(e["rawPath"], "/orders");
        assert_eq!(e["rawQueryString"], "dry=1&tag=a&tag=b");
        assert_eq!(e["cookies"], json!(["session=abc123", "theme=dark"]));
        assert_eq!(
            e["headers"],
            json!({
                "content-type": "application/json",
                "host": "q7w8.execute-api.eu-west-1.amazonaws.com",
                "x-forwarded-for": "198.51.100.7",
                "user-agent": "python-requests/2.32"
            })
        );
        assert_eq!(
            e["queryStringParameters"],
            json!({"dry": "1", "tag": "a,b"})
        );
        let obj = e.as_object().unwrap();
        assert!(!obj.contains_key("pathParameters"), "absent when none");
        assert!(!obj.contains_key("stageVariables"), "absent when none");
        assert!(!obj.contains_key("multiValueHeaders"));
        assert!(!obj.contains_key("multiValueQueryStringParameters"));
        assert_eq!(e["body"], r#"{"sku":"X1","qty":2}"#);
        assert_eq!(e["isBase64Encoded"], false);

        let rc = &e["requestContext"];
        assert_eq!(rc["accountId"], "123456789012");
        assert_eq!(rc["apiId"], "q7w8");
        assert_eq!(rc["domainName"], "q7w8.execute-api.eu-west-1.amazonaws.com");
        assert_eq!(rc["domainPrefix"], "q7w8");
        assert_eq!(rc["requestId"], "Ab1Cd2Ef3Gh=");
        assert_eq!(rc["routeKey"], "POST /orders");
        assert_eq!(rc["stage"], "$default");
        assert_eq!(rc["time"], "15/Jan/2025:12:00:00 +0000");
        assert_eq!(rc["timeEpoch"], 1_736_942_400_000_u64);
        assert_eq!(
            rc["http"],
            json!({"method": "POST", "path": "/orders", "protocol": "HTTP/1.1",
                   "sourceIp": "198.51.100.7", "userAgent": "python-requests/2.32"})
        );
        assert!(rc.get("authorizer").is_none());
    }

    #[test]
    fn empty_request_omits_optional_fields() {
        let req = Request::builder().uri("/").body(Vec::new()).unwrap();
        let e = event_json("GET /", &req, None);
        let obj = e.as_object().unwrap();
        for absent in ["cookies", "queryStringParameters", "pathParameters", "body"] {
            assert!(!obj.contains_key(absent), "{absent}");
        }
        assert_eq!(e["rawQueryString"], "");
        assert_eq!(e["headers"], json!({}));
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["http"]["userAgent"], "");
    }

    #[test]
    fn repeated_headers_join_with_comma_and_cookies_split() {
        let req = Request::builder()
            .uri("/x/7")
            .header("X-Multi", "one")
            .header("x-multi", "two")
            .header("cookie", "a=1")
            .header("cookie", "b=2; c=3;")
            .body(Vec::new())
            .unwrap();
        let e = event_json("GET /x/{id}", &req, None);
        assert_eq!(e["headers"]["x-multi"], "one,two");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], json!(["a=1", "b=2", "c=3"]));
        assert_eq!(e["pathParameters"], json!({"id": "7"}));
    }

    #[test]
    fn from_parts_with_route_target() {
        use crate::apigw::PayloadFormat;
        use crate::routes::RouteTarget;
        let mut t = RouteTable::new();
        let target = RouteTarget {
            function: "orders".into(),
            qualifier: Some("live".into()),
            payload_format: PayloadFormat::V2,
        };
        t.insert_key("GET /orders/{id}", target.clone()).unwrap();
        let (parts, body) = Request::builder()
            .uri("/orders/o%2D9?x=1")
            .body(Vec::<u8>::new())
            .unwrap()
            .into_parts();
        let m = t.lookup(&parts.method, parts.uri.path()).found().unwrap();
        assert_eq!(m.target, &target);
        let api = api();
        let p = JwtPrincipal::default();
        let proxy = ProxyRequest {
            jwt: Some(&p),
            ..ProxyRequest::from_parts(&parts, &body, "10.0.0.1", &m, &api, "rid", 5)
        };
        let e: Value = serde_json::from_slice(&build_event(&proxy)).unwrap();
        assert_eq!(e["routeKey"], "GET /orders/{id}");
        assert_eq!(e["rawPath"], "/orders/o%2D9");
        assert_eq!(e["pathParameters"], json!({"id": "o-9"}));
        assert_eq!(
            e["requestContext"]["authorizer"],
            json!({"jwt": {"claims": {}, "scopes": null}})
        );
        assert_eq!(e["requestContext"]["timeEpoch"], 5);
    }

    #[test]
    fn binary_body_is_base64() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/up")
            .body(vec![0, 159, 146, 150])
            .unwrap();
        let e = event_json("POST /up", &req, None);
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "AJ+Slg==");
    }

    #[test]
    fn jwt_claims_and_scopes() {
        let p = JwtPrincipal {
            claims: BTreeMap::from([
                ("iss".to_owned(), "https://issuer".to_owned()),
                ("sub".to_owned(), "u1".to_owned()),
            ]),
            scopes: Some(vec!["read".into(), "write".into()]),
        };
        let e = event_json("POST /orders", &reference_request(), Some(&p));
        assert_eq!(
            e["requestContext"]["authorizer"],
            json!({"jwt": {"claims": {"iss": "https://issuer", "sub": "u1"},
                           "scopes": ["read", "write"]}})
        );
    }

    #[test]
    fn response_full_form() {
        let payload = br#"{"statusCode": 201, "headers": {"content-type": "application/json", "x-request-id": "r-1"},
            "cookies": ["session=abc123; HttpOnly", "theme=dark; Max-Age=3600"],
            "body": "{\"orderId\":\"o-9\"}", "isBase64Encoded": false}"#;
        let r = parse_response(payload).unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["x-request-id"], "r-1");
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(
            cookies,
            ["session=abc123; HttpOnly", "theme=dark; Max-Age=3600"]
        );
        assert_eq!(r.body().as_ref(), br#"{"orderId":"o-9"}"#);
    }

    #[test]
    fn response_shortcut_for_values_without_status_code() {
        for payload in [
            &br#"{"ok": true}"#[..],
            br#""hi""#,
            b"42",
            b"[1,2]",
            b"null",
            b"true",
            br#"{"status": 404}"#,
        ] {
            let r = parse_response(payload).unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/json");
            assert_eq!(r.body().as_ref(), payload, "output used verbatim");
        }
    }

    #[test]
    fn response_defaults_and_base64() {
        let r = parse_response(br#"{"statusCode": 204}"#).unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.body().is_empty());
        assert!(r.headers().is_empty());
        let r =
            parse_response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(r.body().as_ref(), b"hi");
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert_eq!(parse_response(b"hello").err(), Some(ResponseError::NotJson));
        assert_eq!(parse_response(b"").err(), Some(ResponseError::NotJson));
        assert!(matches!(
            parse_response(br#"{"statusCode": "abc"}"#),
            Err(ResponseError::InvalidStatusCode(_))
        ));
        assert!(matches!(
            parse_response(br#"{"statusCode": 200, "cookies": "a=1"}"#),
            Err(ResponseError::InvalidHeaders(_))
        ));
        assert_eq!(
            parse_response(br#"{"statusCode": 200, "body": 5}"#).err(),
            Some(ResponseError::BodyNotString)
        );
        let r = malformed_response("id-1");
        assert_eq!(r.status(), 500);
        assert_eq!(r.body().as_ref(), br#"{"message":"Internal Server Error"}"#);
        assert_eq!(r.headers()["x-amzn-requestid"], "id-1");
    }
}
