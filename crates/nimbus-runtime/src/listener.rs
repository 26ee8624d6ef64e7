//! One way to serve an HTTP/1 listener that sheds hostile clients: the API
//! listener, the gateway (and its WebSocket upgrades) and, for its header-read
//! timeout, the Runtime API.
//!
//! # Why here
//!
//! The three listeners live in three crates (`nimbus`, `nimbus-gateway`,
//! `nimbus-runtime`) whose dependencies point one way, `runtime ← engine ←
//! gateway ← api ← nimbus`. This crate is the lowest that already speaks HTTP
//! (hyper, for the Runtime API), so the shared code sits here and every
//! listener can use it without a cycle or a new crate. It knows nothing of
//! axum: callers hand it a function from request to response.
//!
//! # Why not `axum::serve`
//!
//! `axum::serve` builds hyper's connection without a timer, so hyper's
//! header-read timeout never applies, reads bodies without a deadline, and
//! accepts every connection. A client that sends half a request line, or a
//! declared body one byte a minute, then holds a descriptor and a buffer for
//! ever; a few hundred of them exhaust the server. Here:
//!
//! * the head must arrive within [`Limits::header_read_timeout`]; hyper starts
//!   that timer whenever it waits for a head, so it is the keep-alive idle
//!   timeout too;
//! * heads are capped in bytes and header count (431 / 400 from hyper);
//! * a body must arrive at [`Limits::body_min_rate`] (judged over
//!   [`Limits::body_rate_window`]) and whole within [`Limits::body_timeout`], or
//!   reading it fails with [`BodyTimeout`]; the answer then has status 408
//!   whatever error document the handler wrote, and hyper closes the
//!   connection, whose body was not read to its end;
//! * connections are capped in total and per client address; an excess
//!   connection is closed at once, before anything is read from it, and
//!   counted in [`ListenerStats`];
//! * a response sent before a declared body was read at all (a refusal decided
//!   from the headers) carries `Connection: close`, so the body is never read:
//!   hyper sends no `100 Continue` for a body nobody polled.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The error type of [`GuardedBody`] (what hyper and axum bodies use).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bounds of one listener. Every field is a server flag (see `nimbus up --help`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a client has to send a whole request head, and how long an idle
    /// keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Most header lines in a request head.
    pub max_headers: usize,
    /// Time a client has to send a whole request body.
    pub body_timeout: Duration,
    /// Slowest a body may arrive, in bytes per second, judged per window.
    pub body_min_rate: u64,
    /// The window [`Limits::body_min_rate`] is judged over.
    pub body_rate_window: Duration,
    /// Most open connections on this listener.
    pub max_connections: usize,
    /// Most open connections from one client address.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            body_timeout: Duration::from_secs(600),
            body_min_rate: 1024,
            body_rate_window: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
        }
    }
}

/// Counters of one listener, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections closed at once because the listener was full.
    pub refused_total_cap: AtomicU64,
    /// Connections closed at once because their address had too many open.
    pub refused_per_ip_cap: AtomicU64,
    /// Request bodies cut for being too slow or too late.
    pub bodies_timed_out: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A request body read too slowly or for too long.
#[derive(Debug, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the request body was not received within {0:?}")]
    Deadline(Duration),
    #[error(
        "the request body arrived slower than {min_rate} bytes per second (only {received} bytes in {window:?})"
    )]
    TooSlow {
        min_rate: u64,
        received: u64,
        window: Duration,
    },
}

impl BodyTimeout {
    /// Whether `e` (or what it wraps) is a body timeout: callers answer 408.
    pub fn is(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<BodyTimeout>() {
                return true;
            }
            cur = err.source();
        }
        false
    }
}

/// A request body that must arrive in time (see [`Limits`]), counted from its
/// first poll. Its timers are created on the first poll that finds no data,
/// so bodies that are there at once (most of them) and requests without one
/// pay no timer.
pub struct GuardedBody {
    inner: Incoming,
    seen: Arc<BodySeen>,
    stats: Arc<ListenerStats>,
    timers: Option<Box<Timers>>,
    /// First poll, and bytes received before the timers existed.
    started: Option<Instant>,
    early_bytes: u64,
    body_timeout: Duration,
    min_bytes_per_window: u64,
    min_rate: u64,
    window: Duration,
    failed: bool,
}

struct Timers {
    deadline: Pin<Box<Sleep>>,
    window_end: Pin<Box<Sleep>>,
    window_bytes: u64,
}

/// What the connection learns about a request's body once it was handled.
#[derive(Default)]
struct BodySeen {
    /// Someone started reading it.
    polled: AtomicBool,
    /// It was cut for arriving too slowly or too late.
    timed_out: AtomicBool,
}

impl GuardedBody {
    fn new(inner: Incoming, limits: &Limits, stats: Arc<ListenerStats>) -> (Self, Arc<BodySeen>) {
        let seen = Arc::new(BodySeen::default());
        let window = limits.body_rate_window.max(Duration::from_millis(1));
        let body = Self {
            inner,
            seen: seen.clone(),
            stats,
            timers: None,
            started: None,
            early_bytes: 0,
            body_timeout: limits.body_timeout,
            min_bytes_per_window: (limits.body_min_rate as f64 * window.as_secs_f64()) as u64,
            min_rate: limits.body_min_rate,
            window,
            failed: false,
        };
        (body, seen)
    }

    fn fail(&mut self, e: BodyTimeout) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        self.timers = None;
        self.seen.timed_out.store(true, Ordering::Relaxed);
        self.stats.bodies_timed_out.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        if this.started.is_none() {
            this.seen.polled.store(true, Ordering::Relaxed);
            this.started = Some(Instant::now());
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                match this.timers.as_mut() {
                    Some(t) => t.window_bytes += n,
                    None => this.early_bytes += n,
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                this.timers = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let started = this.started.expect("set above");
        let (body_timeout, window, early) = (this.body_timeout, this.window, this.early_bytes);
        let timers = this.timers.get_or_insert_with(|| {
            Box::new(Timers {
                deadline: Box::pin(tokio::time::sleep_until(started + body_timeout)),
                window_end: Box::pin(tokio::time::sleep_until(started + window)),
                window_bytes: early,
            })
        });
        if timers.deadline.as_mut().poll(cx).is_ready() {
            let d = this.body_timeout;
            return this.fail(BodyTimeout::Deadline(d));
        }
        // Windows that passed while the caller was not reading are judged when
        // the body next runs dry; a window with enough bytes starts the next.
        while timers.window_end.as_mut().poll(cx).is_ready() {
            if timers.window_bytes < this.min_bytes_per_window {
                let (min_rate, received, window) =
                    (this.min_rate, timers.window_bytes, this.window);
                return this.fail(BodyTimeout::TooSlow {
                    min_rate,
                    received,
                    window,
                });
            }
            timers.window_bytes = 0;
            let next = Instant::now() + this.window;
            timers.window_end.as_mut().reset(next);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// A place under the listener's caps, given back when the connection ends.
struct Admitted {
    ip: IpAddr,
    per_ip: Arc<PerIp>,
    stats: Arc<ListenerStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self.per_ip.0.lock().unwrap();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn admit(
    ip: IpAddr,
    limits: &Limits,
    per_ip: &Arc<PerIp>,
    stats: &Arc<ListenerStats>,
) -> Option<Admitted> {
    let mut map = per_ip.0.lock().unwrap();
    if stats.open.load(Ordering::Relaxed) as usize >= limits.max_connections {
        stats.refused_total_cap.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let n = map.entry(ip).or_insert(0);
    if *n >= limits.max_connections_per_ip {
        stats.refused_per_ip_cap.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    *n += 1;
    stats.open.fetch_add(1, Ordering::Relaxed);
    Some(Admitted {
        ip,
        per_ip: per_ip.clone(),
        stats: stats.clone(),
    })
}

/// The hyper connection settings every listener shares (the Runtime API too).
pub fn http1_builder(
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(header_read_timeout)
        .max_header_size(max_header_bytes)
        .max_headers(max_headers)
        // The read buffer holds a head (or a trailer block) and some body.
        .max_buf_size(max_header_bytes.max(8 * 1024) + 64 * 1024);
    b
}

/// Serves `listener` until `stop`, then stops accepting and lets connections
/// finish their current request. `handle` gets each request (with its client
/// address) and never fails; connections upgrade (WebSocket) when it says so.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(Request<GuardedBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = Arc::new(limits);
    let per_ip = Arc::new(PerIp::default());
    let mut last_refusal_log: Option<Instant> = None;
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = admit(peer.ip(), &limits, &per_ip, &stats) else {
            drop(stream);
            // One line per ten seconds, whatever the flood.
            let now = Instant::now();
            if last_refusal_log.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                last_refusal_log = Some(now);
                tracing::warn!(
                    %peer,
                    "connection refused: listener at its connection cap ({} in total, {} per address)",
                    limits.max_connections,
                    limits.max_connections_per_ip
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (limits, stats, handle, stop) =
            (limits.clone(), stats.clone(), handle.clone(), stop.clone());
        tracker.spawn(async move {
            let _admitted = admitted;
            let svc = {
                let (limits, stats) = (limits.clone(), stats.clone());
                service_fn(move |req: Request<Incoming>| {
                    let (parts, body) = req.into_parts();
                    let declared_body = !body.is_end_stream();
                    let (body, seen) = GuardedBody::new(body, &limits, stats.clone());
                    let fut = handle(Request::from_parts(parts, body), peer);
                    async move {
                        let mut resp = fut.await;
                        // Whatever the handler made of a body cut for time
                        // (its own error document), the status says so.
                        if seen.timed_out.load(Ordering::Relaxed) {
                            *resp.status_mut() = hyper::StatusCode::REQUEST_TIMEOUT;
                        }
                        // Refused from its headers: do not read the body, close.
                        if declared_body && !seen.polled.load(Ordering::Relaxed) {
                            resp.headers_mut()
                                .insert(CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, Infallible>(resp)
                    }
                })
            };
            let builder = http1_builder(
                limits.header_read_timeout,
                limits.max_header_bytes,
                limits.max_headers,
            );
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
