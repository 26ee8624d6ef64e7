//! Listeners under hostile clients: connections stalled inside their heads or
//! bodies are closed after the (short, test-configured) timeouts while normal
//! requests still answer at once; connection caps; requests refused from their
//! headers before a huge declared body is read; a Runtime API slowloris from
//! inside an instance; cleartext on a public address refused; the first admin
//! key kept out of stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// The flags that make every bound short enough to watch in a test.
const SHORT: &[&str] = &[
    "--header-timeout",
    "3s",
    "--body-timeout",
    "3s",
    "--body-rate-window",
    "3s",
];

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn connect(addr: SocketAddr, first_bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(first_bytes).unwrap();
    s
}

/// Connections that sent part of a request head and then nothing.
fn stall_heads(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| connect(addr, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa"))
        .collect()
}

/// Connections that sent a whole head declaring a 1 MB body, 100 bytes of it,
/// and then nothing.
fn stall_bodies(addr: SocketAddr, head: &str, n: usize) -> Vec<TcpStream> {
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(&[b'x'; 100]);
    (0..n).map(|_| connect(addr, &req)).collect()
}

/// Reads until the server closes the connection or `deadline` passes; true
/// when it closed (EOF or reset), whatever it answered first.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    answer_then_close(s, deadline).is_some()
}

/// What the server sent before it closed the connection, or `None` if it was
/// still open at `deadline`.
fn answer_then_close(s: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => break,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Whether the server still holds the connection open (nothing to read yet).
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(s.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// How many of `conns` were closed by `deadline`, and how many of those were
/// answered 408 first.
fn count_closed(conns: &mut [TcpStream], deadline: Instant) -> (usize, usize) {
    let answers: Vec<String> = conns
        .iter_mut()
        .filter_map(|s| answer_then_close(s, deadline))
        .collect();
    let timed_out = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .count();
    (answers.len(), timed_out)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

const ECHO: &str = "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps({'len': len(e.get('body') or '')})}\n";

/// 300 connections stalled in their heads and 100 in their bodies, on the API
/// listener and on the gateway at once.
#[test]
fn stalled_heads_and_bodies_are_shed_while_normal_requests_answer() {
    let s = Server::start_with(SHORT);
    deploy_py(&s, "echo", ECHO, json!({}));
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "POST /echo", "function": "echo"}),
    );
    assert_eq!(st, 201, "{v}");
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let gw_call = || {
        let r = plain
            .post(format!("{}/echo", s.gateway))
            .body("hello")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    gw_call(); // warm
    let (api, gw) = (addr_of(&s.url), addr_of(&s.gateway));
    let pid = s.pid();
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let upload_head = format!(
        "POST /v1/code HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY_ID}:{ADMIN_SECRET}\r\nContent-Length: 1000000\r\n\r\n"
    );
    let gw_head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let mut stalled = Vec::new();
    stalled.extend(stall_heads(api, 150));
    stalled.extend(stall_heads(gw, 150));
    stalled.extend(stall_bodies(api, &upload_head, 50));
    stalled.extend(stall_bodies(gw, gw_head, 50));
    std::thread::sleep(Duration::from_millis(300));
    // Held, not refused: the server is still waiting for them.
    let open = stalled.iter().filter(|c| still_open(c)).count();
    assert_eq!(
        open,
        stalled.len(),
        "stalled connections held before the timeouts ({:?})",
        started.elapsed()
    );

    let ((), api_took) = timed(|| {
        let r = plain.get(format!("{}/v1/health", s.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let ((), gw_took) = timed(gw_call);
    let rss_stalled = rss_kib(pid);
    println!(
        "with 400 stalled connections: API health {api_took:?}, gateway call {gw_took:?}; \
         server RSS {rss_before} KiB before, {rss_stalled} KiB stalled"
    );
    assert!(
        api_took < Duration::from_secs(1),
        "API answered in {api_took:?}"
    );
    assert!(
        gw_took < Duration::from_secs(1),
        "gateway answered in {gw_took:?}"
    );
    // 400 connections, each at most a small read buffer.
    assert!(
        rss_stalled < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_stalled} KiB"
    );

    // Header and body timeouts are 3 s: all closed well before 8 s.
    let (closed, timed_out) = count_closed(&mut stalled, started + Duration::from_secs(8));
    println!(
        "{closed} of {} stalled connections closed after {:?}, {timed_out} answered 408",
        stalled.len(),
        started.elapsed()
    );
    assert_eq!(closed, stalled.len(), "every stalled connection is closed");
    // The stalled bodies (100) are told why.
    assert_eq!(timed_out, 100, "stalled bodies answered 408");
    gw_call();
}

/// Connection N+1 from one address is closed at once while another address
/// is still served; the listener's total cap holds across addresses.
#[test]
fn connection_caps_refuse_excess_connections_per_address_and_in_total() {
    let s = Server::start_with(&["--max-connections-per-ip", "20", "--max-connections", "30"]);
    let api = addr_of(&s.url);
    // Twenty idle connections from 127.0.0.1 fill its share.
    let mut held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(api).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(api).unwrap();
    let refused_at = Instant::now();
    assert!(
        closed_by(&mut extra, Instant::now() + Duration::from_secs(2)),
        "connection 21 from one address is closed at once"
    );
    println!("connection 21 closed after {:?}", refused_at.elapsed());
    // Another address (127.0.0.2 reaches the loopback listener too) still gets in.
    let mut other = connect_from("127.0.0.2", api);
    other
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = answer_then_close(&mut other, Instant::now() + Duration::from_secs(5))
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(other);
    std::thread::sleep(Duration::from_millis(200));

    // Ten more from another address fill the listener (30 in total).
    let more: Vec<TcpStream> = (0..10).map(|_| connect_from("127.0.0.3", api)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut excess = connect_from("127.0.0.4", api);
    assert!(
        closed_by(&mut excess, Instant::now() + Duration::from_secs(2)),
        "connection 31 is closed at once"
    );
    // Places come back when connections close.
    held.truncate(10);
    drop(more);
    std::thread::sleep(Duration::from_millis(200));
    let metrics = s.metrics_text();
    for line in [
        r#"nimbus_listener_connections_refused_total{listener="api",cap="per_ip"} 1"#,
        r#"nimbus_listener_connections_refused_total{listener="api",cap="total"} 1"#,
        r#"nimbus_listener_connections_refused_total{listener="gateway",cap="total"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let ip: std::net::Ipv4Addr = from.parse().unwrap();
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 listener expected")
    };
    let (local, remote) = (sin(ip, 0), sin(*to.ip(), to.port()));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a new descriptor with valid address structs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), len),
            0,
            "bind {from}"
        );
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), len),
            0,
            "connect from {from}"
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// Sends only a head, then reads the answer without sending the body.
fn answer_to_head(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert!(
                    !out.is_empty(),
                    "no answer to the head alone ({e}): the server waits for the body"
                );
                panic!(
                    "the server answered but did not close the connection: {}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn amz_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sigv4_head(key_id: &str, content_sha256: Option<&str>) -> String {
    let date = amz_date();
    let day = &date[..8];
    let (hash_header, signed) = match content_sha256 {
        Some(h) => (
            format!("X-Amz-Content-SHA256: {h}\r\n"),
            "host;x-amz-content-sha256;x-amz-date",
        ),
        None => (String::new(), "host;x-amz-date"),
    };
    format!(
        "POST /2015-03-31/functions/victim/invocations HTTP/1.1\r\nHost: x\r\nX-Amz-Date: {date}\r\n{hash_header}\
         Authorization: AWS4-HMAC-SHA256 Credential={key_id}/{day}/us-east-1/lambda/aws4_request, \
         SignedHeaders={signed}, Signature={}\r\nContent-Length: 209715200\r\nExpect: 100-continue\r\n\r\n",
        "0".repeat(64)
    )
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// 200 MB bodies announced with an unknown key, a known key and a bad
/// signature, a known key and no declared hash, and a bad bearer key: each is
/// answered from its head alone, the connection closed, and the body never read.
#[test]
fn huge_bodies_are_refused_from_their_heads() {
    let s = Server::start();
    let api = addr_of(&s.url);
    let pid = s.pid();
    let rss_before = rss_kib(pid);
    let hash = "ab".repeat(32);
    let cases = [
        (
            "unknown key id",
            sigv4_head("NIMBUNKNOWNKEY000001", Some(&hash)),
            403,
            "UnrecognizedClient",
        ),
        (
            "unknown key id, no hash",
            sigv4_head("NIMBUNKNOWNKEY000001", None),
            403,
            "UnrecognizedClient",
        ),
        (
            "known key id, bad signature",
            sigv4_head(ADMIN_KEY_ID, Some(&hash)),
            403,
            "InvalidSignature",
        ),
        (
            "known key id, no declared hash",
            sigv4_head(ADMIN_KEY_ID, None),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "unsigned payload",
            sigv4_head(ADMIN_KEY_ID, Some("UNSIGNED-PAYLOAD")),
            400,
            "unsigned and streaming payloads",
        ),
        (
            "bad bearer key",
            format!(
                "POST /v1/code HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY_ID}:wrong\r\nContent-Length: 209715200\r\nExpect: 100-continue\r\n\r\n"
            ),
            401,
            "invalid access key",
        ),
    ];
    for (what, head, status, needle) in cases {
        let (answer, took) = timed(|| answer_to_head(api, &head));
        println!(
            "{what}: {} in {took:?}",
            answer.lines().next().unwrap_or("")
        );
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
        assert!(answer.contains(needle), "{what}: {answer}");
        assert!(
            !answer.contains("100 Continue"),
            "{what}: asked for the body: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{what}: {answer}"
        );
    }
    let rss_after = rss_kib(pid);
    println!("server RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

const SLOWLORIS: &str = r#"
import os, socket
held = {}
def handler(event, context):
    if event.get("open"):
        host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        held["s"] = s
        return {"opened": True}
    s = held["s"]
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return {"closed": False}
    except ConnectionResetError:
        return {"closed": True}
    return {"closed": data == b"" or b" 408 " in data}
"#;

/// An instance that opens a Runtime API connection, sends part of a head and
/// stops loses it after its function's timeout plus the margin; the function
/// keeps working.
#[test]
fn runtime_api_slowloris_is_closed_after_the_timeout() {
    let s = Server::start_with(&["--runtime-api-header-timeout", "1s"]);
    deploy_py(&s, "lorisfn", SLOWLORIS, json!({"timeout_s": 1}));
    let r = s.invoke("lorisfn", &json!({"open": true}));
    assert_eq!(r.json(), json!({"opened": true}));
    // Timeout 1 s + margin 1 s: closed by now.
    std::thread::sleep(Duration::from_secs(3));
    let r = s.invoke("lorisfn", &json!({}));
    let v: Value = r.json();
    assert_eq!(v, json!({"closed": true}), "the stalled head is still open");
}

#[test]
fn plaintext_on_a_public_address_is_refused_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, addr) in [("--listen", "0.0.0.0:0"), ("--gateway-listen", "0.0.0.0:0")] {
        let (listen, gateway) = if flag == "--listen" {
            (addr, "127.0.0.1:0")
        } else {
            ("127.0.0.1:0", addr)
        };
        let out = std::process::Command::new(BIN)
            .args([
                "up",
                "--listen",
                listen,
                "--gateway-listen",
                gateway,
                "--data-dir",
            ])
            .arg(tmp.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("refusing to serve {flag} {addr} in plaintext"))
                && err.contains("--insecure-plaintext"),
            "{err}"
        );
    }
}

/// Started without a terminal and without a key in the environment, the
/// server writes the first admin key to a 0600 file, not to stdout.
#[test]
fn first_admin_key_goes_to_a_private_file_not_stdout() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut child = std::process::Command::new(BIN)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--run-dir")
        .arg(tmp.path().join("run"))
        .env_remove("NIMBUS_ADMIN_ACCESS_KEY_ID")
        .env_remove("NIMBUS_ADMIN_SECRET_ACCESS_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.starts_with("try:") {
            break;
        }
    }
    signal(child.id(), libc::SIGTERM);
    let _ = wait_timeout(&mut child, Duration::from_secs(20));
    let file = data.join("admin-key.env");
    let text = std::fs::read_to_string(&file).expect("admin key file");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("export AWS_SECRET_ACCESS_KEY="))
        .expect("secret in the file");
    assert!(secret.len() >= 20);
    assert!(!stdout.contains(secret), "secret on stdout: {stdout}");
    assert!(stdout.contains("admin-key.env"), "{stdout}");
}

/// The gateway decides a route's key from the headers: a 200 MB body sent
/// with a wrong API key is refused before any of it is read.
#[test]
fn gateway_api_key_is_checked_before_the_body() {
    let s = Server::start();
    deploy_py(&s, "echo", ECHO, json!({}));
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "POST /ak", "function": "echo", "auth": "api_key"}),
    );
    assert_eq!(st, 201, "{v}");
    let head = "POST /ak HTTP/1.1\r\nHost: x\r\nx-api-key: wrong\r\nContent-Length: 209715200\r\nExpect: 100-continue\r\n\r\n";
    let (answer, took) = timed(|| answer_to_head(addr_of(&s.gateway), head));
    println!("{} in {took:?}", answer.lines().next().unwrap_or(""));
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}
