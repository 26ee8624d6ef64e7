//! What an event source runs: a function (optionally one of its versions or
//! aliases) or a workflow (a state machine).
//!
//! Schedules, queue mappings and gateway routes each used to spell this as a
//! `function` string (empty for a workflow), a `qualifier` and a `workflow`
//! option, which let "both" and "neither" through. [`Target`] has exactly the
//! two legal states. Its serialised form is still those three fields (see
//! [`TargetFields`]), so records stored by earlier versions, and the JSON
//! documents the APIs accept and answer, read and write unchanged.

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::policy::ArnScope;

/// A function (`name`, with a version or alias `qualifier`) or a state machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TargetFields", into = "TargetFields")]
pub enum Target {
    Function {
        name: String,
        qualifier: Option<String>,
    },
    /// A state machine, by name (or ARN where the source accepts one).
    Workflow { machine: String },
}

/// The stored and wire form of a [`Target`]: `function` (absent or empty for
/// a workflow), `qualifier` and `workflow`, as every record has spelled it.
/// Flatten a `Target` into a record to keep those field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
}

impl Target {
    /// A function, unqualified or with `qualifier`.
    pub fn function(name: impl Into<String>, qualifier: Option<String>) -> Self {
        Target::Function {
            name: name.into(),
            qualifier,
        }
    }

    pub fn workflow(machine: impl Into<String>) -> Self {
        Target::Workflow {
            machine: machine.into(),
        }
    }

    /// The target of a declaration with separate `function`, `qualifier` and
    /// `workflow` fields; `what` names the declaration in the error ("a
    /// schedule"). An empty `function` counts as absent. A qualifier beside a
    /// workflow is dropped: earlier versions stored it and ignored it.
    pub fn from_parts(
        function: Option<String>,
        qualifier: Option<String>,
        workflow: Option<String>,
        what: &str,
    ) -> Result<Self, ValidationError> {
        match (function.filter(|f| !f.is_empty()), workflow) {
            (Some(name), None) => Ok(Target::Function { name, qualifier }),
            (None, Some(machine)) => Ok(Target::Workflow { machine }),
            _ => Err(ValidationError::param(format!(
                "{what} targets exactly one of a function and a workflow"
            ))),
        }
    }

    /// The function's name, when the target is one.
    pub fn function_name(&self) -> Option<&str> {
        match self {
            Target::Function { name, .. } => Some(name),
            Target::Workflow { .. } => None,
        }
    }

    /// The function's qualifier, when the target is a qualified function.
    pub fn qualifier(&self) -> Option<&str> {
        match self {
            Target::Function { qualifier, .. } => qualifier.as_deref(),
            Target::Workflow { .. } => None,
        }
    }

    /// The state machine, when the target is one.
    pub fn machine(&self) -> Option<&str> {
        match self {
            Target::Workflow { machine } => Some(machine),
            Target::Function { .. } => None,
        }
    }

    /// Its ARN in `scope`: the (qualified) function's or the state machine's.
    pub fn arn(&self, scope: &ArnScope) -> String {
        match self {
            Target::Function { name, qualifier } => scope.function(name, qualifier.as_deref()),
            Target::Workflow { machine } => scope.state_machine(machine),
        }
    }
}

/// `name`, `name:qualifier` or `workflow:machine` (logs, messages).
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Function {
                name,
                qualifier: None,
            } => f.write_str(name),
            Target::Function {
                name,
                qualifier: Some(q),
            } => write!(f, "{name}:{q}"),
            Target::Workflow { machine } => write!(f, "workflow:{machine}"),
        }
    }
}

impl TryFrom<TargetFields> for Target {
    type Error = ValidationError;

    fn try_from(t: TargetFields) -> Result<Self, Self::Error> {
        Target::from_parts(t.function, t.qualifier, t.workflow, "a record")
    }
}

impl From<Target> for TargetFields {
    fn from(t: Target) -> Self {
        match t {
            Target::Function { name, qualifier } => TargetFields {
                function: Some(name),
                qualifier,
                workflow: None,
            },
            Target::Workflow { machine } => TargetFields {
                workflow: Some(machine),
                ..TargetFields::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record holding a target the way schedules and mappings do.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        name: String,
        #[serde(flatten)]
        target: Target,
    }

    #[test]
    fn records_stored_by_earlier_versions_load() {
        let cases = [
            // Schedule records: `function` optional.
            (
                json!({"name": "a", "function": "f", "qualifier": "live"}),
                Target::function("f", Some("live".into())),
            ),
            (
                json!({"name": "a", "function": "f"}),
                Target::function("f", None),
            ),
            (
                json!({"name": "a", "workflow": "wf"}),
                Target::workflow("wf"),
            ),
            // Mapping records: `function` empty beside a workflow.
            (
                json!({"name": "a", "function": "", "workflow": "wf"}),
                Target::workflow("wf"),
            ),
            // A qualifier once stored beside a workflow was ignored; still is.
            (
                json!({"name": "a", "workflow": "wf", "qualifier": "x"}),
                Target::workflow("wf"),
            ),
        ];
        for (stored, target) in cases {
            let h: Holder = serde_json::from_value(stored.clone()).unwrap();
            assert_eq!(h.target, target, "{stored}");
        }
    }

    #[test]
    fn targets_are_written_in_the_old_shape() {
        let h = |target| Holder {
            name: "a".into(),
            target,
        };
        assert_eq!(
            serde_json::to_value(h(Target::function("f", Some("3".into())))).unwrap(),
            json!({"name": "a", "function": "f", "qualifier": "3"})
        );
        assert_eq!(
            serde_json::to_value(h(Target::function("f", None))).unwrap(),
            json!({"name": "a", "function": "f"})
        );
        assert_eq!(
            serde_json::to_value(h(Target::workflow("wf"))).unwrap(),
            json!({"name": "a", "workflow": "wf"})
        );
        for t in [
            Target::function("f", Some("3".into())),
            Target::workflow("w"),
        ] {
            let back: Holder =
                serde_json::from_value(serde_json::to_value(h(t.clone())).unwrap()).unwrap();
            assert_eq!(back.target, t);
        }
    }

    #[test]
    fn both_or_neither_is_refused() {
        for bad in [
            json!({"name": "a"}),
            json!({"name": "a", "function": ""}),
            json!({"name": "a", "function": "f", "workflow": "wf"}),
        ] {
            let e = serde_json::from_value::<Holder>(bad.clone()).unwrap_err();
            assert!(e.to_string().contains("exactly one"), "{bad}: {e}");
        }
        let e = Target::from_parts(None, None, None, "a schedule").unwrap_err();
        assert_eq!(
            e.message,
            "a schedule targets exactly one of a function and a workflow"
        );
    }

    #[test]
    fn arns_and_labels() {
        let scope = ArnScope {
            region: "r".into(),
            account_id: "1".into(),
        };
        let f = Target::function("f", Some("live".into()));
        assert_eq!(f.arn(&scope), "arn:aws:lambda:r:1:function:f:live");
        assert_eq!(f.to_string(), "f:live");
        let w = Target::workflow("wf");
        assert_eq!(w.arn(&scope), "arn:aws:states:r:1:stateMachine:wf");
        assert_eq!(w.to_string(), "workflow:wf");
    }
}
