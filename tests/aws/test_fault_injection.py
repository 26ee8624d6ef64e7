"""Nothing acknowledged is lost: mixed load, SIGKILLs at random moments, restarts,
and a ledger kept outside the server.

Workers drive six kinds of work against a real `nimbus up` (async invocations,
SQS sends consumed by an event source mapping, SNS publishes to a Lambda
subscription, S3 puts with a bucket notification, workflow starts whose Task
invokes a function, and schedule fires driven by the test clock). Every one
carries a fresh token; when Nimbus acknowledges it, the token goes in the
ledger. One function, `rec`, receives all of them and reports each delivery
(token and the delivery's own identity: request id, message id, execution id)
to a sink served by this test, outside the server, so the record survives the
kills. Meanwhile the server is SIGKILLed at random moments and restarted on
the same data directory.

At the end every acknowledged token must have been delivered (and every
acknowledged object must read back whole), and nothing may have run more often
than the documented semantics allow: deliveries are at least once, so a token
may arrive more than once, but only as redeliveries of the *same* event,
message or execution (one identity per token); a schedule fire is exactly
once, so one fire time never has two request ids.

`NIMBUS_FAULT_KILLS` sets the number of kills (CI: 5); `scripts/fault-injection`
runs the long version and prints the figures.
"""

import json
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config

import lambda_helpers as h
from conftest import NimbusServer
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, native

KILLS = int(os.environ.get("NIMBUS_FAULT_KILLS", "5"))
WORKERS = 4
# How long the server runs between two kills: uniform in this range (seconds).
UPTIME_S = (0.5, 3.0)
DRAIN_TIMEOUT_S = float(os.environ.get("NIMBUS_FAULT_DRAIN_S", "90"))

REC_SOURCE = '''\
import json, os, time, urllib.request

SINK = os.environ["SINK_URL"]

def report(kind, token, identity):
    body = json.dumps({"kind": kind, "token": token, "identity": identity}).encode()
    for attempt in range(20):  # the sink is the test's, not the server's: never lose a report to it
        try:
            req = urllib.request.Request(SINK, data=body, method="POST", headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
            return
        except OSError:
            time.sleep(0.05 * (attempt + 1))
    raise RuntimeError("the test's sink did not answer")

def handler(event, context):
    rid = context.aws_request_id
    if isinstance(event, dict) and "Records" in event:
        for r in event["Records"]:
            if r.get("eventSource") == "aws:sqs":
                report("sqs", json.loads(r["body"])["token"], r["messageId"])
            elif r.get("EventSource") == "aws:sns":
                report("sns", json.loads(r["Sns"]["Message"])["token"], r["Sns"]["MessageId"])
            elif r.get("eventSource") == "aws:s3":
                report("s3", r["s3"]["object"]["key"], rid)
        return "ok"
    if event.get("source") == "aws.events":
        report("schedule", "fire:" + event["time"], rid)
    elif "exec" in event:
        report("workflow", event["token"], event["exec"])
    else:
        report("async", event["token"], rid)
    return "ok"
'''


class Sink:
    """The ledger's other half: deliveries as `rec` reports them, kept here."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries = defaultdict(list)  # token -> [(kind, identity)]
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                d = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sink.lock:
                    sink.deliveries[d["token"]].append((d["kind"], d["identity"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the default backlog of 5 resets bursts of reports
            daemon_threads = True

        self.http = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return {t: list(d) for t, d in self.deliveries.items()}


class Cluster:
    """The server under test: killed and restarted on the same data directory."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.clock_s = 0.0  # acknowledged test-clock advances, carried over restarts
        self.generation = 0
        self.lock = threading.Lock()
        self.up = threading.Event()
        self.server = None
        self.stderr_logs = []

    def start(self):
        log_dir = self.tmp / f"run{self.generation}"
        log_dir.mkdir()
        self.stderr_logs.append(log_dir / "server.stderr.log")
        srv = NimbusServer(
            self.tmp / "data",
            log_dir,
            extra_args=["--test-clock", "--test-clock-offset", f"{int(self.clock_s)}s", "--async-retry-delay", "1s"],
        ).start()
        with self.lock:
            self.server = srv
            self.generation += 1
        self.up.set()
        return srv

    def kill(self):
        self.up.clear()
        with self.lock:
            srv = self.server
        srv.proc.kill()
        srv.proc.wait()

    def current(self):
        self.up.wait(60)
        with self.lock:
            return self.server, self.generation


def client(service, srv, **s3):
    return boto3.client(
        service,
        endpoint_url=srv.url,
        region_name=h.REGION,
        aws_access_key_id=ADMIN_ACCESS_KEY_ID,
        aws_secret_access_key=ADMIN_SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=20, **s3),
    )


def deploy(srv, sink_url):
    """Creates `rec` and the event sources that feed it; returns their names."""
    lam, sqs, sns = client("lambda", srv), client("sqs", srv), client("sns", srv)
    s3 = client("s3", srv, s3={"addressing_style": "path"})
    sfn = client("stepfunctions", srv)
    lam.create_function(
        FunctionName="rec",
        Runtime=h.RUNTIME,
        Role=h.ROLE_ARN,
        Handler="app.handler",
        Code={"ZipFile": h.make_zip({"app.py": REC_SOURCE})},
        Environment={"Variables": {"SINK_URL": sink_url}},
        Timeout=30,
    )
    rec_arn = h.function_arn("rec")
    queue = sqs.create_queue(QueueName="chaos")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="rec", BatchSize=10)
    topic = sns.create_topic(Name="chaos")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=rec_arn)
    s3.create_bucket(Bucket="chaos")
    s3.put_bucket_notification_configuration(
        Bucket="chaos",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": rec_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    definition = {
        "StartAt": "Rec",
        "States": {
            "Rec": {
                "Type": "Task",
                "Resource": rec_arn,
                "Parameters": {"token.$": "$.token", "exec.$": "$$.Execution.Id"},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(name="chaos", definition=json.dumps(definition), roleArn=h.ROLE_ARN)[
        "stateMachineArn"
    ]
    status, body = native(srv, "POST", "/v1/schedules", {"name": "chaos", "expression": "rate(1 minute)", "function": "rec"})
    assert status in (200, 201), (status, body)
    return {"queue": queue, "topic": topic, "machine": machine}


class Load:
    """Workers issuing the six kinds of work; the ledger of what was acknowledged."""

    def __init__(self, cluster, names):
        self.cluster = cluster
        self.names = names
        self.lock = threading.Lock()
        self.acked = {}  # token -> kind
        self.objects = {}  # key -> bytes (acknowledged PUTs)
        self.executions = {}  # token -> execution ARN
        self.attempts = defaultdict(int)
        self.errors = defaultdict(int)
        self.stop = threading.Event()
        self.clients = {}

    def clients_for(self, srv, gen):
        key = (threading.get_ident(), gen)
        if key not in self.clients:
            self.clients[key] = {
                "lambda": client("lambda", srv),
                "sqs": client("sqs", srv),
                "sns": client("sns", srv),
                "s3": client("s3", srv, s3={"addressing_style": "path"}),
                "sfn": client("stepfunctions", srv),
            }
        return self.clients[key]

    def one(self, kind, srv, c):
        token = f"{kind}-{uuid.uuid4()}"
        if kind == "async":
            r = c["lambda"].invoke(FunctionName="rec", InvocationType="Event", Payload=json.dumps({"token": token}))
            assert r["StatusCode"] == 202
        elif kind == "sqs":
            c["sqs"].send_message(QueueUrl=self.names["queue"], MessageBody=json.dumps({"token": token}))
        elif kind == "sns":
            c["sns"].publish(TopicArn=self.names["topic"], Message=json.dumps({"token": token}))
        elif kind == "s3":
            body = os.urandom(random.randint(1, 64 * 1024))
            c["s3"].put_object(Bucket="chaos", Key=token, Body=body)
            with self.lock:
                self.objects[token] = body
        elif kind == "workflow":
            arn = c["sfn"].start_execution(stateMachineArn=self.names["machine"], name=token, input=json.dumps({"token": token}))[
                "executionArn"
            ]
            with self.lock:
                self.executions[token] = arn
        elif kind == "schedule":
            status, body = native(srv, "POST", "/v1/debug/clock", {"advance_s": 60})
            assert status in (200, 204), (status, body)
            with self.lock:
                self.cluster.clock_s += 60
            return  # fires are checked by their own rule (exactly once per fire time)
        with self.lock:
            self.acked[token] = kind

    def worker(self):
        kinds = ["async", "sqs", "sns", "s3", "workflow", "async", "sqs", "sns", "s3", "workflow", "schedule"]
        while not self.stop.is_set():
            srv, gen = self.cluster.current()
            kind = random.choice(kinds)
            with self.lock:
                self.attempts[kind] += 1
            try:
                self.one(kind, srv, self.clients_for(srv, gen))
            except Exception:  # the server died under the request: not acknowledged
                with self.lock:
                    self.errors[kind] += 1
                time.sleep(0.05)


def wait_delivered(sink, load, deadline):
    while time.time() < deadline:
        seen = sink.snapshot()
        missing = [t for t in load.acked if t not in seen]
        if not missing:
            return []
        time.sleep(0.5)
    return missing


def test_acknowledged_work_survives_sigkill(tmp_path):
    sink = Sink()
    cluster = Cluster(tmp_path)
    srv = cluster.start()
    names = deploy(srv, sink.url)
    load = Load(cluster, names)
    workers = [threading.Thread(target=load.worker, daemon=True) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    started = time.time()
    for _ in range(KILLS):
        time.sleep(random.uniform(*UPTIME_S))
        cluster.kill()
        cluster.start()
    time.sleep(2)
    load.stop.set()
    for w in workers:
        w.join(30)
    srv, _ = cluster.current()
    # One more fire after the last restart: the clock goes on where it was.
    assert native(srv, "POST", "/v1/debug/clock", {"advance_s": 60})[0] in (200, 204)
    missing = wait_delivered(sink, load, time.time() + DRAIN_TIMEOUT_S)
    seen = sink.snapshot()

    by_kind = defaultdict(int)
    for kind in load.acked.values():
        by_kind[kind] += 1
    fires = {t: d for t, d in seen.items() if t.startswith("fire:")}
    redelivered = sum(len(d) - 1 for t, d in seen.items())
    print(
        f"\nfault injection: {KILLS} SIGKILLs in {time.time() - started:.1f} s; "
        f"acknowledged {dict(by_kind)} ({len(load.acked)} in all, {sum(load.errors.values())} calls failed under the kills); "
        f"{len(fires)} schedule fire times; {redelivered} redeliveries"
    )

    # 1. Every acknowledged item was delivered.
    if missing:
        sfn = client("stepfunctions", srv)
        states = {}
        for t in missing:
            if t in load.executions:
                try:
                    d = sfn.describe_execution(executionArn=load.executions[t])
                    states[t] = (d["status"], d.get("error"), d.get("cause"))
                except Exception as e:  # noqa: BLE001 - reported, not handled
                    states[t] = repr(e)
        pytest.fail(f"{len(missing)} acknowledged items never delivered, e.g. {missing[:5]}; executions: {list(states.items())[:5]}")
    # 2. At least once, but only as redeliveries of one event/message/execution.
    doubled = {t: d for t, d in seen.items() if len({i for _, i in d}) > 1}
    assert not doubled, f"items delivered as more than one event: {list(doubled.items())[:5]}"
    # 3. Schedule fires: exactly once per fire time (one request id), and the
    #    clock kept firing across restarts.
    assert len(fires) >= 2, f"the schedule stopped firing across restarts: {fires}"
    # A rate(1 minute) rule fires on its own grid (a whole number of minutes
    # from the first fire), never in between.
    times = sorted(datetime.strptime(t[5:], "%Y-%m-%dT%H:%M:%SZ") for t in fires)
    for t in times:
        assert (t - times[0]).total_seconds() % 60 == 0, f"a fire off the schedule's grid: {t} vs {times[0]}"
    # 4. Acknowledged objects read back whole; acknowledged executions finished.
    s3 = client("s3", srv, s3={"addressing_style": "path"})
    for key, body in load.objects.items():
        assert s3.get_object(Bucket="chaos", Key=key)["Body"].read() == body, key
    sfn = client("stepfunctions", srv)
    deadline = time.time() + 30
    for token, arn in load.executions.items():
        while True:
            status = sfn.describe_execution(executionArn=arn)["status"]
            if status != "RUNNING" or time.time() > deadline:
                break
            time.sleep(0.2)
        assert status == "SUCCEEDED", (token, status)
    # 5. No restart found anything it could not recover from.
    for log in cluster.stderr_logs:
        text = log.read_text(errors="replace")
        assert "panicked" not in text, f"{log}:\n{text[-4000:]}"
    cluster.current()[0].stop()
