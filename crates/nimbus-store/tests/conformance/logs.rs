//! `LogStore`: invocation log lines (append in batches, read per function
//! with a growing cursor, filters, limits), metering records, and retention
//! by age and by byte quotas.

use std::sync::Arc;

use nimbus_store::postgres::scratch::ScratchDatabase;
use nimbus_store::{
    LogQuery, LogRecord, LogStore, PgLogStore, PruneReport, RetentionPolicy, SqliteLogStore,
    StoredLog, UsageRecord, charged_bytes,
};

use crate::helpers::fresh_pg;

async fn open_sqlite() -> (Arc<dyn LogStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let open = || nimbus_store::open_log_database(&path).unwrap();
    (Arc::new(SqliteLogStore::new(open(), open())), dir)
}

async fn open_pg() -> (Arc<dyn LogStore>, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    (Arc::new(PgLogStore::open(&pg).await.unwrap()), db)
}

conformance!([sqlite = open_sqlite(), postgres = open_pg()](
    lines_read_back_whole_in_append_order,
    an_empty_append_stores_nothing,
    a_query_sees_one_function,
    without_a_cursor_the_newest_lines_come_oldest_first,
    a_cursor_pages_through_every_line_once,
    a_cursor_sees_lines_appended_later,
    ids_never_go_back_after_pruning,
    a_zero_limit_means_a_thousand_and_limits_are_capped,
    since_keeps_lines_at_or_after_it,
    a_request_id_selects_its_lines,
    platform_rows_read_back_as_separate_lines,
    prune_deletes_what_is_older_than_the_cutoff,
    prune_with_nothing_to_do_reports_nothing,
    a_function_over_its_quota_loses_its_own_oldest_lines,
    the_total_quota_is_taken_from_the_largest_first,
    usage_reads_back_whole_by_time,
    usage_is_filtered_by_function_and_time,
    usage_records_are_capped_oldest_first,
    concurrent_appends_are_all_stored_in_order,
    a_line_holding_a_nul_byte_is_kept,
));

/// Two nodes on the same data: two stores on one log database.
type TwoNodes = (Arc<dyn LogStore>, Arc<dyn LogStore>);

async fn two_sqlite() -> (TwoNodes, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let open = || -> Arc<dyn LogStore> {
        let db = || nimbus_store::open_log_database(&path).unwrap();
        Arc::new(SqliteLogStore::new(db(), db()))
    };
    ((open(), open()), dir)
}

async fn two_pg() -> (TwoNodes, ScratchDatabase) {
    let (pg, db) = fresh_pg().await;
    let a = PgLogStore::open(&pg).await.unwrap();
    let other = nimbus_store::postgres::Pg::connect(&db.url).await.unwrap();
    let b = PgLogStore::open(&other).await.unwrap();
    ((Arc::new(a), Arc::new(b)), db)
}

conformance!([
    sqlite_two_nodes = two_sqlite(),
    postgres_two_nodes = two_pg()
](
    what_one_node_writes_another_reads,
    a_follower_misses_no_line_of_two_nodes_appending,
));

fn line(f: &str, ts: i64, msg: &str) -> LogRecord {
    LogRecord {
        function: f.into(),
        ts_ms: ts,
        instance: "i-1".into(),
        request_id: Some("req-1".into()),
        message: msg.into(),
    }
}

fn numbered(f: &str, from: i64, n: i64) -> Vec<LogRecord> {
    (from..from + n)
        .map(|i| line(f, 1_000 + i, &format!("m{i}")))
        .collect()
}

/// Lines of about a kilobyte, numbered so their order can be checked.
fn kb_lines(f: &str, from: i64, n: i64) -> Vec<LogRecord> {
    (from..from + n)
        .map(|i| line(f, i, &format!("{i:06}{}", "x".repeat(1018))))
        .collect()
}

fn query(f: &str) -> LogQuery {
    LogQuery {
        function: f.into(),
        ..Default::default()
    }
}

/// Every line of `f`, oldest first (a cursor from the start).
async fn all(store: &dyn LogStore, f: &str) -> Vec<StoredLog> {
    store
        .query(LogQuery {
            after_id: Some(0),
            limit: 10_000,
            ..query(f)
        })
        .await
        .unwrap()
}

/// The lines of `f` after a cursor (as many as a query gives by default).
async fn after(store: &dyn LogStore, f: &str, cursor: i64) -> Vec<StoredLog> {
    store
        .query(LogQuery {
            after_id: Some(cursor),
            ..query(f)
        })
        .await
        .unwrap()
}

async fn messages(store: &dyn LogStore, f: &str) -> Vec<String> {
    all(store, f).await.into_iter().map(|l| l.message).collect()
}

fn texts(lines: &[StoredLog]) -> Vec<&str> {
    lines.iter().map(|l| l.message.as_str()).collect()
}

fn policy(older_than_ms: i64, function_bytes: u64, total_bytes: u64) -> RetentionPolicy {
    RetentionPolicy {
        older_than_ms,
        function_bytes,
        total_bytes,
        usage_records: u64::MAX,
    }
}

fn usage(f: &str, ts: i64, request: &str) -> UsageRecord {
    UsageRecord {
        ts_ms: ts,
        function: f.into(),
        version: "$LATEST".into(),
        request_id: request.into(),
        duration_ms: 12.5,
        billed_ms: 13,
        memory_mb: 256,
        cold: false,
        init_ms: None,
        outcome: "success".into(),
    }
}

async fn lines_read_back_whole_in_append_order(store: Arc<dyn LogStore>) {
    let first = vec![
        line("f", 5, "hello ✓ ünïcode"),
        LogRecord {
            request_id: None,
            instance: "i-2".into(),
            ..line("f", 3, "no request, an earlier time")
        },
    ];
    store.append(first).await.unwrap();
    store
        .append(vec![line("f", 4, ""), line("f", 9, "last")])
        .await
        .unwrap();
    let got = all(&*store, "f").await;
    assert_eq!(
        texts(&got),
        ["hello ✓ ünïcode", "no request, an earlier time", "", "last"],
        "append order, not time order"
    );
    assert!(
        got.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow in append order: {got:?}"
    );
    assert!(got[0].id > 0, "cursor 0 is before every line");
    assert_eq!(
        (
            got[0].ts_ms,
            got[0].instance.as_str(),
            got[0].request_id.as_deref()
        ),
        (5, "i-1", Some("req-1"))
    );
    assert_eq!(
        (
            got[1].ts_ms,
            got[1].instance.as_str(),
            got[1].request_id.as_deref()
        ),
        (3, "i-2", None)
    );
    // Without a cursor: the same lines, the same order.
    assert_eq!(store.query(query("f")).await.unwrap(), got);
}

async fn an_empty_append_stores_nothing(store: Arc<dyn LogStore>) {
    store.append(Vec::new()).await.unwrap();
    store.append_usage(Vec::new()).await.unwrap();
    assert!(store.query(query("f")).await.unwrap().is_empty());
    assert!(store.usage(None, 0).await.unwrap().is_empty());
}

async fn a_query_sees_one_function(store: Arc<dyn LogStore>) {
    let mut batch = numbered("f", 0, 3);
    batch.insert(1, line("g", 1_000, "of g"));
    batch.push(line("F", 1_000, "of F"));
    store.append(batch).await.unwrap();
    assert_eq!(messages(&*store, "f").await, ["m0", "m1", "m2"]);
    assert_eq!(messages(&*store, "g").await, ["of g"]);
    assert_eq!(messages(&*store, "F").await, ["of F"], "case-sensitive");
    assert!(store.query(query("h")).await.unwrap().is_empty());
}

async fn without_a_cursor_the_newest_lines_come_oldest_first(store: Arc<dyn LogStore>) {
    store.append(numbered("f", 0, 10)).await.unwrap();
    store.append(numbered("g", 0, 10)).await.unwrap();
    let last3 = store
        .query(LogQuery {
            limit: 3,
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(texts(&last3), ["m7", "m8", "m9"]);
    // With a cursor, the oldest after it.
    let first3 = store
        .query(LogQuery {
            limit: 3,
            after_id: Some(0),
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(texts(&first3), ["m0", "m1", "m2"]);
}

async fn a_cursor_pages_through_every_line_once(store: Arc<dyn LogStore>) {
    for i in 0..5 {
        store.append(numbered("f", i * 10, 10)).await.unwrap();
        store.append(numbered("g", i * 10, 3)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store
            .query(LogQuery {
                limit: 7,
                after_id: Some(cursor),
                ..query("f")
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|l| l.message));
    }
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
}

/// `nimbus logs --follow`: the last line's id is the cursor of the next poll.
async fn a_cursor_sees_lines_appended_later(store: Arc<dyn LogStore>) {
    store.append(numbered("f", 0, 3)).await.unwrap();
    let first = store.query(query("f")).await.unwrap();
    let cursor = first.last().unwrap().id;
    let none = after(&*store, "f", cursor).await;
    assert!(none.is_empty());
    store.append(numbered("g", 0, 2)).await.unwrap();
    store.append(numbered("f", 3, 2)).await.unwrap();
    let next = after(&*store, "f", cursor).await;
    assert_eq!(texts(&next), ["m3", "m4"]);
}

/// A follower's cursor stays valid across retention: an id is never given
/// twice, even when every line (the newest included) was pruned.
async fn ids_never_go_back_after_pruning(store: Arc<dyn LogStore>) {
    store.append(numbered("f", 0, 5)).await.unwrap();
    let cursor = store.query(query("f")).await.unwrap().last().unwrap().id;
    store
        .prune(policy(i64::MAX, u64::MAX, u64::MAX))
        .await
        .unwrap();
    assert!(store.query(query("f")).await.unwrap().is_empty());
    store.append(numbered("f", 5, 2)).await.unwrap();
    let next = after(&*store, "f", cursor).await;
    assert_eq!(texts(&next), ["m5", "m6"]);
}

async fn a_zero_limit_means_a_thousand_and_limits_are_capped(store: Arc<dyn LogStore>) {
    let max = nimbus_core::limits::MAX_LOG_QUERY_LINES as i64;
    store.append(numbered("f", 0, max + 50)).await.unwrap();
    let default = store.query(query("f")).await.unwrap();
    assert_eq!(default.len(), 1000);
    assert_eq!(default[0].message, format!("m{}", max + 50 - 1000));
    assert_eq!(default[999].message, format!("m{}", max + 49));
    let capped = store
        .query(LogQuery {
            limit: usize::MAX,
            after_id: Some(0),
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(capped.len(), max as usize);
    assert_eq!(capped[0].message, "m0");
}

async fn since_keeps_lines_at_or_after_it(store: Arc<dyn LogStore>) {
    store.append(numbered("f", 0, 10)).await.unwrap();
    let since = store
        .query(LogQuery {
            since_ms: Some(1_007),
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(texts(&since), ["m7", "m8", "m9"]);
    // With a cursor too: both hold.
    let both = store
        .query(LogQuery {
            since_ms: Some(1_002),
            after_id: Some(since[0].id),
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(texts(&both), ["m8", "m9"]);
}

async fn a_request_id_selects_its_lines(store: Arc<dyn LogStore>) {
    let with = |ts: i64, req: Option<&str>, msg: &str| LogRecord {
        request_id: req.map(Into::into),
        ..line("f", ts, msg)
    };
    store
        .append(vec![
            with(1, Some("a"), "a1"),
            with(2, Some("b"), "b1"),
            with(3, None, "none"),
            with(4, Some("a"), "a2"),
            LogRecord {
                request_id: Some("a".into()),
                ..line("g", 5, "a of g")
            },
        ])
        .await
        .unwrap();
    let a = store
        .query(LogQuery {
            request_id: Some("a".into()),
            ..query("f")
        })
        .await
        .unwrap();
    assert_eq!(texts(&a), ["a1", "a2"]);
    let unknown = store
        .query(LogQuery {
            request_id: Some("zzz".into()),
            ..query("f")
        })
        .await
        .unwrap();
    assert!(unknown.is_empty());
}

/// The log pipeline stores an invocation's END and REPORT (with START first
/// when the invocation printed nothing) as one row; they read back as
/// separate lines sharing the row's id, in order either way. A function's
/// own output never holds a newline (the pipe splits it), so any other row
/// with a newline stays one line.
async fn platform_rows_read_back_as_separate_lines(store: Arc<dyn LogStore>) {
    store
        .append(vec![
            line("f", 1, "START RequestId: r Version: $LATEST"),
            line("f", 2, "hello\nnot split: not a platform row"),
            line(
                "f",
                3,
                "END RequestId: r\nREPORT RequestId: r\tDuration: 1.00 ms",
            ),
            line(
                "f",
                4,
                "START RequestId: s Version: $LATEST\nEND RequestId: s\nREPORT RequestId: s\tDuration: 0.20 ms",
            ),
        ])
        .await
        .unwrap();
    let expected = [
        "START RequestId: r Version: $LATEST",
        "hello\nnot split: not a platform row",
        "END RequestId: r",
        "REPORT RequestId: r\tDuration: 1.00 ms",
        "START RequestId: s Version: $LATEST",
        "END RequestId: s",
        "REPORT RequestId: s\tDuration: 0.20 ms",
    ];
    for after_id in [None, Some(0)] {
        let got = store
            .query(LogQuery {
                after_id,
                ..query("f")
            })
            .await
            .unwrap();
        assert_eq!(texts(&got), expected, "cursor {after_id:?}");
        assert_eq!(got[2].id, got[3].id, "one cursor for both lines");
        assert_eq!(got[4].id, got[6].id, "one cursor for all three");
        assert_eq!(
            (got[5].ts_ms, got[5].request_id.as_deref()),
            (4, Some("req-1"))
        );
    }
}

async fn prune_deletes_what_is_older_than_the_cutoff(store: Arc<dyn LogStore>) {
    let f = numbered("f", 0, 10); // ts 1000..=1009
    let g = numbered("g", 0, 4); // ts 1000..=1003
    store.append(f.clone()).await.unwrap();
    store.append(g.clone()).await.unwrap();
    store
        .append_usage(vec![usage("f", 1_004, "old"), usage("f", 1_005, "kept")])
        .await
        .unwrap();
    let report = store
        .prune(policy(1_005, u64::MAX, u64::MAX))
        .await
        .unwrap();
    let expired: Vec<&LogRecord> = f.iter().chain(&g).filter(|l| l.ts_ms < 1_005).collect();
    assert_eq!(
        report,
        PruneReport {
            lines: expired.len(),
            bytes: expired.iter().map(|l| charged_bytes(l)).sum(),
        }
    );
    assert_eq!(
        messages(&*store, "f").await,
        ["m5", "m6", "m7", "m8", "m9"],
        "a line exactly at the cutoff is kept"
    );
    assert!(messages(&*store, "g").await.is_empty());
    let left: Vec<String> = store
        .usage(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.request_id)
        .collect();
    assert_eq!(left, ["kept"], "metering records age out too");
}

async fn prune_with_nothing_to_do_reports_nothing(store: Arc<dyn LogStore>) {
    assert_eq!(
        store
            .prune(policy(i64::MAX, 1 << 30, 1 << 30))
            .await
            .unwrap(),
        PruneReport::default(),
        "an empty store"
    );
    store.append(numbered("f", 0, 5)).await.unwrap();
    assert_eq!(
        store.prune(policy(0, 1 << 30, 1 << 30)).await.unwrap(),
        PruneReport::default()
    );
    assert_eq!(messages(&*store, "f").await.len(), 5);
}

/// A function over its quota loses its own oldest lines, down to 90 % of
/// the quota so that it is not cut again at the next pass, and a notice line
/// takes their place; the others keep everything.
async fn a_function_over_its_quota_loses_its_own_oldest_lines(store: Arc<dyn LogStore>) {
    let quota = 50 * 1024;
    store.append(vec![line("small", 0, "kept")]).await.unwrap();
    store.append(kb_lines("big", 1, 100)).await.unwrap();
    let r = store.prune(policy(0, quota, 1 << 30)).await.unwrap();
    assert!(r.lines > 50, "{r:?}");
    let big = all(&*store, "big").await;
    assert_eq!(
        big[0].message,
        format!(
            "nimbus: {} older log lines of this function were dropped to stay within its 50 KB log quota",
            r.lines
        )
    );
    assert_eq!(big[0].instance, "nimbus");
    assert_eq!(big[0].request_id, None);
    assert!(
        big[0].ts_ms <= big[1].ts_ms,
        "the notice stands where the dropped lines were"
    );
    assert_eq!(
        big.last().unwrap().message,
        format!("{:06}{}", 100, "x".repeat(1018)),
        "the newest line is kept"
    );
    let expected: Vec<String> = (101 - (big.len() as i64 - 1)..=100)
        .map(|i| format!("{i:06}{}", "x".repeat(1018)))
        .collect();
    assert_eq!(texts(&big[1..]), expected, "the newest lines, in order");
    let kept: u64 = big[1..]
        .iter()
        .map(|l| charged_bytes(&line("big", l.ts_ms, &l.message)))
        .sum();
    assert!(kept <= quota * 9 / 10, "{kept}");
    assert_eq!(messages(&*store, "small").await, ["kept"]);
    // The next pass finds nothing to do ...
    assert_eq!(
        store.prune(policy(0, quota, 1 << 30)).await.unwrap(),
        PruneReport::default()
    );
    // ... until the function prints again; then one notice counts both cuts.
    store.append(kb_lines("big", 101, 100)).await.unwrap();
    let r2 = store.prune(policy(0, quota, 1 << 30)).await.unwrap();
    let big = messages(&*store, "big").await;
    assert!(
        big[0].starts_with(&format!(
            "nimbus: {} older log lines",
            r.lines + r2.lines - 1
        )),
        "{} (the earlier notice is not a line of the function)",
        big[0]
    );
    assert_eq!(big.iter().filter(|m| m.starts_with("nimbus: ")).count(), 1);
}

/// Over the total quota, the largest consumers are cut down to a common
/// share; a function under that share keeps every line.
async fn the_total_quota_is_taken_from_the_largest_first(store: Arc<dyn LogStore>) {
    store.append(kb_lines("small", 0, 10)).await.unwrap();
    store.append(kb_lines("a", 0, 100)).await.unwrap();
    store.append(kb_lines("b", 0, 60)).await.unwrap();
    let r = store.prune(policy(0, 1 << 30, 100 * 1024)).await.unwrap();
    assert!(r.lines > 0 && r.bytes > 0, "{r:?}");
    assert_eq!(messages(&*store, "small").await.len(), 10);
    let mut total = 0;
    for f in ["a", "b", "small"] {
        let lines = all(&*store, f).await;
        if f != "small" {
            assert!(
                lines[0]
                    .message
                    .contains("the server's 100 KB log quota (its share: "),
                "{}",
                lines[0].message
            );
            assert!(lines.len() < 50, "{f}: {}", lines.len());
        }
        total += lines
            .iter()
            .map(|l| charged_bytes(&line(f, l.ts_ms, &l.message)))
            .sum::<u64>();
    }
    assert!(total <= 100 * 1024, "{total}");
}

async fn usage_reads_back_whole_by_time(store: Arc<dyn LogStore>) {
    let cold = UsageRecord {
        cold: true,
        init_ms: Some(123.25),
        duration_ms: 0.125,
        billed_ms: 1,
        memory_mb: 10_240,
        outcome: "error".into(),
        version: "3".into(),
        ..usage("f", 2_000, "r-cold")
    };
    let throttled = UsageRecord {
        outcome: "throttled".into(),
        duration_ms: 0.0,
        billed_ms: 0,
        ..usage("g", 1_000, "r-throttled")
    };
    let warm = usage("f", 3_000, "r-warm");
    store
        .append_usage(vec![cold.clone(), throttled.clone()])
        .await
        .unwrap();
    store.append_usage(vec![warm.clone()]).await.unwrap();
    assert_eq!(
        store.usage(None, 0).await.unwrap(),
        vec![throttled, cold, warm],
        "whole, by time"
    );
}

async fn usage_is_filtered_by_function_and_time(store: Arc<dyn LogStore>) {
    store
        .append_usage(vec![
            usage("f", 1_000, "f1"),
            usage("g", 1_500, "g1"),
            usage("f", 2_000, "f2"),
            usage("f", 3_000, "f3"),
        ])
        .await
        .unwrap();
    let ids = |records: Vec<UsageRecord>| -> Vec<String> {
        records.into_iter().map(|u| u.request_id).collect()
    };
    assert_eq!(
        ids(store.usage(Some("f".into()), 2_000).await.unwrap()),
        ["f2", "f3"],
        "since is inclusive"
    );
    assert_eq!(
        ids(store.usage(None, 1_500).await.unwrap()),
        ["g1", "f2", "f3"]
    );
    assert!(store.usage(Some("h".into()), 0).await.unwrap().is_empty());
    assert!(store.usage(None, 3_001).await.unwrap().is_empty());
}

async fn usage_records_are_capped_oldest_first(store: Arc<dyn LogStore>) {
    store
        .append_usage(
            (0..10)
                .map(|i| usage("f", 1_000 + i, &format!("r{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let mut p = policy(0, u64::MAX, u64::MAX);
    p.usage_records = 3;
    store.prune(p).await.unwrap();
    let left: Vec<String> = store
        .usage(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(left, ["r7", "r8", "r9"]);
    p.usage_records = 0;
    store.prune(p).await.unwrap();
    assert!(store.usage(None, 0).await.unwrap().is_empty());
}

async fn concurrent_appends_are_all_stored_in_order(store: Arc<dyn LogStore>) {
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in 0..10 {
                    let lines = (0..10)
                        .map(|i| LogRecord {
                            instance: format!("w{w}"),
                            ..line("f", 0, &format!("{}", batch * 10 + i))
                        })
                        .collect();
                    store.append(lines).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let got = all(&*store, "f").await;
    assert_eq!(got.len(), 800);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    for w in 0..8 {
        let mine: Vec<u32> = got
            .iter()
            .filter(|l| l.instance == format!("w{w}"))
            .map(|l| l.message.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..100).collect::<Vec<_>>(), "writer {w}'s order");
    }
}

/// `nimbus logs` and `nimbus usage` on any node see what every node wrote,
/// and a cursor taken on one node goes on on another.
async fn what_one_node_writes_another_reads((a, b): TwoNodes) {
    a.append(numbered("f", 0, 3)).await.unwrap();
    b.append_usage(vec![usage("f", 1_000, "r1")]).await.unwrap();
    assert_eq!(messages(&*b, "f").await, ["m0", "m1", "m2"]);
    let cursor = b.query(query("f")).await.unwrap().last().unwrap().id;
    b.append(numbered("f", 3, 2)).await.unwrap();
    a.append(numbered("f", 5, 1)).await.unwrap();
    assert_eq!(texts(&after(&*a, "f", cursor).await), ["m3", "m4", "m5"]);
    let usage_on_a: Vec<String> = a
        .usage(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.request_id)
        .collect();
    assert_eq!(usage_on_a, ["r1"]);
}

/// `nimbus logs --follow` polls with the last id it saw as its cursor: while
/// two nodes append lines of one function at once, no line may become
/// visible after a line with a greater id did, or the follower skips it.
async fn a_follower_misses_no_line_of_two_nodes_appending((a, b): TwoNodes) {
    const BATCHES: usize = 40;
    let writer = |store: Arc<dyn LogStore>, node: &'static str| {
        tokio::spawn(async move {
            for batch in 0..BATCHES {
                let lines = (0..5)
                    .map(|i| LogRecord {
                        instance: node.into(),
                        ..line("f", 0, &format!("{}", batch * 5 + i))
                    })
                    .collect();
                store.append(lines).await.unwrap();
            }
        })
    };
    let writers = [writer(a.clone(), "a"), writer(b.clone(), "b")];
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = after(&*b, "f", cursor).await;
        if let Some(last) = page.last() {
            cursor = last.id;
        }
        seen.extend(page);
        if done {
            break;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    seen.extend(after(&*b, "f", cursor).await);
    assert_eq!(seen.len(), 2 * BATCHES * 5, "every line, once");
    for node in ["a", "b"] {
        let mine: Vec<usize> = seen
            .iter()
            .filter(|l| l.instance == node)
            .map(|l| l.message.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..BATCHES * 5).collect::<Vec<_>>(), "node {node}");
    }
}

/// A function may print any text, a NUL byte included: it reads back as
/// printed, and the lines of its batch are stored with it.
async fn a_line_holding_a_nul_byte_is_kept(store: Arc<dyn LogStore>) {
    store
        .append(vec![
            line("f", 1, "before"),
            line("f", 2, "a\0b"),
            line("f", 3, "after"),
        ])
        .await
        .unwrap();
    assert_eq!(messages(&*store, "f").await, ["before", "a\0b", "after"]);
}
