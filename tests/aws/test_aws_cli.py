"""The AWS CLI (`aws lambda …`, from the `awscli` package in the test venv) as a client.

A smoke test of the CLI against the test server with `--endpoint-url`: create a
function from a zip, invoke it, list functions, and get a missing function. The CLI
sees only the admin key and the region from its environment; any config or
credentials file of the developer's is hidden from it.

The `awscli` package on PyPI is AWS CLI v1. v1 has no `--cli-binary-format` option
(it is a v2 option and v1 rejects it as unknown); v1 always takes `--payload` as raw
text and base64-encodes it itself, which is what v2 does with
`--cli-binary-format raw-in-base64-out`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY

# The CLI installed next to the interpreter running the tests (.venv/bin/aws under scripts/test).
AWS_CLI = Path(sys.executable).parent / "aws"
CLI_TIMEOUT_S = 120


def cli_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_ACCESS_KEY,
        AWS_DEFAULT_REGION=h.REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@pytest.fixture(scope="module")
def aws(server):
    """Runs `aws --endpoint-url <server> --output json ARGS…`; returns the CompletedProcess."""
    if not os.access(AWS_CLI, os.X_OK):
        pytest.fail(
            f"{AWS_CLI} not found: the AWS CLI comes from the `awscli` pin in tests/requirements.txt; "
            "run scripts/test (or pip install -r tests/requirements.txt into this venv)"
        )

    def run(*args):
        return subprocess.run(
            [str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", *args],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    return run


def ok_json(proc):
    """The JSON the CLI printed on success."""
    assert proc.returncode == 0, f"aws exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise AssertionError(f"aws did not print JSON ({e}):\n{proc.stdout}\nstderr:\n{proc.stderr}") from e


@pytest.fixture(scope="module")
def cli_function(aws, tmp_path_factory):
    """A function created with `aws lambda create-function`: (name, zip bytes, CLI output)."""
    name = h.unique_name("cli")
    zip_bytes = h.handler_zip("cli-v1")
    zip_path = tmp_path_factory.mktemp("cli") / "code.zip"
    zip_path.write_bytes(zip_bytes)
    out = ok_json(
        aws(
            "lambda", "create-function",
            "--function-name", name,
            "--runtime", h.RUNTIME,
            "--role", "arn:aws:iam::000000000000:role/r",
            "--handler", h.HANDLER,
            "--zip-file", f"fileb://{zip_path}",
        )
    )
    return name, zip_bytes, out


def test_cli_create_function(cli_function):
    name, zip_bytes, out = cli_function
    assert out["FunctionName"] == name
    assert out["FunctionArn"] == h.function_arn(name)
    assert out["State"] == "Active"
    assert out["Runtime"] == h.RUNTIME
    assert out["Handler"] == h.HANDLER
    assert out["Role"] == "arn:aws:iam::000000000000:role/r"
    assert out["CodeSha256"] == h.code_sha256(zip_bytes)


def test_cli_invoke(aws, cli_function, tmp_path):
    name, _, _ = cli_function
    outfile = tmp_path / "response.json"
    out = ok_json(aws("lambda", "invoke", "--function-name", name, "--payload", '{"n": 2}', str(outfile)))
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in out
    assert outfile.exists(), "aws lambda invoke wrote no outfile"
    payload = json.loads(outfile.read_text())
    assert payload == {
        "version": "cli-v1",
        "event": {"n": 2},
        "function_name": name,
        "invoked_function_arn": h.function_arn(name),
    }


def test_cli_list_functions(aws, cli_function):
    name, _, _ = cli_function
    out = ok_json(aws("lambda", "list-functions"))
    listed = {f["FunctionName"]: f for f in out["Functions"]}
    assert name in listed, f"{name} not in {sorted(listed)}"
    assert listed[name]["Runtime"] == h.RUNTIME
    assert listed[name]["FunctionArn"] == h.function_arn(name)


def test_cli_get_missing_function_fails(aws):
    missing = h.unique_name("missing")
    proc = aws("lambda", "get-function", "--function-name", missing)
    assert proc.returncode != 0, f"get-function of a missing function succeeded:\n{proc.stdout}"
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr
    assert "GetFunction" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == ""
