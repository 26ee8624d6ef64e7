//! WebSocket APIs: connections, route selection, and the connections endpoint.
//!
//! An upgrade request is authenticated with the `$connect` route's settings
//! and runs its function first: the connection is only accepted when that
//! succeeds with a 2xx (or has no `$connect` route), as on API Gateway. Each
//! message is routed with the route-selection expression and invokes its
//! function in a task of its own, so a slow handler never stalls the
//! connection. Functions answer clients through `POST /@connections/{id}`
//! (boto3's `apigatewaymanagementapi`; any one-segment stage prefix is
//! accepted, as the SDK puts the stage in the endpoint), `GET` for the
//! connection's info and `DELETE` to close it; a message route's function
//! may also answer by returning a `body` (a route response, [`crate::ws_reply`]).
//! Closing runs `$disconnect`.
//!
//! Connection ids are 96 random bits: knowing one is what lets a caller push
//! to that client (functions learn them from `requestContext.connectionId`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE, USER_AGENT};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apigw::gateway_error;
use crate::routes::DEFAULT_ROUTE_KEY;
use crate::server::{Shared, authenticate, invoke};
use crate::snapshot::Target;
use crate::websocket::{
    CONNECT_ROUTE, Connection, DISCONNECT_ROUTE, EventMeta, Frame, connect_event, disconnect_event,
    message_event,
};
use crate::ws_reply::{Reply, route_reply};

/// Largest message a client may send or the connections endpoint may push
/// (API Gateway's 128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Close code sent when the server shuts down.
pub const GOING_AWAY: u16 = 1001;

enum Outbound {
    Message(Message),
    Close(u16, &'static str),
}

struct Conn {
    info: Connection,
    tx: mpsc::Sender<Outbound>,
    last_active_ms: AtomicU64,
}

/// The open connections of this gateway.
#[derive(Default)]
pub(crate) struct Connections {
    map: RwLock<HashMap<String, Arc<Conn>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Connections {
    fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Closes every connection with 1001 and waits up to `wait` for their
    /// sessions (and `$disconnect` invocations) to end. Returns how many
    /// connections were open.
    pub async fn close_all(&self, wait: Duration) -> usize {
        let open = self.map.read().unwrap_or_else(|e| e.into_inner()).len();
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(wait, self.tasks.wait()).await;
        open
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_id() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS has randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// The connection id of a connections-endpoint path
/// (`/@connections/{id}` or `/{stage}/@connections/{id}`), percent-decoded.
pub(crate) fn connection_id(path: &str) -> Option<Cow<'_, str>> {
    let i = path.find("/@connections/")?;
    let prefix = &path[..i];
    if prefix.matches('/').count() > 1 {
        return None;
    }
    let id = &path[i + "/@connections/".len()..];
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(percent_decode_str(id).decode_utf8_lossy())
}

/// Whether a request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

fn json_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (
                http::HeaderName::from_static("x-amzn-errortype"),
                error_type,
            ),
        ],
        body,
    )
        .into_response()
}

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `POST` (push), `GET` (info) or `DELETE` (close) on `/@connections/{id}`.
pub(crate) async fn manage(s: &Shared, id: String, req: Request) -> Response {
    let Some(conn) = s.ws.get(&id) else {
        return json_error(StatusCode::GONE, "GoneException", "Gone");
    };
    match *req.method() {
        Method::POST => {
            let body = match http_body_util::Limited::new(req.into_body(), MAX_MESSAGE_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLargeException",
                        "Message too long",
                    );
                }
            };
            let msg = match std::str::from_utf8(&body) {
                Ok(_) => Message::Text(Utf8Bytes::try_from(body).expect("checked to be UTF-8")),
                Err(_) => Message::Binary(body),
            };
            if conn.tx.send(Outbound::Message(msg)).await.is_err() {
                return json_error(StatusCode::GONE, "GoneException", "Gone");
            }
            StatusCode::OK.into_response()
        }
        Method::GET => {
            let info = &conn.info;
            // The wire names of GetConnection (SDKs show them capitalised).
            let mut identity = serde_json::json!({ "sourceIp": info.source_ip });
            if let Some(ua) = &info.user_agent {
                identity["userAgent"] = ua.clone().into();
            }
            let body = serde_json::json!({
                "connectedAt": iso(info.connected_at_ms),
                "identity": identity,
                "lastActiveAt": iso(conn.last_active_ms.load(Ordering::Relaxed)),
            });
            axum::Json(body).into_response()
        }
        Method::DELETE => {
            let _ = conn.tx.send(Outbound::Close(1000, "")).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequestException",
            "use POST, GET or DELETE",
        ),
    }
}

/// A WebSocket upgrade request: authenticate, run `$connect`, upgrade.
pub(crate) async fn upgrade(s: Arc<Shared>, peer: SocketAddr, req: Request) -> Response {
    let request_id = nimbus_core::InvocationId::new().to_string();
    let snap = s.snapshot.load_full();
    if snap.ws.is_empty() {
        return gateway_error(
            StatusCode::NOT_FOUND,
            crate::routes::NOT_FOUND_BODY,
            &request_id,
        )
        .map(Body::from);
    }
    let (mut parts, _body) = req.into_parts();
    let conn = Connection {
        connection_id: random_id(),
        connected_at_ms: epoch_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    if let Some(target) = snap.ws.get(CONNECT_ROUTE) {
        if let Err(resp) = authenticate(&target.auth, &parts.uri, &parts.headers, &request_id) {
            return resp.map(Body::from);
        }
        let meta = EventMeta {
            request_id: &request_id,
            time_epoch_ms: epoch_ms(),
        };
        let event = connect_event(&s.api, &conn, meta, &parts.headers, parts.uri.query());
        match invoke(&s, target, event, &request_id).await {
            Ok(out) => {
                let status = serde_json::from_slice::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|v| v.get("statusCode").and_then(serde_json::Value::as_u64))
                    .unwrap_or(200);
                if !(200..300).contains(&status) {
                    let status =
                        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
                    return gateway_error(status, crate::auth::FORBIDDEN_BODY, &request_id)
                        .map(Body::from);
                }
            }
            Err(resp) => return resp.map(Body::from),
        }
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    tracing::info!(target: "nimbus::access", "request_id={request_id} websocket=connect connection_id={} source_ip={}", conn.connection_id, conn.source_ip);
    let tasks = s.ws.tasks.clone();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| tasks.track_future(session(s, conn, socket)))
}

async fn session(s: Arc<Shared>, conn: Connection, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel(64);
    let id = conn.connection_id.clone();
    let handle = Arc::new(Conn {
        info: conn,
        tx,
        last_active_ms: AtomicU64::new(epoch_ms()),
    });
    s.ws.map
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), handle.clone());
    let stop = s.ws.stop.clone();
    let (code, reason): (u16, Cow<'static, str>) = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: GOING_AWAY, reason: "Going Away".into() }))).await;
                break (GOING_AWAY, "Going Away".into());
            }
            out = rx.recv() => match out {
                Some(Outbound::Message(m)) => {
                    if socket.send(m).await.is_err() {
                        break (1006, "".into());
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break (code, reason.into());
                }
                None => break (1006, "".into()),
            },
            msg = socket.recv() => {
                handle.last_active_ms.store(epoch_ms(), Ordering::Relaxed);
                match msg {
                    Some(Ok(Message::Text(t))) => dispatch(&s, &handle, Bytes::from(t), true),
                    Some(Ok(Message::Binary(b))) => dispatch(&s, &handle, b, false),
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(f) => (f.code, f.reason.as_str().to_owned().into()),
                            None => (1005, "".into()),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break (1006, "".into()),
                }
            }
        }
    };
    s.ws.map
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    let snap = s.snapshot.load_full();
    if let Some(target) = snap.ws.get(DISCONNECT_ROUTE) {
        let rid = nimbus_core::InvocationId::new().to_string();
        let meta = EventMeta {
            request_id: &rid,
            time_epoch_ms: epoch_ms(),
        };
        let event = disconnect_event(&s.api, &handle.info, meta, code, &reason);
        let _ = invoke(&s, target, event, &rid).await;
    }
    tracing::info!(target: "nimbus::access", "websocket=disconnect connection_id={id} code={code}");
}

/// Routes one client message and invokes its function in a task of its own.
fn dispatch(s: &Arc<Shared>, conn: &Arc<Conn>, data: Bytes, text: bool) {
    let s = s.clone();
    let conn = conn.clone();
    s.ws.tasks.clone().spawn(async move {
        let snap = s.snapshot.load_full();
        let rid = nimbus_core::InvocationId::new().to_string();
        let route = snap
            .ws_selector
            .as_ref()
            .and_then(|sel| sel.select(&data, |k| is_message_route(k, &snap.ws)));
        let target = route.as_deref().and_then(|r| snap.ws.get(r));
        let Some(target) = target else {
            reply_error(&conn, "Forbidden", &rid).await;
            return;
        };
        let meta = EventMeta {
            request_id: &rid,
            time_epoch_ms: epoch_ms(),
        };
        let frame = match std::str::from_utf8(&data) {
            Ok(t) if text => Frame::Text(t),
            _ => Frame::Binary(&data),
        };
        let message_id = random_id();
        let event = message_event(
            &s.api,
            &conn.info,
            meta,
            &target.route_key,
            &message_id,
            frame,
        );
        match invoke(&s, target, event, &rid).await {
            Ok(result) => send_route_reply(&conn, &result, &target.label, &rid).await,
            Err(_) => reply_error(&conn, "Internal server error", &rid).await,
        }
    });
}

/// Sends the function's route response, if its result has one.
async fn send_route_reply(conn: &Conn, result: &[u8], function: &str, request_id: &str) {
    let message = match route_reply(result) {
        Ok(None) => return,
        Ok(Some(Reply::Text(t))) if t.len() <= MAX_MESSAGE_BYTES => Message::Text(t.into()),
        Ok(Some(Reply::Binary(b))) if b.len() <= MAX_MESSAGE_BYTES => {
            Message::Binary(Bytes::from(b))
        }
        Ok(Some(_)) => {
            tracing::warn!(
                request_id,
                function,
                "route response over {MAX_MESSAGE_BYTES} bytes"
            );
            return reply_error(conn, "Internal server error", request_id).await;
        }
        Err(e) => {
            tracing::warn!(request_id, function, "unusable route response: {e}");
            return reply_error(conn, "Internal server error", request_id).await;
        }
    };
    let _ = conn.tx.send(Outbound::Message(message)).await;
}

fn is_message_route(key: &str, routes: &HashMap<String, Arc<Target>>) -> bool {
    key != CONNECT_ROUTE && key != DISCONNECT_ROUTE && routes.contains_key(key)
        || key == DEFAULT_ROUTE_KEY && routes.contains_key(key)
}

/// What API Gateway sends a client whose message could not be handled.
async fn reply_error(conn: &Conn, message: &str, request_id: &str) {
    let body = serde_json::json!({
        "message": message,
        "connectionId": conn.info.connection_id,
        "requestId": request_id,
    })
    .to_string();
    let _ = conn
        .tx
        .send(Outbound::Message(Message::Text(body.into())))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_paths() {
        assert_eq!(connection_id("/@connections/abc").as_deref(), Some("abc"));
        assert_eq!(
            connection_id("/prod/@connections/a%3Db").as_deref(),
            Some("a=b")
        );
        assert_eq!(connection_id("/a/b/@connections/x"), None);
        assert_eq!(connection_id("/@connections/"), None);
        assert_eq!(connection_id("/users/1"), None);
    }
}
