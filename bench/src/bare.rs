//! The baselines: the hello handler behind a plain server with no platform in
//! between. Python runs the fixture's raw ASGI app under uvicorn, Node serves
//! the same handler from `http.createServer`. Starting one is also the bare
//! cold-start measurement: spawn → first successful 200 response.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Uri;
use tokio::process::{Child, Command};

use crate::client::Http;
use crate::fixtures::Lang;
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
        spawn_until_hello(cmd, port, lang.label(), &self.log_path(lang)).await
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
        Ok(spawn_until_hello(cmd, port, "functions-framework", &log)
            .await?
            .0)
    }
}

async fn spawn_until_hello(
    mut cmd: Command,
    port: u16,
    label: &str,
    log: &Path,
) -> Result<(BareServer, Duration)> {
    let uri: Uri = format!("http://127.0.0.1:{port}/").parse()?;
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
