//! A small client for the native API, used by the CLI commands.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::cli::ClientArgs;

pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `<access key id>:<secret>` from the environment, if set.
    token: Option<String>,
}

/// Credentials from `NIMBUS_ACCESS_KEY_ID`/`NIMBUS_SECRET_ACCESS_KEY`, else the
/// standard `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (one key for the CLI and SDKs).
fn credentials() -> Option<String> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let pair = |id: &str, secret: &str| Some(format!("{}:{}", get(id)?, get(secret)?));
    pair("NIMBUS_ACCESS_KEY_ID", "NIMBUS_SECRET_ACCESS_KEY")
        .or_else(|| pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .context("cannot create HTTP client")?;
        Ok(Self {
            http,
            base: args.endpoint.trim_end_matches('/').to_string(),
            token: credentials(),
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request; non-2xx answers become the API's one-line error message.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.with_context(|| {
            format!("cannot reach Nimbus at {} (is `nimbus up` running? set --endpoint or NIMBUS_ENDPOINT)", self.base)
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v["error"]["message"].is_string() => {
                bail!(
                    "{}: {}",
                    v["error"]["code"].as_str().unwrap_or("Error"),
                    v["error"]["message"].as_str().unwrap_or("")
                )
            }
            _ => bail!("HTTP {status}: {}", text.trim()),
        }
    }

    pub async fn json(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let resp = self.send(req).await?;
        resp.json().await.context("the server sent invalid JSON")
    }
}
