//! The scaling engine's rows: cold starts against the interpreter's own start,
//! durable asynchronous events per second against one fsync per event, and
//! memory against the servers people would otherwise run (nginx, uvicorn, node).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use hyper::{Method, Uri};
use tokio::task::JoinSet;

use crate::client::Http;
use crate::fixtures::Lang;

/// Spawn → exit of the bare interpreter doing nothing: `python3 -c pass`,
/// `node -e 0`. The floor a cold start that starts a process cannot beat.
pub async fn interpreter_start(python: &Path, node: &Path, lang: Lang) -> Result<Duration> {
    let mut cmd = match lang {
        Lang::Python => {
            let mut c = tokio::process::Command::new(python);
            c.args(["-c", "pass"]);
            c
        }
        Lang::Node => {
            let mut c = tokio::process::Command::new(node);
            c.args(["-e", "0"]);
            c
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().await?;
    let elapsed = start.elapsed();
    ensure!(
        status.success(),
        "{lang:?} interpreter start failed: {status}"
    );
    Ok(elapsed)
}

/// Records per second when every record is written and fdatasync'ed alone, in
/// `dir` (the file system Nimbus's queue lives on): what an event queue
/// without group commit could at best accept.
pub fn fsync_per_event_rate(dir: &Path, window: Duration) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let record = [b'e'; 200];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        file.write_all(&record)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Asynchronous invocations accepted per second by `concurrency` clients over
/// `window` (each answered 202 only once durably queued), and events run per
/// second from the first submission until the queue is empty again. Client
/// `i` submits to `submit[i % len]`, so clients spread over a cluster's
/// nodes; `metrics` is any node's (the depth is the shared queue's).
pub async fn async_events(
    http: &Http,
    submit: &[Uri],
    metrics: &Uri,
    concurrency: usize,
    window: Duration,
) -> Result<(f64, f64)> {
    ensure!(!submit.is_empty(), "no node to submit to");
    let start = Instant::now();
    let deadline = start + window;
    let mut clients = JoinSet::new();
    for i in 0..concurrency {
        let (http, uri) = (http.clone(), submit[i % submit.len()].clone());
        clients.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let reply = http
                    .send(
                        Method::POST,
                        &uri,
                        "application/json",
                        Bytes::from_static(b"{}"),
                    )
                    .await?;
                ensure!(
                    reply.status == 202,
                    "async invoke answered {} {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut accepted = 0;
    while let Some(done) = clients.join_next().await {
        accepted += done??;
    }
    let accept_time = start.elapsed();
    let drain_limit = Instant::now() + Duration::from_secs(120);
    while queue_depth(http, metrics).await? > 0 {
        if Instant::now() > drain_limit {
            bail!("the async queue did not drain within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let processed_time = start.elapsed();
    Ok((
        accepted as f64 / accept_time.as_secs_f64(),
        accepted as f64 / processed_time.as_secs_f64(),
    ))
}

async fn queue_depth(http: &Http, metrics: &Uri) -> Result<u64> {
    let reply = http
        .send(Method::GET, metrics, "text/plain", Bytes::new())
        .await?;
    let text = String::from_utf8_lossy(&reply.body);
    text.lines()
        .find_map(|l| l.strip_prefix("nimbus_async_queue_depth "))
        .context("no nimbus_async_queue_depth in /metrics")?
        .trim()
        .parse()
        .context("bad queue depth")
}

/// Resident set size of one process, in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

/// RSS of a process and all its descendants, in KiB.
pub fn tree_rss_kb(pid: u32) -> u64 {
    rss_kb(pid).unwrap_or(0) + children(pid).into_iter().map(tree_rss_kb).sum::<u64>()
}

/// Every process below `pid`, at any depth.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        let below = children(p);
        found.extend(&below);
        next.extend(below);
    }
    found
}

/// The largest RSS among Nimbus's instance processes running `bootstrap` (a
/// warm instance that has served requests is at least as large as a spare):
/// the interpreter process alone, found at any depth (a sandboxed instance
/// runs below a keeper process of its own, whose memory is not counted here).
pub fn largest_instance_kb(nimbus: u32, bootstrap: &str) -> Option<u64> {
    descendants(nimbus)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(bootstrap))
                .unwrap_or(false)
        })
        .filter_map(rss_kb)
        .max()
}

/// nginx serving a static hello document on `port`, one worker: the idle
/// footprint people expect from a lean server.
pub struct Nginx {
    child: tokio::process::Child,
}

impl Nginx {
    pub async fn start(root: &Path, port: u16) -> Result<Option<Self>> {
        let Some(bin) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            return Ok(None);
        };
        let dir = root.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nerror_log {0}/error.log;\npid {0}/nginx.pid;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {0}; proxy_temp_path {0};\n\
                 fastcgi_temp_path {0}; uwsgi_temp_path {0}; scgi_temp_path {0};\n\
                 server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{{\"message\": \"Hello, World!\"}}'; }} }} }}\n",
                dir.display()
            ),
        )?;
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;", "-e"])
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let http = Http::new();
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = http
                .send(Method::GET, &uri, "text/plain", Bytes::new())
                .await
                && r.status == 200
            {
                return Ok(Some(Self { child }));
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer on {uri}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn rss_kb(&self) -> u64 {
        self.child.id().map(tree_rss_kb).unwrap_or(0)
    }

    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
