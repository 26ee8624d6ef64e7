//! `nimbus dlq ls|replay`: asynchronous events that failed every attempt.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters (optionally of one function).
    Ls {
        #[arg(long)]
        function: Option<String>,
    },
    /// Put a dead letter back in the queue; it runs again with fresh retries.
    Replay { id: String },
}

pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    match args.command {
        DlqCommand::Ls { function } => {
            let mut req = client.request(Method::GET, "/v1/dlq");
            if let Some(f) = &function {
                req = req.query(&[("function", f)]);
            }
            let v = client.json(req).await?;
            if args.client.json {
                println!("{}", serde_json::to_string_pretty(&v["events"])?);
            } else {
                println!("{:<38} {:<24} {:>8}  ERROR", "ID", "FUNCTION", "ATTEMPTS");
                for e in v["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:<38} {:<24} {:>8}  {}",
                        e["id"].as_str().unwrap_or(""),
                        e["function"].as_str().unwrap_or(""),
                        e["attempts"],
                        e["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        DlqCommand::Replay { id } => {
            client
                .send(client.request(Method::POST, &format!("/v1/dlq/{id}/replay")))
                .await?;
            if args.client.json {
                println!("{}", json!({ "replayed": id }));
            } else {
                println!("replayed {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
