//! The HTTP gateway, black-box: routes declared through the API and CLI,
//! real HTTP (and WebSocket) traffic to `nimbus up`'s gateway listener, real
//! Python functions behind it.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::harness::*;

/// One function for most route shapes: echoes the event, or misbehaves on
/// purpose depending on the last path segment.
const ECHO: &str = r#"
import base64, json, time
def handler(event, context):
    path = event.get("rawPath") or event.get("path") or ""
    last = path.rstrip("/").split("/")[-1]
    if last == "raise":
        raise RuntimeError("boom")
    if last == "sleep":
        time.sleep(5)
    if last == "bad":
        return {"statusCode": "nope"}
    if last == "binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if last == "cookies":
        return {"statusCode": 201, "cookies": ["a=1; Path=/", "b=2"], "headers": {"x-one": "1"}, "body": "ok"}
    if last == "multi":
        return {"statusCode": 200, "multiValueHeaders": {"x-m": ["1", "2"]}, "body": "m"}
    if last == "shortcut":
        return {"hello": "world"}
    print("gateway-request", context.aws_request_id)
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "request_id": context.aws_request_id})}
"#;

fn plain() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn add_route(s: &Server, spec: Value) -> Value {
    let (st, v) = s.send_json("POST", "/v1/routes", &spec);
    assert_eq!(st, 201, "{v}");
    v
}

fn body_json(r: Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().unwrap();
    (
        st,
        h,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn echo_server() -> Server {
    let s = Server::start();
    deploy_py(&s, "echo", ECHO, json!({"timeout_s": 2}));
    s
}

#[test]
fn routes_payload_formats_and_response_mapping() {
    let s = echo_server();
    add_route(&s, json!({"route": "GET /users/{id}", "function": "echo"}));
    add_route(&s, json!({"route": "GET /users/me", "function": "echo"}));
    add_route(
        &s,
        json!({"route": "ANY /v1/{proxy+}", "function": "echo", "payload_format": "1.0"}),
    );
    add_route(&s, json!({"route": "ANY /v2/{proxy+}", "function": "echo"}));
    // Conflicts are refused when declared, naming both routes.
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /users/{name}", "function": "echo"}),
    );
    assert_eq!(st, 409, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("GET /users/{id}") && msg.contains("GET /users/{name}"),
        "{msg}"
    );
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /x", "function": "missing"}),
    );
    assert_eq!(st, 404, "{v}");

    let gw = plain();
    // 2.0, template route.
    let r = gw
        .get(format!("{}/users/42?a=1&a=2", s.gateway))
        .header("cookie", "c1=v1; c2=v2")
        .send()
        .unwrap();
    let (st, h, v) = body_json(r);
    assert_eq!(st, 200, "{v}");
    let e = &v["event"];
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "GET /users/{id}");
    assert_eq!(e["rawPath"], "/users/42");
    assert_eq!(e["rawQueryString"], "a=1&a=2");
    assert_eq!(e["queryStringParameters"]["a"], "1,2");
    assert_eq!(e["pathParameters"]["id"], "42");
    assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
    // One request id: gateway header, requestContext, the invocation's id.
    let rid = h["x-amzn-requestid"].to_str().unwrap().to_string();
    assert_eq!(e["requestContext"]["requestId"], rid.as_str());
    assert_eq!(v["request_id"], rid.as_str());
    // Exact beats template.
    let (_, _, v) = body_json(gw.get(format!("{}/users/me", s.gateway)).send().unwrap());
    assert_eq!(v["event"]["routeKey"], "GET /users/me");
    // 1.0, greedy, ANY.
    let (st, _, v) = body_json(
        gw.delete(format!("{}/v1/files/a/b.txt?x=1", s.gateway))
            .header("x-multi", "1")
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    let e = &v["event"];
    assert_eq!(e["httpMethod"], "DELETE");
    assert_eq!(e["resource"], "/v1/{proxy+}");
    assert_eq!(e["pathParameters"]["proxy"], "files/a/b.txt");
    // REST APIs title-case header names.
    assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["1"]));
    assert_eq!(e["multiValueQueryStringParameters"]["x"], json!(["1"]));
    // Unknown paths: 404 with a request id.
    let r = gw.get(format!("{}/nothing", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-amzn-requestid"));

    // Binary request body: base64 in the event.
    let bytes: Vec<u8> = (0..=255u8).collect();
    let (_, _, v) = body_json(
        gw.post(format!("{}/v2/upload", s.gateway))
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .unwrap(),
    );
    assert_eq!(v["event"]["isBase64Encoded"], true);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v["event"]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes);

    // Responses: binary bodies, cookies, multi-value headers, the 2.0 shortcut.
    let r = gw.get(format!("{}/v2/binary", s.gateway)).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().unwrap().to_vec(), bytes);
    let r = gw.get(format!("{}/v2/cookies", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 201);
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    assert_eq!(r.headers()["x-one"], "1");
    let r = gw.get(format!("{}/v1/multi", s.gateway)).send().unwrap();
    let m: Vec<_> = r.headers().get_all("x-m").iter().collect();
    assert_eq!(m, ["1", "2"]);
    let (st, h, v) = body_json(gw.get(format!("{}/v2/shortcut", s.gateway)).send().unwrap());
    assert_eq!((st, v), (200, json!({"hello": "world"})));
    assert_eq!(h["content-type"], "application/json");

    // Failures: 502 for a handler error and a malformed 1.0 response, 504 for
    // a timeout; always a request id, never a hung connection.
    for (path, status) in [("/v2/raise", 502), ("/v1/bad", 502), ("/v2/sleep", 504)] {
        let t = Instant::now();
        let r = gw.get(format!("{}{path}", s.gateway)).send().unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert!(r.headers().contains_key("x-amzn-requestid"), "{path}");
        assert!(t.elapsed() < Duration::from_secs(15), "{path}");
    }

    // The request id is in the function's logs and in the access log.
    let logs = s.logs_until("echo", |ev| {
        lines_of(ev)
            .iter()
            .any(|l| l.contains(&format!("START RequestId: {rid}")))
    });
    let lines = lines_of(&logs);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("gateway-request {rid}"))),
        "{lines:?}"
    );
    let log = s.server_log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("request_id={rid}")))
        .unwrap_or_else(|| panic!("no access log line for {rid}:\n{log}"));
    assert!(
        line.contains("status=200")
            && line.contains("route=\"GET /users/{id}\"")
            && line.contains("function=echo")
            && line.contains("latency_us="),
        "{line}"
    );
}

#[test]
fn routes_cli_and_function_urls() {
    let s = echo_server();
    let out = s.cli(&[
        "routes",
        "add",
        "POST /orders",
        "echo",
        "--payload-format",
        "1.0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cli(&["routes", "add", "POST /orders", "echo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = s.cli(&["routes", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("POST /orders") && text.contains("1.0"),
        "{text}"
    );
    let r = plain()
        .post(format!("{}/orders", s.gateway))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = s.cli(&["routes", "rm", "POST /orders"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = plain()
        .post(format!("{}/orders", s.gateway))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the route table is swapped at once");

    // Function URL.
    let out = s.cli(&["url", "create", "echo", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url: Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = url["url"].as_str().unwrap();
    assert!(base.starts_with(&s.gateway), "{base}");
    let (st, _, v) = body_json(plain().get(format!("{base}hook/1?src=gh")).send().unwrap());
    assert_eq!(st, 200, "{v}");
    let e = &v["event"];
    assert_eq!(e["routeKey"], "$default");
    assert_eq!(e["rawPath"], "/hook/1");
    assert_eq!(e["rawQueryString"], "src=gh");
    assert_eq!(e["requestContext"]["accountId"], "anonymous");
    let id = url["url_id"].as_str().unwrap();
    assert_eq!(
        e["requestContext"]["domainName"],
        format!("{id}.lambda-url.us-east-1.on.aws")
    );
    let out = s.cli(&["url", "rm", "echo"]);
    assert!(out.status.success());
    let r = plain().get(base).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn auth_modes_with_right_and_wrong_credentials() {
    let s = echo_server();
    add_route(
        &s,
        json!({"route": "GET /fk", "function": "echo", "auth": "function_key"}),
    );
    add_route(
        &s,
        json!({"route": "GET /ak", "function": "echo", "auth": "api_key"}),
    );
    let secret = "an-hs256-secret-of-32-bytes-long!";
    add_route(
        &s,
        json!({"route": "GET /hs", "function": "echo", "auth": "jwt",
               "jwt": {"secret": secret, "issuer": "https://issuer.test", "audience": ["api"]}}),
    );
    let fixtures = repo_root().join("tests/fixtures/gateway");
    add_route(
        &s,
        json!({"route": "GET /rs", "function": "echo", "auth": "jwt",
               "jwt": {"jwks_file": fixtures.join("jwks.json"), "issuer": "https://issuer.test"}}),
    );
    // The HS256 secret is never shown again.
    let (_, routes) = s.get("/v1/routes");
    assert!(!routes.to_string().contains(secret), "{routes}");

    // A key says which routes it opens: one function's, or every one.
    let (st, e) = s.send_json("POST", "/v1/gateway/keys", &json!({"kind": "api"}));
    assert_eq!(st, 400, "{e}");
    assert!(e.to_string().contains("`global: true`"), "{e}");
    let (st, e) = s.send_json(
        "POST",
        "/v1/gateway/keys",
        &json!({"kind": "api", "function": "echo", "global": true}),
    );
    assert_eq!(st, 400, "{e}");
    let (st, fk) = s.send_json(
        "POST",
        "/v1/gateway/keys",
        &json!({"kind": "function", "global": true}),
    );
    assert_eq!(st, 201, "{fk}");
    let fk_id = fk["id"].as_str().unwrap().to_string();
    let fk = fk["value"].as_str().unwrap().to_string();
    let (_, ak) = s.send_json(
        "POST",
        "/v1/gateway/keys",
        &json!({"kind": "api", "global": true}),
    );
    let ak = ak["value"].as_str().unwrap().to_string();
    // Stored hashed: the value is nowhere in the database.
    let db = std::fs::read(s.data_dir.join("nimbus.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("nimbus.db-wal")).unwrap_or_default();
    for k in [&fk, &ak] {
        assert!(!db.windows(k.len()).any(|w| w == k.as_bytes()));
        assert!(!wal.windows(k.len()).any(|w| w == k.as_bytes()));
    }

    let gw = plain();
    let get = |path: &str, h: &[(&str, &str)]| {
        let mut r = gw.get(format!("{}{path}", s.gateway));
        for (k, v) in h {
            r = r.header(*k, *v);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/fk", &[]), 401);
    assert_eq!(get("/fk", &[("x-functions-key", "wrong")]), 401);
    assert_eq!(get("/fk", &[("x-functions-key", &fk)]), 200);
    assert_eq!(get(&format!("/fk?code={fk}"), &[]), 200);
    assert_eq!(
        get("/fk", &[("x-functions-key", &ak)]),
        401,
        "an API key is not a function key"
    );
    assert_eq!(get("/ak", &[]), 403);
    assert_eq!(get("/ak", &[("x-api-key", "wrong")]), 403);
    assert_eq!(get("/ak", &[("x-api-key", &ak)]), 200);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iss: &str, aud: &str, exp: u64| json!({"sub": "user-1", "iss": iss, "aud": aud, "exp": exp, "scope": "read write"});
    let hs = |c: Value, key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let bearer = |t: &str| format!("Bearer {t}");
    let good = hs(claims("https://issuer.test", "api", now + 300), secret);
    assert_eq!(get("/hs", &[]), 401);
    assert_eq!(get("/hs", &[("authorization", &bearer(&good))]), 200);
    for bad in [
        hs(
            claims("https://issuer.test", "api", now + 300),
            "another-secret-of-32-bytes-long!!",
        ),
        hs(claims("https://evil.test", "api", now + 300), secret),
        hs(claims("https://issuer.test", "other", now + 300), secret),
        hs(claims("https://issuer.test", "api", now - 3600), secret),
    ] {
        assert_eq!(get("/hs", &[("authorization", &bearer(&bad))]), 401);
    }
    // The principal reaches the function.
    let r = gw
        .get(format!("{}/hs", s.gateway))
        .header("authorization", bearer(&good))
        .send()
        .unwrap();
    let (_, _, v) = body_json(r);
    let jwt = &v["event"]["requestContext"]["authorizer"]["jwt"];
    assert_eq!(jwt["claims"]["sub"], "user-1");
    assert_eq!(jwt["scopes"], json!(["read", "write"]));

    let pem = std::fs::read(fixtures.join("jwt-rs256.pem")).unwrap();
    let rs = |c: Value, kid: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(
            &h,
            &c,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let good = rs(claims("https://issuer.test", "x", now + 300), "test-key-1");
    assert_eq!(get("/rs", &[("authorization", &bearer(&good))]), 200);
    let unknown_kid = rs(claims("https://issuer.test", "x", now + 300), "nope");
    assert_eq!(get("/rs", &[("authorization", &bearer(&unknown_kid))]), 401);
    // An HS256 token signed with the public modulus must not pass as RS256.
    let confused = hs(
        claims("https://issuer.test", "x", now + 300),
        "test-key-1-padding-pad",
    );
    assert_eq!(get("/rs", &[("authorization", &bearer(&confused))]), 401);

    // Keys are listed without values and can be removed.
    let (_, keys) = s.get("/v1/gateway/keys");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(&fk));
    // (Keys created in the same second are listed in no particular order.)
    let r = s
        .http
        .delete(format!("{}/v1/gateway/keys/{fk_id}", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get("/fk", &[("x-functions-key", &fk)]), 401);
}

#[test]
fn cors_body_limit_and_rate_limit() {
    let s = echo_server();
    add_route(
        &s,
        json!({"route": "ANY /api/{proxy+}", "function": "echo",
               "cors": {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"],
                        "allow_headers": ["content-type"], "max_age": 600},
               "body_limit": 100}),
    );
    add_route(
        &s,
        json!({"route": "GET /limited", "function": "echo", "rate_limit": {"rate": 0.01, "burst": 2}}),
    );
    let gw = plain();
    let pre = |origin: &str, method: &str| {
        gw.request(reqwest::Method::OPTIONS, format!("{}/api/items", s.gateway))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
            .unwrap()
    };
    let r = pre("https://app.example", "POST");
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-methods"], "GET,POST");
    assert_eq!(r.headers()["access-control-max-age"], "600");
    let r = pre("https://evil.example", "POST");
    assert_eq!(r.status(), 204);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = pre("https://app.example", "DELETE");
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = gw
        .get(format!("{}/api/items", s.gateway))
        .header("origin", "https://app.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    // 413 past the route's body limit (declared and streamed).
    let r = gw
        .post(format!("{}/api/items", s.gateway))
        .body(vec![b'x'; 1000])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("Request Entity Too Large"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'y'; 80]), Ok(vec![b'y'; 80])];
    let stream = reqwest::blocking::Body::new(ChunkReader(chunks.into_iter(), Vec::new()));
    let r = gw
        .post(format!("{}/api/items", s.gateway))
        .body(stream)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);

    // 429 past the route's rate limit.
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            gw.get(format!("{}/limited", s.gateway))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses[..2], [200, 200]);
    assert_eq!(statuses[2..], [429, 429]);
}

/// A body of unknown length (chunked), to test the streamed size check.
struct ChunkReader(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>, Vec<u8>);

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.next() {
                Some(Ok(c)) => self.1 = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.1.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

/// A WebSocket handler in the API Gateway style: remembers nothing, answers
/// through the connections endpoint (signing with its own credentials, as an
/// SDK would, under its `execute-api` grant), closes on request.
const WS: &str = r#"
import datetime, hashlib, hmac, json, os, urllib.parse, urllib.request
def _mac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
def post(event, method, data=None):
    ctx = event["requestContext"]
    url = "http://%s/%s/@connections/%s" % (ctx["domainName"], ctx["stage"], ctx["connectionId"])
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    region = os.environ.get("AWS_REGION", "us-east-1")
    scope = "%s/%s/execute-api/aws4_request" % (now[:8], region)
    canonical = "\n".join([method, urllib.parse.quote(u.path), "", "host:" + u.netloc,
                           "x-amz-date:" + now, "", "host;x-amz-date",
                           hashlib.sha256(data or b"").hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", now, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _mac(("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode(), now[:8])
    for part in (region, "execute-api", "aws4_request"):
        key = _mac(key, part)
    auth = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=host;x-amz-date, Signature=%s" % (
        os.environ["AWS_ACCESS_KEY_ID"], scope, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"x-amz-date": now, "authorization": auth})
    with urllib.request.urlopen(req) as r:
        return r.status, r.read()
def handler(event, context):
    ctx = event["requestContext"]
    route = ctx["routeKey"]
    print("ws", route, ctx["eventType"], ctx["connectionId"])
    if route == "$connect":
        qs = event.get("queryStringParameters") or {}
        return {"statusCode": 403 if qs.get("deny") else 200}
    if route == "$disconnect":
        return {"statusCode": 200}
    if route == "$default":
        post(event, "POST", b"default:" + event["body"].encode())
        return {"statusCode": 200}
    body = json.loads(event["body"])
    if route == "echo":
        post(event, "POST", json.dumps({"echo": body["data"], "route": route,
                                         "requestId": ctx["requestId"]}).encode())
    elif route == "info":
        status, info = post(event, "GET")
        post(event, "POST", info)
    elif route == "bye":
        post(event, "DELETE")
    return {"statusCode": 200}
"#;

#[test]
fn websocket_connect_message_push_and_disconnect() {
    use tungstenite::Message;
    let s = Server::start();
    deploy_py(&s, "ws", WS, json!({"permissions": ["execute-api:nimbus"]}));
    for route in ["$connect", "$disconnect", "$default", "echo", "info", "bye"] {
        add_route(
            &s,
            json!({"route": route, "api": "websocket", "function": "ws"}),
        );
    }
    let ws_url = s.gateway.replace("http://", "ws://");
    // $connect refusing the connection.
    match tungstenite::connect(format!("{ws_url}/?deny=1")) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a refused upgrade, got {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tungstenite::connect(format!("{ws_url}/")).unwrap();
    ws.send(Message::Text(
        json!({"action": "echo", "data": "hi"}).to_string().into(),
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&next_text(&mut ws)).unwrap();
    assert_eq!(v["echo"], "hi");
    assert_eq!(v["route"], "echo");
    ws.send(Message::Text("not json".into())).unwrap();
    assert_eq!(next_text(&mut ws), "default:not json");
    ws.send(Message::Text(json!({"action": "info"}).to_string().into()))
        .unwrap();
    let info: Value = serde_json::from_str(&next_text(&mut ws)).unwrap();
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert!(info["connectedAt"].as_str().unwrap().ends_with('Z'));
    // The function closes the connection.
    ws.send(Message::Text(json!({"action": "bye"}).to_string().into()))
        .unwrap();
    assert_eq!(next_text(&mut ws), "closed:1000");
    let logs = s.logs_until("ws", |ev| {
        lines_of(ev)
            .iter()
            .any(|l| l.contains("ws $disconnect DISCONNECT"))
    });
    let lines = lines_of(&logs);
    for want in [
        "ws $connect CONNECT",
        "ws echo MESSAGE",
        "ws $default MESSAGE",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}: {lines:?}");
    }
    // The connections endpoint refuses unsigned requests; signed ones for
    // unknown connections are gone.
    let r = plain()
        .post(format!("{}/@connections/nope", s.gateway))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let (st, kind, _) = crate::gateway_hostile::signed_manage(
        &s,
        "POST",
        "/@connections/nope",
        b"x",
        ADMIN_KEY_ID,
        ADMIN_SECRET,
    );
    assert_eq!((st, kind.as_str()), (410, "GoneException"));

    // Shutdown closes open connections with 1001 (going away).
    let (mut ws, _) = tungstenite::connect(format!("{ws_url}/")).unwrap();
    signal(s.pid(), libc::SIGTERM);
    assert_eq!(next_text(&mut ws), "closed:1001");
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// The next text message, or `closed:<code>`.
fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Close(c) => {
                return format!("closed:{}", c.map_or(0, |c| u16::from(c.code)));
            }
            _ => {}
        }
    }
}

#[test]
fn manifest_routes_are_created_and_replaced_on_redeploy() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("app.py"),
        "import json\ndef handler(event, context):\n    doc = {\"path\": event.get(\"rawPath\") or event.get(\"path\"), \"rest\": \"httpMethod\" in event}\n    return {\"statusCode\": 200, \"body\": json.dumps(doc)}\n",
    )
    .unwrap();
    let manifest = |format: &str| {
        format!(
            "name = \"routed\"\nruntime = \"python3\"\nhandler = \"app.handler\"\n\
             [[routes]]\nroute = \"GET /greet/{{name}}\"\nfunction = \"routed\"\npayload_format = \"{format}\"\n\
             [[routes]]\nroute = \"POST /submit\"\nfunction = \"routed\"\nauth = \"api_key\"\n"
        )
    };
    std::fs::write(d.join("nimbus.toml"), manifest("2.0")).unwrap();
    let deploy = || {
        let out = s.cli(&["deploy", d.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = deploy();
    assert!(
        out.contains("deployed route GET /greet/{name} → routed"),
        "{out}"
    );
    let gw = plain();
    let (st, _, v) = body_json(gw.get(format!("{}/greet/ada", s.gateway)).send().unwrap());
    assert_eq!(
        (st, &v),
        (200, &json!({"path": "/greet/ada", "rest": false}))
    );
    // The api_key route refuses a caller without a key: the setting came through.
    let r = gw.post(format!("{}/submit", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 403);

    // Redeploying replaces the routes (no conflict with themselves), with
    // the new settings, and keeps one route per key.
    std::fs::write(d.join("nimbus.toml"), manifest("1.0")).unwrap();
    deploy();
    let (_, _, v) = body_json(gw.get(format!("{}/greet/ada", s.gateway)).send().unwrap());
    assert_eq!(v, json!({"path": "/greet/ada", "rest": true}));
    let (st, v) = s.get("/v1/routes");
    assert_eq!(st, 200);
    assert_eq!(v["routes"].as_array().unwrap().len(), 2, "{v}");

    // A route dropped from the manifest is removed on the next deploy; one
    // added with the CLI to the same function is not the manifest's to remove.
    let added = s.cli(&["routes", "add", "GET /manual", "routed"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    std::fs::write(
        d.join("nimbus.toml"),
        "name = \"routed\"\nruntime = \"python3\"\nhandler = \"app.handler\"\n\
         [[routes]]\nroute = \"GET /greet/{name}\"\nfunction = \"routed\"\n",
    )
    .unwrap();
    let out = deploy();
    assert!(out.contains("removed route POST /submit"), "{out}");
    let (_, v) = s.get("/v1/routes");
    let mut keys: Vec<&str> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["GET /greet/{name}", "GET /manual"], "{v}");
    let r = gw.post(format!("{}/submit", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 404);

    // A route that clashes with another function's route is refused by name.
    deploy_py(&s, "other", "def handler(e, c):\n    return 1\n", json!({}));
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("nimbus.toml"),
        "[[routes]]\nroute = \"GET /greet/{who}\"\nfunction = \"other\"\n",
    )
    .unwrap();
    let out = s.cli(&["deploy", other.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GET /greet/{name}"), "{err}");
}

/// The Node twin of `ECHO`: what a Node API Gateway handler returns.
const NODE_ECHO: &str = r#"
export const handler = async (event, context) => {
  const path = event.rawPath ?? event.path ?? "";
  const last = path.replace(/\/$/, "").split("/").pop();
  if (last === "binary") {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    return { statusCode: 200, headers: { "content-type": "image/png" },
             body: bytes.toString("base64"), isBase64Encoded: true };
  }
  if (last === "cookies") {
    return { statusCode: 201, cookies: ["a=1; Path=/", "b=2"], headers: { "x-one": "1" }, body: "ok" };
  }
  if (last === "multi") {
    return { statusCode: 200, multiValueHeaders: { "set-cookie": ["a=1", "b=2"] }, body: "m" };
  }
  if (last === "shortcut") return { hello: "world" };
  return { statusCode: 200, headers: { "content-type": "application/json" },
           body: JSON.stringify({ event, requestId: context.awsRequestId }) };
};
"#;

#[test]
fn node_handler_behind_payload_2_and_1() {
    let s = Server::start();
    s.deploy(
        "node-echo",
        "nodejs",
        "index.handler",
        node("index.mjs", NODE_ECHO),
        json!({}),
    );
    add_route(
        &s,
        json!({"route": "ANY /n2/{proxy+}", "function": "node-echo"}),
    );
    add_route(
        &s,
        json!({"route": "ANY /n1/{proxy+}", "function": "node-echo", "payload_format": "1.0"}),
    );
    let gw = plain();
    let bytes: Vec<u8> = (0..=255u8).collect();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };

    // 2.0: cookies as their own list, one request id from gateway to context.
    let (st, h, v) = body_json(
        gw.get(format!("{}/n2/users/7?q=1", s.gateway))
            .header("cookie", "c1=v1; c2=v2")
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    let e = &v["event"];
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "ANY /n2/{proxy+}");
    assert_eq!(e["pathParameters"]["proxy"], "users/7");
    assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
    let rid = h["x-amzn-requestid"].to_str().unwrap();
    assert_eq!(v["requestId"], rid);
    assert_eq!(e["requestContext"]["requestId"], rid);

    // 1.0: the cookie stays a header, methods and resources REST-style.
    let (st, h, v) = body_json(
        gw.delete(format!("{}/n1/files/a.txt", s.gateway))
            .header("cookie", "c1=v1")
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    let e = &v["event"];
    assert_eq!(e["httpMethod"], "DELETE");
    assert_eq!(e["resource"], "/n1/{proxy+}");
    let cookie = e["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.clone());
    assert_eq!(cookie, Some(json!("c1=v1")), "{e}");
    assert_eq!(v["requestId"], h["x-amzn-requestid"].to_str().unwrap());

    // Binary request bodies arrive base64-encoded in both formats.
    for prefix in ["n2", "n1"] {
        let (st, _, v) = body_json(
            gw.post(format!("{}/{prefix}/upload", s.gateway))
                .header("content-type", "application/octet-stream")
                .body(bytes.clone())
                .send()
                .unwrap(),
        );
        assert_eq!(st, 200, "{prefix}: {v}");
        assert_eq!(v["event"]["isBase64Encoded"], true, "{prefix}");
        assert_eq!(b64(&v["event"]["body"]), bytes, "{prefix}");
    }

    // Binary responses (isBase64Encoded) are decoded in both formats.
    for prefix in ["n2", "n1"] {
        let r = gw
            .get(format!("{}/{prefix}/binary", s.gateway))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{prefix}");
        assert_eq!(r.headers()["content-type"], "image/png", "{prefix}");
        assert_eq!(r.bytes().unwrap().to_vec(), bytes, "{prefix}");
    }

    // Response cookies: 2.0 `cookies`, 1.0 multi-value `set-cookie`.
    let r = gw.get(format!("{}/n2/cookies", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-one"], "1");
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    let r = gw.get(format!("{}/n1/multi", s.gateway)).send().unwrap();
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);

    // The 2.0 shortcut: an object without statusCode is a JSON 200; 1.0 has
    // no shortcut, so the same value is a malformed response (502).
    let (st, h, v) = body_json(gw.get(format!("{}/n2/shortcut", s.gateway)).send().unwrap());
    assert_eq!((st, v), (200, json!({"hello": "world"})));
    assert_eq!(h["content-type"], "application/json");
    let r = gw.get(format!("{}/n1/shortcut", s.gateway)).send().unwrap();
    assert_eq!(r.status(), 502);
}

/// Route responses: a message route's function answers by returning a body.
const WS_REPLY: &str = r#"
import base64
def handler(event, context):
    route = event["requestContext"]["routeKey"]
    if route == "$default":
        data = b"\x00\x01" + event["body"].encode()
        return {"statusCode": 200, "body": base64.b64encode(data).decode(), "isBase64Encoded": True}
    if route == "ping":
        return {"statusCode": 200, "body": "pong " + event["requestContext"]["connectionId"]}
    if route == "quiet":
        return {"statusCode": 200}
    return None
"#;

#[test]
fn websocket_route_responses() {
    use tungstenite::Message;
    let s = Server::start();
    deploy_py(&s, "wsr", WS_REPLY, json!({}));
    for route in ["$connect", "$default", "ping", "quiet", "none"] {
        add_route(
            &s,
            json!({"route": route, "api": "websocket", "function": "wsr"}),
        );
    }
    let ws_url = s.gateway.replace("http://", "ws://");
    // $connect's own body is never sent (it only decides the upgrade).
    let (mut ws, _) = tungstenite::connect(format!("{ws_url}/")).unwrap();
    // Results without a body send nothing; the first frame is ping's reply.
    for action in ["quiet", "none", "ping"] {
        ws.send(Message::Text(json!({"action": action}).to_string().into()))
            .unwrap();
    }
    let reply = next_text(&mut ws);
    assert!(reply.starts_with("pong "), "{reply}");
    // A base64 body is decoded and sent as a binary frame.
    ws.send(Message::Text("raw".into())).unwrap();
    let frame = loop {
        match ws.read().unwrap() {
            Message::Binary(b) => break b.to_vec(),
            Message::Text(t) => panic!("unexpected text frame {t}"),
            _ => {}
        }
    };
    assert_eq!(frame, b"\x00\x01raw");
    ws.close(None).unwrap();
}

#[test]
fn routes_start_workflows() {
    let s = Server::start();
    deploy_py(
        &s,
        "greeter",
        "def handler(e, c):\n    return {'statusCode': 201, 'body': 'hello ' + e['queryStringParameters']['name']}\n",
        json!({}),
    );
    let task = |machine_type: &str| {
        json!({"type": machine_type, "definition": {
            "StartAt": "Greet",
            "States": {"Greet": {"Type": "Task", "Resource": "greeter", "End": true}}
        }})
    };
    for (name, t) in [("greet-now", "EXPRESS"), ("greet-later", "STANDARD")] {
        let mut body = task(t);
        body["name"] = json!(name);
        let (st, v) = s.send_json("POST", "/v1/workflows", &body);
        assert_eq!(st, 201, "{v}");
    }
    add_route(&s, json!({"route": "GET /now", "workflow": "greet-now"}));
    add_route(
        &s,
        json!({"route": "GET /later", "workflow": "greet-later"}),
    );

    // EXPRESS: the workflow's output is the answer, mapped like a function's.
    let r = plain()
        .get(format!("{}/now?name=Ada", s.gateway))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.text().unwrap(), "hello Ada");

    // STANDARD: started, answered at once with the execution.
    let (st, _, v) = body_json(
        plain()
            .get(format!("{}/later?name=Bob", s.gateway))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    let arn = v["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    assert!(arn.contains(":execution:greet-later:"), "{arn}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = s.get(&format!("/v1/executions/{arn}"));
        if d["status"] == "SUCCEEDED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A route names one target, and only an existing workflow.
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /both", "workflow": "greet-now", "function": "greeter"}),
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /none", "workflow": "missing"}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("missing"), "{v}");
}

/// A `[url]` table in nimbus.toml gives the function a URL on deploy; a
/// redeploy updates its settings and keeps its address; a misspelt key is
/// refused rather than ignored.
#[test]
fn manifest_function_urls_are_created_and_updated_on_redeploy() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("app.py"),
        "def handler(event, context):\n    return {\"path\": event[\"rawPath\"]}\n",
    )
    .unwrap();
    let write = |url: &str| {
        std::fs::write(
            d.join("nimbus.toml"),
            format!(
                "name = \"urled\"\nruntime = \"python3\"\nhandler = \"app.handler\"\n[url]\n{url}\n"
            ),
        )
        .unwrap()
    };
    let deploy = || s.cli(&["deploy", d.to_str().unwrap()]);
    write("auth = \"none\"");
    let out = deploy();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("deployed URL of urled: "), "{printed}");
    let get = || {
        let out = s.cli(&["url", "get", "urled", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = get();
    let base = first["url"].as_str().unwrap().to_string();
    let (st, _, v) = body_json(plain().get(format!("{base}hi")).send().unwrap());
    assert_eq!((st, v), (200, json!({"path": "/hi"})));
    assert!(first.get("invoke_mode").is_none(), "{first}");

    write("auth = \"none\"\ninvoke_mode = \"response_stream\"");
    let out = deploy();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = get();
    assert_eq!(
        second["url"], first["url"],
        "the address survives a redeploy"
    );
    assert_eq!(second["invoke_mode"], "response_stream");

    write("autth = \"none\"");
    let out = deploy();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("autth"), "{err}");
}
