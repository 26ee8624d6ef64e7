//! The States Language: definition parsing and validation, then a bounded
//! run of the interpreter on whatever validated (every task answered with
//! its own input, alternately failing, every timer fired), so Choice rules,
//! Retry/Catch, Map and Parallel run on fuzzed definitions. Nothing may
//! panic and the execution's snapshot must serialize.
//!
//! Input: the definition's JSON text.

use nimbus_workflow::{
    Action, Config, Execution, ExecutionInfo, SeededEntropy, StateError, StateMachine, Step,
    Timestamp,
};
use serde_json::json;

/// Interpreter calls per input: enough for loops, Maps and retries to turn.
const MAX_STEPS: usize = 200;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(machine) = StateMachine::from_json_str(text) else {
        return;
    };
    let mut now = Timestamp::from_unix_millis(1_765_080_000_000);
    let info = ExecutionInfo {
        id: "arn:aws:states:us-east-1:000000000000:execution:m:e".into(),
        name: "e".into(),
        state_machine_id: "arn:aws:states:us-east-1:000000000000:stateMachine:m".into(),
        state_machine_name: "m".into(),
        role_arn: None,
        input: json!({"a": [1, 2, 3], "b": {"c": "d"}, "n": 5}),
        start_time: now,
    };
    let mut entropy = SeededEntropy::new(text.len() as u64);
    let (mut exec, step) = Execution::start(&machine, info, Config::default(), now, &mut entropy);
    let mut pending: Vec<Action> = step.actions;
    let mut calls = 0;
    while let Some(action) = pending.pop() {
        if calls >= MAX_STEPS || !exec.is_running() {
            break;
        }
        calls += 1;
        now = now.plus_millis(1_000);
        let step: Option<Step> = match action {
            Action::RunTask(task) if calls % 3 == 0 => exec
                .task_failed(
                    &machine,
                    task.ticket,
                    StateError::new("States.TaskFailed", "fuzz"),
                    now,
                    &mut entropy,
                )
                .ok(),
            Action::RunTask(task) => exec
                .task_succeeded(&machine, task.ticket, task.input, now, &mut entropy)
                .ok(),
            Action::StartTimer { ticket, until, .. } => {
                now = now.max(until);
                exec.timer_fired(&machine, ticket, now, &mut entropy).ok()
            }
            Action::Continue => Some(exec.resume(&machine, now, &mut entropy)),
            Action::Cancel { .. } | Action::Succeeded { .. } | Action::Failed { .. } => None,
        };
        if let Some(step) = step {
            pending.extend(step.actions);
        }
    }
    let snapshot = serde_json::to_string(&exec).expect("an execution snapshot serializes");
    let _: Execution = serde_json::from_str(&snapshot).expect("a snapshot loads back");
    let _ = exec.outstanding();
}
