//! A test load balancer for a cluster of `nimbus up` nodes: every request
//! goes to a node chosen at random (not every connection: one client
//! connection's requests are spread too), so a test suite run through it
//! sees a cluster the way clients behind a real balancer do, only harsher.
//!
//! `nimbus-cluster-proxy --api URL,URL… --gateway URL,URL…
//! [--api-listen ADDR] [--gateway-listen ADDR]` listens on two loopback
//! ports (free ones unless given) and prints `  API: http://…` and `  Gateway: http://…`
//! (the lines `nimbus up` prints), then serves until killed. Bodies stream
//! both ways; upgrades (WebSocket) are spliced through to the chosen node.
//!
//! One exception to random routing: `POST /v1/debug/clock` (the test clock,
//! a per-process offset) is sent to every node, so the cluster's nodes keep
//! one test time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

struct Pool {
    nodes: Vec<String>,
    client: Client<HttpConnector, Body>,
}

fn pick(n: usize) -> usize {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source");
    u32::from_le_bytes(b) as usize % n
}

fn error_response(status: StatusCode, message: String) -> Response<Body> {
    let body = Full::new(Bytes::from(message))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// `req` as sent to `node`: same method, path, headers (Host included, so
/// signatures still verify) and body.
fn retarget(req: Request<Body>, node: &str) -> Result<Request<Body>, String> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{node}{path}")
        .parse()
        .map_err(|e| format!("bad target {node}{path}: {e}"))?;
    Ok(Request::from_parts(parts, body))
}

async fn forward(
    pool: Arc<Pool>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() == hyper::Method::POST && req.uri().path() == "/v1/debug/clock" {
        return Ok(broadcast(&pool, req).await);
    }
    let node = &pool.nodes[pick(pool.nodes.len())];
    let client_upgrade = req
        .headers()
        .contains_key(hyper::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let req = req.map(|b| b.boxed());
    let req = match retarget(req, node) {
        Ok(r) => r,
        Err(e) => return Ok(error_response(StatusCode::BAD_GATEWAY, e)),
    };
    let mut response = match pool.client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_GATEWAY,
                format!("node {node}: {e}"),
            ));
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let node_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client_upgrade.await, node_upgrade.await) {
                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
        });
    }
    Ok(response.map(|b| b.boxed()))
}

/// Sends one (small) request to every node; answers with the first node's
/// response, or the first failure.
async fn broadcast(pool: &Pool, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut first = None;
    for node in &pool.nodes {
        let copy = Request::from_parts(
            parts.clone(),
            Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed(),
        );
        let result = match retarget(copy, node) {
            Ok(r) => pool.client.request(r).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let response = match result {
            Ok(r) if r.status().is_success() => r.map(|b| b.boxed()),
            Ok(r) => return r.map(|b| b.boxed()),
            Err(e) => return error_response(StatusCode::BAD_GATEWAY, format!("node {node}: {e}")),
        };
        first.get_or_insert(response);
    }
    first.unwrap_or_else(|| error_response(StatusCode::BAD_GATEWAY, "no nodes".into()))
}

async fn serve(listener: tokio::net::TcpListener, pool: Arc<Pool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(pool.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
}

fn nodes(args: &[String], name: &str) -> Vec<String> {
    let list = flag(args, name)
        .unwrap_or_else(|| panic!("usage: nimbus-cluster-proxy --api URL,URL --gateway URL,URL"));
    list.split(',')
        .map(|u| u.trim_end_matches('/').to_string())
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let mut lines = Vec::new();
    let mut servers = Vec::new();
    for (name, label) in [("--api", "API"), ("--gateway", "Gateway")] {
        let pool = Arc::new(Pool {
            nodes: nodes(&args, name),
            client: client.clone(),
        });
        let listen: SocketAddr = flag(&args, &format!("{name}-listen"))
            .map(|a| a.parse().expect("an address to listen on"))
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("a port to listen on");
        lines.push(format!(
            "  {label}: http://{}",
            listener.local_addr().unwrap()
        ));
        servers.push(tokio::spawn(serve(listener, pool)));
    }
    for line in lines {
        println!("{line}");
    }
    for s in servers {
        let _ = s.await;
    }
}
