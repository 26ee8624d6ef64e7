//! Queues, topics and event source mappings across a SIGKILL: messages that
//! were accepted, subscriptions and mappings are all in `messages.db`
//! (synchronous=FULL), so a killed server comes back with every one of them.
//! The server runs with `--dev` so plain HTTP requests speak SQS and SNS.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, deploy_py, lines_of, signal};

fn sqs(s: &Server, op: &str, body: Value) -> Value {
    let r = s
        .http
        .post(format!("{}/", s.url))
        .header("X-Amz-Target", format!("AmazonSQS.{op}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert_eq!(status, 200, "{op}: {v}");
    v
}

fn sns(s: &Server, params: &[(&str, &str)]) -> String {
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let r = s
        .http
        .post(format!("{}/", s.url))
        .header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(format!("Version=2010-03-31&{body}"))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{text}");
    text
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn receive_all(s: &Server, url: &str, want: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while bodies.len() < want && Instant::now() < deadline {
        let r = sqs(
            s,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
        );
        for m in r["Messages"].as_array().cloned().unwrap_or_default() {
            bodies.push(m["Body"].as_str().unwrap().to_string());
            sqs(
                s,
                "DeleteMessage",
                json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
            );
        }
    }
    bodies
}

#[test]
fn queued_messages_subscriptions_and_mappings_survive_sigkill() {
    let mut s = Server::start_with(&["--dev"]);
    deploy_py(
        &s,
        "msg-consumer",
        "import json\ndef handler(e, c):\n    for r in e['Records']:\n        print('GOT ' + r['body'])\n",
        json!({}),
    );
    let url = sqs(&s, "CreateQueue", json!({"QueueName": "keep"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let fed = sqs(&s, "CreateQueue", json!({"QueueName": "feed"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..3 {
        sqs(
            &s,
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": format!("m{n}")}),
        );
    }
    let topic_xml = sns(&s, &[("Action", "CreateTopic"), ("Name", "news")]);
    assert!(topic_xml.contains("arn:aws:sns:"), "{topic_xml}");
    let topic = "arn:aws:sns:us-east-1:000000000000:news";
    let queue_arn = "arn:aws:sqs:us-east-1:000000000000:keep";
    sns(
        &s,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", topic),
            ("Protocol", "sqs"),
            ("Endpoint", queue_arn),
            ("Attributes.entry.1.key", "RawMessageDelivery"),
            ("Attributes.entry.1.value", "true"),
        ],
    );
    let (status, body) = s.send_json(
        "POST",
        "/2015-03-31/event-source-mappings",
        &json!({"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:feed", "FunctionName": "msg-consumer", "BatchSize": 5}),
    );
    assert_eq!(status, 202, "{body}");

    signal(s.pid(), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    s.launch();

    // The subscription survived: a publish after the restart reaches the queue.
    sns(
        &s,
        &[
            ("Action", "Publish"),
            ("TopicArn", topic),
            ("Message", "after"),
        ],
    );
    let mut got = receive_all(&s, &url, 4);
    got.sort();
    assert_eq!(got, ["after", "m0", "m1", "m2"], "{}", s.server_log());
    // The mapping was restarted at boot.
    sqs(
        &s,
        "SendMessage",
        json!({"QueueUrl": fed, "MessageBody": "to the function"}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = lines_of(&s.logs_until("msg-consumer", |_| true));
        if lines.iter().any(|l| l.contains("GOT to the function")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mapping did not deliver after the restart: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
