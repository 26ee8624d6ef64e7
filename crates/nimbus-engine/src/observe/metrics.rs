//! Prometheus metrics, rendered in the text exposition format.
//!
//! Counters and histograms are updated from the same place as metering (one
//! update per invocation, under a short lock); gauges (concurrency, instances,
//! queue depth) are read when scraped. Hand-written because the format is tiny
//! and the hot path then costs one map lookup.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};

use nimbus_runtime::LogGate;

use crate::scheduler::MemoryBudget;
use nimbus_store::UsageRecord;

/// Upper bounds (seconds) of the duration histograms.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, function: &str) {
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{function=\"{function}\",le=\"{b}\"}} {c}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{function=\"{function}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{function=\"{function}\"}} {}", self.sum);
        let _ = writeln!(
            out,
            "{name}_count{{function=\"{function}\"}} {}",
            self.count
        );
    }
}

#[derive(Default, Clone)]
struct FunctionMetrics {
    invocations: u64,
    errors: u64,
    throttles: u64,
    cold_starts: u64,
    /// Events not run because they closed a recursive loop.
    loops_stopped: u64,
    duration: Histogram,
    init: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    functions: Mutex<BTreeMap<String, FunctionMetrics>>,
    /// The log queue's gate: its drops per function and its fill are reported.
    log_gate: OnceLock<Arc<LogGate>>,
    /// The instances' memory budget: its capacity and what is committed.
    memory: OnceLock<Arc<MemoryBudget>>,
}

/// Point-in-time values read when scraped.
#[derive(Debug, Default)]
pub struct Gauges {
    /// function → (running invocations, idle instances, instances)
    pub functions: BTreeMap<String, (usize, usize, usize)>,
    pub queue_depth: u64,
    pub queue_oldest_age_s: f64,
    /// Deliveries skipped because their creator's grant was revoked.
    pub revoked_deliveries: u64,
}

impl Metrics {
    /// Reports the log queue's drops and fill from now on.
    pub fn watch_log_gate(&self, gate: Arc<LogGate>) {
        let _ = self.log_gate.set(gate);
    }

    /// Reports the memory budget from now on.
    pub fn watch_memory(&self, budget: Arc<MemoryBudget>) {
        let _ = self.memory.set(budget);
    }

    /// An event for `function` was dropped by recursive loop detection.
    pub fn loop_stopped(&self, function: &str) {
        let mut all = self.functions.lock().unwrap();
        all.entry(function.to_string()).or_default().loops_stopped += 1;
    }

    pub fn observe(&self, r: &UsageRecord) {
        let mut all = self.functions.lock().unwrap();
        let m = all.entry(r.function.clone()).or_default();
        match r.outcome.as_str() {
            "throttled" => m.throttles += 1,
            outcome => {
                m.invocations += 1;
                if outcome == "error" {
                    m.errors += 1;
                }
                if r.cold {
                    m.cold_starts += 1;
                }
                m.duration.observe(r.duration_ms / 1000.0);
                if let Some(init) = r.init_ms {
                    m.init.observe(init / 1000.0);
                }
            }
        }
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let all = self.functions.lock().unwrap().clone();
        let mut out = String::new();
        let counter =
            |out: &mut String, name: &str, help: &str, get: &dyn Fn(&FunctionMetrics) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (f, m) in &all {
                    let _ = writeln!(out, "{name}{{function=\"{f}\"}} {}", get(m));
                }
            };
        counter(
            &mut out,
            "nimbus_invocations_total",
            "Invocations that ran.",
            &|m| m.invocations,
        );
        counter(
            &mut out,
            "nimbus_errors_total",
            "Invocations that ended in a function error.",
            &|m| m.errors,
        );
        counter(
            &mut out,
            "nimbus_throttles_total",
            "Calls refused with TooManyRequests.",
            &|m| m.throttles,
        );
        counter(
            &mut out,
            "nimbus_cold_starts_total",
            "Invocations that started an instance.",
            &|m| m.cold_starts,
        );
        counter(
            &mut out,
            "nimbus_recursive_loops_stopped_total",
            "Events not run because they would continue a recursive loop past 16 invocations.",
            &|m| m.loops_stopped,
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_duration_seconds Invocation duration (excluding init).\n# TYPE nimbus_duration_seconds histogram"
        );
        for (f, m) in &all {
            m.duration.render(&mut out, "nimbus_duration_seconds", f);
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_init_duration_seconds Init duration of cold starts.\n# TYPE nimbus_init_duration_seconds histogram"
        );
        for (f, m) in &all {
            m.init.render(&mut out, "nimbus_init_duration_seconds", f);
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_concurrent_executions Invocations running now.\n# TYPE nimbus_concurrent_executions gauge"
        );
        for (f, (busy, _, _)) in &gauges.functions {
            let _ = writeln!(
                out,
                "nimbus_concurrent_executions{{function=\"{f}\"}} {busy}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_instances Instances by state.\n# TYPE nimbus_instances gauge"
        );
        for (f, (_, idle, live)) in &gauges.functions {
            let _ = writeln!(
                out,
                "nimbus_instances{{function=\"{f}\",state=\"idle\"}} {idle}"
            );
            let _ = writeln!(
                out,
                "nimbus_instances{{function=\"{f}\",state=\"busy\"}} {}",
                live.saturating_sub(*idle)
            );
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_async_queue_depth Asynchronous events waiting or running.\n# TYPE nimbus_async_queue_depth gauge\nnimbus_async_queue_depth {}",
            gauges.queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_async_queue_oldest_age_seconds Age of the oldest queued event.\n# TYPE nimbus_async_queue_oldest_age_seconds gauge\nnimbus_async_queue_oldest_age_seconds {}",
            gauges.queue_oldest_age_s
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_deliveries_revoked_total Deliveries skipped because the function that set them up lost the grant.\n# TYPE nimbus_deliveries_revoked_total counter\nnimbus_deliveries_revoked_total {}",
            gauges.revoked_deliveries
        );
        if let Some(m) = self.memory.get() {
            let _ = writeln!(
                out,
                "# HELP nimbus_memory_committed_bytes Memory committed to instances (the sum of their memory sizes).\n# TYPE nimbus_memory_committed_bytes gauge\nnimbus_memory_committed_bytes {}",
                m.used_mb() << 20
            );
            let _ = writeln!(
                out,
                "# HELP nimbus_memory_budget_bytes Most memory instances may commit (--memory-budget).\n# TYPE nimbus_memory_budget_bytes gauge\nnimbus_memory_budget_bytes {}",
                m.capacity_mb().saturating_mul(1 << 20)
            );
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_log_lines_dropped_low_disk_total Lines of function output dropped because the data directory's filesystem was below --log-min-free-disk.\n# TYPE nimbus_log_lines_dropped_low_disk_total counter\nnimbus_log_lines_dropped_low_disk_total {}",
            crate::observe::logs::LINES_DROPPED_LOW_DISK.load(std::sync::atomic::Ordering::Relaxed)
        );
        if let Some(gate) = self.log_gate.get() {
            let drops = gate.drops();
            let _ = writeln!(
                out,
                "# HELP nimbus_log_lines_dropped_total Lines of function output dropped because the function's share of the log queue was full.\n# TYPE nimbus_log_lines_dropped_total counter"
            );
            for d in &drops {
                let _ = writeln!(
                    out,
                    "nimbus_log_lines_dropped_total{{function=\"{}\"}} {}",
                    d.function, d.lines
                );
            }
            let _ = writeln!(
                out,
                "# HELP nimbus_log_bytes_dropped_total Bytes of those lines (with 64 bytes of overhead each).\n# TYPE nimbus_log_bytes_dropped_total counter"
            );
            for d in &drops {
                let _ = writeln!(
                    out,
                    "nimbus_log_bytes_dropped_total{{function=\"{}\"}} {}",
                    d.function, d.bytes
                );
            }
            let _ = writeln!(
                out,
                "# HELP nimbus_log_queue_bytes Bytes of log lines waiting to be stored.\n# TYPE nimbus_log_queue_bytes gauge\nnimbus_log_queue_bytes {}",
                gate.in_flight()
            );
        }
        out
    }
}
