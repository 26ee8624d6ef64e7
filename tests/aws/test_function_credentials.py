"""Each function's instances get credentials of their own and the endpoint of
Nimbus's AWS APIs; those credentials reach only what the function was granted.

The function reports its environment; the test then signs requests with the
function's credentials exactly as an SDK inside the function would.
"""

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import lambda_helpers as h
from lambda_helpers import native


def own_environment(lambda_client, name):
    keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"]
    r = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"action": "env", "keys": keys}))
    return h.read_payload(r)


def client_as(env, service):
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=h.REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )


def test_instances_get_their_functions_credentials_and_the_endpoint(server, lambda_client, create_function):
    fn = create_function()
    env = own_environment(lambda_client, fn.name)
    assert env["AWS_ENDPOINT_URL"] == server.url
    assert env["AWS_ACCESS_KEY_ID"].startswith("NIMF") and len(env["AWS_ACCESS_KEY_ID"]) == 20
    assert len(env["AWS_SECRET_ACCESS_KEY"]) == 40
    assert env["AWS_SESSION_TOKEN"] is None
    other = create_function()
    assert own_environment(lambda_client, other.name)["AWS_ACCESS_KEY_ID"] != env["AWS_ACCESS_KEY_ID"], (
        "every function has credentials of its own"
    )
    # Stable across instances of the same function (a configuration change
    # restarts its instances).
    lambda_client.update_function_configuration(FunctionName=fn.name, Description="changed")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    assert own_environment(lambda_client, fn.name)["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]


def test_function_credentials_reach_only_granted_functions(server, lambda_client, create_function):
    callee = create_function()
    stranger = create_function()
    caller = create_function(Tags={"nimbus:permissions": f"lambda:{callee.name}"})
    env = own_environment(lambda_client, caller.name)
    as_caller = client_as(env, "lambda")

    r = as_caller.invoke(FunctionName=callee.name, Payload=b'{"n": 1}')
    assert h.read_payload(r)["event"] == {"n": 1}
    # Qualified names and ARNs name the same function.
    r = as_caller.invoke(FunctionName=f"{callee.name}:$LATEST", Payload=b"{}")
    assert r["StatusCode"] == 200

    with pytest.raises(ClientError) as e:
        as_caller.invoke(FunctionName=stranger.name, Payload=b"{}")
    assert h.error_code(e.value) == "AccessDeniedException"
    assert h.http_status(e.value) == 403
    assert caller.name in h.error_message(e.value)

    # Management is the operator's: a function cannot list, change or delete.
    for call in (
        lambda: as_caller.list_functions(),
        lambda: as_caller.get_function(FunctionName=callee.name),
        lambda: as_caller.delete_function(FunctionName=callee.name),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert h.error_code(e.value) == "AccessDeniedException"
    assert lambda_client.get_function(FunctionName=callee.name)["Configuration"]["FunctionName"] == callee.name


def test_grants_change_live_through_the_native_api(server, lambda_client, create_function):
    target = create_function()
    caller = create_function()
    env = own_environment(lambda_client, caller.name)
    as_caller = client_as(env, "lambda")
    with pytest.raises(ClientError) as e:
        as_caller.invoke(FunctionName=target.name, Payload=b"{}")
    assert h.error_code(e.value) == "AccessDeniedException", "nothing is granted by default"

    status, body = native(server, "PATCH", f"/v1/functions/{caller.name}", {"permissions": ["lambda:" + target.name[:3] + "*"]})
    assert status == 200, body
    env = own_environment(lambda_client, caller.name)
    assert client_as(env, "lambda").invoke(FunctionName=target.name, Payload=b"{}")["StatusCode"] == 200

    status, body = native(server, "PATCH", f"/v1/functions/{caller.name}", {"permissions": ["ec2:box"]})
    assert status == 400 and "unknown service" in json.dumps(body), body


def test_function_credentials_cannot_use_the_native_api(server, lambda_client, create_function):
    fn = create_function()
    env = own_environment(lambda_client, fn.name)
    status, body = native(server, "GET", "/v1/functions", key_id=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"])
    assert status == 403, body


def test_deleted_functions_credentials_stop_working(server, lambda_client, create_function):
    target = create_function()
    fn = create_function(Tags={"nimbus:permissions": f"lambda:{target.name}"})
    env = own_environment(lambda_client, fn.name)
    lambda_client.delete_function(FunctionName=fn.name)
    with pytest.raises(ClientError) as e:
        client_as(env, "lambda").invoke(FunctionName=target.name, Payload=b"{}")
    assert h.http_status(e.value) in (401, 403)
    assert h.error_code(e.value) in ("UnrecognizedClientException", "InvalidSignatureException")


def test_secrets_never_reach_the_logs(server, lambda_client, create_function):
    fn = create_function()
    env = own_environment(lambda_client, fn.name)
    status, body = native(server, "GET", f"/v1/functions/{fn.name}/logs?limit=1000")
    assert status == 200
    assert env["AWS_SECRET_ACCESS_KEY"] not in json.dumps(body)
    assert env["AWS_SECRET_ACCESS_KEY"] not in server.stderr()


BOTO3_CALLER = '''\
import json

import boto3


def handler(event, context):
    # No endpoint, region or keys in the code: exactly as written for AWS.
    client = boto3.client("lambda")
    r = client.invoke(FunctionName=event["target"], Payload=json.dumps({"from": "inside"}))
    return json.loads(r["Payload"].read())
'''


def test_boto3_inside_a_function_works_unchanged(server, lambda_client, create_function):
    callee = create_function()
    caller = create_function(
        zip_bytes=h.make_zip({"app.py": BOTO3_CALLER}),
        Timeout=30,
        Tags={"nimbus:permissions": f"lambda:{callee.name}"},
    )
    r = lambda_client.invoke(FunctionName=caller.name, Payload=json.dumps({"target": callee.name}))
    assert "FunctionError" not in r, h.read_payload(r)
    assert h.read_payload(r)["event"] == {"from": "inside"}
