"""Two nodes on one PostgreSQL database are one Nimbus.

Each test changes something through node A and watches node B, talking to
each node directly (not through the proxy): a change made through one node
must be in force on the other within one second (the change feed), a message
sent through one must wake a long poll on the other at once, and the master
key must be the same on every node. Runs in the single-node pass only (it
builds its own cluster).
"""

import base64
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import lambda_helpers as h
import messaging_helpers as m
from conftest import CLUSTER_NODES, NIMBUS_BIN, NimbusCluster
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, native
from test_apigw_management import WS_HANDLER, MiniWebSocket

pytestmark = pytest.mark.skipif(CLUSTER_NODES >= 2, reason="builds its own cluster; runs in the single-node pass")

# A change is in force on the other node within this many seconds.
PROPAGATION_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    c = NimbusCluster(tmp / "data", tmp, ["--test-clock"], nodes=2).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def a(cluster):
    return cluster.nodes[0]


@pytest.fixture(scope="module")
def b(cluster):
    return cluster.nodes[1]


def lam(node):
    return h.make_lambda_client(node.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)


def within(what, check, limit=PROPAGATION_S):
    """Polls `check` until it returns a true value; fails unless that took at
    most `limit` seconds. Returns (value, seconds taken)."""
    start = time.monotonic()
    last = None
    while True:
        try:
            value = check()
            if value:
                return value, time.monotonic() - start
        except Exception as e:  # noqa: BLE001 — the last failure is reported below
            last = e
        elapsed = time.monotonic() - start
        if elapsed > limit:
            pytest.fail(f"{what}: not in force on the other node after {elapsed:.2f}s (last: {last!r})")
        time.sleep(0.02)


def invoke(node, name, event=None, qualifier=None):
    kwargs = {"FunctionName": name, "Payload": json.dumps(event or {})}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    r = lam(node).invoke(**kwargs)
    assert "FunctionError" not in r, h.read_payload(r)
    return h.read_payload(r)


def create(node, name, version="v1", **extra):
    lam(node).create_function(
        FunctionName=name, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
        Code={"ZipFile": h.handler_zip(version)}, **extra,
    )


def gateway_get(node, path):
    try:
        with urllib.request.urlopen(node.gateway_url + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_function_created_on_one_node_runs_on_the_other(a, b):
    name = h.unique_name()
    create(a, name)
    body, _ = within("a new function", lambda: invoke(b, name))
    assert body["version"] == "v1"


def test_new_code_replaces_warm_instances_on_the_other_node(a, b):
    name = h.unique_name()
    create(a, name)
    within("a new function", lambda: invoke(b, name))
    assert invoke(b, name)["version"] == "v1"  # B now has a warm v1 instance
    lam(a).update_function_code(FunctionName=name, ZipFile=h.handler_zip("v2"))
    within("new code", lambda: invoke(b, name)["version"] == "v2")
    # And it stays replaced: no old instance answers again.
    for _ in range(5):
        assert invoke(b, name)["version"] == "v2"


def test_configuration_changes_reach_the_other_node(a, b):
    name = h.unique_name()
    create(a, name, Environment={"Variables": {"COLOUR": "red"}})
    within("a new function", lambda: invoke(b, name, {"action": "env", "keys": ["COLOUR"]})["COLOUR"] == "red")
    lam(a).update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOUR": "blue"}})
    within("an environment change",
           lambda: invoke(b, name, {"action": "env", "keys": ["COLOUR"]})["COLOUR"] == "blue")


def test_an_alias_moved_on_one_node_routes_on_the_other(a, b):
    name = h.unique_name()
    create(a, name)
    v1 = lam(a).publish_version(FunctionName=name)["Version"]
    lam(a).update_function_code(FunctionName=name, ZipFile=h.handler_zip("v2"))
    v2 = lam(a).publish_version(FunctionName=name)["Version"]
    lam(a).create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    within("a new alias", lambda: invoke(b, name, qualifier="live")["version"] == "v1")
    lam(a).update_alias(FunctionName=name, Name="live", FunctionVersion=v2)
    within("a moved alias", lambda: invoke(b, name, qualifier="live")["version"] == "v2")


def test_a_deleted_function_is_gone_on_the_other_node(a, b):
    name = h.unique_name()
    create(a, name)
    within("a new function", lambda: invoke(b, name))
    lam(a).delete_function(FunctionName=name)

    def gone():
        try:
            lam(b).invoke(FunctionName=name, Payload=b"{}")
            return False
        except ClientError as e:
            return h.error_code(e) == "ResourceNotFoundException"

    within("a deletion", gone)


def test_routes_and_function_urls_reach_the_other_gateway(a, b):
    name = h.unique_name()
    create(a, name)
    path = f"/{name}/hello"
    status, body = native(a, "POST", "/v1/routes", {"route": f"GET {path}", "function": name})
    assert status == 201, body
    within("a new route", lambda: gateway_get(b, path)[0] == 200)
    status, _ = native(a, "DELETE", f"/v1/routes/{body['id']}")
    assert status == 204
    within("a removed route", lambda: gateway_get(b, path)[0] == 404)

    url = lam(a).create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    url_path = url.split("/@url/", 1)[1]
    within("a new function URL", lambda: gateway_get(b, "/@url/" + url_path)[0] == 200)
    lam(a).delete_function_url_config(FunctionName=name)
    within("a deleted function URL", lambda: gateway_get(b, "/@url/" + url_path)[0] == 404)


def test_a_key_revoked_on_one_node_stops_working_on_the_other(a, b):
    status, key = native(a, "POST", "/v1/keys", {"description": "cluster test"})
    assert status in (200, 201), key
    key_id, secret = key["access_key_id"], key["secret_access_key"]
    within("a new key", lambda: native(b, "GET", "/v1/functions", key_id=key_id, secret=secret)[0] == 200)
    assert native(b, "GET", "/v1/functions", key_id=key_id, secret=secret)[0] == 200  # cached on B
    status, _ = native(a, "DELETE", f"/v1/keys/{key_id}")
    assert status in (200, 204)
    within("a revoked key",
           lambda: native(b, "GET", "/v1/functions", key_id=key_id, secret=secret)[0] in (401, 403))


def test_a_grant_made_on_one_node_holds_on_the_other(a, b):
    name = h.unique_name()
    queue = h.unique_name("granted")
    queue_url = m.client("sqs", a).create_queue(QueueName=queue)["QueueUrl"]
    source = f'''
import sys
sys.path.append({m.SITE_PACKAGES!r})
import boto3

def handler(event, context):
    try:
        boto3.client("sqs").send_message(QueueUrl={queue_url!r}, MessageBody="hi")
        return {{"sent": True}}
    except Exception as e:
        return {{"denied": type(e).__name__ + ": " + str(e)}}
'''
    lam(a).create_function(FunctionName=name, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler="app.handler",
                           Code={"ZipFile": h.make_zip({"app.py": source})}, Timeout=30)
    first, _ = within("a new function", lambda: invoke(b, name))
    assert "denied" in first, first
    m.grant(a, name, f"sqs:{queue}")
    within("a grant", lambda: invoke(b, name).get("sent"))


def test_a_send_on_one_node_wakes_a_long_poll_on_the_other(a, b):
    sqs_a, sqs_b = m.client("sqs", a), m.client("sqs", b)
    url = sqs_a.create_queue(QueueName=h.unique_name("q"))["QueueUrl"]
    within("a new queue", lambda: sqs_b.get_queue_url(QueueName=url.rsplit("/", 1)[1]))
    got = {}

    def poll():
        got["messages"] = sqs_b.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
        got["at"] = time.monotonic()

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1.0)  # the poll is waiting on B
    sent = time.monotonic()
    sqs_a.send_message(QueueUrl=url, MessageBody="wake up")
    t.join(15)
    assert [x["Body"] for x in got["messages"]] == ["wake up"]
    woke = got["at"] - sent
    assert woke < 0.5, f"the long poll on B returned {woke:.2f}s after the send on A"


def test_an_async_event_accepted_by_one_node_runs(a, b):
    name = h.unique_name()
    create(a, name)
    marker = h.unique_name("mark")
    r = lam(b).invoke(FunctionName=name, InvocationType="Event",
                      Payload=json.dumps({"action": "print", "line": marker}))
    assert r["StatusCode"] == 202

    def ran():
        status, body = native(a, "GET", f"/v1/functions/{name}/logs")
        return status == 200 and marker in json.dumps(body)

    within("an asynchronous event's log line, read on the other node", ran, limit=20)


def test_a_schedule_created_on_one_node_is_armed_on_the_other(a, b, cluster):
    name = h.unique_name()
    create(a, name)
    marker = h.unique_name("tick")
    status, body = native(a, "POST", "/v1/schedules", {
        "name": marker, "expression": "rate(1 minute)", "function": name,
        "input": {"action": "print", "line": marker},
    })
    assert status in (200, 201), body
    time.sleep(PROPAGATION_S)
    # Only B's clock moves: if B did not arm the schedule, nothing fires.
    assert native(b, "POST", "/v1/debug/clock", {"advance_s": 61})[0] in (200, 204)

    def fired():
        status, body = native(b, "GET", f"/v1/functions/{name}/logs")
        return status == 200 and marker in json.dumps(body)

    within("a schedule armed on the other node", fired, limit=15)


def connections_api(node, mark_forwarded=False):
    """boto3's connections client on `node`'s gateway; `mark_forwarded` adds
    the header nodes put on a request they forward (after signing, as they do)."""
    api = boto3.client(
        "apigatewaymanagementapi", endpoint_url=node.gateway_url + "/$default", region_name=h.REGION,
        aws_access_key_id=ADMIN_ACCESS_KEY_ID, aws_secret_access_key=ADMIN_SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}),
    )
    if mark_forwarded:
        def mark(request, **_):
            request.headers["x-nimbus-forwarded-by"] = "client"
        api.meta.events.register("before-send.apigatewaymanagementapi.*", mark)
    return api


def test_a_websocket_on_one_node_is_reached_through_the_other(a, b):
    name = h.unique_name("ws")
    lam(a).create_function(
        FunctionName=name, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
        Code={"ZipFile": h.make_zip({"app.py": WS_HANDLER})},
        Tags={"nimbus:permissions": "execute-api:nimbus"},
    )
    for route in ("$connect", "$default", "whoami"):
        status, body = native(a, "POST", "/v1/routes", {"route": route, "api": "websocket", "function": name})
        assert status in (200, 201), body
    ws = MiniWebSocket(a.gateway_url)
    ws.send_text(json.dumps({"action": "whoami"}))
    conn_id = json.loads(ws.recv()[1])["connectionId"]
    via_b = connections_api(b)

    via_b.post_to_connection(ConnectionId=conn_id, Data=b"hello through B")
    assert ws.recv() == (1, b"hello through B")
    info = via_b.get_connection(ConnectionId=conn_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    # A request already forwarded is not forwarded again (one hop at most).
    with pytest.raises(via_b.exceptions.GoneException):
        connections_api(b, mark_forwarded=True).get_connection(ConnectionId=conn_id)
    via_b.delete_connection(ConnectionId=conn_id)
    opcode, payload = ws.recv()
    assert opcode == 8 and payload[:2] == b"\x03\xe8"  # 1000, closed normally

    def gone_on_both():
        for node in (a, b):
            with pytest.raises(via_b.exceptions.GoneException):
                connections_api(node).post_to_connection(ConnectionId=conn_id, Data=b"x")
        return True

    within("a closed connection", gone_on_both, limit=5)


def run_node(cluster, tmp_path, env_extra, *extra):
    env = {k: v for k, v in os.environ.items() if k != "NIMBUS_MASTER_KEY"}
    env.update(env_extra)
    return subprocess.run(
        [str(NIMBUS_BIN), "up", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "node"), "--postgres", cluster.database_url(), *extra],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_without_a_master_key_a_node_refuses_to_start_and_says_how_to_make_one(cluster, tmp_path):
    r = run_node(cluster, tmp_path, {})
    assert r.returncode != 0
    assert "master key" in r.stderr and "head -c 32 /dev/urandom" in r.stderr, r.stderr


def test_a_node_with_another_master_key_refuses_to_start(cluster, tmp_path):
    other = base64.b64encode(os.urandom(32)).decode()
    r = run_node(cluster, tmp_path, {"NIMBUS_MASTER_KEY": other})
    assert r.returncode != 0
    assert "not the one that sealed" in r.stderr, r.stderr


# How long a mapping's poller lease lasts (LEASE_TTL in
# crates/nimbus-engine/src/sources/queue_mappings.rs), and how often a node
# that does not hold it tries to take it.
MAPPING_LEASE_TTL_S = 10
MAPPING_LEASE_RETRY_S = 2

POLLED_SOURCE = """\
import json, os

def handler(event, context):
    for r in event["Records"]:
        print("POLLED " + json.dumps({"body": r["body"], "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"]}))
"""


def listening_ports(pid):
    """The TCP ports process `pid` listens on (its sockets' inodes, looked up
    in the kernel's tables)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def polled_on(nodes, reader, name):
    """Each message the function got, and the index of the node that ran it:
    the one serving its instance's Runtime API (instances are sandboxed, and
    the listener is the node's). Instances stay warm, so a live node still
    listens for the instances that ran the messages read here."""
    ports = {i: listening_ports(n.proc.pid) for i, n in enumerate(nodes) if n.proc.poll() is None}
    out = {}
    for line in m.log_lines(reader, name, "POLLED "):
        port = int(line["runtime_api"].rsplit(":", 1)[1])
        out[line["body"]] = next((i for i, p in ports.items() if port in p), None)
    return out


@pytest.mark.parametrize("stop_signal", ["SIGKILL", "SIGTERM"])
def test_a_mappings_poller_runs_on_one_node_and_moves_to_the_other_when_that_node_stops(tmp_path, stop_signal):
    c = NimbusCluster(tmp_path / "data", tmp_path, nodes=2).start()
    try:
        a, b = c.nodes
        name = h.unique_name()
        lam(a).create_function(FunctionName=name, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler="app.handler",
                               Code={"ZipFile": h.make_zip({"app.py": POLLED_SOURCE})}, Timeout=30)
        sqs_a, sqs_b = m.client("sqs", a), m.client("sqs", b)
        url = sqs_a.create_queue(QueueName=h.unique_name("q"))["QueueUrl"]
        arn = sqs_a.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        within("a new queue", lambda: sqs_b.get_queue_url(QueueName=url.rsplit("/", 1)[1]))
        within("a new function", lambda: lam(b).get_function(FunctionName=name))
        lam(b).create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1)

        # Both nodes follow the mapping; one polls it. Batches of one message
        # sent through both nodes all run on that one node.
        first = [f"first-{i}" for i in range(12)]
        for i, body in enumerate(first):
            (sqs_a if i % 2 else sqs_b).send_message(QueueUrl=url, MessageBody=body)
        ran = m.wait_for("the first messages to be polled",
                         lambda: (p := polled_on(c.nodes, a, name)) and set(first) <= set(p) and p, c)
        holders = {ran[body] for body in first}
        assert len(holders) == 1 and None not in holders, f"one mapping was polled by both nodes: {ran}"
        [holder] = holders
        survivor = c.nodes[1 - holder]

        # The holder stops: the other node takes the mapping over within one
        # lease TTL (at once when the holder released it on a clean stop).
        c.nodes[holder].proc.send_signal(getattr(signal, stop_signal))
        c.nodes[holder].proc.wait(timeout=30)
        stopped = time.monotonic()
        m.client("sqs", survivor).send_message(QueueUrl=url, MessageBody="after")
        limit = MAPPING_LEASE_TTL_S + MAPPING_LEASE_RETRY_S + 3
        ran, took = within("the mapping on the surviving node",
                           lambda: (p := polled_on(c.nodes, survivor, name)).get("after") is not None and p,
                           limit=limit)
        assert ran["after"] == 1 - holder, ran
        if stop_signal == "SIGTERM":
            assert took < MAPPING_LEASE_RETRY_S + 3, f"a released mapping was taken over after {took:.1f}s"
        print(f"taken over {time.monotonic() - stopped:.1f}s after the holder stopped ({stop_signal})")
    finally:
        c.stop()
