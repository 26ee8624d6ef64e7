//! Lambda function URL events: payload 2.0 with fixed placeholders.
//!
//! A function URL has no routes or stages, so `routeKey`,
//! `requestContext.routeKey` and `requestContext.stage` are `$default`;
//! `apiId`/`domainPrefix` are the URL id and the domain is
//! `<url-id>.lambda-url.<region>.on.aws`; there are never path parameters or
//! stage variables. For `AuthType: NONE` the account id is `anonymous`, as in
//! real events. Responses follow 2.0 exactly ([`parse_response`]).

use super::{ApiInfo, ProxyRequest, v2};
use crate::routes::DEFAULT_ROUTE_KEY;

pub use super::v2::{malformed_response, parse_response};

/// A function URL's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrl {
    api: ApiInfo,
}

impl FunctionUrl {
    /// A URL with `AuthType: NONE` (`accountId` = `anonymous`).
    pub fn new(url_id: &str, region: &str) -> Self {
        Self::with_account(url_id, region, "anonymous")
    }

    /// A URL whose events carry `account_id` (e.g. the owner's, for
    /// `AWS_IAM` URLs).
    pub fn with_account(url_id: &str, region: &str, account_id: &str) -> Self {
        let domain = format!("{url_id}.lambda-url.{region}.on.aws");
        Self {
            api: ApiInfo::new(account_id, url_id, &domain, DEFAULT_ROUTE_KEY),
        }
    }

    /// The [`ApiInfo`] to put in the [`ProxyRequest`] for this URL.
    pub fn api(&self) -> &ApiInfo {
        &self.api
    }

    /// `<url-id>.lambda-url.<region>.on.aws`.
    pub fn domain_name(&self) -> &str {
        &self.api.domain_name
    }
}

/// A fresh URL id: 32 lower-case alphanumerics, like AWS's.
pub fn generate_url_id() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    // 256 % 36 != 0: the slight bias is irrelevant for an identifier that is
    // not a secret.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Builds the function URL event, serialised. `req.route_key`,
/// `req.resource` and `req.path_params` are ignored (placeholders are used).
pub fn build_event(req: &ProxyRequest<'_>) -> Vec<u8> {
    let mut event = v2::event(req);
    event.route_key = DEFAULT_ROUTE_KEY;
    event.request_context.route_key = DEFAULT_ROUTE_KEY;
    event.request_context.stage = DEFAULT_ROUTE_KEY;
    event.path_parameters.clear();
    event.stage_variables = None;
    serde_json::to_vec(&event).expect("a function URL event always serialises")
}

#[cfg(test)]
mod tests {
    use http::{Method, Request};
    use serde_json::{Value, json};

    use super::*;
    use crate::routes::PathParams;

    #[test]
    fn reference_example_field_by_field() {
        let url = FunctionUrl::new("abcdefghijklmnopqrstuvwxyz012345", "us-east-1");
        let req = Request::builder()
            .method(Method::POST)
            .uri("/hook?src=gh")
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/1")
            .body(br#"{"action":"opened"}"#.to_vec())
            .unwrap();
        let params = PathParams::default();
        let proxy = ProxyRequest {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            body: req.body(),
            source_ip: "203.0.113.9",
            route_key: "ignored",
            resource: "ignored",
            path_params: &params,
            request_id: "3f0c1e9a-6b55-4d7e-9a1d-0c2b8f1e2a77",
            time_epoch_ms: 1_736_942_400_000,
            api: url.api(),
            jwt: None,
        };
        let e: Value = serde_json::from_slice(&build_event(&proxy)).unwrap();
        let expected = json!({
          "version": "2.0", "routeKey": "$default", "rawPath": "/hook", "rawQueryString": "src=gh",
          "headers": {"content-type": "application/json", "user-agent": "GitHub-Hookshot/1"},
          "queryStringParameters": {"src": "gh"},
          "requestContext": {
            "accountId": "anonymous", "apiId": "abcdefghijklmnopqrstuvwxyz012345",
            "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
            "http": {"method": "POST", "path": "/hook", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.9", "userAgent": "GitHub-Hookshot/1"},
            "requestId": "3f0c1e9a-6b55-4d7e-9a1d-0c2b8f1e2a77", "routeKey": "$default",
            "stage": "$default", "time": "15/Jan/2025:12:00:00 +0000", "timeEpoch": 1_736_942_400_000_u64
          },
          "body": "{\"action\":\"opened\"}", "isBase64Encoded": false
        });
        assert_eq!(e, expected);
    }

    #[test]
    fn url_ids_look_like_aws_ones() {
        let id = generate_url_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(id, generate_url_id().unwrap());
        let url = FunctionUrl::with_account(&id, "eu-west-1", "123456789012");
        assert_eq!(url.api().account_id, "123456789012");
        assert_eq!(
            url.domain_name(),
            format!("{id}.lambda-url.eu-west-1.on.aws")
        );
    }

    #[test]
    fn responses_follow_2_0() {
        let r = parse_response(br#"{"ok":true}"#).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}
