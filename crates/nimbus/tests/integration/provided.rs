//! `provided` functions: any executable speaking the Runtime API, including the
//! official runtime clients, unchanged.

use serde_json::json;

use crate::harness::*;

#[test]
fn shell_bootstrap_example() {
    let s = Server::start();
    let out = s.cli(&[
        "deploy",
        repo_root()
            .join("examples/hello-provided")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = s.invoke("hello-provided", &json!({"x": 1}));
    assert_eq!(
        r.json(),
        json!({"message": "Hello from a shell bootstrap", "event": {"x": 1}})
    );
}

#[test]
fn non_executable_bootstrap_is_refused_at_deploy() {
    let s = Server::start();
    let (status, body) = s.try_deploy(
        "noexec",
        "provided",
        "x",
        zip_of(&[("bootstrap", b"#!/bin/sh\n", 0o644)]),
        json!({}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not executable"),
        "{body}"
    );
}

/// The official Rust client (`lambda_runtime` crate) as a bootstrap.
#[test]
fn rust_lambda_runtime_client() {
    let bin = repo_root()
        .join("target")
        .join(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        })
        .join("rust-hello");
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| {
        panic!("{} is missing ({e}); it is built by `cargo build --workspace` (the test command does this)", bin.display())
    });
    let s = Server::start();
    s.deploy(
        "rust-hello",
        "provided",
        "bootstrap",
        zip_of(&[("bootstrap", &bytes, 0o755)]),
        json!({}),
    );
    let r = s.invoke("rust-hello", &json!({"name": "Ferris"}));
    assert!(
        r.function_error().is_none(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["message"], "Hello, Ferris!");
    assert_eq!(v["request_id"], r.request_id());
    assert_eq!(v["function_name"], "rust-hello");
    let err = s.invoke("rust-hello", &json!({"fail": true}));
    assert_eq!(err.function_error().as_deref(), Some("Unhandled"));
    assert!(
        err.json()["errorMessage"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{}",
        String::from_utf8_lossy(&err.body)
    );
}

/// The official Python client (`awslambdaric` from PyPI) as a bootstrap.
#[test]
fn python_awslambdaric_client() {
    let venv_python = repo_root().join(".venv/bin/python");
    assert!(
        venv_python.exists(),
        "{} is missing: run the test command (scripts/test), which creates the venv with awslambdaric",
        venv_python.display()
    );
    // A sandboxed instance sees its package, the system and the directories
    // given to --python-path, not the checkout: the venv's site-packages (with
    // awslambdaric) is shown through --python-path, and the venv's interpreter
    // is the system's python3 it was made from.
    let site = std::fs::read_dir(repo_root().join(".venv/lib"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("site-packages"))
        .find(|p| p.is_dir())
        .expect("the venv's site-packages");
    let python = std::fs::canonicalize(&venv_python).unwrap();
    let s = Server::start_with(&["--python-path", site.to_str().unwrap()]);
    let bootstrap = format!(
        "#!/bin/sh\nPYTHONPATH={} exec {} -m awslambdaric \"$_HANDLER\"\n",
        site.display(),
        python.display()
    );
    let app = b"def handler(event, context):\n    print('via awslambdaric')\n    return {'echo': event, 'id': context.aws_request_id, 'left': context.get_remaining_time_in_millis() > 0}\n\ndef fails(event, context):\n    raise KeyError('nope')\n";
    let zip = zip_of(&[
        ("bootstrap", bootstrap.as_bytes(), 0o755),
        ("app.py", app, 0o644),
    ]);
    s.deploy(
        "ric",
        "provided",
        "app.handler",
        zip.clone(),
        json!({"timeout_s": 10}),
    );
    let r = s.invoke("ric", &json!({"hello": "ric"}));
    assert!(
        r.function_error().is_none(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["echo"], json!({"hello": "ric"}));
    assert_eq!(v["id"], r.request_id());
    assert_eq!(v["left"], true);
    assert!(
        r.log_tail().contains("via awslambdaric"),
        "{}",
        r.log_tail()
    );

    s.deploy(
        "ric-fail",
        "provided",
        "app.fails",
        zip,
        json!({"timeout_s": 10}),
    );
    let r = s.invoke("ric-fail", &json!({}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "KeyError");
}

/// Nimbus's one extension of the invocation protocol: a result posted with
/// `Nimbus-Await-Next` is answered with the next invocation (status 200 and
/// its headers, as `GET /next` gives it) instead of `202`; without the header
/// the answer is Lambda's `202`.
#[test]
fn a_result_posted_with_await_next_is_answered_with_the_next_invocation() {
    let bootstrap = br#"#!/usr/bin/python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
received = None
while True:
    if received is None:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        r = conn.getresponse()
        via = "next"
    else:
        r, via = received, "await-next"
        received = None
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    result = json.dumps({"via": via, "event": event, "rid": rid})
    headers = {"Content-Type": "application/json"}
    if event.get("await_next"):
        headers["Nimbus-Await-Next"] = "1"
    conn.request("POST", "/2018-06-01/runtime/invocation/%s/response" % rid, result, headers)
    a = conn.getresponse()
    if a.status == 200:
        received = a
    else:
        assert a.status == 202, a.status
        a.read()
"#;
    let s = Server::start();
    s.deploy(
        "chained",
        "provided",
        "x",
        zip_of(&[("bootstrap", bootstrap, 0o755)]),
        json!({}),
    );
    let first = s.invoke("chained", &json!({"await_next": true}));
    assert_eq!(first.json()["via"], "next");
    let second = s.invoke("chained", &json!({"await_next": false}));
    assert!(!second.cold());
    let v = second.json();
    assert_eq!(v["via"], "await-next", "{v}");
    assert_eq!(v["event"], json!({"await_next": false}));
    assert_eq!(v["rid"].as_str(), Some(second.request_id().as_str()));
    // That result went without the header: 202, and the next call is a GET /next.
    assert_eq!(s.invoke("chained", &json!({})).json()["via"], "next");
}

/// The streaming side of the protocol, spoken by hand: a chunked response
/// posted with `Lambda-Runtime-Function-Response-Mode: streaming` is one
/// response to a buffered caller; error trailers make it a function error
/// with the trailer's document; any other mode is refused with 400 and the
/// caller gets `Runtime.InvalidResponseModeHeader`.
#[test]
fn streamed_responses_trailers_and_bad_response_modes() {
    let bootstrap = br#"#!/usr/bin/python3
import base64, http.client, json, os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")

def post_raw(path, head, body):
    s = socket.create_connection((host, int(port)))
    s.sendall(("POST %s HTTP/1.1\r\nHost: runtime\r\n%s\r\n" % (path, head)).encode() + body)
    status = int(s.recv(65536).split(b" ")[1])
    s.close()
    return status

conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    # Direct invocations name the mode; a function URL's event has it in the query.
    mode = event.get("mode") or (event.get("queryStringParameters") or {}).get("mode")
    path = "/2018-06-01/runtime/invocation/%s/response" % rid
    streaming = "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
    if mode == "bad":
        status = post_raw(path, "Lambda-Runtime-Function-Response-Mode: buffered\r\nContent-Length: 2\r\n", b"{}")
        if status != 400:
            os._exit(7)  # the test then sees a cold start
    elif mode == "broken":
        s = socket.create_connection((host, int(port)))
        s.sendall(("POST %s HTTP/1.1\r\nHost: runtime\r\n%s\r\n" % (path, streaming)).encode() + b"8\r\npartial;\r\n")
        time.sleep(0.3)
        s.close()  # mid-body
    elif mode == "ok":
        post_raw(path, streaming + "Content-Type: text/plain\r\n", b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    else:
        message = "disk on fire" if mode != "big-trailer" else "x" * 40000
        doc = json.dumps({"errorType": "Runtime.StreamError", "errorMessage": message})
        if mode == "untyped-trailer":
            doc = message  # a body that is no error document: the trailer names the type
        trailers = ("Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
                    "Lambda-Runtime-Function-Error-Body: %s\r\n" % base64.b64encode(doc.encode()).decode())
        post_raw(path, streaming + "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n",
                 b"6\r\nhello \r\n0\r\n" + trailers.encode() + b"\r\n")
"#;
    let s = Server::start();
    s.deploy(
        "streams",
        "provided",
        "x",
        zip_of(&[("bootstrap", bootstrap, 0o755)]),
        json!({}),
    );
    let ok = s.invoke("streams", &json!({"mode": "ok"}));
    assert_eq!(ok.function_error(), None);
    assert_eq!(ok.body, b"hello world");
    assert_eq!(ok.header("content-type").as_deref(), Some("text/plain"));

    let failed = s.invoke("streams", &json!({"mode": "trailer"}));
    assert_eq!(failed.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(failed.json()["errorType"], "Runtime.StreamError");
    assert_eq!(failed.json()["errorMessage"], "disk on fire");

    // A trailer body that is no error document keeps the trailer's type.
    let untyped = s.invoke("streams", &json!({"mode": "untyped-trailer"}));
    assert_eq!(untyped.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(untyped.json()["errorType"], "Runtime.StreamError");
    assert_eq!(untyped.json()["errorMessage"], "disk on fire");

    // A trailer far over hyper's default 16 KB still arrives whole.
    let big = s.invoke("streams", &json!({"mode": "big-trailer"}));
    assert_eq!(big.json()["errorType"], "Runtime.StreamError");
    assert_eq!(
        big.json()["errorMessage"].as_str().map(str::len),
        Some(40000)
    );

    let bad = s.invoke("streams", &json!({"mode": "bad"}));
    assert_eq!(bad.function_error().as_deref(), Some("Unhandled"));
    assert_eq!(bad.json()["errorType"], "Runtime.InvalidResponseModeHeader");
    // The instance stays usable after each of them.
    let again = s.invoke("streams", &json!({"mode": "ok"}));
    assert!(!again.cold());
    assert_eq!(again.body, b"hello world");

    // Through a streaming function URL (made with the CLI's --stream): the
    // chunks pass through, and a runtime dropping its connection mid-body cuts
    // the response off instead of ending it cleanly.
    let out = s.cli(&["url", "create", "streams", "--stream", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(url["invoke_mode"], "response_stream");
    let base = url["url"].as_str().unwrap().to_string();
    let client = reqwest::blocking::Client::new();
    let r = client.get(format!("{base}?mode=ok")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(r.text().unwrap(), "hello world");
    let r = client.get(format!("{base}?mode=broken")).send().unwrap();
    assert_eq!(r.status(), 200, "the head went out with the first chunk");
    let cut = r.bytes();
    assert!(
        cut.is_err(),
        "a broken stream must not look complete: {cut:?}"
    );
    // The runtime that broke off was replaced.
    let r = client.get(format!("{base}?mode=ok")).send().unwrap();
    assert_eq!(r.text().unwrap(), "hello world");
    let logs = s.cli(&["logs", "streams"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("the runtime's streamed response broke off"),
        "{logs}"
    );
}
