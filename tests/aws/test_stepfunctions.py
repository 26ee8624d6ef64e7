"""The Step Functions API subset through boto3's `stepfunctions` client.

Each API call is exercised with its success path and the modelled errors
(InvalidDefinition, StateMachineAlreadyExists, StateMachineDoesNotExist,
ExecutionAlreadyExists, ExecutionDoesNotExist, StateMachineTypeNotSupported,
InvalidArn, InvalidName, InvalidExecutionInput). Tasks run real Python
functions created through the Lambda API.

StartSyncExecution is modelled with the `sync-` host prefix (AWS serves it on
`sync-states.<region>.amazonaws.com`); with a plain endpoint URL the client
must be told not to inject it: `Config(inject_host_prefix=False)`.
"""

import json
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import lambda_helpers as h
from lambda_helpers import ACCOUNT_ID, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, REGION

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/sfn-role"
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}


def make_sfn(url, key=ADMIN_ACCESS_KEY_ID, secret=ADMIN_SECRET_ACCESS_KEY):
    return boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, inject_host_prefix=False),
    )


@pytest.fixture(scope="module")
def sfn(server):
    return make_sfn(server.url)


def code(exc):
    return exc.value.response["Error"]["Code"]


def create(sfn, definition, name=None, **kw):
    name = name or h.unique_name("sm")
    resp = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE, **kw)
    return resp["stateMachineArn"]


def wait_done(sfn, arn, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.1)


def history(sfn, arn, **kw):
    events, token = [], None
    while True:
        args = dict(executionArn=arn, **kw)
        if token:
            args["nextToken"] = token
        page = sfn.get_execution_history(**args)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


# ---- state machines ----


def test_create_describe_list_update_delete(sfn):
    name = h.unique_name("sm")
    arn = create(sfn, PASS, name)
    assert arn == f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
    d = sfn.describe_state_machine(stateMachineArn=arn)
    assert d["name"] == name and d["type"] == "STANDARD" and d["roleArn"] == ROLE
    assert json.loads(d["definition"]) == PASS
    assert d["creationDate"].year >= 2024
    listed = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    assert arn in listed

    new = {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "End": True}}}
    u = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(new))
    assert "updateDate" in u
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == new

    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert code(e) == "StateMachineDoesNotExist"


def test_list_state_machines_pages(sfn):
    for _ in range(3):
        create(sfn, PASS)
    page = sfn.list_state_machines(maxResults=2)
    assert len(page["stateMachines"]) == 2 and "nextToken" in page
    all_names = [m["name"] for p in sfn.get_paginator("list_state_machines").paginate(PaginationConfig={"PageSize": 2}) for m in p["stateMachines"]]
    assert len(all_names) == len(set(all_names)) >= 3


def test_invalid_definition(sfn):
    for bad in ["{not json", json.dumps({"StartAt": "X", "States": {}}),
                json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})]:
        with pytest.raises(ClientError) as e:
            sfn.create_state_machine(name=h.unique_name("sm"), definition=bad, roleArn=ROLE)
        assert code(e) == "InvalidDefinition"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    arn = create(sfn, PASS)
    with pytest.raises(ClientError) as e:
        sfn.update_state_machine(stateMachineArn=arn, definition="{}")
    assert code(e) == "InvalidDefinition"


def test_state_machine_already_exists_and_bad_names(sfn):
    name = h.unique_name("sm")
    arn = create(sfn, PASS, name)
    # The same request again is idempotent, as on AWS.
    assert create(sfn, PASS, name) == arn
    with pytest.raises(ClientError) as e:
        create(sfn, WAIT, name)
    assert code(e) == "StateMachineAlreadyExists"
    with pytest.raises(ClientError) as e:
        create(sfn, PASS, "has space")
    assert code(e) == "InvalidName"
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn="not-an-arn:x")
    assert code(e) in ("InvalidArn", "InvalidName")
    with pytest.raises(ClientError) as e:
        sfn.update_state_machine(stateMachineArn=arn.replace(name, "missing-" + name), definition=json.dumps(PASS))
    assert code(e) == "StateMachineDoesNotExist"


# ---- executions ----


def test_start_describe_and_history(sfn):
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.x, 1)"}, "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.sum", "NumericEquals": 3, "Next": "Yes"}], "Default": "No"},
        "Yes": {"Type": "Succeed"},
        "No": {"Type": "Fail", "Error": "Wrong", "Cause": "not 3"}}}
    sm = create(sfn, definition)
    resp = sfn.start_execution(stateMachineArn=sm, name="run-1", input=json.dumps({"x": 2}))
    arn = resp["executionArn"]
    assert arn == sm.replace(":stateMachine:", ":execution:") + ":run-1"
    d = wait_done(sfn, arn)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"sum": 3}
    assert d["name"] == "run-1" and d["stateMachineArn"] == sm and "stopDate" in d
    types = [e["type"] for e in history(sfn, arn)]
    assert types == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ChoiceStateEntered",
                     "ChoiceStateExited", "SucceedStateEntered", "SucceedStateExited", "ExecutionSucceeded"]
    events = history(sfn, arn)
    assert [e["id"] for e in events] == list(range(1, 9))
    assert json.loads(events[0]["executionStartedEventDetails"]["input"]) == {"x": 2}
    assert events[1]["stateEnteredEventDetails"]["name"] == "A"

    failed = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"x": 5}))["executionArn"]
    d = wait_done(sfn, failed)
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "Wrong", "not 3")
    assert history(sfn, failed)[-1]["executionFailedEventDetails"] == {"error": "Wrong", "cause": "not 3"}


def test_execution_errors(sfn):
    sm = create(sfn, PASS)
    arn = sfn.start_execution(stateMachineArn=sm, name="once")["executionArn"]
    wait_done(sfn, arn)
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm, name="once")
    assert code(e) == "ExecutionAlreadyExists"
    missing = arn.replace(":once", ":never")
    for call in (lambda: sfn.describe_execution(executionArn=missing),
                 lambda: sfn.get_execution_history(executionArn=missing),
                 lambda: sfn.stop_execution(executionArn=missing)):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "ExecutionDoesNotExist"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm + "-missing")
    assert code(e) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm, input="{oops")
    assert code(e) == "InvalidExecutionInput"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm, name="bad/name")
    assert code(e) == "InvalidName"
    with pytest.raises(ClientError) as e:
        sfn.describe_execution(executionArn="arn:aws:states:us-east-1:1:nonsense")
    assert code(e) == "InvalidArn"


def test_start_is_idempotent_while_running(sfn):
    sm = create(sfn, WAIT)
    first = sfn.start_execution(stateMachineArn=sm, name="same", input="{}")
    again = sfn.start_execution(stateMachineArn=sm, name="same", input="{}")
    assert again["executionArn"] == first["executionArn"]
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm, name="same", input='{"other": 1}')
    assert code(e) == "ExecutionAlreadyExists"
    sfn.stop_execution(executionArn=first["executionArn"])


def test_stop_execution(sfn):
    sm = create(sfn, WAIT)
    arn = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    stop = sfn.stop_execution(executionArn=arn, error="Halt", cause="test")
    assert "stopDate" in stop
    d = sfn.describe_execution(executionArn=arn)
    assert (d["status"], d["error"], d["cause"]) == ("ABORTED", "Halt", "test")
    types = [e["type"] for e in history(sfn, arn)]
    assert types[-2:] == ["WaitStateAborted", "ExecutionAborted"] or types[-1] == "ExecutionAborted"
    # Stopping again is harmless.
    sfn.stop_execution(executionArn=arn)


def test_list_executions_filter_and_pages(sfn):
    sm = create(sfn, PASS)
    arns = [sfn.start_execution(stateMachineArn=sm)["executionArn"] for _ in range(5)]
    for a in arns:
        wait_done(sfn, a)
    waiting = create(sfn, WAIT)
    running = sfn.start_execution(stateMachineArn=waiting)["executionArn"]
    page = sfn.list_executions(stateMachineArn=sm, maxResults=2)
    assert len(page["executions"]) == 2 and page["nextToken"]
    seen = [e["executionArn"] for p in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=sm, PaginationConfig={"PageSize": 2}) for e in p["executions"]]
    assert sorted(seen) == sorted(arns)
    assert seen[0] == arns[-1], "newest first"
    only = sfn.list_executions(stateMachineArn=waiting, statusFilter="RUNNING")["executions"]
    assert [e["executionArn"] for e in only] == [running]
    assert sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING")["executions"] == []
    with pytest.raises(ClientError) as e:
        sfn.list_executions(stateMachineArn=sm + "-missing")
    assert code(e) == "StateMachineDoesNotExist"
    sfn.stop_execution(executionArn=running)


def test_history_pages_and_reverse(sfn):
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": True,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}}
    sm = create(sfn, definition)
    arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"items": list(range(40))}))["executionArn"]
    assert wait_done(sfn, arn)["status"] == "SUCCEEDED"
    first = sfn.get_execution_history(executionArn=arn, maxResults=25)
    assert len(first["events"]) == 25 and first["nextToken"]
    events = history(sfn, arn, maxResults=25)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[2]["type"] == "MapStateStarted" and events[2]["mapStateStartedEventDetails"]["length"] == 40
    backwards = history(sfn, arn, maxResults=30, reverseOrder=True)
    assert [e["id"] for e in backwards] == list(range(len(events), 0, -1))
    with pytest.raises(ClientError) as e:
        sfn.get_execution_history(executionArn=arn, nextToken="garbage")
    assert code(e) == "InvalidToken"


def test_start_sync_execution(sfn):
    sm = create(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": True}}}, type="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=sm, input=json.dumps({"n": 21}))
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"twice": 42}
    assert r["stopDate"] >= r["startDate"]
    fail = create(sfn, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "C"}}}, type="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=fail)
    assert (r["status"], r["error"], r["cause"]) == ("FAILED", "E", "C")
    standard = create(sfn, PASS)
    with pytest.raises(ClientError) as e:
        sfn.start_sync_execution(stateMachineArn=standard)
    assert code(e) == "StateMachineTypeNotSupported"
    with pytest.raises(ClientError) as e:
        sfn.start_sync_execution(stateMachineArn=sm + "-missing")
    assert code(e) == "StateMachineDoesNotExist"


# ---- tasks run functions ----


def test_tasks_invoke_functions(sfn, create_function):
    fn = create_function().name
    fn_arn = h.function_arn(fn)
    definition = {"StartAt": "ByArn", "States": {
        "ByArn": {"Type": "Task", "Resource": fn_arn, "ResultSelector": {"event.$": "$.event"}, "ResultPath": "$.first", "Next": "Invoke"},
        "Invoke": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                   "Parameters": {"FunctionName": fn, "Payload": {"step": 2, "prev.$": "$.first.event.step"}},
                   "End": True}}}
    sm = create(sfn, definition)
    arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"step": 1}))["executionArn"]
    d = wait_done(sfn, arn)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert set(out) == {"ExecutedVersion", "Payload", "SdkHttpMetadata", "SdkResponseMetadata", "StatusCode"}
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "$LATEST"
    assert out["Payload"]["event"] == {"step": 2, "prev": 1}
    assert out["Payload"]["function_name"] == fn
    types = [e["type"] for e in history(sfn, arn)]
    assert "LambdaFunctionScheduled" in types and "LambdaFunctionSucceeded" in types
    assert "TaskScheduled" in types and "TaskSucceeded" in types
    scheduled = next(e for e in history(sfn, arn) if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert (scheduled["resourceType"], scheduled["resource"]) == ("lambda", "invoke")


def test_function_error_type_drives_catch(sfn, create_function):
    fn = create_function().name
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": h.function_arn(fn),
              "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 1, "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.err", "Next": "Handled"}],
              "End": True},
        "Handled": {"Type": "Pass", "End": True}}}
    sm = create(sfn, definition)
    arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"action": "fail", "message": "x"}))["executionArn"]
    d = wait_done(sfn, arn)
    assert d["status"] == "SUCCEEDED", d
    err = json.loads(d["output"])["err"]
    assert err["Error"] == "ValueError"
    assert json.loads(err["Cause"])["errorMessage"] == "boom: x"
    failures = [e for e in history(sfn, arn) if e["type"] == "LambdaFunctionFailed"]
    assert len(failures) == 2, "one try and one retry"
    assert failures[0]["lambdaFunctionFailedEventDetails"]["error"] == "ValueError"

    missing = create(sfn, {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": h.function_arn("no-such-fn"), "End": True}}})
    arn = sfn.start_execution(stateMachineArn=missing)["executionArn"]
    d = wait_done(sfn, arn)
    assert (d["status"], d["error"]) == ("FAILED", "Lambda.ResourceNotFoundException")


# ---- authentication ----


def test_signature_is_checked_for_the_states_service(server):
    bad = make_sfn(server.url, secret="x" * 40)
    with pytest.raises(ClientError) as e:
        bad.list_state_machines()
    assert code(e) in ("InvalidSignatureException", "SignatureDoesNotMatch")
    unknown = make_sfn(server.url, key="AKIDUNKNOWN000000000")
    with pytest.raises(ClientError) as e:
        unknown.list_state_machines()
    assert code(e) == "UnrecognizedClientException"


def signed_post(url, service, path, body, headers):
    """A SigV4-signed POST of raw bytes (boto3 would not send such a body)."""
    import urllib.error
    import urllib.request

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url + path, data=body, headers=headers)
    botocore.auth.SigV4Auth(Credentials(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY), service, REGION).add_auth(request)
    req = urllib.request.Request(url + path, data=body, method="POST", headers=dict(request.headers))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_json_nested_10000_deep_is_a_client_error_on_every_json_endpoint(server, sfn):
    """Review item 60: no stack overflow, no 500; serde_json's 128-level limit
    answers each protocol's own 400."""
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    amz = "application/x-amz-json-1.0"
    cases = [
        ("states", "/", {"Content-Type": amz, "X-Amz-Target": "AWSStepFunctions.CreateStateMachine"}),
        ("states", "/", {"Content-Type": amz, "X-Amz-Target": "AWSStepFunctions.StartExecution"}),
        ("sqs", "/", {"Content-Type": amz, "X-Amz-Target": "AmazonSQS.SendMessage"}),
        ("lambda", "/2015-03-31/functions", {"Content-Type": "application/json"}),
    ]
    for service, path, headers in cases:
        status, body = signed_post(server.url, service, path, deep, headers)
        assert status == 400, (service, headers, status, body[:300])
    # Nested inside a string field: the execution input and the definition.
    sm = sfn.create_state_machine(name="deep-input", definition=json.dumps(PASS), roleArn=ROLE)["stateMachineArn"]
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm, input=deep.decode())
    assert code(e) == "InvalidExecutionInput"
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine(name="deep-def", definition=deep.decode(), roleArn=ROLE)
    assert code(e) == "InvalidDefinition"
    # The native API.
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        server.url + "/v1/workflows",
        data=deep,
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_ACCESS_KEY_ID}:{ADMIN_SECRET_ACCESS_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status = r.status
    except urllib.error.HTTPError as err:
        status = err.code
    assert status == 400
    # The server is still up.
    assert sfn.list_state_machines()["stateMachines"] is not None
