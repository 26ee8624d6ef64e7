//! Metering: what ran, how long, how much memory; aggregated per function.
//! `nimbus usage` prints it, `nimbus cost` prices it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use nimbus_store::UsageRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    function: Option<String>,
    since_ms: Option<i64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// GB-seconds of one invocation: billed time × configured memory, as Lambda bills.
pub fn gb_seconds(r: &UsageRecord) -> f64 {
    r.billed_ms as f64 / 1000.0 * r.memory_mb as f64 / 1024.0
}

pub async fn usage(
    State(s): State<ApiState>,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let records = s
        .logs
        .usage(p.function.clone(), p.since_ms.unwrap_or(0))
        .await
        .map_err(|e| ApiError::from(nimbus_engine::EngineError::Store(e)))?;
    let mut by_function: BTreeMap<&str, Vec<&UsageRecord>> = BTreeMap::new();
    for r in &records {
        by_function.entry(r.function.as_str()).or_default().push(r);
    }
    let functions: Vec<Value> = by_function
        .into_iter()
        .map(|(name, rs)| {
            let ran: Vec<&&UsageRecord> = rs.iter().filter(|r| r.outcome != "throttled").collect();
            let mut durations: Vec<f64> = ran.iter().map(|r| r.duration_ms).collect();
            durations.sort_by(f64::total_cmp);
            json!({
                "function": name,
                "requests": ran.len(),
                "errors": ran.iter().filter(|r| r.outcome == "error").count(),
                "throttles": rs.len() - ran.len(),
                "cold_starts": ran.iter().filter(|r| r.cold).count(),
                "billed_ms": ran.iter().map(|r| r.billed_ms).sum::<u64>(),
                "gb_seconds": ran.iter().map(|r| gb_seconds(r)).sum::<f64>(),
                "duration_p50_ms": percentile(&durations, 0.5),
                "duration_p99_ms": percentile(&durations, 0.99),
            })
        })
        .collect();
    Ok(Json(json!({ "functions": functions })))
}

/// Prometheus metrics (text exposition format).
pub async fn metrics(State(s): State<ApiState>) -> impl axum::response::IntoResponse {
    let (queue_depth, queue_oldest_age_s) = s.events.queue_stats().await;
    let gauges = nimbus_engine::Gauges {
        functions: s.scheduler.gauges(),
        queue_depth,
        queue_oldest_age_s,
        revoked_deliveries: s.messaging.grants.skipped() + s.events.revoked(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.invoker.metrics.render(&gauges),
    )
}
