//! `nimbus usage` and `nimbus cost`: what ran, and what it would cost on Lambda.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Only this function.
    name: Option<String>,
    /// Only invocations newer than this (e.g. 1h, 7d).
    #[arg(long)]
    since: Option<humantime::Duration>,
    #[command(flatten)]
    client: ClientArgs,
}

async fn fetch(
    client: &Client,
    name: Option<&str>,
    since: Option<humantime::Duration>,
) -> anyhow::Result<Value> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(n) = name {
        q.push(("function", n.to_string()));
    }
    if let Some(d) = since {
        let ms = chrono::Utc::now().timestamp_millis() - Duration::from(d).as_millis() as i64;
        q.push(("since_ms", ms.to_string()));
    }
    client
        .json(client.request(Method::GET, "/v1/usage").query(&q))
        .await
}

pub async fn usage(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let v = fetch(&client, args.name.as_deref(), args.since).await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&v["functions"])?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:>9} {:>7} {:>9} {:>6} {:>12} {:>10} {:>10}",
        "FUNCTION", "REQUESTS", "ERRORS", "THROTTLES", "COLD", "GB-SECONDS", "P50 MS", "P99 MS"
    );
    for f in v["functions"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:>9} {:>7} {:>9} {:>6} {:>12.4} {:>10.2} {:>10.2}",
            f["function"].as_str().unwrap_or(""),
            f["requests"],
            f["errors"],
            f["throttles"],
            f["cold_starts"],
            f["gb_seconds"].as_f64().unwrap_or(0.0),
            f["duration_p50_ms"].as_f64().unwrap_or(0.0),
            f["duration_p99_ms"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct CostArgs {
    /// Price the recorded usage of this function only.
    name: Option<String>,
    #[arg(long)]
    since: Option<humantime::Duration>,
    /// Estimate a hypothetical workload instead: number of requests...
    #[arg(long, requires_all = ["memory", "duration"])]
    requests: Option<u64>,
    /// ... memory in MB ...
    #[arg(long)]
    memory: Option<u32>,
    /// ... and duration per request (e.g. 100ms).
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Price per million requests, USD (default: AWS Lambda x86).
    #[arg(long, default_value_t = 0.20)]
    price_per_million_requests: f64,
    /// Price per GB-second, USD (default: AWS Lambda x86, first tier).
    #[arg(long, default_value_t = 0.0000166667)]
    price_per_gb_second: f64,
    /// Deduct Lambda's monthly free tier (1M requests, 400,000 GB-s).
    #[arg(long)]
    free_tier: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// The price of `requests` and `gb_seconds` under a price table.
fn price(args: &CostArgs, requests: f64, gb_seconds: f64) -> Value {
    let (free_requests, free_gbs) = if args.free_tier {
        (1_000_000.0, 400_000.0)
    } else {
        (0.0, 0.0)
    };
    let request_cost =
        (requests - free_requests).max(0.0) / 1_000_000.0 * args.price_per_million_requests;
    let compute_cost = (gb_seconds - free_gbs).max(0.0) * args.price_per_gb_second;
    json!({
        "requests": requests,
        "gb_seconds": gb_seconds,
        "request_cost_usd": request_cost,
        "compute_cost_usd": compute_cost,
        "total_usd": request_cost + compute_cost,
    })
}

pub async fn cost(args: CostArgs) -> anyhow::Result<ExitCode> {
    let out = if let Some(requests) = args.requests {
        let (Some(memory), Some(duration)) = (args.memory, args.duration) else {
            bail!("--requests needs --memory and --duration");
        };
        // Billed like Lambda: duration rounded up to the millisecond, times memory.
        let billed_ms = (Duration::from(duration).as_nanos().div_ceil(1_000_000) as f64).max(1.0);
        let gbs = requests as f64 * billed_ms / 1000.0 * memory as f64 / 1024.0;
        price(&args, requests as f64, gbs)
    } else {
        let client = Client::new(&args.client)?;
        let v = fetch(&client, args.name.as_deref(), args.since).await?;
        let fs = v["functions"].as_array().cloned().unwrap_or_default();
        let requests: f64 = fs
            .iter()
            .map(|f| f["requests"].as_f64().unwrap_or(0.0))
            .sum();
        let gbs: f64 = fs
            .iter()
            .map(|f| f["gb_seconds"].as_f64().unwrap_or(0.0))
            .sum();
        price(&args, requests, gbs)
    };
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "requests:    {:>16.0}  → ${:.4}",
            out["requests"].as_f64().unwrap_or(0.0),
            out["request_cost_usd"].as_f64().unwrap_or(0.0)
        );
        println!(
            "GB-seconds:  {:>16.4}  → ${:.4}",
            out["gb_seconds"].as_f64().unwrap_or(0.0),
            out["compute_cost_usd"].as_f64().unwrap_or(0.0)
        );
        println!(
            "total:       {:>16}    ${:.4}",
            "",
            out["total_usd"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
