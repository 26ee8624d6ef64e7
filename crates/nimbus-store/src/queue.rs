//! The durable queue of asynchronous invocations, as three contracts.
//!
//! An `Event` invocation is acknowledged (202) only after it is in the queue
//! and the write is durable, so a power cut or SIGKILL right after the 202
//! loses nothing. Workers *claim* events with a lease; a claim that is never
//! completed (the worker died mid-invocation) expires and the event runs
//! again: delivery is at least once, as on Lambda.
//!
//! The contracts, each what one part of the engine needs:
//!
//! - [`InvocationQueue`]: the work itself (enqueue, claim with a lease,
//!   complete, retry later, give up to the dead letters);
//! - [`DeadLetters`]: what was given up (list, replay);
//! - [`FireLedger`]: the schedules' record of fires, so a fire is enqueued
//!   once across crashes (and, in a cluster, across nodes).
//!
//! A backend usually implements all three on one database (the embedded one,
//! `SqliteEventQueue`, is `events.db`): [`FireLedger::enqueue_once`] writes the
//! event and the fire in one transaction, and [`InvocationQueue::dead`] moves
//! an event to the dead letters.
//!
//! **Fair claims.** A claim takes events round-robin across the functions
//! that have some due, starting after the function served first last time,
//! and never more of a function than its budget, so a flood of events for one
//! function cannot starve another's.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::StoreError;

/// How long a claim of an event of a given function lasts, in milliseconds.
pub type LeaseFn = Arc<dyn Fn(&str) -> i64 + Send + Sync>;
/// How many more events of a function may be claimed now (its share of the
/// workers less those it holds), so one function cannot take every worker.
pub type BudgetFn = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// One queued asynchronous invocation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueuedEvent {
    pub id: String,
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    #[serde(serialize_with = "as_json")]
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// For dead events: when they were given up.
    pub failed_at_ms: Option<i64>,
    /// The function on whose authority the event was queued (its grant is
    /// re-checked before every attempt); none for operators and the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// The X-Ray trace header of the call that queued it; its `Lineage`
    /// counts the chain of events behind it (recursive loop detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

fn as_json<S: serde::Serializer>(payload: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v.serialize(s),
        Err(_) => String::from_utf8_lossy(payload).serialize(s),
    }
}

/// The queue of asynchronous invocations.
///
/// An event is *ready* from its enqueue until it is completed or given up
/// ([`InvocationQueue::dead`]). A ready event is *due* at its due time: its
/// enqueue time, then the end of each lease, then the time a retry asked for.
/// Events of one function are claimed in due order; ids are unique (a second
/// enqueue of an id fails with [`StoreError::Conflict`] and stores nothing).
#[async_trait]
pub trait InvocationQueue: Send + Sync + 'static {
    /// Durably stores an event, due at once (at its `enqueued_ms`); returns
    /// once it is durable.
    async fn enqueue(&self, event: &QueuedEvent) -> Result<(), StoreError>;
    /// Claims up to `limit` events due at `now_ms`, fairly across functions,
    /// each for the lease `lease_ms` gives its function.
    async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        self.claim_within(now_ms, limit, lease_ms, Arc::new(|_| usize::MAX))
            .await
    }
    /// [`InvocationQueue::claim`], taking at most `budget(f)` events of
    /// function `f`. A claimed event is due again when its lease ends (at
    /// `now_ms + lease_ms(f)`, at least 1 ms later): a worker that dies
    /// holding it loses it to the next claim after that.
    async fn claim_within(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
        budget: BudgetFn,
    ) -> Result<Vec<QueuedEvent>, StoreError>;
    /// The event ran to its end (acknowledged): remove it.
    async fn complete(&self, id: &str) -> Result<(), StoreError>;
    /// Run it again at `at_ms` (a negative acknowledgement with a delay),
    /// recording the attempts made and why the last one failed; its lease ends.
    async fn retry(
        &self,
        id: &str,
        at_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Give up: the event leaves the queue for the [`DeadLetters`], with its
    /// attempts, the last error and `now_ms` as its failure time.
    async fn dead(
        &self,
        id: &str,
        now_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    /// When the earliest ready event is (or becomes) due, leased ones
    /// included (for sleeping until then); `None` when the queue is empty.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// (ready events, waiting or running; enqueue time of the oldest), for metrics.
    async fn stats(&self) -> Result<(u64, Option<i64>), StoreError>;
}

/// The events the [`InvocationQueue`] gave up on (`nimbus dlq`).
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// The dead events (of `function` only, if given), oldest failure first.
    async fn list(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError>;
    /// Puts a dead event back in the queue, due and enqueued at `now_ms`,
    /// attempts reset. Returns whether there was such a dead event.
    async fn replay(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
}

/// The record of when each source (a schedule) last fired, paired with the
/// [`InvocationQueue`] its fires enqueue into.
///
/// A fire time only moves forward: recording a fire at or before the last
/// one recorded for the source changes nothing and reports false.
#[async_trait]
pub trait FireLedger: Send + Sync + 'static {
    /// Stores an event for the firing of `source` at `fire_ms`, unless
    /// `source` already fired at or after that time: the event and the record
    /// of the fire are written atomically, so a fire is never lost or repeated
    /// across crashes (or nodes). Returns whether it was enqueued.
    async fn enqueue_once(
        &self,
        event: &QueuedEvent,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, StoreError>;
    /// When `source` last fired (see [`FireLedger::enqueue_once`]).
    async fn last_fired(&self, source: &str) -> Result<Option<i64>, StoreError>;
    /// Records a fire of `source` at `fire_ms` that enqueued nothing here;
    /// returns false if it (or a later one) was already recorded.
    async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, StoreError>;
}
