"""Mixed load for the fault-injection test and the soak (`scripts/soak`): one
function, `rec`, fed by every event source Nimbus has (async invocations, an
SQS mapping, an SNS subscription, S3 notifications, a workflow Task, a
schedule), reporting each delivery to a sink outside the server; and workers
that drive the sources and keep the ledger of what Nimbus acknowledged."""

import json
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, native

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
                # As on AWS, a Task meets throttling when the function is at its
                # concurrency limit (the load keeps `rec` there) and retries it.
                "Retry": [
                    {
                        "ErrorEquals": ["Lambda.TooManyRequestsException", "States.TaskFailed"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 20,
                        "BackoffRate": 1.5,
                        "MaxDelaySeconds": 5,
                    }
                ],
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
    """Workers issuing the kinds of work; the ledger of what was acknowledged."""

    # What the fault-injection test mixes; the soak adds synchronous calls.
    KINDS = ["async", "sqs", "sns", "s3", "workflow"] * 2 + ["schedule"]

    def __init__(self, cluster, names, kinds=None, keep_objects=True):
        self.cluster = cluster
        self.names = names
        self.kinds = kinds or self.KINDS
        # The soak deletes each object after its PUT, so that the data
        # directory's size measures leaks, not the objects it was asked to keep.
        self.keep_objects = keep_objects
        self.latencies = []  # (monotonic time, seconds) of synchronous invocations
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
        elif kind == "sync":
            t0 = time.monotonic()
            r = c["lambda"].invoke(FunctionName="rec", Payload=json.dumps({"token": token}))
            elapsed = time.monotonic() - t0
            assert r["StatusCode"] == 200 and "FunctionError" not in r, r
            with self.lock:
                self.latencies.append((t0, elapsed))
        elif kind == "sqs":
            c["sqs"].send_message(QueueUrl=self.names["queue"], MessageBody=json.dumps({"token": token}))
        elif kind == "sns":
            c["sns"].publish(TopicArn=self.names["topic"], Message=json.dumps({"token": token}))
        elif kind == "s3":
            body = os.urandom(random.randint(1, 64 * 1024))
            c["s3"].put_object(Bucket="chaos", Key=token, Body=body)
            if not self.keep_objects:
                c["s3"].delete_object(Bucket="chaos", Key=token)
            else:
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
        while not self.stop.is_set():
            srv, gen = self.cluster.current()
            kind = random.choice(self.kinds)
            with self.lock:
                self.attempts[kind] += 1
            try:
                self.one(kind, srv, self.clients_for(srv, gen))
            except Exception:  # the server died under the request: not acknowledged
                with self.lock:
                    self.errors[kind] += 1
                time.sleep(0.05)


