//! Requests to Nimbus's AWS-compatible APIs (SQS, S3) as an SDK sends them.
//!
//! Those routes accept only SigV4 (the native API's Bearer key is refused
//! there), so the bench signs every request with Nimbus's own signer
//! (`nimbus_aws::sigv4::sign`, the code the server verifies with) instead of a
//! second implementation. Signing happens per request, like an SDK, so its
//! cost (a few HMACs) is in the timed path on every backend alike; the 1 MB
//! object's SHA-256 is computed once, since an SDK hashing the same bytes
//! again would time the client, not the server.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use nimbus_aws::sigv4::{self, Service, SignedRequest, SigningParams};
use sha2::{Digest, Sha256};

use crate::client::{Http, Reply};
use crate::nimbus::{KEY_ID, SECRET};

/// The region the requests are signed for (Nimbus accepts any).
const REGION: &str = "us-east-1";
const SQS_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A signed-request client for one node's API listener.
#[derive(Clone)]
pub struct Aws {
    http: Http,
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// `127.0.0.1:<port>`, the `Host` that is signed.
    host: String,
}

/// A body with its SHA-256, hashed once.
#[derive(Clone)]
pub struct Payload {
    pub bytes: Bytes,
    sha256_hex: String,
}

impl Payload {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let sha256_hex = hex::encode(Sha256::digest(&bytes));
        Self { bytes, sha256_hex }
    }

    fn empty() -> Self {
        Self {
            bytes: Bytes::new(),
            sha256_hex: sigv4::EMPTY_SHA256.to_string(),
        }
    }
}

impl Aws {
    pub fn new(http: &Http, base: &str) -> Result<Self> {
        let host = base
            .strip_prefix("http://")
            .context("the API is not plain http")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            http: http.clone(),
            base: base.trim_end_matches('/').to_string(),
            host,
        })
    }

    /// One SQS JSON-protocol call (`AmazonSQS.<operation>`), answered 200.
    pub async fn sqs(&self, operation: &str, input: &serde_json::Value) -> Result<Reply> {
        let body = Payload::new(input.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(SQS_CONTENT_TYPE));
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(&format!("AmazonSQS.{operation}"))?,
        );
        // Like botocore for SQS: no X-Amz-Content-SHA256, the body hash is signed.
        let reply = self
            .signed(
                Method::POST,
                "/",
                headers,
                &body,
                Service::Other("sqs"),
                false,
            )
            .await?;
        ensure!(
            reply.status == 200,
            "SQS {operation} answered {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply)
    }

    /// `PUT /<bucket>` (CreateBucket), path-style.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let reply = self
            .s3(Method::PUT, &format!("/{bucket}"), &Payload::empty())
            .await?;
        ensure!(
            reply.status == 200,
            "CreateBucket {bucket} answered {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }

    /// PutObject, path-style, with the body's hash in `X-Amz-Content-SHA256`.
    pub async fn put_object(&self, bucket: &str, key: &str, body: &Payload) -> Result<()> {
        let reply = self
            .s3(Method::PUT, &format!("/{bucket}/{key}"), body)
            .await?;
        ensure!(
            reply.status == 200,
            "PutObject {bucket}/{key} answered {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }

    /// GetObject, path-style: the object's bytes.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes> {
        let reply = self
            .s3(Method::GET, &format!("/{bucket}/{key}"), &Payload::empty())
            .await?;
        ensure!(
            reply.status == 200,
            "GetObject {bucket}/{key} answered {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply.body)
    }

    async fn s3(&self, method: Method, path: &str, body: &Payload) -> Result<Reply> {
        self.signed(method, path, HeaderMap::new(), body, Service::S3, true)
            .await
    }

    /// Signs `headers` (plus `host`, `x-amz-date` and, when `declare_hash`,
    /// `x-amz-content-sha256`) for `service` and sends the request.
    async fn signed(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: &Payload,
        service: Service,
        declare_hash: bool,
    ) -> Result<Reply> {
        let now = Utc::now();
        headers.insert(HOST, HeaderValue::from_str(&self.host)?);
        headers.insert(
            "x-amz-date",
            HeaderValue::from_str(&now.format("%Y%m%dT%H%M%SZ").to_string())?,
        );
        if declare_hash {
            headers.insert(
                "x-amz-content-sha256",
                HeaderValue::from_str(&body.sha256_hex)?,
            );
        }
        let names: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let authorization = sigv4::sign(
            &SignedRequest {
                method: method.as_str(),
                raw_path: path,
                raw_query: None,
                headers: &headers,
                body_sha256_hex: Some(&body.sha256_hex),
            },
            &SigningParams {
                access_key_id: KEY_ID,
                secret: SECRET,
                region: REGION,
                service,
                time: now,
            },
            &names,
        )
        .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
        let uri: Uri = format!("{}{path}", self.base).parse()?;
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(h) = request.headers_mut() {
            *h = headers;
            h.insert(
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(&authorization)?,
            );
        }
        self.http
            .execute(request.body(Full::new(body.bytes.clone()))?)
            .await
    }
}
