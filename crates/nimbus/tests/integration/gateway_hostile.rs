//! The gateway against hostile functions and clients, black-box: framing
//! headers a function sets, dot segments and encoded slashes between sibling
//! routes, configurations AWS refuses, and the WebSocket bounds (frame size,
//! per-connection order, connection caps, idle and lifetime timeouts, rate
//! limits, the connections endpoint's authentication). Raw sockets where a
//! client library would normalise or frame for us.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// A function that tries to take over the framing of its own response, or to
/// smuggle a header line, depending on the last path segment.
const FRAMER: &str = r#"
import json
def handler(event, context):
    path = event.get("rawPath") or event.get("path") or ""
    last = path.rstrip("/").split("/")[-1]
    if last == "crlf":
        return {"statusCode": 200, "headers": {"x-a": "1\r\nx-injected: 1"}, "body": "no"}
    smuggled = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\nINJECTED RESPONSE"
    return {"statusCode": 200,
            "headers": {"Content-Length": "0", "Transfer-Encoding": "chunked",
                        "Connection": "close", "Upgrade": "h2c", "Trailer": "x-t",
                        "Keep-Alive": "timeout=1", "x-real": last},
            "body": "real:" + last + ":" + smuggled}
"#;

/// Echoes the path it was given and the route that took it.
const WHERE: &str = r#"
import json
def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"rawPath": event["rawPath"],
            "routeKey": event["routeKey"], "params": event.get("pathParameters")})}
"#;

fn add_route(s: &Server, spec: Value) {
    let (st, v) = s.send_json("POST", "/v1/routes", &spec);
    assert_eq!(st, 201, "{v}");
}

fn gateway_addr(s: &Server) -> String {
    s.gateway.trim_start_matches("http://").to_owned()
}

/// One HTTP/1.1 response read off a raw stream.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads exactly one response (framed by its own `Content-Length` or chunked
/// encoding, as a client or proxy reusing the connection would) from `buf`
/// plus `stream`; what follows stays in `buf`.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    let fill = |stream: &mut TcpStream, buf: &mut Vec<u8>| {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).expect("read from the gateway");
        assert!(
            n > 0,
            "connection closed early; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        fill(stream, buf);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut r = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if r.header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(stream, buf);
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                fill(stream, buf);
            }
            r.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = r.header("content-length").unwrap_or("0").parse().unwrap();
        while buf.len() < len {
            fill(stream, buf);
        }
        r.body = buf.drain(..len).collect();
    }
    r
}

/// `GET path` on a connection of its own, the path sent byte for byte.
fn raw_get(s: &Server, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut stream = TcpStream::connect(gateway_addr(s)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", gateway_addr(s));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    read_response(&mut stream, &mut Vec::new())
}

#[test]
fn function_framing_headers_never_reach_the_wire() {
    let s = Server::start();
    deploy_py(&s, "framer", FRAMER, json!({}));
    add_route(
        &s,
        json!({"route": "GET /v2/{proxy+}", "function": "framer"}),
    );
    add_route(
        &s,
        json!({"route": "GET /v1/{proxy+}", "function": "framer", "payload_format": "1.0"}),
    );
    let (st, url) = s.send_json("PUT", "/v1/functions/framer/url", &json!({}));
    assert!(st == 200 || st == 201, "{url}");
    let url_path = url["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.gateway)
        .to_owned();

    // Three pipelined requests on one connection, each answered by a
    // function that sets Content-Length: 0, Transfer-Encoding: chunked and
    // Connection: close, with a whole HTTP response inside its body.
    let mut stream = TcpStream::connect(gateway_addr(&s)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let host = gateway_addr(&s);
    let paths = [
        "/v2/first".to_owned(),
        "/v1/second".to_owned(),
        format!("{url_path}third"),
    ];
    let mut reqs = String::new();
    for p in &paths {
        reqs.push_str(&format!("GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    }
    stream.write_all(reqs.as_bytes()).unwrap();
    let mut buf = Vec::new();
    for name in ["first", "second", "third"] {
        let r = read_response(&mut stream, &mut buf);
        assert_eq!(r.status, 200, "{name}: {r:?}");
        assert_eq!(r.header("x-real"), Some(name), "{name}: {r:?}");
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(
            body.starts_with(&format!("real:{name}:HTTP/1.1 200 OK"))
                && body.ends_with("INJECTED RESPONSE"),
            "{name}: the whole body, framed by the gateway: {body:?}"
        );
        for gone in ["connection", "upgrade", "trailer", "keep-alive"] {
            assert!(r.header(gone).is_none(), "{name}: {gone} kept: {r:?}");
        }
        assert_eq!(r.header("x-amzn-remapped-content-length"), Some("0"));
        assert_eq!(r.header("x-amzn-remapped-connection"), Some("close"));
    }
    // Nothing was left over: the connection is still open and in step.
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));

    // A header value with CR/LF is a malformed response, not a header line.
    let r = raw_get(&s, "/v2/crlf", &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.header("x-injected").is_none() && r.header("x-a").is_none());
    let r = raw_get(&s, "/v1/crlf", &[]);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.header("x-injected").is_none());
}

#[test]
fn dot_segments_and_encoded_slashes_never_reach_a_sibling_route() {
    let s = Server::start();
    deploy_py(&s, "where", WHERE, json!({}));
    add_route(
        &s,
        json!({"route": "GET /public/{proxy+}", "function": "where"}),
    );
    add_route(
        &s,
        json!({"route": "GET /admin/{proxy+}", "function": "where", "auth": "api_key"}),
    );
    let (st, key) = s.send_json(
        "POST",
        "/v1/gateway/keys",
        &json!({"kind": "api", "global": true}),
    );
    assert_eq!(st, 201, "{key}");
    let key = key["value"].as_str().unwrap().to_owned();

    // The key is what opens /admin, however the path is spelled.
    assert_eq!(raw_get(&s, "/admin/users", &[]).status, 403);
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2e/admin/users",
        "/public/.%2e/admin/users",
        "/public/x/../../admin/users",
        "//admin/users",
        "/public/..//admin/users",
    ] {
        let r = raw_get(&s, path, &[]);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        let r = raw_get(&s, path, &[("x-api-key", &key)]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        // The function sees the path that was matched, never the dots.
        assert_eq!(v["rawPath"], "/admin/users", "{path}");
        assert_eq!(v["routeKey"], "GET /admin/{proxy+}", "{path}");
        assert_eq!(v["params"]["proxy"], "users", "{path}");
    }
    // `.` names the same place: the public route, with the resolved path.
    let r = raw_get(&s, "/public/./admin", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["rawPath"], "/public/admin");
    assert_eq!(v["params"]["proxy"], "admin");
    // Encoded slashes and backslashes are refused outright.
    for path in [
        "/%2Fadmin/users",
        "/public/..%2Fadmin/users",
        "/public/%2e%2e%2fadmin/users",
        "/public/%5C..%5Cadmin",
    ] {
        for h in [&[][..], &[("x-api-key", key.as_str())][..]] {
            let r = raw_get(&s, path, h);
            assert_eq!(r.status, 400, "{path}: {r:?}");
            assert_eq!(
                serde_json::from_slice::<Value>(&r.body).unwrap(),
                json!({"message": "Bad Request"})
            );
        }
    }
    // Case is significant, as on API Gateway: /ADMIN is no route at all.
    assert_eq!(raw_get(&s, "/ADMIN/users", &[]).status, 404);
}

#[test]
fn configurations_aws_refuses_are_refused() {
    let s = Server::start();
    deploy_py(&s, "where", WHERE, json!({}));
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /c", "function": "where",
                "cors": {"allow_origins": ["*"], "allow_credentials": true}}),
    );
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("allow_credentials") && msg.contains("allow_origins"),
        "{msg}"
    );
    let (st, v) = s.send_json(
        "PUT",
        "/v1/functions/where/url",
        &json!({"cors": {"allow_origins": ["https://a.example", "*"], "allow_credentials": true}}),
    );
    assert_eq!(st, 400, "{v}");
    // Listed origins with credentials are fine.
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /c", "function": "where",
                "cors": {"allow_origins": ["https://a.example"], "allow_credentials": true}}),
    );
    assert_eq!(st, 201, "{v}");

    // body_limit: at most API Gateway's 10 MB.
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /big", "function": "where", "body_limit": 10 * 1024 * 1024 + 1}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("at most"));
    let (st, v) = s.send_json(
        "PUT",
        "/v1/functions/where/url",
        &json!({"body_limit": 1u64 << 40}),
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /big", "function": "where", "body_limit": 10 * 1024 * 1024}),
    );
    assert_eq!(st, 201, "{v}");

    // Route keys and route counts are bounded (API Gateway: 300 routes per API).
    let long = format!("GET /{}", "a/".repeat(2048));
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": long, "function": "where"}),
    );
    assert_eq!(st, 400, "{v}");
    let started = Instant::now();
    for i in 2..300 {
        add_route(
            &s,
            json!({"route": format!("GET /r/{i}"), "function": "where"}),
        );
    }
    let (st, v) = s.send_json(
        "POST",
        "/v1/routes",
        &json!({"route": "GET /one-too-many", "function": "where"}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("300 routes"),
        "{v}"
    );
    // WebSocket routes are another API with a quota of their own.
    add_route(
        &s,
        json!({"route": "$default", "api": "websocket", "function": "where"}),
    );
    eprintln!("300 routes declared in {:?}", started.elapsed());
}

// ------------------------------------------------------------ WebSockets --

/// Replies to every message through a route response; `seq` messages take
/// longer the earlier they were sent, so handling them concurrently would
/// answer them out of order.
const WS_ORDER: &str = r#"
import json, os, time
def handler(event, context):
    route = event["requestContext"]["routeKey"]
    if route in ("$connect", "$disconnect"):
        return {"statusCode": 200}
    body = json.loads(event["body"])
    if route == "seq":
        time.sleep(max(0, 0.3 - 0.05 * body["n"]))
    if route == "whoami":
        return {"statusCode": 200, "body": json.dumps({
            "connectionId": event["requestContext"]["connectionId"],
            "key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"]})}
    return {"statusCode": 200, "body": "%s:%s" % (route, body.get("n"))}
"#;

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// The next text message, or `closed:<code>`.
fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => return t.to_string(),
            Ok(tungstenite::Message::Close(c)) => {
                return format!("closed:{}", c.map_or(0, |c| u16::from(c.code)));
            }
            Ok(_) => {}
            Err(e) => return format!("error:{e}"),
        }
    }
}

fn ws_server(extra: &[&str], routes: &[(&str, Value)]) -> Server {
    let s = Server::start_with(extra);
    deploy_py(&s, "wso", WS_ORDER, json!({}));
    for (route, more) in routes {
        let mut spec = json!({"route": route, "api": "websocket", "function": "wso"});
        spec.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        add_route(&s, spec);
    }
    s
}

fn connect(s: &Server) -> Result<Ws, u16> {
    let url = s.gateway.replace("http://", "ws://") + "/";
    match tungstenite::connect(url) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[test]
fn websocket_frames_over_32k_are_refused_and_messages_handled_in_order() {
    use tungstenite::Message;
    let s = ws_server(&[], &[("$default", json!({})), ("seq", json!({}))]);
    let mut ws = connect(&s).unwrap();
    // Warm, so the burst below is not simply queued behind one cold start.
    ws.send(Message::Text(json!({"n": 0}).to_string().into()))
        .unwrap();
    assert_eq!(next_text(&mut ws), "$default:0");
    // Sent at once; answered in the order sent although the first takes longest.
    for n in 0..5 {
        ws.send(Message::Text(
            json!({"action": "seq", "n": n}).to_string().into(),
        ))
        .unwrap();
    }
    let got: Vec<String> = (0..5).map(|_| next_text(&mut ws)).collect();
    assert_eq!(got, (0..5).map(|n| format!("seq:{n}")).collect::<Vec<_>>());

    // A 24 KB frame is fine; a 64 KB one closes the connection with 1009
    // (message too big) as soon as its header is read.
    let pad = "x".repeat(24 * 1024);
    ws.send(Message::Text(
        json!({"n": 7, "pad": pad}).to_string().into(),
    ))
    .unwrap();
    assert_eq!(next_text(&mut ws), "$default:7");
    let pad = "x".repeat(64 * 1024);
    let started = Instant::now();
    ws.send(Message::Text(
        json!({"n": 8, "pad": pad}).to_string().into(),
    ))
    .unwrap();
    assert_eq!(next_text(&mut ws), "closed:1009");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn websocket_connections_are_capped_timed_out_and_rate_limited() {
    use tungstenite::Message;
    let s = ws_server(
        &[
            "--ws-max-connections-per-ip",
            "2",
            "--ws-idle-timeout",
            "1500ms",
            "--ws-max-lifetime",
            "3500ms",
        ],
        &[
            (
                "$connect",
                json!({"rate_limit": {"rate": 0.01, "burst": 3}}),
            ),
            ("$default", json!({})),
            ("limited", json!({"rate_limit": {"rate": 0.01, "burst": 1}})),
        ],
    );
    // Two connections from this address; the third is refused.
    let mut a = connect(&s).unwrap();
    let mut b = connect(&s).unwrap();
    assert_eq!(connect(&s).err(), Some(429));
    // A route's rate limit applies to its messages.
    for _ in 0..2 {
        a.send(Message::Text(
            json!({"action": "limited", "n": 1}).to_string().into(),
        ))
        .unwrap();
    }
    assert_eq!(next_text(&mut a), "limited:1");
    let throttled: Value = serde_json::from_str(&next_text(&mut a)).unwrap();
    assert_eq!(throttled["message"], "Too Many Requests");

    // `b` stays quiet and is closed after the idle timeout; `a` keeps
    // talking and is closed at the end of its lifetime.
    let started = Instant::now();
    let quiet = std::thread::spawn(move || (next_text(&mut b), started.elapsed()));
    let mut n = 0;
    let closed = loop {
        n += 1;
        if a.send(Message::Text(json!({"n": n}).to_string().into()))
            .is_err()
        {
            break next_text(&mut a);
        }
        let t = next_text(&mut a);
        if t.starts_with("closed") || t.starts_with("error") {
            break t;
        }
        assert_eq!(t, format!("$default:{n}"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(8), "never closed");
    };
    assert_eq!(closed, "closed:1001");
    assert!(n > 4, "closed by the idle timeout instead: {n} messages");
    let (b_closed, idle) = quiet.join().unwrap();
    assert_eq!(b_closed, "closed:1001");
    assert!(idle < Duration::from_millis(2500), "{idle:?}");

    // Closed connections gave their places back (once their sessions
    // ended), so the next upgrade is admitted: the third of $connect's burst.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _c = loop {
        match connect(&s) {
            Ok(ws) => break ws,
            Err(429) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(st) => panic!("upgrade refused with {st}"),
        }
    };
    // The burst is spent: $connect's rate limit refuses before the function
    // runs (the plain throttling body, not a connection cap's).
    let (st, body) = plain_get(&s);
    assert_eq!(
        (st, body.as_str()),
        (429, r#"{"message":"Too Many Requests"}"#)
    );
}

/// The body of an upgrade refusal, for telling the two 429s apart.
fn plain_get(s: &Server) -> (u16, String) {
    let r = raw_get(
        s,
        "/",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[test]
fn websocket_total_connections_are_capped() {
    let s = ws_server(&["--ws-max-connections", "2"], &[("$default", json!({}))]);
    let _a = connect(&s).unwrap();
    let _b = connect(&s).unwrap();
    let (st, body) = plain_get(&s);
    assert_eq!(st, 429);
    assert!(body.contains("maximum of connections"), "{body}");
}

/// Signs a connections-endpoint request with SigV4 for `execute-api`.
pub fn signed_manage(
    s: &Server,
    method: &str,
    path: &str,
    body: &[u8],
    key_id: &str,
    secret: &str,
) -> (u16, String, String) {
    use axum::http::{HeaderMap, HeaderValue};
    use nimbus_aws::sigv4;
    use sha2::Digest as _;
    let host = gateway_addr(s);
    let now = chrono::Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_str(&host).unwrap());
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
    let hash = hex::encode(sha2::Sha256::digest(body));
    let auth = sigv4::sign(
        &sigv4::SignedRequest {
            method,
            raw_path: path,
            raw_query: None,
            headers: &headers,
            body_sha256_hex: Some(&hash),
        },
        &sigv4::SigningParams {
            access_key_id: key_id,
            secret,
            region: "us-east-1",
            service: sigv4::Service::Other("execute-api"),
            time: now,
        },
        &["host", "x-amz-date"],
    )
    .unwrap();
    let r = reqwest::blocking::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", s.gateway),
        )
        .header("x-amz-date", amz_date)
        .header("authorization", auth)
        .body(body.to_vec())
        .send()
        .unwrap();
    let st = r.status().as_u16();
    let kind = r
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (st, kind, r.text().unwrap())
}

#[test]
fn connections_endpoint_requires_a_signed_request_with_the_grant() {
    use tungstenite::Message;
    let s = ws_server(&[], &[("$default", json!({})), ("whoami", json!({}))]);
    let mut ws = connect(&s).unwrap();
    ws.send(Message::Text(
        json!({"action": "whoami"}).to_string().into(),
    ))
    .unwrap();
    let me: Value = serde_json::from_str(&next_text(&mut ws)).unwrap();
    let id = me["connectionId"].as_str().unwrap().to_owned();
    let path = format!("/@connections/{id}");

    let client = reqwest::blocking::Client::new();
    for method in ["POST", "GET", "DELETE"] {
        // Unsigned: refused, whether or not the connection exists.
        for p in [path.as_str(), "/@connections/nope"] {
            let r = client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{p}", s.gateway),
                )
                .body("x")
                .send()
                .unwrap();
            assert_eq!(r.status(), 403, "{method} {p}");
            assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");
            assert_eq!(
                r.json::<Value>().unwrap(),
                json!({"message": "Missing Authentication Token"})
            );
        }
        // A bad signature.
        let (st, kind, _) = signed_manage(&s, method, &path, b"x", ADMIN_KEY_ID, "wrong");
        assert_eq!((st, kind.as_str()), (403, "ForbiddenException"), "{method}");
        // The function's own credentials, without the grant.
        let (st, kind, body) = signed_manage(
            &s,
            method,
            &path,
            b"x",
            me["key"].as_str().unwrap(),
            me["secret"].as_str().unwrap(),
        );
        assert_eq!(
            (st, kind.as_str()),
            (403, "ForbiddenException"),
            "{method}: {body}"
        );
        assert!(body.contains("execute-api:ManageConnections"), "{body}");
        // Signed by the operator, for a connection that is not there.
        let (st, kind, _) = signed_manage(
            &s,
            method,
            "/@connections/nope",
            b"",
            ADMIN_KEY_ID,
            ADMIN_SECRET,
        );
        assert_eq!((st, kind.as_str()), (410, "GoneException"), "{method}");
    }
    // Signed by the operator: pushed to the client.
    let (st, _, body) = signed_manage(
        &s,
        "POST",
        &path,
        b"from the operator",
        ADMIN_KEY_ID,
        ADMIN_SECRET,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(next_text(&mut ws), "from the operator");
    // Granted, the function's credentials work too (with the stage prefix
    // boto3 puts in the endpoint).
    let (st, v) = s.send_json(
        "PATCH",
        "/v1/functions/wso",
        &json!({"permissions": ["execute-api:nimbus"]}),
    );
    assert_eq!(st, 200, "{v}");
    let staged = format!("/%24default/@connections/{id}");
    let (st, _, body) = signed_manage(
        &s,
        "POST",
        &staged,
        b"from the function",
        me["key"].as_str().unwrap(),
        me["secret"].as_str().unwrap(),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(next_text(&mut ws), "from the function");
    let (st, _, body) = signed_manage(
        &s,
        "DELETE",
        &path,
        b"",
        me["key"].as_str().unwrap(),
        me["secret"].as_str().unwrap(),
    );
    assert_eq!(st, 204, "{body}");
    assert_eq!(next_text(&mut ws), "closed:1000");
}
