//! Schedules: rules that invoke a function (or start a workflow) at times given
//! by an EventBridge `rate(...)` or `cron(...)` expression.
//!
//! A fire goes through the [`Dispatcher`]'s asynchronous mode, so retries,
//! destinations and dead letters apply exactly as for any `Event` invocation. **Exactly once across
//! restarts**: the event of a fire and the record that it fired are written in
//! one transaction of the event queue ([`nimbus_store::FireLedger::enqueue_once`]);
//! after a crash the runner recomputes the next fire from that record, and a
//! fire already accepted is refused by the queue itself. Workflow targets get
//! the same guarantee from the execution name, which is derived from the fire
//! (Step Functions refuses a second execution of the same name and input).
//!
//! **Missed fires** (the server was down when one was due) follow the
//! schedule's policy: `skip` (the default, as EventBridge) resumes with the next
//! fire after now; `catch-up-once` fires once, at once, for the most recent
//! missed time.
//!
//! **Never a loop**: a next fire is always strictly later than the fire just
//! taken (and than the last recorded one at startup); if an expression ever
//! yielded otherwise, the schedule is disarmed and logged rather than fired
//! again at once, since a stored rule that refires in a loop would resume on
//! every restart.
//!
//! Time comes from a [`Clock`]; tests run the server with `--test-clock` and
//! advance it through the API, so a `rate(1 minute)` rule can be checked in
//! milliseconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use nimbus_core::Clock;
use nimbus_core::Target;
use nimbus_core::schedule::{MissedFires, Schedule, ScheduleRecord};
use nimbus_store::ScheduleStore;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Call, DispatchError, Dispatcher};
use crate::{EngineConfig, EngineError};

/// A schedule with its parsed expression and its next fire.
struct Armed {
    record: ScheduleRecord,
    schedule: Schedule,
    tz: Tz,
    next: Option<DateTime<Utc>>,
}

/// A schedule as shown to users.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub record: ScheduleRecord,
    /// The next fire time (RFC 3339, UTC); absent when disabled or exhausted.
    pub next_fire: Option<String>,
    pub last_fire: Option<String>,
}

pub struct Schedules {
    store: Arc<dyn ScheduleStore>,
    /// Where fires go, and where they are recorded.
    dispatcher: Arc<Dispatcher>,
    config: EngineConfig,
    /// The system clock, set ahead with `--test-clock`.
    clock: Clock,
    /// Whether the clock may be advanced (`--test-clock`).
    test_clock: bool,
    armed: Mutex<BTreeMap<String, Armed>>,
    wake: Notify,
    /// Serialises changes (create/replace/delete) with each other.
    writes: tokio::sync::Mutex<()>,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Longest the runner sleeps without looking again (a safety net; changes
/// and clock advances wake it at once).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Pause before a fire the store refused is tried again.
const STORE_RETRY: Duration = Duration::from_secs(1);

impl Schedules {
    pub fn new(
        store: Arc<dyn ScheduleStore>,
        dispatcher: Arc<Dispatcher>,
        config: EngineConfig,
        test_clock: Option<Duration>,
    ) -> Self {
        // A restart in a test continues from where the clock was, or later
        // (time the server was "down").
        let clock = Clock::system().ahead_by(test_clock.unwrap_or_default());
        let test_clock = test_clock.is_some();
        Self {
            store,
            dispatcher,
            config,
            clock,
            test_clock,
            armed: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Arms every stored schedule (missed fires follow each one's policy).
    pub async fn load(&self) -> Result<usize, EngineError> {
        let records = self.store.list().await?;
        let n = records.len();
        for record in records {
            match self.arm(record.clone()).await {
                Ok(armed) => {
                    self.armed.lock().unwrap().insert(record.name, armed);
                }
                Err(e) => tracing::warn!(schedule = %record.name, "schedule not armed: {e}"),
            }
        }
        self.wake.notify_one();
        Ok(n)
    }

    /// Moves the test clock forward (only with `--test-clock`).
    pub fn advance_clock(&self, by: Duration) -> Result<DateTime<Utc>, EngineError> {
        if !self.test_clock {
            return Err(EngineError::Invalid(nimbus_core::ValidationError::param(
                "the clock can only be advanced with --test-clock",
            )));
        }
        self.clock.advance(by);
        self.wake.notify_one();
        Ok(self.clock.now())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Creates (`create`) or replaces a schedule. A replaced schedule keeps its
    /// creation time (rates keep their phase) and its record of fires.
    pub async fn put(
        &self,
        mut record: ScheduleRecord,
        create: bool,
    ) -> Result<ScheduleView, EngineError> {
        let _w = self.writes.lock().await;
        let existing = self.store.get(&record.name).await?;
        match (&existing, create) {
            (Some(_), true) => {
                return Err(EngineError::Conflict(format!(
                    "schedule {} already exists",
                    record.name
                )));
            }
            (Some(old), false) => record.created_ms = old.created_ms,
            (None, _) => record.created_ms = self.clock.now().timestamp_millis(),
        }
        record.validate()?;
        self.check_target(&record).await?;
        let armed = self.arm(record.clone()).await?;
        self.store.put(&record, existing.is_none()).await?;
        let view = self.view(&armed, None);
        self.armed
            .lock()
            .unwrap()
            .insert(record.name.clone(), armed);
        self.wake.notify_one();
        Ok(view)
    }

    pub async fn delete(&self, name: &str) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        if !self.store.delete(name).await? {
            return Err(EngineError::NotFound(format!("schedule {name}")));
        }
        self.armed.lock().unwrap().remove(name);
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<ScheduleView, EngineError> {
        let last = self.last_fire_of(name).await;
        let armed = self.armed.lock().unwrap();
        armed
            .get(name)
            .map(|a| self.view(a, last))
            .ok_or_else(|| EngineError::NotFound(format!("schedule {name}")))
    }

    pub async fn list(&self) -> Vec<ScheduleView> {
        let names: Vec<String> = self.armed.lock().unwrap().keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            if let Ok(v) = self.get(&name).await {
                out.push(v);
            }
        }
        out
    }

    async fn last_fire_of(&self, name: &str) -> Option<i64> {
        let source = self
            .armed
            .lock()
            .unwrap()
            .get(name)
            .map(|a| a.record.fire_source())?;
        self.dispatcher.last_fired(&source).await.ok().flatten()
    }

    fn view(&self, a: &Armed, last: Option<i64>) -> ScheduleView {
        ScheduleView {
            record: a.record.clone(),
            next_fire: a.next.map(rfc3339),
            last_fire: last.map(|ms| rfc3339(from_ms(ms))),
        }
    }

    async fn check_target(&self, r: &ScheduleRecord) -> Result<(), EngineError> {
        if let Target::Function { name, .. } = &r.target {
            name.parse::<nimbus_core::FunctionName>()
                .map_err(EngineError::Invalid)?;
        }
        self.dispatcher
            .check(&r.target)
            .await
            .map_err(|e| match (&r.target, e) {
                (_, DispatchError::Function(e)) => e,
                (target, DispatchError::Workflow(_)) => {
                    EngineError::NotFound(format!("workflow {}", target.machine().unwrap_or("")))
                }
            })
    }

    /// Parses a record and finds its next fire, applying the missed-fire
    /// policy when the last recorded fire is further back than one period.
    async fn arm(&self, record: ScheduleRecord) -> Result<Armed, EngineError> {
        let (schedule, tz) = record.validate()?;
        let now = self.clock.now();
        let anchor = from_ms(record.created_ms);
        let last = self
            .dispatcher
            .last_fired(&record.fire_source())
            .await?
            .map(from_ms);
        let mut next = schedule.next_after(last.unwrap_or(anchor), anchor, tz);
        if let Some(due) = next
            && due <= now
        {
            next = match record.missed {
                MissedFires::Skip => schedule.next_after(now, anchor, tz),
                MissedFires::CatchUpOnce => {
                    Some(latest_at_or_before(&schedule, due, now, anchor, tz))
                }
            };
        }
        // Never again at or before a fire already taken (the clock went back).
        if let Some(last) = last
            && next.is_some_and(|t| t <= last)
        {
            next = schedule.next_after(last, anchor, tz);
        }
        if !record.enabled {
            next = None;
        }
        Ok(Armed {
            record,
            schedule,
            tz,
            next,
        })
    }

    /// Fires due schedules until cancelled.
    async fn fire_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let mut retry_soon = false;
            let now = self.clock.now();
            let due: Vec<(String, DateTime<Utc>)> = {
                let armed = self.armed.lock().unwrap();
                armed
                    .iter()
                    .filter_map(|(n, a)| a.next.filter(|t| *t <= now).map(|t| (n.clone(), t)))
                    .collect()
            };
            for (name, at) in due {
                retry_soon |= !self.fire(&name, at).await;
            }
            let sleep = {
                let armed = self.armed.lock().unwrap();
                armed
                    .values()
                    .filter_map(|a| a.next)
                    .min()
                    .map(|t| (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP)
            };
            // A fire the queue could not take stays due: look again after a
            // pause, not at once (a full disk must not become a busy loop).
            let sleep = if retry_soon {
                sleep.max(STORE_RETRY)
            } else {
                sleep
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Delivers one fire, then arms the next. A fire that cannot be delivered
    /// (its function was deleted) is logged and skipped, not retried forever.
    /// False when the store refused it and it stays due.
    async fn fire(&self, name: &str, at: DateTime<Utc>) -> bool {
        let Some(record) = self
            .armed
            .lock()
            .unwrap()
            .get(name)
            .filter(|a| a.next == Some(at))
            .map(|a| a.record.clone())
        else {
            return true;
        };
        let source = record.fire_source();
        let fire_ms = at.timestamp_millis();
        let payload = match &record.input {
            Some(input) => input.clone(),
            None => self.envelope(&record, at),
        };
        let mut call = Call::new(record.target.clone(), payload.to_string());
        if let Target::Workflow { .. } = &record.target {
            call.execution_name = Some(execution_name(&record.name, at));
        }
        let delivered = match self.dispatcher.enqueue_once(call, &source, fire_ms).await {
            Ok(_) => Ok(()),
            Err(DispatchError::Function(e)) => Err(e),
            Err(DispatchError::Workflow(e)) => Err(EngineError::NotFound(format!(
                "workflow {} ({e})",
                record.target.machine().unwrap_or("")
            ))),
        };
        if let Err(e) = &delivered {
            tracing::warn!(schedule = %name, at = %rfc3339(at), "schedule fire not delivered: {e}");
            if matches!(e, EngineError::Store(_)) {
                // The queue could not take it: try again on the next pass.
                return false;
            }
        }
        let now = self.clock.now();
        let mut armed = self.armed.lock().unwrap();
        if let Some(a) = armed.get_mut(name)
            && a.next == Some(at)
        {
            let anchor = from_ms(a.record.created_ms);
            a.next = a.schedule.next_after(at, anchor, a.tz);
            // Fallen behind by more than a period (the host slept, the clock
            // jumped): the fires in between are missed ones.
            if let Some(due) = a.next
                && due <= now
            {
                a.next = match a.record.missed {
                    MissedFires::Skip => a.schedule.next_after(now, anchor, a.tz),
                    MissedFires::CatchUpOnce => {
                        Some(latest_at_or_before(&a.schedule, due, now, anchor, a.tz))
                    }
                };
            }
            if let Some(next) = a.next
                && next <= at
            {
                tracing::error!(
                    schedule = %name, at = %rfc3339(at), next = %rfc3339(next),
                    "schedule disarmed: its next fire is not after the one just taken"
                );
                a.next = None;
            }
        }
        true
    }

    /// The EventBridge "Scheduled Event" envelope. Its id is derived from the
    /// fire, so a fire repeated after a crash carries the same event.
    fn envelope(&self, r: &ScheduleRecord, at: DateTime<Utc>) -> serde_json::Value {
        let digest = Sha256::digest(format!("{}@{}", r.fire_source(), at.timestamp_millis()));
        let id = uuid::Builder::from_random_bytes(digest[..16].try_into().unwrap_or([0; 16]))
            .into_uuid();
        json!({
            "version": "0",
            "id": id.to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.config.account_id,
            "time": rfc3339(at),
            "region": self.config.region,
            "resources": [format!(
                "arn:aws:events:{}:{}:rule/{}",
                self.config.region, self.config.account_id, r.name
            )],
            "detail": {},
        })
    }
}

/// The execution a workflow schedule starts for the fire at `at`
/// (Step Functions names: at most 80 characters of letters, digits, - and _).
fn execution_name(schedule: &str, at: DateTime<Utc>) -> String {
    let base: String = schedule
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .take(62)
        .collect();
    format!("{base}-{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The last fire at or before `now`, starting from the due fire `first`.
fn latest_at_or_before(
    schedule: &Schedule,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
    anchor: DateTime<Utc>,
    tz: Tz,
) -> DateTime<Utc> {
    if let Schedule::Rate { period_s } = schedule {
        let k = now.signed_duration_since(anchor).num_seconds() / (*period_s).max(1);
        return k
            .checked_mul(*period_s)
            .and_then(chrono::Duration::try_seconds)
            .and_then(|d| anchor.checked_add_signed(d))
            .filter(|t| *t >= first)
            .unwrap_or(first);
    }
    let mut latest = first;
    // Bounded: a minutely cron over a week of downtime is ~10k steps.
    for _ in 0..100_000 {
        match schedule.next_after(latest, anchor, tz) {
            Some(t) if t <= now => latest = t,
            _ => break,
        }
    }
    latest
}

/// Following other nodes: a schedule created, changed or deleted elsewhere
/// is armed, re-armed or disarmed here. An armed record equal to the stored
/// one is left alone (its next fire stays), so a node's own notices change
/// nothing.
impl Schedules {
    async fn follow(&self, name: &str) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        let stored = self.store.get(name).await?;
        self.follow_stored(name, stored).await
    }

    async fn follow_all(&self) -> Result<(), EngineError> {
        let _w = self.writes.lock().await;
        let stored: BTreeMap<String, ScheduleRecord> = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        self.armed
            .lock()
            .unwrap()
            .retain(|name, _| stored.contains_key(name));
        for (name, record) in stored {
            self.follow_stored(&name, Some(record)).await?;
        }
        Ok(())
    }

    async fn follow_stored(
        &self,
        name: &str,
        stored: Option<ScheduleRecord>,
    ) -> Result<(), EngineError> {
        let Some(record) = stored else {
            self.armed.lock().unwrap().remove(name);
            return Ok(());
        };
        let current = self
            .armed
            .lock()
            .unwrap()
            .get(name)
            .map(|a| a.record.clone());
        if current.as_ref() == Some(&record) {
            return Ok(());
        }
        match self.arm(record).await {
            Ok(armed) => {
                self.armed.lock().unwrap().insert(name.to_string(), armed);
                self.wake.notify_one();
            }
            // The fire ledger could not be read: try again.
            Err(e @ EngineError::Store(_)) => return Err(e),
            Err(e) => {
                // As at startup: a record this node cannot arm is not armed.
                tracing::warn!(schedule = %name, "schedule not armed: {e}");
                self.armed.lock().unwrap().remove(name);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::follow::Follower for Schedules {
    fn name(&self) -> &'static str {
        "schedules"
    }

    fn follows(&self, kind: nimbus_store::ChangeKind) -> bool {
        kind == nimbus_store::ChangeKind::Schedule
    }

    async fn changed(
        self: Arc<Self>,
        change: &nimbus_store::Change,
    ) -> Result<(), crate::follow::FollowError> {
        Ok(self.follow(&change.key).await?)
    }

    async fn resync(self: Arc<Self>) -> Result<(), crate::follow::FollowError> {
        Ok(self.follow_all().await?)
    }
}

/// Stopping the runner takes no new fires (a fire is accepted whole or not at all).
#[async_trait::async_trait]
impl crate::lifecycle::Service for Schedules {
    fn name(&self) -> &'static str {
        "schedules"
    }

    async fn run(
        self: Arc<Self>,
        ctx: crate::lifecycle::Context,
    ) -> Result<(), crate::lifecycle::ServiceError> {
        self.fire_loop(ctx.cancel).await;
        Ok(())
    }

    fn status(&self) -> String {
        format!("{} schedules armed", self.armed.lock().unwrap().len())
    }
}
