//! Invoke: `RequestResponse` and `DryRun`, with Lambda's headers both ways.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::InvokeRequest;
use nimbus_core::limits::MAX_SYNC_REQUEST_BYTES;
use nimbus_engine::Outcome;

use super::shapes::parse_function_id;
use crate::ApiState;
use crate::aws::AwsError;

/// Lambda's limit on the base64 `X-Amz-Client-Context` header.
const MAX_CLIENT_CONTEXT: usize = 3583;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub async fn invoke(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AwsError> {
    let qualifier = super::functions::query_param(&q, "Qualifier");
    let id = parse_function_id(&raw, qualifier.as_deref())?;
    // AWS names `$LATEST` in not-found messages of unqualified invokes.
    let arn = match &id.qualifier {
        Some(_) => id.arn(&s),
        None => format!("{}:$LATEST", id.arn(&s)),
    };
    let tail = match header(&headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
            )));
        }
    };
    let mut asynchronous = false;
    match header(&headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => {}
        Some("DryRun") => {
            match &id.qualifier {
                Some(q) => s.control.get_qualified(&id.name, q).await,
                None => s.control.get(&id.name).await,
            }
            .map_err(|_| AwsError::not_found(format!("Function not found: {arn}")))?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Some("Event") => asynchronous = true,
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )));
        }
    }
    let client_context = match header(&headers, "x-amz-client-context") {
        None => None,
        Some(b64) if b64.len() > MAX_CLIENT_CONTEXT => {
            return Err(AwsError::invalid(format!(
                "Client context must be at most {MAX_CLIENT_CONTEXT} bytes"
            )));
        }
        Some(b64) => {
            let text = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
                .ok_or_else(|| AwsError::invalid("Client context must be base64-encoded JSON"))?;
            Some(text)
        }
    };
    let payload = crate::error::read_body(body, MAX_SYNC_REQUEST_BYTES, "request payload").await.map_err(|_| {
        AwsError::too_large(format!(
            "Request must be smaller than {MAX_SYNC_REQUEST_BYTES} bytes for the InvokeFunction operation"
        ))
    })?;
    let mut req = InvokeRequest::new(id.name.clone(), payload);
    req.qualifier = id.qualifier.clone();
    req.want_log_tail = tail;
    req.client_context = client_context;
    req.trace_id = header(&headers, "x-amzn-trace-id").map(str::to_string);
    if asynchronous {
        // Accepted only once durably queued; runs (and retries) in the background.
        let size = req.payload.len();
        s.events.submit(req).await.map_err(|e| match e {
            nimbus_engine::EngineError::PayloadTooLarge { limit, .. } => AwsError::too_large(format!(
                "{size} byte payload is too large for the Event invocation type (limit {limit} bytes)"
            )),
            other => AwsError::from_engine(other, &arn),
        })?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let r = s
        .invoker
        .invoke(req)
        .await
        .map_err(|e| AwsError::from_engine(e, &arn))?;

    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&r.executed_version) {
        out.insert("x-amz-executed-version", v);
    }
    if let Some(t) = &r.log_tail
        && let Ok(v) = HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(t))
    {
        out.insert("x-amz-log-result", v);
    }
    let body = match r.outcome {
        Outcome::Success { body, content_type } => {
            let ct = content_type.unwrap_or_else(|| "application/json".into());
            out.insert(
                "content-type",
                HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("application/json")),
            );
            body
        }
        Outcome::Error { body, .. } => {
            out.insert("content-type", HeaderValue::from_static("application/json"));
            out.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            body
        }
    };
    Ok((StatusCode::OK, out, body).into_response())
}
