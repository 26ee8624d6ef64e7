//! Function management operations.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::limits::{
    DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES,
};
use nimbus_core::{FunctionConfig, Runtime};
use nimbus_engine::{ConfigPatch, CreateFunction};
use serde_json::{Map, Value, json};

use nimbus_core::permissions::Permission;

use super::shapes::{FunctionId, configuration, parse_function_id, unqualified};
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

const MAX_JSON: usize = 70_167_211;

pub(super) async fn json_body(body: Body) -> Result<Map<String, Value>> {
    let bytes = nimbus_api::read_body(body, MAX_JSON, "request")
        .await
        .map_err(|e| AwsError::too_large(e.message))?;
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AwsError::new(
            400,
            "InvalidRequestContentException",
            "The request body must be a JSON object",
        )),
        Err(e) => Err(AwsError::new(
            400,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        )),
    }
}

/// Values of a query parameter, decoded (botocore sends `%20` for spaces; `+` is literal).
fn query_params(raw: &Option<String>, key: &str) -> Vec<String> {
    let decode = |t: &str| String::from_utf8_lossy(&crate::sigv4::percent_decode(t)).into_owned();
    raw.as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

pub(super) fn query_param(raw: &Option<String>, key: &str) -> Option<String> {
    query_params(raw, key).into_iter().next()
}

pub(super) fn str_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AwsError::validation(format!("{key} must be a string"))),
    }
}

fn u32_field(m: &Map<String, Value>, key: &str) -> Result<Option<u32>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| AwsError::validation(format!("{key} must be a non-negative integer"))),
    }
}

fn env_field(m: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>> {
    let Some(env) = m.get("Environment").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let vars = env.get("Variables").cloned().unwrap_or(json!({}));
    serde_json::from_value(vars)
        .map(Some)
        .map_err(|_| AwsError::validation("Environment.Variables must map strings to strings"))
}

fn tags_field(m: &Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| AwsError::validation(format!("{key} must map strings to strings"))),
    }
}

fn check_role(role: &str) -> Result<()> {
    let ok = role.starts_with("arn:")
        && role.split(':').nth(2) == Some("iam")
        && role
            .split(':')
            .nth(4)
            .is_some_and(|acct| acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()))
        && role
            .split(':')
            .nth(5)
            .is_some_and(|r| r.starts_with("role/") && r.len() > 5);
    if ok {
        Ok(())
    } else {
        Err(AwsError::validation(format!(
            "1 validation error detected: Value '{role}' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
        )))
    }
}

/// Settings Nimbus cannot honour yet are refused, never silently ignored.
fn refuse_unsupported(m: &Map<String, Value>) -> Result<()> {
    let non_empty = |k: &str| match m.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => o.values().any(|v| match v {
            Value::Array(a) => !a.is_empty(),
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        }),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    for key in [
        "Layers",
        "VpcConfig",
        "DeadLetterConfig",
        "KMSKeyArn",
        "FileSystemConfigs",
        "ImageConfig",
        "CodeSigningConfigArn",
    ] {
        if non_empty(key) {
            return Err(AwsError::unsupported(key));
        }
    }
    if let Some(p) = m
        .get("PackageType")
        .and_then(Value::as_str)
        .filter(|p| *p != "Zip")
    {
        return Err(AwsError::unsupported(&format!("PackageType {p}")));
    }
    if let Some(a) = m.get("Architectures").and_then(Value::as_array)
        && a.iter().any(|x| x.as_str() != Some("x86_64"))
    {
        return Err(AwsError::unsupported(
            "an architecture other than x86_64 on this host",
        ));
    }
    if m.get("TracingConfig")
        .and_then(|t| t.get("Mode"))
        .and_then(Value::as_str)
        == Some("Active")
    {
        return Err(AwsError::unsupported("TracingConfig Mode Active"));
    }
    if m.get("SnapStart")
        .and_then(|t| t.get("ApplyOn"))
        .and_then(Value::as_str)
        .is_some_and(|v| v != "None")
    {
        return Err(AwsError::unsupported("SnapStart"));
    }
    if m.get("LoggingConfig")
        .and_then(|t| t.get("LogFormat"))
        .and_then(Value::as_str)
        .is_some_and(|v| v != "Text")
    {
        return Err(AwsError::unsupported("LoggingConfig LogFormat JSON"));
    }
    Ok(())
}

fn runtime_field(m: &Map<String, Value>) -> Result<Option<(Runtime, String)>> {
    let Some(id) = str_field(m, "Runtime")? else {
        return Ok(None);
    };
    let runtime = id.parse::<Runtime>().map_err(|_| {
        AwsError::invalid(format!(
            "Value {id} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [python3.x, nodejsNN.x, provided, provided.al2, provided.al2023] (Nimbus runs them on the machine's interpreters)"
        ))
    })?;
    Ok(Some((runtime, id)))
}

/// Decodes `ZipFile` and stores it; refuses the code locations Nimbus lacks.
async fn store_zip(s: &AwsState, code: &Map<String, Value>) -> Result<String> {
    if code.get("S3Bucket").is_some_and(|v| !v.is_null()) {
        return Err(AwsError::unsupported("Code from S3Bucket/S3Key"));
    }
    if code.get("ImageUri").is_some_and(|v| !v.is_null()) {
        return Err(AwsError::unsupported(
            "Code from ImageUri (container images)",
        ));
    }
    let b64 = code
        .get("ZipFile")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::invalid("Code.ZipFile is required"))?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            AwsError::invalid(
                "Could not unzip uploaded file. Please check your file, then try to upload again.",
            )
        })?;
    if zip.len() as u64 > MAX_ZIP_BYTES {
        return Err(AwsError::too_large(format!(
            "Zipped size must be smaller than {MAX_ZIP_BYTES} bytes"
        )));
    }
    let info = s
        .control
        .upload_code(zip.into())
        .await
        .map_err(|e| match e {
            nimbus_engine::EngineError::Invalid(v)
                if v.message.contains("unzip") || v.message.contains("unpacks") =>
            {
                AwsError::invalid(format!(
                    "Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
                ))
            }
            other => AwsError::from_engine(other, ""),
        })?;
    Ok(info.sha256)
}

/// `EphemeralStorage: {"Size": MB}` (validated with the rest of the configuration).
fn ephemeral_storage_field(m: &Map<String, Value>) -> Result<Option<u32>> {
    match m.get("EphemeralStorage") {
        None | Some(Value::Null) => Ok(None),
        Some(e) => e
            .get("Size")
            .and_then(Value::as_u64)
            .map(|n| Some(n.min(u32::MAX as u64) as u32))
            .ok_or_else(|| AwsError::validation("EphemeralStorage.Size must be a number of MB")),
    }
}

pub async fn create(State(s): State<AwsState>, body: Body) -> Result<Response> {
    let m = json_body(body).await?;
    refuse_unsupported(&m)?;
    let raw_name = str_field(&m, "FunctionName")?
        .ok_or_else(|| AwsError::validation("FunctionName is required"))?;
    let id = parse_function_id(&raw_name, None)?;
    let role = str_field(&m, "Role")?.ok_or_else(|| AwsError::validation("Role is required"))?;
    check_role(&role)?;
    let (runtime, runtime_id) = runtime_field(&m)?
        .ok_or_else(|| AwsError::invalid("Runtime is required for .zip file packages"))?;
    let handler = str_field(&m, "Handler")?
        .ok_or_else(|| AwsError::invalid("Handler is required for .zip file packages"))?;
    let code = m
        .get("Code")
        .and_then(Value::as_object)
        .ok_or_else(|| AwsError::validation("Code is required"))?;
    let sha = store_zip(&s, code).await?;
    let tags = tags_field(&m, "Tags")?;
    let config = FunctionConfig {
        name: id.name.clone(),
        runtime,
        handler,
        memory_mb: u32_field(&m, "MemorySize")?.unwrap_or(DEFAULT_MEMORY_MB),
        timeout_s: u32_field(&m, "Timeout")?.unwrap_or(DEFAULT_TIMEOUT_S),
        environment: env_field(&m)?.unwrap_or_default(),
        description: str_field(&m, "Description")?.unwrap_or_default(),
        // None by default; granted with the `nimbus:permissions` tag here, or
        // through the native API and nimbus.toml.
        permissions: permissions_tag(&tags)?,
        // Lambda code: detected (a Lambda handler resolves as `aws`).
        handler_style: None,
        ephemeral_storage_mb: ephemeral_storage_field(&m)?
            .unwrap_or(nimbus_core::limits::DEFAULT_EPHEMERAL_STORAGE_MB),
        network: Default::default(),
    };
    let record = s
        .control
        .create(CreateFunction {
            config,
            code_sha256: sha,
            role: Some(role),
            tags,
            runtime_id: Some(runtime_id),
        })
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    if publish_requested(&m) {
        return Ok((StatusCode::CREATED, Json(publish_now(&s, &id).await?)).into_response());
    }
    Ok((StatusCode::CREATED, Json(configuration(&s, &record, false))).into_response())
}

async fn lookup(
    s: &AwsState,
    raw: &str,
    query: &Option<String>,
) -> Result<(FunctionId, nimbus_core::FunctionRecord)> {
    let id = parse_function_id(raw, query_param(query, "Qualifier").as_deref())?;
    let record = match &id.qualifier {
        None => s.control.get(&id.name).await,
        Some(q) => s.control.get_qualified(&id.name, q).await,
    }
    .map_err(|e| match e {
        // An unknown alias reads as an unknown function here, as on Lambda.
        nimbus_engine::EngineError::AliasNotFound(_) => {
            AwsError::not_found(format!("Function not found: {}", id.arn(s)))
        }
        other => AwsError::from_engine(other, &id.arn(s)),
    })?;
    Ok((id, record))
}

pub async fn get(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let (id, record) = lookup(&s, &raw, &q).await?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut out = json!({
        "Configuration": configuration(&s, &record, id.qualifier.is_some()),
        "Code": { "RepositoryType": "S3", "Location": format!("http://{host}/v1/code/{}", record.code_sha256) },
    });
    if !record.tags.is_empty() {
        out["Tags"] = json!(record.tags);
    }
    if let Some(n) = record.reserved_concurrency {
        out["Concurrency"] = json!({ "ReservedConcurrentExecutions": n });
    }
    Ok(Json(out))
}

pub async fn get_configuration(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let (id, record) = lookup(&s, &raw, &q).await?;
    Ok(Json(configuration(&s, &record, id.qualifier.is_some())))
}

/// Page size: Lambda returns at most 50 functions per call.
const PAGE: usize = 50;

pub async fn list(State(s): State<AwsState>, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    if let Some(v) = query_param(&q, "FunctionVersion").filter(|v| v != "ALL") {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{v}' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"
        )));
    }
    let max = match query_param(&q, "MaxItems") {
        None => PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n.min(PAGE),
            _ => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
                )));
            }
        },
    };
    let after = match query_param(&q, "Marker").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AwsError::invalid("Invalid Marker"))?,
        ),
    };
    let all = s
        .control
        .list()
        .await
        .map_err(|e| AwsError::from_engine(e, ""))?;
    let rest: Vec<_> = all
        .iter()
        .filter(|r| after.as_deref().is_none_or(|a| r.config.name.as_str() > a))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|r| configuration(&s, r, false))
        .collect();
    let mut out = json!({ "Functions": page });
    if rest.len() > max {
        let last = rest[max - 1].config.name.as_str();
        out["NextMarker"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last));
    }
    Ok(Json(out))
}

pub async fn update_code(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>> {
    let m = json_body(body).await?;
    if let Some(a) = m.get("Architectures").and_then(Value::as_array)
        && a.iter().any(|x| x.as_str() != Some("x86_64"))
    {
        return Err(AwsError::unsupported(
            "an architecture other than x86_64 on this host",
        ));
    }
    let id = parse_function_id(&raw, None)?;
    id.require_latest(&s)?;
    let arn = id.arn(&s);
    let current = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;
    let sha = store_zip(&s, &m).await?;
    if m.get("DryRun").and_then(Value::as_bool) == Some(true) {
        let mut preview = current;
        preview.code_sha256 = sha;
        return Ok(Json(configuration(&s, &preview, false)));
    }
    let record = s
        .control
        .update_code(&id.name, sha, str_field(&m, "RevisionId")?)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;
    if publish_requested(&m) {
        return publish_now(&s, &id).await.map(Json);
    }
    Ok(Json(configuration(&s, &record, false)))
}

pub async fn update_configuration(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>> {
    let m = json_body(body).await?;
    refuse_unsupported(&m)?;
    let id = parse_function_id(&raw, None)?;
    id.require_latest(&s)?;
    let role = str_field(&m, "Role")?;
    if let Some(r) = &role {
        check_role(r)?;
    }
    let runtime = runtime_field(&m)?;
    let patch = ConfigPatch {
        runtime: runtime.as_ref().map(|(r, _)| *r),
        runtime_id: runtime.map(|(_, id)| id),
        handler: str_field(&m, "Handler")?,
        memory_mb: u32_field(&m, "MemorySize")?,
        timeout_s: u32_field(&m, "Timeout")?,
        environment: env_field(&m)?,
        description: str_field(&m, "Description")?,
        permissions: None,
        role,
        ephemeral_storage_mb: ephemeral_storage_field(&m)?,
        network: None,
    };
    let arn = id.arn(&s);
    let record = s
        .control
        .update_config(&id.name, patch, str_field(&m, "RevisionId")?)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;
    Ok(Json(configuration(&s, &record, false)))
}

pub async fn delete(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode> {
    let id = parse_function_id(&raw, query_param(&q, "Qualifier").as_deref())?;
    match id.qualifier.as_deref() {
        None => {}
        Some("$LATEST") => {
            return Err(AwsError::invalid(
                "$LATEST version cannot be deleted without deleting the function.",
            ));
        }
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
            s.control
                .delete_version(&id.name, q)
                .await
                .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
            return Ok(StatusCode::NO_CONTENT);
        }
        Some(_) => {
            return Err(AwsError::invalid(
                "Deletion of aliases is not currently supported.",
            ));
        }
    }
    s.control
        .delete(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn account_settings(State(s): State<AwsState>) -> Result<Json<Value>> {
    let all = s
        .control
        .list()
        .await
        .map_err(|e| AwsError::from_engine(e, ""))?;
    let limit = s.control.config().account_concurrency;
    Ok(Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800u64,
            "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
            "CodeSizeZipped": MAX_ZIP_BYTES,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": s.control.unreserved_concurrency().await.map_err(|e| AwsError::from_engine(e, ""))?,
        },
        "AccountUsage": {
            "TotalCodeSize": all.iter().map(|r| r.code_size).sum::<u64>(),
            "FunctionCount": all.len(),
        },
    })))
}

pub async fn list_tags(State(s): State<AwsState>, Path(arn): Path<String>) -> Result<Json<Value>> {
    let id = unqualified(&arn, "Tags can only be set on unqualified function ARNs")?;
    let record = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(Json(json!({ "Tags": record.tags })))
}

pub async fn tag(
    State(s): State<AwsState>,
    Path(arn): Path<String>,
    body: Body,
) -> Result<StatusCode> {
    let id = unqualified(&arn, "Tags can only be set on unqualified function ARNs")?;
    let m = json_body(body).await?;
    let tags = tags_field(&m, "Tags")?;
    s.control
        .tag(&id.name, tags)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn untag(
    State(s): State<AwsState>,
    Path(arn): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode> {
    let id = unqualified(&arn, "Tags can only be set on unqualified function ARNs")?;
    let keys = query_params(&q, "tagKeys");
    s.control
        .untag(&id.name, keys)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Concurrency settings apply to the function, never to a version or alias.
const FUNCTION_ONLY: &str = "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.";

pub async fn put_concurrency(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, FUNCTION_ONLY)?;
    let m = json_body(body).await?;
    let n = u32_field(&m, "ReservedConcurrentExecutions")?
        .ok_or_else(|| AwsError::validation("ReservedConcurrentExecutions is required"))?;
    let record = s
        .control
        .set_reserved_concurrency(&id.name, Some(n))
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(Json(
        json!({ "ReservedConcurrentExecutions": record.reserved_concurrency }),
    ))
}

pub async fn get_concurrency(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, FUNCTION_ONLY)?;
    let record = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(Json(match record.reserved_concurrency {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

pub async fn delete_concurrency(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
) -> Result<StatusCode> {
    let id = unqualified(&raw, FUNCTION_ONLY)?;
    s.control
        .set_reserved_concurrency(&id.name, None)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(StatusCode::NO_CONTENT)
}

fn publish_requested(m: &Map<String, Value>) -> bool {
    m.get("Publish").and_then(Value::as_bool) == Some(true)
}

/// `Publish: true` on create or code update: publish and answer with the version.
async fn publish_now(s: &AwsState, id: &FunctionId) -> Result<Value> {
    let v = s
        .control
        .publish_version(&id.name, None, None, None)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(s)))?;
    Ok(configuration(s, &v, true))
}

/// Tag through which AWS-API users grant a function's credentials access
/// (Lambda has IAM roles instead): shorthand grants separated by commas or
/// spaces, `nimbus:permissions = "s3:photos,sqs:jobs"`, or, when the value
/// starts with `{` or `[`, a JSON policy document or list of statements,
/// `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}]}`.
const PERMISSIONS_TAG: &str = "nimbus:permissions";

fn permissions_tag(tags: &BTreeMap<String, String>) -> Result<Vec<Permission>> {
    let Some(v) = tags.get(PERMISSIONS_TAG) else {
        return Ok(Vec::new());
    };
    let v = v.trim();
    if v.starts_with('{') || v.starts_with('[') {
        let json: Value = serde_json::from_str(v).map_err(|e| {
            AwsError::invalid(format!("tag {PERMISSIONS_TAG}: not valid JSON: {e}"))
        })?;
        return Permission::list_from_value(json)
            .map_err(|m| AwsError::invalid(format!("tag {PERMISSIONS_TAG}: {m}")));
    }
    Ok(v.split([',', ' '])
        .filter(|g| !g.is_empty())
        .map(Permission::from)
        .collect())
}
