//! A tiny in-memory executor for tests: runs tasks through a handler,
//! fast-forwards a fake clock to the next timer, and enforces the
//! execution deadline — the same loop a durable executor runs, minus I/O.

#![allow(
    dead_code,
    reason = "each test binary that includes this module uses part of it"
)]

use std::collections::{BTreeMap, VecDeque};

use nimbus_workflow::{
    Action, Config, Execution, ExecutionInfo, ExecutionStatus, HistoryEvent, SeededEntropy,
    StateError, StateMachine, Step, TaskRequest, Ticket, Timestamp,
};
use serde_json::Value;

/// 2024-01-01T00:00:00Z.
pub const T0: i64 = 1_704_067_200_000;

pub fn info(input: Value) -> ExecutionInfo {
    ExecutionInfo {
        id: "arn:aws:states:us-east-1:123456789012:execution:SM:run-1".into(),
        name: "run-1".into(),
        state_machine_id: "arn:aws:states:us-east-1:123456789012:stateMachine:SM".into(),
        state_machine_name: "SM".into(),
        role_arn: Some("arn:aws:iam::123456789012:role/R".into()),
        input,
        start_time: Timestamp::from_unix_millis(T0),
    }
}

pub struct Outcome {
    pub status: ExecutionStatus,
    pub events: Vec<HistoryEvent>,
    /// Fake time elapsed, in milliseconds.
    pub elapsed_ms: i64,
    /// Most tasks outstanding at once.
    pub max_in_flight: usize,
    /// Task requests in the order they were run.
    pub tasks: Vec<TaskRequest>,
}

impl Outcome {
    pub fn status_name(&self) -> &'static str {
        match self.status {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded { .. } => "SUCCEEDED",
            ExecutionStatus::Failed { .. } => "FAILED",
            ExecutionStatus::TimedOut { .. } => "TIMED_OUT",
            ExecutionStatus::Aborted { .. } => "ABORTED",
        }
    }

    pub fn output(&self) -> &Value {
        match &self.status {
            ExecutionStatus::Succeeded { output } => output,
            other => panic!("not succeeded: {other:?}"),
        }
    }

    pub fn error(&self) -> (String, Option<String>) {
        match &self.status {
            ExecutionStatus::Failed { error, cause }
            | ExecutionStatus::TimedOut { error, cause } => (error.clone(), cause.clone()),
            other => panic!("not failed: {other:?}"),
        }
    }

    pub fn types(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.event_type.as_str()).collect()
    }

    pub fn count(&self, event_type: &str) -> usize {
        self.types().iter().filter(|t| **t == event_type).count()
    }
}

pub struct Harness<'m> {
    pub machine: &'m StateMachine,
    pub execution: Execution,
    pub now: Timestamp,
    pub entropy: SeededEntropy,
    pub events: Vec<HistoryEvent>,
    pub tasks: VecDeque<TaskRequest>,
    pub timers: BTreeMap<Ticket, Timestamp>,
    pub max_in_flight: usize,
    pub ran: Vec<TaskRequest>,
}

impl<'m> Harness<'m> {
    pub fn start(machine: &'m StateMachine, input: Value, config: Config) -> Harness<'m> {
        let now = Timestamp::from_unix_millis(T0);
        let mut entropy = SeededEntropy::new(42);
        let (execution, step) = Execution::start(machine, info(input), config, now, &mut entropy);
        let mut h = Harness {
            machine,
            execution,
            now,
            entropy,
            events: Vec::new(),
            tasks: VecDeque::new(),
            timers: BTreeMap::new(),
            max_in_flight: 0,
            ran: Vec::new(),
        };
        h.apply(step);
        h
    }

    pub fn apply(&mut self, step: Step) {
        // Event ids are dense and increasing.
        for e in &step.events {
            let expected = self.events.last().map_or(1, |l| l.id + 1);
            assert_eq!(e.id, expected, "event ids must be dense");
            self.events.push(e.clone());
        }
        let mut continued = false;
        for action in step.actions {
            match action {
                Action::RunTask(request) => self.tasks.push_back(request),
                Action::StartTimer { ticket, until, .. } => {
                    self.timers.insert(ticket, until);
                }
                Action::Cancel { ticket } => {
                    self.timers.remove(&ticket);
                    self.tasks.retain(|t| t.ticket != ticket);
                }
                Action::Succeeded { .. } | Action::Failed { .. } => {}
                Action::Continue => continued = true,
            }
        }
        self.max_in_flight = self.max_in_flight.max(self.tasks.len());
        if continued {
            let step = self
                .execution
                .resume(self.machine, self.now, &mut self.entropy);
            self.apply(step);
        }
    }

    /// Runs one pending task, if any.
    pub fn run_one_task(
        &mut self,
        handler: &mut dyn FnMut(&TaskRequest) -> Result<Value, StateError>,
    ) -> bool {
        let Some(task) = self.tasks.pop_front() else {
            return false;
        };
        self.ran.push(task.clone());
        let step = self.execution.task_started(task.ticket, self.now).unwrap();
        self.apply(step);
        let step = match handler(&task) {
            Ok(output) => self.execution.task_succeeded(
                self.machine,
                task.ticket,
                output,
                self.now,
                &mut self.entropy,
            ),
            Err(error) => self.execution.task_failed(
                self.machine,
                task.ticket,
                error,
                self.now,
                &mut self.entropy,
            ),
        }
        .unwrap();
        self.apply(step);
        true
    }

    /// Fast-forwards to the next timer or the deadline, whichever is first.
    pub fn advance(&mut self) -> bool {
        let next_timer = self
            .timers
            .iter()
            .min_by_key(|(t, until)| (**until, **t))
            .map(|(t, u)| (*t, *u));
        let deadline = self.execution.deadline();
        match (next_timer, deadline) {
            (_, Some(d))
                if next_timer.is_none_or(|(_, u)| d <= u) && self.execution.is_running() =>
            {
                self.now = self.now.max(d);
                let step = self.execution.timed_out(self.now);
                self.apply(step);
                true
            }
            (Some((ticket, until)), _) => {
                self.timers.remove(&ticket);
                self.now = self.now.max(until);
                let step = self
                    .execution
                    .timer_fired(self.machine, ticket, self.now, &mut self.entropy)
                    .unwrap();
                self.apply(step);
                true
            }
            _ => false,
        }
    }

    pub fn run_to_end(
        mut self,
        handler: &mut dyn FnMut(&TaskRequest) -> Result<Value, StateError>,
    ) -> Outcome {
        while self.execution.is_running() {
            if !self.run_one_task(handler) && !self.advance() {
                panic!("execution stuck: nothing pending but still running");
            }
        }
        Outcome {
            status: self.execution.status().clone(),
            events: self.events,
            elapsed_ms: self.now.unix_millis() - T0,
            max_in_flight: self.max_in_flight,
            tasks: self.ran,
        }
    }
}

pub fn parse(definition: &Value) -> StateMachine {
    StateMachine::parse(definition).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a definition to completion with a task handler.
pub fn run_with(
    definition: &Value,
    input: Value,
    handler: &mut dyn FnMut(&TaskRequest) -> Result<Value, StateError>,
) -> Outcome {
    let machine = parse(definition);
    Harness::start(&machine, input, Config::default()).run_to_end(handler)
}

/// Runs a definition that has no tasks (or whose tasks echo their input).
pub fn run(definition: &Value, input: Value) -> Outcome {
    run_with(definition, input, &mut |t| Ok(t.input.clone()))
}
