"""Helpers shared by the AWS-compatible Lambda API tests: code packages, names, payloads."""

import base64
import hashlib
import io
import json
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
NIMBUS_BIN = REPO_ROOT / "target" / "debug" / "nimbus"

# The admin key the test server imports from its environment.
ADMIN_ACCESS_KEY_ID = "AKIDNIMBUSTEST0001"
ADMIN_SECRET_ACCESS_KEY = "nimbusTestAdminSecret/0123456789abcdefgh"
assert len(ADMIN_SECRET_ACCESS_KEY) == 40

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/lambda-role"
RUNTIME = "python3.12"
HANDLER = "app.handler"

# Largest synchronous Invoke request body AWS accepts (6 MB).
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024

# One handler module drives every behaviour the tests need, chosen by the event's
# "action". VERSION_MARKER is replaced so that two packages can differ in code.
HANDLER_SOURCE = '''\
import os

VERSION = "VERSION_MARKER"


def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "fail":
        raise ValueError("boom: " + str(event.get("message", "")))
    if action == "env":
        return {k: os.environ.get(k) for k in event["keys"]}
    if action == "client_context":
        cc = context.client_context
        return {"custom": None if cc is None else cc.custom}
    if action == "print":
        print(event["line"], flush=True)
    return {
        "version": VERSION,
        "event": event,
        "function_name": context.function_name,
        "invoked_function_arn": context.invoked_function_arn,
    }
'''


def make_lambda_client(url, access_key_id, secret_access_key, **config):
    """A boto3 Lambda client for `url`; extra keyword arguments go into botocore's Config."""
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def make_zip(files):
    """Builds a zip in memory from {path: text or bytes}; identical input gives identical bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in sorted(files.items()):
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode() if isinstance(content, str) else content
            zf.writestr(info, data)
    return buf.getvalue()


def handler_zip(version="v1"):
    """The standard test package: app.py with handler `app.handler` reporting `version`."""
    return make_zip({"app.py": HANDLER_SOURCE.replace("VERSION_MARKER", version)})


def code_sha256(zip_bytes):
    """What Lambda reports as CodeSha256: base64 (not hex) of the SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def unique_name(prefix="fn"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def function_arn(name):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def read_payload(response):
    """Reads an Invoke response's Payload stream and decodes it as JSON."""
    raw = response["Payload"].read()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise AssertionError(f"Invoke payload is not JSON ({e}): {raw[:500]!r}") from e


def error_code(exc):
    return exc.response["Error"]["Code"]


def error_message(exc):
    return exc.response["Error"].get("Message", "")


def http_status(exc_or_response):
    response = getattr(exc_or_response, "response", exc_or_response)
    return response["ResponseMetadata"]["HTTPStatusCode"]


def native(server, method, path, body=None, key_id=ADMIN_ACCESS_KEY_ID, secret=ADMIN_SECRET_ACCESS_KEY):
    """Calls the native API (the admin key unless told otherwise); returns
    (status, decoded JSON or raw bytes)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key_id}:{secret}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw
