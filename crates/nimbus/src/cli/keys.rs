//! `nimbus keys create|ls|rm`: access keys for the AWS-compatible APIs.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (never their secrets).
    Ls,
    /// Delete a key; requests signed with it are refused from then on.
    Rm { access_key_id: String },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json = args.client.json;
    match args.command {
        KeysCommand::Create { description } => {
            let k = client
                .json(
                    client
                        .request(Method::POST, "/v1/keys")
                        .json(&json!({ "description": description })),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&k)?);
            } else {
                println!("access key created (the secret is shown only now):");
                println!(
                    "  AWS_ACCESS_KEY_ID={}",
                    k["access_key_id"].as_str().unwrap_or("")
                );
                println!(
                    "  AWS_SECRET_ACCESS_KEY={}",
                    k["secret_access_key"].as_str().unwrap_or("")
                );
            }
        }
        KeysCommand::Ls => {
            let v = client.json(client.request(Method::GET, "/v1/keys")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["keys"])?);
            } else {
                println!("{:<24} {:<30} DESCRIPTION", "ACCESS KEY ID", "CREATED");
                for k in v["keys"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<30} {}",
                        k["access_key_id"].as_str().unwrap_or(""),
                        k["created_at"].as_str().unwrap_or(""),
                        k["description"].as_str().unwrap_or("")
                    );
                }
            }
        }
        KeysCommand::Rm { access_key_id } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/keys/{access_key_id}")))
                .await?;
            if json {
                println!("{}", json!({ "deleted": access_key_id }));
            } else {
                println!("deleted {access_key_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
