//! The native API: validation with precise errors, CRUD, OpenAPI.

use serde_json::{Value, json};

use crate::harness::*;

fn error_of(status_body: (u16, Value)) -> (u16, String, String) {
    let (status, body) = status_body;
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn create_get_list_update_delete() {
    let s = Server::start();
    let (st, code) = s.upload(py("def handler(e, c): return 'v1'\n"));
    assert_eq!(st, 201);
    let sha = code["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    let (st, f) = s.send_json("POST", "/v1/functions", &json!({"name": "crud", "runtime": "python3.12", "handler": "app.handler", "code_sha256": sha, "description": "d"}));
    assert_eq!(st, 201, "{f}");
    assert_eq!(f["runtime"], "python3");
    assert_eq!(f["memory_mb"], 128);
    assert_eq!(f["timeout_s"], 3);
    assert_eq!(f["version"], "$LATEST");
    assert_eq!(f["code_sha256"], sha.as_str());
    assert_eq!(
        f["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:crud"
    );
    let (st, again) = s.send_json("POST", "/v1/functions", &json!({"name": "crud", "runtime": "python3", "handler": "app.handler", "code_sha256": sha}));
    assert_eq!(error_of((st, again)).0, 409);

    let (st, got) = s.get("/v1/functions/crud");
    assert_eq!(st, 200);
    assert_eq!(got["description"], "d");
    let (_, list) = s.get("/v1/functions");
    assert_eq!(list["functions"].as_array().unwrap().len(), 1);
    assert_eq!(s.invoke("crud", &json!({})).json(), json!("v1"));

    // Update configuration: memory and environment; running instances are replaced.
    let (st, f2) = s.send_json(
        "PATCH",
        "/v1/functions/crud",
        &json!({"memory_mb": 512, "environment": {"A": "b"}}),
    );
    assert_eq!(st, 200, "{f2}");
    assert_eq!(f2["memory_mb"], 512);
    assert_ne!(f2["revision_id"], f["revision_id"]);
    assert!(
        s.invoke("crud", &json!({})).cold(),
        "new configuration, new instance"
    );

    // Update code.
    let (_, code2) = s.upload(py("def handler(e, c): return 'v2'\n"));
    let (st, f3) = s.send_json(
        "PUT",
        "/v1/functions/crud/code",
        &json!({"code_sha256": code2["sha256"]}),
    );
    assert_eq!(st, 200, "{f3}");
    assert_eq!(s.invoke("crud", &json!({})).json(), json!("v2"));

    let r = s
        .http
        .delete(format!("{}/v1/functions/crud", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(error_of(s.get("/v1/functions/crud")).1, "FunctionNotFound");
    let r = s.invoke_raw("crud", "{}", false);
    assert_eq!(r.status, 404);
}

#[test]
fn validation_errors_are_precise() {
    let s = Server::start();
    let zip = py("def handler(e, c): return 1\n");
    let cases: Vec<(&str, &str, &str, Value, &str)> = vec![
        ("bad name!", "python3", "app.handler", json!({}), "contains"),
        ("n1", "ruby3.2", "app.handler", json!({}), "unknown runtime"),
        (
            "n2",
            "python3",
            "missing.handler",
            json!({}),
            "not found in the package",
        ),
        ("n3", "python3", "nodot", json!({}), "module.function"),
        (
            "n4",
            "python3",
            "app.handler",
            json!({"memory_mb": 64}),
            "memory_mb must be between 128 and 10240",
        ),
        (
            "n5",
            "python3",
            "app.handler",
            json!({"timeout_s": 901}),
            "timeout_s must be between 1 and 900",
        ),
        (
            "n6",
            "python3",
            "app.handler",
            json!({"environment": {"AWS_REGION": "x"}}),
            "reserved",
        ),
        (
            "n7",
            "nodejs",
            "index.handler",
            json!({}),
            "not found in the package",
        ),
        ("n8", "provided", "x", json!({}), "bootstrap"),
    ];
    for (name, runtime, handler, extra, needle) in cases {
        let (st, body) = s.try_deploy(name, runtime, handler, zip.clone(), extra);
        let (status, code, msg) = error_of((st, body));
        assert_eq!(status, 400, "{name}: {code} {msg}");
        assert!(
            msg.contains(needle),
            "{name}: expected {needle:?} in {msg:?}"
        );
    }
    // Unknown fields are refused, not ignored.
    let (_, code) = s.upload(zip.clone());
    let (st, body) = s.send_json("PUT", "/v1/functions/x", &json!({"runtime": "python3", "handler": "app.handler", "code_sha256": code["sha256"], "memorySize": 256}));
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{body}"
    );
    // Unknown code package.
    let (st, body) = s.send_json(
        "PUT",
        "/v1/functions/x",
        &json!({"runtime": "python3", "handler": "app.handler", "code_sha256": "0".repeat(64)}),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str().unwrap()),
        (400, "InvalidParameter")
    );
}

#[test]
fn hostile_packages_are_refused() {
    let s = Server::start();
    let (st, body) = s.upload(zip_of(&[("../escape.py", b"x", 0o644)]));
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "InvalidCodePackage");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("escapes the package root")
    );
    let (st, body) = s.upload(b"PK\x03\x04 garbage".to_vec());
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid zip"),
        "{body}"
    );
    let (st, body) = s.upload(vec![0u8; 51 * 1024 * 1024]);
    assert_eq!(st, 413, "{body}");
    assert_eq!(body["error"]["code"], "PayloadTooLarge");
    let (st, _) = s.upload(Vec::new());
    assert_eq!(st, 400);
}

#[test]
fn openapi_document_describes_the_api() {
    let s = Server::start();
    let (st, doc) = s.get("/v1/openapi.json");
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/code",
        "/v1/functions",
        "/v1/functions/{name}",
        "/v1/functions/{name}/code",
        "/v1/functions/{name}/invoke",
        "/v1/functions/{name}/logs",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let (st, body) = s.get("/v1/nope");
    assert_eq!(st, 404);
    assert_eq!(body["error"]["code"], "NotFound");
}

#[test]
fn the_native_api_requires_a_key() {
    let s = Server::start();
    let anonymous = reqwest::blocking::Client::new();
    let r = anonymous
        .get(format!("{}/v1/functions", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    let wrong = anonymous
        .get(format!("{}/v1/functions", s.url))
        .bearer_auth(format!("{ADMIN_KEY_ID}:not-the-secret"))
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // A function cannot mint keys or deploy code through loopback without one.
    let mint = anonymous.post(format!("{}/v1/keys", s.url)).send().unwrap();
    assert_eq!(mint.status().as_u16(), 401);
    // Health and the API description stay open.
    assert_eq!(
        anonymous
            .get(format!("{}/v1/health", s.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        anonymous
            .get(format!("{}/v1/openapi.json", s.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Keys created through the API work, and stop working when removed.
    let (st, key) = s.send_json("POST", "/v1/keys", &json!({"description": "ci"}));
    assert_eq!(st, 201, "{key}");
    let token = format!(
        "{}:{}",
        key["access_key_id"].as_str().unwrap(),
        key["secret_access_key"].as_str().unwrap()
    );
    let ok = anonymous
        .get(format!("{}/v1/functions", s.url))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let (_, list) = s.get("/v1/keys");
    let listed = list["keys"].as_array().unwrap();
    assert!(
        listed.iter().all(|k| k.get("secret_access_key").is_none()),
        "secrets are never listed: {list}"
    );
    let del = s
        .http
        .delete(format!(
            "{}/v1/keys/{}",
            s.url,
            key["access_key_id"].as_str().unwrap()
        ))
        .send()
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let gone = anonymous
        .get(format!("{}/v1/functions", s.url))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(gone.status().as_u16(), 401);
}

#[test]
fn prometheus_metrics() {
    let s = Server::start();
    deploy_py(
        &s,
        "measured",
        "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError('x')\n    return 1\n",
        json!({}),
    );
    s.invoke("measured", &json!({}));
    s.invoke("measured", &json!({"fail": true}));
    let text = s.metrics_text();
    for line in [
        "nimbus_invocations_total{function=\"measured\"} 2",
        "nimbus_errors_total{function=\"measured\"} 1",
        "nimbus_cold_starts_total{function=\"measured\"} 1",
        "nimbus_throttles_total{function=\"measured\"} 0",
        "nimbus_duration_seconds_count{function=\"measured\"} 2",
        "nimbus_init_duration_seconds_count{function=\"measured\"} 1",
        "nimbus_instances{function=\"measured\",state=\"idle\"} 1",
        "nimbus_concurrent_executions{function=\"measured\"} 0",
        "nimbus_async_queue_depth 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    assert!(text.contains("# TYPE nimbus_duration_seconds histogram"));
    let anonymous = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap();
    assert_eq!(
        anonymous.status().as_u16(),
        401,
        "metrics need a key like the rest of the API"
    );
}
