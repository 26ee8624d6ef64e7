//! WebSocket APIs: connections, route selection, and the connections endpoint.
//!
//! An upgrade request is authenticated with the `$connect` route's settings
//! and runs its function first: the connection is only accepted when that
//! succeeds with a 2xx (or has no `$connect` route), as on API Gateway. Each
//! message is routed with the route-selection expression and invokes its
//! function. Functions answer clients through `POST /@connections/{id}`
//! (boto3's `apigatewaymanagementapi`; any one-segment stage prefix is
//! accepted, as the SDK puts the stage in the endpoint), `GET` for the
//! connection's info and `DELETE` to close it; a message route's function
//! may also answer by returning a `body` (a route response, [`crate::ws_reply`]).
//! Closing runs `$disconnect`.
//!
//! Connection ids are 96 random bits and the tag of the node that holds the
//! connection (any node answers for it, [`crate::peers`]), but they are not
//! secrets: they reach the client itself and often application payloads. So
//! the connections endpoint, on the same public listener, acts only for a
//! caller that AWS would let call `execute-api:ManageConnections`: a
//! SigV4-signed request whose principal holds that grant, decided by a
//! [`ConnectionsAuth`] the binary provides (the key store and grants live in
//! crates above this one).
//! Anything else gets API Gateway's 403 `ForbiddenException`.
//!
//! Bounds, each API Gateway's own: frames of at most 32 KB and messages of at
//! most 128 KB (the frame bound is what stops a client from making the server
//! buffer a 16 MiB frame before the message bound applies); connections per
//! API and per client address; an idle timeout (10 minutes) and a maximum
//! lifetime (2 hours). A connection's messages are handled one at a time, in
//! order, by one task (API Gateway keeps per-connection order too); while a
//! few wait in a short queue the session stops reading the socket, so a
//! client sending at wire speed is slowed by TCP, not buffered. A route's
//! `rate_limit` applies to `$connect` (429 before the function runs) and to
//! the messages routed to it (the client gets a "Too Many Requests" reply).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apigw::gateway_error;
use crate::peers::Peers;
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
/// Largest frame a client may send (API Gateway's 32 KB); larger messages
/// come in fragments.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Messages of one connection waiting behind the one being handled; while
/// the queue is full the socket is not read.
pub const MESSAGE_QUEUE: usize = 8;
/// Close code sent when the server shuts down, and on the idle and lifetime
/// timeouts.
pub const GOING_AWAY: u16 = 1001;
/// Close code for a frame or message over its limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Bounds on a gateway's WebSocket connections (`nimbus up` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Open connections at once, all clients together.
    pub max_connections: usize,
    /// Open connections at once from one client address.
    pub max_connections_per_ip: usize,
    /// A connection with no frame either way for this long is closed
    /// (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// A connection open this long is closed (API Gateway: 2 hours).
    pub max_lifetime: Duration,
}

/// Default of [`WsLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`WsLimits::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 100;
/// Default of [`WsLimits::idle_timeout`]: API Gateway's 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default of [`WsLimits::max_lifetime`]: API Gateway's 2 hours.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

/// A request to the connections endpoint, as the authorizer needs it.
#[derive(Debug, Clone, Copy)]
pub struct ManageRequest<'a> {
    pub method: &'a Method,
    /// Path and query exactly as received (they take part in a signature).
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// `arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/@connections/<id>`:
    /// what `execute-api:ManageConnections` is checked against.
    pub resource: &'a str,
}

/// Why the connections endpoint refused a caller (answered 403
/// `ForbiddenException` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManageDenied(pub String);

/// Decides who may use the connections endpoint.
pub trait ConnectionsAuth: Send + Sync {
    /// `Ok` when the request is signed by a principal allowed
    /// `execute-api:ManageConnections` on `req.resource`.
    fn authorize<'a>(
        &'a self,
        req: ManageRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ManageDenied>> + Send + 'a>>;
}

/// Refuses every caller: the endpoint stays closed unless the binary says
/// who may use it.
pub struct DenyAll;

impl ConnectionsAuth for DenyAll {
    fn authorize<'a>(
        &'a self,
        _: ManageRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ManageDenied>> + Send + 'a>> {
        Box::pin(async { Err(ManageDenied(MISSING_TOKEN.into())) })
    }
}

/// API Gateway's message for a request without credentials.
pub const MISSING_TOKEN: &str = "Missing Authentication Token";

enum Outbound {
    Message(Message),
    Close(u16, &'static str),
}

struct Conn {
    info: Connection,
    tx: mpsc::Sender<Outbound>,
    last_active_ms: AtomicU64,
    /// Cancelled when the session ends: queued messages are dropped.
    closed: CancellationToken,
}

/// A client message waiting for its turn.
struct Inbound {
    data: Bytes,
    text: bool,
}

/// The open connections of this gateway.
pub(crate) struct Connections {
    map: RwLock<HashMap<String, Arc<Conn>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    limits: WsLimits,
    /// Admitted connections (upgrades in progress included): total and per
    /// client address.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    pub(crate) auth: Arc<dyn ConnectionsAuth>,
    /// Mints this node's connection ids and reaches the other nodes' ones.
    peers: Arc<Peers>,
}

/// A place among the admitted connections, given back when dropped.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .ws
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Why an upgrade was refused before `$connect`.
enum Full {
    Total,
    PerClient,
}

impl Connections {
    pub(crate) fn new(limits: WsLimits, auth: Arc<dyn ConnectionsAuth>, peers: Arc<Peers>) -> Self {
        Self {
            map: RwLock::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            limits,
            open: Mutex::default(),
            auth,
            peers,
        }
    }

    fn admit(s: &Arc<Shared>, ip: IpAddr) -> Result<Slot, Full> {
        let limits = s.ws.limits;
        let mut open = s.ws.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= limits.max_connections {
            return Err(Full::Total);
        }
        let mine = open.1.entry(ip).or_insert(0);
        if *mine >= limits.max_connections_per_ip {
            return Err(Full::PerClient);
        }
        *mine += 1;
        open.0 += 1;
        Ok(Slot {
            shared: s.clone(),
            ip,
        })
    }

    fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Closes every connection with 1001 and accepts no new ones.
    pub(crate) fn close_all(&self) {
        self.stop.cancel();
        self.tasks.close();
    }

    /// Waits for the sessions (and `$disconnect` invocations) to end.
    pub(crate) async fn closed(&self) {
        self.tasks.wait().await;
    }

    /// How many connections are open.
    pub(crate) fn open(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
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

/// The stage a connections-endpoint path names (`/{stage}/@connections/…`),
/// `$default` when it names none.
fn stage_of(path: &str) -> Cow<'_, str> {
    let prefix = path.split("/@connections/").next().unwrap_or("");
    match prefix.trim_start_matches('/') {
        "" => Cow::Borrowed(DEFAULT_ROUTE_KEY),
        stage => percent_decode_str(stage).decode_utf8_lossy(),
    }
}

/// `POST` (push), `GET` (info) or `DELETE` (close) on `/@connections/{id}`,
/// for a caller the [`ConnectionsAuth`] accepts; a connection of another
/// node is answered by that node, unless the request was `forwarded` by one
/// already.
pub(crate) async fn manage(s: &Shared, id: String, req: Request, forwarded: bool) -> Response {
    let (parts, body) = req.into_parts();
    // The signature covers the body, so it is read (within the message
    // limit) before the caller is known.
    let body = match http_body_util::Limited::new(body, MAX_MESSAGE_BYTES)
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
    let resource = format!(
        "arn:aws:execute-api:{}:{}:{}/{}/{}/@connections/{id}",
        s.region,
        s.api.account_id,
        s.api.api_id,
        stage_of(parts.uri.path()),
        parts.method,
    );
    let asked = ManageRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        resource: &resource,
    };
    if let Err(denied) = s.ws.auth.authorize(asked).await {
        tracing::info!(target: "nimbus::access", "connections endpoint refused: {denied}");
        return json_error(StatusCode::FORBIDDEN, "ForbiddenException", &denied.0);
    }
    let Some(conn) = s.ws.get(&id) else {
        if !forwarded && let Some(answer) = s.ws.peers.forward(&id, &parts, body).await {
            return answer;
        }
        return json_error(StatusCode::GONE, "GoneException", "Gone");
    };
    match parts.method {
        Method::POST => {
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

/// A WebSocket upgrade request: admit, authenticate, run `$connect`, upgrade.
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
    let slot = match Connections::admit(&s, peer.ip()) {
        Ok(slot) => slot,
        Err(full) => {
            let body = match full {
                Full::Total => TOO_MANY_CONNECTIONS_BODY,
                Full::PerClient => TOO_MANY_CLIENT_CONNECTIONS_BODY,
            };
            tracing::info!(target: "nimbus::access", "request_id={request_id} websocket=refused source_ip={} {body}", peer.ip());
            return gateway_error(StatusCode::TOO_MANY_REQUESTS, body, &request_id).map(Body::from);
        }
    };
    let (mut parts, _body) = req.into_parts();
    let conn = Connection {
        connection_id: s.ws.peers.connection_id(),
        connected_at_ms: s.epoch_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    if let Some(target) = snap.ws.get(CONNECT_ROUTE) {
        if let Some(l) = &target.limiter
            && let Err(t) = l.try_acquire()
        {
            return t.response(&request_id).map(Body::from);
        }
        if let Err(resp) = authenticate(&target.auth, &parts.uri, &parts.headers, &request_id) {
            return resp.map(Body::from);
        }
        let meta = EventMeta {
            request_id: &request_id,
            time_epoch_ms: s.epoch_ms(),
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
    ws.max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| tasks.track_future(session(s, conn, slot, socket)))
}

/// Body of the 429 answer to an upgrade when the API has its maximum of
/// connections open.
pub const TOO_MANY_CONNECTIONS_BODY: &str =
    r#"{"message":"Too Many Requests: the WebSocket API has its maximum of connections open"}"#;
/// Body of the 429 answer to an upgrade from a client address that has its
/// maximum of connections open.
pub const TOO_MANY_CLIENT_CONNECTIONS_BODY: &str =
    r#"{"message":"Too Many Requests: this client has its maximum of WebSocket connections open"}"#;

/// Whether a read error is a frame or message over its limit.
fn too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if let Some(tungstenite::Error::Capacity(_)) = c.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn session(s: Arc<Shared>, conn: Connection, slot: Slot, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel(64);
    let id = conn.connection_id.clone();
    let handle = Arc::new(Conn {
        info: conn,
        tx,
        last_active_ms: AtomicU64::new(s.epoch_ms()),
        closed: CancellationToken::new(),
    });
    s.ws.map
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), handle.clone());
    let (queue, inbound) = mpsc::channel(MESSAGE_QUEUE);
    s.ws.tasks
        .spawn(handle_messages(s.clone(), handle.clone(), inbound));
    let limits = s.ws.limits;
    let started = Instant::now();
    let end_of_life = started + limits.max_lifetime;
    let mut last_frame = started;
    // A place in the queue, taken before the socket is read.
    let mut place: Option<mpsc::OwnedPermit<Inbound>> = None;
    let stop = s.ws.stop.clone();
    let (code, reason): (u16, Cow<'static, str>) = loop {
        let idle_at = last_frame + limits.idle_timeout;
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: GOING_AWAY, reason: "Going Away".into() }))).await;
                break (GOING_AWAY, "Going Away".into());
            }
            _ = tokio::time::sleep_until(idle_at.min(end_of_life)) => {
                let why = if idle_at <= end_of_life { "Idle timeout" } else { "Connection lifetime exceeded" };
                let _ = socket.send(Message::Close(Some(CloseFrame { code: GOING_AWAY, reason: why.into() }))).await;
                break (GOING_AWAY, why.into());
            }
            p = queue.clone().reserve_owned(), if place.is_none() => match p {
                Ok(p) => place = Some(p),
                Err(_) => break (1011, "".into()),
            },
            out = rx.recv() => match out {
                Some(Outbound::Message(m)) => {
                    last_frame = Instant::now();
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
            msg = socket.recv(), if place.is_some() => {
                last_frame = Instant::now();
                handle.last_active_ms.store(s.epoch_ms(), Ordering::Relaxed);
                let (data, text) = match msg {
                    Some(Ok(Message::Text(t))) => (Bytes::from(t), true),
                    Some(Ok(Message::Binary(b))) => (b, false),
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(f) => (f.code, f.reason.as_str().to_owned().into()),
                            None => (1005, "".into()),
                        };
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) if too_big(&e) => {
                        let _ = socket.send(Message::Close(Some(CloseFrame { code: MESSAGE_TOO_BIG, reason: "Message Too Big".into() }))).await;
                        break (MESSAGE_TOO_BIG, "Message Too Big".into());
                    }
                    Some(Err(_)) | None => break (1006, "".into()),
                };
                if let Some(p) = place.take() {
                    p.send(Inbound { data, text });
                }
            }
        }
    };
    handle.closed.cancel();
    drop(place);
    s.ws.map
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    let snap = s.snapshot.load_full();
    if let Some(target) = snap.ws.get(DISCONNECT_ROUTE) {
        let rid = nimbus_core::InvocationId::new().to_string();
        let meta = EventMeta {
            request_id: &rid,
            time_epoch_ms: s.epoch_ms(),
        };
        let event = disconnect_event(&s.api, &handle.info, meta, code, &reason);
        let _ = invoke(&s, target, event, &rid).await;
    }
    drop(slot);
    tracing::info!(target: "nimbus::access", "websocket=disconnect connection_id={id} code={code}");
}

/// Handles one connection's messages one after the other, in the order the
/// client sent them, until the session ends.
async fn handle_messages(s: Arc<Shared>, conn: Arc<Conn>, mut inbound: mpsc::Receiver<Inbound>) {
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.closed.cancelled() => return,
            m = inbound.recv() => m,
        };
        let Some(m) = next else { return };
        handle_message(&s, &conn, m.data, m.text).await;
    }
}

/// Routes one client message and invokes its function.
async fn handle_message(s: &Arc<Shared>, conn: &Arc<Conn>, data: Bytes, text: bool) {
    let snap = s.snapshot.load_full();
    let rid = nimbus_core::InvocationId::new().to_string();
    let route = snap
        .ws_selector
        .as_ref()
        .and_then(|sel| sel.select(&data, |k| is_message_route(k, &snap.ws)));
    let target = route.as_deref().and_then(|r| snap.ws.get(r));
    let Some(target) = target else {
        reply_error(conn, "Forbidden", &rid).await;
        return;
    };
    if let Some(l) = &target.limiter
        && l.try_acquire().is_err()
    {
        reply_error(conn, "Too Many Requests", &rid).await;
        return;
    }
    let meta = EventMeta {
        request_id: &rid,
        time_epoch_ms: s.epoch_ms(),
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
    match invoke(s, target, event, &rid).await {
        Ok(result) => send_route_reply(conn, &result, &target.label, &rid).await,
        Err(_) => reply_error(conn, "Internal server error", &rid).await,
    }
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

    #[test]
    fn stages_of_connection_paths() {
        assert_eq!(stage_of("/@connections/abc"), "$default");
        assert_eq!(stage_of("/%24default/@connections/abc"), "$default");
        assert_eq!(stage_of("/prod/@connections/abc"), "prod");
    }
}
