//! Function URLs in `RESPONSE_STREAM` mode: a streamed response goes out as the
//! function writes it, in HTTP chunks.
//!
//! A function that streams through `awslambda.HttpResponseStream` begins with
//! a prelude (`{"statusCode":…,"headers":…,"cookies":…}` and eight NUL bytes),
//! which becomes the response head; without it the stream is the body of a 200
//! with the stream's content type. The head waits for the prelude (or the
//! first byte), so errors before it are ordinary 502/504 answers. A failure after the head cannot
//! change the status any more: the response is cut off without its final
//! chunk, so the client sees an incomplete response, never a complete-looking
//! one. A function that answers without streaming is mapped as on a
//! `BUFFERED` URL.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use nimbus_engine::{EngineError, InvocationResult, StreamPart};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::apigw::{gateway_error, v1, v2};
use crate::server::{Shared, answer, invoke_request, map_response, with_cors};
use crate::snapshot::Target;

/// The content type that announces a prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What separates the prelude from the body.
const DELIMITER: [u8; 8] = [0; 8];
/// Largest prelude accepted (status, headers and cookies).
const MAX_PRELUDE: usize = 64 * 1024;
/// Chunks queued between the function and a slow client before the function waits.
const QUEUE: usize = 16;

type Invocation = JoinHandle<Result<InvocationResult, EngineError>>;

pub(crate) async fn run(
    s: &Shared,
    target: &Target,
    parts: &Parts,
    event: Vec<u8>,
    rid: &str,
) -> Response<Body> {
    let Some(function) = &target.function else {
        return buffered(gateway_error(
            StatusCode::BAD_GATEWAY,
            v1::MALFORMED_BODY,
            rid,
        ));
    };
    let req = invoke_request(function, target, event, rid);
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let invoker = s.invoker.clone();
    let mut task: Invocation =
        tokio::spawn(async move { invoker.invoke_streaming(req, Some(tx)).await });
    let head = tokio::select! {
        biased;
        part = rx.recv() => part,
        done = &mut task => return with_cors(target, parts, finished(done, target, rid)),
    };
    let Some(StreamPart::Head { content_type, .. }) = head else {
        // No stream: the function answered buffered (or never ran).
        return with_cors(target, parts, finished(task.await, target, rid));
    };
    let resp = if content_type.as_deref() == Some(HTTP_INTEGRATION) {
        match prelude(&mut rx).await {
            Ok((head, rest)) => {
                let body = body_stream(rest, rx, task, rid.to_owned());
                head.map(|_| body)
            }
            Err(why) => {
                // The stream is abandoned; the invocation still runs to its end.
                drop(rx);
                return match task.await {
                    Ok(Ok(r)) if matches!(r.outcome, nimbus_engine::Outcome::Error { .. }) => {
                        with_cors(
                            target,
                            parts,
                            buffered(answer(Ok(r), target, rid).unwrap_err()),
                        )
                    }
                    _ => {
                        tracing::warn!(request_id = rid, function = %target.label, "unusable stream prelude: {why}");
                        with_cors(target, parts, buffered(v2::malformed_response(rid)))
                    }
                };
            }
        }
    } else {
        // The head waits for the first byte, so a function that fails before
        // writing anything still gets a 502 rather than a cut-off 200.
        let first = loop {
            match rx.recv().await {
                Some(StreamPart::Chunk(data)) if !data.is_empty() => break Some(data),
                Some(_) => continue,
                None => break None,
            }
        };
        let ct = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let ct = HeaderValue::from_str(&ct)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut resp = match first {
            Some(data) => Response::new(body_stream(data, rx, task, rid.to_owned())),
            None => match task.await {
                Ok(Ok(r)) if matches!(r.outcome, nimbus_engine::Outcome::Success { .. }) => {
                    Response::new(Body::empty())
                }
                done => return with_cors(target, parts, finished(done, target, rid)),
            },
        };
        resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
        resp
    };
    with_cors(target, parts, resp)
}

fn buffered(resp: Response<Bytes>) -> Response<Body> {
    resp.map(Body::from)
}

/// A finished invocation that did not stream, answered as on a buffered URL.
fn finished(
    done: Result<Result<InvocationResult, EngineError>, tokio::task::JoinError>,
    target: &Target,
    rid: &str,
) -> Response<Body> {
    let result = done.unwrap_or_else(|e| {
        Err(EngineError::InstanceStart(format!(
            "invocation task failed: {e}"
        )))
    });
    buffered(match answer(result, target, rid) {
        Ok(payload) => map_response(target, &payload, rid),
        Err(resp) => resp,
    })
}

/// Reads up to the delimiter: the response head the prelude describes, and the
/// body bytes that came after it in the same chunk.
async fn prelude(rx: &mut mpsc::Receiver<StreamPart>) -> Result<(Response<Bytes>, Bytes), String> {
    let mut buf = BytesMut::new();
    loop {
        if let Some(at) = buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) {
            let rest = buf.split_off(at + DELIMITER.len()).freeze();
            buf.truncate(at);
            return Ok((parse_prelude(&buf)?, rest));
        }
        if buf.len() > MAX_PRELUDE {
            return Err(format!("no delimiter within {MAX_PRELUDE} bytes"));
        }
        match rx.recv().await {
            Some(StreamPart::Chunk(data)) => buf.extend_from_slice(&data),
            Some(StreamPart::Head { .. }) => {}
            None => return Err("the stream ended before the prelude's delimiter".into()),
        }
    }
}

/// `{"statusCode", "headers", "cookies"}`: the payload 2.0 response shape
/// without a body (`statusCode` defaults to 200).
fn parse_prelude(json: &[u8]) -> Result<Response<Bytes>, String> {
    let mut v: serde_json::Value = if json.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(json).map_err(|e| format!("prelude is not JSON: {e}"))?
    };
    let obj = v.as_object_mut().ok_or("prelude is not a JSON object")?;
    obj.entry("statusCode").or_insert(200.into());
    obj.remove("body");
    obj.remove("isBase64Encoded");
    let mut head = v2::parse_response(v.to_string().as_bytes()).map_err(|e| e.to_string())?;
    head.headers_mut().remove(http::header::CONTENT_LENGTH);
    Ok(head)
}

/// The body: `first`, then the chunks as they come. When the invocation ends
/// in an error the stream ends with one too, so the response is cut off.
fn body_stream(
    first: Bytes,
    rx: mpsc::Receiver<StreamPart>,
    task: Invocation,
    rid: String,
) -> Body {
    enum State {
        Streaming(mpsc::Receiver<StreamPart>, Invocation),
        /// The invocation ended: what is queued goes out, then its verdict.
        Draining(mpsc::Receiver<StreamPart>, Result<(), String>),
        Done,
    }
    let verdict =
        |done: Result<Result<InvocationResult, EngineError>, tokio::task::JoinError>| match done {
            Ok(Ok(r)) => match r.outcome {
                nimbus_engine::Outcome::Success { .. } => Ok(()),
                nimbus_engine::Outcome::Error { error_type, .. } => Err(error_type),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("invocation task failed: {e}")),
        };
    let chunk = |part: StreamPart| match part {
        StreamPart::Chunk(data) if !data.is_empty() => Some(Ok(data)),
        _ => None,
    };
    let first = (!first.is_empty()).then_some(Ok::<Bytes, std::io::Error>(first));
    let rest = futures::stream::unfold(State::Streaming(rx, task), move |state| {
        let rid = rid.clone();
        async move {
            let cut = |why: String| {
                tracing::info!(request_id = %rid, "streamed response cut off: {why}");
                Some(Err(std::io::Error::other(why)))
            };
            match state {
                State::Done => None,
                State::Draining(mut rx, v) => match rx.try_recv() {
                    Ok(part) => Some((chunk(part), State::Draining(rx, v))),
                    Err(_) => Some((v.err().and_then(cut), State::Done)),
                },
                State::Streaming(mut rx, mut task) => tokio::select! {
                    biased;
                    part = rx.recv() => match part {
                        Some(part) => Some((chunk(part), State::Streaming(rx, task))),
                        None => Some((verdict(task.await).err().and_then(cut), State::Done)),
                    },
                    done = &mut task => Some((None, State::Draining(rx, verdict(done)))),
                },
            }
        }
    });
    use futures::StreamExt as _;
    Body::from_stream(futures::stream::iter(first).chain(rest.filter_map(|m| async move { m })))
}
