//! `nimbus workflow create|start|ls|describe|history|stop`: state machines
//! and their executions, through the native API (`/v1/workflows`,
//! `/v1/executions`). An execution is named by its ARN or `WORKFLOW:NAME`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct WorkflowArgs {
    #[command(subcommand)]
    command: WorkflowCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// Create (or update) a workflow from an Amazon States Language definition.
    Create {
        name: String,
        /// The definition: a JSON file.
        #[arg(long)]
        definition: PathBuf,
        /// STANDARD (durable, the default) or EXPRESS.
        #[arg(long = "type")]
        machine_type: Option<String>,
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Start an execution.
    Start {
        /// Workflow name or ARN.
        workflow: String,
        /// Input JSON (default `{}`).
        #[arg(long)]
        input: Option<String>,
        /// Execution name (default: a UUID).
        #[arg(long)]
        name: Option<String>,
        /// Wait up to this many seconds for the end and print the result.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// List workflows, or the executions of one.
    Ls {
        workflow: Option<String>,
        /// With a workflow: only executions with this status (RUNNING, SUCCEEDED, …).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a workflow (by name or ARN) or an execution (ARN or WORKFLOW:NAME).
    Describe { target: String },
    /// Show an execution's history events.
    History {
        execution: String,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
    },
    /// Stop (abort) a running execution.
    Stop {
        execution: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
    },
    /// Delete a workflow (running executions finish).
    Rm { name: String },
}

fn is_execution(target: &str) -> bool {
    target.contains(":execution:") || (!target.starts_with("arn:") && target.contains(':'))
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_execution(e: &Value) {
    println!("execution: {}", e["arn"].as_str().unwrap_or(""));
    println!("status:    {}", e["status"].as_str().unwrap_or(""));
    println!("started:   {}", time(&e["started_at"]));
    println!("stopped:   {}", time(&e["stopped_at"]));
    println!("input:     {}", e["input"]);
    if !e["output"].is_null() {
        println!("output:    {}", e["output"]);
    }
    if !e["error"].is_null() {
        println!("error:     {}", e["error"].as_str().unwrap_or(""));
        println!("cause:     {}", e["cause"].as_str().unwrap_or(""));
    }
}

pub async fn run(args: WorkflowArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json_out = args.client.json;
    match args.command {
        WorkflowCommand::Create {
            name,
            definition,
            machine_type,
            role_arn,
        } => {
            let text = std::fs::read_to_string(&definition)
                .with_context(|| format!("cannot read {}", definition.display()))?;
            let def: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", definition.display()))?;
            let mut body = json!({"definition": def});
            if let Some(t) = machine_type {
                body["type"] = json!(t);
            }
            if let Some(r) = role_arn {
                body["role_arn"] = json!(r);
            }
            let v = client
                .json(
                    client
                        .request(Method::PUT, &format!("/v1/workflows/{name}"))
                        .json(&body),
                )
                .await?;
            if json_out {
                print(&v)?;
            } else {
                println!("{}", v["arn"].as_str().unwrap_or(""));
            }
        }
        WorkflowCommand::Start {
            workflow,
            input,
            name,
            wait,
        } => {
            let mut body = json!({});
            if let Some(i) = input {
                let v: Value = serde_json::from_str(&i).context("--input is not JSON")?;
                body["input"] = v;
            }
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let mut req = client
                .request(
                    Method::POST,
                    &format!("/v1/workflows/{workflow}/executions"),
                )
                .json(&body);
            if let Some(w) = wait {
                req = req.query(&[("wait", w)]);
            }
            let v = client.json(req).await?;
            if json_out {
                print(&v)?;
            } else if wait.is_some() {
                print_execution(&v);
            } else {
                println!("{}", v["arn"].as_str().unwrap_or(""));
            }
            if wait.is_some() && v["status"] != "SUCCEEDED" {
                return Ok(ExitCode::FAILURE);
            }
        }
        WorkflowCommand::Ls { workflow, status } => match workflow {
            None => {
                let v = client
                    .json(client.request(Method::GET, "/v1/workflows"))
                    .await?;
                if json_out {
                    return print(&v["workflows"]).map(|_| ExitCode::SUCCESS);
                }
                println!("{:<32} {:<9} CREATED", "NAME", "TYPE");
                for w in v["workflows"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:<9} {}",
                        w["name"].as_str().unwrap_or(""),
                        w["type"].as_str().unwrap_or(""),
                        time(&w["created_at"])
                    );
                }
            }
            Some(w) => {
                let mut req = client.request(Method::GET, &format!("/v1/workflows/{w}/executions"));
                if let Some(s) = &status {
                    req = req.query(&[("status", s)]);
                }
                let v = client.json(req).await?;
                if json_out {
                    return print(&v["executions"]).map(|_| ExitCode::SUCCESS);
                }
                println!("{:<38} {:<10} {:<24} STOPPED", "NAME", "STATUS", "STARTED");
                for e in v["executions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<38} {:<10} {:<24} {}",
                        e["name"].as_str().unwrap_or(""),
                        e["status"].as_str().unwrap_or(""),
                        time(&e["started_at"]),
                        time(&e["stopped_at"])
                    );
                }
            }
        },
        WorkflowCommand::Describe { target } => {
            if is_execution(&target) {
                let v = client
                    .json(client.request(Method::GET, &format!("/v1/executions/{target}")))
                    .await?;
                if json_out {
                    print(&v)?;
                } else {
                    print_execution(&v);
                }
            } else {
                let v = client
                    .json(client.request(Method::GET, &format!("/v1/workflows/{target}")))
                    .await?;
                print(&v)?;
            }
        }
        WorkflowCommand::History { execution, reverse } => {
            if !is_execution(&execution) {
                bail!("name the execution by its ARN or as WORKFLOW:NAME");
            }
            let mut token: Option<String> = None;
            let mut all = Vec::new();
            loop {
                let mut req = client
                    .request(Method::GET, &format!("/v1/executions/{execution}/history"))
                    .query(&[("max_results", "1000")]);
                if reverse {
                    req = req.query(&[("reverse", "true")]);
                }
                if let Some(t) = &token {
                    req = req.query(&[("next_token", t)]);
                }
                let v = client.json(req).await?;
                for e in v["events"].as_array().into_iter().flatten() {
                    if json_out {
                        all.push(e.clone());
                    } else {
                        println!(
                            "{:>6} {} {:<28} {}",
                            e["id"],
                            time(&e["timestamp"]),
                            e["type"].as_str().unwrap_or(""),
                            e["details"]
                        );
                    }
                }
                match v["next_token"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
            if json_out {
                print(&Value::Array(all))?;
            }
        }
        WorkflowCommand::Stop {
            execution,
            error,
            cause,
        } => {
            let v = client
                .json(
                    client
                        .request(Method::POST, &format!("/v1/executions/{execution}/stop"))
                        .json(&json!({"error": error, "cause": cause})),
                )
                .await?;
            if json_out {
                print(&v)?;
            } else {
                println!(
                    "{} {}",
                    v["arn"].as_str().unwrap_or(""),
                    v["status"].as_str().unwrap_or("")
                );
            }
        }
        WorkflowCommand::Rm { name } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/workflows/{name}")))
                .await?;
            if json_out {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
