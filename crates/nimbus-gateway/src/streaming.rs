//! Function URLs in `RESPONSE_STREAM` mode: a streamed response goes out as the
//! function writes it, in HTTP chunks.
//!
//! A function that streams through `awslambda.HttpResponseStream` begins with
//! a prelude (`{"statusCode":…,"headers":…,"cookies":…}` and eight NUL bytes),
//! which becomes the response head; without it the stream is the body of a 200
//! with the stream's content type. The head waits for the prelude (or the
//! first byte), so errors before it are ordinary 502/504 answers. A failure
//! after the head cannot change the status any more: the response is cut off
//! without its final
//! chunk, so the client sees an incomplete response, never a complete-looking
//! one. A function that answers without streaming is mapped as on a
//! `BUFFERED` URL.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode};
use nimbus_engine::{EngineError, InvocationResult, Outcome, StreamParts, Streamed};

use crate::apigw::{gateway_error, v1, v2};
use crate::server::{Shared, answer, call, map_response};
use crate::snapshot::Target;

/// The content type that announces a prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What separates the prelude from the body.
const DELIMITER: [u8; 8] = [0; 8];
/// Largest prelude accepted (status, headers and cookies).
const MAX_PRELUDE: usize = 64 * 1024;

pub(crate) async fn run(s: &Shared, target: &Target, event: Vec<u8>, rid: &str) -> Response<Body> {
    let streamed = match s.dispatcher.stream(call(target, event, rid)).await {
        Ok(streamed) => streamed,
        // Only function URLs stream, and they target functions.
        Err(_) => {
            return buffered(gateway_error(
                StatusCode::BAD_GATEWAY,
                v1::MALFORMED_BODY,
                rid,
            ));
        }
    };
    let (content_type, mut stream) = match streamed {
        Streamed::Started {
            content_type,
            parts: stream,
            ..
        } => (content_type, stream),
        // No stream: the function answered buffered (or never ran).
        Streamed::Finished(r) => return finished(r, target, rid),
    };
    if content_type.as_deref() == Some(HTTP_INTEGRATION) {
        match prelude(&mut stream).await {
            Ok((head, rest)) => head.map(|_| body(rest, stream, rid.to_owned())),
            Err(why) => {
                // The stream is abandoned (its further chunks are dropped); the
                // invocation still runs to its end.
                match stream.finish().await {
                    Ok(r) if matches!(r.outcome, Outcome::Error { .. }) => {
                        finished(Ok(r), target, rid)
                    }
                    _ => {
                        tracing::warn!(request_id = rid, function = %target.label, "unusable stream prelude: {why}");
                        buffered(v2::malformed_response(rid))
                    }
                }
            }
        }
    } else {
        // The head waits for the first byte, so a function that fails before
        // writing anything still gets a 502 rather than a cut-off 200.
        let ct = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let ct = HeaderValue::from_str(&ct)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut resp = match stream.next().await {
            Some(first) => Response::new(body(first, stream, rid.to_owned())),
            None => match stream.finish().await {
                Ok(r) if matches!(r.outcome, Outcome::Success { .. }) => {
                    Response::new(Body::empty())
                }
                r => return finished(r, target, rid),
            },
        };
        resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
        resp
    }
}

fn buffered(resp: Response<Bytes>) -> Response<Body> {
    resp.map(Body::from)
}

/// An invocation that did not stream, answered as on a buffered URL.
fn finished(
    result: Result<InvocationResult, EngineError>,
    target: &Target,
    rid: &str,
) -> Response<Body> {
    buffered(match answer(result.map(|r| r.outcome), target, rid) {
        Ok(payload) => map_response(target, &payload, rid),
        Err(resp) => resp,
    })
}

/// Reads up to the delimiter: the response head the prelude describes, and the
/// body bytes that came after it in the same chunk.
async fn prelude(stream: &mut StreamParts) -> Result<(Response<Bytes>, Bytes), String> {
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
        match stream.next().await {
            Some(data) => buf.extend_from_slice(&data),
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

/// The body: `first`, then the chunks as they come, cut off if the
/// invocation fails.
fn body(first: Bytes, stream: StreamParts, rid: String) -> Body {
    use futures::StreamExt as _;
    let first = (!first.is_empty()).then_some(Ok::<Bytes, std::io::Error>(first));
    let rest = stream.into_body().inspect(move |item| {
        if let Err(why) = item {
            tracing::info!(request_id = %rid, "streamed response cut off: {why}");
        }
    });
    Body::from_stream(futures::stream::iter(first).chain(rest))
}
