//! One validating pass from JSON to [`StateMachine`].

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::{
    ChoiceState, DefinitionError, DefinitionProblem, FailState, FailValue, MapState, ParallelState,
    PassState, ResultShaping, Scope, Seconds, State, StateKind, StateMachine, TaskState, WaitState,
};
use crate::choice::ChoiceRule;
use crate::intrinsics::{self, Call};
use crate::path::{Path, Root};
use crate::retry;
use crate::template::Template;
use crate::timestamp::Timestamp;

const MAX_NAME_CHARS: usize = 80;

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];
const IO: &[&str] = &["InputPath", "OutputPath"];
const FLOW: &[&str] = &["Next", "End"];

/// Fields allowed per state type (reference §2), on top of [`COMMON`].
fn allowed_fields(type_name: &str) -> Vec<&'static str> {
    let specific: &[&str] = match type_name {
        "Task" => &[
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
        ],
        "Parallel" => &[
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "ItemsPath",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "Label",
        ],
        "Pass" => &["Parameters", "Result", "ResultPath"],
        "Wait" => &["Seconds", "Timestamp", "SecondsPath", "TimestampPath"],
        "Choice" => &["Choices", "Default"],
        "Succeed" => &[],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        _ => &[],
    };
    let mut all: Vec<&str> = COMMON.to_vec();
    if type_name != "Fail" {
        all.extend(IO);
    }
    if matches!(type_name, "Task" | "Parallel" | "Map" | "Pass" | "Wait") {
        all.extend(FLOW);
    }
    all.extend(specific);
    all
}

/// Why a field outside the table is rejected, when there is more to say than
/// "not allowed".
fn rejection_hint(type_name: &str, field: &str) -> Option<String> {
    Some(match field {
        "Assign" => "variables ('Assign') are not supported".into(),
        "Arguments" | "Output" | "Items" | "Condition" => {
            format!("'{field}' is a JSONata field; JSONata is not supported, use JSONPath")
        }
        "ItemReader"
        | "ItemBatcher"
        | "ResultWriter"
        | "ToleratedFailureCount"
        | "ToleratedFailureCountPath"
        | "ToleratedFailurePercentage"
        | "ToleratedFailurePercentagePath"
            if type_name == "Map" =>
        {
            format!("'{field}' (distributed Map) is not supported yet")
        }
        "End" if matches!(type_name, "Choice" | "Succeed" | "Fail") => {
            format!("a {type_name} state cannot have 'End'")
        }
        "Next" if matches!(type_name, "Succeed" | "Fail") => {
            format!("a {type_name} state is terminal and cannot have 'Next'")
        }
        "Next" if type_name == "Choice" => {
            "a Choice state has no 'Next'; put 'Next' in each rule and use 'Default'".into()
        }
        _ => return None,
    })
}

struct Parser {
    errors: Vec<DefinitionProblem>,
    states: HashMap<String, State>,
    /// Which scope each state name was declared in (for "jumps out of scope").
    scope_of: HashMap<String, usize>,
    scopes: usize,
}

pub(super) fn parse(definition: &Value) -> Result<StateMachine, DefinitionError> {
    let mut p = Parser {
        errors: Vec::new(),
        states: HashMap::new(),
        scope_of: HashMap::new(),
        scopes: 0,
    };
    let Some(top) = definition.as_object() else {
        return Err(DefinitionError {
            errors: vec![DefinitionProblem {
                state: None,
                field: String::new(),
                message: "a state machine definition must be a JSON object".into(),
            }],
        });
    };
    for key in top.keys() {
        if !matches!(
            key.as_str(),
            "StartAt" | "States" | "Comment" | "Version" | "TimeoutSeconds" | "QueryLanguage"
        ) {
            p.top_error(key, format!("unknown top-level field '{key}'"));
        }
    }
    p.query_language(None, top);
    if let Some(v) = top.get("Version")
        && v != "1.0"
    {
        p.top_error("Version", format!("Version must be \"1.0\", got {v}"));
    }
    let timeout_seconds = match top.get("TimeoutSeconds") {
        None => None,
        Some(v) => match v.as_u64().filter(|s| *s > 0) {
            Some(s) => Some(s),
            None => {
                p.top_error(
                    "TimeoutSeconds",
                    format!("TimeoutSeconds must be a positive integer, got {v}"),
                );
                None
            }
        },
    };
    let comment = top
        .get("Comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    let root = p.scope(top, None, "the state machine");
    if p.errors.is_empty() {
        Ok(StateMachine {
            comment,
            timeout_seconds,
            root,
            states: p.states,
        })
    } else {
        Err(DefinitionError { errors: p.errors })
    }
}

impl Parser {
    fn top_error(&mut self, field: &str, message: String) {
        self.errors.push(DefinitionProblem {
            state: None,
            field: field.to_string(),
            message,
        });
    }

    fn error(&mut self, state: &str, field: &str, message: String) {
        self.errors.push(DefinitionProblem {
            state: Some(state.to_string()),
            field: field.to_string(),
            message,
        });
    }

    fn query_language(&mut self, state: Option<&str>, obj: &Map<String, Value>) {
        let message = match obj.get("QueryLanguage") {
            None => return,
            Some(v) if v == "JSONPath" => return,
            Some(v) if v == "JSONata" => "JSONata is not supported; use JSONPath".to_string(),
            Some(v) => format!("QueryLanguage must be \"JSONPath\" or \"JSONata\", got {v}"),
        };
        match state {
            Some(s) => self.error(s, "QueryLanguage", message),
            None => self.top_error("QueryLanguage", message),
        }
    }

    /// Parses a `{StartAt, States}` object. `owner` is the Parallel/Map
    /// state that contains it (for messages), `what` describes it.
    fn scope(&mut self, obj: &Map<String, Value>, owner: Option<&str>, what: &str) -> Scope {
        let scope_id = self.scopes;
        self.scopes += 1;
        let report = |p: &mut Parser, field: &str, message: String| match owner {
            Some(o) => p.error(o, field, message),
            None => p.top_error(field, message),
        };
        let start_at = match obj.get("StartAt") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                report(
                    self,
                    "StartAt",
                    format!("StartAt of {what} must be a string, got {v}"),
                );
                String::new()
            }
            None => {
                report(self, "StartAt", format!("{what} has no StartAt"));
                String::new()
            }
        };
        let Some(states) = obj.get("States").and_then(Value::as_object) else {
            report(self, "States", format!("{what} has no States object"));
            return Scope {
                start_at,
                states: Vec::new(),
            };
        };
        if states.is_empty() {
            report(self, "States", format!("the States of {what} are empty"));
        }
        let mut names = Vec::with_capacity(states.len());
        for (name, body) in states {
            if name.chars().count() > MAX_NAME_CHARS || name.is_empty() {
                self.error(
                    name,
                    "States",
                    format!("state names must be 1 to {MAX_NAME_CHARS} characters long"),
                );
            }
            if self.scope_of.contains_key(name) {
                self.error(name, "States", format!("the state name '{name}' is used more than once; names must be unique across the whole state machine, nested branches included"));
                continue;
            }
            self.scope_of.insert(name.clone(), scope_id);
            names.push(name.clone());
            if let Some(state) = self.state(name, body) {
                self.states.insert(name.clone(), state);
            }
        }
        // Targets must exist in this scope.
        let in_scope: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut pending_errors = Vec::new();
        if !start_at.is_empty() && !in_scope.contains(start_at.as_str()) {
            pending_errors.push((
                None,
                "StartAt",
                format!(
                    "StartAt '{start_at}' of {what} does not name a state in {what}{}",
                    self.elsewhere(&start_at)
                ),
            ));
        }
        for name in &names {
            let Some(state) = self.states.get(name) else {
                continue;
            };
            for (field, target) in transitions(state) {
                if !target.is_empty() && !in_scope.contains(target) {
                    pending_errors.push((
                        Some(name.clone()),
                        field,
                        format!(
                            "{field} target '{target}' does not name a state in {what}{}",
                            self.elsewhere(target)
                        ),
                    ));
                }
            }
        }
        for (state, field, message) in pending_errors {
            match state {
                Some(s) => self.error(&s, field, message),
                None => report(self, field, message),
            }
        }
        // Every state must be reachable from StartAt.
        if in_scope.contains(start_at.as_str()) {
            let mut reached: HashSet<&str> = HashSet::from([start_at.as_str()]);
            let mut queue = VecDeque::from([start_at.as_str()]);
            while let Some(name) = queue.pop_front() {
                let Some(state) = self.states.get(name) else {
                    continue;
                };
                for (_, target) in transitions(state) {
                    if in_scope.contains(target) && reached.insert(target) {
                        queue.push_back(target);
                    }
                }
            }
            let unreachable: Vec<String> = names
                .iter()
                .filter(|n| !reached.contains(n.as_str()) && self.states.contains_key(*n))
                .cloned()
                .collect();
            for name in unreachable {
                self.error(
                    &name,
                    "States",
                    format!("the state is unreachable from StartAt '{start_at}'"),
                );
            }
        }
        Scope {
            start_at,
            states: names,
        }
    }

    fn elsewhere(&self, target: &str) -> &'static str {
        if self.scope_of.contains_key(target) {
            " (it exists in another scope; a Parallel branch or Map processor cannot jump out and nothing can jump in)"
        } else {
            ""
        }
    }

    fn state(&mut self, name: &str, body: &Value) -> Option<State> {
        let Some(obj) = body.as_object() else {
            self.error(name, "", "a state must be a JSON object".into());
            return None;
        };
        let type_name = match obj.get("Type") {
            Some(Value::String(t))
                if matches!(
                    t.as_str(),
                    "Task" | "Parallel" | "Map" | "Pass" | "Wait" | "Choice" | "Succeed" | "Fail"
                ) =>
            {
                t.clone()
            }
            Some(other) => {
                self.error(name, "Type", format!("Type must be one of Task, Parallel, Map, Pass, Wait, Choice, Succeed, Fail; got {other}"));
                return None;
            }
            None => {
                self.error(name, "Type", "the state has no Type".into());
                return None;
            }
        };
        let allowed = allowed_fields(&type_name);
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let message = match rejection_hint(&type_name, key) {
                Some(hint) => format!("field '{key}' is not allowed: {hint}"),
                None => format!("field '{key}' is not allowed in a {type_name} state"),
            };
            self.error(name, key, message);
        }
        self.query_language(Some(name), obj);

        // Next / End.
        let next = match obj.get("Next") {
            Some(Value::String(n)) => Some(n.clone()),
            Some(v) => {
                self.error(name, "Next", format!("Next must be a state name, got {v}"));
                None
            }
            None => None,
        };
        let end = match obj.get("End") {
            None => false,
            Some(Value::Bool(true)) => true,
            Some(v) => {
                self.error(
                    name,
                    "End",
                    format!("End must be true when present, got {v}"),
                );
                false
            }
        };
        if matches!(
            type_name.as_str(),
            "Task" | "Parallel" | "Map" | "Pass" | "Wait"
        ) {
            if next.is_some() && end {
                self.error(
                    name,
                    "End",
                    "a state cannot have both 'Next' and 'End'".into(),
                );
            } else if next.is_none()
                && !end
                && !obj.contains_key("Next")
                && !obj.contains_key("End")
            {
                self.error(
                    name,
                    "Next",
                    format!("a {type_name} state needs 'Next' or \"End\": true"),
                );
            }
        }

        let input_path = self.io_path(name, obj, "InputPath");
        let output_path = self.io_path(name, obj, "OutputPath");
        let kind = match type_name.as_str() {
            "Pass" => StateKind::Pass(PassState {
                result: obj.get("Result").cloned(),
                parameters: self.template(name, obj, "Parameters"),
                result_path: self.result_path(name, obj),
            }),
            "Task" => self.task(name, obj),
            "Choice" => self.choice(name, obj),
            "Wait" => self.wait(name, obj),
            "Succeed" => StateKind::Succeed,
            "Fail" => StateKind::Fail(FailState {
                error: self.fail_value(name, obj, "Error"),
                cause: self.fail_value(name, obj, "Cause"),
            }),
            "Parallel" => self.parallel(name, obj),
            _ => self.map(name, obj),
        };
        Some(State {
            name: name.to_string(),
            comment: obj
                .get("Comment")
                .and_then(Value::as_str)
                .map(str::to_string),
            input_path,
            output_path,
            next,
            end,
            kind,
        })
    }

    fn io_path(&mut self, state: &str, obj: &Map<String, Value>, field: &str) -> Option<Path> {
        match obj.get(field) {
            None => Some(Path::root()),
            Some(Value::Null) => None,
            Some(Value::String(text)) => match Path::parse(text) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.error(state, field, format!("{field}: {e}"));
                    Some(Path::root())
                }
            },
            Some(v) => {
                self.error(
                    state,
                    field,
                    format!("{field} must be a path string or null, got {v}"),
                );
                Some(Path::root())
            }
        }
    }

    fn result_path(&mut self, state: &str, obj: &Map<String, Value>) -> Option<Path> {
        match obj.get("ResultPath") {
            None => Some(Path::root()),
            Some(Value::Null) => None,
            Some(Value::String(text)) => match Path::parse_reference(text) {
                Ok(p) if p.root_kind() == Root::Context => {
                    self.error(
                        state,
                        "ResultPath",
                        "ResultPath must not address the context object ('$$')".into(),
                    );
                    None
                }
                Ok(p) => Some(p),
                Err(e) => {
                    self.error(state, "ResultPath", format!("ResultPath: {e}"));
                    None
                }
            },
            Some(v) => {
                self.error(
                    state,
                    "ResultPath",
                    format!("ResultPath must be a reference path or null, got {v}"),
                );
                None
            }
        }
    }

    fn reference_path(&mut self, state: &str, field: &str, v: &Value) -> Option<Path> {
        let Value::String(text) = v else {
            self.error(
                state,
                field,
                format!("{field} must be a reference path string, got {v}"),
            );
            return None;
        };
        match Path::parse_reference(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(state, field, format!("{field}: {e}"));
                None
            }
        }
    }

    fn template(&mut self, state: &str, obj: &Map<String, Value>, field: &str) -> Option<Template> {
        let v = obj.get(field)?;
        if !v.is_object() && field != "Credentials" {
            self.error(
                state,
                field,
                format!("{field} must be a JSON object, got {v}"),
            );
            return None;
        }
        match Template::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(state, field, format!("{field}: {e}"));
                None
            }
        }
    }

    fn seconds(
        &mut self,
        state: &str,
        obj: &Map<String, Value>,
        field: &str,
        min: u64,
    ) -> Option<Seconds> {
        let path_field = format!("{field}Path");
        match (obj.get(field), obj.get(&path_field)) {
            (Some(_), Some(_)) => {
                self.error(
                    state,
                    field,
                    format!("{field} and {path_field} are mutually exclusive"),
                );
                None
            }
            (Some(v), None) => match v.as_u64().filter(|s| *s >= min && *s <= 99_999_999) {
                Some(s) => Some(Seconds::Fixed(s)),
                None => {
                    let what = if min == 0 {
                        "a non-negative"
                    } else {
                        "a positive"
                    };
                    self.error(
                        state,
                        field,
                        format!("{field} must be {what} integer, got {v}"),
                    );
                    None
                }
            },
            (None, Some(v)) => self
                .reference_path(state, &path_field, v)
                .map(Seconds::Path),
            (None, None) => None,
        }
    }

    fn shaping(
        &mut self,
        state: &str,
        obj: &Map<String, Value>,
        params_field: Option<&str>,
    ) -> ResultShaping {
        let mut errs = Vec::new();
        let retry = obj
            .get("Retry")
            .map(|v| retry::parse_retry(v, &mut errs))
            .unwrap_or_default();
        for e in errs.drain(..) {
            self.error(state, "Retry", e);
        }
        let catch = obj
            .get("Catch")
            .map(|v| retry::parse_catch(v, &mut errs))
            .unwrap_or_default();
        for e in errs {
            self.error(state, "Catch", e);
        }
        ResultShaping {
            parameters: params_field.and_then(|f| self.template(state, obj, f)),
            result_selector: self.template(state, obj, "ResultSelector"),
            result_path: self.result_path(state, obj),
            retry,
            catch,
        }
    }

    fn task(&mut self, name: &str, obj: &Map<String, Value>) -> StateKind {
        let resource = match obj.get("Resource") {
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(v) => {
                self.error(
                    name,
                    "Resource",
                    format!("Resource must be a non-empty URI string, got {v}"),
                );
                String::new()
            }
            None => {
                self.error(name, "Resource", "a Task state needs a Resource".into());
                String::new()
            }
        };
        let timeout = self.seconds(name, obj, "TimeoutSeconds", 1);
        let heartbeat = self.seconds(name, obj, "HeartbeatSeconds", 1);
        if let (Some(Seconds::Fixed(t)), Some(Seconds::Fixed(h))) = (&timeout, &heartbeat)
            && h >= t
        {
            self.error(
                name,
                "HeartbeatSeconds",
                format!("HeartbeatSeconds ({h}) must be smaller than TimeoutSeconds ({t})"),
            );
        }
        StateKind::Task(TaskState {
            resource,
            timeout,
            heartbeat,
            credentials: self.template(name, obj, "Credentials"),
            shaping: self.shaping(name, obj, Some("Parameters")),
        })
    }

    fn choice(&mut self, name: &str, obj: &Map<String, Value>) -> StateKind {
        let mut choices = Vec::new();
        match obj.get("Choices").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    match ChoiceRule::parse(item, &format!("Choices[{i}]")) {
                        Ok(rule) => choices.push(rule),
                        Err(e) => self.error(name, "Choices", e),
                    }
                }
            }
            _ => self.error(
                name,
                "Choices",
                "a Choice state needs a non-empty 'Choices' array".into(),
            ),
        }
        let default = match obj.get("Default") {
            None => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(v) => {
                self.error(
                    name,
                    "Default",
                    format!("Default must be a state name, got {v}"),
                );
                None
            }
        };
        StateKind::Choice(ChoiceState { choices, default })
    }

    fn wait(&mut self, name: &str, obj: &Map<String, Value>) -> StateKind {
        let given: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
            .into_iter()
            .filter(|f| obj.contains_key(*f))
            .collect();
        let fallback = StateKind::Wait(WaitState::Seconds(0));
        if given.len() != 1 {
            self.error(
                name,
                "Seconds",
                format!(
                    "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath (found {})",
                    if given.is_empty() { "none".to_string() } else { given.join(", ") }
                ),
            );
            return fallback;
        }
        let field = given[0];
        let v = &obj[field];
        let wait = match field {
            "Seconds" => match v.as_u64().filter(|s| *s <= 99_999_999) {
                Some(s) => Some(WaitState::Seconds(s)),
                None => {
                    self.error(
                        name,
                        field,
                        format!("Seconds must be a non-negative integer, got {v}"),
                    );
                    None
                }
            },
            "Timestamp" => match v.as_str().and_then(Timestamp::parse_rfc3339) {
                Some(t) => Some(WaitState::Timestamp(t)),
                None => {
                    self.error(name, field, format!("Timestamp must be an RFC 3339 timestamp such as \"2016-03-14T01:59:00Z\", got {v}"));
                    None
                }
            },
            "SecondsPath" => self
                .reference_path(name, field, v)
                .map(WaitState::SecondsPath),
            _ => self
                .reference_path(name, field, v)
                .map(WaitState::TimestampPath),
        };
        wait.map(StateKind::Wait).unwrap_or(fallback)
    }

    fn fail_value(
        &mut self,
        name: &str,
        obj: &Map<String, Value>,
        field: &str,
    ) -> Option<FailValue> {
        let path_field = format!("{field}Path");
        match (obj.get(field), obj.get(&path_field)) {
            (Some(_), Some(_)) => {
                self.error(
                    name,
                    field,
                    format!("{field} and {path_field} are mutually exclusive"),
                );
                None
            }
            (Some(Value::String(s)), None) => Some(FailValue::Literal(s.clone())),
            (Some(v), None) => {
                self.error(name, field, format!("{field} must be a string, got {v}"));
                None
            }
            (None, Some(Value::String(text))) if intrinsics::looks_like_call(text) => {
                match Call::parse(text) {
                    Ok(call) => Some(FailValue::Call(call)),
                    Err(e) => {
                        self.error(name, &path_field, format!("{path_field}: {e}"));
                        None
                    }
                }
            }
            (None, Some(v)) => self
                .reference_path(name, &path_field, v)
                .map(FailValue::Path),
            (None, None) => None,
        }
    }

    fn parallel(&mut self, name: &str, obj: &Map<String, Value>) -> StateKind {
        let mut branches = Vec::new();
        match obj.get("Branches").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => {
                for (i, branch) in items.iter().enumerate() {
                    let what = format!("Branches[{i}] of '{name}'");
                    match branch.as_object() {
                        Some(b) => {
                            for key in b
                                .keys()
                                .filter(|k| !matches!(k.as_str(), "StartAt" | "States" | "Comment"))
                            {
                                self.error(
                                    name,
                                    "Branches",
                                    format!("{what} has an unknown field '{key}'"),
                                );
                            }
                            branches.push(self.scope(b, Some(name), &what));
                        }
                        None => self.error(name, "Branches", format!("{what} must be an object")),
                    }
                }
            }
            _ => self.error(
                name,
                "Branches",
                "a Parallel state needs a non-empty 'Branches' array".into(),
            ),
        }
        StateKind::Parallel(ParallelState {
            branches,
            shaping: self.shaping(name, obj, Some("Parameters")),
        })
    }

    fn map(&mut self, name: &str, obj: &Map<String, Value>) -> StateKind {
        let (field, processor) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
            (Some(_), Some(_)) => {
                self.error(
                    name,
                    "ItemProcessor",
                    "ItemProcessor and the legacy Iterator are mutually exclusive".into(),
                );
                ("ItemProcessor", None)
            }
            (Some(p), None) => ("ItemProcessor", Some(p)),
            (None, Some(p)) => ("Iterator", Some(p)),
            (None, None) => {
                self.error(
                    name,
                    "ItemProcessor",
                    "a Map state needs an ItemProcessor (or the legacy Iterator)".into(),
                );
                ("ItemProcessor", None)
            }
        };
        let mut distributed = false;
        let processor = match processor.and_then(Value::as_object) {
            Some(p) => {
                for key in p.keys().filter(|k| {
                    !matches!(
                        k.as_str(),
                        "StartAt" | "States" | "Comment" | "ProcessorConfig"
                    )
                }) {
                    self.error(name, field, format!("{field} has an unknown field '{key}'"));
                }
                if let Some(config) = p.get("ProcessorConfig") {
                    match config.get("Mode") {
                        None => {}
                        Some(m) if m == "INLINE" => {}
                        Some(m) if m == "DISTRIBUTED" => distributed = true,
                        Some(m) => self.error(name, field, format!("{field}.ProcessorConfig.Mode must be \"INLINE\" or \"DISTRIBUTED\", got {m}")),
                    }
                    if let Some(t) = config.get("ExecutionType")
                        && t != "STANDARD"
                        && t != "EXPRESS"
                    {
                        self.error(name, field, format!("{field}.ProcessorConfig.ExecutionType must be \"STANDARD\" or \"EXPRESS\", got {t}"));
                    }
                }
                self.scope(p, Some(name), &format!("the {field} of '{name}'"))
            }
            None => {
                if processor.is_some() {
                    self.error(name, field, format!("{field} must be an object"));
                }
                Scope {
                    start_at: String::new(),
                    states: Vec::new(),
                }
            }
        };
        let item_selector = match (
            obj.contains_key("ItemSelector"),
            obj.contains_key("Parameters"),
        ) {
            (true, true) => {
                self.error(
                    name,
                    "ItemSelector",
                    "ItemSelector and the legacy Parameters are mutually exclusive".into(),
                );
                None
            }
            (true, false) => self.template(name, obj, "ItemSelector"),
            (false, true) => self.template(name, obj, "Parameters"),
            (false, false) => None,
        };
        let items_path = match obj.get("ItemsPath") {
            None => Path::root(),
            Some(v) => self
                .reference_path(name, "ItemsPath", v)
                .unwrap_or_else(Path::root),
        };
        let max_concurrency = self
            .seconds(name, obj, "MaxConcurrency", 0)
            .unwrap_or(Seconds::Fixed(0));
        StateKind::Map(MapState {
            processor,
            items_path,
            item_selector,
            max_concurrency,
            distributed,
            shaping: self.shaping(name, obj, None),
        })
    }
}

/// Every `(field, target)` a state can transition to.
fn transitions(state: &State) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    if let Some(next) = &state.next {
        out.push(("Next", next.as_str()));
    }
    match &state.kind {
        StateKind::Choice(c) => {
            out.extend(c.choices.iter().map(|r| ("Choices", r.next.as_str())));
            if let Some(d) = &c.default {
                out.push(("Default", d.as_str()));
            }
        }
        StateKind::Task(TaskState { shaping, .. })
        | StateKind::Parallel(ParallelState { shaping, .. })
        | StateKind::Map(MapState { shaping, .. }) => {
            out.extend(shaping.catch.iter().map(|c| ("Catch", c.next.as_str())));
        }
        _ => {}
    }
    out
}
