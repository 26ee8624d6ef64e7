//! CORS: preflight answers and the headers added to actual responses.
//!
//! Like an HTTP API with a CORS configuration, the gateway answers preflight
//! requests itself (they never reach a function) and sets the CORS headers on
//! every response to an allowed origin, overriding whatever the function
//! returned, so one configuration is the single source of truth.
//!
//! The Fetch standard forbids `Access-Control-Allow-Origin: *` on credentialed
//! requests (and treats `*` in the allow-methods/headers lists as a literal
//! name there). `*` origins with `allow_credentials` are refused when
//! configured, as AWS refuses them; with listed origins and credentials, `*`
//! methods and headers echo the request's method and headers instead, and
//! `Vary: Origin` tells caches the answer depends on the origin.

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// A CORS configuration (the fields of an HTTP API `CorsConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins (`https://app.example`), or `*`.
    pub allow_origins: Vec<String>,
    /// Allowed methods, or `*`.
    pub allow_methods: Vec<String>,
    /// Allowed request headers, or `*` (compared case-insensitively).
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    pub max_age_secs: Option<u64>,
    /// Whether credentialed requests (cookies, `Authorization`) are allowed.
    pub allow_credentials: bool,
}

/// The gateway's answer to a preflight request.
#[derive(Debug)]
pub struct Preflight {
    /// Whether origin, method and headers were all allowed (for logs; the
    /// browser learns it from the headers, the status is 204 either way).
    pub allowed: bool,
    /// The response to send.
    pub response: Response<Bytes>,
}

/// True for a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Other `OPTIONS` requests are routed
/// normally.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

fn has_star(list: &[String]) -> bool {
    list.iter().any(|s| s == "*")
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl CorsConfig {
    fn origin_allowed(&self, origin: &str) -> bool {
        has_star(&self.allow_origins)
            || self
                .allow_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// `Access-Control-Allow-Origin` for an allowed `origin`: `*` only when
    /// `*` is configured and credentials are not.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if has_star(&self.allow_origins) && !self.credentials() {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Whether credentials are allowed: never with `*` origins, which
    /// validation refuses ([`crate::config::CorsSettings::validate`]); a
    /// configuration stored before that check answers without credentials
    /// rather than echoing every origin.
    fn credentials(&self) -> bool {
        self.allow_credentials && !has_star(&self.allow_origins)
    }

    fn varies_by_origin(&self) -> bool {
        !has_star(&self.allow_origins) || self.credentials()
    }

    fn method_allowed(&self, method: &str) -> bool {
        has_star(&self.allow_methods)
            || self
                .allow_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
    }

    fn header_allowed(&self, name: &str) -> bool {
        has_star(&self.allow_headers)
            || self
                .allow_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Answers a preflight request (see [`is_preflight`]). Denied preflights
    /// get a 204 without `Access-Control-Allow-*` headers, so the browser
    /// blocks the actual request.
    pub fn preflight(&self, request_headers: &HeaderMap) -> Preflight {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let allowed = self.fill_preflight(request_headers, response.headers_mut());
        Preflight { allowed, response }
    }

    fn fill_preflight(&self, req: &HeaderMap, out: &mut HeaderMap) -> bool {
        if self.varies_by_origin() {
            out.append(VARY, HeaderValue::from_static("Origin"));
        }
        out.append(
            VARY,
            HeaderValue::from_static(
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let (Some(origin), Some(method)) = (
            req.get(ORIGIN),
            req.get(ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|v| v.to_str().ok()),
        ) else {
            return false;
        };
        let origin_ok = origin.to_str().is_ok_and(|o| self.origin_allowed(o));
        let requested: Vec<&str> = req
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if !origin_ok
            || !self.method_allowed(method)
            || !requested.iter().all(|h| self.header_allowed(h))
        {
            return false;
        }

        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        if self.credentials() {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        // `*` is a wildcard only without credentials; echo what was asked.
        let methods = if has_star(&self.allow_methods) {
            if self.credentials() {
                value(method)
            } else {
                Some(HeaderValue::from_static("*"))
            }
        } else {
            value(&self.allow_methods.join(","))
        };
        if let Some(m) = methods {
            out.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        let headers = if has_star(&self.allow_headers) {
            (!requested.is_empty()).then(|| requested.join(","))
        } else {
            (!self.allow_headers.is_empty()).then(|| self.allow_headers.join(","))
        };
        if let Some(h) = headers.as_deref().and_then(value) {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, h);
        }
        if let Some(age) = self.max_age_secs {
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
        true
    }

    /// Adds the CORS headers for an actual (non-preflight) response.
    /// Requests without `Origin` or from a disallowed origin get none
    /// (besides `Vary: Origin` where the answer depends on it).
    pub fn apply(&self, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
        if self.varies_by_origin() {
            response_headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = request_headers.get(ORIGIN) else {
            return;
        };
        if !origin.to_str().is_ok_and(|o| self.origin_allowed(o)) {
            return;
        }
        response_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        if self.credentials() {
            response_headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !self.expose_headers.is_empty()
            && let Some(v) = value(&self.expose_headers.join(","))
        {
            response_headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn config() -> CorsConfig {
        CorsConfig {
            allow_origins: strings(&["https://app.example"]),
            allow_methods: strings(&["GET", "POST"]),
            allow_headers: strings(&["content-type", "x-api-key"]),
            expose_headers: strings(&["x-request-id"]),
            max_age_secs: Some(600),
            allow_credentials: false,
        }
    }

    fn req(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn vary(h: &HeaderMap) -> Vec<String> {
        h.get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn detects_preflight() {
        let full = req(&[
            ("origin", "https://a"),
            ("access-control-request-method", "PUT"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &full));
        assert!(!is_preflight(&Method::GET, &full));
        assert!(!is_preflight(
            &Method::OPTIONS,
            &req(&[("origin", "https://a")])
        ));
    }

    #[test]
    fn allowed_preflight() {
        let p = config().preflight(&req(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type, X-Api-Key"),
        ]));
        assert!(p.allowed);
        let h = p.response.headers();
        assert_eq!(p.response.status(), 204);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET,POST");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type,x-api-key");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(vary(h).contains(&"Origin".to_owned()));
    }

    #[test]
    fn denied_preflights_carry_no_allow_headers() {
        let c = config();
        for headers in [
            req(&[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ]),
            req(&[
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
            ]),
            req(&[
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ]),
        ] {
            let p = c.preflight(&headers);
            assert!(!p.allowed);
            assert_eq!(p.response.status(), 204);
            assert!(
                p.response
                    .headers()
                    .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none()
            );
            assert!(
                p.response
                    .headers()
                    .get(ACCESS_CONTROL_ALLOW_METHODS)
                    .is_none()
            );
        }
    }

    #[test]
    fn wildcards_without_credentials() {
        let c = CorsConfig {
            allow_origins: strings(&["*"]),
            allow_methods: strings(&["*"]),
            allow_headers: strings(&["*"]),
            ..CorsConfig::default()
        };
        let p = c.preflight(&req(&[
            ("origin", "https://any.example"),
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "x-custom"),
        ]));
        assert!(p.allowed);
        let h = p.response.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "*");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "x-custom");
        assert!(!vary(h).contains(&"Origin".to_owned()), "{:?}", vary(h));

        let mut out = HeaderMap::new();
        c.apply(&req(&[("origin", "https://any.example")]), &mut out);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(out.get(VARY).is_none());
    }

    #[test]
    fn star_origins_never_allow_credentials() {
        // Refused at configuration; a stored one must not echo every origin.
        let c = CorsConfig {
            allow_origins: strings(&["*"]),
            allow_methods: strings(&["GET"]),
            allow_credentials: true,
            ..CorsConfig::default()
        };
        let mut out = HeaderMap::new();
        c.apply(&req(&[("origin", "https://evil.example")]), &mut out);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(out.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }

    #[test]
    fn credentials_with_wildcards_echo_per_fetch() {
        let c = CorsConfig {
            allow_origins: strings(&["https://any.example"]),
            allow_methods: strings(&["*"]),
            allow_headers: strings(&["*"]),
            allow_credentials: true,
            ..CorsConfig::default()
        };
        let p = c.preflight(&req(&[
            ("origin", "https://any.example"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "authorization"),
        ]));
        let h = p.response.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://any.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "authorization");
        assert!(vary(h).contains(&"Origin".to_owned()));

        let mut out = HeaderMap::new();
        c.apply(&req(&[("origin", "https://any.example")]), &mut out);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://any.example");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(vary(&out), ["Origin"]);
    }

    #[test]
    fn actual_responses() {
        let c = config();
        let mut out = HeaderMap::new();
        out.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://from-fn"),
        );
        c.apply(&req(&[("origin", "https://APP.example")]), &mut out);
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://APP.example",
            "config overrides"
        );
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        assert_eq!(vary(&out), ["Origin"]);

        let mut denied = HeaderMap::new();
        c.apply(&req(&[("origin", "https://evil.example")]), &mut denied);
        assert!(denied.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(vary(&denied), ["Origin"]);

        let mut no_origin = HeaderMap::new();
        c.apply(&HeaderMap::new(), &mut no_origin);
        assert!(no_origin.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
}
