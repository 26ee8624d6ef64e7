//! Recursive loop detection, as Lambda does it: the X-Ray trace header of an
//! event-driven invocation carries a `Lineage` field counting, per function,
//! how many times the chain of events that led here has invoked it. A function
//! sends that header on its own calls (the AWS SDKs copy `_X_AMZN_TRACE_ID`
//! into `X-Amzn-Trace-Id`, which is exactly their recursion detection), the
//! queue, topic or async event it creates keeps it, and when that event would
//! invoke a function for the [`MAX_RECURSION_HOPS`]+1-th time the event is
//! dropped instead. So `topic → function → same topic` stops after 16 rounds.
//!
//! Only event-driven invocations count (async invokes, SNS, SQS mappings):
//! synchronous calls are the caller's to bound, as on Lambda.
//!
//! [`MAX_RECURSION_HOPS`]: crate::limits::MAX_RECURSION_HOPS

/// Most `Lineage` entries kept (a chain through more distinct functions keeps
/// the first ones; each stays bounded on its own).
const MAX_ENTRIES: usize = 16;

/// The short, stable key of a function in a `Lineage` field (8 hex digits of
/// FNV-1a over its name, as Lambda uses a hash of the ARN).
pub fn function_key(function: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in function.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Decodes the percent escapes botocore puts in the header (`|` → `%7C`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Lineage` entries of a trace header: (function key, count).
fn entries(trace: &str) -> Vec<(String, u32)> {
    let trace = unescape(trace);
    trace
        .split(';')
        .filter_map(|f| f.trim().strip_prefix("Lineage="))
        .flat_map(|l| l.split('|'))
        .filter_map(|e| {
            let (k, n) = e.split_once(':')?;
            let k = k.trim();
            (k.len() == 8 && k.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| Some((k.to_ascii_lowercase(), n.trim().parse().ok()?)))?
        })
        .take(MAX_ENTRIES)
        .collect()
}

/// How many times the chain behind `trace` has invoked `function`.
pub fn count(trace: Option<&str>, function: &str) -> u32 {
    let key = function_key(function);
    trace
        .map(entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0)
}

/// The trace header of the invocation of `function` that counts `n`: the
/// header's other fields kept (a fresh root when there is none), its
/// `Lineage` with `function`'s entry set to `n`.
pub fn with_count(trace: Option<&str>, function: &str, n: u32, fresh_root: &str) -> String {
    let key = function_key(function);
    let mut lineage: Vec<(String, u32)> = trace
        .map(entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| *k != key)
        .collect();
    lineage.truncate(MAX_ENTRIES - 1);
    lineage.push((key, n));
    let mut fields: Vec<String> = trace
        .map(unescape)
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.starts_with("Lineage="))
        .map(str::to_string)
        .collect();
    if !fields.iter().any(|f| f.starts_with("Root=")) {
        fields = vec![fresh_root.to_string()];
    }
    let lineage: Vec<String> = lineage.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    fields.push(format!("Lineage={}", lineage.join("|")));
    fields.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_up_per_function_and_survive_botocore_escaping() {
        let root = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0";
        let t1 = with_count(None, "f", 1, root);
        assert!(t1.starts_with("Root=1-"), "{t1}");
        assert_eq!(count(Some(&t1), "f"), 1);
        assert_eq!(count(Some(&t1), "g"), 0);
        let t2 = with_count(Some(&t1), "g", 1, root);
        let t3 = with_count(Some(&t2), "f", 2, root);
        assert_eq!((count(Some(&t3), "f"), count(Some(&t3), "g")), (2, 1));
        assert_eq!(t3.matches("Lineage=").count(), 1, "{t3}");
        let escaped = t3.replace('|', "%7C");
        assert_eq!(count(Some(&escaped), "g"), 1);
        assert_eq!(count(Some("Lineage=zz:99"), "f"), 0, "junk ignored");
        assert_eq!(count(Some("%"), "f"), 0);
        assert_eq!(count(None, "f"), 0);
    }
}
