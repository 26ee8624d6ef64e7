"""The AWS SDK for JavaScript v3 (@aws-sdk/client-lambda) as a client of the Lambda API.

tests/node/invoke.mjs creates a function, invokes it with LogType 'Tail', invokes a
missing function, and prints a JSON summary; this module runs it with `node` (from
PATH) against the test server and checks the summary. Its dependencies are installed
by scripts/test (`npm ci --prefix tests/node`) from tests/node/package-lock.json.
"""

import json
import os
import shutil
import subprocess

import pytest

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, REPO_ROOT

NODE_DIR = REPO_ROOT / "tests" / "node"
SCRIPT = NODE_DIR / "invoke.mjs"
NODE_TIMEOUT_S = 120


def node_env():
    env = dict(os.environ)
    for var in list(env):
        # Nothing from the developer's own AWS setup may reach the SDK.
        if var.startswith("AWS_"):
            del env[var]
    env.update(
        AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_ACCESS_KEY,
        AWS_REGION=h.REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("`node` is not on PATH: the Node SDK tests need Node.js 20 or later")
    if not (NODE_DIR / "node_modules" / "@aws-sdk" / "client-lambda").is_dir():
        pytest.fail(
            f"{NODE_DIR / 'node_modules'} is missing (or lacks @aws-sdk/client-lambda): "
            "run scripts/test, which installs it with `npm ci --prefix tests/node`"
        )
    return exe


def run_invoke_script(node, url, name, zip_path, event):
    proc = subprocess.run(
        [node, str(SCRIPT), url, name, str(zip_path), json.dumps(event)],
        cwd=REPO_ROOT,
        env=node_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"invoke.mjs exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise AssertionError(f"invoke.mjs did not print JSON ({e}):\n{proc.stdout}\nstderr:\n{proc.stderr}") from e


def test_node_sdk_create_invoke_and_missing(node, server, lambda_client, tmp_path):
    name = h.unique_name("node")
    zip_bytes = h.handler_zip("node-v1")
    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(zip_bytes)
    marker = h.unique_name("node-log-line")
    event = {"action": "print", "line": marker, "n": 2, "nested": {"ok": True}}

    summary = run_invoke_script(node, server.url, name, zip_path, event)

    create = summary["create"]
    assert create["httpStatusCode"] == 201
    assert create["FunctionName"] == name
    assert create["FunctionArn"] == h.function_arn(name)
    assert create["Runtime"] == h.RUNTIME
    assert create["Handler"] == h.HANDLER
    assert create["State"] == "Active"
    assert create["CodeSha256"] == h.code_sha256(zip_bytes)

    inv = summary["invoke"]
    assert inv["StatusCode"] == 200
    assert inv["ExecutedVersion"] == "$LATEST"
    assert inv["FunctionError"] is None
    assert inv["PayloadIsJson"], f"payload is not JSON: {inv['PayloadText']!r}"
    assert inv["Payload"] == {
        "version": "node-v1",
        "event": event,
        "function_name": name,
        "invoked_function_arn": h.function_arn(name),
    }
    assert inv["LogResultPresent"]
    assert inv["LogTailHasReport"], f"log tail has no REPORT line: {inv['LogTail']!r}"
    assert marker in inv["LogTail"]
    assert "START RequestId" in inv["LogTail"]

    missing = summary["missing"]
    assert missing["threw"], f"invoking {missing['FunctionName']} succeeded: {missing}"
    assert missing["error"]["name"] == "ResourceNotFoundException", missing
    assert missing["isResourceNotFoundException"], missing
    assert missing["error"]["httpStatusCode"] == 404, missing
    assert missing["FunctionName"] in missing["error"]["message"], missing

    # What the Node SDK created is the same function boto3 sees.
    cfg = lambda_client.get_function_configuration(FunctionName=name)
    assert cfg["CodeSha256"] == h.code_sha256(zip_bytes)
    assert cfg["Handler"] == h.HANDLER
