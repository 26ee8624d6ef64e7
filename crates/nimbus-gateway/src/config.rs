//! What users declare: routes, function URLs and gateway keys, as JSON/TOML.
//!
//! These are the documents of the native API, the CLI and `[[routes]]` in
//! `nimbus.toml`, and also what the store keeps (minus secrets). They are
//! plain data with validation that needs no I/O; [`crate::snapshot`] turns
//! them into what the request path uses.

use std::path::PathBuf;

use nimbus_core::Target;
use nimbus_core::target::TargetFields;
use serde::{Deserialize, Serialize};

use crate::routes::{DEFAULT_ROUTE_KEY, RouteMethod, RouteTable};
use crate::websocket::{CONNECT_ROUTE, DISCONNECT_ROUTE, RouteSelector};

/// Default request body limit of a route: Lambda's synchronous payload limit.
pub const DEFAULT_BODY_LIMIT: usize = 6 * 1024 * 1024;
/// Largest `body_limit` a route or URL may declare: API Gateway's 10 MB
/// payload limit. The body is held in memory and copied into the event, so a
/// declared limit is a promise of memory per request.
pub const MAX_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Most routes one API (HTTP or WebSocket) may have: API Gateway's default
/// quota of 300 routes per API. Each route is compiled into every snapshot.
pub const MAX_ROUTES: usize = 300;
/// Longest HTTP route key (`GET /…`) accepted.
pub const MAX_ROUTE_KEY_BYTES: usize = 2048;
/// Default WebSocket route-selection expression (as in the API Gateway console).
pub const DEFAULT_ROUTE_SELECTION: &str = "$request.body.action";

/// Which kind of API a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// HTTP routes (`GET /users/{id}`, `$default`).
    #[default]
    Http,
    /// WebSocket routes (`$connect`, `$disconnect`, `$default`, `sendmessage`).
    Websocket,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Websocket => "websocket",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Self::Http),
            "websocket" => Some(Self::Websocket),
            _ => None,
        }
    }
}

/// How a route authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Anyone.
    #[default]
    None,
    /// A function key in `x-functions-key` or `?code=`.
    FunctionKey,
    /// An API key in `x-api-key`.
    ApiKey,
    /// A JWT bearer token.
    Jwt,
}

/// JWT authorizer settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Required `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values (empty: not checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// RS256/ES256 public keys (a JWKS document), read at startup and on change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// HS256 shared secret. Accepted on input, stored sealed, never shown.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// HS256 shared secret read from this environment variable of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

/// CORS settings (an HTTP API `CorsConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub allow_credentials: bool,
}

impl CorsSettings {
    /// Refuses `*` origins with credentials, as HTTP APIs and function URLs
    /// do: browsers never send credentials to a `*` answer, so the only way
    /// to honour it would be to echo every origin, which lets any site make
    /// credentialed requests and read the answers.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow_credentials && self.allow_origins.iter().any(|o| o.trim() == "*") {
            return Err(
                "invalid cors: allow_credentials cannot be true when allow_origins contains \"*\"; \
                 list the origins that may send credentials"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn to_config(&self) -> crate::CorsConfig {
        crate::CorsConfig {
            allow_origins: self.allow_origins.clone(),
            allow_methods: self.allow_methods.clone(),
            allow_headers: self.allow_headers.clone(),
            expose_headers: self.expose_headers.clone(),
            max_age_secs: self.max_age,
            allow_credentials: self.allow_credentials,
        }
    }
}

/// A per-route rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per second, steady.
    pub rate: f64,
    /// Requests allowed at once on a full bucket.
    pub burst: u32,
}

/// A route as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `GET /users/{id}`, `ANY /files/{proxy+}`, `$default`; for WebSocket
    /// APIs `$connect`, `$disconnect`, `$default` or a selection value.
    pub route: String,
    #[serde(default)]
    pub api: ApiKind,
    /// What the route runs, declared as `function` (`name` or
    /// `name:qualifier`, a version or alias) with an optional `qualifier`, or
    /// as `workflow`: a state machine (name or ARN) the route starts instead,
    /// as API Gateway's Step Functions integrations do: an EXPRESS machine
    /// runs synchronously and its output is the answer (mapped like a
    /// function's), a STANDARD one answers 200 with the execution's ARN.
    #[serde(flatten, deserialize_with = "route_target")]
    pub target: Target,
    /// `1.0` (REST API) or `2.0` (HTTP API, default). HTTP routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
    #[serde(default)]
    pub auth: AuthKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSettings>,
    /// Largest request body in bytes (default 6 MB); larger ones get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<usize>,
    /// WebSocket only: `$request.body.<field>` (default `$request.body.action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_selection_expression: Option<String>,
    /// Who declared the route. `nimbus deploy` sets the manifest's path, so a
    /// redeploy removes the routes that manifest no longer declares; routes
    /// added any other way have none and are never removed like that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// A stored route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub id: String,
    #[serde(flatten)]
    pub spec: RouteSpec,
    pub created_at: String,
}

/// Settings of a function URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// `none` (AWS's `AuthType: NONE`), `function_key` or `api_key`.
    #[serde(default)]
    pub auth: AuthKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<usize>,
    /// Whether a function's streamed response is passed on as it is produced.
    #[serde(default, skip_serializing_if = "InvokeMode::is_buffered")]
    pub invoke_mode: InvokeMode,
}

/// A function URL's `InvokeMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvokeMode {
    /// The whole response, mapped by the payload 2.0 rules (AWS's `BUFFERED`).
    #[default]
    Buffered,
    /// A function that streams (`awslambda.streamifyResponse`) is answered
    /// chunk by chunk as it writes, its status and headers taken from the
    /// `HttpResponseStream` prelude; one that does not is answered buffered
    /// (AWS's `RESPONSE_STREAM`).
    ResponseStream,
}

impl InvokeMode {
    pub fn is_buffered(&self) -> bool {
        *self == InvokeMode::Buffered
    }
}

/// A stored function URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionUrl {
    pub function: String,
    pub url_id: String,
    /// Where to reach it: `http://<gateway>/@url/<url_id>/`.
    pub url: String,
    #[serde(flatten)]
    pub spec: UrlSpec,
    pub created_at: String,
}

/// Which header a gateway key is presented in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// `x-functions-key` / `?code=` (routes with `auth = "function_key"`).
    #[default]
    Function,
    /// `x-api-key` (routes with `auth = "api_key"`).
    Api,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Api => "api",
        }
    }
}

/// A key to create.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default)]
    pub kind: KeyKind,
    /// Only this function's routes and URL accept it.
    #[serde(default)]
    pub function: Option<String>,
    /// Every key-protected route and URL accepts it. A key must say one or
    /// the other: a key made for one application silently opening every
    /// other one is how a leaked key becomes a breach (review L14).
    #[serde(default)]
    pub global: bool,
    #[serde(default)]
    pub description: String,
}

/// A key as listed (never with its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayKey {
    pub id: String,
    pub kind: KeyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub description: String,
    pub created_at: String,
}

/// A freshly created key: the only time its value is shown.
#[derive(Debug, Clone, Serialize)]
pub struct NewGatewayKey {
    #[serde(flatten)]
    pub key: GatewayKey,
    pub value: String,
}

/// A route's target from its `function`, `qualifier` and `workflow` fields.
fn route_target<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
    use serde::de::Error;
    let f = TargetFields::deserialize(d)?;
    if f.workflow.is_some() && f.qualifier.is_some() {
        return Err(D::Error::custom(
            "qualifier applies to functions, not workflows",
        ));
    }
    Target::from_parts(f.function, f.qualifier, f.workflow, "a route").map_err(D::Error::custom)
}

/// `name` or `name:qualifier` → its parts.
pub fn split_target(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (s, None),
    }
}

impl RouteSpec {
    /// Normalises `function = "name:qualifier"` and checks everything that
    /// needs no other route: key syntax, settings that fit the API kind.
    pub fn normalize(&mut self) -> Result<(), String> {
        let (function, declared) = match &mut self.target {
            Target::Workflow { .. } if self.api == ApiKind::Websocket => {
                return Err("WebSocket routes invoke functions, not workflows".into());
            }
            Target::Workflow { .. } => return self.normalize_settings(),
            Target::Function { name, qualifier } => (name, qualifier),
        };
        let (name, qualifier) = split_target(function);
        if let Some(q) = qualifier {
            if declared.as_deref().is_some_and(|x| x != q) {
                return Err(format!(
                    "function `{function}` names qualifier `{q}` but qualifier is `{}`",
                    declared.as_deref().unwrap_or_default()
                ));
            }
            let (name, q) = (name.to_owned(), q.to_owned());
            *declared = Some(q);
            *function = name;
        }
        if declared.as_deref() == Some("") {
            *declared = None;
        }
        self.normalize_settings()
    }

    /// The part of [`RouteSpec::normalize`] that does not concern the target.
    fn normalize_settings(&mut self) -> Result<(), String> {
        self.route = self.route.trim().to_owned();
        match self.api {
            ApiKind::Http => {
                check_http_key(&self.route)?;
                if self.route_selection_expression.is_some() {
                    return Err("route_selection_expression is for WebSocket routes".into());
                }
            }
            ApiKind::Websocket => {
                if self.route.is_empty() || self.route.len() > 128 || self.route.contains(' ') {
                    return Err(format!(
                        "invalid WebSocket route key `{}`: expected $connect, $disconnect, $default or a selection value without spaces",
                        self.route
                    ));
                }
                if self.route.starts_with('$')
                    && ![CONNECT_ROUTE, DISCONNECT_ROUTE, DEFAULT_ROUTE_KEY]
                        .contains(&self.route.as_str())
                {
                    return Err(format!(
                        "unknown WebSocket route `{}`: the $ routes are $connect, $disconnect and $default",
                        self.route
                    ));
                }
                if self.payload_format.is_some() || self.cors.is_some() {
                    return Err(
                        "payload_format and cors apply to HTTP routes, not WebSocket routes".into(),
                    );
                }
                if let Some(e) = &self.route_selection_expression {
                    RouteSelector::parse(e).map_err(|e| e.to_string())?;
                }
            }
        }
        match self.payload_format.as_deref() {
            None | Some("1.0") | Some("2.0") => {}
            Some(other) => {
                return Err(format!(
                    "payload_format must be \"1.0\" or \"2.0\", got \"{other}\""
                ));
            }
        }
        check_auth(self.auth, self.jwt.as_ref())?;
        if let Some(r) = &self.rate_limit
            && (!r.rate.is_finite() || r.rate < 0.0 || r.burst == 0)
        {
            return Err("rate_limit needs rate >= 0 and burst >= 1".into());
        }
        if let Some(c) = &self.cors {
            c.validate()?;
        }
        check_body_limit(self.body_limit)
    }
}

/// A declared `body_limit`: at least 1 byte, at most [`MAX_BODY_LIMIT`].
pub fn check_body_limit(limit: Option<usize>) -> Result<(), String> {
    match limit {
        Some(0) => Err("body_limit must be at least 1 byte".into()),
        Some(n) if n > MAX_BODY_LIMIT => Err(format!(
            "body_limit must be at most {MAX_BODY_LIMIT} bytes (10 MB, API Gateway's payload limit), got {n}"
        )),
        _ => Ok(()),
    }
}

fn check_http_key(key: &str) -> Result<(), String> {
    if key == DEFAULT_ROUTE_KEY {
        return Ok(());
    }
    if key.len() > MAX_ROUTE_KEY_BYTES {
        return Err(format!(
            "invalid route: at most {MAX_ROUTE_KEY_BYTES} bytes, got {}",
            key.len()
        ));
    }
    // Validate by inserting into a scratch table: one parser, one set of rules.
    let mut t = RouteTable::new();
    let (method, template) = key.split_once(' ').ok_or_else(|| {
        format!("invalid route `{key}`: expected `METHOD /path` (e.g. `GET /users/{{id}}`) or `$default`")
    })?;
    t.insert(
        RouteMethod::parse(method).map_err(|e| e.to_string())?,
        template,
        (),
    )
    .map_err(|e| e.to_string())
}

/// Checks that JWT settings are present exactly when the auth mode is JWT.
pub fn check_auth(auth: AuthKind, jwt: Option<&JwtSettings>) -> Result<(), String> {
    match (auth, jwt) {
        (AuthKind::Jwt, None) => {
            Err("auth = jwt needs jwt settings (jwks_file, secret or secret_env)".into())
        }
        (AuthKind::Jwt, Some(j)) => {
            let sources = usize::from(j.jwks_file.is_some())
                + usize::from(j.secret.is_some())
                + usize::from(j.secret_env.is_some());
            if sources != 1 {
                return Err(
                    "jwt needs exactly one of jwks_file (RS256/ES256), secret or secret_env (HS256)"
                        .into(),
                );
            }
            if j.secret.as_deref().is_some_and(|s| s.len() < 16) {
                return Err("an HS256 secret must be at least 16 bytes".into());
            }
            Ok(())
        }
        (_, Some(_)) => Err("jwt settings need auth = \"jwt\"".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(route: &str) -> RouteSpec {
        serde_json::from_value(serde_json::json!({"route": route, "function": "f:live"})).unwrap()
    }

    #[test]
    fn normalize_splits_the_qualifier_and_checks_keys() {
        let mut s = spec("GET /users/{id}");
        s.normalize().unwrap();
        assert_eq!(s.target, Target::function("f", Some("live".into())));
        assert!(
            spec("GET users")
                .normalize()
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(spec("get /x").normalize().is_err());
        assert!(spec("/x").normalize().unwrap_err().contains("METHOD /path"));
        let mut ws = spec("$connect");
        ws.api = ApiKind::Websocket;
        ws.normalize().unwrap();
        let mut bad = spec("$conect");
        bad.api = ApiKind::Websocket;
        assert!(bad.normalize().is_err());
    }

    #[test]
    fn route_documents_keep_their_target_fields() {
        let route = |v: serde_json::Value| serde_json::from_value::<RouteSpec>(v);
        let w = route(serde_json::json!({"route": "GET /w", "workflow": "orders"})).unwrap();
        assert_eq!(w.target, Target::workflow("orders"));
        let doc = serde_json::to_value(&w).unwrap();
        assert_eq!(doc["workflow"], "orders");
        assert!(doc.get("function").is_none() && doc.get("qualifier").is_none());
        let mut f = spec("GET /f");
        f.normalize().unwrap();
        let doc = serde_json::to_value(&f).unwrap();
        assert_eq!(
            (&doc["function"], &doc["qualifier"]),
            (&"f".into(), &"live".into())
        );
        assert_eq!(route(doc).unwrap(), f, "a stored route reads back");
        for (bad, why) in [
            (serde_json::json!({"route": "GET /x"}), "exactly one"),
            (
                serde_json::json!({"route": "GET /x", "function": "f", "workflow": "w"}),
                "exactly one",
            ),
            (
                serde_json::json!({"route": "GET /x", "workflow": "w", "qualifier": "1"}),
                "qualifier applies to functions",
            ),
            (
                serde_json::json!({"route": "GET /x", "function": "f", "colour": "red"}),
                "unknown field `colour`",
            ),
        ] {
            let e = route(bad.clone()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn cors_wildcard_with_credentials_is_refused() {
        let mut s = spec("GET /x");
        s.cors = Some(CorsSettings {
            allow_origins: vec!["*".into()],
            allow_credentials: true,
            ..Default::default()
        });
        let e = s.clone().normalize().unwrap_err();
        assert!(e.contains("allow_credentials"), "{e}");
        s.cors.as_mut().unwrap().allow_credentials = false;
        s.clone().normalize().unwrap();
        s.cors = Some(CorsSettings {
            allow_origins: vec!["https://app.example".into()],
            allow_credentials: true,
            ..Default::default()
        });
        s.normalize().unwrap();
    }

    #[test]
    fn long_route_keys_are_refused() {
        let long = format!("GET /{}", "a/".repeat(MAX_ROUTE_KEY_BYTES));
        assert!(spec(&long).normalize().unwrap_err().contains("at most"));
    }

    #[test]
    fn body_limit_is_bounded() {
        let mut s = spec("GET /x");
        s.body_limit = Some(MAX_BODY_LIMIT + 1);
        assert!(s.clone().normalize().unwrap_err().contains("at most"));
        s.body_limit = Some(MAX_BODY_LIMIT);
        s.clone().normalize().unwrap();
        s.body_limit = Some(0);
        assert!(s.normalize().is_err());
    }

    #[test]
    fn jwt_settings_are_checked() {
        let mut s = spec("GET /x");
        s.auth = AuthKind::Jwt;
        assert!(s.normalize().is_err());
        s.jwt = Some(JwtSettings {
            secret: Some("0123456789abcdef".into()),
            ..Default::default()
        });
        s.normalize().unwrap();
        // The secret never leaves in a document.
        assert!(
            !serde_json::to_string(&s)
                .unwrap()
                .contains("0123456789abcdef")
        );
    }
}
