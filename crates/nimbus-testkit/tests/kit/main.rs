//! In-process engine tests on the test kit: one binary, linked once.
//!
//! Scheduler tests run on tokio's paused clock (`start_paused`): instance
//! latencies of seconds cost no real time. The async-queue and schedule tests
//! run on the real clock with millisecond settings, because the queue's retry
//! times and the schedules' clock read the wall clock today (see the kit's
//! notes); they still finish in well under a second each.

mod async_invocations;
mod follow_changes;
mod scheduler;
mod schedules;
mod workspace_rules;
