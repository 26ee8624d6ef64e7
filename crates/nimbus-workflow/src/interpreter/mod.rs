//! The interpreter: a deterministic step machine over a serializable state.
//!
//! Why this shape: a durable executor must be able to crash at any point and
//! resume. So the interpreter never performs I/O, never sleeps, never reads
//! the clock and never draws randomness on its own; each public method takes
//! the current time and an [`Entropy`], mutates the [`Execution`], and returns
//! a [`Step`]: the history events to persist and the [`Action`]s to perform.
//! The executor persists the serialized `Execution` together with the events
//! *before* acting; after a crash it reloads the snapshot and re-issues
//! [`Execution::outstanding`].
//!
//! Everything that needs no outside help (Pass, Choice, Succeed, Fail, input
//! and output processing, a Wait whose time has come, starting Parallel
//! branches and Map iterations) runs inside one call. Parallel branches and
//! Map iterations are *frames*: child executions of a scope, created lazily
//! (a Map only materializes up to `MaxConcurrency` frames at a time, so a
//! 10,000-item Map costs O(items), not O(items²)) and identified by
//! [`FrameId`]. Every action carries a [`Ticket`]; outcomes are fed back by
//! ticket, and a ticket that is no longer pending (its branch was aborted, or
//! it timed out and was retried) is rejected with
//! [`FeedbackError::UnknownTicket`], so late or duplicate deliveries are
//! harmless.

mod context;
mod engine;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::StateMachine;
use crate::entropy::Entropy;
use crate::errors::{self, StateError};
use crate::history::{EventDetails, EventType, HistoryEvent};
use crate::timestamp::Timestamp;

/// Identifies a frame: 0 is the execution's top level, others are Parallel
/// branches and Map iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameId(pub u64);

/// Identifies one pending task or timer; outcomes are fed back by ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ticket(pub u64);

/// Interpreter settings, fixed for the life of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Concurrency of a Map whose `MaxConcurrency` is 0 (unlimited). AWS caps
    /// inline Maps at 40; 0 here means truly unlimited.
    pub unlimited_map_concurrency: usize,
    /// History events after which the execution fails with `States.Runtime`
    /// (Step Functions: [`crate::limits::MAX_HISTORY_EVENTS`]; a server may
    /// allow more, e.g. for large inline Maps).
    #[serde(default = "default_max_history_events")]
    pub max_history_events: u64,
}

fn default_max_history_events() -> u64 {
    crate::limits::MAX_HISTORY_EVENTS
}

impl Default for Config {
    fn default() -> Config {
        Config {
            unlimited_map_concurrency: 40,
            max_history_events: crate::limits::MAX_HISTORY_EVENTS,
        }
    }
}

/// Who and what the execution is; shown in the context object `$$`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInfo {
    /// `$$.Execution.Id` (AWS: the execution ARN).
    pub id: String,
    /// `$$.Execution.Name`.
    pub name: String,
    /// `$$.StateMachine.Id`.
    pub state_machine_id: String,
    /// `$$.StateMachine.Name`.
    pub state_machine_name: String,
    /// `$$.Execution.RoleArn`.
    pub role_arn: Option<String>,
    /// `$$.Execution.Input` and the first state's input (`{}` if none given).
    pub input: Value,
    /// `$$.Execution.StartTime`.
    pub start_time: Timestamp,
}

/// Where the execution stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Still going.
    Running,
    /// Finished with an output.
    Succeeded {
        /// The execution output.
        output: Value,
    },
    /// Finished with an uncaught error.
    Failed {
        /// Error name.
        error: String,
        /// Cause.
        cause: Option<String>,
    },
    /// The execution-level `TimeoutSeconds` expired.
    TimedOut {
        /// Always `States.Timeout`.
        error: String,
        /// Cause.
        cause: Option<String>,
    },
    /// Stopped from outside (`StopExecution`).
    Aborted {
        /// Error given to `abort`.
        error: Option<String>,
        /// Cause given to `abort`.
        cause: Option<String>,
    },
}

/// How a task resource is reported in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// `arn:aws:lambda:…:function:…` (`LambdaFunction*` events).
    Lambda,
    /// `arn:aws:states:::service:action[.sync|.waitForTaskToken]` or any
    /// other URI (`Task*` events).
    Service,
    /// `arn:aws:states:…:activity:…` (`Activity*` events).
    Activity,
}

impl TaskKind {
    /// Classifies a `Resource`.
    pub fn of(resource: &str) -> TaskKind {
        if resource.starts_with("arn:aws:lambda:") {
            TaskKind::Lambda
        } else if resource.starts_with("arn:aws:states:") && resource.contains(":activity:") {
            TaskKind::Activity
        } else {
            TaskKind::Service
        }
    }

    fn event(self, what: TaskEvent) -> EventType {
        use EventType as E;
        match (self, what) {
            (TaskKind::Lambda, TaskEvent::Scheduled) => E::LambdaFunctionScheduled,
            (TaskKind::Lambda, TaskEvent::Started) => E::LambdaFunctionStarted,
            (TaskKind::Lambda, TaskEvent::Succeeded) => E::LambdaFunctionSucceeded,
            (TaskKind::Lambda, TaskEvent::Failed) => E::LambdaFunctionFailed,
            (TaskKind::Lambda, TaskEvent::TimedOut) => E::LambdaFunctionTimedOut,
            (TaskKind::Service, TaskEvent::Scheduled) => E::TaskScheduled,
            (TaskKind::Service, TaskEvent::Started) => E::TaskStarted,
            (TaskKind::Service, TaskEvent::Succeeded) => E::TaskSucceeded,
            (TaskKind::Service, TaskEvent::Failed) => E::TaskFailed,
            (TaskKind::Service, TaskEvent::TimedOut) => E::TaskTimedOut,
            (TaskKind::Activity, TaskEvent::Scheduled) => E::ActivityScheduled,
            (TaskKind::Activity, TaskEvent::Started) => E::ActivityStarted,
            (TaskKind::Activity, TaskEvent::Succeeded) => E::ActivitySucceeded,
            (TaskKind::Activity, TaskEvent::Failed) => E::ActivityFailed,
            (TaskKind::Activity, TaskEvent::TimedOut) => E::ActivityTimedOut,
        }
    }
}

#[derive(Clone, Copy)]
enum TaskEvent {
    Scheduled,
    Started,
    Succeeded,
    Failed,
    TimedOut,
}

/// A task for the executor to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// Feed the outcome back with this.
    pub ticket: Ticket,
    /// The frame the task runs in.
    pub frame: FrameId,
    /// The Task state's name.
    pub state_name: String,
    /// `Resource`, verbatim.
    pub resource: String,
    /// How the resource is classified.
    pub kind: TaskKind,
    /// The payload (effective input after `Parameters`).
    pub input: Value,
    /// `Credentials`, evaluated.
    pub credentials: Option<Value>,
    /// Fail the task with `States.Timeout` this long after it started.
    /// `None`: no limit given (AWS default: effectively none).
    pub timeout_seconds: Option<u64>,
    /// Fail with `States.Timeout` (or `States.HeartbeatTimeout`) if no
    /// heartbeat arrives for this long.
    pub heartbeat_seconds: Option<u64>,
    /// 0 for the first try, then the number of retries so far
    /// (`$$.State.RetryCount`).
    pub attempt: u64,
    /// For `.waitForTaskToken` resources: the token (`$$.Task.Token`) the
    /// callback will present.
    pub task_token: Option<String>,
}

/// Why a timer exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerPurpose {
    /// A Wait state.
    Wait,
    /// The delay before a retry.
    Retry,
}

/// Something the executor must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Run a task; answer with [`Execution::task_succeeded`] or
    /// [`Execution::task_failed`] (optionally [`Execution::task_started`]
    /// first).
    RunTask(TaskRequest),
    /// Call [`Execution::timer_fired`] with `ticket` at `until`.
    StartTimer {
        /// Feed the firing back with this.
        ticket: Ticket,
        /// The frame waiting.
        frame: FrameId,
        /// When.
        until: Timestamp,
        /// Why.
        purpose: TimerPurpose,
    },
    /// A task or timer is no longer wanted (its branch was aborted, or the
    /// execution ended): stop it if possible; its outcome will be rejected.
    Cancel {
        /// The ticket given with the original action.
        ticket: Ticket,
    },
    /// The execution succeeded.
    Succeeded {
        /// Its output.
        output: Value,
    },
    /// The execution failed.
    Failed {
        /// Error name.
        error: String,
        /// Cause.
        cause: Option<String>,
    },
    /// The call used its budget ([`crate::limits`]) with work left: persist
    /// this step, then call [`Execution::resume`].
    Continue,
}

/// What one interpreter call produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// History events, in order; persist them with the snapshot.
    pub events: Vec<HistoryEvent>,
    /// Actions to perform after persisting.
    pub actions: Vec<Action>,
}

/// An outcome could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// The ticket is not pending (never issued, already answered, or its
    /// branch was aborted). Safe to ignore.
    #[error("ticket {0:?} is not pending")]
    UnknownTicket(Ticket),
    /// The ticket belongs to a timer but a task outcome was given, or the
    /// reverse.
    #[error("ticket {0:?} is not a {1}")]
    WrongKind(Ticket, &'static str),
    /// The execution has already finished.
    #[error("the execution is not running")]
    NotRunning,
}

/// A running (or finished) execution: everything needed to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    info: ExecutionInfo,
    config: Config,
    status: ExecutionStatus,
    deadline: Option<Timestamp>,
    frames: BTreeMap<FrameId, Frame>,
    tickets: BTreeMap<Ticket, FrameId>,
    next_frame: u64,
    next_ticket: u64,
    next_event: u64,
    /// Work left when the last call yielded (see [`Action::Continue`]).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    deferred: VecDeque<engine::Work>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    parent: Option<ParentLink>,
    last_event: u64,
    active: Option<Active>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct ParentLink {
    frame: FrameId,
    index: usize,
}

/// One visit of a state that has not finished yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Active {
    state: String,
    raw_input: Value,
    entered_time: Timestamp,
    entered_event: u64,
    /// Retries used per retrier during this visit.
    retry_counts: Vec<u64>,
    /// Total retries during this visit (`$$.State.RetryCount`).
    retries: u64,
    pending: Pending,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Pending {
    /// Being processed inside the current call.
    Nothing,
    Task {
        request: TaskRequest,
        started: bool,
    },
    Timer {
        ticket: Ticket,
        until: Timestamp,
        purpose: TimerPurpose,
    },
    Parallel {
        children: Vec<Option<FrameId>>,
        results: Vec<Value>,
        remaining: usize,
    },
    Map {
        effective_input: Value,
        /// Items not started yet; started ones are taken out (left `null`).
        items: Vec<Value>,
        next: usize,
        limit: usize,
        running: BTreeSet<FrameId>,
        results: Vec<Value>,
        done: usize,
    },
}

impl Execution {
    /// Starts an execution: runs until the first action is needed.
    pub fn start(
        machine: &StateMachine,
        info: ExecutionInfo,
        config: Config,
        now: Timestamp,
        entropy: &mut dyn Entropy,
    ) -> (Execution, Step) {
        let deadline = machine
            .timeout_seconds
            .map(|s| info.start_time.plus_millis(s.saturating_mul(1000)));
        let input = info.input.clone();
        let mut execution = Execution {
            info,
            config,
            status: ExecutionStatus::Running,
            deadline,
            frames: BTreeMap::new(),
            tickets: BTreeMap::new(),
            next_frame: 1,
            next_ticket: 1,
            next_event: 1,
            deferred: VecDeque::new(),
        };
        execution.frames.insert(
            FrameId(0),
            Frame {
                parent: None,
                last_event: 0,
                active: None,
            },
        );
        let mut cx = engine::Cx::new(machine, now, entropy);
        execution.emit(
            &mut cx,
            FrameId(0),
            EventType::ExecutionStarted,
            EventDetails {
                input: Some(input.clone()),
                ..EventDetails::default()
            },
        );
        cx.enter(FrameId(0), machine.start_at().to_string(), input);
        execution.run(&mut cx);
        (execution, cx.step)
    }

    /// Goes on with the work left by a call that yielded
    /// ([`Action::Continue`]); an empty step when there is none.
    pub fn resume(
        &mut self,
        machine: &StateMachine,
        now: Timestamp,
        entropy: &mut dyn Entropy,
    ) -> Step {
        let mut cx = engine::Cx::new(machine, now, entropy);
        if self.status == ExecutionStatus::Running {
            cx.requeue(std::mem::take(&mut self.deferred));
            self.run(&mut cx);
        }
        cx.step
    }

    /// Records that a task has actually started (emits `…Started`). Optional:
    /// an outcome for a task never reported as started implies it.
    pub fn task_started(&mut self, ticket: Ticket, now: Timestamp) -> Result<Step, FeedbackError> {
        let frame = self.task_frame(ticket)?;
        let mut step = Step::default();
        self.mark_started(&mut step, frame, now);
        Ok(step)
    }

    /// Feeds a task's result.
    pub fn task_succeeded(
        &mut self,
        machine: &StateMachine,
        ticket: Ticket,
        output: Value,
        now: Timestamp,
        entropy: &mut dyn Entropy,
    ) -> Result<Step, FeedbackError> {
        let frame = self.task_frame(ticket)?;
        self.tickets.remove(&ticket);
        let mut cx = engine::Cx::new(machine, now, entropy);
        self.mark_started(&mut cx.step, frame, now);
        let (kind, resource) = self.task_kind(frame);
        self.emit(
            &mut cx,
            frame,
            kind.event(TaskEvent::Succeeded),
            EventDetails {
                resource: Some(resource),
                output: Some(output.clone()),
                ..EventDetails::default()
            },
        );
        self.complete(&mut cx, frame, output);
        self.run(&mut cx);
        Ok(cx.step)
    }

    /// Feeds a task's failure. A timeout or missed heartbeat enforced by the
    /// executor is `States.Timeout` (or `States.HeartbeatTimeout`).
    pub fn task_failed(
        &mut self,
        machine: &StateMachine,
        ticket: Ticket,
        error: StateError,
        now: Timestamp,
        entropy: &mut dyn Entropy,
    ) -> Result<Step, FeedbackError> {
        let frame = self.task_frame(ticket)?;
        self.tickets.remove(&ticket);
        let mut cx = engine::Cx::new(machine, now, entropy);
        self.mark_started(&mut cx.step, frame, now);
        let (kind, resource) = self.task_kind(frame);
        let what = if error.error == errors::TIMEOUT || error.error == errors::HEARTBEAT_TIMEOUT {
            TaskEvent::TimedOut
        } else {
            TaskEvent::Failed
        };
        self.emit(
            &mut cx,
            frame,
            kind.event(what),
            EventDetails {
                resource: Some(resource),
                error: Some(error.error.clone()),
                cause: error.cause.clone(),
                ..EventDetails::default()
            },
        );
        self.handle_error(&mut cx, frame, error);
        self.run(&mut cx);
        Ok(cx.step)
    }

    /// A timer (Wait state or retry delay) has expired.
    pub fn timer_fired(
        &mut self,
        machine: &StateMachine,
        ticket: Ticket,
        now: Timestamp,
        entropy: &mut dyn Entropy,
    ) -> Result<Step, FeedbackError> {
        if self.status != ExecutionStatus::Running {
            return Err(FeedbackError::NotRunning);
        }
        let frame = *self
            .tickets
            .get(&ticket)
            .ok_or(FeedbackError::UnknownTicket(ticket))?;
        let purpose = match self.active(frame).map(|a| &a.pending) {
            Some(Pending::Timer { purpose, .. }) => *purpose,
            _ => return Err(FeedbackError::WrongKind(ticket, "timer")),
        };
        self.tickets.remove(&ticket);
        let mut cx = engine::Cx::new(machine, now, entropy);
        match purpose {
            TimerPurpose::Wait => self.wait_elapsed(&mut cx, frame),
            TimerPurpose::Retry => self.execute(&mut cx, frame),
        }
        self.run(&mut cx);
        Ok(cx.step)
    }

    /// The execution-level `TimeoutSeconds` expired (see
    /// [`Execution::deadline`]): everything stops, status `TIMED_OUT`.
    pub fn timed_out(&mut self, now: Timestamp) -> Step {
        let cause = format!(
            "The execution exceeded its TimeoutSeconds ({}).",
            self.deadline.map(|d| d.to_rfc3339()).unwrap_or_default()
        );
        self.stop(
            now,
            EventType::ExecutionTimedOut,
            ExecutionStatus::TimedOut {
                error: errors::TIMEOUT.to_string(),
                cause: Some(cause),
            },
        )
    }

    /// Stops the execution from outside (`StopExecution`).
    pub fn abort(&mut self, error: Option<String>, cause: Option<String>, now: Timestamp) -> Step {
        self.stop(
            now,
            EventType::ExecutionAborted,
            ExecutionStatus::Aborted { error, cause },
        )
    }

    /// Where the execution stands.
    pub fn status(&self) -> &ExecutionStatus {
        &self.status
    }

    /// Whether the execution is still running.
    pub fn is_running(&self) -> bool {
        self.status == ExecutionStatus::Running
    }

    /// Who and what the execution is.
    pub fn info(&self) -> &ExecutionInfo {
        &self.info
    }

    /// When the execution-level timeout expires; the executor calls
    /// [`Execution::timed_out`] then.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Every task and timer still pending, as actions: what to re-issue after
    /// loading a snapshot (a task that may already have run is re-run: tasks
    /// are at-least-once, as on AWS).
    pub fn outstanding(&self) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .tickets
            .iter()
            .filter_map(
                |(ticket, frame)| match self.active(*frame).map(|a| &a.pending) {
                    Some(Pending::Task { request, .. }) => Some(Action::RunTask(request.clone())),
                    Some(Pending::Timer { until, purpose, .. }) => Some(Action::StartTimer {
                        ticket: *ticket,
                        frame: *frame,
                        until: *until,
                        purpose: *purpose,
                    }),
                    _ => None,
                },
            )
            .collect();
        if self.status == ExecutionStatus::Running && !self.deferred.is_empty() {
            actions.push(Action::Continue);
        }
        actions
    }

    /// How many frames exist (1 for the top level plus live branches and
    /// iterations).
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    fn active(&self, frame: FrameId) -> Option<&Active> {
        self.frames.get(&frame).and_then(|f| f.active.as_ref())
    }

    fn task_frame(&self, ticket: Ticket) -> Result<FrameId, FeedbackError> {
        if self.status != ExecutionStatus::Running {
            return Err(FeedbackError::NotRunning);
        }
        let frame = *self
            .tickets
            .get(&ticket)
            .ok_or(FeedbackError::UnknownTicket(ticket))?;
        match self.active(frame).map(|a| &a.pending) {
            Some(Pending::Task { .. }) => Ok(frame),
            _ => Err(FeedbackError::WrongKind(ticket, "task")),
        }
    }

    fn task_kind(&self, frame: FrameId) -> (TaskKind, String) {
        match self.active(frame).map(|a| &a.pending) {
            Some(Pending::Task { request, .. }) => (request.kind, request.resource.clone()),
            _ => (TaskKind::Service, String::new()),
        }
    }

    fn mark_started(&mut self, step: &mut Step, frame: FrameId, now: Timestamp) {
        let Some(Pending::Task { request, started }) = self
            .frames
            .get_mut(&frame)
            .and_then(|f| f.active.as_mut())
            .map(|a| &mut a.pending)
        else {
            return;
        };
        if *started {
            return;
        }
        *started = true;
        let (kind, resource) = (request.kind, request.resource.clone());
        let event = self.new_event(
            frame,
            now,
            kind.event(TaskEvent::Started),
            EventDetails {
                resource: Some(resource),
                ..EventDetails::default()
            },
        );
        step.events.push(event);
    }

    fn stop(&mut self, now: Timestamp, event: EventType, status: ExecutionStatus) -> Step {
        let mut step = Step::default();
        if self.status != ExecutionStatus::Running {
            return step;
        }
        self.abort_frame_tree(&mut step, FrameId(0), now);
        self.deferred.clear();
        let (error, cause) = match &status {
            ExecutionStatus::TimedOut { error, cause } => (Some(error.clone()), cause.clone()),
            ExecutionStatus::Aborted { error, cause } => (error.clone(), cause.clone()),
            _ => (None, None),
        };
        let e = self.new_event(
            FrameId(0),
            now,
            event,
            EventDetails {
                error,
                cause,
                ..EventDetails::default()
            },
        );
        step.events.push(e);
        self.status = status;
        step
    }

    /// Allocates the next event id, chaining `previousEventId` per frame.
    fn new_event(
        &mut self,
        frame: FrameId,
        now: Timestamp,
        event_type: EventType,
        details: EventDetails,
    ) -> HistoryEvent {
        let id = self.next_event;
        self.next_event += 1;
        let previous_event_id = match self.frames.get_mut(&frame) {
            Some(f) => std::mem::replace(&mut f.last_event, id),
            None => id - 1,
        };
        HistoryEvent {
            id,
            previous_event_id,
            timestamp: now,
            event_type,
            frame,
            details,
        }
    }
}
