//! API Gateway WebSocket API events and route selection.
//!
//! A WebSocket API invokes functions for three kinds of events: `$connect`
//! (the upgrade request, with its headers and query), each message (routed
//! by a route-selection expression such as `$request.body.action`, falling
//! back to `$default`), and `$disconnect`. Handlers read
//! `requestContext.connectionId` to talk back to the client and
//! `requestContext.eventType` / `routeKey` to dispatch, so those fields follow
//! the real events (`aws-lambda-go` `APIGatewayWebsocketProxyRequest` test
//! data): `messageId`, `disconnectStatusCode` and `disconnectReason` are
//! `null` on `$connect`, `messageDirection` is always `IN`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use serde::Serialize;

use crate::apigw::v1::header_maps;
use crate::apigw::{ApiInfo, format_request_time, query_pairs};
use crate::routes::DEFAULT_ROUTE_KEY;

/// Route key of the connect event.
pub const CONNECT_ROUTE: &str = "$connect";
/// Route key of the disconnect event.
pub const DISCONNECT_ROUTE: &str = "$disconnect";

/// `requestContext.eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// `$connect`.
    Connect,
    /// A message on any other route.
    Message,
    /// `$disconnect`.
    Disconnect,
}

/// What the gateway knows about an open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `requestContext.connectionId`.
    pub connection_id: String,
    /// When the connection was accepted, epoch ms (`connectedAt`).
    pub connected_at_ms: u64,
    /// Client address.
    pub source_ip: String,
    /// Client `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
}

/// A message frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text frame (sent as is).
    Text(&'a str),
    /// A binary frame (sent base64-encoded, `isBase64Encoded: true`).
    Binary(&'a [u8]),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, Cow<'a, str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<BTreeMap<String, Vec<Cow<'a, str>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_query_string_parameters: Option<BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    route_key: &'a str,
    message_id: Option<&'a str>,
    event_type: EventType,
    extended_request_id: &'a str,
    request_time: String,
    message_direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_status_code: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<Option<&'a str>>,
    stage: &'a str,
    connected_at: u64,
    request_time_epoch: u64,
    identity: Identity<'a>,
    request_id: &'a str,
    domain_name: &'a str,
    connection_id: &'a str,
    api_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    source_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

/// Per-event bookkeeping: the gateway's request id and receive time.
#[derive(Debug, Clone, Copy)]
pub struct EventMeta<'a> {
    /// `requestId` (also `extendedRequestId`).
    pub request_id: &'a str,
    /// Epoch ms (`requestTimeEpoch`).
    pub time_epoch_ms: u64,
}

fn context<'a>(
    api: &'a ApiInfo,
    conn: &'a Connection,
    meta: EventMeta<'a>,
    route_key: &'a str,
    event_type: EventType,
) -> RequestContext<'a> {
    RequestContext {
        route_key,
        message_id: None,
        event_type,
        extended_request_id: meta.request_id,
        request_time: format_request_time(meta.time_epoch_ms),
        message_direction: "IN",
        disconnect_status_code: None,
        disconnect_reason: None,
        stage: &api.stage,
        connected_at: conn.connected_at_ms,
        request_time_epoch: meta.time_epoch_ms,
        identity: Identity {
            source_ip: &conn.source_ip,
            user_agent: conn.user_agent.as_deref(),
        },
        request_id: meta.request_id,
        domain_name: &api.domain_name,
        connection_id: &conn.connection_id,
        api_id: &api.api_id,
    }
}

fn to_bytes(event: &Event<'_>) -> Vec<u8> {
    serde_json::to_vec(event).expect("a WebSocket event always serialises")
}

/// The `$connect` event for the upgrade request (`headers` and `query` of
/// the HTTP request that opened the connection).
pub fn connect_event(
    api: &ApiInfo,
    conn: &Connection,
    meta: EventMeta<'_>,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Vec<u8> {
    let (single, multi) = header_maps(headers);
    let mut query = BTreeMap::new();
    let mut multi_query: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (k, v) in query_pairs(raw_query.unwrap_or("")) {
        query.insert(k.clone(), v.clone());
        multi_query.entry(k).or_default().push(v);
    }
    let mut ctx = context(api, conn, meta, CONNECT_ROUTE, EventType::Connect);
    ctx.disconnect_status_code = Some(None);
    ctx.disconnect_reason = Some(None);
    to_bytes(&Event {
        headers: (!single.is_empty()).then_some(single),
        multi_value_headers: (!multi.is_empty()).then_some(multi),
        query_string_parameters: (!query.is_empty()).then_some(query),
        multi_value_query_string_parameters: (!multi_query.is_empty()).then_some(multi_query),
        request_context: ctx,
        body: None,
        is_base64_encoded: false,
    })
}

/// A message event on `route_key` (chosen with [`RouteSelector::select`]).
pub fn message_event(
    api: &ApiInfo,
    conn: &Connection,
    meta: EventMeta<'_>,
    route_key: &str,
    message_id: &str,
    frame: Frame<'_>,
) -> Vec<u8> {
    let mut ctx = context(api, conn, meta, route_key, EventType::Message);
    ctx.message_id = Some(message_id);
    let (body, is_base64_encoded) = match frame {
        Frame::Text(s) => (Cow::Borrowed(s), false),
        Frame::Binary(b) => (Cow::Owned(BASE64.encode(b)), true),
    };
    to_bytes(&Event {
        headers: None,
        multi_value_headers: None,
        query_string_parameters: None,
        multi_value_query_string_parameters: None,
        request_context: ctx,
        body: Some(body),
        is_base64_encoded,
    })
}

/// The `$disconnect` event, with the WebSocket close code and reason.
pub fn disconnect_event(
    api: &ApiInfo,
    conn: &Connection,
    meta: EventMeta<'_>,
    status_code: u16,
    reason: &str,
) -> Vec<u8> {
    let mut ctx = context(api, conn, meta, DISCONNECT_ROUTE, EventType::Disconnect);
    ctx.disconnect_status_code = Some(Some(status_code));
    ctx.disconnect_reason = Some(Some(reason));
    to_bytes(&Event {
        headers: None,
        multi_value_headers: None,
        query_string_parameters: None,
        multi_value_query_string_parameters: None,
        request_context: ctx,
        body: None,
        is_base64_encoded: false,
    })
}

/// Why a route-selection expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route selection expression `{0}`: expected `$request.body.<field>[.<field>…]`")]
pub struct SelectionExpressionError(pub String);

/// A parsed `$request.body.a.b` route-selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelector {
    path: Vec<String>,
}

impl RouteSelector {
    /// Parses `$request.body.<field>[.<field>…]`.
    pub fn parse(expression: &str) -> Result<Self, SelectionExpressionError> {
        let err = || SelectionExpressionError(expression.to_owned());
        let rest = expression.strip_prefix("$request.body.").ok_or_else(err)?;
        let path: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(err());
        }
        Ok(Self { path })
    }

    /// The route key for a message: the expression's value when it names a
    /// declared route (`is_route`), else `$default` when declared, else
    /// `None` (the gateway then tells the client no route matched).
    /// Non-JSON messages, missing fields and non-scalar values fall back the
    /// same way; numbers and booleans are matched in their JSON spelling.
    pub fn select(&self, message: &[u8], is_route: impl Fn(&str) -> bool) -> Option<String> {
        let key = serde_json::from_slice::<serde_json::Value>(message)
            .ok()
            .and_then(|v| {
                let mut cur = &v;
                for field in &self.path {
                    cur = cur.get(field)?;
                }
                match cur {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }
            });
        match key {
            Some(k) if is_route(&k) => Some(k),
            _ => is_route(DEFAULT_ROUTE_KEY).then(|| DEFAULT_ROUTE_KEY.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::{Value, json};

    use super::*;

    fn api() -> ApiInfo {
        ApiInfo::new(
            "1",
            "gy415nuibc",
            "gy415nuibc.execute-api.ap-northeast-1.amazonaws.com",
            "prod",
        )
    }

    fn conn() -> Connection {
        Connection {
            connection_id: "R1kmxc2VNjMCFIA=".into(),
            connected_at_ms: 1_705_751_697_419,
            source_ip: "49.105.91.154".into(),
            user_agent: Some("Mozilla/5.0".into()),
        }
    }

    fn meta() -> EventMeta<'static> {
        EventMeta {
            request_id: "R1knPH17NjMFftw=",
            time_epoch_ms: 1_705_751_700_453,
        }
    }

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn message_event_shape() {
        let e = parse(&message_event(
            &api(),
            &conn(),
            meta(),
            "$default",
            "R1knPc2ntjMCFIA=",
            Frame::Text("{\"a\": 1}"),
        ));
        assert_eq!(
            e,
            json!({
              "requestContext": {
                "routeKey": "$default", "messageId": "R1knPc2ntjMCFIA=", "eventType": "MESSAGE",
                "extendedRequestId": "R1knPH17NjMFftw=", "requestTime": "20/Jan/2024:11:55:00 +0000",
                "messageDirection": "IN", "stage": "prod", "connectedAt": 1_705_751_697_419_u64,
                "requestTimeEpoch": 1_705_751_700_453_u64,
                "identity": {"userAgent": "Mozilla/5.0", "sourceIp": "49.105.91.154"},
                "requestId": "R1knPH17NjMFftw=",
                "domainName": "gy415nuibc.execute-api.ap-northeast-1.amazonaws.com",
                "connectionId": "R1kmxc2VNjMCFIA=", "apiId": "gy415nuibc"
              },
              "body": "{\"a\": 1}",
              "isBase64Encoded": false
            })
        );
    }

    #[test]
    fn binary_message_is_base64() {
        let e = parse(&message_event(
            &api(),
            &conn(),
            meta(),
            "send",
            "m",
            Frame::Binary(&[1, 2, 3]),
        ));
        assert_eq!(e["body"], "AQID");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["requestContext"]["routeKey"], "send");
    }

    #[test]
    fn connect_event_shape() {
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("gy415nuibc.execute-api.ap-northeast-1.amazonaws.com"),
        );
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        let e = parse(&connect_event(
            &api(),
            &conn(),
            meta(),
            &h,
            Some("token=abc&x=1&x=2"),
        ));
        assert_eq!(e["headers"]["Sec-Websocket-Version"], "13");
        assert_eq!(
            e["multiValueHeaders"]["Host"],
            json!(["gy415nuibc.execute-api.ap-northeast-1.amazonaws.com"])
        );
        assert_eq!(
            e["queryStringParameters"],
            json!({"token": "abc", "x": "2"})
        );
        assert_eq!(e["multiValueQueryStringParameters"]["x"], json!(["1", "2"]));
        let rc = &e["requestContext"];
        assert_eq!(rc["routeKey"], "$connect");
        assert_eq!(rc["eventType"], "CONNECT");
        assert_eq!(rc["messageId"], Value::Null);
        assert_eq!(rc["disconnectStatusCode"], Value::Null);
        assert_eq!(rc["disconnectReason"], Value::Null);
        assert!(rc.as_object().unwrap().contains_key("disconnectReason"));
        assert_eq!(rc["connectionId"], "R1kmxc2VNjMCFIA=");
        assert_eq!(rc["messageDirection"], "IN");
        assert_eq!(e["isBase64Encoded"], false);
        assert!(e.get("body").is_none());

        let bare = parse(&connect_event(
            &api(),
            &conn(),
            meta(),
            &HeaderMap::new(),
            None,
        ));
        assert!(bare.get("queryStringParameters").is_none());
    }

    #[test]
    fn disconnect_event_shape() {
        let e = parse(&disconnect_event(
            &api(),
            &conn(),
            meta(),
            1001,
            "Going away",
        ));
        let rc = &e["requestContext"];
        assert_eq!(rc["routeKey"], "$disconnect");
        assert_eq!(rc["eventType"], "DISCONNECT");
        assert_eq!(rc["disconnectStatusCode"], 1001);
        assert_eq!(rc["disconnectReason"], "Going away");
        assert_eq!(rc["messageId"], Value::Null);
        assert!(e.get("body").is_none());
    }

    #[test]
    fn route_selection() {
        let s = RouteSelector::parse("$request.body.action").unwrap();
        let routes = ["sendMessage", "$default", "42"];
        let is_route = |k: &str| routes.contains(&k);
        assert_eq!(
            s.select(br#"{"action":"sendMessage","x":1}"#, is_route)
                .as_deref(),
            Some("sendMessage")
        );
        assert_eq!(
            s.select(br#"{"action":"unknown"}"#, is_route).as_deref(),
            Some("$default")
        );
        assert_eq!(
            s.select(br#"{"other":1}"#, is_route).as_deref(),
            Some("$default")
        );
        assert_eq!(s.select(b"not json", is_route).as_deref(), Some("$default"));
        assert_eq!(
            s.select(br#"{"action":{"a":1}}"#, is_route).as_deref(),
            Some("$default")
        );
        assert_eq!(
            s.select(br#"{"action":42}"#, is_route).as_deref(),
            Some("42")
        );
        assert_eq!(s.select(br#"[1]"#, is_route).as_deref(), Some("$default"));

        let no_default = |k: &str| k == "sendMessage";
        assert_eq!(s.select(br#"{"action":"nope"}"#, no_default), None);

        let nested = RouteSelector::parse("$request.body.meta.type").unwrap();
        assert_eq!(
            nested
                .select(br#"{"meta":{"type":"sendMessage"}}"#, is_route)
                .as_deref(),
            Some("sendMessage")
        );
    }

    #[test]
    fn invalid_selection_expressions() {
        for bad in [
            "action",
            "$request.body.",
            "$request.body.a..b",
            "$request.header.x",
        ] {
            assert!(RouteSelector::parse(bad).is_err(), "{bad}");
        }
    }
}
