//! The platform's own log lines, in the CloudWatch text format Lambda users parse
//! (tab-separated, REPORT with a trailing tab, Init Duration after Max Memory Used).

use std::time::Duration;

pub fn start(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

pub fn end(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

/// Billed duration: whole milliseconds, rounded up, at least 1.
pub fn billed_ms(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(1_000_000) as u64).max(1)
}

pub fn report(
    request_id: &str,
    duration: Duration,
    memory_mb: u32,
    max_used_mb: u64,
    init: Option<Duration>,
) -> String {
    let mut s = format!(
        "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_used_mb} MB\t",
        duration.as_secs_f64() * 1000.0,
        billed_ms(duration),
    );
    if let Some(i) = init {
        s.push_str(&format!(
            "Init Duration: {:.2} ms\t",
            i.as_secs_f64() * 1000.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_format() {
        let r = report("abc", Duration::from_micros(12_341), 128, 35, None);
        assert_eq!(
            r,
            "REPORT RequestId: abc\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 35 MB\t"
        );
        let r = report(
            "abc",
            Duration::from_millis(38),
            128,
            54,
            Some(Duration::from_micros(203_690)),
        );
        assert!(r.ends_with("Max Memory Used: 54 MB\tInit Duration: 203.69 ms\t"));
        assert_eq!(billed_ms(Duration::from_micros(10)), 1);
        assert_eq!(billed_ms(Duration::from_millis(5)), 5);
    }
}
