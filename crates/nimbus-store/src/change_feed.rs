//! The change feed: how the nodes of a cluster learn that stored
//! configuration changed, so each can refresh what it keeps in memory (the
//! function registry, the gateway's compiled snapshot, the armed schedules,
//! the mapping pollers).
//!
//! A change is a *notification*, not the data: `(kind, key)` names a record
//! that was created, updated or deleted, and a subscriber re-reads that record
//! from its store (finding it gone means it was deleted). So applying a change
//! is idempotent, a change may be delivered more than once, and a late
//! re-read sees the latest state whatever happened in between. This is what
//! PostgreSQL `LISTEN`/`NOTIFY` gives (a short text payload, delivered to the
//! connections listening when it commits, lost across a reconnection), and
//! the contract is no stronger than that.
//!
//! Single node: [`LocalChangeFeed`], an in-process broadcast. The writer of a
//! change already updates its own node's memory; subscribers on that node
//! receive the change too and re-read, which changes nothing.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::StoreError;

/// The kinds of record whose changes are published. A key is the record's
/// name within its kind (a function name, `function:alias`, a route id, …),
/// at most [`MAX_CHANGE_KEY_BYTES`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A function, its versions or its aliases; the key is the function name.
    Function,
    /// A gateway route, function URL or gateway key; the key is its id.
    Gateway,
    /// A schedule; the key is its name.
    Schedule,
    /// An event source mapping; the key is its uuid.
    Mapping,
    /// An access key (function credentials included); the key is its id.
    AccessKey,
    /// A queue definition; the key is the queue name.
    Queue,
    /// A topic or one of its subscriptions; the key is the topic name.
    Topic,
    /// A state machine; the key is its ARN.
    StateMachine,
    /// Messages arrived in a queue (not a configuration change: a wake-up);
    /// the key is the queue name. Long polls waiting on any node return.
    Messages,
    /// A write barrier (see [`ChangeFeed::barrier`]); the key is its token.
    /// A node acknowledges it once it applied every notice before it.
    Barrier,
}

impl ChangeKind {
    /// Every kind, for decoding.
    pub const ALL: [ChangeKind; 10] = [
        ChangeKind::Function,
        ChangeKind::Gateway,
        ChangeKind::Schedule,
        ChangeKind::Mapping,
        ChangeKind::AccessKey,
        ChangeKind::Queue,
        ChangeKind::Topic,
        ChangeKind::StateMachine,
        ChangeKind::Messages,
        ChangeKind::Barrier,
    ];

    /// The kind's name on the wire (a `NOTIFY` payload is `tag:key`).
    pub fn tag(self) -> &'static str {
        match self {
            ChangeKind::Function => "function",
            ChangeKind::Gateway => "gateway",
            ChangeKind::Schedule => "schedule",
            ChangeKind::Mapping => "mapping",
            ChangeKind::AccessKey => "access-key",
            ChangeKind::Queue => "queue",
            ChangeKind::Topic => "topic",
            ChangeKind::StateMachine => "state-machine",
            ChangeKind::Messages => "messages",
            ChangeKind::Barrier => "barrier",
        }
    }
}

impl Change {
    /// `tag:key`, the payload a backend sends between nodes.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.kind.tag(), self.key)
    }

    /// The inverse of [`Change::encode`]; `None` for a payload this build
    /// does not know (a newer node's kind: its subscribers resync instead).
    pub fn decode(payload: &str) -> Option<Change> {
        let (tag, key) = payload.split_once(':')?;
        let kind = ChangeKind::ALL.into_iter().find(|k| k.tag() == tag)?;
        Some(Change {
            kind,
            key: key.to_string(),
        })
    }
}

/// Longest key a change may carry (PostgreSQL's `NOTIFY` payload is at most
/// 8000 bytes; names here are far shorter).
pub const MAX_CHANGE_KEY_BYTES: usize = 1024;

/// One published change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: String,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeNotice {
    /// This record changed: re-read it.
    Changed(Change),
    /// Changes may have been missed (the subscriber fell behind, or the
    /// backend lost its connection and got it back): re-read everything the
    /// subscriber keeps.
    Resync,
}

/// A subscription to a [`ChangeFeed`]: the notices published after it was
/// made, in publication order for each publishing node.
pub struct ChangeStream {
    rx: broadcast::Receiver<ChangeNotice>,
}

impl ChangeStream {
    /// A stream of what is sent on `tx` from now on. A backend feeds one
    /// broadcast per node from its source (a `LISTEN` connection) and sends
    /// [`ChangeNotice::Resync`] itself when that source was interrupted.
    pub fn new(tx: &broadcast::Sender<ChangeNotice>) -> Self {
        Self { rx: tx.subscribe() }
    }

    /// The next notice; `None` once the feed is gone. A subscriber that
    /// fell behind by more than the feed buffers gets [`ChangeNotice::Resync`].
    pub async fn next(&mut self) -> Option<ChangeNotice> {
        match self.rx.recv().await {
            Ok(notice) => Some(notice),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ChangeNotice::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Publishes and delivers changes of stored configuration to every node.
///
/// - [`ChangeFeed::publish`] is called after the change is durably stored
///   (committed), never before: a subscriber that re-reads on the notice
///   must find it.
/// - Every subscription made before a publish receives it, on every node,
///   the publisher's included; a subscription receives nothing published
///   before it was made (a new subscriber loads everything first, then
///   applies notices).
/// - Changes from one node arrive in the order it published them; there is
///   no order across nodes (each notice is re-read, so none is needed).
/// - Delivery is at most once per subscription, except that anything missed
///   is announced by a [`ChangeNotice::Resync`]; a subscriber that handles
///   `Resync` by reloading misses no change.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Announces that the record `key` of `kind` changed. `key` is at most
    /// [`MAX_CHANGE_KEY_BYTES`] bytes (longer: [`StoreError::Invalid`]).
    async fn publish(&self, kind: ChangeKind, key: &str) -> Result<(), StoreError>;
    /// Subscribes from now on.
    fn subscribe(&self) -> ChangeStream;

    /// Read-your-writes across nodes: returns once every live node has
    /// applied every change committed before the call (each acknowledged a
    /// [`ChangeKind::Barrier`] notice published now), or after `limit`
    /// (returning `false`: a node is slow or gone). A node that served a
    /// configuration write calls this before answering, so the client's
    /// next request finds the change in force whichever node it reaches.
    /// One node has nobody to wait for.
    async fn barrier(&self, limit: std::time::Duration) -> Result<bool, StoreError> {
        let _ = limit;
        Ok(true)
    }

    /// Called on each node once it applied every notice received before
    /// the barrier `token`.
    async fn acknowledge(&self, token: &str) -> Result<(), StoreError> {
        let _ = token;
        Ok(())
    }
}

tokio::task_local! {
    /// Set while a request runs under [`noting_changes`].
    static CHANGES_NOTED: std::cell::Cell<bool>;
}

/// Runs `work` and says whether it committed a change that other nodes
/// follow (a backend calls [`note_change`] when it announces one from the
/// task running `work`).
pub async fn noting_changes<F: std::future::Future>(work: F) -> (F::Output, bool) {
    CHANGES_NOTED
        .scope(std::cell::Cell::new(false), async move {
            let out = work.await;
            (out, CHANGES_NOTED.with(|c| c.get()))
        })
        .await
}

/// Records, for [`noting_changes`], that the current task announced a change.
pub fn note_change() {
    let _ = CHANGES_NOTED.try_with(|c| c.set(true));
}

/// Checks a key against [`MAX_CHANGE_KEY_BYTES`]; for backends.
pub fn check_change_key(key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_CHANGE_KEY_BYTES {
        return Err(StoreError::Invalid(nimbus_core::ValidationError::param(
            format!("change key longer than {MAX_CHANGE_KEY_BYTES} bytes"),
        )));
    }
    Ok(())
}

/// The single-node feed: an in-process broadcast.
pub struct LocalChangeFeed {
    tx: broadcast::Sender<ChangeNotice>,
}

/// Notices a slow local subscriber may fall behind by before it gets a
/// [`ChangeNotice::Resync`].
const LOCAL_BUFFER: usize = 1024;

impl Default for LocalChangeFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(LOCAL_BUFFER).0,
        }
    }
}

#[async_trait]
impl ChangeFeed for LocalChangeFeed {
    async fn publish(&self, kind: ChangeKind, key: &str) -> Result<(), StoreError> {
        check_change_key(key)?;
        // No subscriber is not an error: nobody needed to know.
        let _ = self.tx.send(ChangeNotice::Changed(Change {
            kind,
            key: key.to_string(),
        }));
        Ok(())
    }

    fn subscribe(&self) -> ChangeStream {
        ChangeStream::new(&self.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_payload() {
        for kind in ChangeKind::ALL {
            let change = Change {
                kind,
                key: "fn:alias:with:colons".into(),
            };
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode("no-such-kind:x"), None);
        assert_eq!(Change::decode("nocolon"), None);
    }
}
