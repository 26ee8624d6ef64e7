//! `nimbus logs`: print (and follow) a function's log lines.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Function name.
    name: String,
    /// Keep printing new lines as they arrive.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines newer than this (e.g. 10m, 2h, 1d).
    #[arg(long)]
    since: Option<humantime::Duration>,
    /// Only lines of one invocation.
    #[arg(long)]
    request_id: Option<String>,
    /// Most lines to print at first.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let since_ms = args
        .since
        .map(|d| chrono::Utc::now().timestamp_millis() - Duration::from(d).as_millis() as i64);
    let mut after: Option<i64> = None;
    let mut first = true;
    let tty = std::io::stdout().is_terminal();
    loop {
        let mut q: Vec<(&str, String)> =
            vec![("limit", if first { args.limit } else { 1000 }.to_string())];
        if let Some(s) = since_ms {
            q.push(("since_ms", s.to_string()));
        }
        if let Some(a) = after {
            q.push(("after_id", a.to_string()));
        }
        if let Some(r) = &args.request_id {
            q.push(("request_id", r.clone()));
        }
        let v = client
            .json(
                client
                    .request(Method::GET, &format!("/v1/functions/{}/logs", args.name))
                    .query(&q),
            )
            .await?;
        let events = v["events"].as_array().context("bad logs answer")?;
        for e in events {
            print_line(e, args.client.json, tty)?;
        }
        if let Some(n) = v["next_after_id"].as_i64() {
            after = Some(n);
        }
        first = false;
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn print_line(e: &Value, json: bool, tty: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let ts = e["ts_ms"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default();
    // Runtimes separate the lines of one multi-line record (a traceback) with
    // '\r', as CloudWatch expects; a terminal needs newlines.
    let message = e["message"].as_str().unwrap_or("").replace('\r', "\n");
    let message = if tty {
        escape_controls(&message)
    } else {
        message
    };
    println!("{} {message}", ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    Ok(())
}

/// Function output is untrusted: on a terminal, escape sequences in it (OSC,
/// CSI: retitling the window, rewriting earlier lines, hyperlinks) would act
/// on the operator's terminal. Every control character but newline and tab is
/// shown escaped (`\x1b`, `\u{9b}`) instead.
fn escape_controls(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn terminal_escapes_in_function_output_are_shown_not_acted_on() {
        assert_eq!(
            escape_controls("a\x1b]0;pwned\x07b\x1b[2J\tc\nd\u{9b}31m\u{7f}é"),
            "a\\x1b]0;pwned\\x07b\\x1b[2J\tc\nd\\u{9b}31m\\x7fé"
        );
    }
}
