//! Keep-alive policies decide how long an idle instance stays warm.
//!
//! A fixed timeout is the industry default (Lambda keeps environments for minutes,
//! Azure for 20). Smarter policies (the hybrid histogram of "Serverless in the Wild")
//! learn per function from the invocation stream they are shown here.

use std::time::{Duration, Instant};

pub trait KeepAlivePolicy: Send + Sync + 'static {
    /// How long an idle instance of `function` may stay warm.
    fn keep_alive(&self, function: &str) -> Duration;
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
