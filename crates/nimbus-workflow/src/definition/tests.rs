//! Validation: one test per kind of error, checking the exact message.

use serde_json::{Value, json};

use super::{StateKind, StateMachine};

fn errors(definition: Value) -> Vec<String> {
    match StateMachine::parse(&definition) {
        Ok(_) => panic!("expected validation errors for {definition}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(definition: Value, expected: &str) {
    let all = errors(definition);
    assert!(
        all.iter().any(|e| e == expected),
        "expected {expected:?} among {all:#?}"
    );
}

fn pass_end() -> Value {
    json!({"Type": "Pass", "End": true})
}

#[test]
fn accepts_a_full_featured_definition() {
    let machine = StateMachine::parse(&json!({
        "Comment": "all state types", "Version": "1.0", "TimeoutSeconds": 60,
        "QueryLanguage": "JSONPath",
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:F",
                  "TimeoutSeconds": 10, "HeartbeatSeconds": 5,
                  "Parameters": {"a.$": "$.a"}, "ResultSelector": {"r.$": "$"}, "ResultPath": "$.r",
                  "Retry": [{"ErrorEquals": ["States.Timeout"]}, {"ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL"}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.err"}],
                  "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "W"}], "Default": "P"},
            "W": {"Type": "Wait", "Timestamp": "2030-01-01T00:00:00Z", "Next": "P"},
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "B1", "States": {"B1": {"Type": "Succeed"}}}], "Next": "M"},
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrencyPath": "$.n",
                  "Iterator": {"StartAt": "I1", "States": {"I1": {"Type": "Pass", "End": true}}},
                  "Parameters": {"v.$": "$$.Map.Item.Value"}, "Next": "M2"},
            "M2": {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                   "StartAt": "I2", "States": {"I2": {"Type": "Pass", "End": true}}}, "ItemSelector": {"a": 1}, "End": true},
            "F": {"Type": "Fail", "ErrorPath": "$.err.Error", "CausePath": "States.Format('x{}', $.y)"}
        }
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(machine.start_at(), "T");
    assert_eq!(machine.timeout_seconds, Some(60));
    assert_eq!(
        machine.states().count(),
        10,
        "nested states are indexed too"
    );
    assert!(matches!(
        machine.state("I1").unwrap().kind,
        StateKind::Pass(_)
    ));
    let StateKind::Map(m) = &machine.state("M2").unwrap().kind else {
        panic!()
    };
    assert!(m.distributed && m.item_selector.is_some());
}

#[test]
fn graph_errors() {
    assert_error(
        json!({"StartAt": "Nope", "States": {"A": pass_end()}}),
        "StartAt 'Nope' of the state machine does not name a state in the state machine",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}),
        "state 'A': Next target 'B' does not name a state in the state machine",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": pass_end(), "B": pass_end()}}),
        "state 'B': the state is unreachable from StartAt 'A'",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}),
        "state 'A': a Pass state needs 'Next' or \"End\": true",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A", "End": true}}}),
        "state 'A': a state cannot have both 'Next' and 'End'",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Succeed", "Next": "A"}}}),
        "state 'A': field 'Next' is not allowed: a Succeed state is terminal and cannot have 'Next'",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Fail", "End": true}}}),
        "state 'A': field 'End' is not allowed: a Fail state cannot have 'End'",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": false}}}),
        "state 'A': End must be true when present, got false",
    );
    assert_error(
        json!({"States": {"A": pass_end()}}),
        "the state machine has no StartAt",
    );
    assert_error(
        json!({"StartAt": "A"}),
        "the state machine has no States object",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": pass_end()}, "Bogus": 1}),
        "unknown top-level field 'Bogus'",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": pass_end()}, "TimeoutSeconds": 0}),
        "TimeoutSeconds must be a positive integer, got 0",
    );
    let long = "x".repeat(81);
    assert_error(
        json!({"StartAt": long, "States": {long.clone(): pass_end()}}),
        &format!("state '{long}': state names must be 1 to 80 characters long"),
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Nope", "End": true}}}),
        "state 'A': Type must be one of Task, Parallel, Map, Pass, Wait, Choice, Succeed, Fail; got \"Nope\"",
    );
}

#[test]
fn scopes_are_closed_and_names_are_global() {
    let branch_jumps_out = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Out", "Branches": [
            {"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "Out"}}}]},
        "Out": pass_end()}});
    assert_error(
        branch_jumps_out,
        "state 'In': Next target 'Out' does not name a state in Branches[0] of 'P' (it exists in another \
         scope; a Parallel branch or Map processor cannot jump out and nothing can jump in)",
    );
    let duplicate = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "P", "States": {"P": pass_end()}}]}}});
    assert_error(
        duplicate,
        "state 'P': the state name 'P' is used more than once; names must be unique across the whole state machine, nested branches included",
    );
    let unreachable_in_map = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "A", "States": {"A": pass_end(), "B": pass_end()}}}}});
    assert_error(
        unreachable_in_map,
        "state 'B': the state is unreachable from StartAt 'A'",
    );
    assert_error(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemProcessor": {"States": {"A": pass_end()}}}}}),
        "state 'M': the ItemProcessor of 'M' has no StartAt",
    );
}

#[test]
fn fields_not_allowed_for_the_type() {
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Retry": []}}}),
        "state 'A': field 'Retry' is not allowed in a Pass state",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "End": true, "ResultPath": "$.x"}}}),
        "state 'A': field 'ResultPath' is not allowed in a Wait state",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Fail", "InputPath": "$"}}}),
        "state 'A': field 'InputPath' is not allowed in a Fail state",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "B"}], "Parameters": {}}, "B": pass_end()}}),
        "state 'A': field 'Parameters' is not allowed in a Choice state",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Assign": {"x": 1}}}}),
        "state 'A': field 'Assign' is not allowed: variables ('Assign') are not supported",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true, "ItemReader": {},
            "ItemProcessor": {"StartAt": "B", "States": {"B": pass_end()}}}}}),
        "state 'A': field 'ItemReader' is not allowed: 'ItemReader' (distributed Map) is not supported yet",
    );
}

#[test]
fn jsonata_is_rejected_clearly() {
    assert_error(
        json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": pass_end()}}),
        "JSONata is not supported; use JSONPath",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "QueryLanguage": "JSONata",
            "Output": "{% $states.input %}"}}}),
        "state 'A': JSONata is not supported; use JSONPath",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Output": {}}}}),
        "state 'A': field 'Output' is not allowed: 'Output' is a JSONata field; JSONata is not supported, use JSONPath",
    );
}

#[test]
fn invalid_paths() {
    let with = |field: &str, path: &str| json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, field: path}}});
    assert_error(
        with("InputPath", "a.b"),
        "state 'A': InputPath: invalid JSONPath 'a.b': a path must start with '$' or '$$'",
    );
    assert_error(
        with("OutputPath", "$.a["),
        "state 'A': OutputPath: invalid JSONPath '$.a[': unterminated '['",
    );
    assert_error(
        with("ResultPath", "$.a[*]"),
        "state 'A': ResultPath: invalid JSONPath '$.a[*]': a reference path may only name a single node (no '*', '..', ':', ',', '?(…)' or negative index)",
    );
    assert_error(
        with("ResultPath", "$$.x"),
        "state 'A': ResultPath must not address the context object ('$$')",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true, "ItemsPath": "$..x",
            "ItemProcessor": {"StartAt": "B", "States": {"B": pass_end()}}}}}),
        "state 'A': ItemsPath: invalid JSONPath '$..x': a reference path may only name a single node (no '*', '..', ':', ',', '?(…)' or negative index)",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "$.a b"}}}}),
        "state 'A': Parameters: 'x.$': invalid JSONPath '$.a b': unexpected 'b' at offset 4",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "States.Nope(1)"}}}}),
        "state 'A': Parameters: 'x.$': invalid intrinsic function call 'States.Nope(1)': unknown intrinsic function 'States.Nope'",
    );
}

#[test]
fn choice_wait_fail_and_task_fields() {
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Default": "B"}, "B": pass_end()}}),
        "state 'A': a Choice state needs a non-empty 'Choices' array",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": "1", "Next": "B"}]}, "B": pass_end()}}),
        "state 'A': Choices[0].NumericEquals must be a number, got \"1\"",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "B"}], "Default": "Z"}, "B": pass_end()}}),
        "state 'A': Default target 'Z' does not name a state in the state machine",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": true}}}),
        "state 'A': a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath (found none)",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}}}),
        "state 'A': a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath (found Seconds, SecondsPath)",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Timestamp": "2016-03-14 01:59:00Z", "End": true}}}),
        "state 'A': Timestamp must be an RFC 3339 timestamp such as \"2016-03-14T01:59:00Z\", got \"2016-03-14 01:59:00Z\"",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": -1, "End": true}}}),
        "state 'A': Seconds must be a non-negative integer, got -1",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}}),
        "state 'A': Error and ErrorPath are mutually exclusive",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}),
        "state 'A': a Task state needs a Resource",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "TimeoutSeconds": 5, "TimeoutSecondsPath": "$.t"}}}),
        "state 'A': TimeoutSeconds and TimeoutSecondsPath are mutually exclusive",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "TimeoutSeconds": 5, "HeartbeatSeconds": 5}}}),
        "state 'A': HeartbeatSeconds (5) must be smaller than TimeoutSeconds (5)",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "TimeoutSeconds": 0}}}),
        "state 'A': TimeoutSeconds must be a positive integer, got 0",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Parallel", "End": true, "Branches": []}}}),
        "state 'A': a Parallel state needs a non-empty 'Branches' array",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true}}}),
        "state 'A': a Map state needs an ItemProcessor (or the legacy Iterator)",
    );
    assert_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true, "ItemSelector": {}, "Parameters": {},
            "ItemProcessor": {"StartAt": "B", "States": {"B": pass_end()}}}}}),
        "state 'A': ItemSelector and the legacy Parameters are mutually exclusive",
    );
}

#[test]
fn retry_and_catch_fields() {
    let task = |retry: Value, catch: Value| {
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
            "Retry": retry, "Catch": catch}, "B": pass_end()}})
    };
    assert_error(
        task(
            json!([{"ErrorEquals": ["E"], "MaxAttempts": -1}]),
            json!([]),
        ),
        "state 'A': Retry[0].MaxAttempts must be a non-negative integer (at most 99999999), got -1",
    );
    assert_error(
        task(
            json!([{"ErrorEquals": ["E"], "BackoffRate": 0.5}]),
            json!([]),
        ),
        "state 'A': Retry[0].BackoffRate must be a number >= 1.0, got 0.5",
    );
    assert_error(
        task(
            json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]),
            json!([]),
        ),
        "state 'A': Retry[0].ErrorEquals: States.ALL must be in the last element",
    );
    assert_error(
        task(
            json!([]),
            json!([{"ErrorEquals": ["States.ALL", "E"], "Next": "B"}]),
        ),
        "state 'A': Catch[0].ErrorEquals: States.ALL must appear alone",
    );
    assert_error(
        task(
            json!([]),
            json!([{"ErrorEquals": ["E"], "Next": "Nowhere"}]),
        ),
        "state 'A': Catch target 'Nowhere' does not name a state in the state machine",
    );
    // A catcher makes its target reachable.
    assert!(
        StateMachine::parse(&task(
            json!([]),
            json!([{"ErrorEquals": ["E"], "Next": "B"}])
        ))
        .is_ok()
    );
}

#[test]
fn collects_every_error_and_parses_text() {
    let all = errors(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "Z"},
        "B": {"Type": "Task", "End": true}}}));
    assert_eq!(all.len(), 3, "{all:#?}");
    let e = StateMachine::from_json_str("{").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid state machine definition: the definition is not valid JSON"),
        "{e}"
    );
    let e = StateMachine::from_json_str("[]").unwrap_err();
    assert!(e.to_string().contains("must be a JSON object"));
}
