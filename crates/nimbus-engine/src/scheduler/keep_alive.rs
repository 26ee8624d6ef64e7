//! Keep-alive policies decide how long an idle instance stays warm.
//!
//! A fixed timeout is the industry default (Lambda keeps environments for minutes,
//! Azure for 20). Smarter policies (the hybrid histogram of "Serverless in the Wild")
//! learn per function from the invocation stream they are shown here.

use std::time::{Duration, Instant};

pub trait KeepAlivePolicy: Send + Sync + 'static {
    /// How long an idle instance of `function` may stay warm.
    fn keep_alive(&self, function: &str) -> Duration;
    /// For policies that unload and pre-warm: when to load an instance again
    /// after the function's last execution, and for how long to keep it.
    fn windows(&self, _function: &str) -> Option<Windows> {
        None
    }
    /// Called for every invocation, for policies that learn.
    fn record_invocation(&self, _function: &str, _at: Instant) {}
}

/// The same idle timeout for every function.
pub struct FixedKeepAlive(pub Duration);

impl KeepAlivePolicy for FixedKeepAlive {
    fn keep_alive(&self, _function: &str) -> Duration {
        self.0
    }
}

/// When to load an instance after an execution and how long to keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Windows {
    /// Unload right after an execution and load again this long after it.
    pub prewarm: Duration,
    /// Then keep it loaded for this long.
    pub keep_alive: Duration,
}

#[derive(Default)]
struct IdleHistogram {
    counts: Vec<u64>,
    total: u64,
    out_of_range: u64,
    last: Option<Instant>,
}

/// The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al.,
/// USENIX ATC 2020): per function, a range-limited histogram of idle times
/// (the paper: 1-minute bins over 4 hours). When it is representative, the
/// instance is pre-warmed at the 5th percentile of idle time (minus 10 %) and kept
/// until the 99th (plus 10 %); otherwise a fixed keep-alive applies. The live
/// scheduler (`Scheduler::run_reaper`) follows the windows: it unloads an
/// instance right after its execution, pre-warms one at the window's start and
/// unloads it at its end; `keepalive-sim` in the bench replays traces through
/// the same policy.
pub struct HybridHistogram {
    bin: Duration,
    bins: usize,
    fallback: Duration,
    /// Idle times seen before the histogram is trusted.
    min_samples: u64,
    state: std::sync::Mutex<std::collections::HashMap<String, IdleHistogram>>,
}

impl HybridHistogram {
    pub fn new(bin: Duration, bins: usize, fallback: Duration) -> Self {
        Self {
            bin,
            bins: bins.max(1),
            fallback,
            min_samples: 10,
            state: Default::default(),
        }
    }

    /// Records one idle time (the gap between two invocations).
    pub fn observe_gap(&self, function: &str, gap: Duration) {
        let mut all = self.state.lock().unwrap();
        let h = all.entry(function.to_string()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; self.bins];
        }
        let i = (gap.as_secs_f64() / self.bin.as_secs_f64()) as usize;
        match h.counts.get_mut(i) {
            Some(c) => *c += 1,
            None => h.out_of_range += 1,
        }
        h.total += 1;
    }

    /// The windows for a function, or `None` while its histogram is not
    /// representative (too few samples, or most idle times beyond its range).
    pub fn windows(&self, function: &str) -> Option<Windows> {
        let all = self.state.lock().unwrap();
        let h = all.get(function)?;
        if h.total < self.min_samples || h.out_of_range * 2 > h.total {
            return None;
        }
        let in_range: u64 = h.counts.iter().sum();
        let percentile = |p: f64| {
            let target = (in_range as f64 * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            h.counts.iter().position(|c| {
                seen += c;
                seen >= target
            })
        };
        let head = percentile(0.05)?;
        let tail = percentile(0.99)?;
        let prewarm = self.bin.mul_f64(head as f64 * 0.9);
        let end = self.bin.mul_f64((tail + 1) as f64 * 1.1);
        Some(Windows {
            prewarm,
            keep_alive: end.saturating_sub(prewarm),
        })
    }

    pub fn fallback(&self) -> Duration {
        self.fallback
    }
}

impl KeepAlivePolicy for HybridHistogram {
    fn keep_alive(&self, function: &str) -> Duration {
        HybridHistogram::windows(self, function)
            .map(|w| w.prewarm + w.keep_alive)
            .unwrap_or(self.fallback)
    }

    fn windows(&self, function: &str) -> Option<Windows> {
        HybridHistogram::windows(self, function)
    }

    fn record_invocation(&self, function: &str, at: Instant) {
        let gap = {
            let mut all = self.state.lock().unwrap();
            let h = all.entry(function.to_string()).or_default();
            let gap = h.last.map(|l| at.duration_since(l));
            h.last = Some(at);
            gap
        };
        if let Some(g) = gap {
            self.observe_gap(function, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_histogram_learns_a_periodic_function() {
        let p = HybridHistogram::new(Duration::from_secs(60), 240, Duration::from_secs(600));
        assert_eq!(
            p.keep_alive("f"),
            Duration::from_secs(600),
            "fallback until representative"
        );
        for _ in 0..20 {
            p.observe_gap("f", Duration::from_secs(30 * 60 + 10));
        }
        let w = p.windows("f").unwrap();
        // Every gap falls in minute 30: pre-warm shortly before, keep a little after.
        assert_eq!(w.prewarm, Duration::from_secs(27 * 60));
        assert!(w.prewarm + w.keep_alive >= Duration::from_secs(31 * 60));
        // Gaps beyond the histogram's range make it fall back.
        for _ in 0..50 {
            p.observe_gap("g", Duration::from_secs(10 * 3600));
        }
        assert!(p.windows("g").is_none());
    }
}
