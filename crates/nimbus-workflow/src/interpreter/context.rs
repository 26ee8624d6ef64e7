//! The context object (`$$`), built lazily.
//!
//! The context embeds the execution input, which may be big (a Map's whole
//! array). Building it for every state visit would make a 10,000-item Map
//! quadratic, so it is assembled per path and only with the top-level key the
//! path reaches, leaving out `Execution.Input` unless the path goes there.

use serde_json::{Map, Value, json};

use super::ExecutionInfo;
use crate::path::{ContextSource, Path};
use crate::timestamp::Timestamp;

/// What `$$` shows while one state is being processed.
pub(crate) struct ContextObject<'a> {
    pub info: &'a ExecutionInfo,
    pub state_name: &'a str,
    pub entered_time: Timestamp,
    pub retry_count: u64,
    pub task_token: Option<&'a str>,
    pub map_item: Option<(usize, &'a Value)>,
}

impl ContextSource for ContextObject<'_> {
    fn context_for(&self, path: &Path) -> Value {
        let mut names = path.leading_names();
        let first = names.next();
        let second = names.next();
        let wants = |key: &str| first.is_none_or(|f| f == key);
        let mut out = Map::new();
        if wants("Execution") {
            let mut execution = Map::new();
            execution.insert("Id".into(), Value::String(self.info.id.clone()));
            if second.is_none_or(|s| s == "Input") {
                execution.insert("Input".into(), self.info.input.clone());
            }
            execution.insert("Name".into(), Value::String(self.info.name.clone()));
            if let Some(role) = &self.info.role_arn {
                execution.insert("RoleArn".into(), Value::String(role.clone()));
            }
            execution.insert(
                "StartTime".into(),
                Value::String(self.info.start_time.to_rfc3339()),
            );
            execution.insert("RedriveCount".into(), Value::from(0));
            out.insert("Execution".into(), Value::Object(execution));
        }
        if wants("StateMachine") {
            out.insert(
                "StateMachine".into(),
                json!({"Id": self.info.state_machine_id, "Name": self.info.state_machine_name}),
            );
        }
        if wants("State") {
            out.insert(
                "State".into(),
                json!({
                    "Name": self.state_name,
                    "EnteredTime": self.entered_time.to_rfc3339(),
                    "RetryCount": self.retry_count,
                }),
            );
        }
        if let Some(token) = self.task_token
            && wants("Task")
        {
            out.insert("Task".into(), json!({"Token": token}));
        }
        if let Some((index, value)) = self.map_item
            && wants("Map")
        {
            out.insert(
                "Map".into(),
                json!({"Item": {"Index": index, "Value": value}}),
            );
        }
        Value::Object(out)
    }
}
