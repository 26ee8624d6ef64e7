"""Provisioned concurrency through boto3: Put/Get/DeleteProvisionedConcurrencyConfig on published
versions and aliases, their validation errors, and the warm start that pre-initialised instances give
(no `Init Duration` on the first REPORT, AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency).

Behaviour follows AWS as described in the Lambda management API reference, section 6
("Provisioned"). Every test creates its own uniquely named function.
"""

import base64
import time

import pytest

import lambda_helpers as h

VALIDATION_CODES = {"InvalidParameterValueException", "ValidationException"}
WAIT = {"Delay": 1, "MaxAttempts": 30}
READY_TIMEOUT_S = 15
STATUSES = {"IN_PROGRESS", "READY"}

# Reports how the environment serving the call was initialised.
INIT_TYPE_SOURCE = """\
import os


def handler(event, context):
    return {"init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


# --- helpers ---------------------------------------------------------------------------


def wait_updated(client, name):
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def publish(client, name):
    """Publishes $LATEST, waits until the version is active and returns its number."""
    resp = client.publish_version(FunctionName=name)
    client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=resp["Version"], WaiterConfig=WAIT
    )
    return resp["Version"]


def published_function(client, create_function, **kwargs):
    """Creates a function, publishes version 1 and returns (Created, "1")."""
    fn = create_function(**kwargs)
    wait_updated(client, fn.name)
    version = publish(client, fn.name)
    assert version == "1"
    return fn, version


def assert_config_shape(config, requested):
    """The fields Put/GetProvisionedConcurrencyConfig return, whatever the allocation progress."""
    assert config["RequestedProvisionedConcurrentExecutions"] == requested, config
    assert 0 <= config["AvailableProvisionedConcurrentExecutions"] <= requested, config
    assert 0 <= config["AllocatedProvisionedConcurrentExecutions"] <= requested, config
    assert config["Status"] in STATUSES, config
    assert isinstance(config["LastModified"], str) and config["LastModified"], config


def wait_ready(client, name, qualifier, requested):
    """Polls GetProvisionedConcurrencyConfig until READY; returns the last response."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        config = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        assert_config_shape(config, requested)
        if config["Status"] == "READY":
            return config
        if time.monotonic() > deadline:
            pytest.fail(f"provisioned concurrency for {name}:{qualifier} not READY after {READY_TIMEOUT_S}s: {config}")
        time.sleep(0.25)


def invoke_tail(client, name, qualifier):
    """Invokes `name:qualifier` synchronously with LogType=Tail; returns (payload, REPORT line)."""
    resp = client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}", LogType="Tail")
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp, resp
    payload = h.read_payload(resp)
    log = base64.b64decode(resp["LogResult"]).decode()
    reports = [line for line in log.splitlines() if line.startswith("REPORT RequestId")]
    assert len(reports) == 1, log
    return payload, reports[0]


def assert_not_found(client, name, qualifier):
    with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException) as e:
        client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
    assert h.error_code(e.value) == "ProvisionedConcurrencyConfigNotFoundException"
    assert h.http_status(e.value) == 404


# --- Put / Get / Delete ------------------------------------------------------------------


def test_put_get_delete_on_version(lambda_client, create_function):
    fn, version = published_function(lambda_client, create_function)

    put = lambda_client.put_provisioned_concurrency_config(
        FunctionName=fn.name, Qualifier=version, ProvisionedConcurrentExecutions=2
    )
    assert h.http_status(put) == 202
    assert_config_shape(put, 2)

    got = lambda_client.get_provisioned_concurrency_config(FunctionName=fn.name, Qualifier=version)
    assert h.http_status(got) == 200
    assert_config_shape(got, 2)

    ready = wait_ready(lambda_client, fn.name, version, 2)
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2, ready

    deleted = lambda_client.delete_provisioned_concurrency_config(FunctionName=fn.name, Qualifier=version)
    assert h.http_status(deleted) == 204
    assert_not_found(lambda_client, fn.name, version)


def test_get_without_config_is_not_found(lambda_client, create_function):
    fn, version = published_function(lambda_client, create_function)
    assert_not_found(lambda_client, fn.name, version)


def test_put_on_alias(lambda_client, create_function):
    fn, version = published_function(lambda_client, create_function)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion=version)

    put = lambda_client.put_provisioned_concurrency_config(
        FunctionName=fn.name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    assert h.http_status(put) == 202
    assert_config_shape(put, 1)

    ready = wait_ready(lambda_client, fn.name, "live", 1)
    assert ready["AvailableProvisionedConcurrentExecutions"] == 1, ready

    lambda_client.delete_provisioned_concurrency_config(FunctionName=fn.name, Qualifier="live")
    assert_not_found(lambda_client, fn.name, "live")


# --- validation --------------------------------------------------------------------------


def test_latest_is_refused(lambda_client, create_function):
    fn = create_function()
    wait_updated(lambda_client, fn.name)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=fn.name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    assert h.http_status(e.value) == 400


def test_unknown_version_is_not_found(lambda_client, create_function):
    fn, _ = published_function(lambda_client, create_function)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=fn.name, Qualifier="99", ProvisionedConcurrentExecutions=1
        )
    assert h.http_status(e.value) == 404


def test_unknown_alias_is_not_found(lambda_client, create_function):
    fn, _ = published_function(lambda_client, create_function)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=fn.name, Qualifier="no-such-alias", ProvisionedConcurrentExecutions=1
        )
    assert h.http_status(e.value) == 404


def test_unknown_function_is_not_found(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=h.unique_name("missing"), Qualifier="1", ProvisionedConcurrentExecutions=1
        )
    assert h.http_status(e.value) == 404


def test_zero_is_refused(server, lambda_client, create_function):
    fn, version = published_function(lambda_client, create_function)
    # botocore would reject 0 itself (the model says min 1); switch that off to reach the server.
    raw = h.make_lambda_client(
        server.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY, parameter_validation=False
    )
    with pytest.raises(raw.exceptions.ClientError) as e:
        raw.put_provisioned_concurrency_config(
            FunctionName=fn.name, Qualifier=version, ProvisionedConcurrentExecutions=0
        )
    assert h.error_code(e.value) in VALIDATION_CODES
    assert h.http_status(e.value) == 400
    assert_not_found(lambda_client, fn.name, version)


def test_more_than_reserved_concurrency_is_refused(lambda_client, create_function):
    fn, version = published_function(lambda_client, create_function)
    lambda_client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=2)
    try:
        with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
            lambda_client.put_provisioned_concurrency_config(
                FunctionName=fn.name, Qualifier=version, ProvisionedConcurrentExecutions=3
            )
        assert h.http_status(e.value) == 400
        assert_not_found(lambda_client, fn.name, version)
    finally:
        lambda_client.delete_function_concurrency(FunctionName=fn.name)


# --- warm behaviour ----------------------------------------------------------------------


def test_provisioned_version_starts_warm(lambda_client, create_function):
    zip_bytes = h.make_zip({"app.py": INIT_TYPE_SOURCE})

    warm, warm_version = published_function(lambda_client, create_function, zip_bytes=zip_bytes)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=warm.name, Qualifier=warm_version, ProvisionedConcurrentExecutions=1
    )
    ready = wait_ready(lambda_client, warm.name, warm_version, 1)
    assert ready["AvailableProvisionedConcurrentExecutions"] == 1, ready

    payload, report = invoke_tail(lambda_client, warm.name, warm_version)
    assert payload == {"init_type": "provisioned-concurrency"}
    assert "Init Duration" not in report, report

    # The same code published without provisioned concurrency: a cold, on-demand first call.
    cold, cold_version = published_function(lambda_client, create_function, zip_bytes=zip_bytes)
    payload, report = invoke_tail(lambda_client, cold.name, cold_version)
    assert payload == {"init_type": "on-demand"}
    assert "Init Duration" in report, report


def test_provisioned_alias_starts_warm(lambda_client, create_function):
    zip_bytes = h.make_zip({"app.py": INIT_TYPE_SOURCE})
    fn, version = published_function(lambda_client, create_function, zip_bytes=zip_bytes)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion=version)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=fn.name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    wait_ready(lambda_client, fn.name, "live", 1)

    payload, report = invoke_tail(lambda_client, fn.name, "live")
    assert payload == {"init_type": "provisioned-concurrency"}
    assert "Init Duration" not in report, report
