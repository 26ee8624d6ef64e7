//! The S3-compatible object API over plain HTTP, without an AWS SDK: the
//! server runs with `--dev`, where the `Authorization` header only has to name
//! the `s3` service (it is dropped, everyone is an operator), so raw requests
//! can check what boto3 hides — HTTP/1.1 framing on a keep-alive connection
//! after an error answered before the body was read — and that objects are
//! in `objects.db` and the blob directory across a SIGKILL, their bucket
//! notifications with them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, deploy_py, lines_of, signal};

/// An `Authorization` header whose credential scope names `s3`, which is
/// what routes a request to the object API; `--dev` ignores the signature.
const S3_AUTH: &str = "AWS4-HMAC-SHA256 Credential=dev/20260101/us-east-1/s3/aws4_request, \
                       SignedHeaders=host, Signature=0";

fn s3(s: &Server, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let r = s
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", s.url),
        )
        .header("Authorization", S3_AUTH)
        .body(body.to_vec())
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn objects_survive_sigkill_in_dev_mode() {
    let mut s = Server::start_with(&["--dev"]);
    assert_eq!(s3(&s, "PUT", "/keep", b"").0, 200);
    for i in 0..5 {
        let body = vec![b'a' + i as u8; 1000 * i + 1];
        assert_eq!(s3(&s, "PUT", &format!("/keep/dir/k{i}"), &body).0, 200);
    }
    assert_eq!(s3(&s, "DELETE", "/keep/dir/k0", b"").0, 204);

    signal(s.pid(), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    s.launch();

    for i in 1..5 {
        let (status, body) = s3(&s, "GET", &format!("/keep/dir/k{i}"), b"");
        assert_eq!(status, 200);
        assert_eq!(body, vec![b'a' + i as u8; 1000 * i + 1]);
    }
    let (status, body) = s3(&s, "GET", "/keep/dir/k0", b"");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("NoSuchKey"));
    let (status, listing) = s3(&s, "GET", "/keep?list-type=2", b"");
    assert_eq!(status, 200);
    let listing = String::from_utf8_lossy(&listing);
    assert_eq!(listing.matches("<Key>").count(), 4, "{listing}");
}

/// Logs the S3 event it gets and the request id it runs under.
const ON_UPLOAD: &str = r#"
def handler(event, context):
    r = event["Records"][0]
    print("EVENT", r["eventName"], r["s3"]["object"]["key"],
          r["responseElements"]["x-amz-request-id"], context.aws_request_id)
"#;

/// The ids of the notifications waiting in the outbox of a stopped
/// server's `objects.db` (claimed with no lease: they stay due).
fn outbox_of(s: &Server) -> Vec<String> {
    let store = nimbus_store::FsObjectStore::open(
        &s.data_dir.join("objects.db"),
        &s.data_dir.join("objects"),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let claimed = runtime
        .block_on(nimbus_store::ObjectStore::claim_notifications(
            &store,
            100,
            Duration::ZERO,
        ))
        .unwrap();
    claimed.into_iter().map(|n| n.id).collect()
}

/// The outbox: PutObject's notification commits with the object, so a
/// server killed after acknowledging the write and before delivering the
/// event (its relay held back) delivers it when it is up again, as the same
/// event.
#[test]
fn an_acknowledged_write_is_notified_after_a_sigkill() {
    let mut s = Server::start_with(&["--dev", "--s3-relay-hold", "1h"]);
    deploy_py(&s, "on-upload", ON_UPLOAD, json!({}));
    assert_eq!(s3(&s, "PUT", "/inbox", b"").0, 200);
    let config = "<NotificationConfiguration><CloudFunctionConfiguration>\
        <CloudFunction>on-upload</CloudFunction><Event>s3:ObjectCreated:*</Event>\
        </CloudFunctionConfiguration></NotificationConfiguration>";
    let (status, body) = s3(&s, "PUT", "/inbox?notification", config.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s3(&s, "PUT", "/inbox/photo.jpg", b"jpeg").0, 200);
    let delivered = s.logs_until("on-upload", |_| true);
    assert!(delivered.is_empty(), "held back: {delivered:?}");

    signal(s.pid(), libc::SIGKILL);
    s.stop_after_kill();
    let pending = outbox_of(&s);
    assert_eq!(pending.len(), 1, "stored with the object: {pending:?}");

    s.extra = vec!["--dev".into()];
    s.launch();
    let want = format!("EVENT ObjectCreated:Put photo.jpg {0} {0}", pending[0]);
    let mut lines = Vec::new();
    for _ in 0..6 {
        lines = lines_of(&s.logs_until("on-upload", |events| {
            lines_of(events).iter().any(|l| l.contains("EVENT"))
        }));
        if !lines.is_empty() {
            break;
        }
    }
    assert!(
        lines.iter().any(|l| l.trim() == want),
        "want {want:?} in {lines:?}\n{}",
        s.server_log()
    );
}

/// A raw HTTP/1.1 connection to the API listener.
struct Conn {
    reader: BufReader<TcpStream>,
}

/// A response's status, lower-cased headers and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    fn open(s: &Server) -> Self {
        let addr = s.url.trim_start_matches("http://");
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// Writes raw bytes; false when the server already closed the connection.
    fn send(&mut self, raw: &str) -> bool {
        self.reader.get_mut().write_all(raw.as_bytes()).is_ok()
    }

    /// Reads one response; `None` when the server closed the connection.
    fn answer(&mut self) -> Option<Answer> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut a = Answer {
            status,
            headers,
            body: String::new(),
        };
        let len: usize = a.header("content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        a.body = String::from_utf8_lossy(&body).into_owned();
        Some(a)
    }
}

fn request(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: nimbus\r\nAuthorization: {S3_AUTH}\r\n{extra}\r\n")
}

/// botocore sends `Expect: 100-continue` with every PutObject and, answered
/// with an error instead of `100 Continue`, never sends the body but reuses
/// the connection. hyper used to take the first bytes of the next request
/// for the unread body (`GET` arrived as `ET`, a SignatureDoesNotMatch under
/// SigV4): such answers must close the connection.
#[test]
fn errors_before_the_body_keep_http_framing_in_step() {
    let s = Server::start_with(&["--dev"]);
    let mut conn = Conn::open(&s);
    let put_missing = request(
        "PUT",
        "/no-such-bucket/k",
        "Expect: 100-continue\r\nContent-Length: 5\r\n",
    );
    let get_missing = request("GET", "/no-such-bucket/k", "");
    for i in 0..300 {
        assert!(conn.send(&put_missing));
        let put = conn.answer().expect("an answer to the PUT");
        assert_eq!(put.status, 404, "{i}: {}", put.body);
        assert!(put.body.contains("NoSuchBucket"), "{i}: {}", put.body);
        assert_eq!(put.header("connection"), Some("close"), "{i}");
        // As botocore does: the next request at once, on the same connection
        // unless the server closed it.
        let get = match conn.send(&get_missing).then(|| conn.answer()).flatten() {
            Some(a) => a,
            None => {
                conn = Conn::open(&s);
                assert!(conn.send(&get_missing));
                conn.answer().expect("an answer to the GET")
            }
        };
        assert_eq!(get.status, 404, "{i}: {}", get.body);
        assert!(get.body.contains("NoSuchBucket"), "{i}: {}", get.body);
    }

    // A PUT whose body was read keeps the connection alive.
    let mut conn = Conn::open(&s);
    assert!(conn.send(&request("PUT", "/framing", "Content-Length: 0\r\n")));
    assert_eq!(conn.answer().unwrap().status, 200);
    for i in 0..20 {
        assert!(conn.send(&request(
            "PUT",
            &format!("/framing/k{i}"),
            "Expect: 100-continue\r\nContent-Length: 5\r\n",
        )));
        let cont = conn.answer().expect("100 Continue");
        assert_eq!(cont.status, 100);
        assert!(conn.send("hello"));
        let put = conn.answer().expect("an answer to the PUT");
        assert_eq!(put.status, 200, "{}", put.body);
        assert_eq!(put.header("connection"), None);
    }
}
