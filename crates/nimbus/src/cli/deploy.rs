//! `nimbus deploy`: zip a directory, upload it (content-addressed), create or
//! update the function.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;
use crate::manifest::{self, Planned};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Directory holding the code (and optionally nimbus.toml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Function name (default: manifest, then the directory name).
    #[arg(long)]
    name: Option<String>,
    /// python3 | nodejs | provided (AWS names like python3.12 are accepted).
    #[arg(long)]
    runtime: Option<String>,
    /// Handler, e.g. app.handler or index.handler.
    #[arg(long)]
    handler: Option<String>,
    /// Handler style: aws | azure | google | auto (default: detected from the package).
    #[arg(long)]
    style: Option<String>,
    /// Memory in MB (128-10240).
    #[arg(long)]
    memory: Option<u32>,
    /// Timeout in seconds (1-900).
    #[arg(long)]
    timeout: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Grant the function's own credentials a resource: s3:BUCKET, sqs:QUEUE,
    /// sns:TOPIC, lambda:FUNCTION, states:STATE_MACHINE (`*` wildcards; repeatable).
    #[arg(long = "allow", value_name = "SERVICE:NAME")]
    allow: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let mut plans = manifest::load(&args.dir)?;
    if plans.len() > 1 && (args.name.is_some() || args.runtime.is_some() || args.handler.is_some())
    {
        bail!(
            "--name, --runtime and --handler apply to a single function; this manifest declares {}",
            plans.len()
        );
    }
    for p in &mut plans {
        apply_flags(&args, p)?;
    }
    let mut out = Vec::new();
    for p in plans {
        out.push(deploy_one(&client, &args, p).await?);
    }
    // Routes after the functions they target. The manifest's routes are what
    // it declares: those it declared before and no longer does are removed.
    let routes = manifest::load_routes(&args.dir)?;
    let declared: Vec<(String, Value)> = routes
        .iter()
        .map(|r| Ok((r.route.clone(), serde_json::to_value(r.api)?)))
        .collect::<anyhow::Result<_>>()?;
    let owner = manifest::routes_owner(&args.dir)?;
    for mut r in routes {
        r.managed_by.clone_from(&owner);
        out.push(deploy_route(&client, &args, r).await?);
    }
    if let Some(owner) = owner {
        prune_routes(&client, &args, &owner, &declared).await?;
    }
    // Workflows last: their tasks call the functions just deployed.
    for w in manifest::load_workflows(&args.dir)? {
        out.push(deploy_workflow(&client, &args, w).await?);
    }
    // Schedules after what they fire.
    for (name, body) in manifest::load_schedules(&args.dir)? {
        let v = client
            .json(
                client
                    .request(Method::PUT, &format!("/v1/schedules/{name}"))
                    .json(&body),
            )
            .await?;
        if !args.client.json {
            println!(
                "deployed schedule {name}: {} (next fire {})",
                v["expression"].as_str().unwrap_or(""),
                v["next_fire"].as_str().unwrap_or("never")
            );
        }
        out.push(v);
    }
    if args.client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&if out.len() == 1 {
                out.remove(0)
            } else {
                Value::Array(out)
            })?
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_flags(args: &DeployArgs, p: &mut Planned) -> anyhow::Result<()> {
    let m = &mut p.manifest;
    if let Some(v) = &args.name {
        m.name = Some(v.clone());
    }
    if let Some(v) = &args.runtime {
        m.runtime = Some(v.clone());
    }
    if let Some(v) = &args.handler {
        m.handler = Some(v.clone());
    }
    if let Some(v) = &args.style {
        m.handler_style = Some(v.clone());
    }
    if let Some(v) = args.memory {
        m.memory_mb = Some(v);
    }
    if let Some(v) = args.timeout {
        m.timeout_s = Some(v);
    }
    if let Some(v) = &args.description {
        m.description = Some(v.clone());
    }
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?} must look like KEY=VALUE")
        };
        m.environment.insert(k.to_string(), v.to_string());
    }
    for grant in &args.allow {
        let grant = nimbus_core::permissions::Permission::from(grant.as_str());
        if !m.permissions.contains(&grant) {
            m.permissions.push(grant);
        }
    }
    if m.name.is_none() {
        let dir = std::fs::canonicalize(&p.code_dir)
            .with_context(|| format!("cannot open {}", p.code_dir.display()))?;
        m.name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    if m.runtime.is_none() {
        m.runtime = detect_runtime(&p.code_dir);
    }
    Ok(())
}

/// Guesses the runtime from the files present when neither flag nor manifest says.
fn detect_runtime(dir: &Path) -> Option<String> {
    let has = |f: &str| dir.join(f).exists();
    if has("bootstrap") {
        Some("provided".into())
    } else if has("package.json") || has("index.js") || has("index.mjs") || has("index.cjs") {
        Some("nodejs".into())
    } else if has("requirements.txt")
        || has("function_app.py")
        || std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "py"))
    {
        Some("python3".into())
    } else {
        None
    }
}

/// Removes the routes `owner` (a manifest) declared on an earlier deploy and
/// no longer declares (`declared`: route key and API kind).
async fn prune_routes(
    client: &Client,
    args: &DeployArgs,
    owner: &str,
    declared: &[(String, Value)],
) -> anyhow::Result<()> {
    let listed = client
        .json(client.request(Method::GET, "/v1/routes"))
        .await
        .context("listing routes")?;
    for r in listed["routes"].as_array().into_iter().flatten() {
        let key = r["route"].as_str().unwrap_or_default();
        if r["managed_by"].as_str() != Some(owner)
            || declared.iter().any(|(k, api)| k == key && *api == r["api"])
        {
            continue;
        }
        let id = r["id"].as_str().unwrap_or_default();
        client
            .send(client.request(Method::DELETE, &format!("/v1/routes/{id}")))
            .await
            .with_context(|| format!("removing route `{key}`"))?;
        if !args.client.json {
            println!("removed route {key} ({id}): no longer in nimbus.toml");
        }
    }
    Ok(())
}

/// Creates the route, or replaces the one with the same key and function.
async fn deploy_route(
    client: &Client,
    args: &DeployArgs,
    route: nimbus_gateway::RouteSpec,
) -> anyhow::Result<Value> {
    let mut doc = serde_json::to_value(&route)?;
    // A route document never carries its HS256 secret out; this one must.
    if let Some(secret) = route.jwt.as_ref().and_then(|j| j.secret.as_ref()) {
        doc["jwt"]["secret"] = json!(secret);
    }
    let v = client
        .json(
            client
                .request(Method::POST, "/v1/routes?replace=true")
                .json(&doc),
        )
        .await
        .with_context(|| format!("route `{}`", route.route))?;
    if !args.client.json {
        println!(
            "deployed route {} → {} ({})",
            route.route,
            route.target,
            v["id"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

async fn deploy_workflow(
    client: &Client,
    args: &DeployArgs,
    w: manifest::PlannedWorkflow,
) -> anyhow::Result<Value> {
    let mut body = json!({"definition": w.definition});
    if let Some(t) = w.machine_type {
        body["type"] = json!(t);
    }
    if let Some(r) = w.role_arn {
        body["role_arn"] = json!(r);
    }
    let v = client
        .json(
            client
                .request(Method::PUT, &format!("/v1/workflows/{}", w.name))
                .json(&body),
        )
        .await?;
    if !args.client.json {
        println!(
            "deployed workflow {}: {} {}",
            w.name,
            v["type"].as_str().unwrap_or(""),
            v["arn"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

async fn deploy_one(client: &Client, args: &DeployArgs, p: Planned) -> anyhow::Result<Value> {
    let m = &p.manifest;
    let name = m
        .name
        .clone()
        .context("cannot tell the function name; pass --name")?;
    let runtime = m.runtime.clone().with_context(|| {
        format!("cannot tell the runtime of {name}; pass --runtime or set it in nimbus.toml")
    })?;
    let zip = super::package::zip_dir(&p.code_dir)?;
    let size = zip.len();
    let code = upload(client, zip, !args.client.json).await?;
    let sha = code["sha256"]
        .as_str()
        .context("upload answer lacks sha256")?
        .to_string();
    let mut body = json!({
        "runtime": runtime,
        "code_sha256": sha,
        "environment": m.environment,
        "permissions": m.permissions,
    });
    for (k, v) in [
        ("handler", m.handler.clone().map(Value::from)),
        ("handler_style", m.handler_style.clone().map(Value::from)),
        ("memory_mb", m.memory_mb.map(Value::from)),
        ("timeout_s", m.timeout_s.map(Value::from)),
        (
            "ephemeral_storage_mb",
            m.ephemeral_storage_mb.map(Value::from),
        ),
        ("network", m.network.clone().map(Value::from)),
        ("description", m.description.clone().map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let f = client
        .json(
            client
                .request(Method::PUT, &format!("/v1/functions/{name}"))
                .json(&body),
        )
        .await?;
    if !args.client.json {
        let style = match f["resolved_style"].as_str() {
            Some(s) if s != "aws" => format!(" ({s} style)"),
            _ => String::new(),
        };
        println!(
            "deployed {name}: {} {}{style} · {} MB · {} s · code {} ({})",
            f["runtime"].as_str().unwrap_or(""),
            f["handler"].as_str().unwrap_or(""),
            f["memory_mb"],
            f["timeout_s"],
            &sha[..12],
            human_bytes(size as u64),
        );
    }
    if let Some(url) = &m.url {
        let u = client
            .json(
                client
                    .request(Method::PUT, &format!("/v1/functions/{name}/url"))
                    .json(url),
            )
            .await
            .with_context(|| format!("function URL of {name}"))?;
        if !args.client.json {
            println!(
                "deployed URL of {name}: {}",
                u["url"].as_str().unwrap_or("")
            );
        }
    }
    Ok(f)
}

async fn upload(client: &Client, zip: Vec<u8>, interactive: bool) -> anyhow::Result<Value> {
    let total = zip.len() as u64;
    let show =
        interactive && total > 1 << 20 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let body = if show {
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template"),
        );
        let chunks: Vec<Vec<u8>> = zip.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
        let stream = futures_stream(chunks, bar);
        reqwest::Body::wrap_stream(stream)
    } else {
        reqwest::Body::from(zip)
    };
    client
        .json(
            client
                .request(Method::POST, "/v1/code")
                .header("content-type", "application/zip")
                .header("content-length", total)
                .body(body),
        )
        .await
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
    bar: indicatif::ProgressBar,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        for c in chunks {
            let n = c.len() as u64;
            if tx.send(Ok(c)).await.is_err() {
                break;
            }
            bar.inc(n);
        }
        bar.finish_and_clear();
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
