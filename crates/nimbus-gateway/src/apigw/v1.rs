//! Payload format 1.0 (REST API Lambda proxy integration).
//!
//! Request: `headers` keep one value per name (the **last**) and
//! `multiValueHeaders` keep all; the same split for the query string; empty
//! maps and an empty body are `null` (not absent), because that is what typed
//! 1.0 deserialisers expect. `http` lower-cases header names, so names are
//! given back in canonical `Title-Case` (`Content-Type`, `X-Forwarded-For`),
//! the spelling HTTP/1.1 clients send for standard headers and the one the
//! reference examples show.
//!
//! Response: an object with an integer `statusCode` is required (no inference
//! in 1.0); `headers` and `multiValueHeaders` are merged, the multi-value list
//! winning for a name present in both; `body` must be a string.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use super::{
    ProxyRequest, ResponseError, event_body, gateway_error, header_name, header_str,
    json_header_value, object, parse_status, query_pairs, response_body,
};
use crate::auth::JwtPrincipal;

/// REST API status for a malformed function response.
pub const MALFORMED_STATUS: StatusCode = StatusCode::BAD_GATEWAY;
/// REST API body for a malformed function response (spacing as AWS sends it).
pub const MALFORMED_BODY: &str = r#"{"message": "Internal server error"}"#;
/// HTTP API (payload 1.0) status for a malformed function response.
pub const HTTP_API_MALFORMED_STATUS: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;
/// HTTP API body for a malformed function response.
pub const HTTP_API_MALFORMED_BODY: &str = r#"{"message":"Internal Server Error"}"#;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    resource: &'a str,
    path: &'a str,
    http_method: &'a str,
    headers: Option<BTreeMap<String, Cow<'a, str>>>,
    multi_value_headers: Option<BTreeMap<String, Vec<Cow<'a, str>>>>,
    query_string_parameters: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    multi_value_query_string_parameters: Option<BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>>,
    path_parameters: Option<BTreeMap<&'a str, &'a str>>,
    stage_variables: Option<BTreeMap<String, String>>,
    request_context: RequestContext<'a>,
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    account_id: &'a str,
    api_id: &'a str,
    resource_id: String,
    resource_path: &'a str,
    stage: &'a str,
    path: String,
    http_method: &'a str,
    protocol: &'static str,
    request_id: &'a str,
    extended_request_id: &'a str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    request_time: String,
    request_time_epoch: u64,
    identity: Identity<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<Authorizer<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    source_ip: &'a str,
    user_agent: Option<Cow<'a, str>>,
    account_id: Option<&'a str>,
    api_key: Option<&'a str>,
    api_key_id: Option<&'a str>,
    access_key: Option<&'a str>,
    caller: Option<&'a str>,
    cognito_authentication_provider: Option<&'a str>,
    cognito_authentication_type: Option<&'a str>,
    cognito_identity_id: Option<&'a str>,
    cognito_identity_pool_id: Option<&'a str>,
    principal_org_id: Option<&'a str>,
    user: Option<&'a str>,
    user_arn: Option<&'a str>,
    client_cert: Option<&'a str>,
}

/// JWT authorizer output, 1.0 placement: `requestContext.authorizer.claims`.
#[derive(Serialize)]
struct Authorizer<'a> {
    claims: &'a BTreeMap<String, String>,
    scopes: Option<&'a [String]>,
}

impl<'a> Authorizer<'a> {
    fn from(p: &'a JwtPrincipal) -> Self {
        Self {
            claims: &p.claims,
            scopes: p.scopes.as_deref(),
        }
    }
}

/// `x-forwarded-for` → `X-Forwarded-For`.
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out
}

/// `headers` (last value per name) of a 1.0-style event.
pub(crate) type SingleHeaders<'h> = BTreeMap<String, Cow<'h, str>>;
/// `multiValueHeaders` (every value) of a 1.0-style event.
pub(crate) type MultiHeaders<'h> = BTreeMap<String, Vec<Cow<'h, str>>>;

/// Both header maps of a 1.0-style event (also used by WebSocket events).
pub(crate) fn header_maps(headers: &HeaderMap) -> (SingleHeaders<'_>, MultiHeaders<'_>) {
    let mut single = BTreeMap::new();
    let mut multi = BTreeMap::new();
    for name in headers.keys() {
        let values: Vec<_> = headers.get_all(name).iter().map(header_str).collect();
        let display = title_case(name.as_str());
        if let Some(last) = values.last() {
            single.insert(display.clone(), last.clone());
        }
        multi.insert(display, values);
    }
    (single, multi)
}

/// A short stable id for a resource (REST APIs give each resource one).
fn resource_id(resource: &str) -> String {
    // FNV-1a: stable across runs and builds, unlike `DefaultHasher`.
    let hash = resource.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{:06x}", hash & 0xff_ffff)
}

/// Builds the 1.0 request event, serialised (the bytes to invoke with).
pub fn build_event(req: &ProxyRequest<'_>) -> Vec<u8> {
    let (headers, multi_headers) = header_maps(req.headers);

    let mut query: BTreeMap<Cow<'_, str>, Cow<'_, str>> = BTreeMap::new();
    let mut multi_query: BTreeMap<Cow<'_, str>, Vec<Cow<'_, str>>> = BTreeMap::new();
    for (k, v) in query_pairs(req.raw_query()) {
        query.insert(k.clone(), v.clone());
        multi_query.entry(k).or_default().push(v);
    }
    let path_params: BTreeMap<&str, &str> = req.path_params.iter().collect();
    let (body, is_base64_encoded) = event_body(req.headers, req.body);
    let path = req.path();
    let stage = req.api.stage.as_str();
    let context_path = if stage == "$default" {
        path.to_owned()
    } else {
        format!("/{stage}{path}")
    };

    let event = Event {
        resource: req.resource,
        path,
        http_method: req.method.as_str(),
        headers: (!headers.is_empty()).then_some(headers),
        multi_value_headers: (!multi_headers.is_empty()).then_some(multi_headers),
        query_string_parameters: (!query.is_empty()).then_some(query),
        multi_value_query_string_parameters: (!multi_query.is_empty()).then_some(multi_query),
        path_parameters: (!path_params.is_empty()).then_some(path_params),
        stage_variables: None,
        request_context: RequestContext {
            account_id: &req.api.account_id,
            api_id: &req.api.api_id,
            resource_id: resource_id(req.resource),
            resource_path: req.resource,
            stage,
            path: context_path,
            http_method: req.method.as_str(),
            protocol: req.protocol(),
            request_id: req.request_id,
            extended_request_id: req.request_id,
            domain_name: &req.api.domain_name,
            domain_prefix: &req.api.domain_prefix,
            request_time: req.request_time(),
            request_time_epoch: req.time_epoch_ms,
            identity: Identity {
                source_ip: req.source_ip,
                user_agent: req.user_agent(),
                account_id: None,
                api_key: None,
                api_key_id: None,
                access_key: None,
                caller: None,
                cognito_authentication_provider: None,
                cognito_authentication_type: None,
                cognito_identity_id: None,
                cognito_identity_pool_id: None,
                principal_org_id: None,
                user: None,
                user_arn: None,
                client_cert: None,
            },
            authorizer: req.jwt.map(Authorizer::from),
        },
        body,
        is_base64_encoded,
    };
    // Only string-keyed maps and plain values: serialisation cannot fail.
    serde_json::to_vec(&event).expect("a 1.0 event always serialises")
}

/// Interprets a function's output (the bytes the invocation returned) as a
/// 1.0 proxy response.
pub fn parse_response(payload: &[u8]) -> Result<Response<Bytes>, ResponseError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| ResponseError::NotJson)?;
    let obj = value.as_object().ok_or(ResponseError::NotAnObject)?;
    let status = parse_status(
        obj.get("statusCode")
            .ok_or(ResponseError::MissingStatusCode)?,
    )?;
    let body = response_body(obj)?;

    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let out = resp.headers_mut();
    let multi = object(obj, "multiValueHeaders")?;
    if let Some(single) = object(obj, "headers")? {
        for (name, v) in single {
            if v.is_null() {
                continue;
            }
            // A name also in multiValueHeaders takes its values from there.
            let overridden = multi.is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name)));
            if !overridden {
                out.append(header_name(name)?, json_header_value(name, v)?);
            }
        }
    }
    if let Some(multi) = multi {
        for (name, values) in multi {
            let header = header_name(name)?;
            match values {
                serde_json::Value::Array(items) => {
                    for v in items {
                        out.append(header.clone(), json_header_value(name, v)?);
                    }
                }
                serde_json::Value::Null => {}
                _ => {
                    return Err(ResponseError::InvalidHeaders(format!(
                        "multiValueHeaders `{name}` must be an array"
                    )));
                }
            }
        }
    }
    super::strip_framing_headers(resp.headers_mut());
    Ok(resp)
}

/// The REST API answer to a malformed function response (or a function
/// error): 502 `{"message": "Internal server error"}`.
pub fn malformed_response(request_id: &str) -> Response<Bytes> {
    gateway_error(MALFORMED_STATUS, MALFORMED_BODY, request_id)
}

/// The HTTP API answer when a 1.0 integration misbehaves: 500.
pub fn http_api_malformed_response(request_id: &str) -> Response<Bytes> {
    gateway_error(
        HTTP_API_MALFORMED_STATUS,
        HTTP_API_MALFORMED_BODY,
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method, Request, Version};
    use serde_json::{Value, json};

    use super::*;
    use crate::apigw::ApiInfo;
    use crate::routes::RouteTable;

    fn api() -> ApiInfo {
        ApiInfo::new(
            "123456789012",
            "k3x9",
            "k3x9.execute-api.us-east-1.amazonaws.com",
            "prod",
        )
    }

    /// Builds the event for `req` routed through `route_key`.
    fn event(route_key: &str, req: &Request<Vec<u8>>, jwt: Option<&JwtPrincipal>) -> Value {
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
            request_id: "c0ffee00-1111-2222-3333-444455556666",
            time_epoch_ms: 1_736_942_400_000,
            api: &api,
            jwt,
        };
        serde_json::from_slice(&build_event(&proxy)).unwrap()
    }

    fn reference_request() -> Request<Vec<u8>> {
        Request::builder()
            .method(Method::GET)
            .uri("/items/42?verbose=true")
            .version(Version::HTTP_11)
            .header("accept", "application/json")
            .header("host", "k3x9.execute-api.us-east-1.amazonaws.com")
            .header("x-forwarded-proto", "https")
            .header("user-agent", "curl/8.5.0")
            .body(Vec::new())
            .unwrap()
    }

    #[test]
    fn reference_example_field_by_field() {
        let e = event("GET /items/{id}", &reference_request(), None);
        assert_eq!(e["resource"], "/items/{id}");
        assert_eq!(e["path"], "/items/42");
        assert_eq!(e["httpMethod"], "GET");
        assert_eq!(e["headers"]["Accept"], "application/json");
        assert_eq!(
            e["headers"]["Host"],
            "k3x9.execute-api.us-east-1.amazonaws.com"
        );
        assert_eq!(e["headers"]["X-Forwarded-Proto"], "https");
        assert_eq!(
            e["multiValueHeaders"]["Accept"],
            json!(["application/json"])
        );
        assert_eq!(
            e["multiValueHeaders"]["X-Forwarded-Proto"],
            json!(["https"])
        );
        assert_eq!(e["queryStringParameters"], json!({"verbose": "true"}));
        assert_eq!(
            e["multiValueQueryStringParameters"],
            json!({"verbose": ["true"]})
        );
        assert_eq!(e["pathParameters"], json!({"id": "42"}));
        assert_eq!(e["stageVariables"], Value::Null);
        assert!(e.as_object().unwrap().contains_key("stageVariables"));
        assert_eq!(e["body"], Value::Null);
        assert!(e.as_object().unwrap().contains_key("body"));
        assert_eq!(e["isBase64Encoded"], false);

        let rc = &e["requestContext"];
        assert_eq!(rc["accountId"], "123456789012");
        assert_eq!(rc["apiId"], "k3x9");
        assert!(rc["resourceId"].is_string());
        assert_eq!(rc["resourcePath"], "/items/{id}");
        assert_eq!(rc["stage"], "prod");
        assert_eq!(rc["path"], "/prod/items/42");
        assert_eq!(rc["httpMethod"], "GET");
        assert_eq!(rc["protocol"], "HTTP/1.1");
        assert_eq!(rc["requestId"], "c0ffee00-1111-2222-3333-444455556666");
        assert_eq!(
            rc["extendedRequestId"],
            "c0ffee00-1111-2222-3333-444455556666"
        );
        assert_eq!(rc["domainName"], "k3x9.execute-api.us-east-1.amazonaws.com");
        assert_eq!(rc["domainPrefix"], "k3x9");
        assert_eq!(rc["requestTime"], "15/Jan/2025:12:00:00 +0000");
        assert_eq!(rc["requestTimeEpoch"], 1_736_942_400_000_u64);
        assert_eq!(rc["identity"]["sourceIp"], "198.51.100.7");
        assert_eq!(rc["identity"]["userAgent"], "curl/8.5.0");
        for null_field in [
            "accountId",
            "caller",
            "cognitoIdentityId",
            "cognitoIdentityPoolId",
            "user",
            "userArn",
            "apiKey",
            "accessKey",
            "clientCert",
        ] {
            let id = rc["identity"].as_object().unwrap();
            assert_eq!(id.get(null_field), Some(&Value::Null), "{null_field}");
        }
        assert!(
            rc.get("authorizer").is_none(),
            "authorizer only with an authorizer"
        );
    }

    #[test]
    fn empty_query_and_params_are_null() {
        let req = Request::builder()
            .uri("/ping")
            .header("host", "h")
            .body(Vec::new())
            .unwrap();
        let e = event("GET /ping", &req, None);
        for field in [
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
        ] {
            assert_eq!(e.get(field), Some(&Value::Null), "{field}");
        }
    }

    #[test]
    fn no_headers_gives_null_maps_and_no_user_agent() {
        let req = Request::builder().uri("/ping").body(Vec::new()).unwrap();
        let e = event("GET /ping", &req, None);
        assert_eq!(e["headers"], Value::Null);
        assert_eq!(e["multiValueHeaders"], Value::Null);
        assert_eq!(e["requestContext"]["identity"]["userAgent"], Value::Null);
    }

    #[test]
    fn repeated_headers_and_query_keys() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/q?tag=a&tag=b&x=%2F1&empty")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("cookie", "a=1; b=2")
            .body(Vec::new())
            .unwrap();
        let e = event("ANY /q", &req, None);
        assert_eq!(e["headers"]["X-Multi"], "two", "last value wins");
        assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["one", "two"]));
        assert_eq!(
            e["headers"]["Cookie"], "a=1; b=2",
            "1.0 keeps the cookie header"
        );
        assert_eq!(e["queryStringParameters"]["tag"], "b", "last value wins");
        assert_eq!(
            e["multiValueQueryStringParameters"]["tag"],
            json!(["a", "b"])
        );
        assert_eq!(e["queryStringParameters"]["x"], "/1");
        assert_eq!(e["queryStringParameters"]["empty"], "");
        assert_eq!(e["resource"], "/q");
        assert_eq!(e["httpMethod"], "POST");
    }

    #[test]
    fn text_body_is_a_string() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/items")
            .header("content-type", "application/json")
            .body(br#"{"sku":"X1"}"#.to_vec())
            .unwrap();
        let e = event("POST /items", &req, None);
        assert_eq!(e["body"], r#"{"sku":"X1"}"#);
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn binary_body_is_base64() {
        let png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff];
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/img")
            .header("content-type", "image/png")
            .body(png.clone())
            .unwrap();
        let e = event("PUT /img", &req, None);
        assert_eq!(e["isBase64Encoded"], true);
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(e["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, png);
    }

    #[test]
    fn greedy_params_and_default_stage_path() {
        let req = Request::builder()
            .uri("/files/a/b%20c.txt")
            .body(Vec::new())
            .unwrap();
        let mut t = RouteTable::new();
        t.insert_key("ANY /files/{proxy+}", ()).unwrap();
        let m = t.lookup(req.method(), req.uri().path()).found().unwrap();
        let api = ApiInfo::new("1", "a", "a.example", "$default");
        let proxy = ProxyRequest {
            method: req.method(),
            uri: req.uri(),
            version: Version::HTTP_2,
            headers: req.headers(),
            body: req.body(),
            source_ip: "::1",
            route_key: m.route_key,
            resource: m.resource,
            path_params: &m.params,
            request_id: "r",
            time_epoch_ms: 0,
            api: &api,
            jwt: None,
        };
        let e: Value = serde_json::from_slice(&build_event(&proxy)).unwrap();
        assert_eq!(e["pathParameters"], json!({"proxy": "a/b c.txt"}));
        assert_eq!(e["path"], "/files/a/b%20c.txt");
        assert_eq!(e["requestContext"]["path"], "/files/a/b%20c.txt");
        assert_eq!(e["requestContext"]["protocol"], "HTTP/2.0");
        assert_eq!(e["resource"], "/files/{proxy+}");
    }

    #[test]
    fn jwt_claims_go_to_authorizer() {
        let principal = JwtPrincipal {
            claims: BTreeMap::from([("sub".to_owned(), "u1".to_owned())]),
            scopes: Some(vec!["read".to_owned()]),
        };
        let e = event("GET /items/{id}", &reference_request(), Some(&principal));
        assert_eq!(
            e["requestContext"]["authorizer"],
            json!({"claims": {"sub": "u1"}, "scopes": ["read"]})
        );
    }

    #[test]
    fn title_case_names() {
        assert_eq!(title_case("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(title_case("accept"), "Accept");
        assert_eq!(title_case("x--y"), "X--Y");
    }

    #[test]
    fn response_reference_example() {
        let payload = br#"{"statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; Path=/"]},
            "body": "{\"id\":42}",
            "isBase64Encoded": false}"#;
        let r = parse_response(payload).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
        assert_eq!(r.body().as_ref(), br#"{"id":42}"#);
    }

    #[test]
    fn multi_value_headers_win_over_headers_for_the_same_name() {
        let payload = br#"{"statusCode": 201,
            "headers": {"X-A": "single", "X-B": "b", "X-N": 5},
            "multiValueHeaders": {"x-a": ["m1", "m2"]}}"#;
        let r = parse_response(payload).unwrap();
        assert_eq!(r.status(), 201);
        let a: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(
            a,
            [
                HeaderValue::from_static("m1"),
                HeaderValue::from_static("m2")
            ]
        );
        assert_eq!(r.headers()["x-b"], "b");
        assert_eq!(r.headers()["x-n"], "5");
        assert!(r.body().is_empty(), "missing body is empty");
        assert!(
            r.headers().get("content-type").is_none(),
            "no inference in 1.0"
        );
    }

    #[test]
    fn base64_response_body_is_decoded() {
        let r = parse_response(br#"{"statusCode":200,"body":"AAEC/w==","isBase64Encoded":true}"#)
            .unwrap();
        assert_eq!(r.body().as_ref(), &[0, 1, 2, 255]);
        assert_eq!(
            parse_response(br#"{"statusCode":200,"body":"%%%","isBase64Encoded":true}"#).err(),
            Some(ResponseError::InvalidBase64)
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: [(&[u8], ResponseError); 8] = [
            (b"not json", ResponseError::NotJson),
            (b"\"hi\"", ResponseError::NotAnObject),
            (b"[1]", ResponseError::NotAnObject),
            (br#"{"body":"x"}"#, ResponseError::MissingStatusCode),
            (
                br#"{"statusCode":"200"}"#,
                ResponseError::InvalidStatusCode("\"200\"".into()),
            ),
            (
                br#"{"statusCode":99}"#,
                ResponseError::InvalidStatusCode("99".into()),
            ),
            (
                br#"{"statusCode":200,"body":{"a":1}}"#,
                ResponseError::BodyNotString,
            ),
            (
                br#"{"statusCode":200,"headers":{"x":[1]}}"#,
                ResponseError::InvalidHeaders("value of `x` must be a string".into()),
            ),
        ];
        for (payload, err) in cases {
            assert_eq!(
                parse_response(payload).err(),
                Some(err),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        assert!(matches!(
            parse_response(br#"{"statusCode":200,"headers":{"bad name":"x"}}"#),
            Err(ResponseError::InvalidHeaders(_))
        ));
        assert!(matches!(
            parse_response(br#"{"statusCode":200,"multiValueHeaders":{"x":"y"}}"#),
            Err(ResponseError::InvalidHeaders(_))
        ));
    }

    #[test]
    fn malformed_answer_is_502_with_request_id() {
        let r = malformed_response("req-9");
        assert_eq!(r.status(), 502);
        assert_eq!(
            r.body().as_ref(),
            br#"{"message": "Internal server error"}"#
        );
        assert_eq!(r.headers()["x-amzn-requestid"], "req-9");
        let r = http_api_malformed_response("req-9");
        assert_eq!(r.status(), 500);
    }
}
