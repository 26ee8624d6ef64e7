//! `WorkflowStore`: state machines by ARN, executions with their histories,
//! steps saved atomically, listings newest first with a cursor, and the
//! running executions a restart resumes.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    ExecutionQuery, ExecutionRecord, ExecutionUpdate, PgWorkflowStore, SqliteWorkflowStore,
    StateMachineRecord, StoreError, StoredEvent, WorkflowStore,
};

use crate::helpers::{fresh_pg, race};

async fn open_sqlite() -> (Arc<dyn WorkflowStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteWorkflowStore::open(&dir.path().join("workflows.db")).unwrap();
    (Arc::new(store), dir)
}

async fn open_pg() -> (Arc<dyn WorkflowStore>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgWorkflowStore::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    a_machine_reads_back_whole,
    create_machine_refuses_a_taken_arn,
    update_machine_changes_the_definition_only,
    update_machine_needs_an_existing_machine,
    machines_are_listed_by_name,
    delete_machine_keeps_its_executions,
    an_execution_reads_back_whole_with_its_first_events,
    create_execution_refuses_a_taken_arn,
    a_step_updates_the_execution_and_appends_events,
    a_step_needs_an_existing_execution,
    saving_an_event_id_again_replaces_it,
    executions_are_listed_newest_first_with_cursors,
    listings_filter_by_machine_and_status,
    running_executions_are_whole_and_oldest_first,
    history_pages_forward_and_backward,
    history_needs_an_existing_execution,
    histories_belong_to_their_execution,
    concurrent_creates_of_one_execution_one_wins,
    concurrent_creates_of_one_machine_one_wins,
    concurrent_steps_of_many_executions_all_land,
));

/// Two nodes on the same data: two stores on one workflow database.
type TwoNodes = (Arc<dyn WorkflowStore>, Arc<dyn WorkflowStore>);

async fn two_sqlite() -> (TwoNodes, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let open = || -> Arc<dyn WorkflowStore> { Arc::new(SqliteWorkflowStore::open(&path).unwrap()) };
    ((open(), open()), dir)
}

async fn two_pg() -> (TwoNodes, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let a = PgWorkflowStore::open(&pg).await.unwrap();
    let other = nimbus_store::postgres::Pg::connect(&db.url).await.unwrap();
    let b = PgWorkflowStore::open(&other).await.unwrap();
    ((Arc::new(a), Arc::new(b)), db)
}

conformance!([
    sqlite_two_nodes = two_sqlite(),
    postgres_two_nodes = two_pg()
](
    an_execution_started_on_one_node_goes_on_on_another,
    concurrent_creates_on_two_nodes_one_wins,
));

const SM: &str = "arn:aws:states:us-east-1:000000000000:stateMachine:";
const EX: &str = "arn:aws:states:us-east-1:000000000000:execution:";

fn machine(name: &str) -> StateMachineRecord {
    StateMachineRecord {
        arn: format!("{SM}{name}"),
        name: name.into(),
        definition: r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#.into(),
        role_arn: "arn:aws:iam::000000000000:role/r".into(),
        machine_type: "STANDARD".into(),
        created_ms: 1_000,
        updated_ms: 1_000,
        revision: "rev-1".into(),
    }
}

fn execution(machine: &str, name: &str) -> ExecutionRecord {
    ExecutionRecord {
        arn: format!("{EX}{machine}:{name}"),
        name: name.into(),
        state_machine_arn: format!("{SM}{machine}"),
        status: "RUNNING".into(),
        input: r#"{"n":1,"text":"ünïcode ✓"}"#.into(),
        output: None,
        error: None,
        cause: None,
        start_ms: 2_000,
        stop_ms: None,
        definition: r#"{"StartAt":"P","States":{}}"#.into(),
        snapshot: Some(r#"{"state":"P","tickets":[1,2]}"#.into()),
    }
}

fn event(id: u64) -> StoredEvent {
    StoredEvent {
        id,
        previous_id: id.saturating_sub(1),
        ts_ms: 2_000 + id as i64,
        event_type: if id == 1 {
            "ExecutionStarted"
        } else {
            "PassStateEntered"
        }
        .into(),
        details: format!(r#"{{"n":{id}}}"#),
    }
}

fn events(ids: std::ops::RangeInclusive<u64>) -> Vec<StoredEvent> {
    ids.map(event).collect()
}

fn finished(output: &str) -> ExecutionUpdate {
    ExecutionUpdate {
        status: "SUCCEEDED".into(),
        output: Some(output.into()),
        error: None,
        cause: None,
        stop_ms: Some(3_000),
        snapshot: None,
    }
}

/// The whole history of an execution, oldest first.
async fn all_events(store: &dyn WorkflowStore, arn: &str) -> Vec<StoredEvent> {
    store.history(arn, None, 1_000, false).await.unwrap()
}

fn event_ids(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

fn names(rows: &[(i64, ExecutionRecord)]) -> Vec<String> {
    rows.iter().map(|(_, e)| e.name.clone()).collect()
}

async fn a_machine_reads_back_whole(store: Arc<dyn WorkflowStore>) {
    let arn = format!("{SM}m");
    assert!(store.get_machine(&arn).await.unwrap().is_none());
    let mut m = machine("m");
    m.machine_type = "EXPRESS".into();
    // The definition is kept verbatim (whitespace, key order).
    m.definition = "{\n  \"StartAt\": \"P\",\n  \"Comment\": \"ü\" }".into();
    store.create_machine(&m).await.unwrap();
    assert_eq!(store.get_machine(&arn).await.unwrap(), Some(m));
}

async fn create_machine_refuses_a_taken_arn(store: Arc<dyn WorkflowStore>) {
    store.create_machine(&machine("m")).await.unwrap();
    let mut other = machine("m");
    other.definition = "{}".into();
    other.revision = "rev-2".into();
    let again = store.create_machine(&other).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.get_machine(&machine("m").arn).await.unwrap(),
        Some(machine("m")),
        "the refused create changed nothing"
    );
}

/// An update replaces the definition, role, update time and revision; the
/// name, type and creation time of a machine never change.
async fn update_machine_changes_the_definition_only(store: Arc<dyn WorkflowStore>) {
    store.create_machine(&machine("m")).await.unwrap();
    let mut update = machine("m");
    update.definition = r#"{"StartAt":"Q","States":{}}"#.into();
    update.role_arn = "arn:aws:iam::000000000000:role/other".into();
    update.updated_ms = 5_000;
    update.revision = "rev-2".into();
    let mut ignored = update.clone();
    ignored.name = "renamed".into();
    ignored.machine_type = "EXPRESS".into();
    ignored.created_ms = 4_000;
    store.update_machine(&ignored).await.unwrap();
    assert_eq!(store.get_machine(&update.arn).await.unwrap(), Some(update));
}

async fn update_machine_needs_an_existing_machine(store: Arc<dyn WorkflowStore>) {
    let missing = store.update_machine(&machine("m")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(
        store
            .get_machine(&machine("m").arn)
            .await
            .unwrap()
            .is_none()
    );
}

async fn machines_are_listed_by_name(store: Arc<dyn WorkflowStore>) {
    assert!(store.list_machines().await.unwrap().is_empty());
    for n in ["m", "B", "a", "z"] {
        store.create_machine(&machine(n)).await.unwrap();
    }
    let listed = store.list_machines().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["B", "a", "m", "z"]);
    assert_eq!(listed[0], machine("B"), "whole records");
}

async fn delete_machine_keeps_its_executions(store: Arc<dyn WorkflowStore>) {
    assert!(!store.delete_machine(&machine("m").arn).await.unwrap());
    store.create_machine(&machine("m")).await.unwrap();
    store.create_machine(&machine("n")).await.unwrap();
    let e = execution("m", "e1");
    store.create_execution(&e, events(1..=2)).await.unwrap();
    assert!(store.delete_machine(&machine("m").arn).await.unwrap());
    assert!(!store.delete_machine(&machine("m").arn).await.unwrap());
    assert!(
        store
            .get_machine(&machine("m").arn)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_machines().await.unwrap(), vec![machine("n")]);
    // Executions outlive their machine, as on Step Functions.
    assert_eq!(store.get_execution(&e.arn).await.unwrap(), Some(e.clone()));
    assert_eq!(event_ids(&all_events(&*store, &e.arn).await), [1, 2]);
    let listed = store
        .list_executions(ExecutionQuery {
            state_machine_arn: Some(machine("m").arn),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&listed), ["e1"]);
    // The ARN can be used again.
    store.create_machine(&machine("m")).await.unwrap();
}

async fn an_execution_reads_back_whole_with_its_first_events(store: Arc<dyn WorkflowStore>) {
    let e = execution("m", "e1");
    assert!(store.get_execution(&e.arn).await.unwrap().is_none());
    store.create_execution(&e, events(1..=3)).await.unwrap();
    assert_eq!(store.get_execution(&e.arn).await.unwrap(), Some(e.clone()));
    assert_eq!(
        all_events(&*store, &e.arn).await,
        events(1..=3),
        "events read back whole"
    );
    // An express execution is written once, finished, with its whole history.
    let mut express = execution("m", "x1");
    express.status = "FAILED".into();
    express.error = Some("States.TaskFailed".into());
    express.cause = Some("boom".into());
    express.stop_ms = Some(2_500);
    express.snapshot = None;
    store
        .create_execution(&express, events(1..=5))
        .await
        .unwrap();
    assert_eq!(
        store.get_execution(&express.arn).await.unwrap(),
        Some(express)
    );
    // Without events too.
    let bare = execution("m", "bare");
    store.create_execution(&bare, Vec::new()).await.unwrap();
    assert!(all_events(&*store, &bare.arn).await.is_empty());
}

/// StartExecution with a name in use must not touch the first execution:
/// neither its record nor its history.
async fn create_execution_refuses_a_taken_arn(store: Arc<dyn WorkflowStore>) {
    let e = execution("m", "e1");
    store.create_execution(&e, events(1..=2)).await.unwrap();
    let mut other = execution("m", "e1");
    other.input = r#"{"n":2}"#.into();
    let mut other_events = events(1..=4);
    other_events[0].details = r#"{"other":true}"#.into();
    let again = store.create_execution(&other, other_events).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.get_execution(&e.arn).await.unwrap(), Some(e.clone()));
    assert_eq!(all_events(&*store, &e.arn).await, events(1..=2));
}

async fn a_step_updates_the_execution_and_appends_events(store: Arc<dyn WorkflowStore>) {
    let e = execution("m", "e1");
    store.create_execution(&e, events(1..=2)).await.unwrap();
    // A step that keeps running: a new snapshot.
    let running = ExecutionUpdate {
        status: "RUNNING".into(),
        output: None,
        error: None,
        cause: None,
        stop_ms: None,
        snapshot: Some(r#"{"state":"Q"}"#.into()),
    };
    store
        .save_step(&e.arn, running, events(3..=4))
        .await
        .unwrap();
    let got = store.get_execution(&e.arn).await.unwrap().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(r#"{"state":"Q"}"#));
    assert_eq!(got.status, "RUNNING");
    // The last step: finished, the snapshot dropped.
    store
        .save_step(&e.arn, finished(r#"{"done":true}"#), events(5..=6))
        .await
        .unwrap();
    let expected = ExecutionRecord {
        status: "SUCCEEDED".into(),
        output: Some(r#"{"done":true}"#.into()),
        stop_ms: Some(3_000),
        snapshot: None,
        ..e.clone()
    };
    assert_eq!(
        store.get_execution(&e.arn).await.unwrap(),
        Some(expected),
        "name, machine, input, start and definition never change"
    );
    assert_eq!(all_events(&*store, &e.arn).await, events(1..=6));
    // A step without events only updates.
    let failed = ExecutionUpdate {
        status: "FAILED".into(),
        output: None,
        error: Some("E".into()),
        cause: Some("C".into()),
        stop_ms: Some(4_000),
        snapshot: None,
    };
    store.save_step(&e.arn, failed, Vec::new()).await.unwrap();
    let got = store.get_execution(&e.arn).await.unwrap().unwrap();
    assert_eq!(
        (
            got.status.as_str(),
            got.output,
            got.error.as_deref(),
            got.cause.as_deref()
        ),
        ("FAILED", None, Some("E"), Some("C")),
        "every field of the update is written, None included"
    );
    assert_eq!(all_events(&*store, &e.arn).await.len(), 6);
}

async fn a_step_needs_an_existing_execution(store: Arc<dyn WorkflowStore>) {
    let arn = execution("m", "ghost").arn;
    let missing = store.save_step(&arn, finished("1"), events(1..=2)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(store.get_execution(&arn).await.unwrap().is_none());
    // Its events were not kept for a later execution of that name.
    store
        .create_execution(&execution("m", "ghost"), Vec::new())
        .await
        .unwrap();
    assert!(all_events(&*store, &arn).await.is_empty());
}

/// Event ids are unique per execution: an id saved again replaces the
/// stored event (a step re-saved after a retry is not duplicated).
async fn saving_an_event_id_again_replaces_it(store: Arc<dyn WorkflowStore>) {
    let e = execution("m", "e1");
    store.create_execution(&e, events(1..=2)).await.unwrap();
    let mut again = event(2);
    again.details = r#"{"again":true}"#.into();
    store
        .save_step(&e.arn, finished("1"), vec![again.clone(), event(3)])
        .await
        .unwrap();
    assert_eq!(
        all_events(&*store, &e.arn).await,
        vec![event(1), again, event(3)]
    );
}

async fn executions_are_listed_newest_first_with_cursors(store: Arc<dyn WorkflowStore>) {
    let q = |before_seq, limit| ExecutionQuery {
        before_seq,
        limit,
        ..Default::default()
    };
    assert!(store.list_executions(q(None, 10)).await.unwrap().is_empty());
    for i in 0..25 {
        let mut e = execution("m", &format!("e{i:02}"));
        // Start order decides, not the start time written in the record.
        e.start_ms = 10_000 - i;
        store.create_execution(&e, Vec::new()).await.unwrap();
    }
    let first = store.list_executions(q(None, 3)).await.unwrap();
    assert_eq!(names(&first), ["e24", "e23", "e22"]);
    assert!(store.list_executions(q(None, 0)).await.unwrap().is_empty());
    assert!(first.windows(2).all(|w| w[0].0 > w[1].0), "cursors fall");
    // Paging with the last cursor of each page sees every execution once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_executions(q(cursor, 10)).await.unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        cursor = Some(last.0);
        seen.extend(names(&page));
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("e{i:02}")).collect();
    assert_eq!(seen, expected);
    // A listed record carries what a listing shows (the definition and
    // snapshot may be left out).
    let (_, listed) = &first[0];
    let stored = store.get_execution(&listed.arn).await.unwrap().unwrap();
    assert_eq!(
        (
            &listed.arn,
            &listed.state_machine_arn,
            &listed.status,
            &listed.input,
            listed.start_ms
        ),
        (
            &stored.arn,
            &stored.state_machine_arn,
            &stored.status,
            &stored.input,
            stored.start_ms
        )
    );
}

async fn listings_filter_by_machine_and_status(store: Arc<dyn WorkflowStore>) {
    for (m, n) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("a", "a3"),
        ("b", "b2"),
    ] {
        store
            .create_execution(&execution(m, n), Vec::new())
            .await
            .unwrap();
    }
    store
        .save_step(&execution("a", "a2").arn, finished("1"), Vec::new())
        .await
        .unwrap();
    store
        .save_step(&execution("b", "b1").arn, finished("1"), Vec::new())
        .await
        .unwrap();
    let list = |machine: Option<&str>, status: Option<&str>| {
        let store = store.clone();
        let q = ExecutionQuery {
            state_machine_arn: machine.map(|m| format!("{SM}{m}")),
            status: status.map(Into::into),
            before_seq: None,
            limit: 100,
        };
        async move { names(&store.list_executions(q).await.unwrap()) }
    };
    assert_eq!(list(Some("a"), None).await, ["a3", "a2", "a1"]);
    assert_eq!(list(None, Some("SUCCEEDED")).await, ["a2", "b1"]);
    assert_eq!(list(Some("a"), Some("RUNNING")).await, ["a3", "a1"]);
    assert_eq!(list(None, Some("ABORTED")).await, Vec::<String>::new());
    assert!(list(Some("zzz"), None).await.is_empty());
    // The cursor combines with the filters.
    let rows = store
        .list_executions(ExecutionQuery {
            state_machine_arn: Some(format!("{SM}a")),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let next = store
        .list_executions(ExecutionQuery {
            state_machine_arn: Some(format!("{SM}a")),
            before_seq: Some(rows[0].0),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&next), ["a2", "a1"]);
}

/// What a restart resumes: every RUNNING execution, whole (definition and
/// snapshot are what it resumes from), oldest first.
async fn running_executions_are_whole_and_oldest_first(store: Arc<dyn WorkflowStore>) {
    assert!(store.running_executions().await.unwrap().is_empty());
    let mut running = Vec::new();
    for n in ["r1", "done", "r2", "r3"] {
        let mut e = execution("m", n);
        e.snapshot = Some(format!(r#"{{"of":"{n}"}}"#));
        store.create_execution(&e, events(1..=1)).await.unwrap();
        if n != "done" {
            running.push(e);
        }
    }
    store
        .save_step(&execution("m", "done").arn, finished("1"), Vec::new())
        .await
        .unwrap();
    let mut express = execution("m", "express");
    express.status = "SUCCEEDED".into();
    express.snapshot = None;
    store.create_execution(&express, Vec::new()).await.unwrap();
    assert_eq!(store.running_executions().await.unwrap(), running);
}

async fn history_pages_forward_and_backward(store: Arc<dyn WorkflowStore>) {
    let e = execution("m", "e1");
    store.create_execution(&e, events(1..=3)).await.unwrap();
    store
        .save_step(&e.arn, finished("1"), events(4..=10))
        .await
        .unwrap();
    let page = |after, limit, reverse| {
        let (store, arn) = (store.clone(), e.arn.clone());
        async move { event_ids(&store.history(&arn, after, limit, reverse).await.unwrap()) }
    };
    assert_eq!(page(None, 4, false).await, [1, 2, 3, 4]);
    assert_eq!(page(Some(3), 4, false).await, [4, 5, 6, 7]);
    assert_eq!(page(Some(8), 4, false).await, [9, 10]);
    assert_eq!(page(Some(10), 4, false).await, Vec::<u64>::new());
    assert_eq!(page(None, 3, true).await, [10, 9, 8]);
    assert_eq!(page(Some(8), 3, true).await, [7, 6, 5]);
    assert_eq!(page(Some(2), 3, true).await, [1]);
    assert_eq!(page(Some(1), 3, true).await, Vec::<u64>::new());
    assert_eq!(
        page(None, 0, false).await,
        Vec::<u64>::new(),
        "limit 0: none"
    );
    // Paging with the last id of each page sees every event once.
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let got = page(after, 3, reverse).await;
            let Some(last) = got.last() else { break };
            after = Some(*last);
            seen.extend(got);
        }
        let mut expected: Vec<u64> = (1..=10).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected, "reverse: {reverse}");
    }
}

async fn history_needs_an_existing_execution(store: Arc<dyn WorkflowStore>) {
    let missing = store
        .history(&execution("m", "ghost").arn, None, 10, false)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

async fn histories_belong_to_their_execution(store: Arc<dyn WorkflowStore>) {
    let (a, b) = (execution("m", "a"), execution("m", "b"));
    store.create_execution(&a, events(1..=3)).await.unwrap();
    store.create_execution(&b, events(1..=1)).await.unwrap();
    store
        .save_step(&b.arn, finished("1"), events(2..=2))
        .await
        .unwrap();
    assert_eq!(event_ids(&all_events(&*store, &a.arn).await), [1, 2, 3]);
    assert_eq!(event_ids(&all_events(&*store, &b.arn).await), [1, 2]);
}

async fn concurrent_creates_of_one_execution_one_wins(store: Arc<dyn WorkflowStore>) {
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            let mut e = execution("m", "e1");
            e.input = format!(r#"{{"attempt":{i}}}"#);
            let mut first = event(1);
            first.details = format!(r#"{{"attempt":{i}}}"#);
            store.create_execution(&e, vec![first]).await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one create wins: {won:?}");
    let arn = execution("m", "e1").arn;
    let stored = store.get_execution(&arn).await.unwrap().unwrap();
    let winner = format!(r#"{{"attempt":{}}}"#, won[0]);
    assert_eq!(stored.input, winner);
    let history = all_events(&*store, &arn).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].details, winner, "the history is the winner's");
}

async fn concurrent_creates_of_one_machine_one_wins(store: Arc<dyn WorkflowStore>) {
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            let mut m = machine("m");
            m.revision = format!("rev-{i}");
            store.create_machine(&m).await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one create wins: {won:?}");
    let stored = store.get_machine(&machine("m").arn).await.unwrap().unwrap();
    assert_eq!(stored.revision, format!("rev-{}", won[0]));
}

async fn concurrent_steps_of_many_executions_all_land(store: Arc<dyn WorkflowStore>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let e = execution("m", &format!("e{i}"));
                store.create_execution(&e, events(1..=1)).await.unwrap();
                for step in 2..=10 {
                    let update = ExecutionUpdate {
                        snapshot: Some(format!("{step}")),
                        ..finished("x")
                    };
                    store
                        .save_step(&e.arn, update, events(step..=step))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..8 {
        let arn = execution("m", &format!("e{i}")).arn;
        let got = store.get_execution(&arn).await.unwrap().unwrap();
        assert_eq!(got.snapshot.as_deref(), Some("10"), "the last step wins");
        assert_eq!(
            event_ids(&all_events(&*store, &arn).await),
            (1..=10).collect::<Vec<_>>()
        );
    }
}

/// What a node restarting (or taking over) relies on: the machines, the
/// running executions and their histories another node wrote.
async fn an_execution_started_on_one_node_goes_on_on_another((a, b): TwoNodes) {
    a.create_machine(&machine("m")).await.unwrap();
    assert_eq!(b.list_machines().await.unwrap(), vec![machine("m")]);
    let e = execution("m", "e1");
    a.create_execution(&e, events(1..=2)).await.unwrap();
    assert_eq!(b.running_executions().await.unwrap(), vec![e.clone()]);
    b.save_step(&e.arn, finished("1"), events(3..=4))
        .await
        .unwrap();
    assert_eq!(event_ids(&all_events(&*a, &e.arn).await), [1, 2, 3, 4]);
    assert!(a.running_executions().await.unwrap().is_empty());
    let listed = a
        .list_executions(ExecutionQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&listed), ["e1"]);
    assert!(b.delete_machine(&machine("m").arn).await.unwrap());
    assert!(a.get_machine(&machine("m").arn).await.unwrap().is_none());
}

/// StartExecution of one name reaching two nodes at once starts it once.
async fn concurrent_creates_on_two_nodes_one_wins((a, b): TwoNodes) {
    let won = race(8, |i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let mut e = execution("m", "e1");
            e.input = format!(r#"{{"attempt":{i}}}"#);
            store.create_execution(&e, events(1..=1)).await
        }
    })
    .await;
    assert_eq!(won.len(), 1, "exactly one create wins: {won:?}");
    let stored = b
        .get_execution(&execution("m", "e1").arn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.input, format!(r#"{{"attempt":{}}}"#, won[0]));
}
