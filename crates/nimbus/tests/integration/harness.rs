//! Starting servers, building packages, calling the API.

use std::io::{BufRead, BufReader, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
/// The admin key every test server is started with.
pub const ADMIN_KEY_ID: &str = "NIMBTESTADMIN0000001";
pub const ADMIN_SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuv";

/// The repository root (for fixtures, examples and the test venv).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub struct Server {
    pub url: String,
    /// The HTTP gateway (`http://127.0.0.1:<port>`).
    pub gateway: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::blocking::Client,
    pub extra: Vec<String>,
    pub stderr_log: PathBuf,
    /// Start the server with an extra inherited descriptor (fd 200, no CLOEXEC),
    /// as a supervisor or a socket activation would leave one.
    pub leak_fd: bool,
}

/// The user test servers run as when `NIMBUS_TEST_SERVER_USER` names one:
/// scripts/test runs the hostile-function suite twice, with the server as
/// root and with the server as this unprivileged user.
pub fn server_user() -> Option<(u32, u32)> {
    let name = std::env::var("NIMBUS_TEST_SERVER_USER").ok()?;
    let c = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(
        !pw.is_null(),
        "NIMBUS_TEST_SERVER_USER={name}: no such user"
    );
    // SAFETY: non-null result of getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Whether test servers run as root.
pub fn server_is_root() -> bool {
    is_root() && server_user().is_none()
}

pub struct Invoked {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Invoked {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).map(|v| v.to_str().unwrap().to_string())
    }
    pub fn function_error(&self) -> Option<String> {
        self.header("x-nimbus-function-error")
    }
    pub fn request_id(&self) -> String {
        self.header("x-nimbus-request-id")
            .expect("request id header")
    }
    pub fn cold(&self) -> bool {
        self.header("x-nimbus-cold-start").as_deref() == Some("true")
    }
    pub fn log_tail(&self) -> String {
        use base64::Engine;
        let b = self.header("x-nimbus-log-result").expect("log tail header");
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    }
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `nimbus up` with extra flags on a fresh data dir.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on_fresh_data(extra, false)
    }

    /// Like `start_with`, leaking an inherited descriptor into the server.
    pub fn start_leaking_fd(extra: &[&str]) -> Self {
        Self::start_on_fresh_data(extra, true)
    }

    fn start_on_fresh_data(extra: &[&str], leak_fd: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut s = Server {
            url: String::new(),
            gateway: String::new(),
            data_dir,
            child: None,
            _tmp: Some(tmp),
            http: authed_client(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            stderr_log: PathBuf::new(),
            leak_fd,
        };
        s.launch();
        s
    }

    pub fn launch(&mut self) {
        self.stderr_log = self.data_dir.with_file_name(format!(
            "server-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let stderr = std::fs::File::create(&self.stderr_log).unwrap();
        let mut cmd = Command::new(BIN);
        let user = server_user();
        if let Some((uid, gid)) = user {
            let dir = self.data_dir.parent().unwrap();
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
            cmd.env("HOME", dir);
        }
        let leak = self.leak_fd;
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if leak {
                        let mut fds = [0; 2];
                        if libc::pipe(fds.as_mut_ptr()) == 0 {
                            libc::dup2(fds[1], 200);
                        }
                    }
                    if let Some((uid, gid)) = user
                        && (libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(gid) != 0
                            || libc::setuid(uid) != 0)
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .arg("--run-dir")
            .arg(self.data_dir.with_file_name("run"))
            .args(&self.extra)
            .env("NIMBUS_TEST_SECRET", "must-not-leak")
            .env("NIMBUS_ADMIN_ACCESS_KEY_ID", ADMIN_KEY_ID)
            .env("NIMBUS_ADMIN_SECRET_ACCESS_KEY", ADMIN_SECRET)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("nimbus binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut url = None;
        let mut gateway = None;
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.trim().strip_prefix("API:") {
                        url = Some(u.trim().to_string());
                    }
                    if let Some(u) = l.trim().strip_prefix("Gateway:") {
                        gateway = Some(u.trim().to_string());
                    }
                    if l.starts_with("try:") {
                        break;
                    }
                }
                _ => break,
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.url = url.unwrap_or_else(|| {
            panic!(
                "server did not announce its address; stderr:\n{}",
                std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
            )
        });
        self.gateway = gateway.unwrap_or_default();
        self.child = Some(child);
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        signal(child.id(), libc::SIGTERM);
        wait_timeout(&mut child, Duration::from_secs(40)).expect("server exits after SIGTERM")
    }

    /// Reaps a server that was SIGKILLed.
    pub fn stop_after_kill(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        wait_timeout(&mut child, Duration::from_secs(10))
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The Prometheus text of `/metrics` (asserted to answer 200).
    pub fn metrics_text(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "/metrics");
        r.text().unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn upload(&self, zip: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/code", self.url))
            .body(zip)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Uploads `zip` and creates (or replaces) a function; returns (status, body).
    pub fn try_deploy(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        zip: Vec<u8>,
        extra: Value,
    ) -> (u16, Value) {
        let (status, code) = self.upload(zip);
        if status != 201 {
            return (status, code);
        }
        let mut body =
            json!({"runtime": runtime, "handler": handler, "code_sha256": code["sha256"]});
        if let Value::Object(m) = extra {
            body.as_object_mut().unwrap().extend(m);
        }
        self.send_json("PUT", &format!("/v1/functions/{name}"), &body)
    }

    pub fn deploy(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        zip: Vec<u8>,
        extra: Value,
    ) -> Value {
        let (status, body) = self.try_deploy(name, runtime, handler, zip, extra);
        assert!(
            status == 201 || status == 200,
            "deploy {name} failed: {status} {body}"
        );
        body
    }

    pub fn invoke_raw(
        &self,
        name: &str,
        payload: impl Into<reqwest::blocking::Body>,
        tail: bool,
    ) -> Invoked {
        let q = if tail { "?log=tail" } else { "" };
        let r = self
            .http
            .post(format!("{}/v1/functions/{name}/invoke{q}", self.url))
            .body(payload)
            .send()
            .unwrap();
        Invoked {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().unwrap().to_vec(),
        }
    }

    pub fn invoke(&self, name: &str, payload: &Value) -> Invoked {
        let r = self.invoke_raw(name, payload.to_string(), true);
        assert_eq!(
            r.status,
            200,
            "invoke {name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r
    }

    /// All stored log lines of a function, waiting until `pred` holds (logs are written asynchronously).
    pub fn logs_until(&self, name: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, v) = self.get(&format!("/v1/functions/{name}/logs?limit=10000"));
            assert_eq!(status, 200, "{v}");
            let events = v["events"].as_array().unwrap().clone();
            if pred(&events) || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("NIMBUS_ENDPOINT", &self.url)
            .env("NIMBUS_ACCESS_KEY_ID", ADMIN_KEY_ID)
            .env("NIMBUS_SECRET_ACCESS_KEY", ADMIN_SECRET)
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// An HTTP client that authenticates as the test admin.
pub fn authed_client() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_KEY_ID}:{ADMIN_SECRET}")
            .parse()
            .unwrap(),
    );
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Whether the tests run as root (then instances run as unprivileged users).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Builds a zip from (path, contents, unix mode) entries.
pub fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn py(source: &str) -> Vec<u8> {
    zip_of(&[("app.py", source.as_bytes(), 0o644)])
}

pub fn node(file: &str, source: &str) -> Vec<u8> {
    zip_of(&[(file, source.as_bytes(), 0o644)])
}

/// A Python function `app.handler` with the given source, deployed under `name`.
pub fn deploy_py(s: &Server, name: &str, source: &str, extra: Value) {
    s.deploy(name, "python3", "app.handler", py(source), extra);
}

pub fn lines_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// Host pids of the processes of function `name`: an instance sees itself as
/// PID 1 of its own namespace, so tests find it on the host by its environment
/// (readable by root).
pub fn host_pids_of(name: &str) -> Vec<u32> {
    let needle = format!("AWS_LAMBDA_FUNCTION_NAME={name}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Whether `pid` is a live process (a zombie has no command line).
pub fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}
