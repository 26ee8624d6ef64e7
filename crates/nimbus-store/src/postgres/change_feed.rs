//! The cluster's change feed: PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! Why `NOTIFY`: a store announces its change from inside the transaction
//! that makes it ([`super::notify`]), and PostgreSQL delivers the notice to
//! every listening session when, and only if, that transaction commits; no
//! other channel between the nodes is needed.
//!
//! Each node keeps one session of its own `LISTEN`ing (a pooled one could be
//! handed to someone else) and a task that reads it, fanning the notices out
//! to the node's subscribers through a broadcast. Notices sent while that
//! session is down are lost, so when it comes back (after a backoff) the
//! task tells every subscriber to [`ChangeNotice::Resync`], and only once it
//! listens again: a reload done earlier could miss a change made before the
//! session was back. A payload this build cannot decode (a newer node's
//! kind) is a `Resync` too. The session re-issues its `LISTEN` now and then,
//! which both proves it alive (a silently dropped connection would
//! otherwise go unnoticed for hours) and is a no-op for the server.
//!
//! **Publish waits for its echo.** Delivery is asynchronous, so a notice
//! committed by [`ChangeFeed::publish`] could otherwise reach a subscription
//! made after `publish` returned. `publish` sends, in the same transaction,
//! a token on a channel only this node listens to; notices of one
//! transaction arrive in order, so once the token is back the notice has
//! been handed to every subscription of the node. (Nodes share no clock of
//! "before": a notice from another node is delivered whenever it arrives.)

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, Notification, Socket};

use super::{CHANGE_CHANNEL, Pg};
use crate::{
    Change, ChangeFeed, ChangeKind, ChangeNotice, ChangeStream, StoreError, check_change_key,
};

/// Notices a slow subscriber may fall behind by before it gets a
/// [`ChangeNotice::Resync`].
const BUFFER: usize = 1024;

/// How often the listening session proves it is alive, and how long it may
/// take to answer.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The first and the longest wait between attempts to listen again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long `publish` waits for its echo; past that the session is down,
/// and the `Resync` that follows its return covers the notice.
const ECHO_WAIT: Duration = Duration::from_secs(5);

/// How often a node says it is alive (for barriers), and how long after its
/// last word it stops being waited for.
const NODE_HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_SILENCE_MS: i64 = 3_000;
/// How often a barrier looks for its acknowledgements.
const BARRIER_POLL: Duration = Duration::from_millis(3);

/// The nodes a barrier waits for, and their acknowledgements.
const MIGRATIONS: &[&str] = &["CREATE TABLE nimbus_nodes (
        id TEXT PRIMARY KEY,
        heartbeat_ms BIGINT NOT NULL
     );
     CREATE TABLE nimbus_barrier_acks (
        token TEXT NOT NULL,
        node TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (token, node)
     );
     CREATE INDEX nimbus_barrier_acks_at ON nimbus_barrier_acks (at_ms);"];

/// The database's clock in milliseconds: every node's heartbeat and every
/// silence is judged by the one clock.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The change feed of one node of a cluster (see the module docs); its
/// listening task stops when it is dropped.
pub struct PgChangeFeed {
    pg: Pg,
    tx: broadcast::Sender<ChangeNotice>,
    echoes: Arc<Echoes>,
    listener: JoinHandle<()>,
    /// This node's id among the nodes barriers wait for.
    node: String,
    heartbeat: JoinHandle<()>,
}

/// The publishes of this node waiting for their echo.
struct Echoes {
    /// This node's own channel (`nimbus_echo_<random>`).
    channel: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl Echoes {
    fn new() -> Result<Self, StoreError> {
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Self {
            channel: format!("nimbus_echo_{}", hex::encode(node)),
            next: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new token and what hears its echo.
    fn expect(&self) -> (u64, oneshot::Receiver<()>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (heard, echo) = oneshot::channel();
        self.waiting().insert(token, heard);
        (token, echo)
    }

    /// The echo of `payload` came back.
    fn heard(&self, payload: &str) {
        let Ok(token) = payload.parse::<u64>() else {
            return;
        };
        if let Some(heard) = self.waiting().remove(&token) {
            let _ = heard.send(());
        }
    }

    /// The session was lost: no echo in flight will come back.
    fn release_all(&self) {
        for (_, heard) in self.waiting().drain() {
            let _ = heard.send(());
        }
    }
}

/// What the listening task keeps: where notices go, and the echoes awaited.
#[derive(Clone)]
struct Fanout {
    tx: broadcast::Sender<ChangeNotice>,
    echoes: Arc<Echoes>,
}

impl Fanout {
    /// Hands one notification on: an echo to its publish, a change to the
    /// subscribers.
    fn deliver(&self, n: &Notification) {
        if n.channel() == self.echoes.channel {
            self.echoes.heard(n.payload());
        } else {
            // No subscriber is not an error: nobody needed to know.
            let _ = self.tx.send(notice_of(n.payload()));
        }
    }

    /// `LISTEN` on both channels, as one statement.
    fn listen_statement(&self) -> String {
        format!("LISTEN {CHANGE_CHANNEL}; LISTEN {}", self.echoes.channel)
    }
}

/// A session listening on [`CHANGE_CHANNEL`]: the client (which keeps the
/// session open) and the connection (which yields the notices).
struct Session {
    client: Client,
    connection: Connection<Socket, NoTlsStream>,
}

impl PgChangeFeed {
    /// Starts listening on `pg`; returns once listening, so every change
    /// committed after this returns reaches the feed's subscribers.
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        let fanout = Fanout {
            tx: broadcast::channel(BUFFER).0,
            echoes: Arc::new(Echoes::new()?),
        };
        super::migrate(pg, "cluster", MIGRATIONS).await?;
        let session = listen(pg, &fanout).await?;
        let listener = tokio::spawn(keep_listening(pg.clone(), fanout.clone(), session));
        let node = fanout.echoes.channel.clone();
        let heartbeat = tokio::spawn(say_alive(pg.clone(), node.clone()));
        Ok(Self {
            pg: pg.clone(),
            tx: fanout.tx,
            echoes: fanout.echoes,
            listener,
            node,
            heartbeat,
        })
    }
}

/// Keeps this node among those barriers wait for, and clears old
/// acknowledgements.
async fn say_alive(pg: Pg, node: String) {
    let upsert = format!(
        "INSERT INTO nimbus_nodes (id, heartbeat_ms) VALUES ($1, {DB_NOW_MS})
         ON CONFLICT (id) DO UPDATE SET heartbeat_ms = EXCLUDED.heartbeat_ms"
    );
    let sweep = format!(
        "DELETE FROM nimbus_barrier_acks WHERE at_ms < {DB_NOW_MS} - 60000;
         DELETE FROM nimbus_nodes WHERE heartbeat_ms < {DB_NOW_MS} - 600000"
    );
    let mut beats = 0u64;
    loop {
        if let Ok(client) = pg.client().await {
            if let Err(e) = client.execute(&upsert, &[&node]).await {
                tracing::warn!("cannot record this node's heartbeat: {e}");
            }
            if beats.is_multiple_of(60) {
                let _ = client.batch_execute(&sweep).await;
            }
        }
        beats += 1;
        tokio::time::sleep(NODE_HEARTBEAT).await;
    }
}

impl PgChangeFeed {
    /// Commits `payload` on the change channel and `token` on this node's
    /// echo channel, in one transaction (so in that order).
    async fn send(&self, payload: &str, token: u64) -> Result<(), StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached("SELECT pg_notify($1, $2), pg_notify($3, $4)")
            .await?;
        client
            .execute(
                &statement,
                &[
                    &CHANGE_CHANNEL,
                    &payload,
                    &self.echoes.channel,
                    &token.to_string(),
                ],
            )
            .await?;
        Ok(())
    }
}

impl Drop for PgChangeFeed {
    fn drop(&mut self) {
        self.listener.abort();
        self.heartbeat.abort();
        // Leaving: barriers stop waiting for this node at once.
        let (pg, node) = (self.pg.clone(), self.node.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(client) = pg.client().await {
                    let _ = client
                        .execute("DELETE FROM nimbus_nodes WHERE id = $1", &[&node])
                        .await;
                }
            });
        }
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn publish(&self, kind: ChangeKind, key: &str) -> Result<(), StoreError> {
        check_change_key(key)?;
        let payload = Change {
            kind,
            key: key.to_string(),
        }
        .encode();
        let (token, echo) = self.echoes.expect();
        let sent = self.send(&payload, token).await;
        if sent.is_ok() {
            let _ = tokio::time::timeout(ECHO_WAIT, echo).await;
        }
        self.echoes.waiting().remove(&token);
        sent
    }

    fn subscribe(&self) -> ChangeStream {
        ChangeStream::new(&self.tx)
    }

    async fn barrier(&self, limit: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut token = [0u8; 12];
        getrandom::fill(&mut token).map_err(|e| StoreError::Task(e.to_string()))?;
        let token = hex::encode(token);
        // Notices are delivered in commit order: a node that applied this
        // one applied every change committed before it.
        self.publish(ChangeKind::Barrier, &token).await?;
        let client = self.pg.client().await?;
        let missing = client
            .prepare_cached(&format!(
                "SELECT count(*) FROM nimbus_nodes n
                 WHERE n.heartbeat_ms > {DB_NOW_MS} - {NODE_SILENCE_MS}
                   AND NOT EXISTS (SELECT 1 FROM nimbus_barrier_acks a
                                   WHERE a.token = $1 AND a.node = n.id)"
            ))
            .await?;
        loop {
            let waiting: i64 = client.query_one(&missing, &[&token]).await?.get(0);
            if waiting == 0 {
                return Ok(true);
            }
            if tokio::time::Instant::now() + BARRIER_POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(BARRIER_POLL).await;
        }
    }

    async fn acknowledge(&self, token: &str) -> Result<(), StoreError> {
        let client = self.pg.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO nimbus_barrier_acks (token, node, at_ms)
                     VALUES ($1, $2, {DB_NOW_MS}) ON CONFLICT DO NOTHING"
                ),
                &[&token, &self.node],
            )
            .await?;
        Ok(())
    }
}

/// What a notice's payload tells subscribers.
fn notice_of(payload: &str) -> ChangeNotice {
    Change::decode(payload).map_or(ChangeNotice::Resync, ChangeNotice::Changed)
}

/// Opens a session and `LISTEN`s on it, delivering whatever arrives
/// meanwhile.
async fn listen(pg: &Pg, fanout: &Fanout) -> Result<Session, StoreError> {
    let (client, mut connection) = pg.dedicated().await?;
    let listen = fanout.listen_statement();
    tokio::select! {
        listening = client.batch_execute(&listen) => listening?,
        ended = forward(&mut connection, fanout) => return Err(lost(ended)),
    }
    Ok(Session { client, connection })
}

/// Reads the session's notices until the session is lost; then listens
/// again (with backoff) and announces a `Resync`, for ever.
async fn keep_listening(pg: Pg, fanout: Fanout, mut session: Session) {
    loop {
        let error = tokio::select! {
            ended = forward(&mut session.connection, &fanout) => lost(ended),
            error = heartbeat(&session.client) => error,
        };
        tracing::warn!(%error, "change feed: lost the LISTEN session; listening again");
        drop(session);
        fanout.echoes.release_all();
        session = listen_again(&pg, &fanout).await;
        // Whatever was published while the session was down is lost.
        let _ = fanout.tx.send(ChangeNotice::Resync);
    }
}

/// Retries [`listen`], backing off, until it succeeds.
async fn listen_again(pg: &Pg, fanout: &Fanout) -> Session {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::time::sleep(backoff).await;
        match listen(pg, fanout).await {
            Ok(session) => return session,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "change feed: cannot listen");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Drives `connection`, delivering its notifications, until it ends.
async fn forward(
    connection: &mut Connection<Socket, NoTlsStream>,
    fanout: &Fanout,
) -> Result<(), tokio_postgres::Error> {
    poll_fn(|cx| {
        loop {
            match connection.poll_message(cx) {
                Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => fanout.deliver(&n),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Re-issues the `LISTEN` every [`HEARTBEAT`]; returns why once it fails or
/// goes unanswered.
async fn heartbeat(client: &Client) -> StoreError {
    let listen = format!("LISTEN {CHANGE_CHANNEL}");
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        match tokio::time::timeout(HEARTBEAT, client.batch_execute(&listen)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e.into(),
            Err(_) => return StoreError::Task("the LISTEN session stopped answering".into()),
        }
    }
}

/// The error of a session that ended.
fn lost(ended: Result<(), tokio_postgres::Error>) -> StoreError {
    match ended {
        Ok(()) => StoreError::Task("the LISTEN session was closed".into()),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::scratch::ScratchDatabase;

    const DELIVERY: Duration = Duration::from_secs(10);

    async fn next(sub: &mut ChangeStream) -> ChangeNotice {
        tokio::time::timeout(DELIVERY, sub.next())
            .await
            .expect("a notice in time")
            .expect("the feed is open")
    }

    /// Ends the LISTEN sessions on `db` (as a server restart or a network
    /// cut would); returns how many there were.
    async fn terminate_listeners(pg: &Pg, db: &ScratchDatabase) -> u64 {
        let client = pg.client().await.unwrap();
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
                &[&db.name()],
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_lost_session_yields_a_resync_then_notices_again() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        let feed = PgChangeFeed::open(&pg).await.unwrap();
        let mut sub = feed.subscribe();
        feed.publish(ChangeKind::Function, "f").await.unwrap();
        assert!(matches!(next(&mut sub).await, ChangeNotice::Changed(_)));
        assert_eq!(terminate_listeners(&pg, &db).await, 1);
        assert_eq!(next(&mut sub).await, ChangeNotice::Resync);
        feed.publish(ChangeKind::Schedule, "s").await.unwrap();
        assert_eq!(
            next(&mut sub).await,
            ChangeNotice::Changed(Change {
                kind: ChangeKind::Schedule,
                key: "s".into()
            })
        );
    }

    #[tokio::test]
    async fn an_unknown_payload_is_a_resync() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        let feed = PgChangeFeed::open(&pg).await.unwrap();
        let mut sub = feed.subscribe();
        let client = pg.client().await.unwrap();
        client
            .execute(
                "SELECT pg_notify($1, 'kind-of-a-newer-node:x')",
                &[&CHANGE_CHANNEL],
            )
            .await
            .unwrap();
        assert_eq!(next(&mut sub).await, ChangeNotice::Resync);
    }

    #[tokio::test]
    async fn dropping_the_feed_ends_its_session_and_subscriptions() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        let feed = PgChangeFeed::open(&pg).await.unwrap();
        let mut sub = feed.subscribe();
        drop(feed);
        let ended = tokio::time::timeout(DELIVERY, sub.next()).await.unwrap();
        assert_eq!(ended, None);
        // The session is closed with the task.
        let client = pg.client().await.unwrap();
        let listening = || async {
            let row = client
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                    &[&db.name()],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0)
        };
        let deadline = tokio::time::Instant::now() + DELIVERY;
        while listening().await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "session left open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
