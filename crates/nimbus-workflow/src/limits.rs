//! Step Functions' quotas on one execution, and the interpreter's own budget.
//!
//! The quotas are AWS's so that a definition that works here works there and
//! fails here the way it fails there. They live in this crate, not in
//! `nimbus-core`'s table, because the interpreter enforces them and this crate
//! depends on nothing of ours.
//!
//! The budget is why a looping definition (`"A": {"Type": "Pass", "Next": "A"}`)
//! cannot hold a thread or grow memory: one interpreter call runs at most
//! [`TRANSITIONS_PER_CALL`] transitions or [`PAYLOAD_BYTES_PER_CALL`] bytes of
//! state input and output, then yields ([`crate::Action::Continue`]); the
//! executor persists what was done and calls [`crate::Execution::resume`].
//! The history quota then ends the loop.

/// Most history events an execution may have (Step Functions: 25,000); the
/// execution fails with `States.Runtime` when it reaches them.
pub const MAX_HISTORY_EVENTS: u64 = 25_000;
/// Largest state input or output, as UTF-8 JSON (Step Functions: 256 KiB);
/// past it the execution fails with `States.DataLimitExceeded`.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Deepest nesting of a state input or output. Not an AWS quota: serde_json
/// refuses to parse JSON nested deeper than 128, and every payload must come
/// back from the snapshot and the history, where it sits a few levels down. A
/// `"ResultPath": "$.x"` loop nests its input one level per pass; past this the
/// execution fails with `States.Runtime` instead of a snapshot that cannot be read.
pub const MAX_PAYLOAD_DEPTH: usize = 100;
/// Transitions (a state entered, a branch finished) run by one interpreter call
/// before it yields.
pub const TRANSITIONS_PER_CALL: usize = 1_000;
/// Bytes of state input and output handled by one interpreter call before it
/// yields (so one step's events stay small whatever the payloads).
pub const PAYLOAD_BYTES_PER_CALL: usize = 8 * 1024 * 1024;

/// The size of `value` as JSON text, or `None` once it passes `limit` (the
/// serialisation stops there, so a huge value costs no more than the limit).
pub fn json_size_within(value: &serde_json::Value, limit: usize) -> Option<usize> {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, limit };
    serde_json::to_writer(&mut c, value).ok().map(|()| c.n)
}

/// Whether `value` nests no deeper than `max` (scalars are depth 0). Walks
/// with its own stack: the value may be far deeper than the thread's.
pub fn json_depth_within(value: &serde_json::Value, max: usize) -> bool {
    use serde_json::Value;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if depth + 1 > max {
            return false;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers() {
        let mut v = serde_json::json!(1);
        assert!(json_depth_within(&v, 0));
        for _ in 0..5 {
            v = serde_json::json!({"x": [v]});
        }
        assert!(json_depth_within(&v, 10));
        assert!(!json_depth_within(&v, 9));
        assert!(json_depth_within(&serde_json::json!([]), 1));
        assert!(!json_depth_within(&serde_json::json!([]), 0));
    }

    #[test]
    fn sizes_stop_at_the_limit() {
        let v = serde_json::json!({"a": "x".repeat(100)});
        assert_eq!(json_size_within(&v, 1000), Some(v.to_string().len()));
        assert_eq!(json_size_within(&v, 50), None);
    }
}
