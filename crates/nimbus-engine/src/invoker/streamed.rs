//! A streamed invocation as its caller consumes it: the head once the function
//! began streaming, then its chunks, then the invocation's result.
//!
//! Every caller of a streaming response (InvokeWithResponseStream, function
//! URLs, the native API) needs the same care: the chunks travel on a bounded
//! channel while the invocation runs in a task of its own, and the end can be
//! seen from either side first. [`StreamParts`] keeps that in one place: it
//! hands out every chunk queued before the invocation ended, then its result.

use bytes::Bytes;
use nimbus_core::InvokeRequest;
use nimbus_runtime::StreamPart;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use crate::invoker::joined;
use crate::{EngineError, InvocationResult, Invoker};

/// Chunks queued between the function and a slow caller before the function waits.
const QUEUE: usize = 16;

type Ended = Result<InvocationResult, EngineError>;

/// How a streamed invocation began.
pub enum Streamed {
    /// The function streams: the head's facts, then [`StreamParts`].
    Started {
        content_type: Option<String>,
        executed_version: String,
        parts: StreamParts,
    },
    /// It ended without streaming (a buffered answer, an error, a throttle).
    Finished(Ended),
}

/// The rest of a started stream.
pub struct StreamParts {
    rx: mpsc::Receiver<StreamPart>,
    task: JoinHandle<Ended>,
    ended: Option<Result<Ended, JoinError>>,
}

impl Invoker {
    /// Runs `req` for a caller that takes a streamed response, and returns
    /// once the stream began or the invocation ended without one.
    pub async fn invoke_streamed(&self, req: InvokeRequest) -> Streamed {
        self.registry
            .catch_up(&req.function, req.qualifier.as_deref())
            .await;
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut task = match self.start(req, Some(tx)) {
            Ok(task) => task,
            Err(e) => return Streamed::Finished(Err(e)),
        };
        let ended = tokio::select! {
            biased;
            part = rx.recv() => match part {
                Some(StreamPart::Head { content_type, executed_version }) => {
                    return Streamed::Started {
                        content_type,
                        executed_version,
                        parts: StreamParts { rx, task, ended: None },
                    };
                }
                // The sender went away without a head: the result says why.
                _ => task.await,
            },
            ended = &mut task => ended,
        };
        Streamed::Finished(joined(ended))
    }
}

impl StreamParts {
    /// The next chunk; `None` once the stream is over (then see [`StreamParts::finish`]).
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            let part = if self.ended.is_some() {
                // The invocation is over: what it streamed is already queued.
                self.rx.try_recv().ok()?
            } else {
                tokio::select! {
                    biased;
                    part = self.rx.recv() => part?,
                    ended = &mut self.task => {
                        self.ended = Some(ended);
                        continue;
                    }
                }
            };
            if let StreamPart::Chunk(data) = part
                && !data.is_empty()
            {
                return Some(data);
            }
        }
    }

    /// The chunks as an HTTP body: after the last one, an invocation that
    /// failed ends the stream with an error (its error type), so a chunked
    /// response is cut off rather than ended as if complete.
    pub fn into_body(self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold(Some(self), |parts| async move {
            let mut parts = parts?;
            if let Some(data) = parts.next().await {
                return Some((Ok(data), Some(parts)));
            }
            let why = match parts.finish().await {
                Ok(r) => match r.outcome {
                    crate::Outcome::Success { .. } => return None,
                    crate::Outcome::Error { error_type, .. } => error_type,
                },
                Err(e) => e.to_string(),
            };
            // hyper drops the connection on a body error without flushing what
            // it buffered, and it polls the body again before flushing: a
            // failure right behind the last chunks would take the head and
            // those chunks with it. One pending poll lets them reach the
            // client first, on every listener that serves this body.
            tokio::task::yield_now().await;
            Some((Err(std::io::Error::other(why)), None))
        })
    }

    /// The invocation's result (waits for it to end). Chunks not taken yet are
    /// dropped, and the function's further writes go nowhere instead of
    /// filling the channel and holding it until its timeout.
    pub async fn finish(mut self) -> Ended {
        self.rx.close();
        let ended = match self.ended.take() {
            Some(e) => e,
            None => (&mut self.task).await,
        };
        joined(ended)
    }
}
