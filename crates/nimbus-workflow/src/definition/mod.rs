//! State machine definitions: typed, validated, ready to interpret.
//!
//! Parsing and validation are one pass over the JSON (`parse.rs`) that
//! collects *every* problem rather than stopping at the first: a user fixing a
//! definition wants the whole list, and the API layer can return it verbatim.
//! Everything that can be checked statically is checked here (graph, scopes,
//! field-per-type table, paths, templates, intrinsic calls, choice operators,
//! retrier ranges), so the interpreter only meets data-dependent errors.
//!
//! State names are unique across the whole machine (nested branches
//! included), so a name alone identifies a state; the interpreter's persisted
//! frames refer to states by name and never to positions in this structure.

mod parse;

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::choice::ChoiceRule;
use crate::intrinsics::Call;
use crate::path::Path;
use crate::retry::{Catcher, Retrier};
use crate::template::Template;
use crate::timestamp::Timestamp;

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionProblem {
    /// The state the problem is in, if any.
    pub state: Option<String>,
    /// The top-level field concerned (`StartAt`, `Retry`, `Next`, …).
    pub field: String,
    /// What is wrong; names the field (and element) precisely.
    pub message: String,
}

impl fmt::Display for DefinitionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(state) => write!(f, "state '{state}': {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A definition that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// The problems, in document order.
    pub errors: Vec<DefinitionProblem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid state machine definition: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A validated state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// `Comment`.
    pub comment: Option<String>,
    /// Execution-level `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// The top-level scope.
    pub root: Scope,
    states: HashMap<String, State>,
}

/// A `{StartAt, States}` scope: the top level, a Parallel branch or a Map
/// processor.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The first state.
    pub start_at: String,
    /// The names of the states in this scope, in document order.
    pub states: Vec<String>,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name.
    pub name: String,
    /// `Comment`.
    pub comment: Option<String>,
    /// `InputPath`: `None` for `null` (input becomes `{}`); default `$`.
    pub input_path: Option<Path>,
    /// `OutputPath`: `None` for `null` (output becomes `{}`); default `$`.
    pub output_path: Option<Path>,
    /// `Next` (absent for Choice, Succeed, Fail and end states).
    pub next: Option<String>,
    /// `"End": true`.
    pub end: bool,
    /// Type-specific fields.
    pub kind: StateKind,
}

/// The type-specific part of a state.
#[derive(Debug, Clone)]
pub enum StateKind {
    /// `Pass`.
    Pass(PassState),
    /// `Task`.
    Task(TaskState),
    /// `Choice`.
    Choice(ChoiceState),
    /// `Wait`.
    Wait(WaitState),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail(FailState),
    /// `Parallel`.
    Parallel(ParallelState),
    /// `Map`.
    Map(MapState),
}

impl StateKind {
    /// The ASL type name (`Task`, `Pass`, …), also the prefix of the state's
    /// history events.
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Pass(_) => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice(_) => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel(_) => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

/// How a state shapes its result (Task, Parallel, Map).
#[derive(Debug, Clone, Default)]
pub struct ResultShaping {
    /// `Parameters` (Map: `ItemSelector` is separate).
    pub parameters: Option<Template>,
    /// `ResultSelector`.
    pub result_selector: Option<Template>,
    /// `ResultPath`: `None` for `null` (discard the result); default `$`.
    pub result_path: Option<Path>,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
}

/// A Pass state.
#[derive(Debug, Clone)]
pub struct PassState {
    /// `Result`.
    pub result: Option<Value>,
    /// `Parameters`.
    pub parameters: Option<Template>,
    /// `ResultPath` (`None` = `null`).
    pub result_path: Option<Path>,
}

/// A number of seconds given literally or through a reference path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seconds {
    /// A literal.
    Fixed(u64),
    /// `…SecondsPath`, resolved against the effective input.
    Path(Path),
}

/// A Task state.
#[derive(Debug, Clone)]
pub struct TaskState {
    /// `Resource`.
    pub resource: String,
    /// `TimeoutSeconds` / `TimeoutSecondsPath` (none given: no timeout, as
    /// on AWS).
    pub timeout: Option<Seconds>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`.
    pub heartbeat: Option<Seconds>,
    /// `Credentials` (an interpreter-defined template, passed to the executor).
    pub credentials: Option<Template>,
    /// Parameters, ResultSelector, ResultPath, Retry, Catch.
    pub shaping: ResultShaping,
}

/// A Choice state.
#[derive(Debug, Clone)]
pub struct ChoiceState {
    /// `Choices`.
    pub choices: Vec<ChoiceRule>,
    /// `Default`.
    pub default: Option<String>,
}

/// What a Wait state waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitState {
    /// `Seconds`.
    Seconds(u64),
    /// `Timestamp`.
    Timestamp(Timestamp),
    /// `SecondsPath`.
    SecondsPath(Path),
    /// `TimestampPath`.
    TimestampPath(Path),
}

/// `Error`/`Cause` of a Fail state.
#[derive(Debug, Clone, PartialEq)]
pub enum FailValue {
    /// `Error` / `Cause`.
    Literal(String),
    /// `ErrorPath` / `CausePath` as a reference path.
    Path(Path),
    /// `ErrorPath` / `CausePath` as an intrinsic call.
    Call(Call),
}

/// A Fail state.
#[derive(Debug, Clone)]
pub struct FailState {
    /// The error name.
    pub error: Option<FailValue>,
    /// The cause.
    pub cause: Option<FailValue>,
}

/// A Parallel state.
#[derive(Debug, Clone)]
pub struct ParallelState {
    /// `Branches`.
    pub branches: Vec<Scope>,
    /// Parameters, ResultSelector, ResultPath, Retry, Catch.
    pub shaping: ResultShaping,
}

/// A Map state (inline; DISTRIBUTED runs inline too).
#[derive(Debug, Clone)]
pub struct MapState {
    /// `ItemProcessor` or the legacy `Iterator`.
    pub processor: Scope,
    /// `ItemsPath` (default `$`).
    pub items_path: Path,
    /// `ItemSelector` or the legacy `Parameters`.
    pub item_selector: Option<Template>,
    /// `MaxConcurrency` / `MaxConcurrencyPath` (`Fixed(0)` = unlimited).
    pub max_concurrency: Seconds,
    /// `ProcessorConfig.Mode` was `DISTRIBUTED`.
    pub distributed: bool,
    /// ResultSelector, ResultPath, Retry, Catch (`parameters` is unused).
    pub shaping: ResultShaping,
}

impl StateMachine {
    /// Parses and validates a definition.
    pub fn parse(definition: &Value) -> Result<StateMachine, DefinitionError> {
        parse::parse(definition)
    }

    /// Parses and validates a definition given as JSON text.
    pub fn from_json_str(text: &str) -> Result<StateMachine, DefinitionError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DefinitionError {
            errors: vec![DefinitionProblem {
                state: None,
                field: String::new(),
                message: format!("the definition is not valid JSON: {e}"),
            }],
        })?;
        StateMachine::parse(&value)
    }

    /// The top-level `StartAt`.
    pub fn start_at(&self) -> &str {
        &self.root.start_at
    }

    /// A state by name (from any scope).
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }

    /// Every state, in no particular order.
    pub fn states(&self) -> impl Iterator<Item = &State> {
        self.states.values()
    }
}

#[cfg(test)]
mod tests;
