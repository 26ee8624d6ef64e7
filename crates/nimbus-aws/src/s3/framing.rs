//! Keeping HTTP/1.1 framing in step when an S3 request that sent
//! `Expect: 100-continue` is answered before its body was read.
//!
//! # Why
//!
//! botocore sends `Expect: 100-continue` on every PutObject/UploadPart and,
//! when the server answers with a final status instead of `100 Continue`
//! (NoSuchBucket, AccessDenied, … — handlers fail before touching the
//! body), it never sends the body and reuses the connection. hyper, once the
//! handler drops the unread body, still reads up to `Content-Length` bytes of
//! whatever is already buffered "in case a tiny body was included"
//! (`Conn::poll_drain_or_close_read`). If the client's *next* request arrived
//! in the meantime, its first bytes are eaten as the old body: `GET /b/k`
//! becomes `ET /b/k`, whose SigV4 canonical request no longer matches, and the
//! client sees a sporadic `SignatureDoesNotMatch` (or a reset connection)
//! instead of its real answer.
//!
//! Neither side can tell whether the body is coming, so, as RFC 9110 §10.1.1
//! asks of a server that answers before reading the content, such responses
//! say `Connection: close`: hyper closes after writing them and clients open
//! a fresh connection for the next request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::HttpBody;
use http::{HeaderMap, HeaderValue, Version, header};
use http_body::{Frame, SizeHint};

/// A request body that records whether it was read to its end.
pub(super) struct Tracked<B> {
    inner: B,
    done: Arc<AtomicBool>,
}

/// Whether a [`Tracked`] body was read to its end.
#[derive(Clone)]
pub(super) struct Consumed(Arc<AtomicBool>);

impl Consumed {
    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub(super) fn track<B: HttpBody>(inner: B) -> (Tracked<B>, Consumed) {
    let done = Arc::new(AtomicBool::new(inner.is_end_stream()));
    (
        Tracked {
            inner,
            done: done.clone(),
        },
        Consumed(done),
    )
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done.store(true, Ordering::Release),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => {
                self.done.store(true, Ordering::Release);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the request asked for `100 Continue` over HTTP/1.1.
pub(super) fn expects_continue(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Adds `Connection: close` to a response to an `Expect: 100-continue`
/// request whose body was not read to its end.
pub(super) fn close_if_unread(expects_continue: bool, body: &Consumed, headers: &mut HeaderMap) {
    if expects_continue && !body.get() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn close_header(expects: bool, consumed: &Consumed) -> Option<HeaderValue> {
        let mut h = HeaderMap::new();
        close_if_unread(expects, consumed, &mut h);
        h.get(header::CONNECTION).cloned()
    }

    #[tokio::test]
    async fn unread_body_closes_only_when_continue_was_expected() {
        let (body, consumed) = track(axum::body::Body::from("x"));
        assert_eq!(close_header(true, &consumed).unwrap(), "close");
        assert!(close_header(false, &consumed).is_none());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"x");
        assert!(close_header(true, &consumed).is_none());
    }

    #[test]
    fn empty_body_counts_as_read() {
        let (_body, consumed) = track(axum::body::Body::empty());
        assert!(close_header(true, &consumed).is_none());
    }

    #[test]
    fn expect_header_is_recognised_on_http_1_1_only() {
        let mut h = HeaderMap::new();
        assert!(!expects_continue(Version::HTTP_11, &h));
        h.insert(header::EXPECT, HeaderValue::from_static("100-Continue"));
        assert!(expects_continue(Version::HTTP_11, &h));
        assert!(!expects_continue(Version::HTTP_2, &h));
    }
}
