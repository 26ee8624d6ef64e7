//! What a function can see and touch.

use serde_json::json;

use crate::harness::*;

#[test]
fn scrubbed_environment_unprivileged_user_private_tmp() {
    let s = Server::start();
    deploy_py(
        &s,
        "probe",
        r#"
import os, tempfile
def handler(e, c):
    tmp = tempfile.gettempdir()
    with open(os.path.join(tmp, "scratch"), "w") as f:
        f.write("ok")
    try:
        open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "new.txt"), "w")
        code_writable = True
    except OSError:
        code_writable = False
    import resource
    return {
        "env": sorted(os.environ.keys()),
        "secret": os.environ.get("NIMBUS_TEST_SECRET"),
        "uid": os.getuid(),
        "tmp": tmp,
        "code_writable": code_writable,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "pgid": os.getpgid(0),
        "pid": os.getpid(),
    }
"#,
        json!({"environment": {"MY_SETTING": "1"}}),
    );
    let v = s.invoke("probe", &json!({})).json();
    assert_eq!(
        v["secret"],
        json!(null),
        "the server's environment does not leak into functions"
    );
    let env: Vec<String> = serde_json::from_value(v["env"].clone()).unwrap();
    for required in [
        "AWS_LAMBDA_RUNTIME_API",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "MY_SETTING",
        "TZ",
    ] {
        assert!(
            env.contains(&required.to_string()),
            "{required} missing from {env:?}"
        );
    }
    let allowed_extra = [
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "AWS_DEFAULT_REGION",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "_X_AMZN_TRACE_ID",
        "LC_CTYPE",
    ];
    for k in &env {
        assert!(
            allowed_extra.contains(&k.as_str())
                || k.starts_with("AWS_")
                || k.starts_with("LAMBDA_")
                || k == "_HANDLER"
                || k == "MY_SETTING"
                || k == "TZ",
            "unexpected variable {k} in the function's environment"
        );
    }
    if is_root() {
        assert!(
            v["uid"].as_u64().unwrap() >= 2_000_000,
            "instances run as an unprivileged uid of their own: {}",
            v["uid"]
        );
        assert_eq!(
            v["code_writable"], false,
            "code is read-only to the function"
        );
    }
    // The instance's own tmpfs (hostile::tmp_is_private_bounded_and_gone_with_the_instance
    // shows that no other instance and not the host sees it).
    assert_eq!(v["tmp"], "/tmp", "private tmp: {}", v["tmp"]);
    assert_eq!(v["nofile"], 1024);
    // The instance's process group is led by its keeper, outside its PID
    // namespace (so shown as 0): the whole tree is killed together.
    assert_eq!(v["pid"], 1, "the runtime is PID 1 of its namespace");
    assert_eq!(v["pgid"], 0, "the group's leader is outside the namespace");
}

#[test]
fn instances_cannot_touch_each_other() {
    assert!(
        is_root(),
        "the sandbox tests need root, as the CI machine has (cgroups and uid switching)"
    );
    let s = Server::start();
    deploy_py(
        &s,
        "writer",
        "import tempfile, os\ndef handler(e, c):\n    p = os.path.join(tempfile.gettempdir(), 'secret')\n    open(p, 'w').write('s3cret')\n    return {'path': p, 'pid': os.getpid()}\n",
        json!({}),
    );
    deploy_py(
        &s,
        "intruder",
        r#"
import os, signal
def handler(e, c):
    out = {}
    try:
        out["read"] = open(e["path"]).read()
    except OSError as ex:
        out["read"] = "denied: " + ex.strerror
    try:
        os.kill(e["pid"], signal.SIGKILL)
        out["kill"] = "killed"
    except OSError as ex:
        out["kill"] = "denied: " + ex.strerror
    return out
"#,
        json!({}),
    );
    let w = s.invoke("writer", &json!({})).json();
    let v = s.invoke("intruder", &w).json();
    // The writer's /tmp is not the intruder's, and its pid (1 in its own PID
    // namespace) names the intruder's own PID 1, which ignores signals sent
    // from inside its namespace: the writer is untouched either way.
    assert_eq!(v["read"], "denied: No such file or directory", "{v}");
    assert_eq!(w["pid"], 1, "{w}");
    // The writer is untouched and still warm.
    let again = s.invoke("writer", &json!({}));
    assert!(!again.cold());
    assert_eq!(again.json()["pid"], w["pid"]);
}

#[test]
fn an_instance_cannot_use_another_instances_runtime_api() {
    assert!(is_root(), "the sandbox tests need root (uid switching)");
    let s = Server::start();
    deploy_py(
        &s,
        "victim",
        "import os\ndef handler(e, c):\n    return os.environ['AWS_LAMBDA_RUNTIME_API']\n",
        json!({}),
    );
    deploy_py(
        &s,
        "spy",
        r#"
import socket
def handler(e, c):
    host, port = e["api"].split(":")
    s = socket.create_connection((host, int(port)), timeout=3)
    # A request the server answers at once if it serves the connection at all.
    s.sendall(b"POST /2018-06-01/runtime/invocation/bogus/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    try:
        data = s.recv(4096)
    except OSError as ex:
        return "error: " + type(ex).__name__
    return "answered: " + data[:40].decode("latin-1") if data else "closed"
"#,
        json!({"timeout_s": 10}),
    );
    let api = s.invoke("victim", &json!({})).json();
    let got = s.invoke("spy", &json!({"api": api})).json();
    let got = got.as_str().unwrap();
    assert!(
        got == "closed" || got.starts_with("error"),
        "another instance's Runtime API must refuse: {got}"
    );
    // The victim is unaffected and still warm.
    let again = s.invoke("victim", &json!({}));
    assert!(!again.cold());
    assert_eq!(again.json(), api);
}

/// Nimbus's bootstraps reach their Runtime API over a Unix socket in the
/// instance's directory: it belongs to the instance's uid with mode 0600, so
/// another instance (another uid) cannot connect, and the variable naming it is
/// not part of the function's environment.
#[test]
fn an_instance_cannot_use_another_instances_runtime_api_socket() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(is_root(), "the sandbox tests need root (uid switching)");
    let s = Server::start();
    deploy_py(
        &s,
        "victim",
        "import os\ndef handler(e, c):\n    return {'stream': c.log_stream_name, 'uid': os.getuid(), 'env': 'NIMBUS_RUNTIME_API_SOCKET' in os.environ}\n",
        json!({}),
    );
    deploy_py(
        &s,
        "spy",
        r#"
import socket
def handler(e, c):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(e["path"])
    except OSError as ex:
        return "refused: " + type(ex).__name__
    s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(1)
    try:
        return "answered: " + s.recv(100).decode("latin-1")
    except OSError as ex:
        return "connected: " + type(ex).__name__
"#,
        json!({}),
    );
    let victim = s.invoke("victim", &json!({})).json();
    assert_eq!(
        victim["env"],
        json!(false),
        "the socket's variable is the bootstrap's, not the function's"
    );
    let stream = victim["stream"].as_str().unwrap();
    let instance = stream.rsplit(']').next().unwrap();
    let path = s
        .data_dir
        .with_file_name("run")
        .join("instances")
        .join(instance)
        .join("rt")
        .join("api.sock");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid() as u64, victim["uid"].as_u64().unwrap());

    let got = s.invoke("spy", &json!({"path": path})).json();
    // The host path does not even exist in the spy's private root.
    assert_eq!(got, json!("refused: FileNotFoundError"));
    // The victim is unaffected and still warm.
    let again = s.invoke("victim", &json!({}));
    assert!(!again.cold());
    assert_eq!(again.json()["stream"], victim["stream"]);
}
