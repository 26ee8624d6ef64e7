//! One running execution: a tokio task that owns the interpreter state.
//!
//! Why an actor per execution: the interpreter is a plain value that must be
//! changed by one writer at a time, and everything that can happen to an
//! execution (a task answers, a timer fires, the deadline passes, someone
//! stops it) becomes a message to that task. The loop takes every message
//! waiting, feeds them all to the interpreter, persists the snapshot with all
//! the events in one write, and only then acts (invokes functions, arms
//! timers). So a burst of Map iterations finishing together costs one write,
//! and after a crash the last snapshot is exactly what had been acted upon:
//! re-issuing [`Execution::outstanding`] resumes it (a task that was in flight
//! runs again: at least once).
//!
//! An interpreter call is bounded (`nimbus_workflow::limits`): a definition
//! that loops yields after its budget with [`Action::Continue`], which comes
//! back here as a message after the step is on disk. So a loop costs a write
//! per slice, other messages (StopExecution) get in between, and the history
//! quota ends it, rather than one call holding a runtime thread and memory.
//!
//! Executions started with StartSyncExecution are not durable (EXPRESS
//! semantics, at most once): they run in memory and are written once, at the
//! end, with their whole history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::Clock;
use nimbus_store::{ExecutionRecord, ExecutionUpdate, StoredEvent};
use nimbus_workflow::{
    Action, Execution, ExecutionStatus, HistoryEvent, OsEntropy, StateError, StateMachine, Step,
    Ticket, Timestamp,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::{Shared, WorkflowError, tasks};

/// Something that happened to an execution.
pub(super) enum Msg {
    Task(Ticket, Result<Value, StateError>),
    Timer(Ticket),
    /// Go on with the work left when the last call yielded.
    Continue,
    Deadline,
    Stop {
        error: Option<String>,
        cause: Option<String>,
        reply: oneshot::Sender<Result<i64, WorkflowError>>,
    },
}

/// How the service reaches a running execution.
#[derive(Clone)]
pub(super) struct Handle {
    pub tx: mpsc::UnboundedSender<Msg>,
    pub done: watch::Receiver<bool>,
}

/// Most messages folded into one write.
const MAX_BATCH: usize = 1024;

pub(super) fn now(clock: &Clock) -> Timestamp {
    Timestamp::from_unix_millis(clock.now_ms())
}

pub(super) fn stored_events(events: &[HistoryEvent]) -> Vec<StoredEvent> {
    events
        .iter()
        .map(|e| StoredEvent {
            id: e.id,
            previous_id: e.previous_event_id,
            ts_ms: e.timestamp.unix_millis(),
            event_type: e.event_type.as_str().to_string(),
            details: serde_json::to_string(&e.details).unwrap_or_else(|_| "{}".into()),
        })
        .collect()
}

/// The stored form of where an execution stands (the snapshot only while it runs).
pub(super) fn update_of(clock: &Clock, exec: &Execution, stop_ms: Option<i64>) -> ExecutionUpdate {
    let text = |v: &Value| v.to_string();
    let (status, output, error, cause) = match exec.status() {
        ExecutionStatus::Running => ("RUNNING", None, None, None),
        ExecutionStatus::Succeeded { output } => ("SUCCEEDED", Some(text(output)), None, None),
        ExecutionStatus::Failed { error, cause } => {
            ("FAILED", None, Some(error.clone()), cause.clone())
        }
        ExecutionStatus::TimedOut { error, cause } => {
            ("TIMED_OUT", None, Some(error.clone()), cause.clone())
        }
        ExecutionStatus::Aborted { error, cause } => {
            ("ABORTED", None, error.clone(), cause.clone())
        }
    };
    let running = exec.is_running();
    ExecutionUpdate {
        status: status.into(),
        output,
        error,
        cause,
        stop_ms: if running {
            None
        } else {
            stop_ms.or(Some(now(clock).unix_millis()))
        },
        snapshot: running.then(|| serde_json::to_string(exec).unwrap_or_default()),
    }
}

pub(super) struct Actor {
    pub arn: String,
    pub machine: Arc<StateMachine>,
    pub exec: Execution,
    pub durable: bool,
    pub shared: Arc<Shared>,
    pub tx: mpsc::UnboundedSender<Msg>,
    pub rx: mpsc::UnboundedReceiver<Msg>,
    pub done: watch::Sender<bool>,
    /// For a non-durable execution: its record, written once at the end.
    pub record: Option<ExecutionRecord>,
    /// Its events so far (non-durable only).
    pub events: Vec<StoredEvent>,
    inflight: HashMap<Ticket, AbortHandle>,
}

impl Actor {
    pub fn new(
        arn: String,
        machine: Arc<StateMachine>,
        exec: Execution,
        durable: bool,
        shared: Arc<Shared>,
        record: Option<ExecutionRecord>,
        events: Vec<StoredEvent>,
    ) -> (Actor, Handle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, done_rx) = watch::channel(false);
        let handle = Handle {
            tx: tx.clone(),
            done: done_rx,
        };
        (
            Actor {
                arn,
                machine,
                exec,
                durable,
                shared,
                tx,
                rx,
                done,
                record,
                events,
                inflight: HashMap::new(),
            },
            handle,
        )
    }

    /// Runs until the execution ends or the server stops. `initial` are the
    /// actions of the (already persisted) last step.
    pub async fn run(mut self, initial: Vec<Action>) {
        let deadline = self.exec.deadline().map(|until| {
            let (tx, clock) = (self.tx.clone(), self.shared.clock.clone());
            tokio::spawn(async move {
                sleep_until(&clock, until).await;
                let _ = tx.send(Msg::Deadline);
            })
            .abort_handle()
        });
        if self.exec.is_running() {
            self.perform(initial);
        } else if !self.durable {
            self.finish_non_durable().await;
        }
        while self.exec.is_running() {
            let first = tokio::select! {
                m = self.rx.recv() => m,
                _ = self.shared.stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut step = Step::default();
            let mut replies = Vec::new();
            for m in batch {
                self.apply(m, &mut step, &mut replies);
            }
            let stop_ms = now(&self.shared.clock).unix_millis();
            if !step.events.is_empty()
                && let Err(e) = self.persist(&step.events, stop_ms).await
            {
                // Act on nothing that is not on disk: the execution
                // resumes from its last snapshot at the next start.
                tracing::error!("cannot persist a step of {}: {e}", self.arn);
                for r in replies {
                    let _ = r.send(Err(WorkflowError::Corrupt(e.to_string())));
                }
                break;
            }
            for r in replies {
                let _ = r.send(Ok(stop_ms));
            }
            self.perform(step.actions);
        }
        for (_, h) in self.inflight.drain() {
            h.abort();
        }
        if let Some(d) = deadline {
            d.abort();
        }
        self.shared.forget(&self.arn);
        let _ = self.done.send(true);
    }

    fn apply(
        &mut self,
        m: Msg,
        step: &mut Step,
        replies: &mut Vec<oneshot::Sender<Result<i64, WorkflowError>>>,
    ) {
        let now = now(&self.shared.clock);
        let machine = self.machine.clone();
        let result = match m {
            Msg::Task(ticket, outcome) => {
                self.inflight.remove(&ticket);
                match outcome {
                    Ok(v) => self
                        .exec
                        .task_succeeded(&machine, ticket, v, now, &mut OsEntropy),
                    Err(e) => self
                        .exec
                        .task_failed(&machine, ticket, e, now, &mut OsEntropy),
                }
            }
            Msg::Timer(ticket) => {
                self.inflight.remove(&ticket);
                self.exec.timer_fired(&machine, ticket, now, &mut OsEntropy)
            }
            Msg::Continue => Ok(self.exec.resume(&machine, now, &mut OsEntropy)),
            Msg::Deadline => {
                if self.exec.is_running() {
                    Ok(self.exec.timed_out(now))
                } else {
                    Ok(Step::default())
                }
            }
            Msg::Stop {
                error,
                cause,
                reply,
            } => {
                replies.push(reply);
                if self.exec.is_running() {
                    Ok(self.exec.abort(error, cause, now))
                } else {
                    Ok(Step::default())
                }
            }
        };
        match result {
            Ok(s) => {
                step.events.extend(s.events);
                step.actions.extend(s.actions);
            }
            // A late or duplicate answer (its branch was aborted, or the
            // execution ended): nothing to do.
            Err(e) => tracing::debug!("{}: ignored outcome: {e}", self.arn),
        }
    }

    async fn persist(
        &mut self,
        events: &[HistoryEvent],
        stop_ms: i64,
    ) -> Result<(), WorkflowError> {
        let stored = stored_events(events);
        if self.durable {
            let update = update_of(&self.shared.clock, &self.exec, Some(stop_ms));
            self.shared
                .store
                .save_step(&self.arn, update, stored)
                .await?;
            return Ok(());
        }
        self.events.extend(stored);
        if !self.exec.is_running() {
            self.finish_non_durable().await;
        }
        Ok(())
    }

    /// Writes a finished non-durable execution, once.
    async fn finish_non_durable(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let u = update_of(&self.shared.clock, &self.exec, None);
        record.status = u.status;
        record.output = u.output;
        record.error = u.error;
        record.cause = u.cause;
        record.stop_ms = u.stop_ms;
        record.snapshot = None;
        let events = std::mem::take(&mut self.events);
        if let Err(e) = self.shared.store.create_execution(&record, events).await {
            tracing::warn!("cannot record the express execution {}: {e}", self.arn);
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::RunTask(req) => {
                    if self.shared.is_draining() {
                        // Left pending in the snapshot: re-issued after the restart.
                        continue;
                    }
                    let ticket = req.ticket;
                    let tx = self.tx.clone();
                    let invoker = self.shared.invoker.clone();
                    let h = tokio::spawn(async move {
                        if let Some(outcome) = tasks::run(invoker, req).await {
                            let _ = tx.send(Msg::Task(ticket, outcome));
                        }
                    });
                    self.inflight.insert(ticket, h.abort_handle());
                }
                Action::StartTimer { ticket, until, .. } => {
                    let (tx, clock) = (self.tx.clone(), self.shared.clock.clone());
                    let h = tokio::spawn(async move {
                        sleep_until(&clock, until).await;
                        let _ = tx.send(Msg::Timer(ticket));
                    });
                    self.inflight.insert(ticket, h.abort_handle());
                }
                Action::Cancel { ticket } => {
                    if let Some(h) = self.inflight.remove(&ticket) {
                        h.abort();
                    }
                }
                Action::Continue => {
                    // Queued behind what is waiting, so a StopExecution gets in.
                    let _ = self.tx.send(Msg::Continue);
                }
                Action::Succeeded { .. } | Action::Failed { .. } => {}
            }
        }
    }
}

/// Sleeps until a wall-clock instant (timers survive restarts as instants).
async fn sleep_until(clock: &Clock, until: Timestamp) {
    let ms = until.unix_millis() - clock.now_ms();
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    }
}
