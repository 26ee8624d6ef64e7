"""Invoke through boto3: payloads, errors, log tails, invocation types, client context, limits."""

import base64
import json

import botocore.exceptions
import pytest

import lambda_helpers as h


def invoke(client, name, event=None, **kwargs):
    """Invokes with `event` serialized as JSON; returns (response, decoded payload)."""
    if event is not None:
        kwargs["Payload"] = json.dumps(event).encode()
    resp = client.invoke(FunctionName=name, **kwargs)
    return resp, h.read_payload(resp)


def test_invoke_request_response(lambda_client, create_function):
    fn = create_function()
    event = {"name": "Ada", "n": [1, 2, 3], "nested": {"ok": True}}
    resp, payload = invoke(lambda_client, fn.name, event)
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp
    assert "LogResult" not in resp
    assert payload["event"] == event
    assert payload["version"] == "v1"
    assert payload["function_name"] == fn.name


def test_invoke_explicit_request_response_type(lambda_client, create_function):
    fn = create_function()
    resp, payload = invoke(lambda_client, fn.name, {"k": "v"}, InvocationType="RequestResponse")
    assert resp["StatusCode"] == 200
    assert payload["event"] == {"k": "v"}


def test_invoke_empty_payload_is_empty_object(lambda_client, create_function):
    fn = create_function()
    resp, payload = invoke(lambda_client, fn.name)
    assert resp["StatusCode"] == 200
    assert payload["event"] == {}


def test_invoke_handler_exception(lambda_client, create_function):
    fn = create_function()
    resp, payload = invoke(lambda_client, fn.name, {"action": "fail", "message": "kaput"})
    # A failed function still answers 200; the failure is in FunctionError and the payload.
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert "boom: kaput" in payload["errorMessage"]


def test_invoke_log_tail(lambda_client, create_function):
    fn = create_function()
    marker = h.unique_name("log-line")
    resp, payload = invoke(lambda_client, fn.name, {"action": "print", "line": marker}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert payload["event"]["line"] == marker
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "START RequestId" in log
    assert "END RequestId" in log
    assert "REPORT RequestId" in log
    assert marker in log
    assert log.index("START RequestId") < log.index(marker) < log.index("END RequestId") < log.index(
        "REPORT RequestId"
    )


def test_invoke_log_tail_of_failed_invocation(lambda_client, create_function):
    fn = create_function()
    resp, payload = invoke(lambda_client, fn.name, {"action": "fail"}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "START RequestId" in log and "REPORT RequestId" in log


def test_invoke_dry_run(lambda_client, create_function):
    fn = create_function()
    resp = lambda_client.invoke(FunctionName=fn.name, InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""


def test_invoke_dry_run_unknown_function(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=h.unique_name("missing"), InvocationType="DryRun")


def test_invoke_client_context(lambda_client, create_function):
    fn = create_function()
    custom = {"tenant": "acme", "depth": 2}
    client_context = base64.b64encode(json.dumps({"custom": custom}).encode()).decode()
    resp, payload = invoke(
        lambda_client, fn.name, {"action": "client_context"}, ClientContext=client_context
    )
    assert resp["StatusCode"] == 200
    assert payload == {"custom": custom}


def test_invoke_without_client_context(lambda_client, create_function):
    fn = create_function()
    _, payload = invoke(lambda_client, fn.name, {"action": "client_context"})
    assert payload == {"custom": None}


def test_invoke_payload_not_json(lambda_client, create_function):
    fn = create_function()
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException) as e:
        lambda_client.invoke(FunctionName=fn.name, Payload=b"this is {not json")
    assert h.http_status(e.value) == 400


def test_invoke_payload_too_large(lambda_client, create_function):
    fn = create_function()
    # A valid JSON string just over the 6 MB synchronous limit.
    payload = b'"' + b"x" * h.MAX_SYNC_PAYLOAD_BYTES + b'"'
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.invoke(FunctionName=fn.name, Payload=payload)
    # botocore models the 413 as RequestTooLargeException, but AWS sends the code
    # RequestEntityTooLargeException, so boto3 raises a plain ClientError with it.
    assert h.error_code(e.value) == "RequestEntityTooLargeException"
    assert h.http_status(e.value) == 413
    # The function still works after the rejected request.
    resp, _ = invoke(lambda_client, fn.name, {"after": "413"})
    assert resp["StatusCode"] == 200


def test_invoke_unknown_function(lambda_client):
    name = h.unique_name("missing")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert h.http_status(e.value) == 404
    assert name in h.error_message(e.value)


def test_invoke_latest_qualifier(lambda_client, create_function):
    fn = create_function()
    resp, payload = invoke(lambda_client, fn.name, {"q": 1}, Qualifier="$LATEST")
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert payload["event"] == {"q": 1}


def test_invoke_by_function_arn(lambda_client, create_function):
    fn = create_function()
    arn = fn.config["FunctionArn"]
    assert arn == h.function_arn(fn.name)
    resp, payload = invoke(lambda_client, arn, {"by": "arn"})
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert payload["event"] == {"by": "arn"}
    assert payload["function_name"] == fn.name
    assert payload["invoked_function_arn"].startswith(arn)


def test_invoke_event_type_is_accepted(lambda_client, create_function):
    # Event invocations are queued durably and answered 202 with an empty payload;
    # test_lambda_async.py follows them through retries, destinations and dead letters.
    fn = create_function()
    resp = lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=b"{}")
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
