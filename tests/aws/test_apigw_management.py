"""boto3's `apigatewaymanagementapi` against the gateway's connections endpoint.

The endpoint wants what AWS wants: a SigV4-signed request by a principal
allowed `execute-api:ManageConnections` (the operator's keys, or a function's
own credentials under its `execute-api:nimbus` grant); anything else is a 403
`ForbiddenException`.

A Python function behind a WebSocket route tells its client the connection
id through the connections endpoint (URL built from the event's domainName
and stage, as on AWS); the test then drives that connection with boto3:
post_to_connection (text and binary), get_connection, delete_connection and
GoneException. The WebSocket client is a minimal RFC 6455 client on a raw
socket, so the suite needs no extra package.
"""

import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

import lambda_helpers as h

WS_HANDLER = '''\
import datetime, hashlib, hmac, json, os, urllib.parse, urllib.request

def _mac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()

def signed_post(url, data):
    """POST signed with SigV4 for execute-api with the function's own
    credentials, as an SDK inside the function would sign it."""
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    region = os.environ.get("AWS_REGION", "us-east-1")
    scope = "%s/%s/execute-api/aws4_request" % (now[:8], region)
    canonical = "\\n".join(["POST", urllib.parse.quote(u.path), "", "host:" + u.netloc,
                            "x-amz-date:" + now, "", "host;x-amz-date", hashlib.sha256(data).hexdigest()])
    to_sign = "\\n".join(["AWS4-HMAC-SHA256", now, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _mac(("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode(), now[:8])
    for part in (region, "execute-api", "aws4_request"):
        key = _mac(key, part)
    auth = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=host;x-amz-date, Signature=%s" % (
        os.environ["AWS_ACCESS_KEY_ID"], scope, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest())
    req = urllib.request.Request(url, data=data, method="POST", headers={"x-amz-date": now, "authorization": auth})
    urllib.request.urlopen(req).read()

def handler(event, context):
    ctx = event["requestContext"]
    if ctx["routeKey"] == "whoami":
        # Tells the client its connection id through the connections endpoint.
        url = "http://%s/%s/@connections/%s" % (ctx["domainName"], ctx["stage"], ctx["connectionId"])
        data = json.dumps({"connectionId": ctx["connectionId"], "requestId": ctx["requestId"]}).encode()
        signed_post(url, data)
    return {"statusCode": 200}
'''


def api_request(server, method, path, body=None):
    req = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {h.ADMIN_ACCESS_KEY_ID}:{h.ADMIN_SECRET_ACCESS_KEY}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


class MiniWebSocket:
    """Just enough of RFC 6455 for text frames and close."""

    def __init__(self, base_url):
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """(opcode, payload) of the next frame."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return b0 & 0x0F, self._read(n)


@pytest.fixture(scope="module")
def ws_function(server, lambda_client):
    name = h.unique_name("ws")
    lambda_client.create_function(
        FunctionName=name,
        Runtime=h.RUNTIME,
        Role=h.ROLE_ARN,
        Handler=h.HANDLER,
        Code={"ZipFile": h.make_zip({"app.py": WS_HANDLER})},
        # The connections endpoint wants execute-api:ManageConnections, as on AWS.
        Tags={"nimbus:permissions": "execute-api:nimbus"},
    )
    for route in ("$connect", "$default", "whoami"):
        api_request(server, "POST", "/v1/routes", {"route": route, "api": "websocket", "function": name})
    return name


def management_client(server):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.gateway_url + "/$default",
        region_name=h.REGION,
        aws_access_key_id=h.ADMIN_ACCESS_KEY_ID,
        aws_secret_access_key=h.ADMIN_SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}),
    )


def test_post_get_delete_and_gone(server, ws_function):
    api = management_client(server)
    ws = MiniWebSocket(server.gateway_url)
    ws.send_text(json.dumps({"action": "whoami"}))
    opcode, payload = ws.recv()
    assert opcode == 1
    conn_id = json.loads(payload)["connectionId"]

    api.post_to_connection(ConnectionId=conn_id, Data=b"hello from boto3")
    assert ws.recv() == (1, b"hello from boto3")
    api.post_to_connection(ConnectionId=conn_id, Data=b"\x00\xff binary")
    assert ws.recv() == (2, b"\x00\xff binary")

    info = api.get_connection(ConnectionId=conn_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["ConnectedAt"] <= info["LastActiveAt"]

    api.delete_connection(ConnectionId=conn_id)
    opcode, payload = ws.recv()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1000

    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=conn_id, Data=b"x")
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId="no-such-connection")


def test_unsigned_or_ungranted_requests_are_forbidden(server, ws_function):
    ws = MiniWebSocket(server.gateway_url)
    ws.send_text(json.dumps({"action": "whoami"}))
    conn_id = json.loads(ws.recv()[1])["connectionId"]
    url = f"{server.gateway_url}/@connections/{conn_id}"
    for method in ("POST", "GET", "DELETE"):
        req = urllib.request.Request(url, data=b"x" if method == "POST" else None, method=method)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 403
        assert e.value.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert json.loads(e.value.read()) == {"message": "Missing Authentication Token"}

    wrong = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.gateway_url + "/$default",
        region_name=h.REGION,
        aws_access_key_id=h.ADMIN_ACCESS_KEY_ID,
        aws_secret_access_key="not-the-secret",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(wrong.exceptions.ForbiddenException):
        wrong.post_to_connection(ConnectionId=conn_id, Data=b"x")
    # The connection is untouched and still reachable by a signed caller.
    management_client(server).post_to_connection(ConnectionId=conn_id, Data=b"still here")
    assert ws.recv() == (1, b"still here")
