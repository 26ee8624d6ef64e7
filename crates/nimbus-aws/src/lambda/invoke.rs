//! Invoke: `RequestResponse` and `DryRun`, with Lambda's headers both ways.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::InvokeRequest;
use nimbus_core::limits::MAX_SYNC_REQUEST_BYTES;
use nimbus_engine::{InvocationResult, Outcome, StreamParts, Streamed};

use crate::eventstream;

use super::shapes::parse_function_id;
use crate::AwsState;
use crate::{AwsError, Principal};

/// Lambda's limit on the base64 `X-Amz-Client-Context` header.
const MAX_CLIENT_CONTEXT: usize = 3583;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// How the caller asked for the invocation (`X-Amz-Invocation-Type`).
enum Mode {
    Sync,
    Async,
    DryRun,
}

/// The request both Invoke and InvokeWithResponseStream take: the function,
/// the headers Lambda reads and the payload. `DryRun` is answered here.
struct Prepared {
    req: InvokeRequest,
    /// For not-found messages (AWS names `$LATEST` in unqualified ones).
    arn: String,
    mode: Mode,
}

#[allow(
    clippy::too_many_arguments,
    reason = "the request's parts, shared by Invoke and InvokeWithResponseStream"
)]
async fn prepare(
    s: &AwsState,
    principal: &Principal,
    raw: &str,
    q: &Option<String>,
    headers: &HeaderMap,
    body: Body,
    operation: &str,
    allow_event: bool,
) -> Result<Prepared, AwsError> {
    let qualifier = super::functions::query_param(q, "Qualifier");
    let id = parse_function_id(raw, qualifier.as_deref())?;
    id.authorize_invoke(s, principal)?;
    let arn = match &id.qualifier {
        Some(_) => id.arn(s),
        None => format!("{}:$LATEST", id.arn(s)),
    };
    let tail = match header(headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
            )));
        }
    };
    let mode = match header(headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Mode::Sync,
        Some("DryRun") => Mode::DryRun,
        Some("Event") if allow_event => Mode::Async,
        Some(other) => {
            let allowed = if allow_event {
                "[Event, RequestResponse, DryRun]"
            } else {
                "[RequestResponse, DryRun]"
            };
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: {allowed}"
            )));
        }
    };
    if let Mode::DryRun = mode {
        match &id.qualifier {
            Some(q) => s.control.get_qualified(&id.name, q).await,
            None => s.control.get(&id.name).await,
        }
        .map_err(|_| AwsError::not_found(format!("Function not found: {arn}")))?;
    }
    let client_context = match header(headers, "x-amz-client-context") {
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
    let payload = nimbus_api::read_body(body, MAX_SYNC_REQUEST_BYTES, "request payload").await.map_err(|_| {
        AwsError::too_large(format!(
            "Request must be smaller than {MAX_SYNC_REQUEST_BYTES} bytes for the {operation} operation"
        ))
    })?;
    let mut req = InvokeRequest::new(id.name.clone(), payload);
    req.qualifier = id.qualifier.clone();
    req.want_log_tail = tail;
    req.client_context = client_context;
    req.trace_id = header(headers, "x-amzn-trace-id").map(str::to_string);
    // An Event invoke's retries re-check the caller's grant.
    req.on_behalf_of = principal.function().map(str::to_string);
    Ok(Prepared { req, arn, mode })
}

pub async fn invoke(
    State(s): State<AwsState>,
    principal: Principal,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AwsError> {
    let Prepared { req, arn, mode } = prepare(
        &s,
        &principal,
        &raw,
        &q,
        &headers,
        body,
        "InvokeFunction",
        true,
    )
    .await?;
    let asynchronous = match mode {
        Mode::DryRun => return Ok(StatusCode::NO_CONTENT.into_response()),
        Mode::Async => true,
        Mode::Sync => false,
    };
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

/// InvokeWithResponseStream: the function's response as an event stream, a
/// `PayloadChunk` per piece as the function produces it, closed by
/// `InvokeComplete` (with `ErrorCode`/`ErrorDetails` when it failed, and the
/// log tail when asked for). A function that does not stream is answered the
/// same way with its whole response in one chunk. Errors before the function
/// ran (not found, throttled) are ordinary error responses.
pub async fn invoke_with_response_stream(
    State(s): State<AwsState>,
    principal: Principal,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AwsError> {
    let Prepared { req, arn, mode } = prepare(
        &s,
        &principal,
        &raw,
        &q,
        &headers,
        body,
        "InvokeWithResponseStream",
        false,
    )
    .await?;
    if let Mode::DryRun = mode {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let r = match s.invoker.invoke_streamed(req).await {
        Streamed::Started {
            executed_version,
            parts,
            ..
        } => return Ok(stream_response(&executed_version, event_stream(parts))),
        // A buffered answer: the stream has nothing in it.
        Streamed::Finished(r) => r.map_err(|e| AwsError::from_engine(e, &arn))?,
    };
    let events = whole_response(&r)
        .into_iter()
        .map(Ok::<_, std::convert::Infallible>);
    Ok(stream_response(
        &r.executed_version,
        futures::stream::iter(events),
    ))
}

fn stream_response<S>(executed_version: &str, body: S) -> Response
where
    S: futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut out = HeaderMap::new();
    out.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    if let Ok(v) = HeaderValue::from_str(executed_version) {
        out.insert("x-amz-executed-version", v);
    }
    (StatusCode::OK, out, Body::from_stream(body)).into_response()
}

fn payload_chunk(data: &[u8]) -> bytes::Bytes {
    eventstream::event("PayloadChunk", "application/octet-stream", data)
}

/// `InvokeComplete` for a finished invocation (error code and details from
/// the Lambda error document when it failed).
fn invoke_complete(r: &InvocationResult) -> bytes::Bytes {
    let mut doc = serde_json::Map::new();
    if let Outcome::Error { error_type, body } = &r.outcome {
        doc.insert("ErrorCode".into(), error_type.clone().into());
        let details = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        doc.insert("ErrorDetails".into(), details.into());
    }
    if let Some(t) = &r.log_tail {
        doc.insert(
            "LogResult".into(),
            base64::engine::general_purpose::STANDARD.encode(t).into(),
        );
    }
    eventstream::event(
        "InvokeComplete",
        "application/json",
        serde_json::Value::Object(doc).to_string().as_bytes(),
    )
}

/// The event stream of an invocation that answered without streaming.
fn whole_response(r: &InvocationResult) -> Vec<bytes::Bytes> {
    let mut out = Vec::with_capacity(2);
    if let Outcome::Success { body, .. } = &r.outcome
        && !body.is_empty()
    {
        out.push(payload_chunk(body));
    }
    out.push(invoke_complete(r));
    out
}

/// A `PayloadChunk` per chunk as it comes, then `InvokeComplete`.
fn event_stream(
    parts: StreamParts,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Send + 'static {
    futures::stream::unfold(Some(parts), |parts| async move {
        let mut parts = parts?;
        match parts.next().await {
            Some(data) => Some((Ok(payload_chunk(&data)), Some(parts))),
            None => Some((Ok(complete_event(parts.finish().await)), None)),
        }
    })
}

fn complete_event(done: Result<InvocationResult, nimbus_engine::EngineError>) -> bytes::Bytes {
    let failed = |details: String| {
        eventstream::event(
            "InvokeComplete",
            "application/json",
            serde_json::json!({"ErrorCode": "ServiceException", "ErrorDetails": details})
                .to_string()
                .as_bytes(),
        )
    };
    match done {
        Ok(r) => invoke_complete(&r),
        Err(e) => failed(e.to_string()),
    }
}
