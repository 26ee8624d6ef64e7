"""Shared helpers of the SQS and SNS suites: clients, the native API, MD5s as
SQS computes them, log polling, and functions that call SQS/SNS with boto3 from
inside (using only the AWS_* variables Nimbus gives each instance)."""

import hashlib
import json
import struct
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, native

POLL_TIMEOUT_S = 30

# The venv's site-packages (boto3) for functions run by /usr/bin/python3: the
# functions below add it to sys.path, nothing else.
SITE_PACKAGES = str(next(Path(sys.executable).resolve().parent.parent.glob("lib/python3*/site-packages"), ""))
if not SITE_PACKAGES:
    import boto3 as _b

    SITE_PACKAGES = str(Path(_b.__file__).resolve().parent.parent)


def client(service, server, key_id=ADMIN_ACCESS_KEY_ID, secret=ADMIN_SECRET_ACCESS_KEY):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=h.REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def grant(server, function, *permissions):
    status, body = native(server, "PATCH", f"/v1/functions/{function}", {"permissions": list(permissions)})
    assert status == 200, (status, body)


def md5_of_body(body):
    return hashlib.md5(body.encode()).hexdigest()


def md5_of_attributes(attrs):
    """SQS's MD5OfMessageAttributes, written from its documented algorithm."""
    buf = b""

    def put(b):
        return struct.pack(">I", len(b)) + b

    for name in sorted(attrs):
        a = attrs[name]
        buf += put(name.encode()) + put(a["DataType"].encode())
        if "BinaryValue" in a:
            buf += b"\x02" + put(a["BinaryValue"])
        else:
            buf += b"\x01" + put(a["StringValue"].encode())
    return hashlib.md5(buf).hexdigest()


def log_lines(server, name, marker):
    status, body = native(server, "GET", f"/v1/functions/{name}/logs?limit=5000")
    assert status == 200, (status, body)
    out = []
    for e in body["events"]:
        text = e["message"]
        if marker in text:
            out.append(json.loads(text[text.index(marker) + len(marker):]))
    return out


def wait_for(what, check, server=None, timeout=POLL_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = server.stderr()[-3000:] if server else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\nserver stderr (tail):\n{tail}")
        time.sleep(0.2)


def drain(sqs, url, expect, timeout=POLL_TIMEOUT_S):
    """Receives (and deletes) until `expect` messages arrived or the time is up."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"])
        for m in r.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


# A function calling a service with boto3 from inside, configured only by the
# environment Nimbus gives it (AWS_ENDPOINT_URL, its own credentials, AWS_REGION).
CALLER_SOURCE = """\
import json, os, sys
sys.path.append(os.environ["TEST_SITE_PACKAGES"])
import boto3

def handler(event, context):
    try:
        if event["service"] == "sqs":
            sqs = boto3.client("sqs")
            url = sqs.get_queue_url(QueueName=event["queue"])["QueueUrl"]
            r = sqs.send_message(QueueUrl=url, MessageBody=event["body"])
            return {"ok": r["MessageId"]}
        sns = boto3.client("sns")
        r = sns.publish(TopicArn=event["topic"], Message=event["body"])
        return {"ok": r["MessageId"]}
    except Exception as e:
        return {"error": getattr(e, "response", {}).get("Error", {}).get("Code", repr(e))}
"""


def create_caller(create_function):
    return create_function(
        zip_bytes=h.make_zip({"app.py": CALLER_SOURCE}),
        Environment={"Variables": {"TEST_SITE_PACKAGES": SITE_PACKAGES}},
        Timeout=30,
    )
