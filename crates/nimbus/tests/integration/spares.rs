//! Spare instances: a cold start may take a process that was started before the
//! function needed it. Whether it did is told by the process's age, read from
//! /proc by the handler itself: a spare is older than the invocation. Either way
//! the function must see exactly what a freshly started instance sees.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const PY_PROBE: &str = r#"
import os, sys
import helper  # found through PYTHONPATH=lib, relative to the task root

def age():
    with open('/proc/self/stat') as f:
        start = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
        up = float(f.read().split()[0])
    return up - start / os.sysconf('SC_CLK_TCK')

def handler(event, context):
    if event.get('allocate_mb'):
        hog = bytearray(event['allocate_mb'] << 20)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    return {
        'age': age(),
        'greeting': os.environ.get('GREETING'),
        'spare': os.environ.get('NIMBUS_SPARE'),
        'cwd': os.getcwd(),
        'task_root': os.environ.get('LAMBDA_TASK_ROOT'),
        'memory': os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE'),
        'function': context.function_name,
        'memory_limit_in_mb': context.memory_limit_in_mb,
        'helper': helper.VALUE,
        'hash_randomization': sys.flags.hash_randomization,
    }
"#;

const NODE_PROBE: &str = r#"
const fs = require('fs');
function age() {
  const start = Number(fs.readFileSync('/proc/self/stat', 'utf8').split(')').pop().trim().split(' ')[19]);
  const up = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return up - start / 100;
}
exports.handler = async (event, context) => ({
  age: age(),
  greeting: process.env.GREETING ?? null,
  spare: process.env.NIMBUS_SPARE ?? null,
  cwd: process.cwd(),
  task_root: process.env.LAMBDA_TASK_ROOT,
  memory: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
  function: context.functionName,
  memory_limit_in_mb: context.memoryLimitInMB,
});
"#;

fn deploy_probe(s: &Server, name: &str, env: Value, memory: u32) {
    let zip = zip_of(&[
        ("app.py", PY_PROBE.as_bytes(), 0o644),
        ("lib/helper.py", b"VALUE = 'from lib'\n", 0o644),
    ]);
    s.deploy(
        name,
        "python3",
        "app.handler",
        zip,
        json!({"environment": env, "memory_mb": memory}),
    );
}

/// Invokes `name` cold, after changing its configuration (which retires its
/// instances) and giving the spare started by the previous cold start time to
/// come up.
fn cold_again(s: &Server, name: &str, redeploy: impl Fn()) -> Value {
    std::thread::sleep(Duration::from_millis(1500));
    redeploy();
    std::thread::sleep(Duration::from_millis(300));
    let r = s.invoke(name, &json!({}));
    assert!(r.cold(), "a configuration change retires the warm instance");
    r.json()
}

#[test]
fn python_cold_starts_take_a_spare_that_becomes_exactly_the_function() {
    let s = Server::start();
    deploy_probe(
        &s,
        "spy",
        json!({"GREETING": "first", "PYTHONPATH": "lib"}),
        128,
    );
    let first = s.invoke("spy", &json!({}));
    assert!(first.cold());
    let first = first.json();
    assert!(
        first["age"].as_f64().unwrap() < 1.0,
        "the first cold start of a runtime has no spare yet: {first}"
    );
    let got = cold_again(&s, "spy", || {
        deploy_probe(
            &s,
            "spy",
            json!({"GREETING": "second", "PYTHONPATH": "lib"}),
            256,
        )
    });
    assert!(
        got["age"].as_f64().unwrap() >= 1.0,
        "the second cold start takes the spare started after the first: {got}"
    );
    assert_eq!(got["greeting"], "second", "{got}");
    assert_eq!(
        got["spare"],
        Value::Null,
        "no trace of the spare's own environment"
    );
    assert_eq!(got["cwd"], got["task_root"], "runs in its task root");
    assert_eq!(got["memory"], "256");
    assert_eq!(
        got["memory_limit_in_mb"], "256",
        "a string, as in awslambdaric"
    );
    assert_eq!(got["function"], "spy");
    assert_eq!(
        got["helper"], "from lib",
        "PYTHONPATH applies as at startup"
    );
}

#[test]
fn a_spare_takes_on_the_functions_memory_limit() {
    let s = Server::start();
    deploy_probe(&s, "sphog", json!({"PYTHONPATH": "lib"}), 256);
    assert!(s.invoke("sphog", &json!({})).cold());
    std::thread::sleep(Duration::from_millis(1500));
    deploy_probe(&s, "sphog", json!({"PYTHONPATH": "lib", "V": "2"}), 128);
    std::thread::sleep(Duration::from_millis(300));
    let r = s.invoke_raw("sphog", json!({"allocate_mb": 200}).to_string(), false);
    assert_eq!(
        r.function_error().as_deref(),
        Some("Unhandled"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["errorType"], "Runtime.OutOfMemory", "{}", r.json());
}

#[test]
fn functions_setting_startup_variables_always_start_fresh() {
    let s = Server::start();
    let env = json!({"PYTHONPATH": "lib", "PYTHONHASHSEED": "0"});
    deploy_probe(&s, "spseed", env.clone(), 128);
    assert!(s.invoke("spseed", &json!({})).cold());
    let got = cold_again(&s, "spseed", || {
        deploy_probe(
            &s,
            "spseed",
            json!({"PYTHONPATH": "lib", "PYTHONHASHSEED": "0", "V": "2"}),
            128,
        )
    });
    assert!(got["age"].as_f64().unwrap() < 1.0, "{got}");
    assert_eq!(
        got["hash_randomization"], 0,
        "PYTHONHASHSEED took effect: {got}"
    );
}

#[test]
fn node_spares_are_kept_per_memory_size() {
    let s = Server::start();
    let deploy = |memory: u32, greeting: &str| {
        s.deploy(
            "spnode",
            "nodejs",
            "index.handler",
            node("index.js", NODE_PROBE),
            json!({"memory_mb": memory, "environment": {"GREETING": greeting}}),
        );
    };
    deploy(256, "a");
    assert!(s.invoke("spnode", &json!({})).cold());
    let got = cold_again(&s, "spnode", || deploy(256, "b"));
    assert!(got["age"].as_f64().unwrap() >= 1.0, "{got}");
    assert_eq!(got["greeting"], "b");
    assert_eq!(got["spare"], Value::Null);
    assert_eq!(got["cwd"], got["task_root"]);
    assert_eq!(got["memory_limit_in_mb"], "256");
    // Another memory size is another V8 heap flag: no spare of that shape yet.
    let other = cold_again(&s, "spnode", || deploy(512, "c"));
    assert!(other["age"].as_f64().unwrap() < 1.0, "{other}");
    assert_eq!(other["memory"], "512");
}

#[test]
fn no_spares_when_disabled() {
    let s = Server::start_with(&["--spare-instances", "0"]);
    deploy_probe(&s, "spoff", json!({"PYTHONPATH": "lib"}), 128);
    assert!(s.invoke("spoff", &json!({})).cold());
    let got = cold_again(&s, "spoff", || {
        deploy_probe(&s, "spoff", json!({"PYTHONPATH": "lib", "V": "2"}), 128)
    });
    assert!(got["age"].as_f64().unwrap() < 1.0, "{got}");
}

#[test]
fn a_function_module_named_like_a_preloaded_one_wins_in_a_spare() {
    let s = Server::start();
    let probe = "import os, uuid, json\n\
def age():\n    with open('/proc/self/stat') as f:\n        start = int(f.read().rsplit(')', 1)[1].split()[19])\n    with open('/proc/uptime') as f:\n        up = float(f.read().split()[0])\n    return up - start / os.sysconf('SC_CLK_TCK')\n\
def handler(e, c):\n    return {'age': age(), 'mine': getattr(uuid, 'MINE', False), 'json': json.dumps([1])}\n";
    let deploy = |v: &str| {
        let zip = zip_of(&[
            ("app.py", probe.as_bytes(), 0o644),
            ("uuid.py", b"MINE = True\n", 0o644),
        ]);
        s.deploy(
            "shadow",
            "python3",
            "app.handler",
            zip,
            json!({"environment": {"V": v}}),
        );
    };
    deploy("1");
    assert!(s.invoke("shadow", &json!({})).cold());
    let got = cold_again(&s, "shadow", || deploy("2"));
    assert!(
        got["age"].as_f64().unwrap() >= 1.0,
        "a spare was used: {got}"
    );
    assert_eq!(
        got["mine"], true,
        "the package's uuid.py, not the preloaded stdlib uuid"
    );
    assert_eq!(got["json"], "[1]");
}
