//! The measurements themselves. Each one times the same request, `POST` of the
//! event `{}`, whichever server answers it, and checks every answer is the hello
//! document, so a failing function can never pass for a fast one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, Uri};
use tokio::task::JoinSet;

use crate::client::{Http, Reply};
use crate::fixtures::HELLO;
use crate::nimbus::Nimbus;
use crate::stats::Percentiles;

/// The event every request carries.
const EVENT: &[u8] = b"{}";

/// One hello request.
pub async fn hello(http: &Http, uri: &Uri) -> Result<Reply> {
    http.send(
        Method::POST,
        uri,
        "application/json",
        Bytes::from_static(EVENT),
    )
    .await
}

/// Fails unless the reply is a 200 with the hello document as its body.
pub fn check_hello(reply: &Reply) -> Result<()> {
    let ok = reply.status == 200 && reply.json()? == serde_json::json!({"message": HELLO});
    ensure!(
        ok,
        "unexpected reply {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(())
}

/// `warmup` untimed requests, then the percentiles of `requests` sequential ones.
pub async fn latency(
    http: &Http,
    uri: &Uri,
    warmup: usize,
    requests: usize,
) -> Result<Percentiles> {
    for _ in 0..warmup {
        check_hello(&hello(http, uri).await?)?;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        let reply = hello(http, uri).await?;
        samples.push(start.elapsed());
        check_hello(&reply)?;
    }
    Ok(Percentiles::of(samples))
}

/// Completed requests per second with `concurrency` clients, each on its own
/// keep-alive connection, over `window`, after an untimed warm-up of `warmup`
/// (which lets Nimbus start the instances that concurrency needs).
pub async fn throughput(
    http: &Http,
    uri: &Uri,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> Result<f64> {
    closed_loop(http, uri, concurrency, warmup).await?;
    let (done, elapsed) = closed_loop(http, uri, concurrency, window).await?;
    Ok(done as f64 / elapsed.as_secs_f64())
}

/// Each client sends its next request as soon as the previous one is answered,
/// until `window` has passed; returns the requests completed and the time taken.
async fn closed_loop(
    http: &Http,
    uri: &Uri,
    concurrency: usize,
    window: Duration,
) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let deadline = start + window;
    let mut clients = JoinSet::new();
    for _ in 0..concurrency {
        let (http, uri) = (http.clone(), uri.clone());
        clients.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                check_hello(&hello(&http, &uri).await?)?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = clients.join_next().await {
        total += done??;
    }
    Ok((total, start.elapsed()))
}

/// One Nimbus cold start: the client-observed latency of the first invocation
/// after the function's instances were retired, and Nimbus's own init duration.
pub async fn nimbus_cold(
    nimbus: &Nimbus,
    http: &Http,
    function: &str,
    tag: usize,
    settle: Duration,
) -> Result<(Duration, f64)> {
    nimbus.retire_instances(http, function, tag).await?;
    // Let the retired instance wind down so its teardown is not timed.
    tokio::time::sleep(settle).await;
    let uri = nimbus.invoke_uri_of(function)?;
    let start = Instant::now();
    let reply = hello(http, &uri).await?;
    let elapsed = start.elapsed();
    check_hello(&reply)?;
    ensure!(
        reply.header("x-nimbus-cold-start") == Some("true"),
        "{function} was not started cold after PATCH"
    );
    let init_ms = reply
        .header("x-nimbus-init-duration-ms")
        .context("a cold start without x-nimbus-init-duration-ms")?
        .parse()?;
    Ok((elapsed, init_ms))
}
