//! Running Nimbus for the benchmark: `nimbus up` with its API and gateway on
//! loopback ports chosen by the OS (never the default 8471, which a developer's
//! own server may hold) and a throw-away data directory, the hello functions and
//! their gateway routes deployed through the native API, and a SIGTERM at the
//! end, as an operator would run it.
//!
//! Every server runs with `--cpu-per-gb off`: under Lambda's ratio (0.579 CPU
//! per GB, Nimbus's default) a 128 MB function gets 7% of a CPU, and the bench
//! would measure CFS throttling instead of the platform. The main server keeps
//! the default sandbox (`--sandbox default`), so the headline rows include its
//! cost; a second server with `--sandbox off` and otherwise the same flags
//! measures that cost. Cluster nodes (`--postgres`) are started the same way,
//! each with a data directory of its own, so that the only difference from the
//! embedded server is where the stores live.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hyper::{Method, Uri};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::Http;
use crate::fixtures::Lang;

/// How long `nimbus up` may take to announce its address.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed server may take to exit.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(40);

/// The admin key the benchmarked server is started with (a throwaway).
pub const KEY_ID: &str = "NIMBBENCHADMIN000001";
pub const SECRET: &str = "bench-secret-0123456789abcdefghijklmnopq";
/// `Authorization` header value for the native API.
pub const BEARER: &str = "Bearer NIMBBENCHADMIN000001:bench-secret-0123456789abcdefghijklmnopq";

/// `--cpu-per-gb` of every benchmarked server: no CFS quota (see the module doc).
const CPU_PER_GB: &str = "off";
/// Memory of every benchmarked function (Nimbus's default, Lambda's smallest).
const MEMORY_MB: u32 = 128;

/// Whether a server sandboxes its instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sandbox {
    /// `--sandbox default`: namespaces, a private root, seccomp.
    On,
    /// `--sandbox off`: the measurement-only switch (cgroups, rlimits and uids
    /// only), for the rows of the sandbox's cost.
    Off,
}

/// Where a server keeps its stores.
#[derive(Clone, Copy, Debug)]
pub enum Storage<'a> {
    /// SQLite files in the server's data directory.
    Embedded,
    /// A PostgreSQL database: every node given the same URL and master key
    /// file is one Nimbus.
    Postgres {
        url: &'a str,
        master_key_file: &'a Path,
    },
}

impl Sandbox {
    fn flag(self) -> &'static str {
        match self {
            Sandbox::On => "default",
            Sandbox::Off => "off",
        }
    }

    /// The prefix of the server's log, data and run directories under the work dir.
    fn prefix(self) -> &'static str {
        match self {
            Sandbox::On => "nimbus",
            Sandbox::Off => "nimbus-sandbox-off",
        }
    }
}

pub struct Nimbus {
    child: Child,
    base: String,
    /// The gateway listener, `http://127.0.0.1:<port>`.
    gateway: String,
    /// The first line of the announcement, e.g. `nimbus 0.1.0 ready`.
    pub version: String,
    /// What the announcement's `  sandbox:` line says the instances get, e.g.
    /// `namespaces, private root, seccomp; cgroup v2 (...), instances run as ...`
    /// (empty if the server printed no such line).
    pub sandbox: String,
    stderr_log: PathBuf,
    data_dir: PathBuf,
}

/// The gateway path of the language's hello route.
fn hello_path(lang: Lang) -> String {
    format!("/hello/{}", lang.label())
}

/// The interpreters Nimbus is told to use (the bare servers use the same ones).
#[derive(Clone, Copy)]
pub struct Interpreters<'a> {
    pub python: &'a Path,
    pub node: &'a Path,
}

impl Nimbus {
    /// Starts `nimbus up` with `--sandbox` set as `sandbox` says and waits for
    /// the `  API:`, `  Gateway:` and `  sandbox:` lines of its announcement.
    /// Its log, data and run directories live under `work` (named after
    /// `sandbox`, so two servers can run side by side), which goes away with the bench.
    pub async fn start(
        bin: &Path,
        work: &Path,
        interpreters: Interpreters<'_>,
        sandbox: Sandbox,
    ) -> Result<Self> {
        Self::launch(
            bin,
            work,
            interpreters,
            sandbox,
            Storage::Embedded,
            sandbox.prefix(),
        )
        .await
    }

    /// Starts a node on `storage` with the default sandbox, like the main
    /// server; `name` names its log, data and run directories under `work`.
    pub async fn start_node(
        bin: &Path,
        work: &Path,
        interpreters: Interpreters<'_>,
        storage: Storage<'_>,
        name: &str,
    ) -> Result<Self> {
        Self::launch(bin, work, interpreters, Sandbox::On, storage, name).await
    }

    async fn launch(
        bin: &Path,
        work: &Path,
        interpreters: Interpreters<'_>,
        sandbox: Sandbox,
        storage: Storage<'_>,
        prefix: &str,
    ) -> Result<Self> {
        let stderr_log = work.join(format!("{prefix}.log"));
        let data_dir = work.join(format!("{prefix}-data"));
        let stderr = std::fs::File::create(&stderr_log)?;
        let mut command = Command::new(bin);
        command.arg("up");
        if let Storage::Postgres {
            url,
            master_key_file,
        } = storage
        {
            command
                .arg("--postgres")
                .arg(url)
                .arg("--master-key-file")
                .arg(master_key_file);
        }
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "127.0.0.1:0",
                "--sandbox",
                sandbox.flag(),
                "--cpu-per-gb",
                CPU_PER_GB,
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--run-dir")
            .arg(work.join(format!("{prefix}-run")))
            .arg("--python")
            .arg(interpreters.python)
            .arg("--node")
            .arg(interpreters.node)
            .env("NIMBUS_ADMIN_ACCESS_KEY_ID", KEY_ID)
            .env("NIMBUS_ADMIN_SECRET_ACCESS_KEY", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let announced = tokio::time::timeout(STARTUP_LIMIT, async {
            let mut version = String::new();
            let (mut api, mut gateway) = (None, None);
            while let Some(line) = lines.next_line().await? {
                if version.is_empty() {
                    version = line.trim().trim_end_matches(" ready").to_string();
                }
                if let Some(url) = line.strip_prefix("  API:") {
                    api = Some(url.trim().to_string());
                } else if let Some(url) = line.strip_prefix("  Gateway:") {
                    gateway = Some(url.trim().to_string());
                }
                // The sandbox line comes after the addresses; the hint line
                // (not indented) ends the announcement.
                let sandbox = line.strip_prefix("  sandbox:").map(str::trim);
                let ended = sandbox.is_some() || !line.starts_with(' ');
                if let (Some(api), Some(gateway), true) = (&api, &gateway, ended) {
                    let sandbox = sandbox.unwrap_or_default().to_string();
                    return Ok(Some((api.clone(), gateway.clone(), version, sandbox)));
                }
            }
            anyhow::Ok(None)
        })
        .await;
        let (base, gateway, version, announced_sandbox) = match announced {
            Ok(Ok(Some(found))) => found,
            _ => bail!(
                "nimbus ({prefix}) did not announce its API and gateway addresses; its log:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            ),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            base,
            gateway,
            version,
            sandbox: announced_sandbox,
            stderr_log,
            data_dir,
        })
    }

    /// Whether the announcement says instances get namespaces (a server asked
    /// for the default sandbox starts without them, and says so, where the
    /// kernel cannot give them).
    pub fn has_namespaces(&self) -> bool {
        self.sandbox.contains("namespaces") && !self.sandbox.starts_with("OFF")
    }

    /// The API listener, `http://127.0.0.1:<port>` (the AWS APIs are there too).
    pub fn api_base(&self) -> &str {
        &self.base
    }

    /// Waits until this node knows `function` (deployed through another node
    /// of its cluster, it arrives through the change feed).
    pub async fn wait_for_function(&self, http: &Http, function: &str) -> Result<()> {
        let uri = self.uri(&format!("/v1/functions/{function}"))?;
        let deadline = tokio::time::Instant::now() + STARTUP_LIMIT;
        loop {
            let reply = http
                .send(Method::GET, &uri, "application/json", Default::default())
                .await?;
            if reply.status == 200 {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "{function} did not reach {}: {} {}",
                self.base,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn uri(&self, path: &str) -> Result<Uri> {
        Ok(format!("{}{path}", self.base).parse()?)
    }

    pub fn invoke_uri(&self, lang: Lang) -> Result<Uri> {
        self.invoke_uri_of(lang.function_name())
    }

    pub fn invoke_uri_of(&self, function: &str) -> Result<Uri> {
        self.uri(&format!("/v1/functions/{function}/invoke"))
    }

    /// Asynchronous (`Event`) invocation of the language's function.
    pub fn async_uri(&self, lang: Lang) -> Result<Uri> {
        self.uri(&format!(
            "/v1/functions/{}/invoke?type=event",
            lang.function_name()
        ))
    }

    /// The gateway route of the language's function ([`Nimbus::add_hello_route`]).
    pub fn gateway_uri(&self, lang: Lang) -> Result<Uri> {
        Ok(format!("{}{}", self.gateway, hello_path(lang)).parse()?)
    }

    /// Declares `POST /hello/<lang>` → the language's function (payload 2.0,
    /// no auth) through the native API; `?replace=true` makes it idempotent.
    pub async fn add_hello_route(&self, http: &Http, lang: Lang) -> Result<()> {
        let spec = json!({"route": format!("POST {}", hello_path(lang)),
            "function": lang.function_name(), "payload_format": "2.0"});
        let reply = http
            .send_json(Method::POST, &self.uri("/v1/routes?replace=true")?, &spec)
            .await?;
        ensure!(
            reply.status == 201 || reply.status == 200,
            "adding the route to {} failed: {} {}",
            lang.function_name(),
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }

    pub fn metrics_uri(&self) -> Result<Uri> {
        self.uri("/metrics")
    }

    /// Where the server keeps its data (and its event queue).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Uploads the language's package and creates its function.
    pub async fn deploy(&self, http: &Http, lang: Lang) -> Result<()> {
        self.deploy_as(http, lang, lang.function_name(), json!({}))
            .await
    }

    /// The language's package deployed as `name` with `environment`.
    pub async fn deploy_as(
        &self,
        http: &Http,
        lang: Lang,
        name: &str,
        environment: serde_json::Value,
    ) -> Result<()> {
        let code = http
            .send(
                Method::POST,
                &self.uri("/v1/code")?,
                "application/zip",
                lang.package()?.into(),
            )
            .await?;
        ensure!(
            code.status == 201,
            "upload failed: {} {}",
            code.status,
            String::from_utf8_lossy(&code.body)
        );
        let sha256 = code.json()?["sha256"].clone();
        let spec = json!({"runtime": lang.runtime(), "handler": lang.handler(),
            "code_sha256": sha256, "environment": environment, "memory_mb": MEMORY_MB});
        let put = http
            .send_json(
                Method::PUT,
                &self.uri(&format!("/v1/functions/{name}"))?,
                &spec,
            )
            .await?;
        ensure!(
            put.status == 201 || put.status == 200,
            "deploying {} failed: {} {}",
            name,
            put.status,
            String::from_utf8_lossy(&put.body)
        );
        Ok(())
    }

    /// Changes the function's description, which retires its instances: the next
    /// invocation has to start a new one.
    pub async fn retire_instances(&self, http: &Http, function: &str, tag: usize) -> Result<()> {
        let uri = self.uri(&format!("/v1/functions/{function}"))?;
        let patch = json!({"description": format!("benchmark cold start {tag}")});
        let reply = http.send_json(Method::PATCH, &uri, &patch).await?;
        ensure!(
            reply.status == 200,
            "PATCH {uri} failed: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().context("nimbus already exited")?;
        let pid = libc::pid_t::try_from(pid)?;
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own
        // child, not yet reaped (we still hold its handle), so it names no other process.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("cannot signal nimbus: {}", std::io::Error::last_os_error());
        }
        let status = tokio::time::timeout(SHUTDOWN_LIMIT, self.child.wait())
            .await
            .context("nimbus did not exit after SIGTERM")??;
        ensure!(
            status.success(),
            "nimbus exited with {status}; its log:\n{}",
            std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
        );
        Ok(())
    }
}
