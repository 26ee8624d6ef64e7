//! Invocation logs: every line an instance prints, plus the platform's
//! START/END/REPORT lines, tagged with function, instance and request id.
//!
//! Lines arrive in batches from one writer task (see the engine's log
//! pipeline), so a batch costs one transaction, not one per line.
//!
//! Retention ([`LogStore::prune`]) counts bytes, not lines, because a line may
//! be 256 KB: each function first loses its own oldest lines beyond its quota
//! (with a notice line where they were), then, if the total is still over its
//! quota, the largest consumers are cut down to a common share, so a small
//! function never loses lines because of a big one. Every row is charged
//! [`charged_bytes`].

use async_trait::async_trait;
use serde::Serialize;

use crate::StoreError;

/// A line to store.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub function: String,
    pub ts_ms: i64,
    pub instance: String,
    pub request_id: Option<String>,
    pub message: String,
}

/// A stored line; `id` is a cursor that only grows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredLog {
    pub id: i64,
    pub ts_ms: i64,
    pub instance: String,
    pub request_id: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub function: String,
    pub since_ms: Option<i64>,
    pub after_id: Option<i64>,
    pub request_id: Option<String>,
    /// When set, return the newest `limit` lines (still in ascending order)
    /// unless `after_id` is given, in which case the oldest after the cursor.
    pub limit: usize,
}

#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Stores the lines in their order; each gets an id greater than every
    /// id given before, pruned ones included (the cursor of
    /// [`LogQuery::after_id`]). Concurrent
    /// appends may interleave, but each caller's lines keep its order.
    async fn append(&self, lines: Vec<LogRecord>) -> Result<(), StoreError>;
    /// Lines of `query.function`, oldest first. Without `after_id`, the
    /// newest `limit` rows; with it, the oldest `limit` rows after it.
    /// `limit` 0 means 1000, and it is capped at
    /// [`nimbus_core::limits::MAX_LOG_QUERY_LINES`]. `since_ms` keeps lines
    /// at or after it; `request_id` those of that request. `limit` counts
    /// stored rows: a platform row (END and REPORT, with START first when the
    /// invocation printed nothing, joined with newlines) reads back as its
    /// lines, in order, all with the row's id; any other row is one line.
    async fn query(&self, query: LogQuery) -> Result<Vec<StoredLog>, StoreError>;
    /// Deletes lines older than the policy's cutoff, then enforces its byte quotas.
    ///
    /// Age: lines and metering records with `ts_ms < older_than_ms` go.
    /// Quotas count [`charged_bytes`]: a function over `function_bytes`
    /// loses its oldest lines down to 90 % of it, and one notice line takes
    /// their place (instance `nimbus`, no request id, the time of the last
    /// line dropped, the count of every line dropped so far, replacing an
    /// earlier notice); then, over `total_bytes`, the largest functions are
    /// cut the same way to a common share of 90 % of it, and the smaller keep
    /// every line. Metering records beyond `usage_records` go oldest first.
    /// Reports the lines and charged bytes removed (nothing to do: zero).
    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError>;
    /// Stores metering records (one per invocation or throttled call).
    async fn append_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError>;
    /// Metering records at or after `since_ms`, of one function or all,
    /// whole, by time.
    async fn usage(
        &self,
        function: Option<String>,
        since_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError>;
}

/// What one invocation cost: the metering record behind `nimbus usage` and `nimbus cost`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRecord {
    pub ts_ms: i64,
    pub function: String,
    pub version: String,
    pub request_id: String,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub cold: bool,
    pub init_ms: Option<f64>,
    /// `success`, `error` or `throttled`.
    pub outcome: String,
}

/// What [`LogStore::prune`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Lines (and metering records) older than this are deleted.
    pub older_than_ms: i64,
    /// Most bytes one function's lines may take.
    pub function_bytes: u64,
    /// Most bytes all lines may take.
    pub total_bytes: u64,
    /// Most metering records kept (one per invocation; the oldest go first).
    /// Age alone does not bound them: a busy server makes millions a day.
    pub usage_records: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub lines: usize,
    pub bytes: u64,
}

/// Bytes a row is charged: its text and what it costs besides (the other
/// columns, the indexes), so that a flood of empty lines counts too.
pub fn charged_bytes(r: &LogRecord) -> u64 {
    (r.message.len() + r.instance.len() + r.request_id.as_ref().map_or(0, |s| s.len()) + 48) as u64
}

// What every backend shares below: the arithmetic of retention and the
// reading of platform rows, so that the backends differ only in how they
// store, never in what a query or a pass returns.

/// Rows whose message starts with one of these and holds newlines are
/// several platform lines stored as one (END and REPORT of an invocation,
/// with START first when the invocation wrote nothing) and are read back as
/// separate lines with the same id. A function's own output never holds a
/// newline: the pipe splits it into lines.
const MULTI_LINE_PREFIXES: [&str; 2] = ["START RequestId: ", "END RequestId: "];

fn is_multi_line(message: &str) -> bool {
    MULTI_LINE_PREFIXES.iter().any(|p| message.starts_with(p)) && message.contains('\n')
}

/// The rows a query read (newest first when `newest_first`, else oldest
/// first) as the lines it returns: oldest first, platform rows split.
pub(crate) fn rows_to_lines(rows: Vec<StoredLog>, newest_first: bool) -> Vec<StoredLog> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if !is_multi_line(&row.message) {
            out.push(row);
            continue;
        }
        let lines: Vec<&str> = if newest_first {
            row.message.rsplit('\n').collect()
        } else {
            row.message.split('\n').collect()
        };
        for line in lines {
            out.push(StoredLog {
                message: line.to_string(),
                instance: row.instance.clone(),
                request_id: row.request_id.clone(),
                ..row
            });
        }
    }
    if newest_first {
        out.reverse();
    }
    out
}

/// The rows a query reads at most (see [`LogStore::query`]).
pub(crate) fn row_limit(limit: usize) -> i64 {
    if limit == 0 {
        1000
    } else {
        limit.min(nimbus_core::limits::MAX_LOG_QUERY_LINES) as i64
    }
}

/// The instance column of retention notices (instance ids never take this form).
pub(crate) const NOTICE_INSTANCE: &str = "nimbus";

/// A quota pass cuts a function down to this share of its quota, so that it is
/// not cut again at every batch.
pub(crate) const LOW_WATER_PERCENT: u64 = 90;

/// The notice that stands where a function's dropped lines were.
pub(crate) fn quota_notice(
    function: &str,
    ts_ms: i64,
    dropped: i64,
    quota_note: &str,
) -> LogRecord {
    LogRecord {
        function: function.to_string(),
        ts_ms,
        instance: NOTICE_INSTANCE.into(),
        request_id: None,
        message: format!(
            "nimbus: {dropped} older log lines of this function were dropped to stay within {quota_note}"
        ),
    }
}

/// How a notice names the per-function quota.
pub(crate) fn function_quota_note(p: &RetentionPolicy) -> String {
    format!("its {} log quota", size_text(p.function_bytes))
}

/// How a notice names the total quota and the function's share of it.
pub(crate) fn total_quota_note(p: &RetentionPolicy, share: u64) -> String {
    format!(
        "the server's {} log quota (its share: {})",
        size_text(p.total_bytes),
        size_text(share)
    )
}

/// Human-readable size for notices: "64 MB", "512 KB", "100 bytes".
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{} KB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The largest share `c` such that every function keeping `min(size, c)`
/// fits in `budget`; functions under it keep everything.
pub(crate) fn fair_share(sizes: &[u64], budget: u64) -> u64 {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let mut left = budget;
    let mut n = sorted.len() as u64;
    for s in sorted {
        if s * n <= left {
            left -= s;
            n -= 1;
        } else {
            return left / n;
        }
    }
    u64::MAX
}
