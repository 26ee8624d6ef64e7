//! The gateway listener: HTTP requests in, invocations through the engine's
//! [`Dispatcher`] (a route's function, or its workflow), API Gateway
//! responses out.
//!
//! One handler takes every request (no framework routing: the route table is
//! ours and lives in the [`Snapshot`]), and runs the steps listed in the crate
//! docs with the building blocks of this crate. The request path reads the
//! current snapshot with one atomic load and never touches the database;
//! the gateway request id becomes the invocation's request id, so the
//! function's logs (START/END/REPORT, `context.aws_request_id`) and the
//! access log line share it.
//!
//! Paths under `/@connections/` are the WebSocket management API and upgrade
//! requests go to the WebSocket API ([`crate::ws_server`]); `/@url/<id>/…`
//! (or a `Host` of `<id>.lambda-url.…` / `<id>.localhost`) reaches a function URL.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use nimbus_core::InvocationId;
use nimbus_engine::{DispatchError, Dispatcher, EngineError, Outcome};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access_log::AccessLog;
use crate::apigw::{self, ApiInfo, ProxyRequest, function_url, gateway_error, v1, v2};
use crate::auth::{GatewayAuthError, check_api_key, check_function_key};
use crate::control::Gateway;
use crate::cors;
use crate::peers::{FORWARDED_HEADER, Peers};
use crate::routes::{DEFAULT_ROUTE_KEY, Lookup, PathParams};
use crate::snapshot::{Auth, EventFormat, Snapshot, Target};
use crate::ws_server::{self, Connections, ConnectionsAuth, WsLimits};

/// Body of a 413 answer.
pub const TOO_LARGE_BODY: &str = r#"{"message":"Request Entity Too Large"}"#;
/// Body of a 504 answer (a function that ran out of time).
pub const TIMEOUT_BODY: &str = r#"{"message":"Endpoint request timed out"}"#;
/// Body of a 503 answer while the server shuts down.
pub const UNAVAILABLE_BODY: &str = r#"{"message":"Service Unavailable"}"#;
/// Body of a 500 answer for a misconfigured route.
pub const INTERNAL_BODY: &str = r#"{"message":"Internal Server Error"}"#;

/// What the request handlers share.
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Runs each route's target.
    pub dispatcher: Arc<Dispatcher>,
    /// Identity of the HTTP and WebSocket APIs in events.
    pub api: ApiInfo,
    /// The region in ARNs (the connections endpoint's resource).
    pub region: String,
    pub ws: Connections,
    pub clock: nimbus_core::Clock,
}

impl Shared {
    /// Now, in milliseconds since the Unix epoch.
    pub fn epoch_ms(&self) -> u64 {
        self.clock.now_ms().max(0) as u64
    }
}

/// How the listener is bounded and who may use the connections endpoint.
#[derive(Clone)]
pub struct ServerOptions {
    pub websocket: WsLimits,
    /// Decides who may call `/@connections` (by default nobody).
    pub connections_auth: Arc<dyn ConnectionsAuth>,
    /// The other nodes' gateways (by default none).
    pub peers: Arc<Peers>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            websocket: WsLimits::default(),
            connections_auth: Arc::new(ws_server::DenyAll),
            peers: Peers::alone(),
        }
    }
}

/// The running gateway (cheap to clone).
#[derive(Clone)]
pub struct GatewayServer {
    shared: Arc<Shared>,
}

impl GatewayServer {
    /// A gateway serving `gateway`'s configuration; `domain` is the
    /// `host:port` functions see as `requestContext.domainName` (and use to
    /// reach the connections endpoint).
    pub fn new(gateway: &Gateway, domain: &str, options: ServerOptions) -> Self {
        let settings = gateway.settings();
        Self {
            shared: Arc::new(Shared {
                snapshot: gateway.snapshot(),
                dispatcher: gateway.dispatcher().clone(),
                api: ApiInfo::new(&settings.account_id, "nimbus", domain, DEFAULT_ROUTE_KEY),
                region: settings.region.clone(),
                ws: Connections::new(options.websocket, options.connections_auth, options.peers),
                clock: nimbus_core::Clock::system(),
            }),
        }
    }

    /// Serves until `stop`: then stops accepting and lets in-flight requests
    /// finish (WebSockets are closed by the [`nimbus_engine::lifecycle::Service`]).
    /// Connections are served by [`nimbus_runtime::listener`] (header and
    /// body timeouts, connection caps; the header timeout also covers a
    /// WebSocket upgrade request).
    pub async fn serve(
        &self,
        listener: TcpListener,
        limits: nimbus_runtime::listener::Limits,
        stats: Arc<nimbus_runtime::listener::ListenerStats>,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        use tower_service::Service;
        let app = Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        nimbus_runtime::listener::serve(listener, limits, stats, stop, move |mut req, peer| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move {
                match app.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        })
        .await
    }
}

/// The gateway's WebSockets: stopping closes each with 1001 (going away);
/// draining waits for their `$disconnect` invocations. The listener itself is
/// served by [`GatewayServer::serve`].
#[async_trait::async_trait]
impl nimbus_engine::lifecycle::Service for GatewayServer {
    fn name(&self) -> &'static str {
        "gateway WebSockets"
    }

    fn stop_accepting(&self) {
        self.shared.ws.close_all();
    }

    async fn drain(&self, _deadline: tokio::time::Instant) {
        self.shared.ws.closed().await;
    }

    fn status(&self) -> String {
        format!("{} WebSockets open", self.shared.ws.open())
    }
}

/// Body of a 400 answer.
pub const BAD_REQUEST_BODY: &str = r#"{"message":"Bad Request"}"#;

fn bad_request() -> axum::response::Response {
    let rid = nimbus_core::InvocationId::new().to_string();
    gateway_error(StatusCode::BAD_REQUEST, BAD_REQUEST_BODY, &rid).map(Body::from)
}

async fn handle(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> axum::response::Response {
    let start = Instant::now();
    let mut req = req;
    match crate::path::normalize(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => {}
        Ok(Cow::Owned(path)) => {
            let pq = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            match Uri::try_from(pq) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return bad_request(),
            }
        }
        Err(e) => {
            tracing::debug!(path = req.uri().path(), "refused: {e}");
            return bad_request();
        }
    }
    // Only a node forwards; what a client sends as the mark goes no further.
    let forwarded = req.headers_mut().remove(FORWARDED_HEADER).is_some();
    if let Some(id) = ws_server::connection_id(req.uri().path()) {
        return ws_server::manage(&s, id.into_owned(), req, forwarded).await;
    }
    if ws_server::is_upgrade(req.headers()) {
        return ws_server::upgrade(s.clone(), peer, req).await;
    }
    let request_id = nimbus_core::InvocationId::new().to_string();
    let (parts, body) = req.into_parts();
    let source_ip = peer.ip().to_string();
    let snap = s.snapshot.load_full();
    let (mut resp, target) = serve_http(&s, &snap, &parts, body, &source_ip, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    tracing::info!(
        target: "nimbus::access",
        "{}",
        AccessLog {
            request_id: &request_id,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            route_key: target.as_ref().map(|t| t.route_key.as_str()),
            status: resp.status().as_u16(),
            latency_us: start.elapsed().as_micros() as u64,
            function: target.as_ref().map(|t| t.label.as_str()),
            source_ip: &source_ip,
        }
    );
    resp
}

/// A function URL addressed by path (`/@url/<id>/rest`) or by host
/// (`<id>.lambda-url.<region>.on.aws`, `<id>.localhost`): its target and the
/// URI the function sees.
fn url_target(snap: &Snapshot, parts: &Parts) -> Option<(Arc<Target>, Option<Uri>)> {
    if snap.urls.is_empty() {
        return None;
    }
    if let Some(rest) = parts.uri.path().strip_prefix("/@url/") {
        let (id, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = snap.urls.get(id)?.clone();
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        return Some((target, Uri::try_from(pq).ok()));
    }
    let host = parts.headers.get(HOST)?.to_str().ok()?;
    let host = host.split(':').next().unwrap_or(host);
    if !(host.contains(".lambda-url.") || host.ends_with(".localhost")) {
        return None;
    }
    let id = host.split('.').next()?;
    Some((snap.urls.get(id)?.clone(), None))
}

async fn serve_http(
    s: &Shared,
    snap: &Snapshot,
    parts: &Parts,
    body: Body,
    source_ip: &str,
    request_id: &str,
) -> (Response<Body>, Option<Arc<Target>>) {
    if let Some((target, uri)) = url_target(snap, parts) {
        if let (true, Some(c)) = (
            cors::is_preflight(&parts.method, &parts.headers),
            &target.cors,
        ) {
            return (
                c.preflight(&parts.headers).response.map(Body::from),
                Some(target),
            );
        }
        let params = PathParams::default();
        let api = target.url_api.as_ref().unwrap_or(&s.api);
        let call = Call {
            parts,
            uri: uri.as_ref().unwrap_or(&parts.uri),
            route_key: DEFAULT_ROUTE_KEY,
            resource: DEFAULT_ROUTE_KEY,
            params: &params,
            api,
            source_ip,
            request_id,
            clock: &s.clock,
        };
        let resp = if target.streaming {
            match prepare(&target, &call, body).await {
                Ok(event) => with_cors(
                    &target,
                    parts,
                    crate::streaming::run(s, &target, event, request_id).await,
                ),
                Err(resp) => resp.map(Body::from),
            }
        } else {
            run(s, &target, call, body).await.map(Body::from)
        };
        return (resp, Some(target));
    }
    if cors::is_preflight(&parts.method, &parts.headers)
        && let Some(m) = parts
            .headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
        && let Lookup::Found(found) = snap.http.lookup(&m, parts.uri.path())
        && let Some(c) = &found.target.cors
    {
        return (
            c.preflight(&parts.headers).response.map(Body::from),
            Some(found.target.clone()),
        );
    }
    match snap.http.lookup(&parts.method, parts.uri.path()) {
        Lookup::Found(found) => {
            let call = Call {
                parts,
                uri: &parts.uri,
                route_key: found.route_key,
                resource: found.resource,
                params: &found.params,
                api: &s.api,
                source_ip,
                request_id,
                clock: &s.clock,
            };
            let resp = run(s, found.target, call, body).await;
            (resp.map(Body::from), Some(found.target.clone()))
        }
        Lookup::MethodNotAllowed | Lookup::NotFound => {
            (apigw::not_found_response(request_id).map(Body::from), None)
        }
    }
}

/// The request as the event builders need it.
struct Call<'a> {
    parts: &'a Parts,
    uri: &'a Uri,
    route_key: &'a str,
    resource: &'a str,
    params: &'a PathParams<'a, 'a>,
    api: &'a ApiInfo,
    source_ip: &'a str,
    request_id: &'a str,
    clock: &'a nimbus_core::Clock,
}

/// Checks the route's auth; `Ok(Some(principal))` for an accepted JWT.
// The error is the response to send, returned at most once per request;
// boxing it would only add an allocation.
#[allow(
    clippy::result_large_err,
    reason = "the error is the response to send, at most once per request; boxing only allocates"
)]
pub(crate) fn authenticate(
    auth: &Auth,
    uri: &Uri,
    headers: &http::HeaderMap,
    request_id: &str,
) -> Result<Option<crate::JwtPrincipal>, Response<Bytes>> {
    let res = match auth {
        Auth::None => return Ok(None),
        Auth::FunctionKey(keys) => check_function_key(uri, headers, keys).map(|_| None),
        Auth::ApiKey(keys) => check_api_key(headers, keys).map(|_| None),
        Auth::Jwt(v) => v.verify_request(headers).map(Some),
        Auth::Broken(why) => {
            tracing::error!(request_id, "route misconfigured: {why}");
            return Err(gateway_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL_BODY,
                request_id,
            ));
        }
    };
    res.map_err(|e: GatewayAuthError| {
        tracing::debug!(request_id, "refused: {e}");
        e.response(request_id)
    })
}

fn too_large(request_id: &str) -> Response<Bytes> {
    gateway_error(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE_BODY, request_id)
}

/// The steps before the invocation: rate limit, auth, body, and the event in
/// the target's format; `Err` is the answer when one of them refuses.
async fn prepare(target: &Target, call: &Call<'_>, body: Body) -> Result<Vec<u8>, Response<Bytes>> {
    let rid = call.request_id;
    let parts = call.parts;
    if let Some(l) = &target.limiter
        && let Err(t) = l.try_acquire()
    {
        return Err(t.response(rid));
    }
    let jwt = authenticate(&target.auth, call.uri, &parts.headers, rid)?;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > target.body_limit as u64) {
        return Err(too_large(rid));
    }
    let bytes = match Limited::new(body, target.body_limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(rid)),
        Err(e) => {
            tracing::debug!(request_id = rid, "request body not received: {e}");
            return Err(gateway_error(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST_BODY,
                rid,
            ));
        }
    };
    let proxy = ProxyRequest {
        method: &parts.method,
        uri: call.uri,
        version: parts.version,
        headers: &parts.headers,
        body: &bytes,
        source_ip: call.source_ip,
        route_key: call.route_key,
        resource: call.resource,
        path_params: call.params,
        request_id: rid,
        time_epoch_ms: call.clock.now_ms().max(0) as u64,
        api: call.api,
        jwt: jwt.as_ref(),
    };
    Ok(match target.format {
        EventFormat::Rest => v1::build_event(&proxy),
        EventFormat::FunctionUrl => function_url::build_event(&proxy),
        EventFormat::Http | EventFormat::WebSocket => v2::build_event(&proxy),
    })
}

async fn run(s: &Shared, target: &Target, call: Call<'_>, body: Body) -> Response<Bytes> {
    let rid = call.request_id;
    let event = match prepare(target, &call, body).await {
        Ok(event) => event,
        Err(resp) => return resp,
    };
    let resp = match invoke(s, target, event, rid).await {
        Ok(payload) => map_response(target, &payload, rid),
        Err(resp) => resp,
    };
    with_cors(target, call.parts, resp)
}

/// The function's payload as the HTTP response of the target's format.
pub(crate) fn map_response(target: &Target, payload: &[u8], rid: &str) -> Response<Bytes> {
    let parsed = match target.format {
        EventFormat::Rest => v1::parse_response(payload),
        _ => v2::parse_response(payload),
    };
    parsed.unwrap_or_else(|e| {
        tracing::warn!(request_id = rid, function = %target.label, "unusable function response: {e}");
        match target.format {
            EventFormat::Rest => v1::malformed_response(rid),
            _ => v2::malformed_response(rid),
        }
    })
}

fn with_cors<B>(target: &Target, parts: &Parts, mut resp: Response<B>) -> Response<B> {
    if let Some(c) = &target.cors {
        c.apply(&parts.headers, resp.headers_mut());
    }
    resp
}

/// Runs `target` with `event` under request id `rid`: the function's (or
/// the workflow's) output, or the gateway's answer when there is none to map
/// (502 for a function error, 504 for a timeout, 429 when throttled, …). An
/// EXPRESS workflow's output is mapped like a function's; a STANDARD one
/// answers with the execution's ARN and start date (API Gateway's
/// StartExecution integration).
#[allow(
    clippy::result_large_err,
    reason = "the error is the response to send, at most once per request; boxing only allocates"
)]
pub(crate) async fn invoke(
    s: &Shared,
    target: &Target,
    event: Vec<u8>,
    rid: &str,
) -> Result<Bytes, Response<Bytes>> {
    match s.dispatcher.invoke(call(target, event, rid)).await {
        Ok(reply) => answer(Ok(reply.into_outcome()), target, rid),
        Err(DispatchError::Function(e)) => answer(Err(e), target, rid),
        Err(DispatchError::Workflow(e)) => {
            tracing::warn!(request_id = rid, target = %target.label, "workflow failed: {e}");
            Err(gateway_error(
                StatusCode::BAD_GATEWAY,
                v1::MALFORMED_BODY,
                rid,
            ))
        }
    }
}

/// The dispatcher's call for `target`, under the gateway's request id.
pub(crate) fn call(target: &Target, event: Vec<u8>, rid: &str) -> nimbus_engine::Call {
    let mut call = nimbus_engine::Call::new(target.runs.clone(), event);
    call.request_id = Some(InvocationId::from(rid.to_owned()));
    call
}

/// The target's output, or the gateway's answer when there is none to map.
#[allow(
    clippy::result_large_err,
    reason = "the error is the response to send, at most once per request; boxing only allocates"
)]
pub(crate) fn answer(
    result: Result<Outcome, EngineError>,
    target: &Target,
    rid: &str,
) -> Result<Bytes, Response<Bytes>> {
    match result {
        Ok(outcome) => match outcome {
            Outcome::Success { body, .. } => Ok(body),
            Outcome::Error { error_type, .. }
                if error_type == nimbus_core::platform_error::SANDBOX_TIMEDOUT =>
            {
                Err(gateway_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    TIMEOUT_BODY,
                    rid,
                ))
            }
            Outcome::Error { error_type, .. } => {
                tracing::info!(request_id = rid, function = %target.label, "function error {error_type}");
                Err(gateway_error(
                    StatusCode::BAD_GATEWAY,
                    v1::MALFORMED_BODY,
                    rid,
                ))
            }
        },
        Err(EngineError::TooManyRequests { .. }) => Err(gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            crate::ratelimit::TOO_MANY_REQUESTS_BODY,
            rid,
        )),
        Err(EngineError::PayloadTooLarge { .. }) => Err(too_large(rid)),
        Err(EngineError::ShuttingDown) => Err(gateway_error(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE_BODY,
            rid,
        )),
        Err(e) => {
            tracing::warn!(request_id = rid, function = %target.label, "invocation failed: {e}");
            Err(gateway_error(
                StatusCode::BAD_GATEWAY,
                v1::MALFORMED_BODY,
                rid,
            ))
        }
    }
}
