"""Asynchronous invocation (`InvocationType="Event"`): 202 and later execution, retries
on function errors, event invoke configs (Put/Get/Update/DeleteFunctionEventInvokeConfig),
OnSuccess/OnFailure function destinations, and the dead-letter store (native API
`/v1/dlq` and `nimbus dlq`).

The module runs its own server started with `--async-retry-delay 1s`, so a full retry
cycle (attempts at t, t+1 s, t+3 s) takes about 3 seconds instead of 3 minutes.

An async invocation is observed through the native logs API
(`GET /v1/functions/{name}/logs`): the handlers print marker lines, and the platform's
`START RequestId: <id> Version: …` lines count the attempts. Every test uses fresh
functions, so all the lines of a function's log belong to that test.
"""

import datetime
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

import lambda_helpers as h
from conftest import NimbusServer
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, NIMBUS_BIN, native

RETRY_DELAY_S = 1
POLL_TIMEOUT_S = 15
POLL_INTERVAL_S = 0.2
MAX_ASYNC_PAYLOAD_BYTES = 1_048_576
CLI_TIMEOUT_S = 60

# Prints a marker for every attempt, then fails when asked to.
ASYNC_SOURCE = """\
import json


def handler(event, context):
    print("ran " + str(event.get("n")), flush=True)
    if event.get("fail"):
        raise ValueError("boom " + str(event.get("n")))
    return {"n": event.get("n"), "ok": True}
"""

# A destination: prints the whole record it receives on one line.
DEST_SOURCE = """\
import json


def handler(event, context):
    print("DEST " + json.dumps(event), flush=True)
    return None
"""

START_RE = re.compile(r"^START RequestId: (\S+)")
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Overrides conftest's `server` for this module: short async retry delay."""
    tmp = tmp_path_factory.mktemp("nimbus-async")
    srv = NimbusServer(tmp / "data", tmp, ["--async-retry-delay", f"{RETRY_DELAY_S}s"]).start()
    yield srv
    srv.stop()


@pytest.fixture
def async_function(create_function):
    """Factory: a function running ASYNC_SOURCE; keyword arguments go to CreateFunction."""

    def create(**kwargs):
        return create_function(zip_bytes=h.make_zip({"app.py": ASYNC_SOURCE}), **kwargs)

    return create


@pytest.fixture
def dest_function(create_function):
    """Factory: a destination function that prints the record it receives."""

    def create(**kwargs):
        return create_function(name=h.unique_name("dest"), zip_bytes=h.make_zip({"app.py": DEST_SOURCE}), **kwargs)

    return create


# --------------------------------------------------------------------------- native API


def function_logs(server, name):
    status, body = native(server, "GET", f"/v1/functions/{name}/logs?limit=1000")
    assert status == 200, f"GET logs of {name}: {status} {body!r}"
    return body["events"]


def starts(server, name):
    """The START lines of a function's log, in order: [(request id, ts_ms), …]."""
    out = []
    for e in function_logs(server, name):
        m = START_RE.match(e["message"])
        if m:
            out.append((m.group(1), e["ts_ms"]))
    return out


def lines_containing(server, name, text):
    return [e for e in function_logs(server, name) if text in e["message"]]


def dlq_events(server, function=None):
    status, body = native(server, "GET", "/v1/dlq")
    assert status == 200, f"GET /v1/dlq: {status} {body!r}"
    assert isinstance(body, dict) and isinstance(body.get("events"), list), body
    return [e for e in body["events"] if function is None or e["function"] == function]


def wait_until(what, check, server, *names, timeout=POLL_TIMEOUT_S):
    """Polls `check()` until it returns something truthy; on timeout fails with the logs of `names`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- logs of {n}:\n" + "\n".join(e["message"] for e in function_logs(server, n)) for n in names
            )
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}\nserver stderr (tail):\n{server.stderr()[-4000:]}")
        time.sleep(POLL_INTERVAL_S)


def invoke_event(client, name, event, **kwargs):
    resp = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **kwargs)
    assert resp["StatusCode"] == 202, resp
    assert resp["Payload"].read() == b""
    return resp


def destination_records(server, dest_name):
    records = []
    for e in lines_containing(server, dest_name, "DEST "):
        text = e["message"]
        records.append(json.loads(text[text.index("DEST ") + len("DEST "):]))
    return records


def assert_recent_iso_timestamp(value):
    assert isinstance(value, str) and ISO_UTC_RE.match(value), f"timestamp {value!r} is not ISO-8601 UTC (…Z)"
    ts = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert abs(ts.timestamp() - time.time()) < 300, value


# --------------------------------------------------------------------------- Event invoke


def test_event_invoke_returns_202_and_runs(lambda_client, server, async_function):
    fn = async_function()
    token = h.unique_name("evt")
    invoke_event(lambda_client, fn.name, {"n": token})
    hits = wait_until(f"marker 'ran {token}'", lambda: lines_containing(server, fn.name, f"ran {token}"), server, fn.name)
    assert hits[0]["request_id"], hits
    # Exactly one attempt for a successful event, and its lines carry its request id.
    time.sleep(1)
    attempts = starts(server, fn.name)
    assert len(attempts) == 1, attempts
    assert hits[0]["request_id"] == attempts[0][0]


def test_ten_events_all_run(lambda_client, server, async_function):
    fn = async_function()
    tokens = [f"{h.unique_name('many')}-{i}" for i in range(10)]
    for t in tokens:
        invoke_event(lambda_client, fn.name, {"n": t})

    def all_ran():
        messages = [e["message"] for e in function_logs(server, fn.name)]
        missing = [t for t in tokens if not any(f"ran {t}" in m for m in messages)]
        return not missing

    wait_until("all 10 markers", all_ran, server, fn.name)
    request_ids = {rid for rid, _ in starts(server, fn.name)}
    assert len(request_ids) >= 10, request_ids


def test_event_payload_over_1mb_is_refused(lambda_client, async_function):
    fn = async_function()
    overhead = len(json.dumps({"pad": ""}))
    too_big = json.dumps({"pad": "x" * (MAX_ASYNC_PAYLOAD_BYTES + 1 - overhead)}).encode()
    assert len(too_big) == MAX_ASYNC_PAYLOAD_BYTES + 1
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=too_big)
    assert h.error_code(e.value) == "RequestEntityTooLargeException"
    assert h.http_status(e.value) == 413

    at_limit = json.dumps({"pad": "x" * (MAX_ASYNC_PAYLOAD_BYTES - overhead)}).encode()
    assert len(at_limit) == MAX_ASYNC_PAYLOAD_BYTES
    resp = lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=at_limit)
    assert resp["StatusCode"] == 202


def test_event_invoke_unknown_function(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.invoke(FunctionName=h.unique_name("missing"), InvocationType="Event", Payload=b"{}")
    assert h.http_status(e.value) == 404


def test_event_invoke_non_json_payload(lambda_client, async_function):
    fn = async_function()
    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException) as e:
        lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=b"not json {")
    assert h.http_status(e.value) == 400


# --------------------------------------------------------------------------- retries and DLQ


def test_failing_event_is_retried_then_dead_lettered_and_replayed(lambda_client, server, async_function):
    fn = async_function()
    token = h.unique_name("fail")
    event = {"n": token, "fail": True}
    invoke_event(lambda_client, fn.name, event)

    attempts = wait_until("3 attempts", lambda: (lambda s: s if len(s) >= 3 else None)(starts(server, fn.name)), server, fn.name)
    entries = wait_until("a DLQ entry", lambda: dlq_events(server, fn.name), server, fn.name)
    time.sleep(1)  # let the log pipeline flush anything late
    attempts = starts(server, fn.name)
    assert len(attempts) == 3, attempts

    # The same request id on every attempt, also on the handler's own lines.
    request_id = attempts[0][0]
    assert [rid for rid, _ in attempts] == [request_id] * 3
    markers = lines_containing(server, fn.name, f"ran {token}")
    assert len(markers) == 3
    assert {m["request_id"] for m in markers} == {request_id}

    # Retry delays d, 2d with d = 1 s (START to START also includes the run time).
    gap1 = attempts[1][1] - attempts[0][1]
    gap2 = attempts[2][1] - attempts[1][1]
    assert 0.9 * RETRY_DELAY_S * 1000 <= gap1 <= 6000, (gap1, gap2)
    assert 0.9 * 2 * RETRY_DELAY_S * 1000 <= gap2 <= 8000, (gap1, gap2)

    # Dead letter.
    assert len(entries) == 1, entries
    dead = entries[0]
    assert set(dead) >= {"id", "request_id", "function", "payload", "attempts", "error", "failed_at"}, dead
    assert dead["request_id"] == request_id
    assert dead["function"] == fn.name
    assert dead["payload"] == event
    assert dead["attempts"] == 3
    assert isinstance(dead["error"], str) and dead["error"], dead
    assert "boom" in dead["error"] or "ValueError" in dead["error"], dead
    assert dead["failed_at"], dead

    # Replay: it runs again.
    status, body = native(server, "POST", f"/v1/dlq/{dead['id']}/replay")
    assert status == 202, (status, body)
    wait_until(
        "a 4th attempt after replay",
        lambda: len(starts(server, fn.name)) >= 4,
        server,
        fn.name,
    )
    assert len(lines_containing(server, fn.name, f"ran {token}")) >= 4


def test_dlq_requires_a_key(server):
    req = urllib.request.Request(server.url + "/v1/dlq", method="GET")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 401


def test_max_retry_attempts_zero_means_one_attempt(lambda_client, server, async_function):
    fn = async_function()
    lambda_client.put_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=0)
    token = h.unique_name("once")
    event = {"n": token, "fail": True}
    invoke_event(lambda_client, fn.name, event)

    entries = wait_until("a DLQ entry", lambda: dlq_events(server, fn.name), server, fn.name)
    assert len(entries) == 1, entries
    assert entries[0]["attempts"] == 1
    assert entries[0]["payload"] == event
    # A retry would have come after 1 s; wait longer than that.
    time.sleep(3 * RETRY_DELAY_S)
    attempts = starts(server, fn.name)
    assert len(attempts) == 1, attempts
    assert len(lines_containing(server, fn.name, f"ran {token}")) == 1
    assert entries[0]["request_id"] == attempts[0][0]


def test_dlq_cli_ls_and_replay(lambda_client, server, async_function):
    fn = async_function()
    lambda_client.put_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=0)
    token = h.unique_name("cli")
    event = {"n": token, "fail": True}
    invoke_event(lambda_client, fn.name, event)

    env = dict(os.environ)
    env.update(
        NIMBUS_ENDPOINT=server.url,
        NIMBUS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY_ID,
        NIMBUS_SECRET_ACCESS_KEY=ADMIN_SECRET_ACCESS_KEY,
    )

    def nimbus(*args):
        return subprocess.run(
            [str(NIMBUS_BIN), *args], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        )

    def cli_entries():
        proc = nimbus("dlq", "ls", "--json")
        assert proc.returncode == 0, f"nimbus dlq ls exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        try:
            listed = json.loads(proc.stdout)
        except ValueError as e:
            raise AssertionError(f"nimbus dlq ls --json did not print JSON ({e}):\n{proc.stdout}") from e
        # The spec does not fix whether the CLI prints the array or the API's object.
        events = listed["events"] if isinstance(listed, dict) else listed
        assert isinstance(events, list), listed
        return [e for e in events if e.get("function") == fn.name]

    entries = wait_until("a DLQ entry in `nimbus dlq ls --json`", cli_entries, server, fn.name)
    assert len(entries) == 1, entries
    assert entries[0]["payload"] == event
    assert entries[0]["attempts"] == 1
    assert entries[0]["id"] == dlq_events(server, fn.name)[0]["id"]

    proc = nimbus("dlq", "replay", str(entries[0]["id"]))
    assert proc.returncode == 0, f"nimbus dlq replay exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    wait_until("a 2nd attempt after `nimbus dlq replay`", lambda: len(starts(server, fn.name)) >= 2, server, fn.name)


# --------------------------------------------------------------------------- destinations


def test_on_success_destination_gets_the_record(lambda_client, server, async_function, dest_function):
    dest = dest_function()
    fn = async_function()
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name,
        DestinationConfig={"OnSuccess": {"Destination": h.function_arn(dest.name)}},
    )
    token = h.unique_name("ok")
    event = {"n": token}
    invoke_event(lambda_client, fn.name, event)

    records = wait_until("a record at the OnSuccess destination", lambda: destination_records(server, dest.name), server, fn.name, dest.name)
    assert len(records) == 1, records
    record = records[0]
    attempts = starts(server, fn.name)
    assert len(attempts) == 1, attempts

    assert record["version"] == "1.0"
    assert_recent_iso_timestamp(record["timestamp"])
    assert record["requestContext"] == {
        "requestId": attempts[0][0],
        "functionArn": h.function_arn(fn.name) + ":$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == event
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"n": token, "ok": True}


def test_on_failure_destination_gets_the_record(lambda_client, server, async_function, dest_function):
    dest = dest_function()
    fn = async_function()
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name,
        DestinationConfig={"OnFailure": {"Destination": h.function_arn(dest.name)}},
    )
    token = h.unique_name("ko")
    event = {"n": token, "fail": True}
    invoke_event(lambda_client, fn.name, event)

    records = wait_until("a record at the OnFailure destination", lambda: destination_records(server, dest.name), server, fn.name, dest.name)
    assert len(records) == 1, records
    record = records[0]
    attempts = starts(server, fn.name)
    assert len(attempts) == 3, attempts

    assert record["version"] == "1.0"
    assert_recent_iso_timestamp(record["timestamp"])
    assert record["requestContext"] == {
        "requestId": attempts[0][0],
        "functionArn": h.function_arn(fn.name) + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == event
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    error = record["responsePayload"]
    assert isinstance(error, dict), error
    assert error["errorType"] == "ValueError"
    assert f"boom {token}" in error["errorMessage"]

    # With an OnFailure destination the event is not dead-lettered.
    assert dlq_events(server, fn.name) == []


def test_on_failure_invoke_count_follows_max_retry_attempts(lambda_client, server, async_function, dest_function):
    dest = dest_function()
    fn = async_function()
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": h.function_arn(dest.name)}},
    )
    event = {"n": h.unique_name("ko1"), "fail": True}
    invoke_event(lambda_client, fn.name, event)

    records = wait_until("a record at the OnFailure destination", lambda: destination_records(server, dest.name), server, fn.name, dest.name)
    assert len(records) == 1, records
    assert records[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert records[0]["requestContext"]["approximateInvokeCount"] == 2
    assert records[0]["requestPayload"] == event
    assert len(starts(server, fn.name)) == 2


def test_success_does_not_go_to_on_failure(lambda_client, server, async_function, dest_function):
    ok_dest = dest_function()
    ko_dest = dest_function()
    fn = async_function()
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name,
        DestinationConfig={
            "OnSuccess": {"Destination": h.function_arn(ok_dest.name)},
            "OnFailure": {"Destination": h.function_arn(ko_dest.name)},
        },
    )
    event = {"n": h.unique_name("both")}
    invoke_event(lambda_client, fn.name, event)
    records = wait_until("a record at the OnSuccess destination", lambda: destination_records(server, ok_dest.name), server, fn.name, ok_dest.name)
    assert records[0]["requestContext"]["condition"] == "Success"
    time.sleep(1)
    assert destination_records(server, ko_dest.name) == []


# --------------------------------------------------------------------------- event invoke config


def test_event_invoke_config_crud(server, async_function, dest_function):
    # A private client so that the raw-response hook does not leak into other tests.
    client = h.make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    raw_bodies = []
    client.meta.events.register(
        "after-call.lambda.PutFunctionEventInvokeConfig",
        lambda http_response, **_: raw_bodies.append(http_response.content),
    )
    fn = async_function()
    ok_dest = dest_function()
    ko_dest = dest_function()
    qualified_arn = h.function_arn(fn.name) + ":$LATEST"

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_event_invoke_config(FunctionName=fn.name)

    destinations = {
        "OnSuccess": {"Destination": h.function_arn(ok_dest.name)},
        "OnFailure": {"Destination": h.function_arn(ko_dest.name)},
    }
    put = client.put_function_event_invoke_config(
        FunctionName=fn.name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120, DestinationConfig=destinations,
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["FunctionArn"] == qualified_arn
    assert put["MaximumRetryAttempts"] == 1
    assert put["MaximumEventAgeInSeconds"] == 120
    assert put["DestinationConfig"] == destinations
    assert isinstance(put["LastModified"], datetime.datetime)
    assert abs(put["LastModified"].timestamp() - time.time()) < 300
    # On the wire, LastModified is epoch seconds (a number), not a string.
    raw = json.loads(raw_bodies[-1])
    assert isinstance(raw["LastModified"], (int, float)) and not isinstance(raw["LastModified"], bool), raw

    got = client.get_function_event_invoke_config(FunctionName=fn.name)
    for key in ("FunctionArn", "MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig", "LastModified"):
        assert got[key] == put[key], key

    # Update merges.
    upd = client.update_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=2)
    assert upd["FunctionArn"] == qualified_arn
    assert upd["MaximumRetryAttempts"] == 2
    assert upd["MaximumEventAgeInSeconds"] == 120
    assert upd["DestinationConfig"] == destinations
    got = client.get_function_event_invoke_config(FunctionName=fn.name)
    assert got["MaximumRetryAttempts"] == 2
    assert got["MaximumEventAgeInSeconds"] == 120
    assert got["DestinationConfig"] == destinations

    # Put replaces.
    put2 = client.put_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=0)
    assert put2["MaximumRetryAttempts"] == 0
    got = client.get_function_event_invoke_config(FunctionName=fn.name)
    assert got["MaximumRetryAttempts"] == 0
    assert got.get("MaximumEventAgeInSeconds") in (None, 21600), got
    dc = got.get("DestinationConfig", {})
    assert dc.get("OnSuccess", {}).get("Destination") is None, got
    assert dc.get("OnFailure", {}).get("Destination") is None, got

    # Delete.
    resp = client.delete_function_event_invoke_config(FunctionName=fn.name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_event_invoke_config(FunctionName=fn.name)


def test_event_invoke_config_validation(server, async_function):
    # botocore checks only minimums client-side; turn that off so the server sees every value.
    client = h.make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, parameter_validation=False)
    fn = async_function()

    for bad in ({"MaximumRetryAttempts": 3}, {"MaximumRetryAttempts": -1},
                {"MaximumEventAgeInSeconds": 59}, {"MaximumEventAgeInSeconds": 21601}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.put_function_event_invoke_config(FunctionName=fn.name, **bad)
        assert h.error_code(e.value) in ("InvalidParameterValueException", "ValidationException"), (bad, e.value.response)
        assert h.http_status(e.value) == 400, bad

    with pytest.raises(client.exceptions.InvalidParameterValueException) as e:
        client.put_function_event_invoke_config(
            FunctionName=fn.name,
            DestinationConfig={"OnFailure": {"Destination": f"arn:aws:events:{h.REGION}:{h.ACCOUNT_ID}:event-bus/default"}},
        )
    assert h.http_status(e.value) == 400

    # Nothing was stored by the refused requests.
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_event_invoke_config(FunctionName=fn.name)

    # The edges of the ranges are accepted.
    lo = client.put_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60)
    assert (lo["MaximumRetryAttempts"], lo["MaximumEventAgeInSeconds"]) == (0, 60)
    hi = client.put_function_event_invoke_config(FunctionName=fn.name, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=21600)
    assert (hi["MaximumRetryAttempts"], hi["MaximumEventAgeInSeconds"]) == (2, 21600)


def test_event_invoke_config_unknown_function(lambda_client):
    name = h.unique_name("missing")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_event_invoke_config(FunctionName=name)


def test_undeliverable_failure_record_is_kept_as_a_dead_letter(lambda_client, server, async_function):
    # The OnFailure destination does not exist: the event must not vanish.
    fn = async_function()
    missing = h.function_arn(h.unique_name("nowhere"))
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name, MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": missing}}
    )
    event = {"n": h.unique_name("lost"), "fail": True}
    invoke_event(lambda_client, fn.name, event)
    entries = wait_until("a DLQ entry", lambda: dlq_events(server, fn.name), server, fn.name)
    assert entries[0]["payload"] == event
    assert "delivery" in entries[0]["error"], entries[0]
