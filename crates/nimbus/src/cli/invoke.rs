//! `nimbus invoke`: run a function once and print its result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct InvokeArgs {
    /// Function name, optionally with a version or alias: NAME[:QUALIFIER].
    name: String,
    /// Event JSON, or @FILE to read it from a file (@- for stdin).
    #[arg(long, short = 'd', default_value = "{}")]
    data: String,
    /// Also print the invocation's log (START … REPORT) to stderr.
    #[arg(long)]
    logs: bool,
    /// Queue the invocation (durably) and return at once with its request id.
    #[arg(long = "async", conflicts_with = "logs")]
    asynchronous: bool,
    /// Print a streaming function's response (awslambda.streamifyResponse) as
    /// it is written rather than once it is complete.
    #[arg(long, conflicts_with_all = ["asynchronous", "logs"])]
    stream: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// The content type of a stream that starts with an HTTP prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

pub async fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let payload = match args.data.strip_prefix('@') {
        Some("-") => {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
            s
        }
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}"))?,
        None => args.data.into_bytes(),
    };
    let (name, qualifier) = super::versions::split_qualifier(&args.name)?;
    let mut query = Vec::new();
    if args.logs || args.client.json {
        query.push(("log", "tail"));
    }
    if let Some(q) = qualifier {
        query.push(("qualifier", q));
    }
    if args.stream {
        anyhow::ensure!(
            !args.client.json,
            "--stream prints the response as it comes; it does not go with --json"
        );
        query.push(("stream", "true"));
    }
    if args.asynchronous {
        query.push(("type", "event"));
        let v = client
            .json(
                client
                    .request(Method::POST, &format!("/v1/functions/{name}/invoke"))
                    .query(&query)
                    .body(payload),
            )
            .await?;
        if args.client.json {
            println!("{v}");
        } else {
            println!("queued {}", v["request_id"].as_str().unwrap_or(""));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/functions/{name}/invoke"))
                .query(&query)
                .body(payload),
        )
        .await?;
    // A streamed answer has no duration yet: its body is the stream.
    if args.stream && !resp.headers().contains_key("x-nimbus-duration-ms") {
        return print_stream(resp, name).await;
    }
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let function_error = header("x-nimbus-function-error");
    let error_type = header("x-nimbus-error-type");
    let log = header("x-nimbus-log-result")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let meta = json!({
        "request_id": header("x-nimbus-request-id"),
        "cold_start": header("x-nimbus-cold-start").as_deref() == Some("true"),
        "duration_ms": header("x-nimbus-duration-ms").and_then(|d| d.parse::<f64>().ok()),
        "init_duration_ms": header("x-nimbus-init-duration-ms").and_then(|d| d.parse::<f64>().ok()),
        "billed_duration_ms": header("x-nimbus-billed-duration-ms").and_then(|d| d.parse::<u64>().ok()),
    });
    let body = resp.bytes().await?;
    if args.client.json {
        let payload = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        let mut out = json!({"payload": payload, "function_error": function_error, "error_type": error_type, "log": log});
        out.as_object_mut()
            .unwrap()
            .extend(meta.as_object().unwrap().clone());
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if let Some(log) = &log {
            eprint!("{log}");
        }
        let mut stdout = std::io::stdout();
        stdout.write_all(&body)?;
        if !body.ends_with(b"\n") {
            stdout.write_all(b"\n")?;
        }
    }
    if let Some(kind) = function_error {
        if !args.client.json {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
                .unwrap_or_default();
            eprintln!(
                "error: function error ({kind}): {}: {msg}",
                error_type.unwrap_or_default()
            );
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a streamed answer as it comes. An HTTP-shaped stream
/// (HttpResponseStream.from) starts with its prelude, shown on stderr as the
/// status and headers it stands for. Exits 2 when the stream was cut off.
async fn print_stream(mut resp: reqwest::Response, name: &str) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    let mut ends_in_newline = true;
    let mut prelude = (resp.headers().get("content-type").map(|v| v.as_bytes())
        == Some(HTTP_INTEGRATION.as_bytes()))
    .then(Vec::new);
    loop {
        let data = match resp.chunk().await {
            Ok(Some(data)) => data,
            Ok(None) => {
                // No delimiter came: what there is was the body after all.
                if let Some(head) = prelude.take().filter(|h| !h.is_empty()) {
                    stdout.write_all(&head)?;
                    ends_in_newline = head.ends_with(b"\n");
                }
                if !ends_in_newline {
                    stdout.write_all(b"\n")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(_) => {
                if !ends_in_newline {
                    stdout.write_all(b"\n")?;
                }
                eprintln!(
                    "error: the function failed after its response began streaming (see `nimbus logs {name}`)"
                );
                return Ok(ExitCode::from(2));
            }
        };
        let rest;
        let data: &[u8] = match prelude.as_mut() {
            None => &data,
            Some(head) => {
                head.extend_from_slice(&data);
                let Some(at) = head.windows(8).position(|w| w == [0u8; 8]) else {
                    continue;
                };
                rest = head.split_off(at + 8);
                eprintln!("{}", String::from_utf8_lossy(&head[..at]));
                prelude = None;
                &rest
            }
        };
        if !data.is_empty() {
            stdout.write_all(data)?;
            stdout.flush()?;
            ends_in_newline = data.ends_with(b"\n");
        }
    }
}
