//! `nimbus schedules add|ls|get|rm`: rate and cron rules that invoke a
//! function (asynchronously, with its retries and destinations) or start a
//! workflow.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Create or replace a schedule.
    Add {
        name: String,
        /// `rate(5 minutes)` or `cron(0 9 ? * MON-FRI *)` (EventBridge grammar).
        #[arg(long = "expression", short = 'e')]
        expression: String,
        /// The function to invoke, `NAME` or `NAME:QUALIFIER`.
        #[arg(
            long,
            conflicts_with = "workflow",
            required_unless_present = "workflow"
        )]
        function: Option<String>,
        /// The workflow (state machine) to start instead.
        #[arg(long)]
        workflow: Option<String>,
        /// IANA time zone the cron fields are read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// JSON event to send instead of the EventBridge "Scheduled Event".
        #[arg(long)]
        input: Option<String>,
        /// Fires missed while the server was down: skip (default) or catch-up-once.
        #[arg(long, default_value = "skip", value_parser = ["skip", "catch-up-once"])]
        missed: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List schedules with their next fire.
    Ls,
    /// Show one schedule.
    Get { name: String },
    /// Delete a schedule.
    Rm { name: String },
}

pub async fn run(args: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    match args.command {
        SchedulesCommand::Add {
            name,
            expression,
            function,
            workflow,
            timezone,
            input,
            missed,
            disabled,
            description,
        } => {
            let input: Option<Value> = input
                .map(|i| serde_json::from_str(&i).context("--input must be JSON"))
                .transpose()?;
            let body = json!({
                "expression": expression,
                "function": function,
                "workflow": workflow,
                "timezone": timezone,
                "input": input,
                "missed": missed,
                "enabled": !disabled,
                "description": description,
            });
            let v = client
                .json(
                    client
                        .request(Method::PUT, &format!("/v1/schedules/{name}"))
                        .json(&body),
                )
                .await?;
            if args.client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "schedule {name}: {} → {} (next fire {})",
                    v["expression"].as_str().unwrap_or(""),
                    target(&v),
                    v["next_fire"].as_str().unwrap_or("never")
                );
            }
        }
        SchedulesCommand::Ls => {
            let v = client
                .json(client.request(Method::GET, "/v1/schedules"))
                .await?;
            if args.client.json {
                println!("{}", serde_json::to_string_pretty(&v["schedules"])?);
            } else {
                println!(
                    "{:<24} {:<30} {:<24} {:<21} LAST FIRE",
                    "NAME", "EXPRESSION", "TARGET", "NEXT FIRE"
                );
                for s in v["schedules"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<30} {:<24} {:<21} {}",
                        s["name"].as_str().unwrap_or(""),
                        s["expression"].as_str().unwrap_or(""),
                        target(s),
                        s["next_fire"].as_str().unwrap_or("-"),
                        s["last_fire"].as_str().unwrap_or("-"),
                    );
                }
            }
        }
        SchedulesCommand::Get { name } => {
            let v = client
                .json(client.request(Method::GET, &format!("/v1/schedules/{name}")))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SchedulesCommand::Rm { name } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/schedules/{name}")))
                .await?;
            if args.client.json {
                println!("{}", json!({ "deleted": name }));
            } else {
                println!("deleted schedule {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn target(v: &Value) -> String {
    match (
        v["function"].as_str(),
        v["qualifier"].as_str(),
        v["workflow"].as_str(),
    ) {
        (Some(f), Some(q), _) => format!("{f}:{q}"),
        (Some(f), None, _) => f.to_string(),
        (None, _, Some(w)) => format!("workflow {w}"),
        _ => "-".into(),
    }
}
