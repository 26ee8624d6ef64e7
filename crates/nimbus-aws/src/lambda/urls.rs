//! Create/Get/Update/Delete/ListFunctionUrlConfigs: the Lambda API's door to
//! the gateway's function URLs, the same ones `nimbus url` and
//! `/v1/functions/{name}/url` manage, so a URL made with boto3's
//! `create_function_url_config` answers at once.
//!
//! What differs from AWS, and why: a function has at most one URL (the
//! gateway keys URLs by function), served at `http://<gateway>/@url/<id>/`
//! (and by `Host: <id>.lambda-url.<region>.on.aws`), which is what
//! `FunctionUrl` says, since that is where callers can reach it. `AWS_IAM`
//! (SigV4-signed URL calls) is not implemented and is refused with a
//! `ValidationException`, never accepted and then ignored. `RESPONSE_STREAM`
//! URLs pass a streaming function's response on as it is produced. A
//! URL given key auth through the native API is shown as `AWS_IAM`, the only
//! `AuthType` that means "callers must authenticate", and keeps its auth when
//! an update names `AWS_IAM` or no `AuthType`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_gateway::config::CorsSettings;
use nimbus_gateway::{AuthKind, FunctionUrl, GatewayError, InvokeMode, UrlSpec};
use serde_json::{Map, Value, json};

use super::functions::{json_body, query_param, str_field};
use super::shapes::{FunctionId, parse_function_id};
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

/// AWS's answer for a function without a URL (for that qualifier).
const NO_URL: &str = "The resource you requested does not exist.";

fn target(raw: &str, q: &Option<String>) -> Result<FunctionId> {
    let mut id = parse_function_id(raw, query_param(q, "Qualifier").as_deref())?;
    match id.qualifier.as_deref() {
        Some("$LATEST") => id.qualifier = None,
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{v}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (^\\$LATEST$)|((?!^[0-9]+$)([a-zA-Z0-9-_]+))"
            )));
        }
        _ => {}
    }
    Ok(id)
}

fn error(s: &AwsState, id: &FunctionId, e: GatewayError) -> AwsError {
    let code = e.code();
    match e {
        GatewayError::FunctionNotFound(_) => {
            AwsError::not_found(format!("Function not found: {}", id.arn(s)))
        }
        GatewayError::NotFound(_) => AwsError::not_found(NO_URL),
        // The function URL operations model their invalid input this way.
        GatewayError::Invalid(m) => AwsError::validation(m),
        other => AwsError::from_code(code, other.to_string()),
    }
}

/// The function's URL when it serves `id`'s qualifier.
async fn existing(s: &AwsState, id: &FunctionId) -> Result<FunctionUrl> {
    s.control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(s)))?;
    let url = s
        .gateway
        .url(id.name.as_str())
        .await
        .map_err(|e| error(s, id, e))?;
    if url.spec.qualifier != id.qualifier {
        return Err(AwsError::not_found(NO_URL));
    }
    Ok(url)
}

fn auth_type(auth: AuthKind) -> &'static str {
    match auth {
        AuthKind::None => "NONE",
        _ => "AWS_IAM",
    }
}

/// `AuthType` of a request: `NONE` only; `AWS_IAM` keeps `current` key auth.
fn parse_auth(m: &Map<String, Value>, current: Option<AuthKind>) -> Result<Option<AuthKind>> {
    match str_field(m, "AuthType")?.as_deref() {
        None => Ok(current),
        Some("NONE") => Ok(Some(AuthKind::None)),
        Some("AWS_IAM") => match current {
            Some(k) if k != AuthKind::None => Ok(Some(k)),
            _ => Err(AwsError::validation(
                "AuthType AWS_IAM (SigV4-signed URL calls) is not supported by Nimbus; use NONE, or key auth through `nimbus url create --auth function-key`",
            )),
        },
        Some(other) => Err(AwsError::validation(format!(
            "1 validation error detected: Value '{other}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"
        ))),
    }
}

/// The `InvokeMode` member, when present.
fn parse_invoke_mode(m: &Map<String, Value>) -> Result<Option<InvokeMode>> {
    match str_field(m, "InvokeMode")?.as_deref() {
        None => Ok(None),
        Some("BUFFERED") => Ok(Some(InvokeMode::Buffered)),
        Some("RESPONSE_STREAM") => Ok(Some(InvokeMode::ResponseStream)),
        Some(other) => Err(AwsError::validation(format!(
            "1 validation error detected: Value '{other}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]"
        ))),
    }
}

fn strings(c: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| AwsError::validation(format!("Cors.{key} must be strings")))
            })
            .collect(),
        Some(_) => Err(AwsError::validation(format!(
            "Cors.{key} must be a list of strings"
        ))),
    }
}

/// The `Cors` member, when present.
fn parse_cors(m: &Map<String, Value>) -> Result<Option<CorsSettings>> {
    let c = match m.get("Cors") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(AwsError::validation("Cors must be an object")),
    };
    let allow_methods = strings(c, "AllowMethods")?;
    if allow_methods.len() > 6 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'cors.allowMethods' failed to satisfy constraint: Member must have length less than or equal to 6",
        ));
    }
    let max_age = match c.get("MaxAge") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n <= 86_400).ok_or_else(|| {
            AwsError::validation("Cors.MaxAge must be an integer from 0 to 86400")
        })?),
    };
    Ok(Some(CorsSettings {
        allow_origins: strings(c, "AllowOrigins")?,
        allow_methods,
        allow_headers: strings(c, "AllowHeaders")?,
        expose_headers: strings(c, "ExposeHeaders")?,
        max_age,
        allow_credentials: c
            .get("AllowCredentials")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// The `FunctionUrlConfig` shape; `LastModifiedTime` is left out of the
/// create answer, as AWS does. Nimbus keeps no separate modification time.
fn shape(s: &AwsState, name: &str, u: &FunctionUrl, modified: bool) -> Value {
    let base = s.control.config().function_arn(name);
    let arn = match &u.spec.qualifier {
        Some(q) => format!("{base}:{q}"),
        None => base,
    };
    let mut v = json!({
        "FunctionUrl": u.url,
        "FunctionArn": arn,
        "AuthType": auth_type(u.spec.auth),
        "CreationTime": u.created_at,
        "InvokeMode": match u.spec.invoke_mode {
            InvokeMode::Buffered => "BUFFERED",
            InvokeMode::ResponseStream => "RESPONSE_STREAM",
        },
    });
    if modified {
        v["LastModifiedTime"] = json!(u.created_at);
    }
    if let Some(c) = &u.spec.cors {
        v["Cors"] = json!({
            "AllowCredentials": c.allow_credentials,
            "AllowHeaders": c.allow_headers,
            "AllowMethods": c.allow_methods,
            "AllowOrigins": c.allow_origins,
            "ExposeHeaders": c.expose_headers,
        });
        if let Some(age) = c.max_age {
            v["Cors"]["MaxAge"] = json!(age);
        }
    }
    v
}

pub async fn create(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response> {
    let id = target(&raw, &q)?;
    let m = json_body(body).await?;
    if !m.contains_key("AuthType") {
        return Err(AwsError::validation(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
        ));
    }
    let spec = UrlSpec {
        qualifier: id.qualifier.clone(),
        auth: parse_auth(&m, None)?.unwrap_or_default(),
        cors: parse_cors(&m)?,
        body_limit: None,
        invoke_mode: parse_invoke_mode(&m)?.unwrap_or_default(),
    };
    match s.gateway.url(id.name.as_str()).await {
        Ok(_) => {
            return Err(AwsError::new(
                409,
                "ResourceConflictException",
                format!(
                    "Failed to create function url config for [functionArn = {}]. Error message: FunctionUrlConfig exists for this Lambda function",
                    id.arn(&s)
                ),
            ));
        }
        Err(GatewayError::NotFound(_)) => {}
        Err(e) => return Err(error(&s, &id, e)),
    }
    let (url, _) = s
        .gateway
        .put_url(id.name.as_str(), spec)
        .await
        .map_err(|e| error(&s, &id, e))?;
    Ok((
        StatusCode::CREATED,
        Json(shape(&s, id.name.as_str(), &url, false)),
    )
        .into_response())
}

pub async fn get(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let id = target(&raw, &q)?;
    let url = existing(&s, &id).await?;
    Ok(Json(shape(&s, id.name.as_str(), &url, true)))
}

pub async fn update(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<Value>> {
    let id = target(&raw, &q)?;
    let m = json_body(body).await?;
    let invoke_mode = parse_invoke_mode(&m)?;
    let current = existing(&s, &id).await?;
    let mut spec = current.spec;
    if let Some(mode) = invoke_mode {
        spec.invoke_mode = mode;
    }
    spec.auth = parse_auth(&m, Some(spec.auth))?.unwrap_or_default();
    if let Some(c) = parse_cors(&m)? {
        spec.cors = Some(c);
    }
    let (url, _) = s
        .gateway
        .put_url(id.name.as_str(), spec)
        .await
        .map_err(|e| error(&s, &id, e))?;
    Ok(Json(shape(&s, id.name.as_str(), &url, true)))
}

pub async fn delete(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode> {
    let id = target(&raw, &q)?;
    existing(&s, &id).await?;
    s.gateway
        .remove_url(id.name.as_str())
        .await
        .map_err(|e| error(&s, &id, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// ListFunctionUrlConfigs: at most one entry (one URL per function), so
/// `Marker` and `MaxItems` never need a second page.
pub async fn list(State(s): State<AwsState>, Path(raw): Path<String>) -> Result<Json<Value>> {
    let id = target(&raw, &None)?;
    s.control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    let configs: Vec<Value> = match s.gateway.url(id.name.as_str()).await {
        Ok(u) => vec![shape(&s, id.name.as_str(), &u, true)],
        Err(GatewayError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(error(&s, &id, e)),
    };
    Ok(Json(json!({ "FunctionUrlConfigs": configs })))
}
