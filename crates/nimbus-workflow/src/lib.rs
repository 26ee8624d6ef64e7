//! Amazon States Language (ASL) core for Nimbus workflows.
//!
//! This crate is deliberately pure: no I/O, no async, no clock and no global
//! randomness. A durable executor (persistence, timers, the Step Functions API)
//! lives elsewhere and drives [`Execution`] one transition at a time, persisting
//! the serialized execution and its history events between steps. Keeping the
//! language here, and the side effects there, is what makes crash recovery a
//! matter of "load the last snapshot and feed the next outcome".
//!
//! Driving an execution (what the durable executor does):
//!
//! ```text
//! machine = StateMachine::parse(&definition_json)?;          // validation errors: reject at create time
//! (exec, step) = Execution::start(&machine, info, Config::default(), now, &mut OsEntropy);
//! persist(exec, step.events) atomically; then perform(step.actions);
//! arm a timer for exec.deadline() if any;
//! loop on whatever arrives (each answer is a new Step: persist, then perform):
//!   task result     -> exec.task_succeeded(&machine, ticket, output, now, &mut entropy)
//!   task error      -> exec.task_failed(&machine, ticket, StateError{error, cause}, now, &mut entropy)
//!   task timeout    -> exec.task_failed(.., StateError::new("States.Timeout", ..), ..)
//!   timer due       -> exec.timer_fired(&machine, ticket, now, &mut entropy)
//!   deadline passed -> exec.timed_out(now)
//!   StopExecution   -> exec.abort(error, cause, now)
//!   Err(FeedbackError::UnknownTicket) -> a late or duplicate answer: ignore it
//! until an Action::Succeeded / Action::Failed (or !exec.is_running()).
//! After a crash: load the snapshot, re-issue exec.outstanding().
//! ```
//!
//! Only the JSONPath query language is implemented; JSONata and variables
//! (`Assign`) are rejected when a definition is validated, never at run time.

pub mod choice;
pub mod definition;
pub mod entropy;
pub mod errors;
pub mod history;
pub mod interpreter;
pub mod intrinsics;
pub mod limits;
pub mod path;
pub mod retry;
pub mod template;
pub mod timestamp;

pub use definition::{DefinitionError, DefinitionProblem, StateMachine};
pub use entropy::{Entropy, OsEntropy, SeededEntropy};
pub use errors::StateError;
pub use history::{EventDetails, EventType, HistoryEvent};
pub use interpreter::{
    Action, Config, Execution, ExecutionInfo, ExecutionStatus, FeedbackError, FrameId, Step,
    TaskKind, TaskRequest, Ticket, TimerPurpose,
};
pub use timestamp::Timestamp;
