//! Request authentication primitives: static keys and JWT bearer tokens.
//!
//! Two families, because Nimbus fronts handlers written for two clouds:
//!
//! * **Keys.** Azure Functions callers send a function key as `?code=KEY` or
//!   `x-functions-key: KEY`; API Gateway callers send an API key as
//!   `x-api-key`. Nimbus stores only a SHA-256 hash of each key
//!   ([`KeyHash`]) and compares hashes in constant time.
//! * **JWT.** `Authorization: Bearer <jwt>` checked like an HTTP API JWT
//!   authorizer: signature (HS256 shared secret, or RS256/ES256 keys from a
//!   JWKS file picked by `kid`), issuer, audience, `exp`/`nbf` with a small
//!   leeway. The accepted claims become [`JwtPrincipal`], which the 2.0 event
//!   exposes as `requestContext.authorizer.jwt`.
//!
//! Every rejection has its own [`GatewayAuthError`] variant so logs say *why*, while
//! clients only ever see API Gateway's terse answers (401 `Unauthorized`,
//! 403 `Forbidden` for API keys), which reveal nothing useful to a prober.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Response, StatusCode, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::apigw::{gateway_error, query_pairs};

/// Header carrying an Azure-style function key.
pub const FUNCTION_KEY_HEADER: &str = "x-functions-key";
/// Query parameter carrying an Azure-style function key.
pub const FUNCTION_KEY_QUERY: &str = "code";
/// Header carrying an API Gateway API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 10;
/// Body of a 401 answer.
pub const UNAUTHORIZED_BODY: &str = r#"{"message":"Unauthorized"}"#;
/// Body of a 403 answer.
pub const FORBIDDEN_BODY: &str = r#"{"message":"Forbidden"}"#;

/// Why a request was not authenticated. `Display` is for logs; clients get
/// [`GatewayAuthError::response`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayAuthError {
    /// No function key (`x-functions-key` or `?code=`).
    #[error("missing function key")]
    MissingFunctionKey,
    /// No `x-api-key` header.
    #[error("missing API key")]
    MissingApiKey,
    /// The key matches no stored hash.
    #[error("invalid key")]
    InvalidKey,
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    MissingToken,
    /// Not a JWT, or a JWT whose parts cannot be decoded.
    #[error("malformed token")]
    MalformedToken,
    /// The signature does not verify with the selected key.
    #[error("bad token signature")]
    BadSignature,
    /// The token's algorithm is not the one configured for its key.
    #[error("token algorithm not allowed")]
    WrongAlgorithm,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` contains none of the configured audiences.
    #[error("wrong token audience")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`) is missing.
    #[error("token lacks the `{0}` claim")]
    MissingClaim(String),
    /// The token has no `kid`, or one the JWKS does not contain.
    #[error("unknown token key id")]
    UnknownKid,
}

impl GatewayAuthError {
    /// The status API Gateway answers: 403 for API keys, 401 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingApiKey => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The client-facing answer: `{"message":"Unauthorized"}` (401) or
    /// `{"message":"Forbidden"}` (403), with the request id.
    pub fn response(&self, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let body = if status == StatusCode::FORBIDDEN {
            FORBIDDEN_BODY
        } else {
            UNAUTHORIZED_BODY
        };
        let mut resp = gateway_error(status, body, request_id);
        if matches!(
            self,
            Self::MissingToken
                | Self::MalformedToken
                | Self::BadSignature
                | Self::WrongAlgorithm
                | Self::Expired
                | Self::NotYetValid
                | Self::WrongIssuer
                | Self::WrongAudience
                | Self::MissingClaim(_)
                | Self::UnknownKid
        ) {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

// ---------------------------------------------------------------- keys ----

/// SHA-256 of a key, the only form in which keys are stored.
///
/// A plain (unsalted, fast) hash is the right tool here because keys are
/// generated by [`generate_key`] with 256 bits from the OS RNG: no dictionary
/// or brute force can invert such a hash, so a slow password hash (argon2,
/// bcrypt) would only add latency to every request. A leaked database reveals
/// no usable key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Lower-case hex, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses what [`KeyHash::to_hex`] wrote.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// Hashes a presented key.
pub fn hash_key(key: &str) -> KeyHash {
    KeyHash(Sha256::digest(key.as_bytes()).into())
}

/// A new key: 32 random bytes as unpadded base64url (43 characters, safe in
/// URLs and headers), and its hash. Show the plaintext once; store the hash.
pub fn generate_key() -> Result<(String, KeyHash), getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let key = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_key(&key);
    Ok((key, hash))
}

/// Checks `presented` against stored hashes; returns the index of the match.
///
/// Every stored hash is compared in constant time and the loop never stops
/// early, so timing reveals neither which key nor how much of it matched.
pub fn verify_key(presented: &str, stored: &[KeyHash]) -> Option<usize> {
    let h = hash_key(presented);
    let mut found = None;
    for (i, s) in stored.iter().enumerate() {
        if bool::from(h.0.ct_eq(&s.0)) {
            found = Some(i);
        }
    }
    found
}

/// The function key of a request: `x-functions-key` wins over `?code=`.
pub fn function_key<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    if let Some(v) = headers
        .get(FUNCTION_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return Some(Cow::Borrowed(v));
    }
    query_pairs(uri.query()?)
        .find(|(k, v)| k == FUNCTION_KEY_QUERY && !v.is_empty())
        .map(|(_, v)| v)
}

/// Authenticates a request with a function key against `stored`.
pub fn check_function_key(
    uri: &Uri,
    headers: &HeaderMap,
    stored: &[KeyHash],
) -> Result<usize, GatewayAuthError> {
    let key = function_key(uri, headers).ok_or(GatewayAuthError::MissingFunctionKey)?;
    verify_key(&key, stored).ok_or(GatewayAuthError::InvalidKey)
}

/// Authenticates a request with an `x-api-key` against `stored`. API Gateway
/// answers both a missing and a wrong key with 403.
pub fn check_api_key(headers: &HeaderMap, stored: &[KeyHash]) -> Result<usize, GatewayAuthError> {
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or(GatewayAuthError::MissingApiKey)?;
    verify_key(key, stored).ok_or(GatewayAuthError::MissingApiKey)
}

// ----------------------------------------------------------------- JWT ----

/// What a JWT authorizer passes to the function.
///
/// Claims are flattened to strings, as HTTP API JWT authorizers do (numbers
/// and booleans in their JSON spelling, arrays and objects as JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtPrincipal {
    /// `requestContext.authorizer.jwt.claims`.
    pub claims: BTreeMap<String, String>,
    /// `requestContext.authorizer.jwt.scopes`: from `scope` (space separated)
    /// or `scp`; `None` when the token has neither.
    pub scopes: Option<Vec<String>>,
}

impl JwtPrincipal {
    fn from_claims(claims: serde_json::Map<String, serde_json::Value>) -> Self {
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(serde_json::Value::String(s)) => {
                Some(s.split_whitespace().map(str::to_owned).collect())
            }
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        };
        let claims = claims
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect();
        Self { claims, scopes }
    }
}

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read JWKS file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a JWKS document.
    #[error("invalid JWKS: {0}")]
    Parse(String),
    /// No usable signing key (RSA or EC with a `kid`) in the set.
    #[error("JWKS has no usable signing key with a `kid`")]
    NoKeys,
}

#[derive(Clone)]
enum Keys {
    Shared(DecodingKey),
    ByKid(HashMap<String, (DecodingKey, Algorithm)>),
}

/// Validates bearer JWTs for one authorizer configuration.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway_secs: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Shared(_) => "HS256 shared secret".to_owned(),
            Keys::ByKid(m) => format!("{} JWKS keys", m.len()),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Some(Algorithm::RS256),
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Some(Algorithm::RS384),
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Some(Algorithm::RS512),
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Some(Algorithm::PS256),
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES384))
            if p.curve == EllipticCurve::P384 =>
        {
            Some(Algorithm::ES384)
        }
        _ => None,
    }
}

impl JwtVerifier {
    /// HS256 with a shared secret. `issuer`/`audiences` are required claims
    /// when given (an empty audience list disables the audience check).
    pub fn hs256(secret: &[u8], issuer: Option<&str>, audiences: &[&str]) -> Self {
        Self {
            keys: Keys::Shared(DecodingKey::from_secret(secret)),
            issuer: issuer.map(str::to_owned),
            audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Public keys from a JWKS document, selected by the token's `kid`. RSA
    /// (RS256 unless the key says RS384/RS512/PS256) and EC P-256/P-384 keys
    /// with a `kid` are used; others (symmetric, unknown curves) are skipped.
    pub fn from_jwks_json(
        jwks: &[u8],
        issuer: Option<&str>,
        audiences: &[&str],
    ) -> Result<Self, JwksError> {
        let set: JwkSet =
            serde_json::from_slice(jwks).map_err(|e| JwksError::Parse(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.as_ref(), jwk_algorithm(jwk)) else {
                continue;
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| JwksError::Parse(e.to_string()))?;
            keys.insert(kid.clone(), (key, alg));
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Self {
            keys: Keys::ByKid(keys),
            issuer: issuer.map(str::to_owned),
            audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        })
    }

    /// [`JwtVerifier::from_jwks_json`] from a file.
    pub fn from_jwks_file(
        path: &Path,
        issuer: Option<&str>,
        audiences: &[&str],
    ) -> Result<Self, JwksError> {
        let bytes = std::fs::read(path).map_err(|source| JwksError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_jwks_json(&bytes, issuer, audiences)
    }

    /// Changes the `exp`/`nbf` clock-skew allowance.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Validates the `Authorization: Bearer <jwt>` header of a request.
    pub fn verify_request(&self, headers: &HeaderMap) -> Result<JwtPrincipal, GatewayAuthError> {
        let token = bearer_token(headers).ok_or(GatewayAuthError::MissingToken)?;
        self.verify(token)
    }

    /// Validates one token.
    pub fn verify(&self, token: &str) -> Result<JwtPrincipal, GatewayAuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| GatewayAuthError::MalformedToken)?;
        let (key, alg) = match &self.keys {
            Keys::Shared(key) => (key, Algorithm::HS256),
            Keys::ByKid(keys) => {
                let kid = header.kid.as_deref().ok_or(GatewayAuthError::UnknownKid)?;
                let (key, alg) = keys.get(kid).ok_or(GatewayAuthError::UnknownKid)?;
                (key, *alg)
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &self.validation(alg),
        )
        .map_err(|e| map_jwt_error(e.kind()))?;
        Ok(JwtPrincipal::from_claims(data.claims))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

fn map_jwt_error(kind: &ErrorKind) -> GatewayAuthError {
    match kind {
        ErrorKind::InvalidSignature => GatewayAuthError::BadSignature,
        ErrorKind::ExpiredSignature => GatewayAuthError::Expired,
        ErrorKind::ImmatureSignature => GatewayAuthError::NotYetValid,
        ErrorKind::InvalidIssuer => GatewayAuthError::WrongIssuer,
        ErrorKind::InvalidAudience => GatewayAuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm => GatewayAuthError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(c) => GatewayAuthError::MissingClaim(c.clone()),
        _ => GatewayAuthError::MalformedToken,
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively, as RFC 7235 says).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    const PRIVATE_PEM: &[u8] = include_bytes!("../tests/fixtures/jwt-rs256-private.pem");
    const JWKS: &[u8] = include_bytes!("../tests/fixtures/jwks.json");
    const ISS: &str = "https://issuer.example";
    const AUD: &str = "nimbus-api";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        let now = get_current_timestamp() as i64;
        json!({"iss": ISS, "aud": AUD, "sub": "user-1", "exp": now + exp_offset,
               "iat": now, "scope": "read write", "admin": true})
    }

    fn hs_token(secret: &[u8], claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn rs_token(kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap(),
        )
        .unwrap()
    }

    fn hs() -> JwtVerifier {
        JwtVerifier::hs256(b"s3cret-s3cret-s3cret-s3cret-0123", Some(ISS), &[AUD])
    }

    fn rs() -> JwtVerifier {
        JwtVerifier::from_jwks_json(JWKS, Some(ISS), &[AUD]).unwrap()
    }

    #[test]
    fn generated_keys_verify_and_hash_round_trips() {
        let (key, hash) = generate_key().unwrap();
        assert_eq!(key.len(), 43);
        assert_eq!(hash, hash_key(&key));
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
        let (other, other_hash) = generate_key().unwrap();
        assert_ne!(key, other);
        let stored = [other_hash, hash];
        assert_eq!(verify_key(&key, &stored), Some(1));
        assert_eq!(verify_key(&other, &stored), Some(0));
        assert_eq!(verify_key("nope", &stored), None);
        assert_eq!(verify_key(&key, &[]), None);
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_key("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(format!("{hash:?}").starts_with("KeyHash("));
    }

    #[test]
    fn function_key_from_header_or_query() {
        let (key, hash) = generate_key().unwrap();
        let stored = [hash];
        let uri: Uri = format!("/api/f?x=1&code={key}").parse().unwrap();
        assert_eq!(check_function_key(&uri, &HeaderMap::new(), &stored), Ok(0));
        let bare: Uri = "/api/f".parse().unwrap();
        let h = headers(&[("x-functions-key", &key)]);
        assert_eq!(check_function_key(&bare, &h, &stored), Ok(0));
        // Header wins over the query.
        let wrong_q: Uri = "/api/f?code=wrong".parse().unwrap();
        assert_eq!(check_function_key(&wrong_q, &h, &stored), Ok(0));
        assert_eq!(
            check_function_key(&wrong_q, &HeaderMap::new(), &stored),
            Err(GatewayAuthError::InvalidKey)
        );
        assert_eq!(
            check_function_key(&bare, &HeaderMap::new(), &stored),
            Err(GatewayAuthError::MissingFunctionKey)
        );
        let empty: Uri = "/api/f?code=".parse().unwrap();
        assert_eq!(
            check_function_key(&empty, &HeaderMap::new(), &stored),
            Err(GatewayAuthError::MissingFunctionKey)
        );
        let r = GatewayAuthError::InvalidKey.response("r1");
        assert_eq!(r.status(), 401);
        assert_eq!(r.body().as_ref(), UNAUTHORIZED_BODY.as_bytes());
    }

    #[test]
    fn api_key_missing_or_wrong_is_403() {
        let (key, hash) = generate_key().unwrap();
        let stored = [hash];
        assert_eq!(
            check_api_key(&headers(&[("x-api-key", &key)]), &stored),
            Ok(0)
        );
        let missing = check_api_key(&HeaderMap::new(), &stored).unwrap_err();
        let wrong = check_api_key(&headers(&[("x-api-key", "bad")]), &stored).unwrap_err();
        for err in [missing, wrong] {
            let r = err.response("r2");
            assert_eq!(r.status(), 403);
            assert_eq!(r.body().as_ref(), FORBIDDEN_BODY.as_bytes());
            assert_eq!(r.headers()["x-amzn-requestid"], "r2");
        }
    }

    #[test]
    fn hs256_valid_token_yields_claims_and_scopes() {
        let token = hs_token(b"s3cret-s3cret-s3cret-s3cret-0123", &claims(300));
        let h = headers(&[("authorization", &format!("Bearer {token}"))]);
        let p = hs().verify_request(&h).unwrap();
        assert_eq!(p.claims["sub"], "user-1");
        assert_eq!(p.claims["iss"], ISS);
        assert_eq!(p.claims["admin"], "true");
        assert!(p.claims["exp"].parse::<u64>().is_ok());
        assert_eq!(p.scopes, Some(vec!["read".to_owned(), "write".to_owned()]));
    }

    #[test]
    fn hs256_rejections() {
        let secret = b"s3cret-s3cret-s3cret-s3cret-0123";
        let v = hs();
        assert_eq!(
            v.verify_request(&HeaderMap::new()),
            Err(GatewayAuthError::MissingToken)
        );
        assert_eq!(
            v.verify_request(&headers(&[("authorization", "Basic abc")])),
            Err(GatewayAuthError::MissingToken)
        );
        assert_eq!(v.verify("not.a.jwt"), Err(GatewayAuthError::MalformedToken));
        assert_eq!(
            v.verify(&hs_token(b"another-secret-another-secret-01", &claims(300))),
            Err(GatewayAuthError::BadSignature)
        );
        assert_eq!(
            v.verify(&hs_token(secret, &claims(-120))),
            Err(GatewayAuthError::Expired)
        );
        // Within the leeway: still accepted.
        assert!(v.verify(&hs_token(secret, &claims(-5))).is_ok());
        let mut c = claims(300);
        c["iss"] = json!("https://evil.example");
        assert_eq!(
            v.verify(&hs_token(secret, &c)),
            Err(GatewayAuthError::WrongIssuer)
        );
        let mut c = claims(300);
        c["aud"] = json!(["other"]);
        assert_eq!(
            v.verify(&hs_token(secret, &c)),
            Err(GatewayAuthError::WrongAudience)
        );
        let mut c = claims(300);
        c["nbf"] = json!(get_current_timestamp() + 3600);
        assert_eq!(
            v.verify(&hs_token(secret, &c)),
            Err(GatewayAuthError::NotYetValid)
        );
        let mut c = claims(300);
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            v.verify(&hs_token(secret, &c)),
            Err(GatewayAuthError::MissingClaim("aud".into()))
        );
        let mut c = claims(300);
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            v.verify(&hs_token(secret, &c)),
            Err(GatewayAuthError::MissingClaim("exp".into()))
        );
        // An RS256 token is refused by an HS256 verifier.
        assert_eq!(
            v.verify(&rs_token(Some("test-key-1"), &claims(300))),
            Err(GatewayAuthError::WrongAlgorithm)
        );
        let r = GatewayAuthError::Expired.response("r3");
        assert_eq!(r.status(), 401);
        assert_eq!(r.body().as_ref(), br#"{"message":"Unauthorized"}"#);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn rs256_with_jwks() {
        let v = rs();
        let token = rs_token(Some("test-key-1"), &claims(300));
        let h = headers(&[("authorization", &format!("bearer {token}"))]);
        let p = v.verify_request(&h).unwrap();
        assert_eq!(p.claims["sub"], "user-1");

        assert_eq!(
            v.verify(&rs_token(Some("nope"), &claims(300))),
            Err(GatewayAuthError::UnknownKid)
        );
        assert_eq!(
            v.verify(&rs_token(None, &claims(300))),
            Err(GatewayAuthError::UnknownKid)
        );
        assert_eq!(
            v.verify(&rs_token(Some("test-key-1"), &claims(-120))),
            Err(GatewayAuthError::Expired)
        );
        let mut c = claims(300);
        c["aud"] = json!("someone-else");
        assert_eq!(
            v.verify(&rs_token(Some("test-key-1"), &c)),
            Err(GatewayAuthError::WrongAudience)
        );
        let mut c = claims(300);
        c["iss"] = json!("https://evil.example");
        assert_eq!(
            v.verify(&rs_token(Some("test-key-1"), &c)),
            Err(GatewayAuthError::WrongIssuer)
        );

        // Tampered payload: signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(300);
        forged["sub"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert_eq!(
            v.verify(&parts.join(".")),
            Err(GatewayAuthError::BadSignature)
        );

        // HS256 token claiming a JWKS kid: algorithm confusion is refused.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-1".into());
        let confused = encode(&header, &claims(300), &EncodingKey::from_secret(b"x")).unwrap();
        assert_eq!(v.verify(&confused), Err(GatewayAuthError::WrongAlgorithm));
    }

    #[test]
    fn jwks_loading() {
        let dir = std::env::temp_dir().join(format!("nimbus-gw-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, JWKS).unwrap();
        let v = JwtVerifier::from_jwks_file(&path, None, &[]).unwrap();
        assert!(format!("{v:?}").contains("2 JWKS keys"), "{v:?}");
        // No issuer/audience configured: those checks are off.
        let mut c = claims(300);
        c["aud"] = json!("anything");
        c["iss"] = json!("anyone");
        assert!(v.verify(&rs_token(Some("test-key-1"), &c)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(matches!(
            JwtVerifier::from_jwks_file(Path::new("/nonexistent/jwks.json"), None, &[]),
            Err(JwksError::Io { .. })
        ));
        assert!(matches!(
            JwtVerifier::from_jwks_json(b"{", None, &[]),
            Err(JwksError::Parse(_))
        ));
        assert!(matches!(
            JwtVerifier::from_jwks_json(
                br#"{"keys":[{"kty":"oct","k":"AAAA","kid":"s"}]}"#,
                None,
                &[]
            ),
            Err(JwksError::NoKeys)
        ));
    }

    #[test]
    fn scopes_from_scp_array() {
        let mut c = serde_json::Map::new();
        c.insert("scp".into(), json!(["a", "b"]));
        c.insert("n".into(), json!(3));
        c.insert("o".into(), json!({"k": "v"}));
        let p = JwtPrincipal::from_claims(c);
        assert_eq!(p.scopes, Some(vec!["a".into(), "b".into()]));
        assert_eq!(p.claims["n"], "3");
        assert_eq!(p.claims["o"], r#"{"k":"v"}"#);
        assert_eq!(
            JwtPrincipal::from_claims(serde_json::Map::new()).scopes,
            None
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "BEARER  abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer")])), None);
    }
}
