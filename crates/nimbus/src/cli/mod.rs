//! Command-line interface. Every command except `up` is a client of the native API.

mod deploy;
mod dlq;
mod functions;
mod invoke;
mod keys;
mod logs;
mod package;
mod routes;
mod schedules;
mod usage;
mod versions;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::server::ServerArgs;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8470";

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Self-hosted serverless functions in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Address of the Nimbus API.
    #[arg(long, env = "NIMBUS_ENDPOINT", default_value = DEFAULT_ENDPOINT, global = true)]
    pub endpoint: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Nimbus server on embedded defaults.
    Up(Box<ServerArgs>),
    /// Package a directory and deploy it as a function (reads DIR/nimbus.toml if present).
    Deploy(deploy::DeployArgs),
    /// Invoke a function synchronously and print its result.
    Invoke(invoke::InvokeArgs),
    /// List functions.
    Ls(ClientOnly),
    /// Show one function.
    Get(NameArg),
    /// Delete a function.
    Rm(NameArg),
    /// Show a function's logs.
    Logs(logs::LogsArgs),
    /// Manage access keys for the AWS-compatible APIs.
    Keys(keys::KeysArgs),
    /// Publish the function's current code and configuration as a new version.
    Publish(versions::PublishArgs),
    /// Manage aliases (named pointers to versions, with optional traffic splitting).
    Alias(versions::AliasArgs),
    /// Asynchronous events that failed every attempt: list and replay.
    Dlq(dlq::DlqArgs),
    /// Rate and cron rules that invoke functions or start workflows.
    Schedules(schedules::SchedulesArgs),
    /// Requests, errors, throttles, cold starts, GB-seconds and latency per function.
    Usage(usage::UsageArgs),
    /// HTTP gateway routes: `routes add "GET /users/{id}" users`, `routes ls`, `routes rm`.
    Routes(routes::RoutesArgs),
    /// Function URLs: `url create|get|rm NAME`.
    Url(routes::UrlArgs),
    /// Function keys and API keys for gateway routes (stored hashed).
    GatewayKeys(routes::GatewayKeysArgs),
    /// Price recorded usage (or a hypothetical workload) with Lambda's price table.
    Cost(Box<usage::CostArgs>),
    /// Workflows (Amazon States Language state machines) and their executions.
    Workflow(workflow::WorkflowArgs),
}

#[derive(clap::Args)]
struct ClientOnly {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
struct NameArg {
    /// Function name.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

impl Cli {
    /// Async worker threads requested for the server (`None`: one per CPU).
    pub fn worker_threads(&self) -> Option<usize> {
        match &self.command {
            Command::Up(a) => a.worker_threads.filter(|n| *n > 0),
            _ => Some(1), // a client command needs no parallelism
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => crate::server::run(*args).await.map(|_| ExitCode::SUCCESS),
        Command::Deploy(a) => deploy::run(a).await,
        Command::Invoke(a) => invoke::run(a).await,
        Command::Ls(a) => functions::list(&Client::new(&a.client)?, a.client.json).await,
        Command::Get(a) => functions::get(&Client::new(&a.client)?, &a.name, a.client.json).await,
        Command::Rm(a) => functions::remove(&Client::new(&a.client)?, &a.name, a.client.json).await,
        Command::Logs(a) => logs::run(a).await,
        Command::Keys(a) => keys::run(a).await,
        Command::Publish(a) => versions::publish(a).await,
        Command::Alias(a) => versions::alias(a).await,
        Command::Dlq(a) => dlq::run(a).await,
        Command::Schedules(a) => schedules::run(a).await,
        Command::Usage(a) => usage::usage(a).await,
        Command::Cost(a) => usage::cost(*a).await,
        Command::Workflow(a) => workflow::run(a).await,
        Command::Routes(a) => routes::routes(a).await,
        Command::Url(a) => routes::url(a).await,
        Command::GatewayKeys(a) => routes::gateway_keys(a).await,
    }
}
