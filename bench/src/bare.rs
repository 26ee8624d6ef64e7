//! The baselines: the hello handler behind a plain server with no platform in
//! between. Python runs the fixture's raw ASGI app under uvicorn, Node serves
//! the same handler from `http.createServer`. Starting one is also the bare
//! cold-start measurement: spawn → first successful 200 response.
//!
//! The peers people run functions with locally live here too: Google's
//! functions-framework (Python) and serverless-offline v13 on serverless v3
//! (Node), each started in its default mode with the same handler source.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hyper::Uri;
use tokio::process::{Child, Command};

use crate::client::Http;
use crate::fixtures::{self, Lang};
use crate::measure::{check_hello, hello};

/// How long a bare server may take to answer its first request.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// Pause between connection attempts while a server starts.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// How to start the bare servers; `root` holds their sources (fixtures::write_bare).
pub struct Baselines {
    pub uvicorn: PathBuf,
    pub node: PathBuf,
    /// Google's functions-framework, the peer of the c=32 row.
    pub functions_framework: PathBuf,
    /// Where `npm ci` installed serverless v3 and serverless-offline v13.
    pub serverless_offline: PathBuf,
    pub root: PathBuf,
}

pub struct BareServer {
    child: Child,
    pub uri: Uri,
}

impl Baselines {
    fn command(&self, lang: Lang, port: u16) -> Command {
        let mut cmd = match lang {
            Lang::Python => {
                let mut cmd = Command::new(&self.uvicorn);
                cmd.args(["app:app", "--host", "127.0.0.1", "--port"])
                    .arg(port.to_string())
                    .args(["--log-level", "warning"]);
                cmd
            }
            Lang::Node => {
                let mut cmd = Command::new(&self.node);
                cmd.arg("server.mjs").arg(port.to_string());
                cmd
            }
        };
        cmd.current_dir(lang.bare_dir(&self.root));
        cmd
    }

    fn log_path(&self, lang: Lang) -> PathBuf {
        self.root.join(format!("{}.log", lang.label()))
    }

    /// Starts the server and returns it with the time from spawn to its first
    /// successful hello response (connect is retried every millisecond).
    pub async fn start(&self, lang: Lang) -> Result<(BareServer, Duration)> {
        let port = free_port()?;
        let cmd = self.command(lang, port);
        spawn_until_hello(cmd, root_uri(port)?, lang.label(), &self.log_path(lang)).await
    }

    /// The Python hello handler behind Google's functions-framework (its
    /// defaults: gunicorn with Flask).
    pub async fn start_functions_framework(&self) -> Result<BareServer> {
        let port = free_port()?;
        let mut cmd = Command::new(&self.functions_framework);
        cmd.args([
            "--target",
            "gcf_hello",
            "--source",
            "app.py",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .current_dir(Lang::Python.bare_dir(&self.root));
        let log = self.root.join("functions-framework.log");
        Ok(
            spawn_until_hello(cmd, root_uri(port)?, "functions-framework", &log)
                .await?
                .0,
        )
    }

    /// The Node hello handler behind `serverless offline` (serverless v3 with
    /// serverless-offline v13, its default worker-threads mode), on an httpApi
    /// route `POST /hello` (fixtures/node/serverless.yml). The service
    /// directory holds the same handler file and a link to the installed
    /// packages, so serverless finds its plugin as it would in a project.
    pub async fn start_serverless_offline(&self) -> Result<BareServer> {
        let service = fixtures::serverless_dir(&self.root);
        let packages = self.serverless_offline.join("node_modules");
        let cli = packages.join("serverless/bin/serverless.js");
        ensure!(
            cli.exists(),
            "{} is missing: run `npm ci` in {} (scripts/bench does)",
            cli.display(),
            self.serverless_offline.display()
        );
        let link = service.join("node_modules");
        if !link.exists() {
            std::os::unix::fs::symlink(&packages, &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
        }
        let (port, lambda_port) = (free_port()?, free_port()?);
        let mut cmd = Command::new(&self.node);
        cmd.arg(&cli)
            .args(["offline", "start", "--host", "127.0.0.1", "--httpPort"])
            .arg(port.to_string())
            // Its Lambda invoke endpoint would take 3002 otherwise.
            .arg("--lambdaPort")
            .arg(lambda_port.to_string())
            .args(["--noPrependStageInUrl", "--noTimeout"])
            // No update checks, telemetry or notices over a network we lack.
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off")
            .current_dir(&service);
        let uri = format!("http://127.0.0.1:{port}/hello").parse()?;
        let log = self.root.join("serverless-offline.log");
        Ok(spawn_until_hello(cmd, uri, "serverless-offline", &log)
            .await?
            .0)
    }

    /// `serverless-offline@X on serverless@Y`, from the installed packages.
    pub fn serverless_offline_version(&self) -> String {
        let version = |package: &str| {
            let manifest = self
                .serverless_offline
                .join("node_modules")
                .join(package)
                .join("package.json");
            std::fs::read(manifest)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into())
        };
        format!(
            "serverless-offline {} on serverless {}",
            version("serverless-offline"),
            version("serverless")
        )
    }
}

fn root_uri(port: u16) -> Result<Uri> {
    Ok(format!("http://127.0.0.1:{port}/").parse()?)
}

/// Spawns `cmd` and polls `uri` until it answers the hello document.
async fn spawn_until_hello(
    mut cmd: Command,
    uri: Uri,
    label: &str,
    log: &Path,
) -> Result<(BareServer, Duration)> {
    let stderr = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    // A fresh client per start: the first connection is part of what is timed.
    let http = Http::new();
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the {label} server"))?;
    loop {
        if let Ok(reply) = hello(&http, &uri).await {
            let elapsed = started.elapsed();
            check_hello(&reply)?;
            return Ok((BareServer { child, uri }, elapsed));
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the {label} server exited with {status}:\n{}",
                read_log(log)
            );
        }
        if started.elapsed() > STARTUP_LIMIT {
            bail!(
                "the {label} server did not answer within {STARTUP_LIMIT:?}:\n{}",
                read_log(log)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

impl BareServer {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the server and reaps it (bare servers keep no state worth a clean exit).
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A loopback port that was free a moment ago (the OS picks it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
