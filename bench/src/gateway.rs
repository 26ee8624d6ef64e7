//! The gateway rows: the hello handler reached through a gateway route
//! (`POST /hello/<lang>`, payload 2.0, whose `{"message": …}` return value the
//! 2.0 rules turn into a JSON 200) against the same handler behind the bare
//! server, and, under load, against the local peers people use (Google's
//! functions-framework for Python, serverless-offline for Node).
//!
//! Issue 5 sets the targets these rows check: at c=32 at least 2× the
//! functions-framework's and 10× serverless-offline's throughput; at c=1 at
//! most 50 µs of gateway-added latency (p50). The latency rows also time the
//! invoke API in the same runs, so what the gateway itself adds (gateway −
//! invoke API, the same invocation path behind a different front door) is
//! separable from what the whole platform adds (gateway − bare).
//!
//! Variants are measured in rotation (the first one of a run changes from run
//! to run), so drift on the shared machine is spread across all of them.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::Uri;

use crate::bare::{BareServer, Baselines};
use crate::client::Http;
use crate::fixtures::Lang;
use crate::measure;
use crate::nimbus::Nimbus;
use crate::report::{GatewayRps, GatewayWarm};

/// Untimed time at full concurrency before each throughput window.
const WARMUP: Duration = Duration::from_secs(1);

/// Declares the hello routes (after the functions are deployed).
pub async fn add_routes(nimbus: &Nimbus, http: &Http) -> Result<()> {
    for lang in Lang::ALL {
        nimbus.add_hello_route(http, lang).await?;
    }
    Ok(())
}

/// Runs `measure` on every URI, starting with a different one each run;
/// the results come back in the order of `uris`.
async fn rotated<T, F, Fut>(run: usize, uris: &[&Uri], measure: F) -> Result<Vec<T>>
where
    F: Fn(Uri) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let n = uris.len();
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for k in 0..n {
        let i = (run + k) % n;
        results[i] = Some(measure(uris[i].clone()).await?);
    }
    Ok(results.into_iter().flatten().collect())
}

/// Latency at c=1: gateway route, invoke API and bare server, `runs` times.
pub async fn latency(
    nimbus: &Nimbus,
    baselines: &Baselines,
    http: &Http,
    runs: usize,
    warmup: usize,
    requests: usize,
) -> Result<Vec<GatewayWarm>> {
    let mut rows = Vec::new();
    for lang in Lang::ALL {
        let (server, _) = baselines.start(lang).await?;
        let (gateway, invoke) = (nimbus.gateway_uri(lang)?, nimbus.invoke_uri(lang)?);
        let mut row = GatewayWarm {
            lang,
            gateway: Vec::new(),
            invoke: Vec::new(),
            bare: Vec::new(),
        };
        for run in 0..runs {
            progress!("gateway {} latency run {}/{runs}", lang.label(), run + 1);
            let mut r = rotated(run, &[&gateway, &invoke, &server.uri], |uri| async move {
                measure::latency(http, &uri, warmup, requests).await
            })
            .await
            .with_context(|| format!("gateway {} latency run {}", lang.label(), run + 1))?
            .into_iter();
            row.gateway.extend(r.next());
            row.invoke.extend(r.next());
            row.bare.extend(r.next());
        }
        server.stop().await?;
        rows.push(row);
    }
    Ok(rows)
}

/// Requests per second at `concurrency`: gateway route, bare server, and the
/// language's local peer.
pub async fn throughput(
    nimbus: &Nimbus,
    baselines: &Baselines,
    http: &Http,
    runs: usize,
    concurrency: usize,
    window: Duration,
) -> Result<Vec<GatewayRps>> {
    let mut rows = Vec::new();
    for lang in Lang::ALL {
        let (server, _) = baselines.start(lang).await?;
        let peer: BareServer = match lang {
            Lang::Python => baselines.start_functions_framework().await?,
            Lang::Node => baselines.start_serverless_offline().await?,
        };
        let gateway = nimbus.gateway_uri(lang)?;
        let mut row = GatewayRps {
            lang,
            gateway: Vec::new(),
            bare: Vec::new(),
            peer: Vec::new(),
        };
        for run in 0..runs {
            progress!("gateway {} rps run {}/{runs}", lang.label(), run + 1);
            let targets = [&gateway, &server.uri, &peer.uri];
            let measure = || {
                rotated(run, &targets, |uri| async move {
                    measure::throughput(http, &uri, concurrency, WARMUP, window).await
                })
            };
            // serverless-offline's worker threads sometimes drop a connection
            // under load: one failed run is measured again (and said so), a
            // second failure ends the bench.
            let results = match measure().await {
                Ok(r) => r,
                Err(e) => {
                    progress!(
                        "gateway {} rps run {} failed ({e:#}); measuring it again",
                        lang.label(),
                        run + 1
                    );
                    measure()
                        .await
                        .with_context(|| format!("gateway {} rps run {}", lang.label(), run + 1))?
                }
            };
            let mut r = results.into_iter();
            row.gateway.extend(r.next());
            row.bare.extend(r.next());
            row.peer.extend(r.next());
        }
        server.stop().await?;
        peer.stop().await?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotation_changes_the_first_variant_and_keeps_the_order() {
        let uris: Vec<Uri> = ["http://a/", "http://b/", "http://c/"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        let refs: Vec<&Uri> = uris.iter().collect();
        for run in 0..3 {
            let order = std::sync::Mutex::new(Vec::new());
            let got = rotated(run, &refs, |uri| {
                let order = &order;
                async move {
                    order.lock().unwrap().push(uri.host().unwrap().to_string());
                    Ok(uri.host().unwrap().to_string())
                }
            })
            .await
            .unwrap();
            assert_eq!(got, ["a", "b", "c"]);
            assert_eq!(order.into_inner().unwrap()[0], ["a", "b", "c"][run]);
        }
    }
}
