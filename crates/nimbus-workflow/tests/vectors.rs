//! The reference's test vectors (amazon-states-language.md §10), copied
//! verbatim into `tests/vectors/*.json`, run with their exact expectations.

mod common;

use std::collections::{HashMap, VecDeque};

use nimbus_workflow::StateError;
use serde_json::{Value, json};

use common::{Outcome, run_with};

fn vector(name: &str) -> Value {
    let text = match name {
        "V1" => include_str!("vectors/V1.json"),
        "V2" => include_str!("vectors/V2.json"),
        "V3" => include_str!("vectors/V3.json"),
        "V4" => include_str!("vectors/V4.json"),
        "V5" => include_str!("vectors/V5.json"),
        "V6" => include_str!("vectors/V6.json"),
        "S1" => include_str!("vectors/S1.json"),
        "S2a" => include_str!("vectors/S2a.json"),
        "S2b" => include_str!("vectors/S2b.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

/// Runs every case of a vector, checks status/output/error/cause, and hands
/// each outcome to `extra` for vector-specific checks.
fn check(name: &str, mut extra: impl FnMut(usize, &Outcome)) {
    let v = vector(name);
    for (i, case) in v["cases"].as_array().unwrap().iter().enumerate() {
        let mut mocks: HashMap<String, VecDeque<Value>> = case
            .get("mocks")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_array().unwrap().iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default();
        let mut handler = |t: &nimbus_workflow::TaskRequest| -> Result<Value, StateError> {
            let behaviour = mocks
                .get_mut(&t.state_name)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| panic!("{name} case {i}: no mock left for {}", t.state_name));
            if let Some(ret) = behaviour.get("Return") {
                Ok(ret.clone())
            } else {
                let thrown = &behaviour["Throw"];
                Err(StateError::new(
                    thrown["Error"].as_str().unwrap(),
                    thrown["Cause"].as_str().unwrap(),
                ))
            }
        };
        let outcome = run_with(&v["definition"], case["input"].clone(), &mut handler);
        let expect = &case["expect"];
        assert_eq!(
            outcome.status_name(),
            expect["status"].as_str().unwrap(),
            "{name} case {i}: {:?}",
            outcome.status
        );
        if let Some(output) = expect.get("output") {
            assert_eq!(outcome.output(), output, "{name} case {i} output");
        }
        if let Some(error) = expect.get("error") {
            assert_eq!(
                outcome.error().0,
                error.as_str().unwrap(),
                "{name} case {i} error"
            );
        }
        if let Some(cause) = expect.get("cause") {
            assert_eq!(
                outcome.error().1.as_deref(),
                cause.as_str(),
                "{name} case {i} cause"
            );
        }
        extra(i, &outcome);
    }
}

#[test]
fn v1_chaining_and_jsonpath_data_flow() {
    check("V1", |i, o| {
        if i == 1 {
            assert_eq!(
                o.error().1.unwrap(),
                "An error occurred while executing the state 'Shape' (entered at the event id #2). \
                 Invalid path '$.order' : No results for path: $['order']"
            );
            assert_eq!(
                o.types(),
                ["ExecutionStarted", "PassStateEntered", "ExecutionFailed"]
            );
        } else {
            assert_eq!(
                o.types(),
                [
                    "ExecutionStarted",
                    "PassStateEntered",
                    "PassStateExited",
                    "PassStateEntered",
                    "PassStateExited",
                    "SucceedStateEntered",
                    "SucceedStateExited",
                    "ExecutionSucceeded"
                ]
            );
        }
    });
}

#[test]
fn v2_choice_rules() {
    check("V2", |_, o| {
        assert_eq!(o.count("ChoiceStateEntered"), 1);
        assert_eq!(o.count("ChoiceStateExited"), 1);
    });
}

#[test]
fn v3_parallel_with_a_wait_inside_a_branch() {
    check("V3", |_, o| {
        assert!(o.elapsed_ms >= 1000, "the Wait took {} ms", o.elapsed_ms);
        assert_eq!(o.count("ParallelStateStarted"), 1);
        let types = o.types();
        let pos = |t: &str| types.iter().position(|x| *x == t).unwrap();
        assert!(pos("ParallelStateSucceeded") < pos("ParallelStateExited"));
        assert!(pos("ParallelStateEntered") < pos("ParallelStateStarted"));
        assert_eq!(o.count("WaitStateEntered"), 1);
    });
}

#[test]
fn v4_map_with_item_selector_choice_and_result_selector() {
    check("V4", |i, o| {
        let n = if i == 0 { 3 } else { 0 };
        assert_eq!(o.count("MapIterationStarted"), n);
        assert_eq!(o.count("MapIterationSucceeded"), n);
        assert_eq!(o.count("MapStateStarted"), 1);
        let started = o
            .events
            .iter()
            .find(|e| e.event_type.as_str() == "MapStateStarted")
            .unwrap();
        assert_eq!(started.details.length, Some(n as u64));
        let types = o.types();
        let pos = |t: &str| types.iter().position(|x| *x == t).unwrap();
        assert!(pos("MapStateSucceeded") < pos("MapStateExited"));
    });
}

#[test]
fn v5_retry_then_catch_without_functions() {
    check("V5", |_, o| {
        assert_eq!(o.count("ParallelStateStarted"), 3, "{:?}", o.types());
        assert_eq!(o.count("ParallelStateFailed"), 3);
        assert_eq!(o.count("FailStateEntered"), 3);
        assert_eq!(o.elapsed_ms, 3000, "waits of 1 s then 2 s");
        let exited = o
            .events
            .iter()
            .find(|e| e.event_type.as_str() == "ParallelStateExited")
            .unwrap();
        assert_eq!(
            exited.details.output,
            Some(
                json!({"request": "r-1", "error": {"Error": "Custom.Flaky", "Cause": "always fails"}})
            )
        );
    });
}

#[test]
fn v6_task_with_retry_max_delay_and_catch() {
    check("V6", |i, o| {
        // The function always receives the same payload.
        for t in &o.tasks {
            assert_eq!(t.input["amount"], json!(30));
            assert_eq!(
                t.resource,
                "arn:aws:lambda:us-east-1:123456789012:function:Charge"
            );
        }
        match i {
            0 => {
                assert_eq!(o.count("LambdaFunctionScheduled"), 2);
                assert_eq!(o.count("LambdaFunctionStarted"), 2);
                assert_eq!(o.count("LambdaFunctionFailed"), 1);
                assert_eq!(o.count("LambdaFunctionSucceeded"), 1);
                assert_eq!(o.elapsed_ms, 1000);
                assert_eq!(o.tasks[0].input, json!({"customer": "c-7", "amount": 30}));
                assert_eq!(
                    o.tasks.iter().map(|t| t.attempt).collect::<Vec<_>>(),
                    [0, 1]
                );
            }
            1 => {
                assert_eq!(o.count("LambdaFunctionScheduled"), 1);
                assert_eq!(o.elapsed_ms, 0);
            }
            _ => {
                assert_eq!(o.count("LambdaFunctionScheduled"), 4);
                assert_eq!(o.elapsed_ms, 3000, "1 + 1 + 1 s, capped by MaxDelaySeconds");
            }
        }
        // Every case starts with a failed first invocation.
        let types = o.types();
        assert_eq!(
            &types[..5],
            [
                "ExecutionStarted",
                "TaskStateEntered",
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionFailed"
            ]
        );
    });
}

#[test]
fn s1_wait_seconds_path_boolean_equals_succeed_and_fail_paths() {
    check("S1", |i, o| {
        if i == 0 {
            assert_eq!(o.elapsed_ms, 1000);
            assert_eq!(o.count("WaitStateExited"), 1);
        } else {
            assert_eq!(o.elapsed_ms, 0);
            assert_eq!(o.count("FailStateEntered"), 1);
        }
    });
}

#[test]
fn s2_no_choice_matched() {
    check("S2a", |i, o| {
        if i == 1 {
            assert_eq!(o.error().0, "States.NoChoiceMatched");
        }
    });
}

#[test]
fn s2_execution_timeout() {
    check("S2b", |_, o| {
        assert_eq!(o.error().0, "States.Timeout");
        assert_eq!(o.elapsed_ms, 1000, "timed out after 1 s, not 3");
        let types = o.types();
        assert_eq!(
            types,
            [
                "ExecutionStarted",
                "WaitStateEntered",
                "WaitStateAborted",
                "ExecutionTimedOut"
            ]
        );
    });
}
