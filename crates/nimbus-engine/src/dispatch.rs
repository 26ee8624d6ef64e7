//! The one door every event source goes through.
//!
//! A source (the HTTP gateway, a queue mapping, a schedule, a bucket
//! notification, a topic's Lambda subscription) knows *what* happened and
//! *what* it targets ([`Target`]: a function or a workflow); the [`Dispatcher`]
//! knows how to run it. It hides the three services behind that choice:
//!
//! ```text
//!                      ┌─ Sync   ─► Invoker::invoke        | Workflows::run (EXPRESS to its end, STANDARD started)
//! source ─► Dispatcher ├─ Async  ─► AsyncInvoker::submit   | Workflows::start (durable)
//!                      └─ Stream ─► Invoker::invoke_streamed (functions only)
//! ```
//!
//! The three modes are three methods ([`Dispatcher::invoke`],
//! [`Dispatcher::enqueue`], [`Dispatcher::stream`]) rather than one method
//! taking a mode, because each answers something different (a result, an
//! acceptance, a stream) and a caller should not have to match away the
//! answers its mode cannot give. [`Dispatcher::enqueue_once`] is the
//! asynchronous mode for sources that fire at known times (schedules): the
//! fire is accepted at most once.
//!
//! Before this door existed each source chose between `Invoker`,
//! `AsyncInvoker` and `Workflows` itself and had the workflow service
//! installed into it after construction; now a source is built with a
//! dispatcher and nothing else of the invocation path.

use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::{FunctionName, InvocationId, InvokeRequest, Target, ValidationError, lineage};
use nimbus_runtime::Outcome;

use crate::control::registry::Registry;
use crate::invoker::RunningLineage;
use crate::workflows::{ExecutionRecord, Run, StartExecution, WorkflowError, Workflows};
use crate::{AsyncInvoker, EngineError, InvocationResult, Invoker, Streamed};

/// What went wrong: the function path's error or the workflow service's.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Function(#[from] EngineError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// One event for a target.
#[derive(Debug, Clone)]
pub struct Call {
    pub target: Target,
    /// The event (JSON); a workflow's execution input.
    pub payload: Bytes,
    /// The request id to run under (the gateway's own); a new one when absent.
    /// A workflow execution started without an `execution_name` is named
    /// after it.
    pub request_id: Option<InvocationId>,
    /// The trace header the invocation continues (recursive loop detection).
    pub trace: Option<String>,
    /// The function on whose authority the event is sent, re-checked when a
    /// queued event runs.
    pub on_behalf_of: Option<String>,
    /// The execution's name for a workflow target: a source that may deliver
    /// the same event twice names it after the event, so Step Functions'
    /// refusal of a second execution of one name makes it happen once.
    pub execution_name: Option<String>,
}

impl Call {
    pub fn new(target: Target, payload: impl Into<Bytes>) -> Self {
        Self {
            target,
            payload: payload.into(),
            request_id: None,
            trace: None,
            on_behalf_of: None,
            execution_name: None,
        }
    }

    /// The invocation request of a function target (`None` for a workflow).
    fn request(&self) -> Option<Result<InvokeRequest, EngineError>> {
        let Target::Function { name, qualifier } = &self.target else {
            return None;
        };
        Some(
            name.parse::<FunctionName>()
                .map_err(EngineError::Invalid)
                .map(|function| {
                    let mut req = InvokeRequest::new(function, self.payload.clone());
                    if let Some(id) = &self.request_id {
                        req.id = id.clone();
                    }
                    req.qualifier = qualifier.clone();
                    req.trace_id = self.trace.clone();
                    req.on_behalf_of = self.on_behalf_of.clone();
                    req
                }),
        )
    }

    /// The execution of a workflow target.
    fn execution(&self, machine: &str) -> StartExecution {
        let name = self.execution_name.clone().or_else(|| {
            self.request_id.as_ref().map(|id| {
                id.as_str()
                    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
            })
        });
        StartExecution {
            machine: machine.to_string(),
            name,
            input: Some(String::from_utf8_lossy(&self.payload).into_owned()),
        }
    }
}

/// What a synchronous call gave.
#[derive(Debug)]
pub enum Reply {
    /// The function ran.
    Function(InvocationResult),
    /// An EXPRESS execution ran to its end, or a STANDARD one was started.
    Workflow(Run),
}

impl Reply {
    /// Whether the target did its work: the function succeeded, the EXPRESS
    /// execution succeeded, or the STANDARD execution is durably started.
    pub fn succeeded(&self) -> bool {
        match self {
            Reply::Function(r) => matches!(r.outcome, Outcome::Success { .. }),
            Reply::Workflow(Run::Finished(done)) => done.status == "SUCCEEDED",
            Reply::Workflow(Run::Started(_)) => true,
        }
    }

    /// The answer to pass on, as a function's outcome: the function's own;
    /// an EXPRESS execution's output (an error `States.<status>` when it did
    /// not succeed); for a STANDARD execution its ARN and start date, as API
    /// Gateway's StartExecution integration answers.
    pub fn into_outcome(self) -> Outcome {
        match self {
            Reply::Function(r) => r.outcome,
            Reply::Workflow(Run::Finished(done)) => match (done.status.as_str(), done.output) {
                ("SUCCEEDED", Some(output)) => Outcome::Success {
                    body: Bytes::from(output),
                    content_type: None,
                },
                (status, _) => Outcome::Error {
                    error_type: format!("States.{status}"),
                    body: Bytes::from(
                        serde_json::json!({
                            "errorType": done.error.unwrap_or_else(|| status.to_string()),
                            "errorMessage": done.cause.unwrap_or_default(),
                        })
                        .to_string(),
                    ),
                },
            },
            Reply::Workflow(Run::Started(started)) => Outcome::Success {
                body: Bytes::from(started_answer(&started)),
                content_type: None,
            },
        }
    }
}

/// `{"executionArn", "startDate"}` of a started execution.
fn started_answer(started: &ExecutionRecord) -> String {
    serde_json::json!({
        "executionArn": started.arn,
        "startDate": started.start_ms as f64 / 1000.0,
    })
    .to_string()
}

/// What an asynchronous call was accepted as.
#[derive(Debug)]
pub enum Accepted {
    /// The event is durably queued under this request id.
    Queued(InvocationId),
    /// The execution is durably started.
    Started(Box<ExecutionRecord>),
}

/// Runs targets for the event sources: see the module docs.
pub struct Dispatcher {
    invoker: Arc<Invoker>,
    events: Arc<AsyncInvoker>,
    workflows: Arc<Workflows>,
    registry: Arc<Registry>,
}

impl Dispatcher {
    pub fn new(
        invoker: Arc<Invoker>,
        events: Arc<AsyncInvoker>,
        workflows: Arc<Workflows>,
        registry: Arc<Registry>,
    ) -> Self {
        Self {
            invoker,
            events,
            workflows,
            registry,
        }
    }

    /// Sync: runs the target and waits for its answer.
    pub async fn invoke(&self, call: Call) -> Result<Reply, DispatchError> {
        match call.request() {
            Some(req) => Ok(Reply::Function(self.invoker.invoke(req?).await?)),
            None => {
                let machine = call.target.machine().unwrap_or_default();
                Ok(Reply::Workflow(
                    self.workflows.run(call.execution(machine)).await?,
                ))
            }
        }
    }

    /// Async: durably accepts the event (a function's goes through the event
    /// queue, with its retries and destinations; a workflow's execution is
    /// started, which is durable).
    pub async fn enqueue(&self, call: Call) -> Result<Accepted, DispatchError> {
        match call.request() {
            Some(req) => Ok(Accepted::Queued(self.events.submit(req?).await?)),
            None => {
                let machine = call.target.machine().unwrap_or_default();
                Ok(Accepted::Started(Box::new(
                    self.workflows.start(call.execution(machine)).await?,
                )))
            }
        }
    }

    /// Async, at most once per `(source, fire_ms)`: a schedule's fire. A
    /// function's event and the fire's record are written together (see
    /// [`nimbus_store::EventQueue::enqueue_once`]); a workflow's fire is
    /// recorded after its execution started (the execution name, derived
    /// from the fire, keeps a repeated fire from starting a second one).
    /// Returns whether the fire was accepted now.
    pub async fn enqueue_once(
        &self,
        call: Call,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, DispatchError> {
        match call.request() {
            Some(req) => Ok(self.events.submit_once(req?, source, fire_ms).await?),
            None => {
                let machine = call.target.machine().unwrap_or_default();
                self.workflows.start(call.execution(machine)).await?;
                Ok(self.events.mark_fired(source, fire_ms).await?)
            }
        }
    }

    /// Stream: runs a function for a caller that passes its response on as
    /// it is produced. Workflows do not stream.
    pub async fn stream(&self, call: Call) -> Result<Streamed, DispatchError> {
        match call.request() {
            Some(req) => Ok(self.invoker.invoke_streamed(req?).await),
            None => Err(DispatchError::Function(EngineError::Invalid(
                ValidationError::param("a workflow's answer cannot be streamed"),
            ))),
        }
    }

    /// Whether the target exists now: the function (with its qualifier)
    /// resolves, or the state machine is defined.
    pub async fn check(&self, target: &Target) -> Result<(), DispatchError> {
        match target {
            Target::Function { name, qualifier } => {
                let parsed = name.parse::<FunctionName>().ok();
                if let Some(f) = &parsed {
                    self.registry.catch_up(f, qualifier.as_deref()).await;
                }
                let found =
                    parsed.and_then(|f| self.registry.resolve(&f, qualifier.as_deref(), 0.0));
                if found.is_none() {
                    return Err(EngineError::FunctionNotFound(target.to_string()).into());
                }
                Ok(())
            }
            Target::Workflow { machine } => {
                self.workflows.describe_machine(machine).await?;
                Ok(())
            }
        }
    }

    /// When `source` (a schedule) last fired.
    pub async fn last_fired(&self, source: &str) -> Result<Option<i64>, EngineError> {
        self.events.last_fired(source).await
    }

    /// The event-driven invocations running now (recursive loop detection):
    /// a source that invokes synchronously enters its call here.
    pub fn lineage(&self) -> &RunningLineage {
        self.events.lineage()
    }

    /// The trace header to give what `function` sends now, its call having
    /// come with the trace header `sent`: the deeper of that header's chain
    /// and the deepest chain of events `function` is handling on this node.
    /// The header is the invocation's own (the SDKs send it), so it counts
    /// right whichever node ran the invocation; the running chains cover
    /// callers that send none, on the node that runs them.
    pub fn chain_of(&self, function: &str, sent: Option<&str>) -> Option<String> {
        let running = self.events.running_lineage(function);
        let sent = sent.filter(|t| lineage::count(Some(t), function) > 0);
        match (sent, running) {
            (Some(s), Some(r))
                if lineage::count(Some(&r), function) > lineage::count(Some(s), function) =>
            {
                Some(r)
            }
            (Some(s), _) => Some(s.to_string()),
            (None, r) => r,
        }
    }

    /// Records an event a source dropped because it would continue a
    /// recursive loop: a metric, and `why` in the function's log.
    pub async fn loop_stopped(&self, function: &str, request_id: &str, why: String) {
        self.invoker.metrics.loop_stopped(function);
        self.invoker.platform_log(function, request_id, why).await;
    }

    /// The asynchronous path (dead letters, queue statistics).
    pub fn events(&self) -> &Arc<AsyncInvoker> {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(status: &str, output: Option<&str>) -> ExecutionRecord {
        ExecutionRecord {
            arn: "arn:aws:states:r:1:execution:m:e".into(),
            name: "e".into(),
            state_machine_arn: "arn:aws:states:r:1:stateMachine:m".into(),
            status: status.into(),
            input: "{}".into(),
            output: output.map(str::to_string),
            error: (status == "FAILED").then(|| "Boom".to_string()),
            cause: None,
            start_ms: 1_500,
            stop_ms: None,
            definition: String::new(),
            snapshot: None,
        }
    }

    #[test]
    fn function_calls_carry_their_request_fields() {
        let mut call = Call::new(Target::function("resize", Some("live".into())), "{}");
        call.request_id = Some(InvocationId::from("rid-1".to_string()));
        call.trace = Some("Root=1".into());
        call.on_behalf_of = Some("other".into());
        let req = call.request().unwrap().unwrap();
        assert_eq!(req.function.as_str(), "resize");
        assert_eq!(req.qualifier.as_deref(), Some("live"));
        assert_eq!(req.id.as_str(), "rid-1");
        assert_eq!(req.trace_id.as_deref(), Some("Root=1"));
        assert_eq!(req.on_behalf_of.as_deref(), Some("other"));
        let bad = Call::new(Target::function("no such name!", None), "{}");
        assert!(matches!(bad.request(), Some(Err(EngineError::Invalid(_)))));
        assert!(Call::new(Target::workflow("m"), "{}").request().is_none());
    }

    #[test]
    fn executions_are_named_after_the_event_or_the_request() {
        let mut call = Call::new(Target::workflow("orders"), r#"{"a":1}"#);
        assert_eq!(call.execution("orders").name, None, "the service names it");
        call.request_id = Some(InvocationId::from("0192:ab/cd".to_string()));
        let start = call.execution("orders");
        assert_eq!(start.name.as_deref(), Some("0192-ab-cd"));
        assert_eq!(start.input.as_deref(), Some(r#"{"a":1}"#));
        call.execution_name = Some("sqs-abc".into());
        assert_eq!(call.execution("orders").name.as_deref(), Some("sqs-abc"));
    }

    #[test]
    fn workflow_replies_read_like_function_outcomes() {
        let done = Reply::Workflow(Run::Finished(execution("SUCCEEDED", Some(r#"{"ok":1}"#))));
        assert!(done.succeeded());
        assert!(matches!(
            done.into_outcome(),
            Outcome::Success { body, .. } if body == r#"{"ok":1}"#
        ));
        let failed = Reply::Workflow(Run::Finished(execution("FAILED", None)));
        assert!(!failed.succeeded());
        assert!(matches!(
            failed.into_outcome(),
            Outcome::Error { error_type, .. } if error_type == "States.FAILED"
        ));
        let started = Reply::Workflow(Run::Started(execution("RUNNING", None)));
        assert!(started.succeeded());
        let Outcome::Success { body, .. } = started.into_outcome() else {
            panic!("a started execution is a success");
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["executionArn"], "arn:aws:states:r:1:execution:m:e");
        assert_eq!(v["startDate"], 1.5);
    }
}
