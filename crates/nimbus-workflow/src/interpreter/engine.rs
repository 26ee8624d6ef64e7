//! The in-process part of the interpreter: a work queue that runs states
//! until every frame is waiting on the executor or has finished.
//!
//! A queue rather than recursion because a Map of Pass-only iterations
//! finishes each child synchronously and starts the next: with recursion
//! that would be 10,000 frames deep.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::context::ContextObject;
use super::{
    Action, Active, Execution, ExecutionStatus, Frame, FrameId, ParentLink, Pending, Step,
    TaskEvent, TaskKind, TaskRequest, Ticket, TimerPurpose,
};
use crate::definition::{
    FailValue, MapState, ResultShaping, Seconds, State, StateKind, StateMachine, WaitState,
};
use crate::entropy::Entropy;
use crate::errors::{self, StateError};
use crate::history::{EventDetails, EventType};
use crate::limits::{
    MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, PAYLOAD_BYTES_PER_CALL, TRANSITIONS_PER_CALL,
    json_depth_within, json_size_within,
};
use crate::path::{Path, Scope};
use crate::timestamp::Timestamp;

/// Everything one interpreter call works with.
pub(super) struct Cx<'a> {
    pub machine: &'a StateMachine,
    pub now: Timestamp,
    pub entropy: &'a mut dyn Entropy,
    pub step: Step,
    queue: VecDeque<Work>,
    /// Transitions run and payload bytes handled by this call (the budget).
    transitions: usize,
    payload_bytes: usize,
}

/// One unit of work; kept in the snapshot when a call yields with some left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Work {
    Enter {
        frame: FrameId,
        state: String,
        input: Value,
    },
    ChildDone {
        parent: ParentLink,
        child: FrameId,
        last_event: u64,
        result: Result<Value, StateError>,
    },
}

impl<'a> Cx<'a> {
    pub fn new(machine: &'a StateMachine, now: Timestamp, entropy: &'a mut dyn Entropy) -> Cx<'a> {
        Cx {
            machine,
            now,
            entropy,
            step: Step::default(),
            queue: VecDeque::new(),
            transitions: 0,
            payload_bytes: 0,
        }
    }

    /// Work left by a call that yielded.
    pub fn requeue(&mut self, work: VecDeque<Work>) {
        self.queue = work;
    }

    pub fn enter(&mut self, frame: FrameId, state: String, input: Value) {
        self.queue.push_back(Work::Enter {
            frame,
            state,
            input,
        });
    }
}

/// What a state needs once its input has been processed.
enum Plan {
    /// A result to shape (Pass).
    Result(Value),
    /// Leave with this output (`next: None` ends the frame).
    Exit {
        output: Value,
        next: Option<String>,
    },
    Task(Box<TaskRequest>),
    Wait {
        until: Timestamp,
    },
    Fork {
        input: Value,
        branches: usize,
    },
    Map {
        input: Value,
        items: Vec<Value>,
        limit: usize,
    },
    Fail(StateError),
}

fn input_path_error(field: &str, path: &Path) -> StateError {
    StateError::runtime(format!(
        "Invalid path '{path}' : No results for path: {}{}",
        path.normalized(),
        if field == "InputPath" {
            ""
        } else {
            " (OutputPath)"
        }
    ))
}

fn apply_io_path(
    path: &Option<Path>,
    value: &Value,
    scope_ctx: &ContextObject<'_>,
    field: &str,
) -> Result<Value, StateError> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some(p) if p.is_root() && p.root_kind() == crate::path::Root::Input => Ok(value.clone()),
        Some(p) => Scope::new(value, scope_ctx)
            .select(p)
            .ok_or_else(|| input_path_error(field, p)),
    }
}

fn reference_value(path: &Path, scope: &Scope<'_>, field: &str) -> Result<Value, StateError> {
    scope.select(path).ok_or_else(|| {
        StateError::runtime(format!(
            "Invalid path '{path}' in {field} : No results for path: {}",
            path.normalized()
        ))
    })
}

fn positive_seconds(value: Value, field: &str, min: u64) -> Result<u64, StateError> {
    value.as_u64().filter(|s| *s >= min).ok_or_else(|| {
        StateError::runtime(format!(
            "The value of {field} must be {} integer, got {value}",
            if min == 0 {
                "a non-negative"
            } else {
                "a positive"
            }
        ))
    })
}

/// Checks a state's input or output against Step Functions' payload quota,
/// and counts it against the call's budget.
fn payload_within(
    cx: &mut Cx<'_>,
    value: &Value,
    what: &str,
    state: &str,
) -> Result<(), StateError> {
    if !json_depth_within(value, MAX_PAYLOAD_DEPTH) {
        return Err(StateError::runtime(format!(
            "The {what} of the state '{state}' is nested deeper than {MAX_PAYLOAD_DEPTH} levels."
        )));
    }
    match json_size_within(value, MAX_PAYLOAD_BYTES) {
        Some(n) => {
            cx.payload_bytes += n;
            Ok(())
        }
        None => {
            // AWS's wording for outputs; the same shape for inputs.
            let did = if what == "input" {
                "received an input"
            } else {
                "returned a result"
            };
            Err(StateError::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{state}' {did} with a size exceeding the maximum number of bytes service limit ({MAX_PAYLOAD_BYTES} bytes)."
                ),
            ))
        }
    }
}

fn shaping(state: &State) -> Option<&ResultShaping> {
    match &state.kind {
        StateKind::Task(t) => Some(&t.shaping),
        StateKind::Parallel(p) => Some(&p.shaping),
        StateKind::Map(m) => Some(&m.shaping),
        _ => None,
    }
}

impl Execution {
    pub(super) fn emit(
        &mut self,
        cx: &mut Cx<'_>,
        frame: FrameId,
        event: EventType,
        details: EventDetails,
    ) -> u64 {
        let e = self.new_event(frame, cx.now, event, details);
        let id = e.id;
        cx.step.events.push(e);
        id
    }

    fn new_ticket(&mut self, frame: FrameId) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.tickets.insert(ticket, frame);
        ticket
    }

    fn context<'s>(
        &'s self,
        active: &'s Active,
        token: Option<&'s str>,
        map_item: Option<(usize, &'s Value)>,
    ) -> ContextObject<'s> {
        ContextObject {
            info: &self.info,
            state_name: &active.state,
            entered_time: active.entered_time,
            retry_count: active.retries,
            task_token: token,
            map_item,
        }
    }

    fn set_pending(&mut self, frame: FrameId, pending: Pending) {
        if let Some(active) = self.frames.get_mut(&frame).and_then(|f| f.active.as_mut()) {
            active.pending = pending;
        }
    }

    /// Drains the work queue, within the budget: past it, the rest is kept
    /// in the execution and the call yields with [`Action::Continue`].
    pub(super) fn run(&mut self, cx: &mut Cx<'_>) {
        loop {
            if self.status != ExecutionStatus::Running {
                cx.queue.clear();
                return;
            }
            if cx.queue.is_empty() {
                return;
            }
            // Checked between transitions, leaving room for the failure's
            // own events (a transition emits a handful at most).
            let max_events = self.config.max_history_events;
            if self.next_event + 8 > max_events {
                cx.queue.clear();
                self.fail_execution(
                    cx,
                    StateError::runtime(format!(
                        "The execution reached the maximum number of history events ({max_events})."
                    )),
                );
                return;
            }
            if cx.transitions >= TRANSITIONS_PER_CALL || cx.payload_bytes >= PAYLOAD_BYTES_PER_CALL
            {
                // Appended: a task's outcome may arrive before the
                // Continue of an earlier call, whose work is still here.
                self.deferred.extend(cx.queue.drain(..));
                cx.step.actions.push(Action::Continue);
                return;
            }
            let Some(work) = cx.queue.pop_front() else {
                return;
            };
            cx.transitions += 1;
            match work {
                Work::Enter {
                    frame,
                    state,
                    input,
                } => self.enter_state(cx, frame, state, input),
                Work::ChildDone {
                    parent,
                    child,
                    last_event,
                    result,
                } => self.child_done(cx, parent, child, last_event, result),
            }
        }
    }

    fn enter_state(&mut self, cx: &mut Cx<'_>, frame: FrameId, state_name: String, input: Value) {
        if !self.frames.contains_key(&frame) {
            return; // aborted meanwhile
        }
        let Some(state) = cx.machine.state(&state_name) else {
            let err = StateError::runtime(format!(
                "the state '{state_name}' is not in the state machine definition"
            ));
            self.finish_frame(cx, frame, Err(err));
            return;
        };
        if let Err(e) = payload_within(cx, &input, "input", &state_name) {
            self.finish_frame(cx, frame, Err(e));
            return;
        }
        let entered = self.emit(
            cx,
            frame,
            EventType::state_entered(state.kind.type_name()),
            EventDetails {
                name: Some(state_name.clone()),
                input: Some(input.clone()),
                ..EventDetails::default()
            },
        );
        let retriers = shaping(state).map_or(0, |s| s.retry.len());
        if let Some(f) = self.frames.get_mut(&frame) {
            f.active = Some(Active {
                state: state_name,
                raw_input: input,
                entered_time: cx.now,
                entered_event: entered,
                retry_counts: vec![0; retriers],
                retries: 0,
                pending: Pending::Nothing,
            });
        }
        self.execute(cx, frame);
    }

    /// Runs the active state of `frame` from input processing on (also used
    /// to re-run it after a retry delay).
    pub(super) fn execute(&mut self, cx: &mut Cx<'_>, frame: FrameId) {
        let Some(active) = self.active(frame) else {
            return;
        };
        let Some(state) = cx.machine.state(&active.state) else {
            return;
        };
        let plan = self.plan(cx, frame, active, state);
        let attempt = active.retries;
        match plan {
            Err(e) | Ok(Plan::Fail(e)) => self.handle_error(cx, frame, e),
            Ok(Plan::Result(result)) => self.complete(cx, frame, result),
            Ok(Plan::Exit { output, next }) => self.exit(cx, frame, output, next),
            Ok(Plan::Task(mut request)) => {
                request.ticket = self.new_ticket(frame);
                request.attempt = attempt;
                self.emit(
                    cx,
                    frame,
                    request.kind.event(TaskEvent::Scheduled),
                    EventDetails {
                        resource: Some(request.resource.clone()),
                        input: Some(request.input.clone()),
                        timeout_in_seconds: request.timeout_seconds,
                        heartbeat_in_seconds: request.heartbeat_seconds,
                        ..EventDetails::default()
                    },
                );
                cx.step.actions.push(Action::RunTask((*request).clone()));
                self.set_pending(
                    frame,
                    Pending::Task {
                        request: *request,
                        started: false,
                    },
                );
            }
            Ok(Plan::Wait { until }) => {
                if until <= cx.now {
                    self.wait_elapsed(cx, frame);
                } else {
                    let ticket = self.new_ticket(frame);
                    cx.step.actions.push(Action::StartTimer {
                        ticket,
                        frame,
                        until,
                        purpose: TimerPurpose::Wait,
                    });
                    self.set_pending(
                        frame,
                        Pending::Timer {
                            ticket,
                            until,
                            purpose: TimerPurpose::Wait,
                        },
                    );
                }
            }
            Ok(Plan::Fork { input, branches }) => {
                self.emit(
                    cx,
                    frame,
                    EventType::ParallelStateStarted,
                    EventDetails::default(),
                );
                let StateKind::Parallel(parallel) = &state.kind else {
                    return;
                };
                let mut children = Vec::with_capacity(branches);
                for (index, branch) in parallel.branches.iter().enumerate() {
                    let child = self.new_frame(frame, index);
                    children.push(Some(child));
                    cx.enter(child, branch.start_at.clone(), input.clone());
                }
                self.set_pending(
                    frame,
                    Pending::Parallel {
                        children,
                        results: vec![Value::Null; branches],
                        remaining: branches,
                    },
                );
            }
            Ok(Plan::Map {
                input,
                items,
                limit,
            }) => {
                let length = items.len();
                self.emit(
                    cx,
                    frame,
                    EventType::MapStateStarted,
                    EventDetails {
                        length: Some(length as u64),
                        ..EventDetails::default()
                    },
                );
                if length == 0 {
                    self.emit(
                        cx,
                        frame,
                        EventType::MapStateSucceeded,
                        EventDetails::default(),
                    );
                    self.complete(cx, frame, Value::Array(Vec::new()));
                    return;
                }
                self.set_pending(
                    frame,
                    Pending::Map {
                        effective_input: input,
                        items,
                        next: 0,
                        limit,
                        running: BTreeSet::new(),
                        results: vec![Value::Null; length],
                        done: 0,
                    },
                );
                self.fill_map(cx, frame);
            }
        }
    }

    fn new_frame(&mut self, parent: FrameId, index: usize) -> FrameId {
        let id = FrameId(self.next_frame);
        self.next_frame += 1;
        let last_event = self.frames.get(&parent).map_or(0, |f| f.last_event);
        self.frames.insert(
            id,
            Frame {
                parent: Some(ParentLink {
                    frame: parent,
                    index,
                }),
                last_event,
                active: None,
            },
        );
        id
    }

    /// Input processing and the state-specific decision; reads only.
    fn plan(
        &self,
        cx: &mut Cx<'_>,
        frame: FrameId,
        active: &Active,
        state: &State,
    ) -> Result<Plan, StateError> {
        let raw = &active.raw_input;
        let ctx = self.context(active, None, None);
        let effective = |field| apply_io_path(&state.input_path, raw, &ctx, field);
        match &state.kind {
            StateKind::Pass(pass) => {
                let effective = effective("InputPath")?;
                let result = match (&pass.result, &pass.parameters) {
                    (Some(result), _) => result.clone(),
                    (None, Some(params)) => {
                        params.evaluate(&Scope::new(&effective, &ctx), cx.entropy)?
                    }
                    (None, None) => effective,
                };
                Ok(Plan::Result(result))
            }
            StateKind::Succeed => {
                let effective = effective("InputPath")?;
                let output = apply_io_path(&state.output_path, &effective, &ctx, "OutputPath")?;
                Ok(Plan::Exit { output, next: None })
            }
            StateKind::Fail(fail) => {
                let scope = Scope::new(raw, &ctx);
                let resolve = |v: &Option<FailValue>,
                               field: &str,
                               entropy: &mut dyn Entropy|
                 -> Result<Option<String>, StateError> {
                    let value = match v {
                        None => return Ok(None),
                        Some(FailValue::Literal(s)) => return Ok(Some(s.clone())),
                        Some(FailValue::Path(p)) => reference_value(p, &scope, field)?,
                        Some(FailValue::Call(c)) => c.evaluate(&scope, entropy)?,
                    };
                    match value {
                        Value::String(s) => Ok(Some(s)),
                        other => Err(StateError::runtime(format!(
                            "The value of {field} must be a string, got {other}"
                        ))),
                    }
                };
                let error = resolve(&fail.error, "ErrorPath", cx.entropy)?;
                let cause = resolve(&fail.cause, "CausePath", cx.entropy)?;
                Ok(Plan::Fail(StateError {
                    error: error.unwrap_or_default(),
                    cause,
                }))
            }
            StateKind::Choice(choice) => {
                let effective = effective("InputPath")?;
                let scope = Scope::new(&effective, &ctx);
                let mut next = None;
                for rule in &choice.choices {
                    if rule.rule.evaluate(&scope)? {
                        next = Some(rule.next.clone());
                        break;
                    }
                }
                let Some(next) = next.or_else(|| choice.default.clone()) else {
                    return Err(StateError::new(
                        errors::NO_CHOICE_MATCHED,
                        format!(
                            "No Choice rule matched and there is no Default in state '{}'.",
                            state.name
                        ),
                    ));
                };
                let output = apply_io_path(&state.output_path, &effective, &ctx, "OutputPath")?;
                Ok(Plan::Exit {
                    output,
                    next: Some(next),
                })
            }
            StateKind::Wait(wait) => {
                let effective = effective("InputPath")?;
                let scope = Scope::new(&effective, &ctx);
                let until = match wait {
                    WaitState::Seconds(s) => cx.now.plus_millis(s.saturating_mul(1000)),
                    WaitState::Timestamp(t) => *t,
                    WaitState::SecondsPath(p) => {
                        let seconds = positive_seconds(
                            reference_value(p, &scope, "SecondsPath")?,
                            "SecondsPath",
                            0,
                        )?;
                        cx.now.plus_millis(seconds.saturating_mul(1000))
                    }
                    WaitState::TimestampPath(p) => {
                        let value = reference_value(p, &scope, "TimestampPath")?;
                        value.as_str().and_then(Timestamp::parse_rfc3339).ok_or_else(|| {
                            StateError::runtime(format!("The value of TimestampPath must be an RFC 3339 timestamp, got {value}"))
                        })?
                    }
                };
                Ok(Plan::Wait { until })
            }
            StateKind::Task(task) => {
                let effective = effective("InputPath")?;
                let token = task
                    .resource
                    .ends_with(".waitForTaskToken")
                    .then(|| cx.entropy.uuid());
                let ctx = self.context(active, token.as_deref(), None);
                let scope = Scope::new(&effective, &ctx);
                let seconds = |s: &Option<Seconds>,
                               field: &str|
                 -> Result<Option<u64>, StateError> {
                    match s {
                        None => Ok(None),
                        Some(Seconds::Fixed(n)) => Ok(Some(*n)),
                        Some(Seconds::Path(p)) => {
                            positive_seconds(reference_value(p, &scope, field)?, field, 1).map(Some)
                        }
                    }
                };
                let timeout_seconds = seconds(&task.timeout, "TimeoutSecondsPath")?;
                let heartbeat_seconds = seconds(&task.heartbeat, "HeartbeatSecondsPath")?;
                let input = match &task.shaping.parameters {
                    Some(p) => p.evaluate(&scope, cx.entropy)?,
                    None => effective.clone(),
                };
                let credentials = match &task.credentials {
                    Some(c) => Some(c.evaluate(&scope, cx.entropy)?),
                    None => None,
                };
                Ok(Plan::Task(Box::new(TaskRequest {
                    ticket: Ticket(0),
                    frame,
                    state_name: state.name.clone(),
                    resource: task.resource.clone(),
                    kind: TaskKind::of(&task.resource),
                    input,
                    credentials,
                    timeout_seconds,
                    heartbeat_seconds,
                    attempt: 0,
                    task_token: token,
                })))
            }
            StateKind::Parallel(parallel) => {
                let effective = effective("InputPath")?;
                let input = match &parallel.shaping.parameters {
                    Some(p) => p.evaluate(&Scope::new(&effective, &ctx), cx.entropy)?,
                    None => effective,
                };
                Ok(Plan::Fork {
                    input,
                    branches: parallel.branches.len(),
                })
            }
            StateKind::Map(map) => {
                let effective = effective("InputPath")?;
                let scope = Scope::new(&effective, &ctx);
                let items = match reference_value(&map.items_path, &scope, "ItemsPath")? {
                    Value::Array(items) => items,
                    other => {
                        return Err(StateError::runtime(format!(
                            "Map state input must be an array, but ItemsPath '{}' selected {other}",
                            map.items_path
                        )));
                    }
                };
                let limit = match &map.max_concurrency {
                    Seconds::Fixed(n) => *n,
                    Seconds::Path(p) => positive_seconds(
                        reference_value(p, &scope, "MaxConcurrencyPath")?,
                        "MaxConcurrencyPath",
                        0,
                    )?,
                };
                let limit = match usize::try_from(limit).unwrap_or(usize::MAX) {
                    0 if self.config.unlimited_map_concurrency == 0 => usize::MAX,
                    0 => self.config.unlimited_map_concurrency,
                    n => n,
                };
                Ok(Plan::Map {
                    input: effective,
                    items,
                    limit,
                })
            }
        }
    }

    /// A result is in (Pass result, task output, branch/iteration array):
    /// ResultSelector → ResultPath → OutputPath → leave.
    pub(super) fn complete(&mut self, cx: &mut Cx<'_>, frame: FrameId, result: Value) {
        let Some(active) = self.active(frame) else {
            return;
        };
        let Some(state) = cx.machine.state(&active.state) else {
            return;
        };
        let output = (|| {
            let ctx = self.context(active, None, None);
            let (selector, result_path) = match &state.kind {
                StateKind::Pass(p) => (None, &p.result_path),
                _ => match shaping(state) {
                    Some(s) => (s.result_selector.as_ref(), &s.result_path),
                    None => return Ok(result),
                },
            };
            let result = match selector {
                Some(t) => t.evaluate(&Scope::new(&result, &ctx), cx.entropy)?,
                None => result,
            };
            let merged = match result_path {
                None => active.raw_input.clone(),
                Some(path) => {
                    let mut doc = active.raw_input.clone();
                    path.set(&mut doc, result).map_err(|e| {
                        StateError::new(errors::RESULT_PATH_MATCH_FAILURE, e.to_string())
                    })?;
                    doc
                }
            };
            apply_io_path(&state.output_path, &merged, &ctx, "OutputPath")
        })();
        match output {
            Ok(output) => {
                let next = state.next.clone();
                self.exit(cx, frame, output, next)
            }
            Err(e) => self.handle_error(cx, frame, e),
        }
    }

    /// Emits `…StateExited` and moves on (`next: None` ends the frame).
    fn exit(&mut self, cx: &mut Cx<'_>, frame: FrameId, output: Value, next: Option<String>) {
        let Some(name) = self.active(frame).map(|a| a.state.clone()) else {
            return;
        };
        if let Err(e) = payload_within(cx, &output, "output", &name) {
            // Never caught: ends the frame, and so the execution.
            self.handle_error(cx, frame, e);
            return;
        }
        let Some(active) = self.frames.get_mut(&frame).and_then(|f| f.active.take()) else {
            return;
        };
        let type_name = cx
            .machine
            .state(&active.state)
            .map_or("Pass", |s| s.kind.type_name());
        if let Some(event) = EventType::state_exited(type_name) {
            self.emit(
                cx,
                frame,
                event,
                EventDetails {
                    name: Some(active.state.clone()),
                    output: Some(output.clone()),
                    ..EventDetails::default()
                },
            );
        }
        match next {
            Some(next) => cx.enter(frame, next, output),
            None => self.finish_frame(cx, frame, Ok(output)),
        }
    }

    pub(super) fn wait_elapsed(&mut self, cx: &mut Cx<'_>, frame: FrameId) {
        let Some(active) = self.active(frame) else {
            return;
        };
        let Some(state) = cx.machine.state(&active.state) else {
            return;
        };
        let output = {
            let ctx = self.context(active, None, None);
            apply_io_path(&state.input_path, &active.raw_input, &ctx, "InputPath")
                .and_then(|e| apply_io_path(&state.output_path, &e, &ctx, "OutputPath"))
        };
        match output {
            Ok(output) => {
                let next = state.next.clone();
                self.exit(cx, frame, output, next);
            }
            Err(e) => self.handle_error(cx, frame, e),
        }
    }

    /// Retry, else Catch, else fail the frame.
    pub(super) fn handle_error(&mut self, cx: &mut Cx<'_>, frame: FrameId, mut error: StateError) {
        let Some(active) = self.frames.get_mut(&frame).and_then(|f| f.active.as_mut()) else {
            return;
        };
        let Some(state) = cx.machine.state(&active.state) else {
            return;
        };
        if error.error == errors::RUNTIME {
            let cause = error.cause.take().unwrap_or_default();
            error.cause = Some(
                if cause.starts_with("An error occurred while executing the state") {
                    cause
                } else {
                    format!(
                        "An error occurred while executing the state '{}' (entered at the event id #{}). {cause}",
                        active.state, active.entered_event
                    )
                },
            );
        }
        let Some(shaping) = shaping(state) else {
            self.finish_frame(cx, frame, Err(error));
            return;
        };
        // Retry: the first matching retrier decides.
        if let Some((i, retrier)) = shaping
            .retry
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(&error))
            && active.retry_counts[i] < retrier.max_attempts
        {
            active.retry_counts[i] += 1;
            active.retries += 1;
            let delay = retrier.delay_millis(active.retry_counts[i], cx.entropy);
            let until = cx.now.plus_millis(delay);
            let ticket = self.new_ticket(frame);
            cx.step.actions.push(Action::StartTimer {
                ticket,
                frame,
                until,
                purpose: TimerPurpose::Retry,
            });
            self.set_pending(
                frame,
                Pending::Timer {
                    ticket,
                    until,
                    purpose: TimerPurpose::Retry,
                },
            );
            return;
        }
        // Catch.
        if let Some(catcher) = shaping.catch.iter().find(|c| c.matches(&error)) {
            let output = match &catcher.result_path {
                None => Ok(active.raw_input.clone()),
                Some(path) => {
                    let mut doc = active.raw_input.clone();
                    path.set(&mut doc, error.to_error_output()).map(|()| doc)
                }
            };
            match output {
                Ok(output) => self.exit(cx, frame, output, Some(catcher.next.clone())),
                Err(e) => self.finish_frame(
                    cx,
                    frame,
                    Err(StateError::new(
                        errors::RESULT_PATH_MATCH_FAILURE,
                        e.to_string(),
                    )),
                ),
            }
            return;
        }
        self.finish_frame(cx, frame, Err(error));
    }

    /// A frame reached an end: report to the parent, or end the execution.
    fn finish_frame(&mut self, cx: &mut Cx<'_>, frame: FrameId, result: Result<Value, StateError>) {
        let Some(removed) = self.frames.remove(&frame) else {
            return;
        };
        match removed.parent {
            Some(parent) => cx.queue.push_back(Work::ChildDone {
                parent,
                child: frame,
                last_event: removed.last_event,
                result,
            }),
            None => {
                // Keep the root frame for event chaining.
                self.frames.insert(
                    frame,
                    Frame {
                        active: None,
                        ..removed
                    },
                );
                let (event, details, action, status) = match result {
                    Ok(output) => (
                        EventType::ExecutionSucceeded,
                        EventDetails {
                            output: Some(output.clone()),
                            ..EventDetails::default()
                        },
                        Action::Succeeded {
                            output: output.clone(),
                        },
                        ExecutionStatus::Succeeded { output },
                    ),
                    Err(e) => (
                        EventType::ExecutionFailed,
                        EventDetails {
                            error: Some(e.error.clone()),
                            cause: e.cause.clone(),
                            ..EventDetails::default()
                        },
                        Action::Failed {
                            error: e.error.clone(),
                            cause: e.cause.clone(),
                        },
                        ExecutionStatus::Failed {
                            error: e.error,
                            cause: e.cause,
                        },
                    ),
                };
                self.emit(cx, frame, event, details);
                // Nothing should be pending at this point; be safe anyway.
                let leftovers: Vec<Ticket> = self.tickets.keys().copied().collect();
                for ticket in leftovers {
                    cx.step.actions.push(Action::Cancel { ticket });
                }
                self.tickets.clear();
                cx.step.actions.push(action);
                self.status = status;
            }
        }
    }

    fn child_done(
        &mut self,
        cx: &mut Cx<'_>,
        parent: ParentLink,
        child: FrameId,
        last_event: u64,
        result: Result<Value, StateError>,
    ) {
        let p = parent.frame;
        let Some(active) = self.frames.get_mut(&p).and_then(|f| f.active.as_mut()) else {
            return;
        };
        let state_name = active.state.clone();
        // Chain the parent's next event after the child's last one.
        if let Some(f) = self.frames.get_mut(&p) {
            f.last_event = f.last_event.max(last_event);
        }
        let Some(active) = self.frames.get_mut(&p).and_then(|f| f.active.as_mut()) else {
            return;
        };
        match &mut active.pending {
            Pending::Parallel {
                children,
                results,
                remaining,
            } => {
                if children.get(parent.index) != Some(&Some(child)) {
                    return; // stale
                }
                children[parent.index] = None;
                match result {
                    Ok(v) => {
                        results[parent.index] = v;
                        *remaining -= 1;
                        if *remaining == 0 {
                            let results = std::mem::take(results);
                            self.emit(
                                cx,
                                p,
                                EventType::ParallelStateSucceeded,
                                EventDetails::default(),
                            );
                            self.complete(cx, p, Value::Array(results));
                        }
                    }
                    Err(e) => {
                        self.abort_children(&mut cx.step, p, cx.now);
                        self.emit(
                            cx,
                            p,
                            EventType::ParallelStateFailed,
                            EventDetails {
                                error: Some(e.error.clone()),
                                cause: e.cause.clone(),
                                ..EventDetails::default()
                            },
                        );
                        self.handle_error(cx, p, e);
                    }
                }
            }
            Pending::Map {
                running,
                results,
                done,
                ..
            } => {
                if !running.remove(&child) {
                    return; // stale
                }
                match result {
                    Ok(v) => {
                        results[parent.index] = v;
                        *done += 1;
                        let finished = *done == results.len();
                        let results = if finished {
                            std::mem::take(results)
                        } else {
                            Vec::new()
                        };
                        self.emit(
                            cx,
                            p,
                            EventType::MapIterationSucceeded,
                            EventDetails {
                                name: Some(state_name),
                                index: Some(parent.index as u64),
                                ..EventDetails::default()
                            },
                        );
                        if finished {
                            self.emit(cx, p, EventType::MapStateSucceeded, EventDetails::default());
                            self.complete(cx, p, Value::Array(results));
                        } else {
                            self.fill_map(cx, p);
                        }
                    }
                    Err(e) => {
                        self.emit(
                            cx,
                            p,
                            EventType::MapIterationFailed,
                            EventDetails {
                                name: Some(state_name),
                                index: Some(parent.index as u64),
                                error: Some(e.error.clone()),
                                cause: e.cause.clone(),
                                ..EventDetails::default()
                            },
                        );
                        self.fail_map(cx, p, e);
                    }
                }
            }
            _ => {}
        }
    }

    fn fail_map(&mut self, cx: &mut Cx<'_>, frame: FrameId, e: StateError) {
        self.abort_children(&mut cx.step, frame, cx.now);
        self.emit(
            cx,
            frame,
            EventType::MapStateFailed,
            EventDetails {
                error: Some(e.error.clone()),
                cause: e.cause.clone(),
                ..EventDetails::default()
            },
        );
        self.handle_error(cx, frame, e);
    }

    /// Starts Map iterations while under the concurrency limit.
    /// Ends the whole execution with `error`, whatever frame is running:
    /// every branch is aborted, nothing is caught.
    fn fail_execution(&mut self, cx: &mut Cx<'_>, error: StateError) {
        let now = cx.now;
        self.abort_frame_tree(&mut cx.step, FrameId(0), now);
        self.finish_frame(cx, FrameId(0), Err(error));
    }

    fn fill_map(&mut self, cx: &mut Cx<'_>, frame: FrameId) {
        loop {
            let Some(active) = self.active(frame) else {
                return;
            };
            let Pending::Map {
                effective_input,
                items,
                next,
                limit,
                running,
                ..
            } = &active.pending
            else {
                return;
            };
            if running.len() >= *limit || *next >= items.len() {
                return;
            }
            let index = *next;
            let Some(StateKind::Map(MapState {
                processor,
                item_selector,
                ..
            })) = cx.machine.state(&active.state).map(|s| &s.kind)
            else {
                return;
            };
            let input = match item_selector {
                None => Ok(items[index].clone()),
                Some(selector) => {
                    let ctx = self.context(active, None, Some((index, &items[index])));
                    selector.evaluate(&Scope::new(effective_input, &ctx), cx.entropy)
                }
            };
            let start_at = processor.start_at.clone();
            let state_name = active.state.clone();
            let input = match input {
                Ok(input) => input,
                Err(e) => {
                    self.fail_map(cx, frame, e);
                    return;
                }
            };
            let child = self.new_frame(frame, index);
            if let Some(Pending::Map {
                items,
                next,
                running,
                ..
            }) = self
                .frames
                .get_mut(&frame)
                .and_then(|f| f.active.as_mut())
                .map(|a| &mut a.pending)
            {
                items[index] = Value::Null; // started: no longer needed here
                *next += 1;
                running.insert(child);
            }
            self.emit(
                cx,
                frame,
                EventType::MapIterationStarted,
                EventDetails {
                    name: Some(state_name),
                    index: Some(index as u64),
                    ..EventDetails::default()
                },
            );
            if let Some(f) = self.frames.get_mut(&child) {
                f.last_event = self.next_event - 1;
            }
            cx.enter(child, start_at, input);
        }
    }

    /// Aborts every child frame of `frame` (its Parallel branches or running
    /// Map iterations), recursively.
    fn abort_children(&mut self, step: &mut Step, frame: FrameId, now: Timestamp) {
        let children: Vec<(FrameId, Option<usize>)> = match self.active(frame).map(|a| &a.pending) {
            Some(Pending::Parallel { children, .. }) => {
                children.iter().flatten().map(|c| (*c, None)).collect()
            }
            Some(Pending::Map { running, .. }) => running
                .iter()
                .map(|c| {
                    (
                        *c,
                        self.frames.get(c).and_then(|f| f.parent).map(|p| p.index),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let state_name = self.active(frame).map(|a| a.state.clone());
        for (child, map_index) in children {
            self.abort_frame_tree(step, child, now);
            self.frames.remove(&child);
            if let Some(index) = map_index {
                let e = self.new_event(
                    frame,
                    now,
                    EventType::MapIterationAborted,
                    EventDetails {
                        name: state_name.clone(),
                        index: Some(index as u64),
                        ..EventDetails::default()
                    },
                );
                step.events.push(e);
            }
        }
        match self
            .frames
            .get_mut(&frame)
            .and_then(|f| f.active.as_mut())
            .map(|a| &mut a.pending)
        {
            Some(Pending::Parallel { children, .. }) => children.iter_mut().for_each(|c| *c = None),
            Some(Pending::Map { running, .. }) => running.clear(),
            _ => {}
        }
    }

    /// Stops whatever `frame` is doing (and its children), emitting
    /// `…StateAborted` and cancelling its ticket. The frame itself stays.
    pub(super) fn abort_frame_tree(&mut self, step: &mut Step, frame: FrameId, now: Timestamp) {
        self.abort_children(step, frame, now);
        let Some(active) = self.frames.get_mut(&frame).and_then(|f| f.active.take()) else {
            return;
        };
        let ticket = match &active.pending {
            Pending::Task { request, .. } => Some(request.ticket),
            Pending::Timer { ticket, .. } => Some(*ticket),
            _ => None,
        };
        if let Some(ticket) = ticket {
            self.tickets.remove(&ticket);
            step.actions.push(Action::Cancel { ticket });
        }
        let type_name = match &active.pending {
            Pending::Task { .. } => "Task",
            Pending::Parallel { .. } => "Parallel",
            Pending::Map { .. } => "Map",
            Pending::Timer {
                purpose: TimerPurpose::Wait,
                ..
            } => "Wait",
            Pending::Timer { .. } | Pending::Nothing => "",
        };
        if let Some(event) = EventType::state_aborted(type_name) {
            let e = self.new_event(
                frame,
                now,
                event,
                EventDetails {
                    name: Some(active.state.clone()),
                    ..EventDetails::default()
                },
            );
            step.events.push(e);
        }
    }
}
