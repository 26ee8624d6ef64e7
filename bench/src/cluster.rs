//! The cluster rows: what keeping every store in PostgreSQL (`nimbus up
//! --postgres`) costs against the embedded SQLite server, and what a second
//! node adds.
//!
//! A node on PostgreSQL should cost nothing where no store is touched (the
//! warm invoke path), and its durable writes (async events, SQS messages, S3
//! objects) pay a network round trip and PostgreSQL's commit instead of a
//! local fsync; these rows put numbers on both, next to the embedded server
//! measured in the same runs, in turn (which goes first alternates from run to
//! run), so the ratios hold on whatever machine runs them.
//!
//! One node and two nodes get a database each: a second node sharing the
//! one-node database would also drain its queue, and the one-node row would
//! not be one node. Every node is started like the embedded server (same
//! sandbox, same flags) plus `--postgres` and the shared master key file, so
//! storage is the only difference. PostgreSQL keeps its defaults, so
//! `synchronous_commit` is on and every accepted event is on disk.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::Uri;
use nimbus_store::postgres::scratch::ScratchDatabase;
use serde_json::json;
use tokio::task::JoinSet;

use crate::aws::{Aws, Payload};
use crate::client::Http;
use crate::fixtures::Lang;
use crate::measure;
use crate::nimbus::{Interpreters, Nimbus, Storage};
use crate::report::{AsyncRuns, Cluster, Pair, S3Runs};
use crate::scaling;
use crate::stats::Percentiles;

/// The S3 rows' object size.
pub const OBJECT_BYTES: usize = 1024 * 1024;
/// Untimed requests of each S3 operation before a timed run.
const S3_WARMUP: usize = 3;
/// The queue and bucket the SQS and S3 rows use on every server.
const QUEUE: &str = "bench-queue";
const BUCKET: &str = "bench-bucket";
/// Hello invocations that give a new node its instances before any row.
const NODE_WARMUP: usize = 50;
/// How long a receive phase may take to empty the queue.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// What the cluster rows need from the command line.
pub struct Settings<'a> {
    pub bin: &'a Path,
    pub work: &'a Path,
    pub interpreters: Interpreters<'a>,
    /// A database on the server the cluster's databases are created on.
    pub admin_url: &'a str,
    pub runs: usize,
    pub warmup: usize,
    pub requests: usize,
    /// Clients of the async and SQS rows.
    pub concurrency: usize,
    /// Each async and SQS send window.
    pub window: Duration,
    /// Timed PutObjects (and as many GetObjects) per run.
    pub s3_requests: usize,
}

/// Whether PostgreSQL answers at `admin_url` and lets us create databases.
pub async fn probe(admin_url: &str) -> Result<()> {
    ScratchDatabase::create_on(admin_url)
        .await
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The nodes under test, and the databases they live on (dropped last).
struct Nodes {
    /// The one-node cluster.
    one: Nimbus,
    /// The two-node cluster, on a database of its own.
    pair: [Nimbus; 2],
    _databases: [ScratchDatabase; 2],
}

impl Nodes {
    async fn start(s: &Settings<'_>) -> Result<Self> {
        let key = master_key_file(s.work)?;
        let one_db = create_database(s.admin_url).await?;
        let pair_db = create_database(s.admin_url).await?;
        let start = |url: String, name: &'static str| {
            let key = key.clone();
            async move {
                progress!("starting a cluster node ({name})");
                let storage = Storage::Postgres {
                    url: &url,
                    master_key_file: &key,
                };
                Nimbus::start_node(s.bin, s.work, s.interpreters, storage, name).await
            }
        };
        let one = start(one_db.url.clone(), "nimbus-pg-one").await?;
        let a = start(pair_db.url.clone(), "nimbus-pg-pair-a").await?;
        let b = start(pair_db.url.clone(), "nimbus-pg-pair-b").await?;
        Ok(Self {
            one,
            pair: [a, b],
            _databases: [one_db, pair_db],
        })
    }

    /// Deploys the Python hello through one node of each cluster, waits for
    /// the other node to learn of it, and gives every node warm instances.
    async fn deploy(&self, http: &Http) -> Result<()> {
        self.one.deploy(http, Lang::Python).await?;
        self.pair[0].deploy(http, Lang::Python).await?;
        self.pair[1]
            .wait_for_function(http, Lang::Python.function_name())
            .await?;
        for node in self.all() {
            let uri = node.invoke_uri(Lang::Python)?;
            for _ in 0..NODE_WARMUP {
                measure::check_hello(&measure::hello(http, &uri).await?)?;
            }
        }
        Ok(())
    }

    fn all(&self) -> [&Nimbus; 3] {
        [&self.one, &self.pair[0], &self.pair[1]]
    }

    async fn stop(self) -> Result<()> {
        let [a, b] = self.pair;
        let results = [self.one.stop().await, a.stop().await, b.stop().await];
        results.into_iter().collect()
    }
}

async fn create_database(admin_url: &str) -> Result<ScratchDatabase> {
    ScratchDatabase::create_on(admin_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a database for the cluster: {e}"))
}

/// 32 random bytes in a private file, the key every node is given.
fn master_key_file(work: &Path) -> Result<PathBuf> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let path = work.join("cluster-master.key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, &key)?;
    Ok(path)
}

/// The servers of a [`Pair`], in its order, for error messages.
const SIDES: [&str; 2] = ["embedded", "PostgreSQL"];

/// The order variants run in: as given on even runs, reversed on odd ones.
fn order(run: usize, n: usize) -> Vec<usize> {
    if run.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// Every cluster row; `embedded` (the main, SQLite-backed server) must have
/// the Python hello deployed.
pub async fn measure(s: &Settings<'_>, embedded: &Nimbus, http: &Http) -> Result<Cluster> {
    let nodes = Nodes::start(s).await?;
    let measured = measure_on(s, embedded, &nodes, http).await;
    progress!("stopping the cluster nodes");
    let stopped = nodes.stop().await;
    let cluster = measured?;
    stopped?;
    Ok(cluster)
}

async fn measure_on(
    s: &Settings<'_>,
    embedded: &Nimbus,
    nodes: &Nodes,
    http: &Http,
) -> Result<Cluster> {
    nodes.deploy(http).await?;
    let warm = warm(s, embedded, &nodes.one, http).await?;
    let (embedded_async, one, two) = asynchronous(s, embedded, nodes, http).await?;
    let aws = [
        Aws::new(http, embedded.api_base())?,
        Aws::new(http, nodes.one.api_base())?,
    ];
    let (sqs_send, sqs_receive) = sqs(s, &aws).await?;
    let (s3_put, s3_get) = s3(s, &aws).await?;
    Ok(Cluster {
        warm,
        async_embedded: embedded_async,
        async_one: one,
        async_two: two,
        sqs_send,
        sqs_receive,
        s3_put,
        s3_get,
    })
}

/// Warm Python hello at c=1: the embedded server and the one-node cluster.
async fn warm(
    s: &Settings<'_>,
    embedded: &Nimbus,
    node: &Nimbus,
    http: &Http,
) -> Result<Pair<Vec<Percentiles>>> {
    let (e, p) = (
        embedded.invoke_uri(Lang::Python)?,
        node.invoke_uri(Lang::Python)?,
    );
    let mut rows = Pair::<Vec<Percentiles>>::default();
    for run in 0..s.runs {
        progress!("cluster warm run {}/{}", run + 1, s.runs);
        let [a, b] = crate::interleaved(run, [&e, &p], |uri| async move {
            measure::latency(http, &uri, s.warmup, s.requests).await
        })
        .await
        .with_context(|| format!("cluster warm run {}", run + 1))?;
        rows.embedded.push(a);
        rows.postgres.push(b);
    }
    Ok(rows)
}

/// Async events: embedded, one node, two nodes (clients alternating between
/// the two nodes' APIs), in turn.
async fn asynchronous(
    s: &Settings<'_>,
    embedded: &Nimbus,
    nodes: &Nodes,
    http: &Http,
) -> Result<(AsyncRuns, AsyncRuns, AsyncRuns)> {
    let variants: [(Vec<Uri>, Uri); 3] = [
        (
            vec![embedded.async_uri(Lang::Python)?],
            embedded.metrics_uri()?,
        ),
        (
            vec![nodes.one.async_uri(Lang::Python)?],
            nodes.one.metrics_uri()?,
        ),
        (
            vec![
                nodes.pair[0].async_uri(Lang::Python)?,
                nodes.pair[1].async_uri(Lang::Python)?,
            ],
            nodes.pair[0].metrics_uri()?,
        ),
    ];
    let mut rows: [AsyncRuns; 3] = Default::default();
    for run in 0..s.runs {
        progress!("cluster async run {}/{}", run + 1, s.runs);
        for i in order(run, variants.len()) {
            let (submit, metrics) = &variants[i];
            let (accepted, completed) =
                scaling::async_events(http, submit, metrics, s.concurrency, s.window)
                    .await
                    .with_context(|| {
                        let variant = ["the embedded server", "1 node", "2 nodes"][i];
                        format!("cluster async on {variant}, run {}", run + 1)
                    })?;
            rows[i].accepted.push(accepted);
            rows[i].completed.push(completed);
        }
    }
    let [e, one, two] = rows;
    Ok((e, one, two))
}

/// SendMessage per second, then ReceiveMessage + DeleteMessage pairs per
/// second until the queue is empty, embedded and PostgreSQL in turn.
async fn sqs(s: &Settings<'_>, aws: &[Aws; 2]) -> Result<(Pair<Vec<f64>>, Pair<Vec<f64>>)> {
    let mut urls = Vec::new();
    for server in aws {
        let reply = server
            .sqs("CreateQueue", &json!({"QueueName": QUEUE}))
            .await?;
        let url = reply.json()?["QueueUrl"]
            .as_str()
            .context("CreateQueue returned no QueueUrl")?
            .to_string();
        urls.push(url);
    }
    let (mut send, mut receive) = (Pair::<Vec<f64>>::default(), Pair::<Vec<f64>>::default());
    for run in 0..s.runs {
        progress!("cluster sqs run {}/{}", run + 1, s.runs);
        for i in order(run, 2) {
            let side = || format!("sqs on the {} server, run {}", SIDES[i], run + 1);
            let (sent, per_s) = sqs_send(&aws[i], &urls[i], s.concurrency, s.window)
                .await
                .with_context(side)?;
            let received = sqs_receive(&aws[i], &urls[i], s.concurrency, sent)
                .await
                .with_context(side)?;
            send.side_mut(i).push(per_s);
            receive.side_mut(i).push(received);
        }
    }
    Ok((send, receive))
}

/// `concurrency` clients sending one message per call for `window`: the
/// messages sent and their rate.
async fn sqs_send(
    aws: &Aws,
    url: &str,
    concurrency: usize,
    window: Duration,
) -> Result<(u64, f64)> {
    let start = Instant::now();
    let deadline = start + window;
    let mut clients = JoinSet::new();
    for client in 0..concurrency {
        let (aws, url) = (aws.clone(), url.to_string());
        clients.spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let body = format!("bench message {client}-{sent}");
                aws.sqs(
                    "SendMessage",
                    &json!({"QueueUrl": url, "MessageBody": body}),
                )
                .await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        });
    }
    let mut sent = 0;
    while let Some(n) = clients.join_next().await {
        sent += n??;
    }
    Ok((sent, sent as f64 / start.elapsed().as_secs_f64()))
}

/// `concurrency` clients each receiving one message per call and deleting
/// it, until a receive finds the queue empty: pairs per second. Fails unless
/// exactly the `expected` messages came back.
async fn sqs_receive(aws: &Aws, url: &str, concurrency: usize, expected: u64) -> Result<f64> {
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..concurrency {
        let (aws, url) = (aws.clone(), url.to_string());
        clients.spawn(async move {
            let mut done = 0u64;
            loop {
                ensure!(
                    start.elapsed() < DRAIN_LIMIT,
                    "the SQS queue did not empty within {DRAIN_LIMIT:?}"
                );
                let reply = aws
                    .sqs(
                        "ReceiveMessage",
                        &json!({"QueueUrl": url, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 0}),
                    )
                    .await?
                    .json()?;
                let Some(message) = reply["Messages"].as_array().and_then(|m| m.first()) else {
                    return anyhow::Ok(done);
                };
                let handle = message["ReceiptHandle"]
                    .as_str()
                    .context("a message without a ReceiptHandle")?;
                aws.sqs(
                    "DeleteMessage",
                    &json!({"QueueUrl": url, "ReceiptHandle": handle}),
                )
                .await?;
                done += 1;
            }
        });
    }
    let mut received = 0;
    while let Some(n) = clients.join_next().await {
        received += n??;
    }
    ensure!(
        received == expected,
        "{expected} messages were sent but {received} received"
    );
    Ok(received as f64 / start.elapsed().as_secs_f64())
}

/// PutObject of a 1 MB object under new keys, then GetObject of each, c=1,
/// embedded and PostgreSQL in turn: per-run latencies and rates.
async fn s3(s: &Settings<'_>, aws: &[Aws; 2]) -> Result<(Pair<S3Runs>, Pair<S3Runs>)> {
    let object = Payload::new(object_bytes());
    for server in aws {
        server.create_bucket(BUCKET).await?;
        for _ in 0..S3_WARMUP {
            server.put_object(BUCKET, "warmup", &object).await?;
            server.get_object(BUCKET, "warmup").await?;
        }
    }
    let (mut put, mut get) = (Pair::<S3Runs>::default(), Pair::<S3Runs>::default());
    for run in 0..s.runs {
        progress!("cluster s3 run {}/{}", run + 1, s.runs);
        for i in order(run, 2) {
            let keys: Vec<String> = (0..s.s3_requests)
                .map(|k| format!("run-{run}/object-{k}"))
                .collect();
            let puts = timed(&keys, |key| {
                let (aws, object) = (&aws[i], &object);
                async move { aws.put_object(BUCKET, &key, object).await }
            })
            .await
            .with_context(|| format!("s3 on the {} server, run {}", SIDES[i], run + 1))?;
            let gets = timed(&keys, |key| {
                let (aws, object) = (&aws[i], &object);
                async move {
                    let got = aws.get_object(BUCKET, &key).await?;
                    ensure!(got == object.bytes, "GetObject {key} returned other bytes");
                    Ok(())
                }
            })
            .await
            .with_context(|| format!("s3 on the {} server, run {}", SIDES[i], run + 1))?;
            put.side_mut(i).push(puts);
            get.side_mut(i).push(gets);
        }
    }
    Ok((put, get))
}

/// `op` on every key in sequence: its latency percentiles and rate.
async fn timed<F, Fut>(keys: &[String], op: F) -> Result<(Percentiles, f64)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut samples = Vec::with_capacity(keys.len());
    for key in keys {
        let t = Instant::now();
        op(key.clone()).await?;
        samples.push(t.elapsed());
    }
    let rate = keys.len() as f64 / start.elapsed().as_secs_f64();
    Ok((Percentiles::of(samples), rate))
}

/// A 1 MB object that does not compress to nothing.
fn object_bytes() -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..OBJECT_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::order;

    #[test]
    fn variants_take_turns_going_first() {
        assert_eq!(order(0, 3), [0, 1, 2]);
        assert_eq!(order(1, 3), [2, 1, 0]);
        assert_eq!(order(2, 2), [0, 1]);
    }
}
