//! The one HTTP client every measurement uses, so Nimbus and the bare servers are
//! timed by identical code: hyper's HTTP/1.1 client with keep-alive and
//! TCP_NODELAY. Requests made one after another reuse a single connection;
//! concurrent requests open one connection each.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A pooled keep-alive client; clones share the pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A whole response, body included.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{} response is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Http {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Reply> {
        let request = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(CONTENT_TYPE, content_type)
            // Nimbus needs it; the bare servers ignore it. Sent to both so that
            // both see the same request.
            .header(AUTHORIZATION, crate::nimbus::BEARER)
            .body(Full::new(body))?;
        self.execute(request).await
    }

    /// Sends a request built by the caller (its own headers, e.g. a SigV4
    /// signature instead of the Bearer key) and reads the whole response body.
    pub async fn execute(&self, request: Request<Full<Bytes>>) -> Result<Reply> {
        let uri = request.uri().clone();
        let response = self
            .client
            .request(request)
            .await
            .with_context(|| format!("request to {uri} failed"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .with_context(|| format!("reading the response of {uri} failed"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a JSON document.
    pub async fn send_json(
        &self,
        method: Method,
        uri: &Uri,
        value: &serde_json::Value,
    ) -> Result<Reply> {
        self.send(method, uri, "application/json", value.to_string().into())
            .await
    }
}
