//! Following the change feed: how a node's in-memory views (the function
//! registry, the gateway's snapshot, the armed schedules, the mapping
//! pollers, long polls) stay in force when another node changes what they
//! were loaded from.
//!
//! Each view has a [`Follower`] next to it, which re-reads the one record a
//! notice names (finding it gone means it was deleted) or, on
//! [`ChangeNotice::Resync`], everything it keeps. [`FollowChanges`] runs them
//! all as one [`Service`]. Its subscription is taken before the views load
//! (the server subscribes first), so a change committed while they load is
//! applied afterwards rather than missed.
//!
//! Each follower gets its own lane (a task fed by a short broadcast of its
//! own): rebuilding a function whose code changed unpacks a package, and that
//! must not hold back a route change behind it. A lane that falls behind gets
//! a `Resync`, the same answer the feed gives a node that lost notices. A
//! follower whose re-read fails (the database is away) resyncs once it can,
//! so a failure delays a change, never loses it.
//!
//! Topics and their subscriptions, state machines and bucket notification
//! rules have no follower, and a queue's change only wakes its long polls:
//! they are read from their stores at each use, so a change is in force on
//! every node as soon as it is committed. Access keys' secrets are cached by the key store, which
//! keeps that cache in step itself.
//!
//! A [`ChangeKind::Barrier`] notice (a node that served a configuration
//! write waits for every node to apply it before answering) is acknowledged
//! once every lane has applied everything routed to it before the barrier.
//!
//! On one node (SQLite, [`nimbus_store::LocalChangeFeed`]) the only notices
//! are the node's own, whose re-read finds the view already up to date, so
//! following changes nothing there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nimbus_store::{Change, ChangeFeed, ChangeKind, ChangeNotice, ChangeStream};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lifecycle::{Context, Service, ServiceError};

/// Why a follower could not bring its view up to date (a store error, most
/// likely); its lane retries with a resync.
pub type FollowError = Box<dyn std::error::Error + Send + Sync>;

/// Keeps one in-memory view in step with the stored records it was loaded
/// from. Both methods are idempotent: a notice may arrive twice, late, or
/// for a change this node made itself.
#[async_trait::async_trait]
pub trait Follower: Send + Sync + 'static {
    /// The view's name, for the log.
    fn name(&self) -> &'static str;
    /// Whether the view keeps (or waits on) records of `kind`.
    fn follows(&self, kind: ChangeKind) -> bool;
    /// Re-reads the record `change` names and updates the view.
    async fn changed(self: Arc<Self>, change: &Change) -> Result<(), FollowError>;
    /// Re-reads everything the view keeps.
    async fn resync(self: Arc<Self>) -> Result<(), FollowError>;
}

/// Notices a lane may fall behind by before it resyncs instead.
const LANE_BUFFER: usize = 256;
/// Pause before a follower whose re-read failed tries again.
const RETRY: Duration = Duration::from_millis(500);

/// One follower and the notices for it.
struct Lane {
    follower: Arc<dyn Follower>,
    tx: broadcast::Sender<ChangeNotice>,
    /// Taken by the lane's task when the service starts.
    rx: std::sync::Mutex<Option<ChangeStream>>,
    progress: Arc<Progress>,
}

/// How far a lane is: notices routed to it, and notices it has applied
/// (a resync applies every notice routed before it began).
#[derive(Default)]
struct Progress {
    routed: AtomicU64,
    applied: AtomicU64,
    advanced: Notify,
}

impl Progress {
    /// Waits until the lane applied its first `routed` notices.
    async fn reached(&self, routed: u64) {
        loop {
            let advanced = self.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if self.applied.load(Ordering::Acquire) >= routed {
                return;
            }
            advanced.await;
        }
    }

    fn applied_up_to(&self, routed: u64) {
        self.applied.fetch_max(routed, Ordering::AcqRel);
        self.advanced.notify_waiters();
    }
}

/// The service that runs every follower of a node.
pub struct FollowChanges {
    feed: std::sync::Mutex<Option<ChangeStream>>,
    /// Where barriers are acknowledged.
    changes: Arc<dyn ChangeFeed>,
    lanes: Vec<Lane>,
    tracker: TaskTracker,
}

impl FollowChanges {
    /// Runs `followers` on the notices of `feed`, a subscription to
    /// `changes` taken before their views were loaded.
    pub fn new(
        feed: ChangeStream,
        changes: Arc<dyn ChangeFeed>,
        followers: Vec<Arc<dyn Follower>>,
    ) -> Self {
        let lanes = followers
            .into_iter()
            .map(|follower| {
                let tx = broadcast::channel(LANE_BUFFER).0;
                let rx = std::sync::Mutex::new(Some(ChangeStream::new(&tx)));
                Lane {
                    follower,
                    tx,
                    rx,
                    progress: Arc::default(),
                }
            })
            .collect();
        Self {
            feed: std::sync::Mutex::new(Some(feed)),
            changes,
            lanes,
            tracker: TaskTracker::new(),
        }
    }

    /// Hands each notice to the lanes that follow its kind; acknowledges a
    /// barrier once every lane applied what it was handed before it.
    fn route(&self, notice: &ChangeNotice) {
        if let ChangeNotice::Changed(c) = notice
            && c.kind == ChangeKind::Barrier
        {
            let waits: Vec<_> = self
                .lanes
                .iter()
                .map(|l| {
                    (
                        l.progress.clone(),
                        l.progress.routed.load(Ordering::Acquire),
                    )
                })
                .collect();
            let (changes, token) = (self.changes.clone(), c.key.clone());
            self.tracker.spawn(async move {
                for (progress, routed) in waits {
                    progress.reached(routed).await;
                }
                if let Err(e) = changes.acknowledge(&token).await {
                    tracing::warn!("cannot acknowledge a change barrier: {e}");
                }
            });
            return;
        }
        for lane in &self.lanes {
            let wanted = match notice {
                ChangeNotice::Changed(c) => lane.follower.follows(c.kind),
                ChangeNotice::Resync => true,
            };
            if wanted {
                lane.progress.routed.fetch_add(1, Ordering::AcqRel);
                // A lane whose task is gone (shutdown) needs nothing.
                let _ = lane.tx.send(notice.clone());
            }
        }
    }
}

/// Applies one lane's notices until cancelled.
async fn run_lane(
    follower: Arc<dyn Follower>,
    mut notices: ChangeStream,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let mut resync_due = false;
    // Notices taken from the lane's queue so far.
    let mut taken = 0u64;
    loop {
        let notice = if resync_due {
            ChangeNotice::Resync
        } else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                n = notices.next() => match n {
                    Some(n) => n,
                    None => return,
                },
            }
        };
        // A resync (asked for, or because the lane fell behind) covers
        // everything routed so far; a change covers itself.
        let covers = match notice {
            ChangeNotice::Resync => progress.routed.load(Ordering::Acquire),
            ChangeNotice::Changed(_) => {
                taken += 1;
                taken
            }
        };
        if matches!(notice, ChangeNotice::Resync) {
            taken = covers;
        }
        let applied = match &notice {
            ChangeNotice::Changed(change) => follower.clone().changed(change).await,
            ChangeNotice::Resync => follower.clone().resync().await,
        };
        resync_due = match applied {
            Ok(()) => {
                progress.applied_up_to(covers);
                false
            }
            Err(e) => {
                tracing::warn!(
                    view = follower.name(),
                    "cannot follow {notice:?}: {e}; resyncing in {RETRY:?}"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => true,
                }
            }
        };
    }
}

#[async_trait::async_trait]
impl Service for FollowChanges {
    fn name(&self) -> &'static str {
        "change followers"
    }

    async fn run(self: Arc<Self>, ctx: Context) -> Result<(), ServiceError> {
        let mut feed = self
            .feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or("started twice")?;
        for lane in &self.lanes {
            let notices = lane.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(notices) = notices {
                self.tracker.spawn(run_lane(
                    lane.follower.clone(),
                    notices,
                    lane.progress.clone(),
                    ctx.cancel.clone(),
                ));
            }
        }
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                notice = feed.next() => match notice {
                    Some(notice) => self.route(&notice),
                    None => return Err("the change feed closed".into()),
                },
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        Ok(())
    }

    fn status(&self) -> String {
        let names: Vec<&str> = self.lanes.iter().map(|l| l.follower.name()).collect();
        format!("following changes for {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nimbus_store::{ChangeFeed, LocalChangeFeed};

    use super::*;

    /// A view of one kind that records what it was asked to do, takes
    /// `pace` over each re-read, and fails its first `failures` (a database
    /// that is away).
    struct Recorder {
        kind: ChangeKind,
        pace: Duration,
        failures: AtomicUsize,
        seen: Mutex<Vec<ChangeNotice>>,
    }

    impl Recorder {
        fn new(kind: ChangeKind, failures: usize, pace: Duration) -> Arc<Self> {
            Arc::new(Self {
                kind,
                pace,
                failures: AtomicUsize::new(failures),
                seen: Mutex::new(Vec::new()),
            })
        }

        fn seen(&self) -> Vec<ChangeNotice> {
            self.seen.lock().unwrap().clone()
        }

        async fn record(&self, notice: ChangeNotice) -> Result<(), FollowError> {
            tokio::time::sleep(self.pace).await;
            self.seen.lock().unwrap().push(notice);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err("the database is away".into());
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Follower for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn follows(&self, kind: ChangeKind) -> bool {
            kind == self.kind
        }

        async fn changed(self: Arc<Self>, change: &Change) -> Result<(), FollowError> {
            self.record(ChangeNotice::Changed(change.clone())).await
        }

        async fn resync(self: Arc<Self>) -> Result<(), FollowError> {
            self.record(ChangeNotice::Resync).await
        }
    }

    fn changed(kind: ChangeKind, key: &str) -> ChangeNotice {
        ChangeNotice::Changed(Change {
            kind,
            key: key.into(),
        })
    }

    fn start(feed: &Arc<LocalChangeFeed>, followers: Vec<Arc<dyn Follower>>) -> CancellationToken {
        let cancel = CancellationToken::new();
        let service = Arc::new(FollowChanges::new(
            feed.subscribe(),
            feed.clone(),
            followers,
        ));
        tokio::spawn(service.run(Context {
            cancel: cancel.clone(),
        }));
        cancel
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_view_gets_the_notices_of_its_kinds_only() {
        let feed = Arc::new(LocalChangeFeed::default());
        let functions = Recorder::new(ChangeKind::Function, 0, Duration::ZERO);
        let schedules = Recorder::new(ChangeKind::Schedule, 0, Duration::ZERO);
        let _stop = start(&feed, vec![functions.clone(), schedules.clone()]).drop_guard();
        feed.publish(ChangeKind::Function, "f").await.unwrap();
        feed.publish(ChangeKind::Schedule, "tick").await.unwrap();
        feed.publish(ChangeKind::Function, "g").await.unwrap();
        settle().await;
        assert_eq!(
            functions.seen(),
            [
                changed(ChangeKind::Function, "f"),
                changed(ChangeKind::Function, "g")
            ]
        );
        assert_eq!(schedules.seen(), [changed(ChangeKind::Schedule, "tick")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_re_read_is_made_good_by_a_resync() {
        let feed = Arc::new(LocalChangeFeed::default());
        let view = Recorder::new(ChangeKind::Gateway, 2, Duration::ZERO);
        let _stop = start(&feed, vec![view.clone()]).drop_guard();
        feed.publish(ChangeKind::Gateway, "r-1").await.unwrap();
        settle().await;
        assert_eq!(view.seen(), [changed(ChangeKind::Gateway, "r-1")]);
        tokio::time::sleep(RETRY * 2 + Duration::from_millis(50)).await;
        assert_eq!(
            view.seen(),
            [
                changed(ChangeKind::Gateway, "r-1"),
                ChangeNotice::Resync,
                ChangeNotice::Resync
            ],
            "resynced until it succeeded"
        );
        tokio::time::sleep(RETRY * 4).await;
        assert_eq!(view.seen().len(), 3, "and then no more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_view_that_falls_behind_resyncs() {
        let feed = Arc::new(LocalChangeFeed::default());
        let view = Recorder::new(ChangeKind::Mapping, 0, Duration::from_millis(1));
        let _stop = start(&feed, vec![view.clone()]).drop_guard();
        for i in 0..LANE_BUFFER + 10 {
            feed.publish(ChangeKind::Mapping, &i.to_string())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = view.seen();
        assert!(
            seen.contains(&ChangeNotice::Resync),
            "{} notices",
            seen.len()
        );
        assert!(
            seen.len() < LANE_BUFFER + 10,
            "the missed ones were skipped"
        );
    }
}
