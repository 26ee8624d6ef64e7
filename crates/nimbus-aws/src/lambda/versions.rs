//! PublishVersion, ListVersionsByFunction and the alias operations.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::{AliasRecord, AliasRouting};
use nimbus_engine::AliasUpdate;
use serde_json::{Map, Value, json};

use super::functions::{json_body, str_field};
use super::shapes::{FunctionId, configuration, unqualified};
use crate::AwsError;
use crate::AwsState;

type Result<T> = std::result::Result<T, AwsError>;

const UNQUALIFIED: &str = "Use an unqualified function name or ARN for this operation";

pub async fn publish(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let m = json_body(body).await?;
    // The API carries CodeSha256 in base64; the store addresses code by hex.
    let sha = match str_field(&m, "CodeSha256")? {
        None => None,
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .map(hex::encode)
                .map_err(|_| {
                    AwsError::invalid(format!("CodeSHA256 ({b64}) is not valid base64"))
                })?,
        ),
    };
    let record = s
        .control
        .publish_version(
            &id.name,
            sha,
            str_field(&m, "Description")?,
            str_field(&m, "RevisionId")?,
        )
        .await
        .map_err(|e| match e {
            nimbus_engine::EngineError::Invalid(v) => {
                // Say it with the base64 digests the caller knows.
                AwsError::invalid(v.message)
            }
            other => AwsError::from_engine(other, &id.arn(&s)),
        })?;
    Ok((StatusCode::CREATED, Json(configuration(&s, &record, true))).into_response())
}

pub async fn list_versions(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let arn = id.arn(&s);
    let latest = s
        .control
        .get(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;
    let versions = s
        .control
        .list_versions(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;
    let mut all = vec![configuration(&s, &latest, true)];
    all.extend(versions.iter().map(|v| configuration(&s, v, true)));
    Ok(Json(json!({ "Versions": all })))
}

fn alias_shape(s: &AwsState, a: &AliasRecord) -> Value {
    let mut v = json!({
        "AliasArn": format!("{}:{}", s.control.config().function_arn(a.function.as_str()), a.name),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if let Some(r) = &a.routing {
        v["RoutingConfig"] = json!({ "AdditionalVersionWeights": { r.version.clone(): r.weight } });
    }
    v
}

/// `RoutingConfig` → at most one additional version with its weight.
fn routing(m: &Map<String, Value>) -> Result<Option<Option<AliasRouting>>> {
    let Some(rc) = m.get("RoutingConfig") else {
        return Ok(None);
    };
    let weights = rc
        .get("AdditionalVersionWeights")
        .and_then(Value::as_object);
    let Some(weights) = weights.filter(|w| !w.is_empty()) else {
        return Ok(Some(None));
    };
    if weights.len() > 1 {
        return Err(AwsError::invalid(
            "Number of items in AdditionalVersionWeights cannot be greater than 1",
        ));
    }
    let (version, weight) = weights.iter().next().expect("one entry");
    let weight = weight
        .as_f64()
        .filter(|w| (0.0..=1.0).contains(w))
        .ok_or_else(|| AwsError::validation(format!("Value at 'routingConfig.additionalVersionWeights.{version}' failed to satisfy constraint: Member must have value between 0.0 and 1.0")))?;
    Ok(Some(Some(AliasRouting {
        version: version.clone(),
        weight,
    })))
}

fn alias_error(
    s: &AwsState,
    id: &FunctionId,
    alias: &str,
    e: nimbus_engine::EngineError,
) -> AwsError {
    let alias_arn = format!("{}:{alias}", id.arn(s));
    match e {
        nimbus_engine::EngineError::FunctionNotFound(what) if what.contains(':') => {
            AwsError::not_found(format!(
                "Function not found: {}:{}",
                id.arn(s),
                what.rsplit(':').next().unwrap_or("")
            ))
        }
        nimbus_engine::EngineError::Conflict(_)
            if e.to_string().starts_with("Alias already exists") =>
        {
            AwsError::new(
                409,
                "ResourceConflictException",
                format!("Alias already exists: {alias_arn}"),
            )
        }
        other => AwsError::from_engine(other, &alias_arn),
    }
}

pub async fn create_alias(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let m = json_body(body).await?;
    let name = str_field(&m, "Name")?.ok_or_else(|| AwsError::validation("Name is required"))?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )));
    }
    let version = str_field(&m, "FunctionVersion")?
        .ok_or_else(|| AwsError::validation("FunctionVersion is required"))?;
    let alias = s
        .control
        .create_alias(
            &id.name,
            &name,
            version,
            str_field(&m, "Description")?.unwrap_or_default(),
            routing(&m)?.flatten(),
        )
        .await
        .map_err(|e| alias_error(&s, &id, &name, e))?;
    Ok((StatusCode::CREATED, Json(alias_shape(&s, &alias))).into_response())
}

pub async fn list_aliases(
    State(s): State<AwsState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let aliases = s
        .control
        .list_aliases(&id.name)
        .await
        .map_err(|e| AwsError::from_engine(e, &id.arn(&s)))?;
    Ok(Json(
        json!({ "Aliases": aliases.iter().map(|a| alias_shape(&s, a)).collect::<Vec<_>>() }),
    ))
}

pub async fn get_alias(
    State(s): State<AwsState>,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let a = s
        .control
        .get_alias(&id.name, &alias)
        .await
        .map_err(|e| alias_error(&s, &id, &alias, e))?;
    Ok(Json(alias_shape(&s, &a)))
}

pub async fn update_alias(
    State(s): State<AwsState>,
    Path((raw, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    let m = json_body(body).await?;
    let update = AliasUpdate {
        function_version: str_field(&m, "FunctionVersion")?,
        description: str_field(&m, "Description")?,
        routing: routing(&m)?,
        expected_revision: str_field(&m, "RevisionId")?,
    };
    let a = s
        .control
        .update_alias(&id.name, &alias, update)
        .await
        .map_err(|e| alias_error(&s, &id, &alias, e))?;
    Ok(Json(alias_shape(&s, &a)))
}

pub async fn delete_alias(
    State(s): State<AwsState>,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<StatusCode> {
    let id = unqualified(&raw, UNQUALIFIED)?;
    s.control
        .delete_alias(&id.name, &alias)
        .await
        .map_err(|e| alias_error(&s, &id, &alias, e))?;
    Ok(StatusCode::NO_CONTENT)
}
