//! Execution history events.
//!
//! The interpreter reports every transition as an event named exactly like
//! the AWS `HistoryEvent` types (reference §8), so the Step Functions API can
//! serve `GetExecutionHistory` straight from what the executor persisted.
//! Events are produced in batches by each interpreter call; ids are assigned
//! by the execution and are dense, starting at 1.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::interpreter::FrameId;
use crate::timestamp::Timestamp;

macro_rules! event_types {
    ($($name:ident),* $(,)?) => {
        /// An AWS history event type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType { $(#[doc = stringify!($name)] $name,)* }

        impl EventType {
            /// The AWS name, e.g. `PassStateEntered`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$name => stringify!($name),)* }
            }
        }
    };
}

event_types! {
    ExecutionStarted, ExecutionSucceeded, ExecutionFailed, ExecutionAborted, ExecutionTimedOut,
    TaskStateEntered, TaskStateExited, TaskStateAborted,
    PassStateEntered, PassStateExited,
    WaitStateEntered, WaitStateExited, WaitStateAborted,
    ChoiceStateEntered, ChoiceStateExited,
    ParallelStateEntered, ParallelStateExited, ParallelStateAborted,
    MapStateEntered, MapStateExited, MapStateAborted,
    SucceedStateEntered, SucceedStateExited,
    FailStateEntered,
    TaskScheduled, TaskStarted, TaskSucceeded, TaskFailed, TaskTimedOut,
    LambdaFunctionScheduled, LambdaFunctionStarted, LambdaFunctionSucceeded,
    LambdaFunctionFailed, LambdaFunctionTimedOut,
    ActivityScheduled, ActivityStarted, ActivitySucceeded, ActivityFailed, ActivityTimedOut,
    ParallelStateStarted, ParallelStateSucceeded, ParallelStateFailed,
    MapStateStarted, MapStateSucceeded, MapStateFailed,
    MapIterationStarted, MapIterationSucceeded, MapIterationFailed, MapIterationAborted,
}

impl EventType {
    /// `{Type}StateEntered` for a state type name.
    pub fn state_entered(type_name: &str) -> EventType {
        match type_name {
            "Task" => EventType::TaskStateEntered,
            "Pass" => EventType::PassStateEntered,
            "Wait" => EventType::WaitStateEntered,
            "Choice" => EventType::ChoiceStateEntered,
            "Parallel" => EventType::ParallelStateEntered,
            "Map" => EventType::MapStateEntered,
            "Succeed" => EventType::SucceedStateEntered,
            _ => EventType::FailStateEntered,
        }
    }

    /// `{Type}StateExited` for a state type name (Fail has none).
    pub fn state_exited(type_name: &str) -> Option<EventType> {
        Some(match type_name {
            "Task" => EventType::TaskStateExited,
            "Pass" => EventType::PassStateExited,
            "Wait" => EventType::WaitStateExited,
            "Choice" => EventType::ChoiceStateExited,
            "Parallel" => EventType::ParallelStateExited,
            "Map" => EventType::MapStateExited,
            "Succeed" => EventType::SucceedStateExited,
            _ => return None,
        })
    }

    /// `{Type}StateAborted` for the state types that can be interrupted.
    pub fn state_aborted(type_name: &str) -> Option<EventType> {
        Some(match type_name {
            "Task" => EventType::TaskStateAborted,
            "Wait" => EventType::WaitStateAborted,
            "Parallel" => EventType::ParallelStateAborted,
            "Map" => EventType::MapStateAborted,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Event details; which fields are set depends on the type (AWS spreads
/// these over one struct per type, Nimbus keeps one optional-field struct).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetails {
    /// State name (state and Map iteration events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// State or task input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// State, task or execution output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Error name (failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Error cause (failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Task resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Map iteration index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Map length (`MapStateStarted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Task timeout reported with `…Scheduled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
    /// Task heartbeat reported with `…Scheduled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_in_seconds: Option<u64>,
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    /// Dense, starting at 1.
    pub id: u64,
    /// The event this one follows from (0 for `ExecutionStarted`).
    pub previous_event_id: u64,
    /// When it happened (the `now` given to the interpreter).
    pub timestamp: Timestamp,
    /// The AWS event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Which frame (0 = the execution's top level) produced it; a Nimbus
    /// extension that lets a UI group branch and iteration events.
    pub frame: FrameId,
    /// Type-dependent details.
    pub details: EventDetails,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_serialization() {
        assert_eq!(
            EventType::state_entered("Pass").as_str(),
            "PassStateEntered"
        );
        assert_eq!(EventType::state_exited("Fail"), None);
        assert_eq!(
            EventType::state_aborted("Map"),
            Some(EventType::MapStateAborted)
        );
        let event = HistoryEvent {
            id: 1,
            previous_event_id: 0,
            timestamp: Timestamp::from_unix_millis(0),
            event_type: EventType::MapIterationStarted,
            frame: FrameId(0),
            details: EventDetails {
                name: Some("M".into()),
                index: Some(2),
                ..EventDetails::default()
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 1, "previousEventId": 0, "timestamp": "1970-01-01T00:00:00.000Z",
                "type": "MapIterationStarted", "frame": 0, "details": {"name": "M", "index": 2}})
        );
        assert_eq!(serde_json::from_value::<HistoryEvent>(json).unwrap(), event);
    }
}
