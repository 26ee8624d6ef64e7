//! The Lambda Runtime API, served to one instance.
//!
//! Each instance gets its own listener on loopback, so a request's identity is its
//! connection: no runtime can see or answer another instance's invocations through
//! the protocol. The server enforces the protocol's state machine (INIT → READY →
//! INVOKING → READY …) with RIE's status codes and error bodies, and reports every
//! transition to the instance driver as an [`ApiEvent`].
//!
//! The same server also listens on a Unix socket in the instance's directory,
//! owned by the instance's uid with mode 0600. Nimbus's own bootstraps use it
//! (`NIMBUS_RUNTIME_API_SOCKET`): the protocol is the same HTTP, but a
//! round trip over a Unix socket skips the loopback TCP stack, which was the
//! largest cost of a warm invocation on the server's side. Custom runtimes and
//! the official runtime interface clients keep `AWS_LAMBDA_RUNTIME_API`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use crate::spec::{Dispatch, StreamPart, StreamTarget, error_doc, error_type_of};
use nimbus_core::limits::{MAX_RESPONSE_BYTES, MAX_STREAMED_RESPONSE_BYTES};
use nimbus_core::platform_error;

/// What the runtime did, as seen by the instance driver.
#[derive(Debug)]
pub enum ApiEvent {
    /// The first `GET /next`: init finished.
    InitDone(Instant),
    /// An invocation was handed out; its timer starts now.
    Dispatched(Instant),
    Response {
        request_id: Arc<str>,
        body: Bytes,
        content_type: Option<String>,
    },
    Error {
        request_id: Arc<str>,
        body: Bytes,
    },
    ResponseTooLarge {
        request_id: Arc<str>,
    },
    /// A streamed response broke off after part of it went to the caller: the
    /// invocation failed, and a runtime that drops its connection mid-response
    /// is not trusted with another.
    StreamBroken {
        request_id: Arc<str>,
    },
    InitError {
        body: Bytes,
        error_type: Option<String>,
    },
}

#[derive(Debug, Clone)]
enum Phase {
    Init,
    Ready,
    Invoking(Arc<str>),
    /// A result for the current invocation is being received; a second one is refused.
    Posting,
    Failed,
}

/// Largest request head, or trailer block, a runtime may send: the official
/// Python client sends an X-Ray error cause of up to 1 MiB in a header of its
/// `/error` post (and hyper applies one limit to heads and trailers), plus
/// room for the rest of the head.
const MAX_HEADER_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// Time a runtime has, beyond its function's timeout, to send a request head
/// (see [`HeadTimer`]); `nimbus up --runtime-api-header-timeout`.
static HEADER_TIMEOUT_MARGIN_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(30_000);

/// Sets the time a runtime has, beyond its function's timeout, to send a
/// request head on a Runtime API connection (30 s unless set; once at startup).
pub fn set_header_timeout_margin(margin: Duration) {
    HEADER_TIMEOUT_MARGIN_MS.store(
        u64::try_from(margin.as_millis()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Connections one instance may hold open to its Runtime API.
const MAX_CONNECTIONS: usize = 8;

/// Pause of an instance's accept loop after refusing a TCP connection that
/// did not come from the instance: a flood of them costs the server at most
/// this many peer lookups per second and per port.
const REFUSAL_PAUSE: Duration = Duration::from_millis(20);

struct Shared {
    phase: Mutex<Phase>,
    next_rx: tokio::sync::Mutex<mpsc::Receiver<Dispatch>>,
    events: mpsc::UnboundedSender<ApiEvent>,
    /// The function's timeout, for the deadline header; a spare learns it when
    /// it is assigned.
    timeout: Mutex<Duration>,
    /// A spare instance's assignment (see `instance::spare`), handed out once by
    /// `GET /2018-06-01/runtime/nimbus/assignment`, Nimbus's only extension of
    /// the protocol; only its own bootstraps call it.
    assignment: Mutex<Option<tokio::sync::oneshot::Receiver<Bytes>>>,
    /// The current invocation's stream destination (see [`Dispatch::stream`]).
    stream: Mutex<Option<StreamTarget>>,
    /// TCP peers must belong to the process tree rooted here (0: any process
    /// of `owner`; [`PENDING`]: not known yet, connections wait for it).
    process: std::sync::atomic::AtomicU32,
}

/// A running Runtime API server; dropped with its instance.
pub struct RuntimeApiServer {
    pub addr: SocketAddr,
    /// The Unix socket serving the same API (removed with the instance's directory).
    pub socket: Option<std::path::PathBuf>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApiServer {
    /// Binds a fresh loopback port. Invocations are fed through `next_rx`.
    /// With `owner`, only connections from sockets owned by that uid (the
    /// instance's own user) are served: other instances, which run as other uids,
    /// cannot reach this instance's invocations even though the port is on loopback.
    ///
    /// With `socket`, the API is also served on a Unix socket at that path,
    /// made accessible to `owner` alone (or to Nimbus's own user without one).
    pub async fn start(
        next_rx: mpsc::Receiver<Dispatch>,
        events: mpsc::UnboundedSender<ApiEvent>,
        timeout: Duration,
        owner: Option<u32>,
        assignment: Option<tokio::sync::oneshot::Receiver<Bytes>>,
        socket: Option<&std::path::Path>,
        tree_check: bool,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Without the socket (a path too long for one, say) the bootstraps use TCP.
        let unix = socket.and_then(|path| {
            bind_private(path, owner)
                .inspect_err(|e| {
                    tracing::debug!("no Runtime API socket at {}: {e}", path.display())
                })
                .ok()
        });
        let socket = socket
            .filter(|_| unix.is_some())
            .map(std::path::Path::to_path_buf);
        let shared = Arc::new(Shared {
            phase: Mutex::new(Phase::Init),
            next_rx: tokio::sync::Mutex::new(next_rx),
            events,
            timeout: Mutex::new(timeout),
            assignment: Mutex::new(assignment),
            stream: Mutex::new(None),
            process: std::sync::atomic::AtomicU32::new(if tree_check { PENDING } else { 0 }),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            let shared = serving;
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r.map(|(stream, peer)| {
                        Conn::Tcp(stream, peer)
                    }),
                    r = async { unix.as_ref().expect("polled only with a socket").accept().await }, if unix.is_some() => {
                        r.map(|(stream, _)| Conn::Unix(stream))
                    }
                };
                let conn = match accepted {
                    Ok(conn) => conn,
                    Err(_) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                while conns.try_join_next().is_some() {}
                if conns.len() >= MAX_CONNECTIONS {
                    // A runtime needs one connection; refusing more keeps a hostile
                    // instance from using up the server's descriptors.
                    continue;
                }
                let shared = shared.clone();
                match conn {
                    Conn::Tcp(stream, peer) => {
                        let mut tree = shared.process.load(std::sync::atomic::Ordering::Acquire);
                        // The runtime may connect before the server learned its pid.
                        for _ in 0..2000 {
                            if tree != PENDING {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            tree = shared.process.load(std::sync::atomic::Ordering::Acquire);
                        }
                        if tree == PENDING {
                            continue;
                        }
                        if owner.is_some() || tree != 0 {
                            // /proc reads: off the async threads.
                            let allowed = tokio::task::spawn_blocking(move || {
                                let Some((uid, inode)) = socket_owner(peer, addr) else {
                                    return false;
                                };
                                owner.is_none_or(|o| o == uid)
                                    && (tree == 0 || held_by_tree(tree, inode))
                            })
                            .await
                            .unwrap_or(false);
                            if !allowed {
                                tracing::warn!(%peer, "refused a Runtime API connection from a process that is not the instance's");
                                // Each refusal cost a read of /proc/net/tcp (its size grows
                                // with the host's sockets): at most 50 a second.
                                tokio::time::sleep(REFUSAL_PAUSE).await;
                                continue;
                            }
                        }
                        let _ = stream.set_nodelay(true);
                        conns.spawn(serve(shared, stream));
                    }
                    // The socket's owner and mode already admit only the instance.
                    Conn::Unix(stream) => {
                        conns.spawn(serve(shared, stream));
                    }
                }
            }
        });
        Ok(Self {
            addr,
            socket,
            shared,
            task,
        })
    }

    /// Serves TCP connections only from processes of the tree rooted at `pid`
    /// (instances that share a uid with others: rootless servers).
    pub fn restrict_to_process_tree(&self, pid: u32) {
        self.shared
            .process
            .store(pid, std::sync::atomic::Ordering::Release);
    }

    /// The timeout reported in `Lambda-Runtime-Deadline-Ms` from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        *self.shared.timeout.lock().unwrap() = timeout;
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn serve<S>(shared: Arc<Shared>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let timer = HeadTimer(shared.clone());
    let svc = service_fn(move |req| handle(shared.clone(), req));
    // Error documents travel in headers and trailers (the X-Ray cause, up
    // to 1 MiB from the Python client; a streamed failure's base64 body):
    // hyper's defaults (16 KB of trailers) would cut them off.
    let mut builder = crate::listener::http1_builder(
        Duration::from_secs(1), // replaced by HeadTimer's own deadline
        MAX_HEADER_BYTES,
        100,
    );
    let _ = builder
        .timer(timer)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// hyper's header-read timer with the deadline a runtime needs: a runtime
/// sends its result on the connection that brought the event, which stays
/// idle while the handler runs, so the time to send a head is the
/// function's timeout (as it is now: a spare learns its function's late) plus
/// a margin. A runtime that trickles a head, or holds connections it does not
/// use, loses them after that.
struct HeadTimer(Arc<Shared>);

impl HeadTimer {
    fn deadline(&self) -> std::time::Instant {
        let margin = Duration::from_millis(
            HEADER_TIMEOUT_MARGIN_MS.load(std::sync::atomic::Ordering::Relaxed),
        );
        let timeout = *self.0.timeout.lock().unwrap();
        hyper::rt::Timer::now(&TokioTimer::new()) + timeout + margin
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _: std::time::Instant) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep_until(self.deadline())
    }

    fn reset(&self, sleep: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>, _: std::time::Instant) {
        TokioTimer::new().reset(sleep, self.deadline());
    }

    fn now(&self) -> std::time::Instant {
        TokioTimer::new().now()
    }
}

/// Binds a Unix socket only `owner` may connect to: connecting needs write
/// permission on the socket file, and the file is the owner's with mode 0600.
fn bind_private(path: &std::path::Path, owner: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(path, Some(uid), None)?;
    }
    Ok(listener)
}

/// [`Shared::process`] before the instance's pid is known.
const PENDING: u32 = u32::MAX;

/// Whether a process of the tree rooted at `root` holds the socket `inode`.
fn held_by_tree(root: u32, inode: u64) -> bool {
    let target = format!("socket:[{inode}]");
    crate::sandbox::process_tree(root).into_iter().any(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
            })
        })
    })
}

/// The uid and inode of the TCP socket `local` connected to `remote`, from
/// /proc/net/tcp (addresses there are hex: IPv4 in host byte order, port big-endian).
fn socket_owner(local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    fn hex(a: SocketAddr) -> Option<String> {
        match a {
            SocketAddr::V4(v4) => Some(format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(v4.ip().octets()),
                v4.port()
            )),
            SocketAddr::V6(_) => None,
        }
    }
    let (l, r) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r)
            .then(|| Some((f[7].parse().ok()?, f[9].parse().ok()?)))
            .flatten()
    })
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn accepted() -> Resp {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn invalid_state() -> Resp {
    json(
        StatusCode::FORBIDDEN,
        r#"{"errorMessage":"State transition is not allowed","errorType":"InvalidStateTransition"}"#,
    )
}

fn truncated() -> Resp {
    json(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Truncated request body","errorType":"TruncatedHTTPRequest"}"#,
    )
}

fn invalid_id() -> Resp {
    json(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(json(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"Not found","errorType":"NotFound"}"#,
        ));
    };
    let resp = match (req.method(), rest) {
        (&Method::GET, "invocation/next") => next(&shared).await,
        (&Method::GET, "nimbus/assignment") => assignment(&shared).await,
        (&Method::POST, "init/error") => init_error(&shared, req).await,
        (&Method::POST, rest) if rest.starts_with("invocation/") => {
            let tail = &rest["invocation/".len()..];
            match tail.rsplit_once('/') {
                Some((id, "response")) => {
                    let id = id.to_string();
                    post_result(&shared, req, &id, true).await
                }
                Some((id, "error")) => {
                    let id = id.to_string();
                    post_result(&shared, req, &id, false).await
                }
                _ => json(
                    StatusCode::NOT_FOUND,
                    r#"{"errorMessage":"Not found","errorType":"NotFound"}"#,
                ),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"Not found","errorType":"NotFound"}"#,
        ),
    };
    Ok(resp)
}

/// Long poll of a spare instance: answers with its assignment (the task root,
/// then the function's environment as `NAME=value` entries, NUL-separated: the
/// bootstrap decodes it before it has a JSON parser loaded).
async fn assignment(shared: &Shared) -> Resp {
    let waiting = shared.assignment.lock().unwrap().take();
    let Some(waiting) = waiting else {
        return invalid_state();
    };
    match waiting.await {
        Ok(body) => {
            let mut r = Response::new(Full::new(body));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorMessage":"Instance is shutting down","errorType":"InternalServerError"}"#,
        ),
    }
}

async fn next(shared: &Shared) -> Resp {
    {
        let mut phase = shared.phase.lock().unwrap();
        match &*phase {
            Phase::Init => {
                *phase = Phase::Ready;
                let _ = shared.events.send(ApiEvent::InitDone(Instant::now()));
            }
            Phase::Ready => {}
            Phase::Invoking(_) | Phase::Posting | Phase::Failed => return invalid_state(),
        }
    }
    // Long poll: never time out here (the runtime may legitimately wait for hours).
    let dispatch = { shared.next_rx.lock().await.recv().await };
    let Some(mut d) = dispatch else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorMessage":"Instance is shutting down","errorType":"InternalServerError"}"#,
        );
    };
    *shared.stream.lock().unwrap() = d.stream.take();
    let id: Arc<str> = d.request_id.as_str().into();
    *shared.phase.lock().unwrap() = Phase::Invoking(id.clone());
    let now = Instant::now();
    let timeout = *shared.timeout.lock().unwrap();
    let deadline_ms = chrono::Utc::now().timestamp_millis() as u128 + timeout.as_millis();
    let _ = shared.events.send(ApiEvent::Dispatched(now));
    let mut r = Response::new(Full::new(d.payload));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &d.invoked_arn);
    put("lambda-runtime-trace-id", &d.trace_id);
    if let Some(cc) = d.client_context.as_deref().filter(|s| !s.is_empty()) {
        put("lambda-runtime-client-context", cc);
    }
    r
}

/// Nimbus's bootstraps send `Nimbus-Await-Next` with a result: the answer is
/// then not `202` but the next invocation, exactly as `GET /next` would give it.
/// One message each way per invocation instead of two halves the wake-ups of
/// both processes, the largest cost of a warm invocation once the handler is
/// fast. Without the header the protocol is Lambda's.
const AWAIT_NEXT: &str = "nimbus-await-next";

/// The header a runtime sets to stream its response (the only valid value is
/// `streaming`), and the trailers that report a failure after streaming began.
const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";
const TRAILER_ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const TRAILER_ERROR_BODY: &str = "lambda-runtime-function-error-body";

async fn post_result(shared: &Shared, req: Request<Incoming>, id: &str, success: bool) -> Resp {
    let await_next = req.headers().contains_key(AWAIT_NEXT);
    let mode = req.headers().get(RESPONSE_MODE).cloned();
    let current = {
        let mut phase = shared.phase.lock().unwrap();
        let current = match &*phase {
            Phase::Invoking(cur) => cur.clone(),
            _ => return invalid_state(),
        };
        if &*current != id {
            return invalid_id();
        }
        *phase = Phase::Posting;
        current
    };
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Whatever the runtime answers, this invocation's stream ends with it.
    let stream = shared.stream.lock().unwrap().take();
    if success && let Some(mode) = mode {
        if mode != "streaming" {
            *shared.phase.lock().unwrap() = Phase::Ready;
            let _ = shared.events.send(ApiEvent::Error {
                request_id: current,
                body: error_doc(
                    platform_error::RUNTIME_INVALID_RESPONSE_MODE_HEADER,
                    "Invalid Lambda-Runtime-Function-Response-Mode header: the only valid value is 'streaming'",
                ),
            });
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Invalid function response mode","errorType":"InvalidFunctionResponseMode"}"#,
            );
        }
        let resp = post_stream(shared, req, current, content_type, stream).await;
        if await_next && resp.status() == StatusCode::ACCEPTED {
            return next(shared).await;
        }
        return resp;
    }
    let body = match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            *shared.phase.lock().unwrap() = Phase::Ready;
            let _ = shared.events.send(ApiEvent::ResponseTooLarge {
                request_id: current,
            });
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}"#,
            );
        }
        Err(_) => {
            *shared.phase.lock().unwrap() = Phase::Invoking(current);
            return truncated();
        }
    };
    *shared.phase.lock().unwrap() = Phase::Ready;
    let ev = if success {
        ApiEvent::Response {
            request_id: current,
            body,
            content_type,
        }
    } else {
        ApiEvent::Error {
            request_id: current,
            body,
        }
    };
    let _ = shared.events.send(ev);
    if await_next {
        return next(shared).await;
    }
    accepted()
}

/// Where a streamed response's bytes go.
enum Sink {
    /// To the caller, chunk by chunk.
    Caller(mpsc::Sender<StreamPart>),
    /// The caller wants it whole (a plain `Invoke`): kept, up to the buffered limit.
    Buffer(bytes::BytesMut),
    /// The caller left: read to the end so the function can finish.
    Discard,
}

/// A response posted with `Lambda-Runtime-Function-Response-Mode: streaming`:
/// chunks are passed on as they arrive, and a failure after streaming began
/// arrives as trailers. The result event is sent once the body is complete.
async fn post_stream(
    shared: &Shared,
    req: Request<Incoming>,
    current: Arc<str>,
    content_type: Option<String>,
    stream: Option<StreamTarget>,
) -> Resp {
    let mut sink = match stream {
        Some(StreamTarget {
            tx,
            executed_version,
        }) => match tx
            .send(StreamPart::Head {
                content_type: content_type.clone(),
                executed_version,
            })
            .await
        {
            Ok(()) => Sink::Caller(tx),
            Err(_) => Sink::Discard,
        },
        None => Sink::Buffer(bytes::BytesMut::new()),
    };
    let mut body = req.into_body();
    let mut total: u64 = 0;
    let mut failure: Option<Bytes> = None;
    let mut oversized = false;
    let too_large = |limit: &str| {
        error_doc(
            platform_error::FUNCTION_RESPONSE_SIZE_TOO_LARGE,
            &format!("Response payload size exceeded maximum allowed payload size ({limit})."),
        )
    };
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(_) if matches!(sink, Sink::Buffer(_)) => {
                // Nothing went out yet: as with a buffered post, the driver sees
                // the exit or the timeout, or the runtime posts again.
                *shared.phase.lock().unwrap() = Phase::Invoking(current);
                return truncated();
            }
            Err(_) => {
                // Part of the response is with the caller: this ends the
                // invocation as failed, whatever the runtime does next.
                *shared.phase.lock().unwrap() = Phase::Failed;
                let _ = shared.events.send(ApiEvent::StreamBroken {
                    request_id: current,
                });
                return truncated();
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                total += data.len() as u64;
                match &mut sink {
                    Sink::Caller(_) | Sink::Discard if total > MAX_STREAMED_RESPONSE_BYTES => {
                        failure = Some(too_large("209715200 bytes"));
                        oversized = true;
                        break;
                    }
                    Sink::Caller(tx) => {
                        if tx.send(StreamPart::Chunk(data)).await.is_err() {
                            sink = Sink::Discard;
                        }
                    }
                    Sink::Buffer(_) if total > MAX_RESPONSE_BYTES as u64 => {
                        failure = Some(too_large("6291556 bytes"));
                        oversized = true;
                        break;
                    }
                    Sink::Buffer(buf) => buf.extend_from_slice(&data),
                    Sink::Discard => {}
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers()
            && let Some(t) = trailers.get(TRAILER_ERROR_TYPE)
        {
            let error_type = String::from_utf8_lossy(t.as_bytes()).into_owned();
            let decoded = trailers.get(TRAILER_ERROR_BODY).and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .ok()
            });
            // The trailer's type wins over a document that lacks one.
            failure = Some(match decoded {
                Some(doc) if error_type_of(&doc).is_some() => Bytes::from(doc),
                Some(doc) if !doc.is_empty() => {
                    error_doc(&error_type, &String::from_utf8_lossy(&doc))
                }
                _ => error_doc(
                    &error_type,
                    "The function failed while streaming its response",
                ),
            });
        }
    }
    *shared.phase.lock().unwrap() = Phase::Ready;
    let ev = match (failure, sink) {
        (Some(body), _) => ApiEvent::Error {
            request_id: current,
            body,
        },
        (None, Sink::Buffer(buf)) => ApiEvent::Response {
            request_id: current,
            body: buf.freeze(),
            content_type,
        },
        (None, _) => ApiEvent::Response {
            request_id: current,
            body: Bytes::new(),
            content_type,
        },
    };
    let _ = shared.events.send(ev);
    if oversized {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"errorMessage":"Exceeded maximum allowed payload size.","errorType":"RequestEntityTooLarge"}"#,
        );
    }
    accepted()
}

async fn init_error(shared: &Shared, req: Request<Incoming>) -> Resp {
    {
        let mut phase = shared.phase.lock().unwrap();
        if !matches!(*phase, Phase::Init) {
            return invalid_state();
        }
        *phase = Phase::Failed;
    }
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let _ = shared.events.send(ApiEvent::InitError { body, error_type });
    accepted()
}
