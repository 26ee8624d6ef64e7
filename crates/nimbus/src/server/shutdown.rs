//! Signals that stop the server, and the order it stops in: the phases the
//! [`nimbus_engine::lifecycle::Shutdown`] coordinator runs, with deadlines
//! derived from `--shutdown-grace`.

use std::time::Duration;

use nimbus_engine::lifecycle::{Phase, ServiceId};
use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the name of the first SIGINT or SIGTERM.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place that installs signal handlers"
)]
pub async fn wait_for_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("can install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// No phase waits less: stopping a process, writing the last batch of logs
/// or sending a response take their own time, however short the grace.
const MIN_WAIT: Duration = Duration::from_secs(2);

/// How long each phase may take, from `--shutdown-grace` (30 s by default,
/// which gives the 10 s and 5 s these phases always had).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Running invocations: the grace itself.
    pub grace: Duration,
    /// A third of it: WebSockets' `$disconnect`, workflow actors' last writes,
    /// messaging batches, stopping instances.
    pub step: Duration,
    /// A sixth of it: invocations cut off after the grace, the schedules'
    /// fire in progress, the listeners' last responses, the log flush.
    pub wind_down: Duration,
}

impl Deadlines {
    pub fn from_grace(grace: Duration) -> Self {
        Self {
            grace,
            step: (grace / 3).max(MIN_WAIT),
            wind_down: (grace / 6).max(MIN_WAIT),
        }
    }
}

/// The services `nimbus up` starts, as the plan names them.
pub struct Started {
    pub logs: ServiceId,
    pub scheduler: ServiceId,
    pub invoker: ServiceId,
    pub events: ServiceId,
    pub workflows: ServiceId,
    pub messaging: ServiceId,
    pub schedules: ServiceId,
    /// The S3 notification relay.
    pub object_events: ServiceId,
    pub websockets: ServiceId,
    /// Following other nodes' changes.
    pub followers: ServiceId,
    pub api: ServiceId,
    pub gateway: ServiceId,
}

/// Stop accepting, let running invocations finish, then stop everything else.
pub fn plan(s: &Started, d: Deadlines) -> Vec<Phase> {
    vec![
        // Other nodes' changes are no longer followed: no poller restarts.
        Phase::new("stop accepting").stop([s.api, s.gateway, s.followers]),
        // WebSockets are told 1001 (going away); their $disconnect runs before the drain.
        Phase::new("close WebSockets")
            .stop([s.websockets])
            .drain([s.websockets], d.step),
        // No new fires (a fire is accepted whole or not at all), and no new async
        // events are claimed from here on; queued ones wait for the next start.
        // S3 notifications not relayed yet stay in their outbox for the next
        // start or another node.
        Phase::new("stop schedules and the S3 notification relay")
            .stop([s.schedules, s.object_events])
            .drain([s.schedules, s.object_events], d.wind_down),
        // No new executions or tasks (steps in progress still persist); pollers
        // take no new batches; long polls end.
        Phase::new("stop async workers, workflows and messaging").stop([
            s.events,
            s.workflows,
            s.messaging,
        ]),
        // Those still running after the grace are stopped and their callers told so.
        Phase::new("drain invocations")
            .stop([s.invoker])
            .drain([s.invoker], d.grace)
            .cut_off(d.wind_down),
        Phase::new("finish workflows and messaging").drain([s.workflows, s.messaging], d.step),
        Phase::new("join listeners").drain([s.api, s.gateway], d.wind_down),
        Phase::new("stop the reaper and async workers")
            .stop([s.scheduler])
            .drain([s.events], d.wind_down),
        Phase::new("stop instances").drain([s.scheduler], d.step),
        Phase::new("flush logs")
            .stop([s.logs])
            .drain([s.logs], d.wind_down),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grace_keeps_the_old_waits_and_a_short_one_keeps_a_floor() {
        let d = Deadlines::from_grace(Duration::from_secs(30));
        assert_eq!(d.step, Duration::from_secs(10));
        assert_eq!(d.wind_down, Duration::from_secs(5));
        let d = Deadlines::from_grace(Duration::from_secs(1));
        assert_eq!(d.grace, Duration::from_secs(1));
        assert_eq!((d.step, d.wind_down), (MIN_WAIT, MIN_WAIT));
    }
}
