//! Interpreter behaviour beyond the reference vectors: scale, durability
//! (serialize mid-execution and resume), cancellation, retry counting,
//! timeouts, callback tokens and the context object.

mod common;

use std::time::Instant;

use nimbus_workflow::{
    Action, Config, Execution, ExecutionStatus, FeedbackError, SeededEntropy, StateError,
    StateMachine, TaskKind, Timestamp,
};
use serde_json::{Value, json};

use common::{Harness, T0, info, parse, run, run_with};

fn lambda(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

#[test]
fn map_of_10000_items_with_max_concurrency_50() {
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": 50, "End": true,
        "ItemProcessor": {"StartAt": "Double", "States": {
            "Double": {"Type": "Task", "Resource": lambda("Double"), "End": true}}}}}});
    let machine = parse(&definition);
    let items: Vec<Value> = (0..10_000).map(Value::from).collect();
    let started = Instant::now();
    // Six events per iteration: past Step Functions' 25,000, so allowed more.
    let config = Config {
        max_history_events: 100_000,
        ..Config::default()
    };
    let mut h = Harness::start(&machine, Value::Array(items), config);
    let mut max_frames = 0;
    while h.execution.is_running() {
        max_frames = max_frames.max(h.execution.frame_count());
        assert!(h.run_one_task(&mut |t| Ok(json!(t.input.as_i64().unwrap() * 2))));
    }
    let elapsed = started.elapsed();
    let ExecutionStatus::Succeeded { output } = h.execution.status() else {
        panic!("{:?}", h.execution.status())
    };
    let expected: Vec<Value> = (0..10_000).map(|i| json!(i * 2)).collect();
    assert_eq!(output, &Value::Array(expected));
    assert!(h.max_in_flight <= 50, "{} tasks in flight", h.max_in_flight);
    assert_eq!(h.max_in_flight, 50);
    assert!(max_frames <= 51, "{max_frames} frames alive");
    assert_eq!(
        h.execution.frame_count(),
        1,
        "iteration frames are dropped when done"
    );
    let iterations = h
        .events
        .iter()
        .filter(|e| e.event_type.as_str() == "MapIterationSucceeded")
        .count();
    assert_eq!(iterations, 10_000);
    // Debug build on a shared 2-core machine; typically ~0.2 s.
    assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
    eprintln!("10,000-item Map with MaxConcurrency 50: {elapsed:?}");
}

#[test]
fn map_of_10000_pass_iterations_runs_in_bounded_calls() {
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true, "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "OutputPath": "$.v", "End": true}}}}}});
    let items: Vec<Value> = (0..10_000).map(Value::from).collect();
    let started = Instant::now();
    let config = Config {
        max_history_events: 100_000,
        ..Config::default()
    };
    let machine = parse(&definition);
    let outcome = Harness::start(&machine, Value::Array(items.clone()), config)
        .run_to_end(&mut |t| Ok(t.input.clone()));
    assert_eq!(outcome.output(), &Value::Array(items));
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn map_concurrency_one_is_sequential_and_zero_uses_the_configured_cap() {
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrencyPath": "$.c", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "echo", "End": true}}}}}});
    let input = json!({"c": 1, "items": [1, 2, 3, 4, 5]});
    let machine = parse(&definition);
    let outcome =
        Harness::start(&machine, input, Config::default()).run_to_end(&mut |t| Ok(t.input.clone()));
    assert_eq!(outcome.max_in_flight, 1);
    assert_eq!(
        outcome
            .tasks
            .iter()
            .map(|t| t.input.clone())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5].map(Value::from)
    );
    let input = json!({"c": 0, "items": [1, 2, 3, 4, 5]});
    let config = Config {
        unlimited_map_concurrency: 3,
        ..Config::default()
    };
    let outcome = Harness::start(&machine, input, config).run_to_end(&mut |t| Ok(t.input.clone()));
    assert_eq!(outcome.max_in_flight, 3);
    assert_eq!(outcome.output(), &json!([1, 2, 3, 4, 5]));
}

#[test]
fn serialized_mid_execution_state_resumes() {
    let definition = json!({"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": lambda("Charge"), "Parameters": {"amount.$": "$.amount"},
                   "ResultPath": "$.charge", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 10, "Next": "Done"},
        "Done": {"Type": "Pass", "Parameters": {"id.$": "$.charge.id", "amount.$": "$.amount"}, "End": true}}});
    let machine = parse(&definition);
    let now = Timestamp::from_unix_millis(T0);
    let mut entropy = SeededEntropy::new(1);
    let (execution, step) = Execution::start(
        &machine,
        info(json!({"amount": 5})),
        Config::default(),
        now,
        &mut entropy,
    );
    let [Action::RunTask(request)] = step.actions.as_slice() else {
        panic!("{:?}", step.actions)
    };
    assert_eq!(request.input, json!({"amount": 5}));
    assert_eq!(request.kind, TaskKind::Lambda);

    // "Crash": persist, drop, reload.
    let snapshot = serde_json::to_string(&execution).unwrap();
    drop(execution);
    let mut execution: Execution = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(
        execution.outstanding(),
        vec![Action::RunTask(request.clone())]
    );

    let step = execution
        .task_succeeded(
            &machine,
            request.ticket,
            json!({"id": "ch_1"}),
            now.plus_millis(200),
            &mut entropy,
        )
        .unwrap();
    let [Action::StartTimer { ticket, until, .. }] = step.actions.as_slice() else {
        panic!("{:?}", step.actions)
    };
    assert_eq!(*until, now.plus_millis(10_200));

    // Crash again while waiting; the timer is re-armed from the snapshot.
    let snapshot = serde_json::to_value(&execution).unwrap();
    let mut execution: Execution = serde_json::from_value(snapshot).unwrap();
    assert!(matches!(
        execution.outstanding().as_slice(),
        [Action::StartTimer { .. }]
    ));
    let step = execution
        .timer_fired(&machine, *ticket, *until, &mut entropy)
        .unwrap();
    assert_eq!(
        step.actions,
        vec![Action::Succeeded {
            output: json!({"id": "ch_1", "amount": 5})
        }]
    );
    assert_eq!(
        execution.status(),
        &ExecutionStatus::Succeeded {
            output: json!({"id": "ch_1", "amount": 5})
        }
    );
    assert_eq!(
        step.events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "WaitStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
}

#[test]
fn stale_and_mismatched_tickets_are_rejected() {
    let machine = parse(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": ["E"]}], "End": true}}}));
    let now = Timestamp::from_unix_millis(T0);
    let mut entropy = SeededEntropy::new(1);
    let (mut execution, step) = Execution::start(
        &machine,
        info(json!({})),
        Config::default(),
        now,
        &mut entropy,
    );
    let Action::RunTask(request) = &step.actions[0] else {
        panic!()
    };
    let step = execution
        .task_failed(
            &machine,
            request.ticket,
            StateError::new("E", "x"),
            now,
            &mut entropy,
        )
        .unwrap();
    let Action::StartTimer { ticket: timer, .. } = step.actions[0] else {
        panic!()
    };
    // The first attempt answers late: rejected.
    assert_eq!(
        execution.task_succeeded(&machine, request.ticket, json!(1), now, &mut entropy),
        Err(FeedbackError::UnknownTicket(request.ticket))
    );
    assert_eq!(
        execution.task_succeeded(&machine, timer, json!(1), now, &mut entropy),
        Err(FeedbackError::WrongKind(timer, "task"))
    );
    let step = execution
        .timer_fired(&machine, timer, now.plus_millis(1000), &mut entropy)
        .unwrap();
    let Action::RunTask(retry) = &step.actions[0] else {
        panic!()
    };
    assert_eq!(retry.attempt, 1);
    execution
        .task_succeeded(&machine, retry.ticket, json!("ok"), now, &mut entropy)
        .unwrap();
    assert_eq!(
        execution.task_succeeded(&machine, retry.ticket, json!(1), now, &mut entropy),
        Err(FeedbackError::NotRunning)
    );
}

#[test]
fn parallel_branch_failure_cancels_siblings_and_is_caught() {
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Done",
              "Branches": [
                {"StartAt": "Slow", "States": {"Slow": {"Type": "Task", "Resource": "slow", "End": true}}},
                {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 100, "End": true}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Task", "Resource": "bad", "End": true}}}],
              "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.err", "Next": "Done"}]},
        "Done": {"Type": "Succeed"}}});
    let machine = parse(&definition);
    let now = Timestamp::from_unix_millis(T0);
    let mut entropy = SeededEntropy::new(1);
    let (mut execution, step) = Execution::start(
        &machine,
        info(json!({"k": 1})),
        Config::default(),
        now,
        &mut entropy,
    );
    let tasks: Vec<_> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let timers: Vec<_> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::StartTimer { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .collect();
    assert_eq!(tasks.len(), 2);
    assert_eq!(timers.len(), 1);
    let bad = tasks.iter().find(|t| t.resource == "bad").unwrap();
    let slow = tasks.iter().find(|t| t.resource == "slow").unwrap();
    assert_ne!(bad.frame, slow.frame);
    let step = execution
        .task_failed(
            &machine,
            bad.ticket,
            StateError::new("Boom", "bang"),
            now,
            &mut entropy,
        )
        .unwrap();
    assert!(step.actions.contains(&Action::Cancel {
        ticket: slow.ticket
    }));
    assert!(step.actions.contains(&Action::Cancel { ticket: timers[0] }));
    let types: Vec<_> = step.events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(
        types.contains(&"TaskStateAborted") && types.contains(&"WaitStateAborted"),
        "{types:?}"
    );
    assert_eq!(
        execution.status(),
        &ExecutionStatus::Succeeded {
            output: json!({"k": 1, "err": {"Error": "Boom", "Cause": "bang"}})
        }
    );
    assert_eq!(
        execution.task_succeeded(&machine, slow.ticket, json!(1), now, &mut entropy),
        Err(FeedbackError::NotRunning)
    );
    assert_eq!(execution.frame_count(), 1);
}

#[test]
fn map_iteration_failure_aborts_the_others_and_propagates_unchanged() {
    let definition = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true}}}}}});
    let outcome = run_with(&definition, json!([1, 2, 3]), &mut |t| {
        if t.input == json!(1) {
            Err(StateError::new("Item.Bad", "one is bad"))
        } else {
            Ok(t.input.clone())
        }
    });
    assert_eq!(
        outcome.error(),
        ("Item.Bad".into(), Some("one is bad".into()))
    );
    assert_eq!(outcome.count("MapIterationFailed"), 1);
    assert_eq!(outcome.count("MapIterationAborted"), 2);
    assert_eq!(outcome.count("MapStateFailed"), 1);
    assert_eq!(outcome.types().last(), Some(&"ExecutionFailed"));
}

#[test]
fn runtime_errors_are_never_caught() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "OutputPath": "$.missing",
              "Retry": [{"ErrorEquals": ["States.ALL"]}],
              "Catch": [{"ErrorEquals": ["States.Runtime"], "Next": "X"}, {"ErrorEquals": ["States.ALL"], "Next": "X"}],
              "End": true},
        "X": {"Type": "Succeed"}}});
    let outcome = run(&definition, json!({"a": 1}));
    let (error, cause) = outcome.error();
    assert_eq!(error, "States.Runtime");
    assert!(cause.unwrap().contains("Invalid path '$.missing'"));
    assert_eq!(outcome.count("TaskStateEntered"), 1, "no retry either");
}

#[test]
fn result_path_match_failure_is_catchable() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "ResultPath": "$.x",
              "Catch": [{"ErrorEquals": ["States.ResultPathMatchFailure"], "ResultPath": null, "Next": "X"}],
              "End": true},
        "X": {"Type": "Pass", "End": true}}});
    let outcome = run(&definition, json!("foo"));
    assert_eq!(outcome.output(), &json!("foo"));
    let uncaught = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "ResultPath": "$.x", "End": true}}});
    let outcome = run(&uncaught, json!("foo"));
    assert_eq!(outcome.error().0, "States.ResultPathMatchFailure");
    assert_eq!(
        outcome.error().1.unwrap(),
        "unable to apply ReferencePath $.x to input \"foo\""
    );
}

#[test]
fn each_retrier_counts_its_own_attempts() {
    // Reference §6.2: errors A, B, C, B against [{A,B; max 2}, {C}] wait
    // 1 s, 2 s, 5 s, then the fourth error exhausts the first retrier.
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Retry": [{"ErrorEquals": ["A", "B"], "MaxAttempts": 2},
                        {"ErrorEquals": ["C"], "IntervalSeconds": 5}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Pass", "End": true}}});
    let mut errors = ["A", "B", "C", "B"].into_iter();
    let outcome = run_with(&definition, json!({}), &mut |_| {
        Err(StateError::new(errors.next().unwrap(), "x"))
    });
    assert_eq!(outcome.output(), &json!({"Error": "B", "Cause": "x"}));
    assert_eq!(outcome.elapsed_ms, 8000);
    assert_eq!(
        outcome.tasks.iter().map(|t| t.attempt).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[test]
fn task_failed_matcher_excludes_timeouts() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": lambda("F"), "TimeoutSecondsPath": "$.t", "HeartbeatSeconds": 2, "End": true,
              "Retry": [{"ErrorEquals": ["States.TaskFailed"]}],
              "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Late"}]},
        "Late": {"Type": "Pass", "Result": "late", "End": true}}});
    let outcome = run_with(&definition, json!({"t": 9}), &mut |t| {
        assert_eq!((t.timeout_seconds, t.heartbeat_seconds), (Some(9), Some(2)));
        Err(StateError::new("States.Timeout", "no answer in 9 s"))
    });
    assert_eq!(outcome.output(), &json!("late"));
    assert_eq!(outcome.count("LambdaFunctionTimedOut"), 1);
    assert_eq!(
        outcome.count("LambdaFunctionScheduled"),
        1,
        "States.TaskFailed does not retry a timeout"
    );
    let outcome = run_with(&definition, json!({"t": 9}), &mut {
        let mut n = 0;
        move |_| {
            n += 1;
            if n == 1 {
                Err(StateError::new("Whatever", "x"))
            } else {
                Ok(json!(n))
            }
        }
    });
    assert_eq!(
        outcome.output(),
        &json!(2),
        "States.TaskFailed retries anything else"
    );
}

#[test]
fn callback_token_and_context_object() {
    let definition = json!({"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true,
        "Credentials": {"RoleArn.$": "$.role"},
        "Parameters": {"token.$": "$$.Task.Token", "exec.$": "$$.Execution.Name", "id.$": "$$.Execution.Id",
                       "input.$": "$$.Execution.Input", "sm.$": "$$.StateMachine.Name", "state.$": "$$.State.Name",
                       "entered.$": "$$.State.EnteredTime", "retries.$": "$$.State.RetryCount",
                       "start.$": "$$.Execution.StartTime", "role.$": "$$.Execution.RoleArn"}}}});
    let outcome = run_with(&definition, json!({"role": "r1"}), &mut |t| {
        Ok(t.input.clone())
    });
    let request = &outcome.tasks[0];
    assert_eq!(request.kind, TaskKind::Service);
    assert_eq!(request.credentials, Some(json!({"RoleArn": "r1"})));
    let token = request
        .task_token
        .clone()
        .expect("a token for .waitForTaskToken");
    assert_eq!(
        outcome.output(),
        &json!({"token": token, "exec": "run-1", "id": "arn:aws:states:us-east-1:123456789012:execution:SM:run-1",
                "input": {"role": "r1"}, "sm": "SM", "state": "Ask", "entered": "2024-01-01T00:00:00.000Z",
                "retries": 0, "start": "2024-01-01T00:00:00.000Z", "role": "arn:aws:iam::123456789012:role/R"})
    );
    assert_eq!(outcome.count("TaskScheduled"), 1);
    assert_eq!(outcome.count("TaskSucceeded"), 1);
}

#[test]
fn waits_until_timestamps_and_skips_past_ones() {
    let definition = json!({"StartAt": "Past", "States": {
        "Past": {"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z", "Next": "Future"},
        "Future": {"Type": "Wait", "TimestampPath": "$.at", "Next": "Done"},
        "Done": {"Type": "Succeed"}}});
    let outcome = run(&definition, json!({"at": "2024-01-01T00:01:00Z"}));
    assert_eq!(outcome.elapsed_ms, 60_000);
    let outcome = run(&definition, json!({"at": "not a time"}));
    assert_eq!(outcome.error().0, "States.Runtime");
}

#[test]
fn abort_stops_everything() {
    let machine = parse(
        &json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true}}}),
    );
    let now = Timestamp::from_unix_millis(T0);
    let (mut execution, step) = Execution::start(
        &machine,
        info(json!({})),
        Config::default(),
        now,
        &mut SeededEntropy::new(0),
    );
    let Action::RunTask(request) = &step.actions[0] else {
        panic!()
    };
    let step = execution.abort(Some("Stopped".into()), None, now);
    assert_eq!(
        step.actions,
        vec![Action::Cancel {
            ticket: request.ticket
        }]
    );
    assert_eq!(
        step.events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["TaskStateAborted", "ExecutionAborted"]
    );
    assert!(matches!(
        execution.status(),
        ExecutionStatus::Aborted { .. }
    ));
    assert!(execution.outstanding().is_empty());
    assert!(
        execution.abort(None, None, now).events.is_empty(),
        "idempotent"
    );
}

#[test]
fn history_chains_previous_event_ids() {
    let v3 = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 1, "End": true}}}]}}});
    let outcome = run(&v3, json!({}));
    for e in &outcome.events {
        assert!(e.previous_event_id < e.id, "{e:?}");
    }
    assert_eq!(outcome.events[0].previous_event_id, 0);
    let exited = outcome
        .events
        .iter()
        .find(|e| e.event_type.as_str() == "ParallelStateExited")
        .unwrap();
    assert_eq!(exited.frame.0, 0);
    let json = serde_json::to_value(&outcome.events[1]).unwrap();
    assert_eq!(json["type"], "ParallelStateEntered");
    assert_eq!(json["details"]["name"], "P");
}

#[test]
fn full_jitter_uses_the_injected_entropy() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true,
        "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 10, "MaxAttempts": 1, "JitterStrategy": "FULL"}]}}});
    let machine: StateMachine = parse(&definition);
    let delay = |seed| {
        let now = Timestamp::from_unix_millis(T0);
        let mut entropy = SeededEntropy::new(seed);
        let (mut ex, step) = Execution::start(
            &machine,
            info(json!({})),
            Config::default(),
            now,
            &mut entropy,
        );
        let Action::RunTask(r) = &step.actions[0] else {
            panic!()
        };
        let step = ex
            .task_failed(
                &machine,
                r.ticket,
                StateError::new("E", "x"),
                now,
                &mut entropy,
            )
            .unwrap();
        let Action::StartTimer { until, .. } = step.actions[0] else {
            panic!()
        };
        until.unix_millis() - T0
    };
    assert_eq!(delay(3), delay(3));
    assert!((0..=10_000).contains(&delay(3)));
    assert_ne!(delay(3), delay(4));
}

// ---- limits (security review H7): loops end, each call is bounded ----

fn failure(status: &ExecutionStatus) -> (String, String) {
    match status {
        ExecutionStatus::Failed { error, cause } => {
            (error.clone(), cause.clone().unwrap_or_default())
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Drives an execution the way the executor does: every call's step is
/// "persisted" (a snapshot round trip) before the next one. Returns the
/// calls made, the events in all, and the most events one call produced.
fn drive_slices(machine: &StateMachine, input: Value) -> (Execution, usize, usize, usize) {
    let now = Timestamp::from_unix_millis(T0);
    let mut entropy = SeededEntropy::new(7);
    let (mut exec, mut step) =
        Execution::start(machine, info(input), Config::default(), now, &mut entropy);
    let (mut calls, mut events, mut largest) = (1, step.events.len(), step.events.len());
    while step.actions.contains(&Action::Continue) {
        exec = serde_json::from_str(&serde_json::to_string(&exec).unwrap()).unwrap();
        assert!(
            exec.outstanding().contains(&Action::Continue),
            "resumable after a restart"
        );
        step = exec.resume(machine, now, &mut entropy);
        calls += 1;
        events += step.events.len();
        largest = largest.max(step.events.len());
        assert!(calls < 1000, "the loop never ends");
    }
    (exec, calls, events, largest)
}

#[test]
fn a_self_looping_pass_yields_each_slice_and_fails_at_25000_events() {
    let machine = parse(&json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}));
    let started = Instant::now();
    let (exec, calls, events, largest) = drive_slices(&machine, json!({"n": 1}));
    let (error, cause) = failure(exec.status());
    assert_eq!(error, "States.Runtime");
    assert!(
        cause.contains("maximum number of history events (25000)"),
        "{cause}"
    );
    assert!((24_900..=25_000).contains(&events), "{events} events");
    assert!(
        largest <= 2 * nimbus_workflow::limits::TRANSITIONS_PER_CALL + 8,
        "one call emitted {largest} events"
    );
    assert!(calls >= 12, "{calls} calls: the work was sliced");
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_choice_loop_fails_at_the_history_quota() {
    let machine = parse(&json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "C"}],
              "Default": "D"},
        "D": {"Type": "Succeed"}}}));
    let (exec, _, events, _) = drive_slices(&machine, json!({"x": 1}));
    assert_eq!(failure(exec.status()).0, "States.Runtime");
    assert!(events <= 25_000);
}

#[test]
fn a_doubling_format_loop_fails_at_the_payload_quota() {
    let machine = parse(&json!({"StartAt": "A", "States": {"A": {
        "Type": "Pass", "Parameters": {"s.$": "States.Format('{}{}', $.s, $.s)"}, "Next": "A"}}}));
    let (exec, _, events, _) = drive_slices(&machine, json!({"s": "x"}));
    let (error, cause) = failure(exec.status());
    assert_eq!(error, "States.DataLimitExceeded");
    assert!(cause.contains("'A'") && cause.contains("262144"), "{cause}");
    // 2^18 characters is the first output past 256 KiB: 18 passes.
    assert!(events < 60, "{events} events");
}

#[test]
fn an_oversized_task_result_fails_even_under_a_catch_all() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": lambda("Big"), "End": true,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"}}});
    let outcome = run_with(&definition, json!({}), &mut |_| {
        Ok(json!("y".repeat(300 * 1024)))
    });
    assert_eq!(failure(&outcome.status).0, "States.DataLimitExceeded");
    // Inside a Map, the iteration's failure fails the execution too.
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true, "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": lambda("Big"), "End": true}}}}}});
    let outcome = run_with(&definition, json!({"items": [1, 2]}), &mut |_| {
        Ok(json!("y".repeat(300 * 1024)))
    });
    assert_eq!(failure(&outcome.status).0, "States.DataLimitExceeded");
}

#[test]
fn format_stops_building_past_the_payload_quota() {
    let placeholders = "{}".repeat(100);
    let args = vec!["$.s"; 100].join(", ");
    let definition = json!({"StartAt": "A", "States": {"A": {
        "Type": "Pass", "Parameters": {"s.$": format!("States.Format('{placeholders}', {args})")},
        "End": true}}});
    let outcome = run(&definition, json!({"s": "z".repeat(100 * 1024)}));
    let (error, cause) = failure(&outcome.status);
    assert_eq!(error, "States.IntrinsicFailure");
    assert!(cause.contains("262144"), "{cause}");
}

#[test]
fn a_result_path_loop_nesting_its_input_fails_before_serde_cannot_read_it() {
    let machine = parse(&json!({"StartAt": "A", "States": {"A": {
        "Type": "Pass", "ResultPath": "$.x", "Next": "A"}}}));
    let (exec, _, events, _) = drive_slices(&machine, json!({}));
    let (error, cause) = failure(exec.status());
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("nested deeper than 100"), "{cause}");
    assert!(events < 300, "{events} events");
}

#[test]
fn work_left_by_a_yield_survives_a_task_outcome_arriving_first() {
    let big_map = |pass: &str| {
        json!({"Type": "Map", "ItemsPath": "$.items", "End": true, "ResultPath": "$.m",
               "ItemProcessor": {"StartAt": pass, "States": {pass: {"Type": "Pass", "End": true}}}})
    };
    let machine = parse(&json!({"StartAt": "Par", "States": {"Par": {
        "Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "T", "States": {
                "T": {"Type": "Task", "Resource": lambda("T"), "ResultPath": "$.t", "Next": "M1"},
                "M1": big_map("P1")}},
            {"StartAt": "M2", "States": {"M2": big_map("P2")}}]}}}));
    let items: Vec<Value> = (0..1500).map(Value::from).collect();
    let now = Timestamp::from_unix_millis(T0);
    let mut entropy = SeededEntropy::new(3);
    let (mut exec, step) = Execution::start(
        &machine,
        info(json!({"items": items})),
        Config::default(),
        now,
        &mut entropy,
    );
    let task = step
        .actions
        .iter()
        .find_map(|a| match a {
            Action::RunTask(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the task was issued");
    assert!(step.actions.contains(&Action::Continue), "the Map yielded");
    // The task answers before the Continue is handled, and its own Map yields too.
    let step = exec
        .task_succeeded(&machine, task.ticket, json!("t"), now, &mut entropy)
        .unwrap();
    assert!(step.actions.contains(&Action::Continue));
    for _ in 0..100 {
        if !exec.is_running() {
            break;
        }
        let next = exec.resume(&machine, now, &mut entropy);
        if next.events.is_empty() && next.actions.is_empty() {
            break; // nothing left: stuck if still running
        }
    }
    let ExecutionStatus::Succeeded { output } = exec.status() else {
        panic!("{:?}", exec.status())
    };
    assert_eq!(output[0]["t"], json!("t"));
    assert_eq!(output[0]["m"].as_array().unwrap().len(), 1500);
    assert_eq!(output[1]["m"].as_array().unwrap().len(), 1500);
}
