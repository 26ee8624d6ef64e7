"""Reserved concurrency: Put/Get/DeleteFunctionConcurrency, the account's unreserved
minimum, and throttling (TooManyRequestsException) when a function is at its limit."""

import json
import threading
import time

import botocore.exceptions
import pytest

import lambda_helpers as h

SLOW_SOURCE = """\
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "done"
"""


@pytest.fixture
def slow_function(create_function):
    return create_function(zip_bytes=h.make_zip({"app.py": SLOW_SOURCE}), Timeout=10)


def test_put_get_delete_concurrency(lambda_client, create_function):
    fn = create_function()
    settings = lambda_client.get_account_settings()
    before = settings["AccountLimit"]["UnreservedConcurrentExecutions"]

    resp = lambda_client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=5)
    assert resp["ReservedConcurrentExecutions"] == 5
    assert lambda_client.get_function_concurrency(FunctionName=fn.name)["ReservedConcurrentExecutions"] == 5
    assert lambda_client.get_function(FunctionName=fn.name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    after = lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == before - 5

    lambda_client.delete_function_concurrency(FunctionName=fn.name)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(FunctionName=fn.name)
    assert "Concurrency" not in lambda_client.get_function(FunctionName=fn.name)
    assert lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == before


def test_unreserved_minimum_of_100_is_kept(lambda_client, create_function):
    fn = create_function()
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=950)
    assert "below its minimum value of [100]" in h.error_message(e.value)


def test_qualified_names_are_refused(lambda_client, create_function):
    fn = create_function()
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.put_function_concurrency(FunctionName=fn.name + ":$LATEST", ReservedConcurrentExecutions=1)


def test_zero_reserved_concurrency_throttles_every_call(lambda_client, create_function):
    fn = create_function()
    lambda_client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=0)
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException) as e:
        lambda_client.invoke(FunctionName=fn.name, Payload=b"{}")
    assert h.http_status(e.value) == 429
    assert e.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lambda_client.delete_function_concurrency(FunctionName=fn.name)
    assert lambda_client.invoke(FunctionName=fn.name, Payload=b"{}")["StatusCode"] == 200


def test_calls_beyond_the_reservation_are_throttled(lambda_client, slow_function):
    name = slow_function.name
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    results = {}

    def slow_call():
        r = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"sleep": 2}).encode())
        results["slow"] = json.loads(r["Payload"].read())

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.7)  # the slow call holds the only instance
    started = time.monotonic()
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException):
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert time.monotonic() - started < 1.0, "a reserved limit throttles at once, without queueing"
    t.join()
    assert results["slow"] == "done"
    # Once the instance is free, calls go through again.
    assert json.loads(lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == "done"


def test_reservation_covers_all_versions_of_a_function(lambda_client, slow_function):
    name = slow_function.name
    lambda_client.publish_version(FunctionName=name)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    t = threading.Thread(
        target=lambda: lambda_client.invoke(FunctionName=name, Qualifier="1", Payload=json.dumps({"sleep": 2}).encode())
    )
    t.start()
    time.sleep(0.7)  # version 1 holds the function's only reserved slot
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException):
        lambda_client.invoke(FunctionName=name, Payload=b"{}")  # $LATEST shares the reservation
    t.join()
    assert lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


def test_a_recreated_function_does_not_inherit_the_old_reservation(lambda_client, create_function):
    fn = create_function()
    lambda_client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=0)
    lambda_client.delete_function(FunctionName=fn.name)
    create_function(name=fn.name)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(FunctionName=fn.name)
    assert lambda_client.invoke(FunctionName=fn.name, Payload=b"{}")["StatusCode"] == 200
