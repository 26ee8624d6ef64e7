//! The cluster's event queue: one table every node enqueues into and every
//! node's workers claim from, implementing [`InvocationQueue`],
//! [`DeadLetters`] and [`FireLedger`] (a dead letter is a row in state
//! `dead`; the schedules' fires are a table beside it).
//!
//! **Group commit.** A 202 waits for the commit of its event, and a commit
//! waits for the WAL to reach the disk (`synchronous_commit` stays on): one
//! transaction per event would cap a node at its disk's flush rate. Enqueues
//! that arrive together are sent as one multi-row `INSERT` over `UNNEST`
//! arrays instead (one round trip, one flush), a few batches in flight at
//! once, so batches grow with the load. A taken id fails its own enqueue
//! only (`ON CONFLICT DO NOTHING`, then `Conflict` for the ids not inserted).
//! Completions, as frequent as enqueues, are batched the same way (one
//! `DELETE … = ANY`).
//!
//! **Claims across nodes.** Workers on every node claim with
//! `FOR UPDATE SKIP LOCKED`: two claims never wait on each other, and a row
//! another claim leased since this one's snapshot is re-checked and skipped.
//! As in the embedded queue, a claimed event's `due_ms` moves to the end of
//! its lease, so an expired lease needs no sweep (the event is simply due).
//! The round-robin cursor of fair claims is per node.
//!
//! **No lease reset at open.** The embedded queue releases every lease when
//! it opens, since on a single node they belonged to workers that died with
//! the previous process. Here other nodes hold live leases: a node that
//! (re)starts must not take their events, so a dead node's claims come back
//! only when their leases expire.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::Row;

use super::{Pg, is_unique_violation, migrate};
use crate::StoreError;
use crate::queue::{BudgetFn, DeadLetters, FireLedger, InvocationQueue, LeaseFn, QueuedEvent};

/// The schema of the queue, one step per version (see [`migrate`]).
/// `function` compares bytewise (`COLLATE "C"`), the order the round-robin
/// cursor of fair claims walks.
const MIGRATIONS: &[&str] = &[
    // v1: events (ready, leased or dead) and the fire ledger.
    "CREATE TABLE queued_events (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        function TEXT COLLATE \"C\" NOT NULL,
        qualifier TEXT,
        payload BYTEA NOT NULL,
        enqueued_ms BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        due_ms BIGINT NOT NULL,
        leased_until_ms BIGINT,
        state TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'dead')),
        error TEXT,
        failed_at_ms BIGINT,
        creator TEXT,
        trace TEXT
     );
     -- The one index of ready events: claims (the functions with ready
     -- events, then each one's due events) and next_due (each function's
     -- first). A global (due_ms) index would tempt the planner to scan a
     -- flood of another function's due events to find a few of this one's,
     -- and every index costs each enqueue and claim; stats counts every
     -- ready row whatever the index.
     CREATE INDEX queued_events_function_due ON queued_events (function, due_ms)
        WHERE state = 'ready';
     -- Dead letters, all or of one function, oldest failure first.
     CREATE INDEX queued_events_dead ON queued_events (failed_at_ms) WHERE state = 'dead';
     CREATE INDEX queued_events_dead_function ON queued_events (function, failed_at_ms)
        WHERE state = 'dead';
     CREATE TABLE fires (
        source TEXT PRIMARY KEY,
        last_ms BIGINT NOT NULL
     );",
];

/// Most writes sent in one statement.
const MAX_BATCH: usize = 1024;

/// Batches being committed at once (each holds a pooled connection).
const BATCHES_IN_FLIGHT: usize = 4;

/// The columns a [`QueuedEvent`] is read from, in [`event_of`]'s order.
const COLUMNS: &str = "id, request_id, function, qualifier, payload, enqueued_ms, attempts, error, failed_at_ms, creator, trace";

/// The event queue of a cluster (see the module docs).
pub struct PgEventQueue {
    pg: Pg,
    /// Enqueues waiting for the next group commit.
    enqueues: GroupCommit<QueuedEvent>,
    /// Completions (event ids) waiting for the next group commit.
    completions: GroupCommit<String>,
    /// The function served first by this node's last claim (round-robin cursor).
    cursor: Mutex<String>,
}

/// Writes of one kind waiting to be committed together; dropping it stops
/// its batcher once that has committed what it was given.
struct GroupCommit<T> {
    pending: mpsc::UnboundedSender<Pending<T>>,
}

/// A write waiting for its batch's commit, and who to tell how it went.
struct Pending<T> {
    write: T,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts a batcher that hands the writes waiting at each moment to
    /// `commit` (which answers each), up to [`BATCHES_IN_FLIGHT`] batches at
    /// once.
    fn start<C, F>(pg: &Pg, commit: C) -> Self
    where
        C: Fn(Pg, Vec<Pending<T>>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (pending, waiting) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(pg.clone(), waiting, commit));
        Self { pending }
    }

    /// Adds `write` to the next batch; answers once that batch committed.
    async fn write(&self, write: T) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Task("the event queue batcher has stopped".into());
        self.pending
            .send(Pending { write, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The batcher loop of a [`GroupCommit`]; ends when it is dropped.
async fn commit_batches<T, C, F>(
    pg: Pg,
    mut waiting: mpsc::UnboundedReceiver<Pending<T>>,
    commit: C,
) where
    C: Fn(Pg, Vec<Pending<T>>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        // Wait for a free slot first: meanwhile the next batch grows.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let committing = commit(pg.clone(), batch);
        tokio::spawn(async move {
            committing.await;
            drop(slot);
        });
    }
}

/// Tells every caller of a batch that failed as a whole why.
fn fail_all<T>(batch: Vec<Pending<T>>, e: &StoreError) {
    let failure = e.to_string();
    for p in batch {
        let _ = p.reply.send(Err(StoreError::Task(format!(
            "event queue commit failed: {failure}"
        ))));
    }
}

impl PgEventQueue {
    /// Opens the queue on `pg`, bringing its schema up to date, and starts
    /// this node's batchers (see the module docs).
    pub async fn open(pg: &Pg) -> Result<Self, StoreError> {
        migrate(pg, "event queue", MIGRATIONS).await?;
        Ok(Self {
            pg: pg.clone(),
            enqueues: GroupCommit::start(pg, |pg, batch| async move {
                commit_enqueues(&pg, batch).await
            }),
            completions: GroupCommit::start(pg, |pg, batch| async move {
                commit_completions(&pg, batch).await
            }),
            cursor: Mutex::new(String::new()),
        })
    }

    /// Runs one statement that changes rows; returns how many it changed.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.execute(&statement, params).await?)
    }

    /// Runs one query and reads the events it returns.
    async fn events(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(sql).await?;
        client
            .query(&statement, params)
            .await?
            .iter()
            .map(event_of)
            .collect()
    }
}

/// Inserts a batch of events in one statement and answers each caller: a
/// taken id (in the table or earlier in the batch) is that caller's
/// `Conflict`, the others are stored.
async fn commit_enqueues(pg: &Pg, batch: Vec<Pending<QueuedEvent>>) {
    let mut ids = HashSet::with_capacity(batch.len());
    let (unique, repeated): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|p| ids.insert(p.write.id.clone()));
    for p in repeated {
        let _ = p.reply.send(Err(taken(&p.write.id)));
    }
    let events: Vec<&QueuedEvent> = unique.iter().map(|p| &p.write).collect();
    match insert_events(pg, &events).await {
        Ok(inserted) => {
            for p in unique {
                let result = if inserted.contains(&p.write.id) {
                    Ok(())
                } else {
                    Err(taken(&p.write.id))
                };
                let _ = p.reply.send(result);
            }
        }
        Err(e) => fail_all(unique, &e),
    }
}

/// Removes a batch of completed events in one statement.
async fn commit_completions(pg: &Pg, batch: Vec<Pending<String>>) {
    let ids: Vec<&str> = batch.iter().map(|p| p.write.as_str()).collect();
    let deleted = async {
        let client = pg.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM queued_events WHERE id = ANY($1)")
            .await?;
        client.execute(&statement, &[&ids]).await?;
        Ok::<_, StoreError>(())
    }
    .await;
    match deleted {
        Ok(()) => {
            for p in batch {
                let _ = p.reply.send(Ok(()));
            }
        }
        Err(e) => fail_all(batch, &e),
    }
}

/// The error of an enqueue whose id is taken.
fn taken(id: &str) -> StoreError {
    StoreError::Conflict(format!("event {id}"))
}

/// Inserts `events` (distinct ids), each due at its enqueue time, in one
/// statement; returns the ids inserted (the others were taken).
async fn insert_events(pg: &Pg, events: &[&QueuedEvent]) -> Result<HashSet<String>, StoreError> {
    let client = pg.client().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO queued_events
                (id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, creator, trace)
             SELECT id, request_id, function, qualifier, payload, enqueued_ms, attempts, enqueued_ms, creator, trace
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                         $6::int8[], $7::int8[], $8::text[], $9::text[])
                AS e(id, request_id, function, qualifier, payload, enqueued_ms, attempts, creator, trace)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .await?;
    let column = |f: fn(&QueuedEvent) -> &str| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let optional =
        |f: fn(&QueuedEvent) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let rows = client
        .query(
            &statement,
            &[
                &column(|e| &e.id),
                &column(|e| &e.request_id),
                &column(|e| &e.function),
                &optional(|e| e.qualifier.as_deref()),
                &events
                    .iter()
                    .map(|e| e.payload.as_slice())
                    .collect::<Vec<_>>(),
                &events.iter().map(|e| e.enqueued_ms).collect::<Vec<_>>(),
                &events
                    .iter()
                    .map(|e| i64::from(e.attempts))
                    .collect::<Vec<_>>(),
                &optional(|e| e.creator.as_deref()),
                &optional(|e| e.trace.as_deref()),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Reads a row of [`COLUMNS`].
fn event_of(r: &Row) -> Result<QueuedEvent, StoreError> {
    let attempts: i64 = r.try_get(6)?;
    Ok(QueuedEvent {
        id: r.try_get(0)?,
        request_id: r.try_get(1)?,
        function: r.try_get(2)?,
        qualifier: r.try_get(3)?,
        payload: r.try_get(4)?,
        enqueued_ms: r.try_get(5)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("event attempts {attempts}")))?,
        error: r.try_get(7)?,
        failed_at_ms: r.try_get(8)?,
        creator: r.try_get(9)?,
        trace: r.try_get(10)?,
    })
}

/// The functions with ready events, in byte order, by an index skip-scan
/// (one seek each): a `WITH` list naming them `ready(name)`.
const READY: &str = "
    WITH RECURSIVE ready(name) AS (
        (SELECT function FROM queued_events WHERE state = 'ready' ORDER BY function LIMIT 1)
        UNION ALL
        SELECT (SELECT function FROM queued_events
                WHERE state = 'ready' AND function > ready.name ORDER BY function LIMIT 1)
        FROM ready WHERE ready.name IS NOT NULL
    )";

/// The functions with ready events, in byte order.
fn ready_functions() -> String {
    format!("{READY} SELECT name FROM ready WHERE name IS NOT NULL")
}

/// When the first ready event is due: the first of each function's (two
/// seeks per function with ready events).
fn first_due() -> String {
    format!(
        "{READY} SELECT MIN(first.due_ms) FROM ready CROSS JOIN LATERAL (
            SELECT due_ms FROM queued_events
            WHERE state = 'ready' AND function = ready.name
            ORDER BY due_ms LIMIT 1
         ) first"
    )
}

/// Leases up to `$5` events due at `$4` in one statement: for each function
/// `$1[i]` (in serving order) its `$2[i]` first due events not locked by
/// another claim, taken in turns (the first of each function, then the
/// second, …), each due again at its function's lease end `$3[i]`. Returns
/// the events with their turn and function position, to order them.
const CLAIM: &str = "
    WITH picked AS (
        SELECT e.id, f.until, f.pos,
               row_number() OVER (PARTITION BY f.pos ORDER BY e.due_ms, e.id) AS turn
        FROM UNNEST($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS f(name, take, until, pos)
        CROSS JOIN LATERAL (
            SELECT id, due_ms FROM queued_events
            WHERE state = 'ready' AND function = f.name AND due_ms <= $4
            ORDER BY due_ms
            LIMIT f.take
            FOR UPDATE SKIP LOCKED
        ) e
        ORDER BY turn, f.pos
        LIMIT $5
    )
    UPDATE queued_events q SET due_ms = p.until, leased_until_ms = p.until
    FROM picked p
    WHERE q.id = p.id
    RETURNING q.id, q.request_id, q.function, q.qualifier, q.payload, q.enqueued_ms,
              q.attempts, q.error, q.failed_at_ms, q.creator, q.trace, p.turn, p.pos";

/// What a claim asks of each function, in serving order.
struct ClaimPlan {
    functions: Vec<String>,
    takes: Vec<i64>,
    lease_ends: Vec<i64>,
}

/// The plan of a fair claim: the functions with ready events, starting after
/// `cursor`, each with as many events as `limit` and its budget allow and
/// its lease end.
fn plan(
    functions: Vec<String>,
    cursor: &str,
    now_ms: i64,
    limit: usize,
    lease_ms: &LeaseFn,
    budget: &BudgetFn,
) -> ClaimPlan {
    let start = functions.partition_point(|f| f.as_str() <= cursor);
    let mut plan = ClaimPlan {
        functions: Vec::new(),
        takes: Vec::new(),
        lease_ends: Vec::new(),
    };
    for f in functions[start..].iter().chain(&functions[..start]) {
        let take = limit.min(budget(f));
        if take == 0 {
            continue;
        }
        plan.takes.push(i64::try_from(take).unwrap_or(i64::MAX));
        plan.lease_ends
            .push(now_ms.saturating_add(lease_ms(f).max(1)));
        plan.functions.push(f.clone());
    }
    plan
}

#[async_trait]
impl InvocationQueue for PgEventQueue {
    async fn enqueue(&self, event: &QueuedEvent) -> Result<(), StoreError> {
        self.enqueues.write(event.clone()).await
    }

    async fn claim_within(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: LeaseFn,
        budget: BudgetFn,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.pg.client().await?;
        let ready = client.prepare_cached(&ready_functions()).await?;
        let functions: Vec<String> = client
            .query(&ready, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plan = plan(functions, &cursor, now_ms, limit, &lease_ms, &budget);
        if plan.functions.is_empty() {
            return Ok(Vec::new());
        }
        let claim = client.prepare_cached(CLAIM).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &claim,
                &[
                    &plan.functions,
                    &plan.takes,
                    &plan.lease_ends,
                    &now_ms,
                    &limit,
                ],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok((
                    (r.try_get::<_, i64>(11)?, r.try_get::<_, i64>(12)?),
                    event_of(r)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|(order, _)| *order);
        if let Some((_, first)) = claimed.first() {
            *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = first.function.clone();
        }
        Ok(claimed.into_iter().map(|(_, e)| e).collect())
    }

    async fn complete(&self, id: &str) -> Result<(), StoreError> {
        self.completions.write(id.to_string()).await
    }

    async fn retry(
        &self,
        id: &str,
        at_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE queued_events SET due_ms = $2, attempts = $3, error = $4, leased_until_ms = NULL
             WHERE id = $1",
            &[&id, &at_ms, &i64::from(attempts), &error],
        )
        .await?;
        Ok(())
    }

    async fn dead(
        &self,
        id: &str,
        now_ms: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE queued_events
             SET state = 'dead', attempts = $3, error = $4, failed_at_ms = $2, leased_until_ms = NULL
             WHERE id = $1",
            &[&id, &now_ms, &i64::from(attempts), &error],
        )
        .await?;
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(&first_due()).await?;
        Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
    }

    async fn stats(&self) -> Result<(u64, Option<i64>), StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT COUNT(*), MIN(enqueued_ms) FROM queued_events WHERE state = 'ready'",
            )
            .await?;
        let row = client.query_one(&statement, &[]).await?;
        let ready: i64 = row.try_get(0)?;
        Ok((ready.unsigned_abs(), row.try_get(1)?))
    }
}

#[async_trait]
impl DeadLetters for PgEventQueue {
    async fn list(&self, function: Option<&str>) -> Result<Vec<QueuedEvent>, StoreError> {
        match function {
            None => {
                self.events(
                    &format!(
                        "SELECT {COLUMNS} FROM queued_events WHERE state = 'dead'
                         ORDER BY failed_at_ms, id"
                    ),
                    &[],
                )
                .await
            }
            Some(f) => {
                self.events(
                    &format!(
                        "SELECT {COLUMNS} FROM queued_events WHERE state = 'dead' AND function = $1
                         ORDER BY failed_at_ms, id"
                    ),
                    &[&f],
                )
                .await
            }
        }
    }

    async fn replay(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .execute(
                "UPDATE queued_events
                 SET state = 'ready', attempts = 0, due_ms = $2, enqueued_ms = $2,
                     failed_at_ms = NULL, leased_until_ms = NULL
                 WHERE id = $1 AND state = 'dead'",
                &[&id, &now_ms],
            )
            .await?
            > 0)
    }
}

/// Records a fire of `$1` at `$2` unless one at or after it is recorded;
/// returns a row when it did.
const RECORD_FIRE: &str = "
    INSERT INTO fires (source, last_ms) VALUES ($1, $2)
    ON CONFLICT (source) DO UPDATE SET last_ms = EXCLUDED.last_ms
    WHERE EXCLUDED.last_ms > fires.last_ms
    RETURNING 1";

#[async_trait]
impl FireLedger for PgEventQueue {
    async fn enqueue_once(
        &self,
        e: &QueuedEvent,
        source: &str,
        fire_ms: i64,
    ) -> Result<bool, StoreError> {
        // One statement: the event is inserted only if the fire is newer,
        // and a taken id undoes the fire with it.
        let sql = format!(
            "WITH fire AS ({RECORD_FIRE})
             INSERT INTO queued_events
                (id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, creator, trace)
             SELECT $3, $4, $5, $6, $7, $8, $9, $8, $10, $11 FROM fire"
        );
        let client = self.pg.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let inserted = client
            .execute(
                &statement,
                &[
                    &source,
                    &fire_ms,
                    &e.id,
                    &e.request_id,
                    &e.function,
                    &e.qualifier,
                    &e.payload,
                    &e.enqueued_ms,
                    &i64::from(e.attempts),
                    &e.creator,
                    &e.trace,
                ],
            )
            .await;
        match inserted {
            Ok(n) => Ok(n > 0),
            Err(err) if is_unique_violation(&err) => Err(taken(&e.id)),
            Err(err) => Err(err.into()),
        }
    }

    async fn last_fired(&self, source: &str) -> Result<Option<i64>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached("SELECT last_ms FROM fires WHERE source = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&source])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn mark_fired(&self, source: &str, fire_ms: i64) -> Result<bool, StoreError> {
        Ok(self.execute(RECORD_FIRE, &[&source, &fire_ms]).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::postgres::scratch::ScratchDatabase;

    /// Concurrent callers of the bench, and how long it runs.
    const CALLERS: usize = 64;
    const RUN: Duration = Duration::from_secs(5);

    fn event(caller: usize, n: usize) -> QueuedEvent {
        QueuedEvent {
            id: format!("{caller}-{n}"),
            request_id: format!("r-{caller}-{n}"),
            function: format!("f{}", caller % 8),
            qualifier: None,
            payload: br#"{"order":{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","items":[1,2,3]}}"#
                .to_vec(),
            enqueued_ms: 1000,
            attempts: 0,
            error: None,
            failed_at_ms: None,
            creator: None,
            trace: Some("Root=1-5759e988-bd862e3fe1be46a994272793".into()),
        }
    }

    /// Prints how many events a node accepts per second from many callers,
    /// each enqueue durable (`synchronous_commit` on) before it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark: cargo test -p nimbus-store --lib enqueue_throughput -- --ignored --nocapture"]
    async fn enqueue_throughput() {
        let db = ScratchDatabase::create().await.unwrap();
        let pg = Pg::connect(&db.url).await.unwrap();
        let synchronous_commit: String = pg
            .client()
            .await
            .unwrap()
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        let q = Arc::new(PgEventQueue::open(&pg).await.unwrap());
        let started = Instant::now();
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    while started.elapsed() < RUN {
                        q.enqueue(&event(caller, n)).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut accepted = 0;
        for c in callers {
            accepted += c.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(q.stats().await.unwrap().0, accepted as u64);
        println!(
            "enqueue: {accepted} events in {elapsed:.1} s from {CALLERS} callers = {:.0} events/s (synchronous_commit = {synchronous_commit})",
            accepted as f64 / elapsed
        );
    }
}
