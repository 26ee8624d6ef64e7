"""Function URLs through boto3's Lambda client, served by Nimbus's gateway.

create_function_url_config gives a URL that answers at once (the hello handler
through the payload 2.0 rules); get, update (CORS), list and delete follow the
Lambda API's shapes and errors. What Nimbus refuses instead of ignoring
(AWS_IAM URL auth, an unknown InvokeMode) answers ValidationException.
RESPONSE_STREAM URLs are tested in test_response_streaming.py.
"""

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

import lambda_helpers as h

HELLO = '''\
def handler(event, context):
    return {"message": "Hello, World!"}
'''


def call(url, method="GET", body=None, headers=None):
    """(status, headers (case-insensitive), body) of one request to `url`."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture
def hello(create_function):
    return create_function(zip_bytes=h.make_zip({"app.py": HELLO})).name


def test_create_get_call_update_list_delete(server, lambda_client, hello):
    created = lambda_client.create_function_url_config(FunctionName=hello, AuthType="NONE")
    assert h.http_status(created) == 201
    url = created["FunctionUrl"]
    assert url.startswith(server.gateway_url + "/@url/") and url.endswith("/")
    assert created["FunctionArn"] == h.function_arn(hello)
    assert created["AuthType"] == "NONE"
    assert created["InvokeMode"] == "BUFFERED"
    assert created["CreationTime"].endswith("+0000")
    assert "LastModifiedTime" not in created

    # One URL per function: a second create is a conflict naming the function.
    with pytest.raises(ClientError) as e:
        lambda_client.create_function_url_config(FunctionName=hello, AuthType="NONE")
    assert h.error_code(e.value) == "ResourceConflictException"
    assert h.function_arn(hello) in h.error_message(e.value)

    got = lambda_client.get_function_url_config(FunctionName=hello)
    assert got["FunctionUrl"] == url
    assert got["CreationTime"] == created["CreationTime"]
    assert "LastModifiedTime" in got

    # The URL answers with the hello document (the 2.0 shortcut: a JSON 200).
    status, headers, body = call(url)
    assert status == 200, body
    assert json.loads(body) == {"message": "Hello, World!"}
    assert headers["Content-Type"] == "application/json"
    status, _, body = call(url + "any/path?x=1", "POST", b'{"a": 1}', {"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (200, {"message": "Hello, World!"})

    updated = lambda_client.update_function_url_config(
        FunctionName=hello,
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"], "MaxAge": 60},
    )
    assert updated["FunctionUrl"] == url
    assert updated["AuthType"] == "NONE"
    assert updated["Cors"]["AllowOrigins"] == ["https://app.example"]
    assert updated["Cors"]["MaxAge"] == 60
    status, headers, _ = call(url, headers={"Origin": "https://app.example"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"

    listed = lambda_client.list_function_url_configs(FunctionName=hello)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]

    deleted = lambda_client.delete_function_url_config(FunctionName=hello)
    assert h.http_status(deleted) == 204
    with pytest.raises(ClientError) as e:
        lambda_client.get_function_url_config(FunctionName=hello)
    assert h.error_code(e.value) == "ResourceNotFoundException"
    assert lambda_client.list_function_url_configs(FunctionName=hello)["FunctionUrlConfigs"] == []
    status, _, _ = call(url)
    assert status == 404


def test_refusals_and_missing_functions(lambda_client, hello):
    with pytest.raises(ClientError) as e:
        lambda_client.create_function_url_config(FunctionName=hello, AuthType="AWS_IAM")
    assert h.error_code(e.value) == "ValidationException"
    assert "not supported by Nimbus" in h.error_message(e.value)
    with pytest.raises(ClientError) as e:
        lambda_client.create_function_url_config(FunctionName=hello, AuthType="NONE", InvokeMode="CHUNKY")
    assert h.error_code(e.value) == "ValidationException"
    assert "[BUFFERED, RESPONSE_STREAM]" in h.error_message(e.value)
    # Nothing was created by the refused calls.
    with pytest.raises(ClientError) as e:
        lambda_client.get_function_url_config(FunctionName=hello)
    assert h.error_code(e.value) == "ResourceNotFoundException"
    assert h.error_message(e.value) == "The resource you requested does not exist."
    # A URL for a qualifier is only found under that qualifier.
    lambda_client.create_alias(FunctionName=hello, Name="live", FunctionVersion="$LATEST")
    lambda_client.create_function_url_config(FunctionName=hello, Qualifier="live", AuthType="NONE")
    got = lambda_client.get_function_url_config(FunctionName=hello, Qualifier="live")
    assert got["FunctionArn"] == h.function_arn(hello) + ":live"
    with pytest.raises(ClientError) as e:
        lambda_client.get_function_url_config(FunctionName=hello)
    assert h.error_code(e.value) == "ResourceNotFoundException"
    status, _, body = call(got["FunctionUrl"])
    assert (status, json.loads(body)) == (200, {"message": "Hello, World!"})
    with pytest.raises(ClientError) as e:
        lambda_client.get_function_url_config(FunctionName="no-such-function")
    assert h.error_code(e.value) == "ResourceNotFoundException"
    assert "Function not found" in h.error_message(e.value)
