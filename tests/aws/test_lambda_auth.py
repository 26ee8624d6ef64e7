"""SigV4 authentication of the Lambda API: bad secrets, unknown keys, unsigned and stale requests,
and keys managed with `nimbus keys`."""

import datetime
import json
import os
import subprocess
import urllib.error
import urllib.request

import botocore
import botocore.auth
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, NIMBUS_BIN, make_lambda_client

WRONG_SECRET = "x" * 40


def test_admin_key_is_accepted(server):
    client = make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    resp = client.list_functions()
    assert h.http_status(resp) == 200
    assert isinstance(resp["Functions"], list)


def test_wrong_secret_is_invalid_signature(server):
    client = make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, WRONG_SECRET)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_functions()
    assert h.error_code(e.value) == "InvalidSignatureException"
    assert h.http_status(e.value) == 403


def test_wrong_secret_is_rejected_for_invoke(server):
    # Invoke carries no Content-Type and extra signed x-amz-* headers; it must be checked too.
    client = make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, WRONG_SECRET)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.invoke(FunctionName=h.unique_name("any"), Payload=b"{}", LogType="Tail")
    assert h.error_code(e.value) == "InvalidSignatureException"
    assert h.http_status(e.value) == 403


def test_unknown_access_key_is_unrecognized(server):
    client = make_lambda_client(server.url, "AKIDNIMBUSUNKNOWN999", ADMIN_SECRET_ACCESS_KEY)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_functions()
    assert h.error_code(e.value) == "UnrecognizedClientException"
    assert h.http_status(e.value) == 403


def test_unsigned_request_is_rejected(server):
    client = make_lambda_client(
        server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, signature_version=botocore.UNSIGNED
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_functions()
    assert h.error_code(e.value) == "MissingAuthenticationTokenException" or h.http_status(e.value) == 403, (
        e.value.response
    )


# --- Requests signed by hand, with a chosen clock ----------------------------------------------


def signed_get(url, path, monkeypatch, age=datetime.timedelta(0)):
    """GET url+path signed with the admin key as if sent `age` ago; returns (status, headers, body)."""
    signing_time = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - age
    request = AWSRequest(method="GET", url=url + path)
    creds = Credentials(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    with monkeypatch.context() as m:
        # SigV4Auth reads the clock through botocore.auth.get_current_datetime.
        m.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: signing_time)
        botocore.auth.SigV4Auth(creds, "lambda", h.REGION).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, headers=dict(prepared.headers.items()), method="GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_hand_signed_request_is_accepted(server, monkeypatch):
    # Control for the expired-signature test below: the same signing path with the current clock.
    status, _, body = signed_get(server.url, "/2015-03-31/functions", monkeypatch)
    assert status == 200, body
    assert "Functions" in json.loads(body)


def test_signature_expired(server, monkeypatch):
    status, headers, body = signed_get(
        server.url, "/2015-03-31/functions", monkeypatch, age=datetime.timedelta(minutes=20)
    )
    error_type = (headers.get("x-amzn-ErrorType") or "").split(":")[0]
    doc = json.loads(body) if body else {}
    message = doc.get("message") or doc.get("Message") or ""
    assert error_type == "InvalidSignatureException", (status, dict(headers), body)
    assert "Signature expired" in message, message
    assert status in (400, 403)


# --- Keys managed with the CLI -------------------------------------------------------------------


def nimbus_cli(server, *args):
    env = dict(os.environ)
    env["NIMBUS_ACCESS_KEY_ID"] = ADMIN_ACCESS_KEY_ID
    env["NIMBUS_SECRET_ACCESS_KEY"] = ADMIN_SECRET_ACCESS_KEY
    env.pop("NIMBUS_ENDPOINT", None)
    proc = subprocess.run(
        [str(NIMBUS_BIN), *args, "--endpoint", server.url],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"nimbus {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_cli_created_key_works_until_removed(server):
    created = json.loads(nimbus_cli(server, "keys", "create", "--json"))
    key_id = created["access_key_id"]
    secret = created["secret_access_key"]
    assert key_id and secret and key_id != ADMIN_ACCESS_KEY_ID

    client = make_lambda_client(server.url, key_id, secret)
    resp = client.list_functions()
    assert h.http_status(resp) == 200
    assert "Functions" in resp

    nimbus_cli(server, "keys", "rm", key_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_functions()
    assert h.error_code(e.value) == "UnrecognizedClientException"
    # The admin key is unaffected.
    admin = make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    assert h.http_status(admin.list_functions()) == 200
