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
