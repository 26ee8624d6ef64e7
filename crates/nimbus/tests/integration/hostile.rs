//! Hostile functions: code written to escape its sandbox, starve the server or
//! reach another function. Every attack must fail, the platform must keep
//! serving other functions during and after it, and each test would fail if
//! the guarantee it checks were removed.
//!
//! scripts/test runs this module twice: with the server as root (instances get
//! uids of their own and cgroups) and with the server as an unprivileged user
//! (`NIMBUS_TEST_SERVER_USER`: user namespaces, no cgroups on this host). A
//! guarantee a mode cannot give is asserted to be *named* by `nimbus up`
//! instead.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// One function that performs whatever attack its event names.
const ATTACKER: &str = r#"
import ctypes, errno, json, os, signal, socket, subprocess, sys, time

libc = ctypes.CDLL(None, use_errno=True)

def err(fn):
    try:
        return fn()
    except OSError as e:
        return "errno:" + errno.errorcode.get(e.errno, str(e.errno))
    except Exception as e:
        return "error:" + type(e).__name__ + ":" + str(e)

def status():
    keys = ("Uid", "NoNewPrivs", "Seccomp", "CapBnd", "CapEff", "CapPrm")
    out = {}
    for l in open("/proc/self/status"):
        k, _, v = l.partition(":")
        if k in keys:
            out[k] = v.strip()
    return out

def read_all_environ(secret):
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if secret.encode() in open(f"/proc/{p}/environ", "rb").read():
                    found.append(p)
            except OSError:
                pass
    return found

def cerr(rc):
    return "ok" if rc == 0 else "errno:" + errno.errorcode.get(ctypes.get_errno(), "?")

def handler(event, context):
    op = event["op"]
    if op == "recon":
        own = {str(os.getpid())}
        return {
            "status": status(),
            "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "root": sorted(os.listdir("/")),
            "task": sorted(os.listdir(os.environ["LAMBDA_TASK_ROOT"])),
            "task_root": os.environ["LAMBDA_TASK_ROOT"],
            "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
            "exists": {p: os.path.exists(p) for p in event.get("paths", [])},
            "secret_in": read_all_environ(event.get("secret", "-")),
            "cmdlines": [open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
                         for p in os.listdir("/proc") if p.isdigit()],
            "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        }
    if op == "read":
        return {p: err(lambda: open(p, "rb").read(64).decode(errors="replace")) for p in event["paths"]}
    if op == "signal":
        return {str(p): err(lambda: os.kill(p, 0) or "delivered") for p in event["pids"]}
    if op == "ptrace":
        PTRACE_ATTACH = 16
        return {"ptrace": cerr(libc.ptrace(PTRACE_ATTACH, event.get("pid", 1), None, None))}
    if op == "escalate":
        os.makedirs("/tmp/m", exist_ok=True)
        r = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", "/tmp/m"], capture_output=True)
        return {
            "mount": cerr(libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None)),
            "unshare_user": cerr(libc.unshare(0x10000000)),
            "unshare_mount": cerr(libc.unshare(0x00020000)),
            "setuid_mount_exit": r.returncode,
            "tmp_m_is_mount": os.path.ismount("/tmp/m"),
            "bpf": cerr(libc.syscall(321, 0, None, 0)),
            "keyctl": cerr(libc.syscall(250, 0, 0, 0, 0, 0)),
            "perf_event_open": cerr(libc.syscall(298, None, 0, -1, -1, 0)),
            "userfaultfd": cerr(libc.syscall(323, 0)),
            "chroot": cerr(libc.chroot(b"/tmp")),
            "status": status(),
        }
    if op == "connect_runtime_api":
        host, port = event["addr"].split(":")
        try:
            s = socket.create_connection((host, int(port)), timeout=2)
            s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(2)
            data = s.recv(200)
            return {"result": "answered:" + data.decode(errors="replace")[:40] if data else "closed"}
        except socket.timeout:
            return {"result": "timeout"}
        except OSError as e:
            return {"result": "errno:" + errno.errorcode.get(e.errno, str(e.errno))}
    if op == "fill_tmp":
        # Many files of 64 MB: the bound is /tmp's size, not one file's.
        written, chunk, n = 0, b"x" * (1 << 20), 0
        try:
            while written < event["limit_mb"] << 20:
                with open(f"/tmp/fill{n}", "wb") as f:
                    for _ in range(64):
                        f.write(chunk)
                        f.flush()
                        written += len(chunk)
                n += 1
            result = "no error"
        except OSError as e:
            result = "errno:" + errno.errorcode.get(e.errno, str(e.errno))
        for i in range(n + 1):
            if os.path.exists(f"/tmp/fill{i}"):
                os.remove(f"/tmp/fill{i}")
        return {"written_mb": written >> 20, "result": result}
    if op == "fork_bomb":
        n = 0
        try:
            for _ in range(100000):
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
            return {"forked": n, "result": "no limit"}
        except OSError as e:
            return {"forked": n, "result": "errno:" + errno.errorcode.get(e.errno, str(e.errno))}
    if op == "descriptors":
        fds = []
        try:
            for _ in range(1000000):
                fds.append(os.open("/dev/null", os.O_RDONLY))
            result = "no limit"
        except OSError as e:
            result = "errno:" + errno.errorcode.get(e.errno, str(e.errno))
        n = len(fds)
        for f in fds:
            os.close(f)
        return {"opened": n, "result": result}
    if op == "spin":
        pid = os.fork()
        if pid == 0:
            os.setsid()
            while True:
                pass
        return {"pid": pid}
    if op == "cpu_of":
        f = open(f"/proc/{event['pid']}/stat").read().rsplit(")", 1)[1].split()
        return {"ticks": int(f[11]) + int(f[12])}
    if op == "leave":
        marker = event["marker"]
        results = {}
        for d in ("/tmp", "/dev/shm", "/var/tmp"):
            results[d] = err(lambda: open(f"{d}/{marker}", "w").write("left behind") and "written")
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", f"import time; time.sleep(600) # {marker}"])
            os._exit(0)
        time.sleep(0.2)
        return results
    if op == "look":
        marker = event["marker"]
        return {d: os.path.exists(f"{d}/{marker}") for d in ("/tmp", "/dev/shm", "/var/tmp")}
    if op == "connect":
        try:
            socket.create_connection((event["host"], event["port"]), timeout=2).close()
            return {"result": "connected"}
        except OSError as e:
            return {"result": "errno:" + errno.errorcode.get(e.errno, str(e.errno) if e.errno else type(e).__name__)}
    if op == "udp":
        s = socket.socket(socket.AF_INET6 if ":" in event["host"] else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(b"x", (event["host"], event["port"]))
            return {"result": "sent"}
        except OSError as e:
            return {"result": "errno:" + errno.errorcode.get(e.errno, str(e.errno))}
    if op == "alloc_child":
        r = subprocess.run([sys.executable, "-c", f"b = bytearray({event['mb']} << 20); print(len(b))"])
        return {"exit": r.returncode}
    raise ValueError(op)
"#;

const VICTIM: &str = r#"
import os
def handler(event, context):
    return {"ok": True, "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
            "files": sorted(os.listdir("/tmp"))}
"#;

const SECRET: &str = "victim-secret-5ca1ab1e";

fn setup(s: &Server) {
    deploy_py(
        s,
        "attacker",
        ATTACKER,
        json!({"timeout_s": 30, "memory_mb": 256}),
    );
    deploy_py(
        s,
        "victim",
        VICTIM,
        json!({"environment": {"VICTIM_SECRET": SECRET}, "timeout_s": 10}),
    );
}

fn attack(s: &Server, event: Value) -> Value {
    let r = s.invoke_raw("attacker", event.to_string(), true);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert!(
        r.function_error().is_none(),
        "the attack itself crashed: {v} {}",
        r.log_tail()
    );
    v
}

/// The victim still answers, quickly.
fn victim_serves(s: &Server) -> Value {
    let t = Instant::now();
    let v = s.invoke("victim", &json!({})).json();
    assert_eq!(v["ok"], json!(true), "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the victim took {:?}",
        t.elapsed()
    );
    v
}

fn code_dirs(s: &Server) -> Vec<String> {
    let code = s.data_dir.with_file_name("run").join("code");
    std::fs::read_dir(&code)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_function_sees_only_itself() {
    let s = Server::start_leaking_fd(&[]);
    setup(&s);
    victim_serves(&s);
    let marker = format!("/tmp/nimbus-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let data = s.data_dir.display().to_string();
    let mut paths = vec![
        data.clone(),
        format!("{data}/master.key"),
        format!("{data}/nimbus.db"),
        s.data_dir.with_file_name("run").display().to_string(),
        marker.clone(),
        "/root".into(),
        "/home".into(),
        "/etc/shadow".into(),
    ];
    paths.extend(code_dirs(&s));
    let v = attack(&s, json!({"op": "recon", "paths": paths, "secret": SECRET}));
    let _ = std::fs::remove_file(&marker);
    // Nothing of the host: no data dir, key, other function's code, host /tmp.
    for (p, exists) in v["exists"].as_object().unwrap() {
        assert_eq!(exists, &json!(false), "{p} is visible inside: {v}");
    }
    assert_eq!(v["task_root"], json!("/var/task"));
    assert_eq!(v["task"], json!(["app.py"]), "only its own code");
    // Only its own processes; no other environment holds the victim's secret.
    assert_eq!(v["pids"], json!(["1"]), "{v}");
    assert_eq!(v["secret_in"], json!([]), "{v}");
    // No code path or other function in any visible command line.
    for c in v["cmdlines"].as_array().unwrap() {
        assert!(!c.as_str().unwrap().contains("/code/"), "{c}");
    }
    let st = &v["status"];
    assert_eq!(st["NoNewPrivs"], json!("1"), "{v}");
    assert_eq!(st["Seccomp"], json!("2"), "{v}");
    assert_eq!(st["CapBnd"], json!("0000000000000000"), "{v}");
    assert_eq!(st["CapEff"], json!("0000000000000000"), "{v}");
    // The server's inherited fd 200 did not reach the instance: 0-2 and the
    // runtime's own (its Runtime API connection, the listing itself).
    let fds: Vec<i64> = serde_json::from_value(v["fds"].clone()).unwrap();
    assert!(!fds.contains(&200), "inherited descriptor leaked: {fds:?}");
    assert!(fds.iter().all(|&f| f < 10), "{fds:?}");
    // And the private root holds what the docs say, nothing more.
    let root: Vec<String> = serde_json::from_value(v["root"].clone()).unwrap();
    for d in &root {
        assert!(
            [
                "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "run",
                "sbin", "tmp", "usr", "var"
            ]
            .contains(&d.as_str()),
            "unexpected /{d} in {root:?}"
        );
    }
    let read = attack(
        &s,
        json!({"op": "read", "paths": [format!("{data}/master.key"), "/etc/shadow", "/proc/1/environ"]}),
    );
    assert!(
        read[format!("{data}/master.key")]
            .as_str()
            .unwrap()
            .starts_with("errno:"),
        "{read}"
    );
    assert!(
        read["/etc/shadow"].as_str().unwrap().starts_with("errno:"),
        "{read}"
    );
    victim_serves(&s);
}

#[test]
fn cannot_signal_trace_or_serve_another_instance() {
    let s = Server::start();
    setup(&s);
    let victim = victim_serves(&s);
    let host_pids = if is_root() {
        host_pids_of("victim")
    } else {
        vec![]
    };
    if is_root() {
        assert!(
            !host_pids.is_empty(),
            "the victim's processes are found on the host"
        );
        let v = attack(&s, json!({"op": "signal", "pids": host_pids}));
        for (pid, r) in v.as_object().unwrap() {
            assert_eq!(r, &json!("errno:ESRCH"), "signal to {pid}: {v}");
        }
    }
    let v = attack(&s, json!({"op": "ptrace", "pid": 1}));
    assert_eq!(v["ptrace"], json!("errno:EPERM"), "{v}");
    // Take the victim's next invocation through its Runtime API: refused.
    let addr = victim["runtime_api"].as_str().unwrap();
    let v = attack(&s, json!({"op": "connect_runtime_api", "addr": addr}));
    let r = v["result"].as_str().unwrap();
    assert!(
        !r.starts_with("answered"),
        "another instance's Runtime API answered: {v}"
    );
    // The victim still works, with its own Runtime API.
    victim_serves(&s);
    victim_serves(&s);
}

#[test]
fn no_mount_namespace_setuid_or_kernel_attack_surface() {
    let s = Server::start();
    setup(&s);
    let v = attack(&s, json!({"op": "escalate"}));
    for call in [
        "mount",
        "unshare_user",
        "unshare_mount",
        "bpf",
        "keyctl",
        "perf_event_open",
        "userfaultfd",
        "chroot",
    ] {
        assert_eq!(v[call], json!("errno:EPERM"), "{call}: {v}");
    }
    assert_ne!(
        v["setuid_mount_exit"],
        json!(0),
        "a setuid binary mounted: {v}"
    );
    assert_eq!(v["tmp_m_is_mount"], json!(false), "{v}");
    assert_eq!(v["status"]["CapEff"], json!("0000000000000000"), "{v}");
    victim_serves(&s);
}

#[test]
fn tmp_is_private_bounded_and_gone_with_the_instance() {
    let s = Server::start();
    deploy_py(
        &s,
        "attacker",
        ATTACKER,
        json!({"timeout_s": 60, "memory_mb": 1024, "ephemeral_storage_mb": 512}),
    );
    deploy_py(&s, "victim", VICTIM, json!({}));
    let v = attack(&s, json!({"op": "fill_tmp", "limit_mb": 2048}));
    assert_eq!(v["result"], json!("errno:ENOSPC"), "{v}");
    let mb = v["written_mb"].as_u64().unwrap();
    assert!(
        (400..=512).contains(&mb),
        "wrote {mb} MB into a 512 MB /tmp"
    );

    let marker = format!("nimbus-leftover-{}", std::process::id());
    let v = attack(&s, json!({"op": "leave", "marker": marker}));
    assert_eq!(v["/tmp"], json!("written"), "{v}");
    // Another function sees none of it; neither does the host.
    let victim = victim_serves(&s);
    assert!(!victim["files"].to_string().contains(&marker), "{victim}");
    for d in ["/tmp", "/dev/shm", "/var/tmp"] {
        assert!(
            !std::path::Path::new(d).join(&marker).exists(),
            "{d}/{marker} reached the host"
        );
    }
    // A new instance of the same function starts with an empty /tmp.
    let (st, body) = s.send_json(
        "PATCH",
        "/v1/functions/attacker",
        &json!({"description": "new instances"}),
    );
    assert_eq!(st, 200, "{body}");
    let v = attack(&s, json!({"op": "look", "marker": marker}));
    assert_eq!(
        v,
        json!({"/tmp": false, "/dev/shm": false, "/var/tmp": false})
    );
}

#[test]
fn fork_bombs_and_descriptor_floods_stay_inside() {
    let s = Server::start();
    setup(&s);
    let v = attack(&s, json!({"op": "descriptors"}));
    assert_eq!(v["result"], json!("errno:EMFILE"), "{v}");
    assert!(v["opened"].as_u64().unwrap() <= 1024, "{v}");
    victim_serves(&s);
    let r = s.invoke_raw("attacker", json!({"op": "fork_bomb"}).to_string(), true);
    let body = String::from_utf8_lossy(&r.body).to_string();
    if r.function_error().is_some() {
        // Without cgroups (an unprivileged server here) the whole tree's memory
        // is policed by sampling, and thousands of children can hit it before
        // RLIMIT_NPROC: the instance is killed, which contains it just as well.
        assert!(!server_is_root(), "{body}");
        assert!(body.contains("Runtime.OutOfMemory"), "{body}");
    } else {
        let v = r.json();
        assert_eq!(v["result"], json!("errno:EAGAIN"), "{v}");
        assert!(v["forked"].as_u64().unwrap() < 5000, "{v}");
    }
    // Others are served during and after; the server still starts instances.
    victim_serves(&s);
    deploy_py(&s, "fresh", VICTIM, json!({}));
    assert_eq!(s.invoke("fresh", &json!({})).json()["ok"], json!(true));
}

#[test]
fn memory_of_child_processes_counts() {
    let s = Server::start();
    deploy_py(
        &s,
        "attacker",
        ATTACKER,
        json!({"timeout_s": 20, "memory_mb": 128}),
    );
    deploy_py(&s, "victim", VICTIM, json!({}));
    let r = s.invoke_raw(
        "attacker",
        json!({"op": "alloc_child", "mb": 400}).to_string(),
        true,
    );
    let body = String::from_utf8_lossy(&r.body).to_string();
    // Either the child is killed (the runtime sees it fail) or the instance is.
    let contained = r.function_error().is_some() && body.contains("Runtime.OutOfMemory")
        || (r.function_error().is_none() && r.json()["exit"] != json!(0));
    assert!(
        contained,
        "a child allocated 400 MB in a 128 MB function: {body}"
    );
    victim_serves(&s);
}

#[test]
fn idle_instances_are_frozen() {
    let s = Server::start();
    setup(&s);
    if !server_is_root() {
        // No cgroups for an unprivileged server on this host: the server says so.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            s.server_log().contains("idle instances are not frozen"),
            "{}",
            s.server_log()
        );
        return;
    }
    let pid = attack(&s, json!({"op": "spin"}))["pid"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = attack(&s, json!({"op": "cpu_of", "pid": pid}))["ticks"]
        .as_i64()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t1 = attack(&s, json!({"op": "cpu_of", "pid": pid}))["ticks"]
        .as_i64()
        .unwrap();
    // 2 s of wall time idle: at most the freeze delay (100 ms) and the call's
    // own time may run (ticks are 10 ms); unfrozen it would be ~200 ticks.
    assert!(
        t1 - t0 < 40,
        "a child ran {} ticks while its instance was idle",
        t1 - t0
    );
    // It resumes with the next invocation.
    let t2 = attack(&s, json!({"op": "cpu_of", "pid": pid}))["ticks"]
        .as_i64()
        .unwrap();
    assert!(t2 >= t1);
    victim_serves(&s);
}

#[test]
fn network_none_reaches_nothing_yet_runs() {
    let s = Server::start();
    deploy_py(
        &s,
        "attacker",
        ATTACKER,
        json!({"network": "none", "timeout_s": 10}),
    );
    deploy_py(&s, "victim", VICTIM, json!({}));
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let v = attack(
        &s,
        json!({"op": "connect", "host": "127.0.0.1", "port": port}),
    );
    assert_ne!(v["result"], json!("connected"), "{v}");
    let v = attack(
        &s,
        json!({"op": "connect", "host": "169.254.169.254", "port": 80}),
    );
    assert_ne!(v["result"], json!("connected"), "{v}");
    // The same function with the default network reaches the API.
    deploy_py(&s, "open", ATTACKER, json!({"timeout_s": 10}));
    let r = s.invoke(
        "open",
        &json!({"op": "connect", "host": "127.0.0.1", "port": port}),
    );
    assert_eq!(r.json()["result"], json!("connected"));
    let (st, body) = s.get("/v1/functions/attacker");
    assert_eq!(st, 200);
    assert_eq!(body["network"], json!("none"), "{body}");
}

#[test]
fn nothing_survives_a_sigkilled_server() {
    let mut s = Server::start();
    setup(&s);
    let marker = format!("nimbus-survivor-{}", std::process::id());
    attack(&s, json!({"op": "leave", "marker": marker}));
    let pid = s.pid();
    signal(pid, libc::SIGKILL);
    let survivors = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while survivors() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(survivors(), 0, "a function's process outlived the server");
    for d in ["/tmp", "/dev/shm", "/var/tmp"] {
        assert!(
            !std::path::Path::new(d).join(&marker).exists(),
            "{d}/{marker}"
        );
    }
    // The next server on the same data starts and serves.
    let _ = s.stop_after_kill();
    s.launch();
    victim_serves(&s);
}

#[test]
fn uids_are_never_shared_and_servers_take_disjoint_blocks() {
    if !server_is_root() {
        let s = Server::start();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            s.server_log().contains("per-instance host uids"),
            "{}",
            s.server_log()
        );
        return;
    }
    let base = 3_100_000 + (std::process::id() % 1000) * 16;
    let flags = [
        "--sandbox-uid-base",
        &base.to_string(),
        "--sandbox-uid-span",
        "3",
        "--spare-instances",
        "0",
    ];
    let a = Server::start_with(&flags);
    let b = Server::start_with(&flags);
    let uid_of = |s: &Server, f: &str| -> u64 {
        deploy_py(
            s,
            f,
            "import os\ndef handler(e, c):\n    import time; time.sleep(e.get('sleep', 0)); return os.getuid()",
            json!({"timeout_s": 10}),
        );
        s.invoke(f, &json!({})).json().as_u64().unwrap()
    };
    let ua = uid_of(&a, "one");
    let ub = uid_of(&b, "one");
    assert!((base as u64..base as u64 + 3).contains(&ua), "{ua}");
    assert!(
        (base as u64 + 3..base as u64 + 6).contains(&ub),
        "servers share a block: {ua} {ub}"
    );
    // Three live instances use the block; a fourth cannot start rather than share.
    let mut uids = vec![ua];
    uids.push(uid_of(&a, "two"));
    uids.push(uid_of(&a, "three"));
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 3, "{uids:?}");
    deploy_py(&a, "four", VICTIM, json!({}));
    let r = a.invoke_raw("four", "{}", false);
    assert!(
        r.status != 200 || r.function_error().is_some(),
        "a fourth live instance started with 3 uids"
    );
    // Once an instance is gone its uid is free again.
    let (st, _) = a.send_json("DELETE", "/v1/functions/one", &json!({}));
    assert!(st == 204 || st == 200, "{st}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = a.invoke_raw("four", "{}", false);
        if r.status == 200 && r.function_error().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed uid was not reused");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn link_local_addresses_are_unreachable() {
    let s = Server::start();
    setup(&s);
    if !server_is_root() {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            s.server_log().contains("link-local addresses"),
            "{}",
            s.server_log()
        );
        return;
    }
    // EPERM comes only from the filter (an unrouted address times out or is
    // unreachable instead).
    for (host, port) in [
        ("169.254.169.254", 80),
        ("169.254.0.1", 443),
        ("fe80::1", 80),
        ("::ffff:169.254.169.254", 80),
        ("fd00:ec2::254", 80),
    ] {
        let v = attack(&s, json!({"op": "connect", "host": host, "port": port}));
        assert_eq!(v["result"], json!("errno:EPERM"), "connect {host}: {v}");
    }
    let v = attack(
        &s,
        json!({"op": "udp", "host": "169.254.169.253", "port": 53}),
    );
    assert_eq!(v["result"], json!("errno:EPERM"), "{v}");
    // Everything else still works: loopback (the API), other addresses.
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let v = attack(
        &s,
        json!({"op": "connect", "host": "127.0.0.1", "port": port}),
    );
    assert_eq!(v["result"], json!("connected"), "{v}");
    let v = attack(&s, json!({"op": "udp", "host": "127.0.0.1", "port": 9}));
    assert_eq!(v["result"], json!("sent"), "{v}");
}

#[test]
fn manifest_sets_ephemeral_storage_and_network() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import os\ndef handler(e, c):\n    st = os.statvfs('/tmp')\n    return st.f_blocks * st.f_frsize >> 20\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nimbus.toml"),
        "name = \"roomy\"\nruntime = \"python3\"\nhandler = \"app.handler\"\nephemeral_storage_mb = 2048\nnetwork = \"none\"\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.invoke("roomy", &json!({})).json(), json!(2048));
    let (_, f) = s.get("/v1/functions/roomy");
    assert_eq!(f["ephemeral_storage_mb"], json!(2048), "{f}");
    assert_eq!(f["network"], json!("none"), "{f}");
    std::fs::write(
        dir.path().join("nimbus.toml"),
        "name = \"roomy\"\nruntime = \"python3\"\nhandler = \"app.handler\"\nephemeral_storage_mb = 100\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ephemeral_storage_mb must be between 512 and 10240"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
