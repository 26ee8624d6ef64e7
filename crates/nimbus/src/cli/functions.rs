//! `nimbus ls`, `nimbus get`, `nimbus rm`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use crate::client::Client;

pub async fn list(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let v = client
        .json(client.request(Method::GET, "/v1/functions"))
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v["functions"])?);
        return Ok(ExitCode::SUCCESS);
    }
    let fns = v["functions"].as_array().cloned().unwrap_or_default();
    if fns.is_empty() {
        println!("no functions deployed; try `nimbus deploy examples/hello-python`");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<9} {:<34} {:>7} {:>8}  LAST MODIFIED",
        "NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT"
    );
    for f in fns {
        println!(
            "{:<32} {:<9} {:<34} {:>4} MB {:>6} s  {}",
            f["name"].as_str().unwrap_or(""),
            f["runtime"].as_str().unwrap_or(""),
            f["handler"].as_str().unwrap_or(""),
            f["memory_mb"],
            f["timeout_s"],
            f["last_modified"].as_str().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get(client: &Client, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let f = client
        .json(client.request(Method::GET, &format!("/v1/functions/{name}")))
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    for key in [
        "name",
        "arn",
        "runtime",
        "handler",
        "memory_mb",
        "timeout_s",
        "description",
        "version",
        "code_sha256",
        "code_size",
        "revision_id",
        "created_at",
        "last_modified",
        "state",
    ] {
        let v = &f[key];
        let shown = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        println!("{key:<14} {shown}");
    }
    if let Some(env) = f["environment"].as_object().filter(|e| !e.is_empty()) {
        println!("environment");
        for (k, v) in env {
            println!("  {k}={}", v.as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(client: &Client, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    client
        .send(client.request(Method::DELETE, &format!("/v1/functions/{name}")))
        .await?;
    if json {
        println!("{}", serde_json::json!({"deleted": name}));
    } else {
        println!("deleted {name}");
    }
    Ok(ExitCode::SUCCESS)
}
