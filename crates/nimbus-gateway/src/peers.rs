//! The other nodes of a cluster, as the connections endpoint needs them.
//!
//! A WebSocket lives on the node that accepted it, but a function calls
//! `@connections/{id}` through whichever node its request lands on. So each
//! connection id ends with its node's tag, and each node holds a lease named
//! after its tag whose owner is its gateway's own listener address: a node
//! that does not hold a connection reads the lease of the id's tag and
//! forwards the request there. Leases already give what such a directory
//! needs: one owner per tag (two nodes that drew the same tag cannot both
//! claim it), freshness (a node that dies stops renewing, and its tag
//! resolves to nothing within one TTL) and, on one node, an in-memory table
//! that knows only this node.
//!
//! A forwarded request is the client's own (method, path, headers with the
//! `Host` unchanged, body), so its SigV4 signature verifies on the node that
//! answers. It carries [`FORWARDED_HEADER`], and a node never forwards a
//! request that has it: one hop at most, whatever the tags say. A client
//! that sets the header only turns forwarding off for its own request, so it
//! needs no secret; the gateway strips it from every other request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nimbus_store::{Leases, StoreError};
use tokio_util::sync::CancellationToken;

/// Marks a request one node forwarded to another.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-nimbus-forwarded-by");

/// Bytes of a node tag (4 base64 characters at the end of a connection id).
pub const TAG_BYTES: usize = 3;
/// How long a node's claim on its tag lasts unless renewed.
pub const TAG_TTL: Duration = Duration::from_secs(30);
/// How long a forwarded request may take, answer included.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer taken back from another node (the connections endpoint
/// answers small JSON documents).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Tags drawn before giving up on finding a free one.
const TAG_DRAWS: usize = 8;

/// The lease that says which gateway holds the connections tagged `tag`.
fn lease_name(tag: &str) -> String {
    format!("gateway-node/{tag}")
}

fn now_ms() -> i64 {
    nimbus_core::Clock::system().now_ms()
}

/// A fresh random tag.
fn draw_tag() -> String {
    let mut b = [0u8; TAG_BYTES];
    getrandom::fill(&mut b).expect("the OS has randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// Characters of a tag (base64 of [`TAG_BYTES`], a multiple of 3).
const TAG_CHARS: usize = TAG_BYTES / 3 * 4;

/// The tag of a connection id minted by [`Peers::connection_id`].
pub(crate) fn tag_of(connection_id: &str) -> Option<&str> {
    connection_id
        .len()
        .checked_sub(TAG_CHARS)
        .and_then(|at| connection_id.get(at..))
}

/// Headers that describe one connection, not the message: the hop to and
/// from the other node is a connection of its own.
const HOP_BY_HOP: [HeaderName; 5] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
];

fn drop_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// This node's place among the gateways of a cluster.
pub struct Peers {
    leases: Arc<dyn Leases>,
    tag: String,
    /// Where other nodes reach this node's gateway (`http://host:port`).
    own_url: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Peers {
    /// Joins the gateways sharing `leases` as the node reachable at
    /// `own_url` (its listener, not a load balancer in front of it): draws a
    /// tag no live node holds and claims it.
    pub async fn join(leases: Arc<dyn Leases>, own_url: &str) -> Result<Arc<Self>, StoreError> {
        let own_url = own_url.trim_end_matches('/').to_owned();
        for _ in 0..TAG_DRAWS {
            let tag = draw_tag();
            if claim(&*leases, &tag, &own_url).await? {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(FORWARD_TIMEOUT));
                let client = Client::builder(TokioExecutor::new()).build(connector);
                return Ok(Arc::new(Self {
                    leases,
                    tag,
                    own_url,
                    client,
                }));
            }
        }
        Err(StoreError::Conflict("gateway node tag".into()))
    }

    /// A single node's gateway: its tag is its own and there are no others.
    pub fn alone() -> Arc<Self> {
        Arc::new(Self {
            leases: Arc::new(nimbus_store::LocalLeases::default()),
            tag: draw_tag(),
            own_url: String::new(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    /// A new connection id of this node: 96 random bits, then the tag.
    pub(crate) fn connection_id(&self) -> String {
        let mut b = [0u8; 12];
        getrandom::fill(&mut b).expect("the OS has randomness");
        let mut id = URL_SAFE_NO_PAD.encode(b);
        id.push_str(&self.tag);
        id
    }

    /// Renews this node's claim until `stop`, then gives the tag up.
    pub async fn keep_claim(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(TAG_TTL / 3) => {}
            }
            match claim(&*self.leases, &self.tag, &self.own_url).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    tag = %self.tag,
                    "another node took this gateway's tag: its WebSockets are unreachable through other nodes"
                ),
                Err(e) => tracing::warn!(tag = %self.tag, "cannot renew this gateway's tag: {e}"),
            }
        }
        let name = lease_name(&self.tag);
        if let Err(e) = self.leases.release(&name, &self.own_url, now_ms()).await {
            tracing::warn!(tag = %self.tag, "cannot give up this gateway's tag: {e}");
        }
    }

    /// The gateway of another live node that holds `connection_id`, if any.
    async fn holder_of(&self, connection_id: &str) -> Option<String> {
        let tag = tag_of(connection_id).filter(|t| *t != self.tag)?;
        match self.leases.holder(&lease_name(tag), now_ms()).await {
            Ok(lease) => lease.map(|l| l.owner).filter(|url| *url != self.own_url),
            Err(e) => {
                tracing::warn!("cannot look up the node of connection {connection_id}: {e}");
                None
            }
        }
    }

    /// Sends a connections-endpoint request to the node holding
    /// `connection_id` and returns its answer; `None` when no other node
    /// holds it (or it could not be reached: then it holds nothing either).
    pub(crate) async fn forward(
        &self,
        connection_id: &str,
        parts: &Parts,
        body: Bytes,
    ) -> Option<Response> {
        let url = self.holder_of(connection_id).await?;
        let request = self.forwarded_request(&url, parts, body)?;
        let sent = tokio::time::timeout(FORWARD_TIMEOUT, async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (mut parts, body) = answer.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>(Response::from_parts(parts, Body::from(body)))
        })
        .await;
        match sent {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::warn!("cannot forward to {url} for connection {connection_id}: {e}");
                None
            }
            Err(_) => {
                tracing::warn!("{url} did not answer in time for connection {connection_id}");
                None
            }
        }
    }

    /// The client's request, addressed to `url` and marked as forwarded.
    fn forwarded_request(
        &self,
        url: &str,
        parts: &Parts,
        body: Bytes,
    ) -> Option<Request<Full<Bytes>>> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = Uri::try_from(format!("{url}{path}")).ok()?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers.clone();
        drop_hop_by_hop(request.headers_mut());
        let by = HeaderValue::from_str(&self.tag).ok()?;
        request.headers_mut().insert(FORWARDED_HEADER, by);
        Some(request)
    }
}

/// Takes or renews the lease of `tag` for `own_url`; whether it holds it.
async fn claim(leases: &dyn Leases, tag: &str, own_url: &str) -> Result<bool, StoreError> {
    let ttl = TAG_TTL.as_millis() as i64;
    Ok(leases
        .acquire(&lease_name(tag), own_url, ttl, now_ms())
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_ids_end_with_their_nodes_tag() {
        let peers = Peers::alone();
        let id = peers.connection_id();
        assert_eq!(id.len(), 20);
        assert_eq!(tag_of(&id), Some(peers.tag.as_str()));
        assert_eq!(tag_of("ab"), None);
    }

    #[tokio::test]
    async fn two_nodes_never_share_a_tag_and_find_each_other() {
        let leases: Arc<dyn Leases> = Arc::new(nimbus_store::LocalLeases::default());
        let a = Peers::join(leases.clone(), "http://127.0.0.1:1")
            .await
            .unwrap();
        let b = Peers::join(leases.clone(), "http://127.0.0.1:2/")
            .await
            .unwrap();
        assert_ne!(a.tag, b.tag);
        let on_b = b.connection_id();
        assert_eq!(
            a.holder_of(&on_b).await.as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(b.holder_of(&on_b).await, None, "its own: not forwarded");
        assert_eq!(a.holder_of("AAAAAAAAAAAAAAAAzzzz").await, None);
        assert!(!claim(&*leases, &a.tag, "http://127.0.0.1:2").await.unwrap());
    }
}
