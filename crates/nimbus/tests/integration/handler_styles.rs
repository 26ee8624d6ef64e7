//! Handler styles, black-box: the hello-world and REST samples from the AWS,
//! Azure Functions and Google Cloud Functions documentation, deployed verbatim
//! (style detected from the package, or set with `--style`), called with real
//! HTTP through `nimbus up`'s gateway.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::harness::*;

fn plain() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Deploys `files` (style detected) and checks the style the server resolved.
fn deploy_files(
    s: &Server,
    name: &str,
    runtime: &str,
    handler: &str,
    files: &[(&str, &str)],
    style: &str,
) {
    let entries: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(p, t)| (*p, t.as_bytes(), 0o644))
        .collect();
    let v = s.deploy(name, runtime, handler, zip_of(&entries), json!({}));
    assert_eq!(v["resolved_style"], style, "{v}");
}

fn route(s: &Server, spec: &str, function: &str) {
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": spec, "function": function}),
    );
    assert_eq!(st, 201, "{v}");
}

/// (status, headers, body text)
fn call(
    method: &str,
    url: &str,
    body: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = plain().request(method.parse().unwrap(), url);
    if let Some((ctype, b)) = body {
        r = r.header("content-type", ctype).body(b.to_string());
    }
    let r = r.send().unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    (st, h, r.text().unwrap())
}

fn ctype(h: &reqwest::header::HeaderMap) -> String {
    h.get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Azure Functions

const AZURE_NODE_V3_INDEX: &str = r#"module.exports = async function (context, req) {
    context.log('JavaScript HTTP trigger function processed a request.');

    const name = (req.query.name || (req.body && req.body.name));
    const responseMessage = name
        ? "Hello, " + name + ". This HTTP triggered function executed successfully."
        : "This HTTP triggered function executed successfully. Pass a name in the query string or in the request body for a personalized response.";

    context.res = {
        // status: 200, /* Defaults to 200 */
        body: responseMessage
    };
}
"#;

const AZURE_NODE_V3_FUNCTION_JSON: &str = r#"{
  "bindings": [
    {
      "authLevel": "function",
      "type": "httpTrigger",
      "direction": "in",
      "name": "req",
      "methods": [
        "get",
        "post"
      ]
    },
    {
      "type": "http",
      "direction": "out",
      "name": "res"
    }
  ]
}
"#;

const HOST_JSON: &str = r#"{
  "version": "2.0",
  "extensionBundle": {
    "id": "Microsoft.Azure.Functions.ExtensionBundle",
    "version": "[4.*, 5.0.0)"
  }
}
"#;

const AZURE_DEFAULT: &str = "This HTTP triggered function executed successfully. Pass a name in the query string or in the request body for a personalized response.";

#[test]
fn style_azure_node_v3_http_trigger_sample() {
    let s = Server::start();
    // A REST-ish v3 function: route params, status, headers, JSON body, done().
    let rest = r#"module.exports = function (context, req) {
    context.res.status(req.method === 'POST' ? 201 : 200)
        .set('x-item', context.bindingData.id)
        .json({ id: req.params.id, method: req.method, body: req.body, q: req.query.q });
};
"#;
    deploy_files(
        &s,
        "az-node3",
        "nodejs",
        "HttpTrigger1",
        &[
            ("host.json", HOST_JSON),
            ("HttpTrigger1/function.json", AZURE_NODE_V3_FUNCTION_JSON),
            ("HttpTrigger1/index.js", AZURE_NODE_V3_INDEX),
            ("Items/function.json", AZURE_NODE_V3_FUNCTION_JSON),
            ("Items/index.js", rest),
        ],
        "azure",
    );
    deploy_files(
        &s,
        "az-node3-items",
        "nodejs",
        "Items",
        &[
            ("host.json", HOST_JSON),
            ("Items/function.json", AZURE_NODE_V3_FUNCTION_JSON),
            ("Items/index.js", rest),
        ],
        "azure",
    );
    route(&s, "ANY /api/HttpTrigger1", "az-node3");
    route(&s, "ANY /api/items/{id}", "az-node3-items");
    let base = format!("{}/api/HttpTrigger1", s.gateway);

    let (st, h, body) = call("GET", &format!("{base}?name=Ada"), None);
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body,
        "Hello, Ada. This HTTP triggered function executed successfully."
    );
    assert!(ctype(&h).starts_with("text/plain"), "{h:?}");
    let (st, _, body) = call(
        "POST",
        &base,
        Some(("application/json", r#"{"name":"Bob"}"#)),
    );
    assert_eq!(st, 200);
    assert_eq!(
        body,
        "Hello, Bob. This HTTP triggered function executed successfully."
    );
    let (st, _, body) = call("GET", &base, None);
    assert_eq!((st, body.as_str()), (200, AZURE_DEFAULT));
    // context.log lands in the function's logs.
    let logs = s.logs_until("az-node3", |ev| {
        lines_of(ev)
            .iter()
            .any(|l| l.contains("JavaScript HTTP trigger function processed a request."))
    });
    assert!(
        lines_of(&logs)
            .iter()
            .any(|l| l.contains("JavaScript HTTP trigger function processed a request."))
    );

    let (st, h, body) = call(
        "POST",
        &format!("{}/api/items/42?q=x", s.gateway),
        Some(("application/json", r#"{"n":1}"#)),
    );
    assert_eq!(st, 201, "{body}");
    assert_eq!(h["x-item"], "42");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"id": "42", "method": "POST", "body": {"n": 1}, "q": "x"})
    );
}

const AZURE_NODE_V4: &str = r#"const { app } = require('@azure/functions');

app.http('httpTrigger1', {
    methods: ['GET', 'POST'],
    authLevel: 'anonymous',
    handler: async (request, context) => {
        context.log(`Http function processed request for url "${request.url}"`);

        const name = request.query.get('name') || await request.text() || 'world';

        return { body: `Hello, ${name}!` };
    }
});
"#;

const AZURE_NODE_V4_REST: &str = r#"const { app, HttpResponse } = require('@azure/functions');

app.post('createItem', {
    route: 'items',
    handler: async (request, context) => {
        const item = await request.json();
        return new HttpResponse({ status: 201, jsonBody: { created: item, by: request.headers.get('x-user') } });
    }
});

app.get('boom', async () => { throw new Error('boom'); });
"#;

#[test]
fn style_azure_node_v4_app_http_sample() {
    let s = Server::start();
    let package = r#"{
  "name": "v4-app",
  "version": "1.0.0",
  "main": "src/functions/*.js",
  "scripts": { "start": "func start" },
  "dependencies": { "@azure/functions": "^4.0.0" }
}
"#;
    let files = [
        ("host.json", HOST_JSON),
        ("package.json", package),
        ("src/functions/httpTrigger1.js", AZURE_NODE_V4),
        ("src/functions/items.js", AZURE_NODE_V4_REST),
    ];
    deploy_files(&s, "az-node4", "nodejs", "httpTrigger1", &files, "azure");
    deploy_files(
        &s,
        "az-node4-items",
        "nodejs",
        "createItem",
        &files,
        "azure",
    );
    deploy_files(&s, "az-node4-boom", "nodejs", "boom", &files, "azure");
    route(&s, "ANY /api/httpTrigger1", "az-node4");
    route(&s, "ANY /api/items", "az-node4-items");
    route(&s, "GET /api/boom", "az-node4-boom");
    let base = format!("{}/api/httpTrigger1", s.gateway);

    let (st, _, body) = call("GET", &format!("{base}?name=Ada"), None);
    assert_eq!((st, body.as_str()), (200, "Hello, Ada!"));
    let (st, _, body) = call("POST", &base, Some(("text/plain", "Bob")));
    assert_eq!((st, body.as_str()), (200, "Hello, Bob!"));
    let (st, _, body) = call("GET", &base, None);
    assert_eq!((st, body.as_str()), (200, "Hello, world!"));
    // Methods declared by app.http are enforced.
    let (st, _, _) = call("PUT", &base, Some(("text/plain", "x")));
    assert_eq!(st, 405);

    let r = plain()
        .post(format!("{}/api/items", s.gateway))
        .header("x-user", "ada")
        .json(&json!({"sku": "X1"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert!(ctype(r.headers()).starts_with("application/json"));
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"created": {"sku": "X1"}, "by": "ada"})
    );
    // Unhandled errors answer 500, as the Functions host does.
    let (st, _, _) = call("GET", &format!("{}/api/boom", s.gateway), None);
    assert_eq!(st, 500);
    // A name nobody registered fails the deploy? No: it is only known at load
    // time, so the first invocation reports Runtime.HandlerNotFound.
    deploy_files(&s, "az-node4-missing", "nodejs", "nope", &files, "azure");
    let r = s.invoke_raw("az-node4-missing", "{}", false);
    assert_eq!(
        r.function_error().as_deref(),
        Some("Unhandled"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["errorType"], "Runtime.HandlerNotFound", "{v}");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("httpTrigger1"),
        "{v}"
    );
}

const AZURE_PY_V1_INIT: &str = r#"import logging

import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    logging.info('Python HTTP trigger function processed a request.')

    name = req.params.get('name')
    if not name:
        try:
            req_body = req.get_json()
        except ValueError:
            pass
        else:
            name = req_body.get('name')

    if name:
        return func.HttpResponse(f"Hello, {name}. This HTTP triggered function executed successfully.")
    else:
        return func.HttpResponse(
             "This HTTP triggered function executed successfully. Pass a name in the query string or in the request body for a personalized response.",
             status_code=200
        )
"#;

const AZURE_PY_V1_FUNCTION_JSON: &str = r#"{
  "scriptFile": "__init__.py",
  "bindings": [
    {
      "authLevel": "function",
      "type": "httpTrigger",
      "direction": "in",
      "name": "req",
      "methods": [
        "get",
        "post"
      ]
    },
    {
      "type": "http",
      "direction": "out",
      "name": "$return"
    }
  ]
}
"#;

const AZURE_PY_V2: &str = r#"import azure.functions as func
import json
import logging

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

@app.route(route="http_trigger")
def http_trigger(req: func.HttpRequest) -> func.HttpResponse:
    logging.info('Python HTTP trigger function processed a request.')

    name = req.params.get('name')
    if not name:
        try:
            req_body = req.get_json()
        except ValueError:
            pass
        else:
            name = req_body.get('name')

    if name:
        return func.HttpResponse(f"Hello, {name}. This HTTP triggered function executed successfully.")
    else:
        return func.HttpResponse(
             "This HTTP triggered function executed successfully. Pass a name in the query string or in the request body for a personalized response.",
             status_code=200
        )

@app.function_name(name="GetProduct")
@app.route(route="products/{category}/{id}", methods=["GET"])
def get_product(req: func.HttpRequest) -> func.HttpResponse:
    body = {"category": req.route_params.get("category"), "id": req.route_params.get("id"),
            "method": req.method, "agent": req.headers.get("X-Agent")}
    return func.HttpResponse(json.dumps(body), status_code=203, mimetype="application/json",
                             headers={"X-Product": req.route_params.get("id")})

@app.route(route="fail")
def fail(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")
"#;

#[test]
fn style_azure_python_v1_and_v2_samples() {
    let s = Server::start();
    deploy_files(
        &s,
        "az-py1",
        "python3",
        "HttpTrigger",
        &[
            ("host.json", HOST_JSON),
            ("requirements.txt", "azure-functions\n"),
            ("HttpTrigger/__init__.py", AZURE_PY_V1_INIT),
            ("HttpTrigger/function.json", AZURE_PY_V1_FUNCTION_JSON),
        ],
        "azure",
    );
    let v2 = [
        ("host.json", HOST_JSON),
        ("requirements.txt", "azure-functions\n"),
        ("function_app.py", AZURE_PY_V2),
    ];
    deploy_files(&s, "az-py2", "python3", "http_trigger", &v2, "azure");
    deploy_files(&s, "az-py2-product", "python3", "GetProduct", &v2, "azure");
    deploy_files(&s, "az-py2-fail", "python3", "fail", &v2, "azure");
    route(&s, "ANY /api/HttpTrigger", "az-py1");
    route(&s, "ANY /api/http_trigger", "az-py2");
    route(&s, "GET /api/products/{category}/{id}", "az-py2-product");
    route(&s, "GET /api/fail", "az-py2-fail");

    for path in ["/api/HttpTrigger", "/api/http_trigger"] {
        let base = format!("{}{path}", s.gateway);
        let (st, h, body) = call("GET", &format!("{base}?name=Ada"), None);
        assert_eq!(st, 200, "{path}: {body}");
        assert_eq!(
            body,
            "Hello, Ada. This HTTP triggered function executed successfully."
        );
        assert!(ctype(&h).starts_with("text/plain"), "{h:?}");
        let (st, _, body) = call(
            "POST",
            &base,
            Some(("application/json", r#"{"name":"Bob"}"#)),
        );
        assert_eq!(st, 200);
        assert_eq!(
            body,
            "Hello, Bob. This HTTP triggered function executed successfully."
        );
        let (st, _, body) = call("GET", &base, None);
        assert_eq!((st, body.as_str()), (200, AZURE_DEFAULT), "{path}");
    }
    let logs = s.logs_until("az-py1", |ev| {
        lines_of(ev)
            .iter()
            .any(|l| l.contains("Python HTTP trigger function processed a request."))
    });
    assert!(
        lines_of(&logs)
            .iter()
            .any(|l| l.contains("Python HTTP trigger function processed a request."))
    );

    let r = plain()
        .get(format!("{}/api/products/tools/7", s.gateway))
        .header("x-agent", "curl")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 203);
    assert_eq!(r.headers()["x-product"], "7");
    assert!(ctype(r.headers()).starts_with("application/json"));
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"category": "tools", "id": "7", "method": "GET", "agent": "curl"})
    );
    let (st, _, _) = call("GET", &format!("{}/api/fail", s.gateway), None);
    assert_eq!(st, 500);
}

// ---------------------------------------------------------------------------
// Google Cloud Functions

const GCF_NODE_HELLO_HTTP: &str = r#"/**
 * Responds to any HTTP request.
 *
 * @param {!express:Request} req HTTP request context.
 * @param {!express:Response} res HTTP response context.
 */
exports.helloHttp = (req, res) => {
  res.send(`Hello ${req.query.name || req.body.name || 'World'}!`);
};
"#;

const GCF_NODE_REGISTERED: &str = r#"const functions = require('@google-cloud/functions-framework');

// Register an HTTP function with the Functions Framework that will be executed
// when you make an HTTP request to the deployed function's endpoint.
functions.http('helloGET', (req, res) => {
  res.send('Hello World!');
});

functions.http('items', async (req, res) => {
  if (req.method !== 'POST') {
    return res.status(405).set('Allow', 'POST').send('Method Not Allowed');
  }
  res.status(201).set({ 'X-Item': req.body.sku }).json({ created: req.body, ua: req.get('User-Agent') });
});

functions.http('crash', () => { throw new Error('kaput'); });

functions.cloudEvent('helloCloudEvent', (cloudEvent) => {
  console.log(`Received event ${cloudEvent.id} of type ${cloudEvent.type}: ${JSON.stringify(cloudEvent.data)}`);
});
"#;

#[test]
fn style_google_node_http_and_cloudevent_samples() {
    let s = Server::start();
    deploy_files(
        &s,
        "gcf-node",
        "nodejs",
        "helloHttp",
        &[
            (
                "package.json",
                r#"{"name": "hello", "dependencies": {"@google-cloud/functions-framework": "^3.0.0"}}"#,
            ),
            ("index.js", GCF_NODE_HELLO_HTTP),
        ],
        "google",
    );
    let reg = [
        (
            "package.json",
            r#"{"name": "reg", "main": "index.js", "dependencies": {"@google-cloud/functions-framework": "^3.0.0"}}"#,
        ),
        ("index.js", GCF_NODE_REGISTERED),
    ];
    deploy_files(&s, "gcf-node-get", "nodejs", "helloGET", &reg, "google");
    deploy_files(&s, "gcf-node-items", "nodejs", "items", &reg, "google");
    deploy_files(&s, "gcf-node-crash", "nodejs", "crash", &reg, "google");
    deploy_files(
        &s,
        "gcf-node-ce",
        "nodejs",
        "helloCloudEvent",
        &reg,
        "google",
    );
    route(&s, "ANY /helloHttp", "gcf-node");
    route(&s, "GET /helloGET", "gcf-node-get");
    route(&s, "ANY /items", "gcf-node-items");
    route(&s, "GET /crash", "gcf-node-crash");
    route(&s, "POST /events", "gcf-node-ce");
    let base = format!("{}/helloHttp", s.gateway);

    let (st, h, body) = call("GET", &format!("{base}?name=Ada"), None);
    assert_eq!((st, body.as_str()), (200, "Hello Ada!"));
    assert!(ctype(&h).starts_with("text/html"), "{h:?}");
    let (st, _, body) = call(
        "POST",
        &base,
        Some(("application/json", r#"{"name":"Bob"}"#)),
    );
    assert_eq!((st, body.as_str()), (200, "Hello Bob!"));
    let (st, _, body) = call("GET", &base, None);
    assert_eq!((st, body.as_str()), (200, "Hello World!"));
    let (st, _, body) = call("GET", &format!("{}/helloGET", s.gateway), None);
    assert_eq!((st, body.as_str()), (200, "Hello World!"));

    let r = plain()
        .post(format!("{}/items", s.gateway))
        .header("user-agent", "tester/1")
        .json(&json!({"sku": "X1"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["x-item"], "X1");
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"created": {"sku": "X1"}, "ua": "tester/1"})
    );
    let (st, h, _) = call("GET", &format!("{}/items", s.gateway), None);
    assert_eq!(st, 405);
    assert_eq!(h["allow"], "POST");
    let (st, h, body) = call("GET", &format!("{}/crash", s.gateway), None);
    assert_eq!(st, 500, "{body}");
    assert_eq!(h["x-google-status"], "crash");

    // CloudEvent, binary mode.
    let r = plain()
        .post(format!("{}/events", s.gateway))
        .header("ce-id", "42")
        .header("ce-source", "//storage.googleapis.com/projects/_/buckets/b")
        .header("ce-specversion", "1.0")
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .json(&json!({"name": "file.txt"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Structured mode.
    let (st, _, _) = call(
        "POST",
        &format!("{}/events", s.gateway),
        Some((
            "application/cloudevents+json",
            r#"{"specversion":"1.0","id":"43","source":"/s","type":"com.example.t","data":{"n":1}}"#,
        )),
    );
    assert_eq!(st, 204);
    // Not a CloudEvent.
    let (st, _, _) = call(
        "POST",
        &format!("{}/events", s.gateway),
        Some(("application/json", "{}")),
    );
    assert_eq!(st, 400);
    let logs = s.logs_until("gcf-node-ce", |ev| {
        lines_of(ev).iter().any(|l| l.contains("Received event 43"))
    });
    let lines = lines_of(&logs);
    assert!(
        lines.iter().any(|l| l.contains(
            r#"Received event 42 of type google.cloud.storage.object.v1.finalized: {"name":"file.txt"}"#
        )),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"Received event 43 of type com.example.t: {"n":1}"#)),
        "{lines:?}"
    );
}

const GCF_PY_MAIN: &str = r#"import functions_framework
from markupsafe import escape


@functions_framework.http
def hello_http(request):
    """HTTP Cloud Function.
    Args:
        request (flask.Request): The request object.
        <https://flask.palletsprojects.com/en/1.1.x/api/#incoming-request-data>
    Returns:
        The response text, or any set of values that can be turned into a
        Response object using `make_response`
        <https://flask.palletsprojects.com/en/1.1.x/api/#flask.make_response>.
    """
    request_json = request.get_json(silent=True)
    request_args = request.args

    if request_json and "name" in request_json:
        name = request_json["name"]
    elif request_args and "name" in request_args:
        name = request_args["name"]
    else:
        name = "World"
    return f"Hello {escape(name)}!"


# CloudEvent function to be triggered by an Eventarc Cloud Audit Logging trigger
# Note: this is NOT designed for second-party (Cloud Audit Logs -> Pub/Sub) triggers!
@functions_framework.cloud_event
def hello_cloud_event(cloud_event):
    print(f"Received event with ID: {cloud_event['id']} and data {cloud_event.data}")


@functions_framework.http
def items(request):
    if request.method != "POST":
        return "Method Not Allowed", 405, {"Allow": "POST"}
    item = request.get_json()
    return {"created": item, "tags": request.args.getlist("tag")}, 201, {"X-Item": item["sku"]}


@functions_framework.http
def crash(request):
    raise ValueError("kaput")
"#;

/// The sample imports markupsafe (a Flask dependency the Functions Framework
/// brings along): vendored into the package, as `pip install -t .` would, from
/// the test machine's Python (pure-Python modules only).
fn vendored_markupsafe() -> Vec<(String, String)> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import markupsafe, os; print(os.path.dirname(markupsafe.__file__))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the test machine's python3 must have markupsafe"
    );
    let dir = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    ["__init__.py", "_native.py"]
        .iter()
        .map(|f| {
            (
                format!("markupsafe/{f}"),
                std::fs::read_to_string(dir.join(f)).unwrap(),
            )
        })
        .collect()
}

fn gcf_python_files() -> Vec<(String, String)> {
    let mut files = vendored_markupsafe();
    files.push((
        "requirements.txt".into(),
        "functions-framework==3.*\nmarkupsafe\n".into(),
    ));
    files.push(("main.py".into(), GCF_PY_MAIN.into()));
    files
}

#[test]
fn style_google_python_http_and_cloudevent_samples() {
    let s = Server::start();
    let owned = gcf_python_files();
    let files: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    deploy_files(&s, "gcf-py", "python3", "hello_http", &files, "google");
    deploy_files(&s, "gcf-py-items", "python3", "items", &files, "google");
    deploy_files(&s, "gcf-py-crash", "python3", "crash", &files, "google");
    deploy_files(
        &s,
        "gcf-py-ce",
        "python3",
        "hello_cloud_event",
        &files,
        "google",
    );
    route(&s, "ANY /hello_http", "gcf-py");
    route(&s, "ANY /items", "gcf-py-items");
    route(&s, "GET /crash", "gcf-py-crash");
    route(&s, "POST /events", "gcf-py-ce");
    let base = format!("{}/hello_http", s.gateway);

    let (st, h, body) = call("GET", &format!("{base}?name=Ada"), None);
    assert_eq!((st, body.as_str()), (200, "Hello Ada!"));
    assert!(ctype(&h).starts_with("text/html"), "{h:?}");
    let (st, _, body) = call(
        "POST",
        &base,
        Some(("application/json", r#"{"name":"<b>"}"#)),
    );
    assert_eq!((st, body.as_str()), (200, "Hello &lt;b&gt;!"));
    let (st, _, body) = call("GET", &base, None);
    assert_eq!((st, body.as_str()), (200, "Hello World!"));

    let r = plain()
        .post(format!("{}/items?tag=a&tag=b", s.gateway))
        .json(&json!({"sku": "X1"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["x-item"], "X1");
    assert!(ctype(r.headers()).starts_with("application/json"));
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"created": {"sku": "X1"}, "tags": ["a", "b"]})
    );
    let (st, h, _) = call("GET", &format!("{}/items", s.gateway), None);
    assert_eq!(st, 405);
    assert_eq!(h["allow"], "POST");
    let (st, h, _) = call("GET", &format!("{}/crash", s.gateway), None);
    assert_eq!(st, 500);
    assert_eq!(h["x-google-status"], "crash");

    let r = plain()
        .post(format!("{}/events", s.gateway))
        .header("ce-id", "1234")
        .header("ce-source", "//pubsub.googleapis.com/projects/p/topics/t")
        .header("ce-specversion", "1.0")
        .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
        .json(&json!({"message": {"data": "aGk="}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), "OK");
    let logs = s.logs_until("gcf-py-ce", |ev| {
        lines_of(ev).iter().any(|l| l.contains("Received event"))
    });
    assert!(
        lines_of(&logs)
            .iter()
            .any(|l| l
                .contains("Received event with ID: 1234 and data {'message': {'data': 'aGk='}}")),
        "{:?}",
        lines_of(&logs)
    );
}

// ---------------------------------------------------------------------------
// AWS (regression) and selection rules

#[test]
fn style_aws_node_handler_through_gateway_and_selection_rules() {
    let s = Server::start();
    // The Lambda console's default Node function, through the gateway.
    deploy_files(
        &s,
        "aws-node",
        "nodejs",
        "index.handler",
        &[(
            "index.mjs",
            "export const handler = async (event) => {\n  // TODO implement\n  const response = {\n    statusCode: 200,\n    body: JSON.stringify('Hello from Lambda!'),\n  };\n  return response;\n};\n",
        )],
        "aws",
    );
    route(&s, "GET /aws", "aws-node");
    let (st, _, body) = call("GET", &format!("{}/aws", s.gateway), None);
    assert_eq!((st, body.as_str()), (200, "\"Hello from Lambda!\""));

    // Explicit style wins over detection; `auto` detects.
    let owned = gcf_python_files();
    let entries: Vec<(&str, &[u8], u32)> = owned
        .iter()
        .filter(|(p, _)| p != "requirements.txt")
        .map(|(p, t)| (p.as_str(), t.as_bytes(), 0o644))
        .collect();
    let zip = zip_of(&entries);
    let (st, v) = s.try_deploy(
        "explicit",
        "python3",
        "hello_http",
        zip.clone(),
        json!({"handler_style": "google"}),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["handler_style"], "google");
    assert_eq!(v["resolved_style"], "google");
    let r = s.invoke("explicit", &json!({"name": "Ada"}));
    assert_eq!(r.json()["body"], "Hello Ada!", "{}", r.json());
    // A bad style is refused with the accepted values.
    let (st, v) = s.try_deploy(
        "bad",
        "python3",
        "hello_http",
        zip.clone(),
        json!({"handler_style": "gcloud"}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected aws, azure, google or auto"),
        "{v}"
    );
    // Ambiguous code is refused rather than guessed.
    let plain_fn = zip_of(&[("main.py", b"def f(request):\n    return 'x'\n", 0o644)]);
    let (st, v) = s.try_deploy("ambiguous", "python3", "f", plain_fn, json!({}));
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("set handler_style"),
        "{v}"
    );
    // An Azure handler must name a function of the package.
    let zip = zip_of(&[
        ("host.json", HOST_JSON.as_bytes(), 0o644),
        (
            "HttpTrigger1/function.json",
            AZURE_NODE_V3_FUNCTION_JSON.as_bytes(),
            0o644,
        ),
        (
            "HttpTrigger1/index.js",
            AZURE_NODE_V3_INDEX.as_bytes(),
            0o644,
        ),
    ]);
    let (st, v) = s.try_deploy("az-wrong", "nodejs", "Other", zip, json!({}));
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HttpTrigger1"),
        "{v}"
    );
    // `nimbus deploy --style` (CLI) sets it too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), GCF_NODE_HELLO_HTTP).unwrap();
    let out = s.cli(&[
        "deploy",
        dir.path().to_str().unwrap(),
        "--name",
        "cli-gcf",
        "--runtime",
        "nodejs",
        "--handler",
        "helloHttp",
        "--style",
        "google",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(google style)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    route(&s, "GET /cli", "cli-gcf");
    let (st, _, body) = call("GET", &format!("{}/cli?name=Cli", s.gateway), None);
    assert_eq!((st, body.as_str()), (200, "Hello Cli!"));
}
