//! `nimbus publish` and `nimbus alias`: immutable versions and named pointers to them.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct PublishArgs {
    /// Function name.
    name: String,
    /// Description of this version (default: the function's).
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let mut body = json!({});
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    let v = client
        .json(
            client
                .request(
                    Method::POST,
                    &format!("/v1/functions/{}/versions", args.name),
                )
                .json(&body),
        )
        .await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "published {}:{} (code {})",
            args.name,
            v["version"].as_str().unwrap_or("?"),
            &v["code_sha256"].as_str().unwrap_or("")
                [..12.min(v["code_sha256"].as_str().unwrap_or("").len())]
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AliasArgs {
    #[command(subcommand)]
    command: AliasCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Create or move an alias: `nimbus alias set hello live 3 [--weight 4=0.1]`.
    Set {
        name: String,
        alias: String,
        version: String,
        /// Send a share of traffic to a second version: VERSION=WEIGHT (0.0-1.0).
        #[arg(long, value_name = "VERSION=WEIGHT")]
        weight: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List a function's aliases.
    Ls { name: String },
    /// Delete an alias.
    Rm { name: String, alias: String },
}

pub async fn alias(args: AliasArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json_out = args.client.json;
    match args.command {
        AliasCommand::Set {
            name,
            alias,
            version,
            weight,
            description,
        } => {
            let mut body = json!({ "version": version });
            if let Some(w) = weight {
                let (v, w) = w
                    .split_once('=')
                    .context("--weight must look like VERSION=WEIGHT, e.g. 4=0.1")?;
                let w: f64 = w
                    .parse()
                    .context("the weight must be a number between 0.0 and 1.0")?;
                body["routing"] = json!({ "version": v, "weight": w });
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let a = client
                .json(
                    client
                        .request(
                            Method::PUT,
                            &format!("/v1/functions/{name}/aliases/{alias}"),
                        )
                        .json(&body),
                )
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!("{name}:{alias} → {}", describe(&a));
            }
        }
        AliasCommand::Ls { name } => {
            let v = client
                .json(client.request(Method::GET, &format!("/v1/functions/{name}/aliases")))
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v["aliases"])?);
            } else {
                for a in v["aliases"].as_array().into_iter().flatten() {
                    println!("{:<24} {}", a["name"].as_str().unwrap_or(""), describe(a));
                }
            }
        }
        AliasCommand::Rm { name, alias } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/v1/functions/{name}/aliases/{alias}"),
                ))
                .await?;
            if json_out {
                println!("{}", json!({ "deleted": format!("{name}:{alias}") }));
            } else {
                println!("deleted {name}:{alias}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(a: &Value) -> String {
    let main = a["function_version"].as_str().unwrap_or("?");
    match a.get("routing").filter(|r| !r.is_null()) {
        Some(r) => {
            let w = r["weight"].as_f64().unwrap_or(0.0);
            format!(
                "version {main} ({:.0}%), version {} ({:.0}%)",
                (1.0 - w) * 100.0,
                r["version"].as_str().unwrap_or("?"),
                w * 100.0
            )
        }
        None => format!("version {main}"),
    }
}

/// Splits `name:qualifier` as the AWS tools accept it.
pub fn split_qualifier(name: &str) -> anyhow::Result<(&str, Option<&str>)> {
    match name.split_once(':') {
        None => Ok((name, None)),
        Some((n, q)) if !n.is_empty() && !q.is_empty() && !q.contains(':') => Ok((n, Some(q))),
        _ => bail!("{name:?} must be NAME or NAME:QUALIFIER"),
    }
}
