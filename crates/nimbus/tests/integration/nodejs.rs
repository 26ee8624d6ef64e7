//! Node.js functions through the embedded bootstrap: every completion style.

use serde_json::json;

use crate::harness::*;

#[test]
fn async_callback_esm_and_cjs_handlers() {
    let s = Server::start();
    s.deploy(
        "esm",
        "nodejs",
        "index.handler",
        node("index.mjs", "let n = 0;\nexport const handler = async (event, context) => ({ n: ++n, id: context.awsRequestId, name: context.functionName, mem: context.memoryLimitInMB, left: context.getRemainingTimeInMillis(), event });\n"),
        json!({}),
    );
    let r = s.invoke("esm", &json!({"a": 1}));
    let v = r.json();
    assert_eq!(v["n"], 1);
    assert_eq!(v["id"], r.request_id());
    assert_eq!(v["name"], "esm");
    assert_eq!(v["mem"], "128");
    assert!(v["left"].as_i64().unwrap() > 2000);
    assert_eq!(v["event"], json!({"a": 1}));
    assert_eq!(
        s.invoke("esm", &json!({})).json()["n"],
        2,
        "module state survives on a warm instance"
    );

    s.deploy(
        "cjs-callback",
        "nodejs",
        "src/app.handler",
        zip_of(&[("src/app.js", b"exports.handler = function (event, context, callback) { setTimeout(() => callback(null, { got: event.x }), 10); };\n", 0o644)]),
        json!({}),
    );
    assert_eq!(
        s.invoke("cjs-callback", &json!({"x": 42})).json(),
        json!({"got": 42})
    );

    s.deploy(
        "nested",
        "nodejs",
        "index.a.b",
        node(
            "index.js",
            "module.exports = { a: { b: async () => 'deep' } };\n",
        ),
        json!({}),
    );
    assert_eq!(s.invoke("nested", &json!({})).json(), json!("deep"));

    s.deploy(
        "succeed",
        "nodejs",
        "index.handler",
        node(
            "index.js",
            "exports.handler = (event, context) => { context.succeed({ legacy: true }); };\n",
        ),
        json!({}),
    );
    assert_eq!(
        s.invoke("succeed", &json!({})).json(),
        json!({"legacy": true})
    );
}

#[test]
fn errors_use_the_node_error_shape() {
    let s = Server::start();
    s.deploy(
        "throws",
        "nodejs",
        "index.handler",
        node("index.mjs", "export const handler = async (event) => { if (event.reject) throw 'plain'; const e = new TypeError('bad input'); throw e; };\n"),
        json!({}),
    );
    let r = s.invoke("throws", &json!({}));
    assert_eq!(r.function_error().as_deref(), Some("Unhandled"));
    let v = r.json();
    assert_eq!(v["errorType"], "TypeError");
    assert_eq!(v["errorMessage"], "bad input");
    assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
    let v = s.invoke("throws", &json!({"reject": true})).json();
    assert_eq!(v["errorType"], "string");
    assert_eq!(v["errorMessage"], "plain");

    s.deploy(
        "callback-err",
        "nodejs",
        "index.handler",
        node(
            "index.js",
            "exports.handler = (e, c, cb) => cb(new Error('cb failed'));\n",
        ),
        json!({}),
    );
    let v = s.invoke("callback-err", &json!({})).json();
    assert_eq!(v["errorType"], "Error");
    assert_eq!(v["errorMessage"], "cb failed");

    s.deploy(
        "no-export",
        "nodejs",
        "index.handler",
        node("index.js", "exports.other = async () => 1;\n"),
        json!({}),
    );
    assert_eq!(
        s.invoke("no-export", &json!({})).json()["errorType"],
        "Runtime.HandlerNotFound"
    );

    s.deploy(
        "syntax",
        "nodejs",
        "index.handler",
        node("index.js", "exports.handler = async ( => 1;\n"),
        json!({}),
    );
    assert_eq!(
        s.invoke("syntax", &json!({})).json()["errorType"],
        "Runtime.UserCodeSyntaxError"
    );
}

#[test]
fn console_output_is_captured_with_request_ids() {
    let s = Server::start();
    s.deploy(
        "chatty",
        "nodejs",
        "index.handler",
        node("index.js", "exports.handler = async () => { console.log('hello', {a: 1}); console.error('oops'); return 1; };\n"),
        json!({}),
    );
    let r = s.invoke("chatty", &json!({}));
    let tail = r.log_tail();
    let id = r.request_id();
    assert!(
        tail.contains(&format!("{id}\tINFO\thello {{ a: 1 }}")),
        "{tail}"
    );
    assert!(tail.contains(&format!("{id}\tERROR\toops")), "{tail}");
}

/// `nimbus invoke --stream` and `?stream=true`: a streaming handler's chunks
/// are passed on as written (the first arrives while the handler still
/// waits); a failure after streaming began cuts the response off and the CLI
/// says so; without the flag the same handler answers whole.
#[test]
fn native_invoke_streams_a_streaming_handler() {
    use std::io::Read;
    let s = Server::start();
    s.deploy(
        "streams",
        "nodejs",
        "index.handler",
        node(
            "index.mjs",
            "export const handler = awslambda.streamifyResponse(async (event, stream) => {\n\
             stream.setContentType('text/plain');\n\
             stream.write('a;');\n\
             await new Promise((r) => setTimeout(r, 600));\n\
             stream.write('b;');\n\
             if (event.fail) throw new Error('late failure');\n\
             stream.end();\n});\n",
        ),
        json!({}),
    );
    let started = std::time::Instant::now();
    let mut r = s
        .http
        .post(format!("{}/v1/functions/streams/invoke?stream=true", s.url))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(r.headers().contains_key("x-nimbus-request-id"));
    let mut first = [0u8; 2];
    r.read_exact(&mut first).unwrap();
    let first_at = started.elapsed();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    let end_at = started.elapsed();
    assert_eq!((&first[..], rest.as_str()), (&b"a;"[..], "b;"));
    assert!(
        end_at - first_at >= std::time::Duration::from_millis(400),
        "first chunk at {first_at:?}, end at {end_at:?}"
    );

    let out = s.cli(&["invoke", "streams", "--stream"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a;b;\n");

    let out = s.cli(&["invoke", "streams", "--stream", "-d", "{\"fail\": true}"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a;b;\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed after its response began streaming"),
        "{err}"
    );

    let whole = s.invoke("streams", &json!({}));
    assert_eq!(whole.body, b"a;b;");
}
