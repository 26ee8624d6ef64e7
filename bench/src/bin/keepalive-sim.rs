//! Keep-alive policy simulation: replays a synthetic day of invocations shaped like
//! the Azure Functions trace of "Serverless in the Wild" (invocation rates spanning
//! orders of magnitude, most functions rarely invoked, many periodic) and reports,
//! per policy, the cold-start rate and the idle instance-seconds (memory kept
//! warm for nothing). The hybrid policy is Nimbus's own implementation
//! (`nimbus_engine::scheduler::HybridHistogram`), fed the same gaps online.
//!
//! Run: `cargo run --release -p nimbus-bench --bin keepalive-sim`

use std::time::Duration;

use nimbus_engine::scheduler::HybridHistogram;

/// xorshift64*: deterministic, so every run replays the same trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next()).ln()
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

const DAY: f64 = 86_400.0;

/// Arrival times (seconds) of each function over one day.
fn trace(functions: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    (0..functions)
        .map(|i| {
            let kind = i % 10;
            let mut t = rng.between(0.0, 600.0);
            let mut out = Vec::new();
            while t < DAY {
                out.push(t);
                t += match kind {
                    // 40 %: rare, hours apart.
                    0..=3 => {
                        let mean = rng.between(3_600.0, 12.0 * 3_600.0);
                        rng.exp(mean)
                    }
                    // 30 %: timer-driven, every 1–60 minutes with a little jitter.
                    4..=6 => {
                        let periods = [60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0];
                        periods[i % periods.len()] + rng.between(-2.0, 2.0)
                    }
                    // 20 %: moderate, 30 s – 10 min apart.
                    7 | 8 => rng.exp(30.0 + (i % 20) as f64 * 30.0),
                    // 10 %: busy, seconds apart.
                    _ => rng.exp(1.0 + (i % 10) as f64),
                };
            }
            out
        })
        .collect()
}

#[derive(Default)]
struct Outcome {
    invocations: u64,
    cold: u64,
    idle_seconds: f64,
}

/// A fixed keep-alive: the instance stays up `keep` after each invocation.
fn fixed(trace: &[Vec<f64>], keep: f64) -> Outcome {
    let mut o = Outcome::default();
    for arrivals in trace {
        o.invocations += arrivals.len() as u64;
        o.cold += 1.min(arrivals.len() as u64);
        for w in arrivals.windows(2) {
            let gap = w[1] - w[0];
            if gap > keep {
                o.cold += 1;
            }
            o.idle_seconds += gap.min(keep);
        }
        if let Some(last) = arrivals.last() {
            o.idle_seconds += keep.min(DAY - last);
        }
    }
    o
}

/// The hybrid histogram: unload after each execution, pre-warm at the head of the
/// idle-time distribution, keep until its tail; fixed fallback while unsure.
fn hybrid(trace: &[Vec<f64>], fallback: f64) -> Outcome {
    let policy = HybridHistogram::new(
        Duration::from_secs(60),
        240,
        Duration::from_secs_f64(fallback),
    );
    let mut o = Outcome::default();
    for (i, arrivals) in trace.iter().enumerate() {
        let name = format!("f{i}");
        o.invocations += arrivals.len() as u64;
        o.cold += 1.min(arrivals.len() as u64);
        for w in arrivals.windows(2) {
            let gap = w[1] - w[0];
            let (start, end) = match policy.windows(&name) {
                Some(win) => {
                    let s = win.prewarm.as_secs_f64();
                    (s, s + win.keep_alive.as_secs_f64())
                }
                None => (0.0, fallback),
            };
            if gap < start || gap > end {
                o.cold += 1;
            }
            o.idle_seconds += if gap < start {
                0.0
            } else {
                gap.min(end) - start
            };
            policy.observe_gap(&name, Duration::from_secs_f64(gap));
        }
    }
    o
}

fn main() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let trace = trace(500, &mut rng);
    let base = fixed(&trace, 600.0);
    let invocations = base.invocations;
    let base_idle = base.idle_seconds;
    let rows = [
        ("fixed 10 min (Lambda-like)", base),
        ("fixed 20 min (Azure)", fixed(&trace, 1_200.0)),
        ("hybrid histogram (Nimbus)", hybrid(&trace, 600.0)),
    ];
    println!(
        "Keep-alive simulation — 500 functions, 24 h synthetic trace, {invocations} invocations"
    );
    println!(
        "{:<28} {:>12} {:>10} {:>18} {:>12}",
        "policy", "cold starts", "cold %", "idle instance-s", "idle vs 10m"
    );
    for (name, o) in &rows {
        println!(
            "{:<28} {:>12} {:>9.2}% {:>18.0} {:>11.2}×",
            name,
            o.cold,
            100.0 * o.cold as f64 / o.invocations as f64,
            o.idle_seconds,
            o.idle_seconds / base_idle
        );
    }
}
