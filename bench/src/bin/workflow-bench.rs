//! Workflow benchmark: what a state transition costs, and what a workflow adds
//! on top of calling the same functions yourself.
//!
//! 1. **Interpreter** (in process, no I/O): a 10,000-item Map of Pass states,
//!    history events per second of the pure `nimbus-workflow` interpreter.
//! 2. **Durable Pass transitions** (end to end): the same Map as a STANDARD
//!    execution on a real server (every step persisted in `workflows.db`),
//!    from StartExecution to SUCCEEDED; events per second.
//! 3. **10-step chain of warm functions**: ten Python functions called back to
//!    back by the client (10 native invokes) vs one execution of a 10-Task
//!    workflow, STANDARD (durable, waited for with `?wait=`) and EXPRESS
//!    (StartSyncExecution, in memory); the added latency is the difference of
//!    the medians.
//!
//! Run: `cargo build --release -p nimbus -p nimbus-bench && target/release/workflow-bench`
//! (`--runs N`, `--nimbus PATH`, `--python PATH`).

#![allow(
    clippy::disallowed_methods,
    reason = "the bench starts a nimbus server"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nimbus_workflow::{Config, Execution, ExecutionInfo, OsEntropy, StateMachine, Timestamp};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Repetitions of each latency measurement (medians are reported).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Repetitions of the 10,000-item Map.
    #[arg(long, default_value_t = 5)]
    map_runs: usize,
    /// The nimbus binary.
    #[arg(long, default_value = "target/release/nimbus")]
    nimbus: PathBuf,
    /// Python interpreter for the functions.
    #[arg(long, default_value = "/usr/bin/python3")]
    python: PathBuf,
}

const ITEMS: usize = 10_000;
const STEPS: usize = 10;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn map_definition() -> Value {
    json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 50, "End": true,
        "ItemProcessor": {"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": {"v.$": "$"}, "Next": "B"},
            "B": {"Type": "Pass", "OutputPath": "$.v", "End": true}}}}}})
}

fn map_input() -> Value {
    json!({"items": (0..ITEMS).collect::<Vec<_>>()})
}

/// Events per second of the bare interpreter.
fn interpreter(runs: usize) -> Result<(f64, usize)> {
    let machine = StateMachine::parse(&map_definition())?;
    let mut rates = Vec::new();
    let mut events = 0;
    for i in 0..runs {
        let now = Timestamp::from_unix_millis(0);
        let info = ExecutionInfo {
            id: format!("bench-{i}"),
            name: format!("bench-{i}"),
            state_machine_id: "sm".into(),
            state_machine_name: "sm".into(),
            role_arn: None,
            input: map_input(),
            start_time: now,
        };
        let t = Instant::now();
        let (exec, step) = Execution::start(&machine, info, Config::default(), now, &mut OsEntropy);
        let elapsed = t.elapsed().as_secs_f64();
        if exec.is_running() {
            bail!("the Map did not finish in one call");
        }
        events = step.events.len();
        rates.push(events as f64 / elapsed);
    }
    Ok((median(rates), events))
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args) -> Result<Server> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&args.nimbus)
        .args([
            "up",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .arg("--python")
        .arg(&args.python)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("nimbus.log"))?)
        .spawn()
        .with_context(|| format!("cannot run {}", args.nimbus.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(u) = line.trim().strip_prefix("API:") {
            url = Some(u.trim().to_string());
        }
        if line.starts_with("try:") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Server {
        child,
        url: url.context("nimbus did not announce its API address")?,
        _dir: dir,
    })
}

fn zip_of(source: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("app.py", zip::write::SimpleFileOptions::default())?;
    w.write_all(source.as_bytes())?;
    Ok(w.finish()?.into_inner())
}

fn check(resp: reqwest::blocking::Response) -> Result<Value> {
    let status = resp.status();
    let v: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("HTTP {status}: {v}");
    }
    Ok(v)
}

fn main() -> Result<()> {
    let args = Args::parse();
    eprintln!(
        "interpreter: {ITEMS}-item Map of Pass states, {} runs",
        args.map_runs
    );
    let (rate, events) = interpreter(args.map_runs)?;

    let server = start_server(&args)?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = |p: &str| format!("{}{p}", server.url);

    // Durable Pass transitions.
    check(
        http.post(url("/v1/workflows"))
            .json(&json!({"name": "map", "definition": map_definition()}))
            .send()?,
    )?;
    let mut durable = Vec::new();
    for _ in 0..args.map_runs {
        let t = Instant::now();
        let e = check(
            http.post(url("/v1/workflows/map/executions?wait=120"))
                .json(&json!({"input": map_input()}))
                .send()?,
        )?;
        let elapsed = t.elapsed().as_secs_f64();
        if e["status"] != "SUCCEEDED" {
            bail!("map execution: {e}");
        }
        durable.push(events as f64 / elapsed);
    }

    // Ten functions, each adds 1 to `n`.
    eprintln!("deploying {STEPS} functions");
    let code = zip_of("def handler(e, c):\n    return {'n': e['n'] + 1}\n")?;
    let sha = check(http.post(url("/v1/code")).body(code).send()?)?["sha256"].clone();
    let mut states = serde_json::Map::new();
    for i in 0..STEPS {
        check(
            http.put(url(&format!("/v1/functions/wfb-{i}")))
                .json(&json!({"runtime": "python3", "handler": "app.handler", "code_sha256": sha}))
                .send()?,
        )?;
        let next = if i + 1 < STEPS {
            json!({"Next": format!("S{}", i + 1)})
        } else {
            json!({"End": true})
        };
        let mut s = json!({"Type": "Task", "Resource": format!("arn:aws:lambda:us-east-1:000000000000:function:wfb-{i}")});
        s.as_object_mut()
            .unwrap()
            .extend(next.as_object().unwrap().clone());
        states.insert(format!("S{i}"), s);
    }
    let chain = json!({"StartAt": "S0", "States": states});
    check(
        http.post(url("/v1/workflows"))
            .json(&json!({"name": "chain", "definition": chain}))
            .send()?,
    )?;
    check(
        http.post(url("/v1/workflows"))
            .json(&json!({"name": "chain-express", "type": "EXPRESS", "definition": chain}))
            .send()?,
    )?;

    let direct = || -> Result<f64> {
        let t = Instant::now();
        let mut v = json!({"n": 0});
        for i in 0..STEPS {
            v = check(
                http.post(url(&format!("/v1/functions/wfb-{i}/invoke")))
                    .json(&v)
                    .send()?,
            )?;
        }
        if v["n"] != STEPS {
            bail!("direct chain: {v}");
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let standard = || -> Result<f64> {
        let t = Instant::now();
        let e = check(
            http.post(url("/v1/workflows/chain/executions?wait=60"))
                .json(&json!({"input": {"n": 0}}))
                .send()?,
        )?;
        if e["output"]["n"] != STEPS {
            bail!("standard chain: {e}");
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let express = || -> Result<f64> {
        let t = Instant::now();
        let e = check(
            http.post(url("/"))
                .header("x-amz-target", "AWSStepFunctions.StartSyncExecution")
                .header("content-type", "application/x-amz-json-1.0")
                .body(json!({"stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:chain-express", "input": "{\"n\": 0}"}).to_string())
                .send()?,
        )?;
        let out: Value = serde_json::from_str(e["output"].as_str().unwrap_or("null"))?;
        if out["n"] != STEPS {
            bail!("express chain: {e}");
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    eprintln!("warming up");
    for _ in 0..5 {
        direct()?;
        standard()?;
        express()?;
    }
    eprintln!(
        "measuring the 10-step chain, {} runs (interleaved)",
        args.runs
    );
    let (mut d, mut s, mut x) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        d.push(direct()?);
        s.push(standard()?);
        x.push(express()?);
    }
    let (d, s, x) = (median(d), median(s), median(x));

    println!("## Workflows ({ITEMS}-item Map of 2 Pass states = {events} history events; medians)");
    println!();
    println!("| measurement | value |");
    println!("| --- | ---: |");
    println!(
        "| interpreter only (no I/O) | {:.0} events/s ({:.2} µs each) |",
        rate,
        1e6 / rate
    );
    println!(
        "| durable STANDARD execution, end to end | {:.0} events/s ({:.2} µs each) |",
        median(durable.clone()),
        1e6 / median(durable)
    );
    println!("| 10 warm functions back to back (10 invokes) | {d:.2} ms |");
    println!(
        "| 10-step workflow, STANDARD (durable) | {s:.2} ms (+{:.2} ms, +{:.2} ms/step) |",
        s - d,
        (s - d) / STEPS as f64
    );
    println!(
        "| 10-step workflow, EXPRESS (StartSyncExecution) | {x:.2} ms (+{:.2} ms, +{:.2} ms/step) |",
        x - d,
        (x - d) / STEPS as f64
    );
    Ok(())
}
