//! Wall time, read through one [`Clock`] by every part that stamps or
//! compares times (queues, topics, mappings, the async queue, schedules,
//! workflows, objects, the gateway).
//!
//! [`Clock::system`] is the host's time, except that it follows tokio's
//! clock: it reads `Utc::now()` plus how far tokio's clock is from the real
//! monotonic clock. In a running server that difference is zero (tokio's clock
//! *is* the monotonic clock), so the time is exactly the host's and follows
//! its adjustments; under `tokio::time::pause()` / `advance()` in a test the
//! difference is what the test moved, so every part's "now" moves with the
//! sleeps and timeouts the test drives. [`Clock::manual`] is a clock that
//! moves only when told, for pure unit tests.
//!
//! A clock can be set ahead ([`Clock::advance`], [`Clock::ahead_by`]); the
//! schedules' `--test-clock` is a system clock set ahead, so it advances only
//! the schedules, as it always has.
//!
//! The pure workflow interpreter takes "now" as an argument and reads no clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where the time comes from; cheap to clone (clones share their offset).
#[derive(Clone, Debug)]
pub struct Clock {
    source: Source,
    /// How far ahead of its source this clock is (only grows).
    offset_ms: Arc<AtomicI64>,
}

#[derive(Clone, Debug)]
enum Source {
    /// The host's time, following tokio's clock.
    System,
    /// Milliseconds since the epoch, moved by hand.
    Manual(Arc<AtomicI64>),
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The host's time (see the module doc for how it follows tokio's clock).
    pub fn system() -> Self {
        Self {
            source: Source::System,
            offset_ms: Arc::default(),
        }
    }

    /// A clock standing at `start` until [`Clock::advance`]d.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            source: Source::Manual(Arc::new(AtomicI64::new(start.timestamp_millis()))),
            offset_ms: Arc::default(),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst));
        match &self.source {
            Source::System => Utc::now() + tokio_skew() + offset,
            Source::Manual(ms) => {
                DateTime::from_timestamp_millis(ms.load(Ordering::SeqCst)).unwrap_or_default()
                    + offset
            }
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves this clock (and its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// A clock of its own on the same source, `by` ahead of this one now;
    /// advancing it leaves this one alone.
    pub fn ahead_by(&self, by: Duration) -> Self {
        Self {
            source: self.source.clone(),
            offset_ms: Arc::new(AtomicI64::new(
                self.offset_ms.load(Ordering::SeqCst) + by.as_millis() as i64,
            )),
        }
    }
}

/// How far tokio's clock is from the real monotonic clock: zero in a running
/// server, the paused and advanced time in a test.
fn tokio_skew() -> chrono::Duration {
    let tokio_now = tokio::time::Instant::now().into_std();
    let real_now = std::time::Instant::now();
    match tokio_now.checked_duration_since(real_now) {
        Some(ahead) => chrono::Duration::from_std(ahead).unwrap_or_default(),
        None => -chrono::Duration::from_std(real_now - tokio_now).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.clone().advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 1_700_000_002_000, "clones share the time");
    }

    #[test]
    fn a_clock_set_ahead_advances_alone() {
        let start = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let base = Clock::manual(start);
        let ahead = base.ahead_by(Duration::from_secs(60));
        ahead.advance(Duration::from_secs(1));
        assert_eq!(ahead.now_ms(), 1_700_000_061_000);
        assert_eq!(base.now(), start);
    }

    #[test]
    fn the_system_clock_is_the_host_time_outside_a_paused_runtime() {
        let before = Utc::now();
        let now = Clock::system().now();
        let after = Utc::now();
        // A few nanoseconds of difference between the two monotonic reads.
        let slack = chrono::Duration::milliseconds(1);
        assert!(now >= before - slack && now <= after + slack);
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_follows_a_paused_tokio_clock() {
        let clock = Clock::system();
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let moved = clock.now() - before;
        assert!(
            moved >= chrono::Duration::seconds(3600) && moved < chrono::Duration::seconds(3601),
            "{moved}"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        let moved = clock.now() - before;
        assert!(moved >= chrono::Duration::seconds(3660), "{moved}");
    }
}
