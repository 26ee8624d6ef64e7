//! WebSocket route responses: what a message route's function returned,
//! turned into the frame sent back to the client.
//!
//! On API Gateway a route with a route response (two-way communication)
//! sends the Lambda proxy result's `body` to the client that sent the
//! message, so a handler can answer with a `return` instead of a call to the
//! connections endpoint. Nimbus treats every message route (`$default` and
//! custom keys) that way; `$connect` and `$disconnect` never reply. Only a
//! proxy-style result with a non-empty `body` replies: `None`,
//! `{"statusCode": 200}` or any other value send nothing, which keeps
//! handlers that only push through `/@connections` unchanged. Kept apart
//! from the listener so the rules are unit-tested without sockets.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The frame to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    /// `isBase64Encoded: true`: the decoded bytes, as a binary frame.
    Binary(Vec<u8>),
}

/// Why a function's result could not become a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the body is marked isBase64Encoded but is not base64: {0}")]
    BadBase64(String),
}

/// The reply for a function's raw result, if it asks for one.
pub fn route_reply(payload: &[u8]) -> Result<Option<Reply>, ReplyError> {
    let Ok(serde_json::Value::Object(result)) = serde_json::from_slice(payload) else {
        return Ok(None);
    };
    let body = match result.get("body") {
        Some(serde_json::Value::String(b)) if !b.is_empty() => b,
        _ => return Ok(None),
    };
    if result.get("isBase64Encoded") == Some(&serde_json::Value::Bool(true)) {
        return BASE64
            .decode(body)
            .map(|bytes| Some(Reply::Binary(bytes)))
            .map_err(|e| ReplyError::BadBase64(e.to_string()));
    }
    Ok(Some(Reply::Text(body.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_empty_body_replies() {
        let reply = |s: &str| route_reply(s.as_bytes()).unwrap();
        assert_eq!(
            reply(r#"{"statusCode": 200, "body": "pong"}"#),
            Some(Reply::Text("pong".into()))
        );
        assert_eq!(
            reply(r#"{"body": "AAEC/w==", "isBase64Encoded": true}"#),
            Some(Reply::Binary(vec![0, 1, 2, 255]))
        );
        for silent in [
            "null",
            r#"{"statusCode": 200}"#,
            r#"{"statusCode": 200, "body": ""}"#,
            r#"{"body": {"not": "a string"}}"#,
            r#""a bare string""#,
            r#"{"message": "no body"}"#,
            "not json",
        ] {
            assert_eq!(reply(silent), None, "{silent}");
        }
        assert!(matches!(
            route_reply(br#"{"body": "%%%", "isBase64Encoded": true}"#),
            Err(ReplyError::BadBase64(_))
        ));
    }
}
