"""Grants that cannot be bypassed, and least privilege by action.

Every request here is signed with a function's own credentials (read from its
environment, as an SDK inside the function would), against a real `nimbus up`.
Each refusal is followed by a check, with the operator's credentials, that
nothing happened; each grant by a call that succeeds. The cases of the
security review (C1, C2, H1, L2, L12 and hostile cases 1-7) are named where
they are tested.
"""

import json
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import lambda_helpers as h
import messaging_helpers as m
from lambda_helpers import ACCOUNT_ID, REGION, native

DENIED = {"AccessDenied", "AccessDeniedException", "AuthorizationError"}
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/sfn-role"
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300, "End": True}}}

# A function that logs every event it gets behind a marker, so a test can see
# whether (and with what) it ran.
MARK = "GRANTS-RAN "
RECORDER_SOURCE = f"""\
import json

def handler(event, context):
    if isinstance(event, dict) and event.get("action") == "env":
        import os
        return {{k: os.environ.get(k) for k in event["keys"]}}
    print({MARK!r} + json.dumps(event), flush=True)
    return {{"ran": context.function_name}}
"""


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def client_as(server, creds, service):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, inject_host_prefix=False, read_timeout=60),
    )


def admin(server, service):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=h.ADMIN_ACCESS_KEY_ID,
        aws_secret_access_key=h.ADMIN_SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}, inject_host_prefix=False, read_timeout=60),
    )


def credentials(lambda_client, fn):
    keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    r = lambda_client.invoke(FunctionName=fn, Payload=json.dumps({"action": "env", "keys": keys}))
    return h.read_payload(r)


def set_permissions(server, fn, permissions):
    status, body = native(server, "PATCH", f"/v1/functions/{fn}", {"permissions": permissions})
    assert status == 200, (status, body)


def denied(call, head=False):
    """AccessDenied (403). A HEAD response has no body, so only its status says."""
    with pytest.raises(ClientError) as e:
        call()
    code = e.value.response["Error"]["Code"]
    assert code in (DENIED | {"403"} if head else DENIED), (code, e.value.response["Error"].get("Message"))
    assert h.http_status(e.value) == 403
    return e.value


def refused(call):
    """Refused one way or another (denied, or not a valid id): never run."""
    with pytest.raises(ClientError) as e:
        call()
    assert h.http_status(e.value) in (400, 403, 404), e.value.response
    return e.value


def ran(server, fn):
    return m.log_lines(server, fn, MARK)


@pytest.fixture
def recorder(create_function):
    def make():
        return create_function(zip_bytes=h.make_zip({"app.py": RECORDER_SOURCE})).name

    return make


@pytest.fixture
def actor(server, lambda_client, create_function):
    """A function and clients signed with its credentials; grants set with `allow`."""

    class Actor:
        def __init__(self):
            self.name = create_function().name
            self.creds = credentials(lambda_client, self.name)

        def allow(self, *permissions):
            # One policy document is sent as it is; anything else as a list.
            if len(permissions) == 1 and "Statement" in permissions[0]:
                set_permissions(server, self.name, permissions[0])
            else:
                set_permissions(server, self.name, list(permissions))

        def __getattr__(self, service):
            svc = {"sfn": "stepfunctions", "lam": "lambda"}.get(service, service)
            return client_as(server, self.creds, svc)

    return Actor()


# -- hostile case 1 / C1: every Lambda id form -------------------------------


def test_lambda_id_forms_are_refused_or_run_what_was_authorised(server, lambda_client, actor, recorder):
    helper, victim = recorder(), recorder()
    actor.allow(f"lambda:{helper}")
    lam = actor.lam
    forms = [
        f"{helper}:function:{victim}",
        f"x:function:{victim}:q",
        f":function:{victim}",
        f"arn:aws:lambda:r:a:function:{victim}",
        f"arn:x:lambda:r:a:function:{victim}",
        f"arn:x:lambda:{REGION}:{ACCOUNT_ID}:function:{victim}",
        f"arn:aws:lambda:r:a:function:{helper}:x:y",
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{helper}:x:y",
        f"{ACCOUNT_ID}:function:{victim}",
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{victim}",
        victim,
        # boto3 percent-encodes the name once; these arrive double-encoded.
        f"{helper}%3Afunction%3A{victim}",
        f"{helper}%253Afunction%253A{victim}",
    ]
    for form in forms:
        refused(lambda: lam.invoke(FunctionName=form, Payload=b'{"from": "attacker"}'))
        refused(lambda: lam.invoke(FunctionName=form, InvocationType="Event", Payload=b"{}"))
        refused(lambda: lam.invoke_with_response_stream(FunctionName=form, Payload=b"{}"))

    # The granted function, by every valid form, runs.
    for form in (helper, f"{helper}:$LATEST", f"{ACCOUNT_ID}:function:{helper}",
                 f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{helper}"):
        r = lam.invoke(FunctionName=form, Payload=json.dumps({"form": form}))
        assert h.read_payload(r) == {"ran": helper}, form
    # Logs are written in batches: once the helper's lines are in, the
    # victim's would be too.
    m.wait_for("the helper's log lines", lambda: len(ran(server, helper)) == 4, server)
    time.sleep(1)
    assert ran(server, victim) == [], "the victim never ran"


def test_lambda_invoke_is_least_privilege_by_qualifier_and_deny(server, actor, recorder):
    f = recorder()
    arn = f"arn:aws:lambda:*:*:function:{f}"
    actor.allow({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn})
    assert h.read_payload(actor.lam.invoke(FunctionName=f, Payload=b"{}")) == {"ran": f}
    # An unqualified ARN pattern does not cover a qualified invocation (IAM's rule).
    denied(lambda: actor.lam.invoke(FunctionName=f"{f}:$LATEST", Payload=b"{}"))
    actor.allow({"Effect": "Allow", "Action": "lambda:*", "Resource": [arn, arn + ":*"]},
                {"Effect": "Deny", "Action": "lambda:Invoke*", "Resource": arn + ":*"})
    assert h.read_payload(actor.lam.invoke(FunctionName=f, Payload=b"{}")) == {"ran": f}
    denied(lambda: actor.lam.invoke(FunctionName=f"{f}:$LATEST", Payload=b"{}"))


def test_lambda_management_and_event_sources_stay_the_operators(server, lambda_client, actor, recorder):
    f = recorder()
    q = name("esm")
    sqs = admin(server, "sqs")
    sqs.create_queue(QueueName=q)
    actor.allow(f"lambda:{f}", f"sqs:{q}")
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{q}"
    # Even with both the queue and the function granted, a function cannot
    # wire them (event source mappings), nor set destinations.
    denied(lambda: actor.lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=f))
    denied(lambda: actor.lam.put_function_event_invoke_config(
        FunctionName=f, DestinationConfig={"OnSuccess": {"Destination": queue_arn}}))
    denied(lambda: actor.lam.update_function_configuration(FunctionName=f, Description="x"))
    assert lambda_client.list_event_source_mappings(FunctionName=f)["EventSourceMappings"] == []


# -- hostile case 2 / C2: SNS subscription endpoints ---------------------------


def test_subscribe_needs_a_grant_on_the_endpoint(server, actor, recorder):
    victim = recorder()
    topic, queue = name("t"), name("q")
    sns, sqs = admin(server, "sns"), admin(server, "sqs")
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}"
    actor.allow(f"sns:{topic}")

    denied(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=h.function_arn(victim)))
    denied(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="lambda",
                                       Endpoint=f"arn:aws:lambda:eu-west-1:111111111111:function:{victim}:x"))
    denied(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn))
    denied(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                                       Attributes={"RawMessageDelivery": "true"}))
    # Every SNS action on every resource is still no grant on the endpoint,
    # and endpoints delivery would read differently are refused outright.
    actor.allow({"Effect": "Allow", "Action": "sns:*", "Resource": "*"})
    denied(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=h.function_arn(victim)))
    for odd in (f"{h.function_arn(victim)}:x:y", f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{victim}",
                f"{queue_arn}:x", victim):
        refused(lambda: actor.sns.subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=odd))
        refused(lambda: sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=odd))
    assert sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"] == []

    actor.sns.publish(TopicArn=topic_arn, Message="attacker-controlled")
    time.sleep(1)
    assert ran(server, victim) == []
    assert m.drain(sqs, url, 1, timeout=2) == []

    # Granted endpoints subscribe.
    actor.allow(f"sns:{topic}", f"sqs:{queue}")
    actor.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                        Attributes={"RawMessageDelivery": "true"})
    actor.sns.publish(TopicArn=topic_arn, Message="granted")
    assert [x["Body"] for x in m.drain(sqs, url, 1)] == ["granted"]
    # The creator is recorded, never shown.
    sub = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"][0]
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    assert not any(k.startswith("nimbus") for k in attrs), attrs


# -- hostile case 3 / H1: redrive ---------------------------------------------


def redrive(dlq, count=1):
    return json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{dlq}", "maxReceiveCount": count})


def test_redrive_needs_a_grant_on_the_dead_letter_queue(server, actor):
    sqs = admin(server, "sqs")
    prefix = name("mine")
    payments = name("payments")
    pay_url = sqs.create_queue(QueueName=payments)["QueueUrl"]
    actor.allow(f"sqs:{prefix}*")

    src = f"{prefix}-src"
    denied(lambda: actor.sqs.create_queue(QueueName=src, Attributes={
        "RedrivePolicy": redrive(payments), "VisibilityTimeout": "0"}))
    with pytest.raises(ClientError):
        sqs.get_queue_url(QueueName=src)

    url = actor.sqs.create_queue(QueueName=src, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    denied(lambda: actor.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive(payments)}))
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    actor.sqs.send_message(QueueUrl=url, MessageBody="INJECTED")
    for _ in range(3):
        actor.sqs.receive_message(QueueUrl=url)
    assert m.drain(sqs, pay_url, 1, timeout=2) == [], "nothing reached the ungranted queue"

    # A granted dead-letter queue works.
    actor.sqs.purge_queue(QueueUrl=url)
    dlq = f"{prefix}-dlq"
    dlq_url = actor.sqs.create_queue(QueueName=dlq)["QueueUrl"]
    actor.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive(dlq)})
    actor.sqs.send_message(QueueUrl=url, MessageBody="to-dlq")
    moved = []
    deadline = time.monotonic() + 10
    while not moved and time.monotonic() < deadline:
        actor.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        moved = m.drain(sqs, dlq_url, 1, timeout=1)
    assert [x["Body"] for x in moved] == ["to-dlq"]


def test_redrive_allow_policy_is_enforced(server, actor):
    sqs = admin(server, "sqs")
    prefix = name("rap")
    actor.allow(f"sqs:{prefix}*")
    src_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{prefix}-src"

    deny = f"{prefix}-deny"
    sqs.create_queue(QueueName=deny, Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    for who in (actor.sqs, sqs):
        with pytest.raises(ClientError) as e:
            who.create_queue(QueueName=f"{prefix}-src", Attributes={"RedrivePolicy": redrive(deny)})
        assert "RedriveAllowPolicy" in h.error_message(e.value)
        assert h.http_status(e.value) == 400

    others = f"{prefix}-others"
    sqs.create_queue(QueueName=others, Attributes={"RedriveAllowPolicy": json.dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [src_arn + "-not"]})})
    with pytest.raises(ClientError):
        actor.sqs.create_queue(QueueName=f"{prefix}-src", Attributes={"RedrivePolicy": redrive(others)})

    mine = f"{prefix}-mine"
    sqs.create_queue(QueueName=mine, Attributes={"RedriveAllowPolicy": json.dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [src_arn]})})
    url = actor.sqs.create_queue(QueueName=f"{prefix}-src", Attributes={"RedrivePolicy": redrive(mine)})["QueueUrl"]
    with pytest.raises(ClientError):
        actor.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive(deny)})

    # Malformed policies are refused when set.
    for bad in ({"redrivePermission": "some"}, {"redrivePermission": "byQueue"},
                {"redrivePermission": "denyAll", "sourceQueueArns": [src_arn]}):
        with pytest.raises(ClientError) as e:
            sqs.create_queue(QueueName=name("bad"), Attributes={"RedriveAllowPolicy": json.dumps(bad)})
        assert h.http_status(e.value) == 400

    # A policy tightened later stops redrive at receive time.
    mine_url = sqs.get_queue_url(QueueName=mine)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    sqs.set_queue_attributes(QueueUrl=mine_url, Attributes={
        "RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    sqs.send_message(QueueUrl=url, MessageBody="stays")
    for _ in range(4):
        sqs.receive_message(QueueUrl=url)
    assert m.drain(sqs, mine_url, 1, timeout=1) == []
    assert [x["Body"] for x in m.drain(sqs, url, 1)] == ["stays"]


def test_dead_letter_source_listing_hides_ungranted_queues(server, actor):
    sqs = admin(server, "sqs")
    prefix = name("l12")
    dlq = f"{prefix}-dlq"
    dlq_url = sqs.create_queue(QueueName=dlq)["QueueUrl"]
    secret = name("secret")
    sqs.create_queue(QueueName=secret, Attributes={"RedrivePolicy": redrive(dlq)})
    actor.allow(f"sqs:{prefix}*")
    actor.sqs.create_queue(QueueName=f"{prefix}-src", Attributes={"RedrivePolicy": redrive(dlq)})
    urls = actor.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"]
    assert [u.rsplit("/", 1)[1] for u in urls] == [f"{prefix}-src"]
    assert secret in " ".join(sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"])
    assert all(prefix in u for u in actor.sqs.list_queues().get("QueueUrls", []))


# -- hostile case 4: S3 second resources --------------------------------------


def test_s3_copy_sources_and_notification_targets_need_grants(server, actor, recorder):
    s3 = admin(server, "s3")
    a, b = name("a"), name("b")
    s3.create_bucket(Bucket=a)
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="secret", Body=b"b-secret")
    actor.allow(f"s3:{a}")

    denied(lambda: actor.s3.copy_object(Bucket=a, Key="stolen", CopySource={"Bucket": b, "Key": "secret"}))
    assert "Contents" not in s3.list_objects_v2(Bucket=a)

    up = actor.s3.create_multipart_upload(Bucket=a, Key="stolen")["UploadId"]
    with pytest.raises(ClientError) as e:
        actor.s3.upload_part_copy(Bucket=a, Key="stolen", UploadId=up, PartNumber=1,
                                  CopySource={"Bucket": b, "Key": "secret"})
    assert h.http_status(e.value) in (403, 501)
    assert actor.s3.list_parts(Bucket=a, Key="stolen", UploadId=up).get("Parts", []) == []
    actor.s3.abort_multipart_upload(Bucket=a, Key="stolen", UploadId=up)

    # An upload id of another bucket is not found from a granted bucket.
    other_up = s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    with pytest.raises(ClientError) as e:
        actor.s3.upload_part(Bucket=a, Key="k", UploadId=other_up, PartNumber=1, Body=b"x")
    assert h.error_code(e.value) == "NoSuchUpload"

    # A presigned URL made with the function's credentials is refused for b.
    import urllib.request
    url = actor.s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "secret"})
    with pytest.raises(urllib.error.HTTPError) as he:
        urllib.request.urlopen(url, timeout=10)
    assert he.value.code == 403

    victim = recorder()
    config = {"LambdaFunctionConfigurations": [{
        "LambdaFunctionArn": h.function_arn(victim), "Events": ["s3:ObjectCreated:*"]}]}
    denied(lambda: actor.s3.put_bucket_notification_configuration(Bucket=a, NotificationConfiguration=config))
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(Bucket=a)

    # Granted: copying inside a works.
    actor.s3.put_object(Bucket=a, Key="mine", Body=b"x")
    actor.s3.copy_object(Bucket=a, Key="copy", CopySource={"Bucket": a, "Key": "mine"})
    assert s3.get_object(Bucket=a, Key="copy")["Body"].read() == b"x"


# -- hostile case 5: Step Functions ----------------------------------------------


def test_states_operations_on_other_machines_are_refused(server, actor):
    sfn = admin(server, "stepfunctions")
    mine, other = name("m"), name("o")
    mine_arn = sfn.create_state_machine(name=mine, definition=json.dumps(PASS), roleArn=ROLE)["stateMachineArn"]
    other_arn = sfn.create_state_machine(name=other, definition=json.dumps(WAIT), roleArn=ROLE)["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=other_arn, name="run-1")["executionArn"]
    actor.allow(f"states:{mine}")
    s = actor.sfn
    for call in (
        lambda: s.start_execution(stateMachineArn=other_arn),
        lambda: s.start_execution(stateMachineArn=other),
        lambda: s.start_sync_execution(stateMachineArn=other_arn),
        lambda: s.describe_state_machine(stateMachineArn=other_arn),
        lambda: s.list_executions(stateMachineArn=other_arn),
        lambda: s.describe_execution(executionArn=run),
        lambda: s.describe_execution(executionArn=f"{other}:run-1"),
        lambda: s.get_execution_history(executionArn=run),
        lambda: s.stop_execution(executionArn=run),
        lambda: s.stop_execution(executionArn=f"{other}:run-1"),
        lambda: s.delete_state_machine(stateMachineArn=mine_arn),
        lambda: s.update_state_machine(stateMachineArn=mine_arn, definition=json.dumps(WAIT)),
        lambda: s.create_state_machine(name=name("new"), definition=json.dumps(PASS), roleArn=ROLE),
        lambda: s.list_state_machines(),
    ):
        denied(call)
    assert sfn.describe_execution(executionArn=run)["status"] == "RUNNING"
    assert [e["executionArn"] for e in sfn.list_executions(stateMachineArn=other_arn)["executions"]] == [run]
    sfn.stop_execution(executionArn=run)

    started = s.start_execution(stateMachineArn=mine_arn)["executionArn"]
    assert s.describe_execution(executionArn=started)["stateMachineArn"] == mine_arn
    assert s.describe_state_machine(stateMachineArn=mine)["name"] == mine


# -- hostile case 6 / L2: a revoked grant stops deliveries -----------------------


def test_revoked_grants_stop_existing_subscriptions_redrives_and_notifications(server, actor, recorder):
    sns, sqs, s3 = admin(server, "sns"), admin(server, "sqs"), admin(server, "s3")
    target = recorder()
    topic, queue, bucket, dlq, src = (name(p) for p in ("t", "q", "b", "dlq", "src"))
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    q_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=dlq)["QueueUrl"]
    s3.create_bucket(Bucket=bucket)
    everything = [f"sns:{topic}", f"lambda:{target}", f"sqs:{queue}", f"sqs:{src}", f"sqs:{dlq}", f"s3:{bucket}"]
    actor.allow(*everything)

    actor.sns.subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=h.function_arn(target))
    actor.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}",
                        Attributes={"RawMessageDelivery": "true"})
    src_url = actor.sqs.create_queue(QueueName=src, Attributes={
        "RedrivePolicy": redrive(dlq), "VisibilityTimeout": "0"})["QueueUrl"]
    actor.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": h.function_arn(target), "Events": ["s3:ObjectCreated:*"]}]})

    def redriven(body):
        sqs.send_message(QueueUrl=src_url, MessageBody=body)
        for _ in range(3):
            sqs.receive_message(QueueUrl=src_url)
        return [x["Body"] for x in m.drain(sqs, dlq_url, 1, timeout=2)]

    # While granted, everything is delivered.
    sns.publish(TopicArn=topic_arn, Message="before")
    s3.put_object(Bucket=bucket, Key="before", Body=b"x")
    assert [x["Body"] for x in m.drain(sqs, q_url, 1)] == ["before"]
    m.wait_for("deliveries while granted", lambda: len(ran(server, target)) >= 2, server)
    assert redriven("before") == ["before"]

    # Revoke all but the topic, the bucket and the source queue: every
    # delivery set up with the revoked grants stops.
    actor.allow(f"sns:{topic}", f"s3:{bucket}", f"sqs:{src}")
    sns.publish(TopicArn=topic_arn, Message="after")
    s3.put_object(Bucket=bucket, Key="after", Body=b"x")
    assert m.drain(sqs, q_url, 1, timeout=2) == []
    assert redriven("after") == []
    assert [x["Body"] for x in m.drain(sqs, src_url, 1)] == ["after"], "the message stays in its queue"
    time.sleep(2)
    events = ran(server, target)
    assert len(events) == 2, events
    assert "after" not in json.dumps(events)
    assert "skipped" in server.stderr()
    status, text = native(server, "GET", "/metrics")
    assert status == 200
    line = next(x for x in text.decode().splitlines() if x.startswith("nimbus_deliveries_revoked_total "))
    # The two subscriptions and the notification (a redrive is a setting,
    # consulted on every receive: logged, not counted).
    assert int(line.split()[1]) >= 3, line

    # Granted again, delivery resumes (the subscription itself was kept).
    actor.allow(*everything)
    sns.publish(TopicArn=topic_arn, Message="again")
    assert [x["Body"] for x in m.drain(sqs, q_url, 1)] == ["again"]


# -- hostile case 7: credentials of deleted functions ----------------------------


def test_deleted_and_recreated_functions_old_keys_are_refused_everywhere(server, lambda_client, create_function):
    s3, sqs, sns = admin(server, "s3"), admin(server, "sqs"), admin(server, "sns")
    sfn = admin(server, "stepfunctions")
    bucket, queue, topic, machine = name("b"), name("q"), name("t"), name("m")
    s3.create_bucket(Bucket=bucket)
    q_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    machine_arn = sfn.create_state_machine(name=machine, definition=json.dumps(PASS), roleArn=ROLE)["stateMachineArn"]
    fn = name("fn")
    grants = f"s3:{bucket},sqs:{queue},sns:{topic},states:{machine},lambda:{fn}"
    create_function(name=fn, Tags={"nimbus:permissions": grants})
    old = credentials(lambda_client, fn)

    def every_api(creds):
        return [
            lambda: client_as(server, creds, "lambda").invoke(FunctionName=fn, Payload=b"{}"),
            lambda: client_as(server, creds, "s3").put_object(Bucket=bucket, Key="k", Body=b"x"),
            lambda: client_as(server, creds, "s3").list_buckets(),
            lambda: client_as(server, creds, "sqs").send_message(QueueUrl=q_url, MessageBody="x"),
            lambda: client_as(server, creds, "sns").publish(TopicArn=topic_arn, Message="x"),
            lambda: client_as(server, creds, "stepfunctions").start_execution(stateMachineArn=machine_arn),
        ]

    for call in every_api(old):
        call()  # granted while the function lives
    lambda_client.delete_function(FunctionName=fn)
    for call in every_api(old):
        with pytest.raises(ClientError) as e:
            call()
        assert h.http_status(e.value) in (401, 403), e.value.response

    create_function(name=fn, Tags={"nimbus:permissions": grants})
    new = credentials(lambda_client, fn)
    assert new["AWS_ACCESS_KEY_ID"] != old["AWS_ACCESS_KEY_ID"]
    for call in every_api(old):
        with pytest.raises(ClientError) as e:
            call()
        assert h.http_status(e.value) in (401, 403), e.value.response
    for call in every_api(new):
        call()


# -- least privilege by action ----------------------------------------------------


def test_a_read_only_grant_reads_but_cannot_write(server, actor):
    s3 = admin(server, "s3")
    bucket = name("ro")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="photo.jpg", Body=b"cat")
    actor.allow({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    assert actor.s3.get_object(Bucket=bucket, Key="photo.jpg")["Body"].read() == b"cat"
    assert actor.s3.head_object(Bucket=bucket, Key="photo.jpg")["ContentLength"] == 3
    denied(lambda: actor.s3.put_object(Bucket=bucket, Key="photo.jpg", Body=b"dog"))
    denied(lambda: actor.s3.put_object(Bucket=bucket, Key="new.jpg", Body=b"dog"))
    denied(lambda: actor.s3.delete_object(Bucket=bucket, Key="photo.jpg"))
    denied(lambda: actor.s3.list_objects_v2(Bucket=bucket))
    r = actor.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "photo.jpg"}]})
    assert [e["Code"] for e in r.get("Errors", [])] == ["AccessDenied"]
    assert s3.get_object(Bucket=bucket, Key="photo.jpg")["Body"].read() == b"cat"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["photo.jpg"]


def test_a_deny_beats_an_allow(server, actor):
    s3, sqs = admin(server, "s3"), admin(server, "sqs")
    bucket, queue = name("deny"), name("deny")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="private/key", Body=b"secret")
    s3.put_object(Bucket=bucket, Key="public/key", Body=b"open")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    actor.allow(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/private/*"},
            {"Effect": "Deny", "Action": "sqs:Send*", "Resource": f"arn:aws:sqs:*:*:{queue}"},
        ]}
    )
    assert actor.s3.get_object(Bucket=bucket, Key="public/key")["Body"].read() == b"open"
    denied(lambda: actor.s3.get_object(Bucket=bucket, Key="private/key"))
    denied(lambda: actor.s3.delete_object(Bucket=bucket, Key="private/key"))
    denied(lambda: actor.sqs.send_message(QueueUrl=url, MessageBody="x"))
    assert actor.sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    assert s3.get_object(Bucket=bucket, Key="private/key")["Body"].read() == b"secret"


def test_policy_statements_are_validated_with_precise_errors(server, lambda_client, create_function):
    fn = create_function().name
    cases = [
        ([{"Effect": "Alow", "Action": "s3:*", "Resource": "*"}], "unknown Effect"),
        ([{"Effect": "Allow", "Action": [], "Resource": "*"}], "Action is empty"),
        ([{"Effect": "Allow", "Action": "s3:GetObjects", "Resource": "*"}], "unknown action"),
        ([{"Effect": "Allow", "Action": "s3:*", "Resource": "photos"}], "bad ARN pattern"),
        ([{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {}}], "Condition is not supported"),
        ([f"s3:b{i}" for i in range(101)], "at most 100"),
        ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:ec2:::x"}]},
         "unknown service"),
    ]
    for permissions, want in cases:
        status, body = native(server, "PATCH", f"/v1/functions/{fn}", {"permissions": permissions})
        assert status == 400 and want in json.dumps(body), (permissions, status, body)
    # The Lambda API's tag takes a policy document too, validated the same way.
    with pytest.raises(ClientError) as e:
        create_function(Tags={"nimbus:permissions": json.dumps([{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}])})
    assert "unknown Effect" in h.error_message(e.value)
    ok = create_function(Tags={"nimbus:permissions": json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*"}]})})
    status, body = native(server, "GET", f"/v1/functions/{ok.name}")
    assert status == 200, body
    assert body["permissions"] == [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::x/*"]}], body


# -- every operation function credentials can call ---------------------------------


def test_every_operation_is_authorised_on_its_resource(server, lambda_client, actor, recorder):
    """One row per operation function credentials can call: against a resource
    the function was not granted it is AccessDenied; against a granted one it
    succeeds. At the end the ungranted resources are exactly as they were."""
    s3, sqs, sns, sfn = (admin(server, s) for s in ("s3", "sqs", "sns", "stepfunctions"))
    fn = {k: recorder() for k in ("yes", "no")}
    r = {}
    for k in ("yes", "no"):
        b, q, t, sm = name(f"b{k}"), name(f"q{k}"), name(f"t{k}"), name(f"m{k}")
        s3.create_bucket(Bucket=b)
        s3.put_object(Bucket=b, Key="obj", Body=b"data")
        q_url = sqs.create_queue(QueueName=q)["QueueUrl"]
        sqs.send_message(QueueUrl=q_url, MessageBody="m")
        t_arn = sns.create_topic(Name=t)["TopicArn"]
        sub = sns.subscribe(TopicArn=t_arn, Protocol="sqs",
                            Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{q}")["SubscriptionArn"]
        sm_arn = sfn.create_state_machine(name=sm, definition=json.dumps(WAIT), roleArn=ROLE)["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=sm_arn, name="run")["executionArn"]
        r[k] = dict(bucket=b, queue=q, q_url=q_url, q_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{q}",
                    topic=t, t_arn=t_arn, sub=sub, machine=sm, sm_arn=sm_arn, run=run, fn=fn[k])
    y = r["yes"]
    actor.allow(f"s3:{y['bucket']}", f"sqs:{y['queue']}", f"sns:{y['topic']}",
                f"states:{y['machine']}", f"lambda:{y['fn']}")

    def snapshot(x):
        return (
            [(o["Key"], o["ETag"]) for o in s3.list_objects_v2(Bucket=x["bucket"]).get("Contents", [])],
            s3.get_bucket_notification_configuration(Bucket=x["bucket"]).get("LambdaFunctionConfigurations"),
            sqs.get_queue_attributes(QueueUrl=x["q_url"], AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout",
                "RedrivePolicy"])["Attributes"],
            sns.get_topic_attributes(TopicArn=x["t_arn"])["Attributes"].get("DisplayName"),
            sorted(s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=x["t_arn"])["Subscriptions"]),
            [(e["executionArn"], e["status"]) for e in sfn.list_executions(stateMachineArn=x["sm_arn"])["executions"]],
            len(ran(server, x["fn"])),
        )

    before = snapshot(r["no"])
    a = actor
    # (operation, call on resources x) — each must be denied on "no" and succeed on "yes".
    rows = [
        ("s3:ListObjectsV2", lambda x: a.s3.list_objects_v2(Bucket=x["bucket"])),
        ("s3:ListObjects", lambda x: a.s3.list_objects(Bucket=x["bucket"])),
        ("s3:HeadBucket", lambda x: a.s3.head_bucket(Bucket=x["bucket"])),
        ("s3:GetBucketLocation", lambda x: a.s3.get_bucket_location(Bucket=x["bucket"])),
        ("s3:GetBucketNotificationConfiguration", lambda x: a.s3.get_bucket_notification_configuration(Bucket=x["bucket"])),
        ("s3:GetObject", lambda x: a.s3.get_object(Bucket=x["bucket"], Key="obj")),
        ("s3:HeadObject", lambda x: a.s3.head_object(Bucket=x["bucket"], Key="obj")),
        ("s3:PutObject", lambda x: a.s3.put_object(Bucket=x["bucket"], Key="new", Body=b"x")),
        ("s3:CopyObject", lambda x: a.s3.copy_object(Bucket=x["bucket"], Key="copy",
                                                   CopySource={"Bucket": x["bucket"], "Key": "obj"})),
        ("s3:CreateMultipartUpload", lambda x: a.s3.create_multipart_upload(Bucket=x["bucket"], Key="mp")),
        ("s3:DeleteObject", lambda x: a.s3.delete_object(Bucket=x["bucket"], Key="new")),
        ("s3:PutBucketNotificationConfiguration", lambda x: a.s3.put_bucket_notification_configuration(
            Bucket=x["bucket"], NotificationConfiguration={"LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": h.function_arn(y["fn"]), "Events": ["s3:ObjectRemoved:*"]}]})),
        ("sqs:GetQueueUrl", lambda x: a.sqs.get_queue_url(QueueName=x["queue"])),
        ("sqs:GetQueueAttributes", lambda x: a.sqs.get_queue_attributes(QueueUrl=x["q_url"])),
        ("sqs:SetQueueAttributes", lambda x: a.sqs.set_queue_attributes(
            QueueUrl=x["q_url"], Attributes={"VisibilityTimeout": "31"})),
        ("sqs:SendMessage", lambda x: a.sqs.send_message(QueueUrl=x["q_url"], MessageBody="x")),
        ("sqs:SendMessageBatch", lambda x: a.sqs.send_message_batch(
            QueueUrl=x["q_url"], Entries=[{"Id": "1", "MessageBody": "x"}])),
        ("sqs:ReceiveMessage", lambda x: a.sqs.receive_message(QueueUrl=x["q_url"], VisibilityTimeout=0)),
        ("sqs:DeleteMessage", lambda x: a.sqs.delete_message(QueueUrl=x["q_url"], ReceiptHandle="a:b")),
        ("sqs:DeleteMessageBatch", lambda x: a.sqs.delete_message_batch(
            QueueUrl=x["q_url"], Entries=[{"Id": "1", "ReceiptHandle": "a:b"}])),
        ("sqs:ChangeMessageVisibility", lambda x: a.sqs.change_message_visibility(
            QueueUrl=x["q_url"], ReceiptHandle="a:b", VisibilityTimeout=0)),
        ("sqs:ListDeadLetterSourceQueues", lambda x: a.sqs.list_dead_letter_source_queues(QueueUrl=x["q_url"])),
        ("sns:GetTopicAttributes", lambda x: a.sns.get_topic_attributes(TopicArn=x["t_arn"])),
        ("sns:SetTopicAttributes", lambda x: a.sns.set_topic_attributes(
            TopicArn=x["t_arn"], AttributeName="DisplayName", AttributeValue="changed")),
        ("sns:Publish", lambda x: a.sns.publish(TopicArn=x["t_arn"], Message="x")),
        ("sns:PublishBatch", lambda x: a.sns.publish_batch(
            TopicArn=x["t_arn"], PublishBatchRequestEntries=[{"Id": "1", "Message": "x"}])),
        ("sns:ListSubscriptionsByTopic", lambda x: a.sns.list_subscriptions_by_topic(TopicArn=x["t_arn"])),
        ("sns:GetSubscriptionAttributes", lambda x: a.sns.get_subscription_attributes(SubscriptionArn=x["sub"])),
        ("sns:SetSubscriptionAttributes", lambda x: a.sns.set_subscription_attributes(
            SubscriptionArn=x["sub"], AttributeName="RawMessageDelivery", AttributeValue="false")),
        ("sns:Subscribe", lambda x: a.sns.subscribe(TopicArn=x["t_arn"], Protocol="sqs", Endpoint=x["q_arn"])),
        ("lambda:Invoke", lambda x: a.lam.invoke(FunctionName=x["fn"], Payload=b"{}")),
        ("lambda:InvokeAsync", lambda x: a.lam.invoke(FunctionName=x["fn"], InvocationType="Event", Payload=b"{}")),
        ("lambda:InvokeWithResponseStream", lambda x: a.lam.invoke_with_response_stream(FunctionName=x["fn"], Payload=b"{}")),
        ("states:DescribeStateMachine", lambda x: a.sfn.describe_state_machine(stateMachineArn=x["sm_arn"])),
        ("states:ListExecutions", lambda x: a.sfn.list_executions(stateMachineArn=x["sm_arn"])),
        ("states:DescribeExecution", lambda x: a.sfn.describe_execution(executionArn=x["run"])),
        ("states:GetExecutionHistory", lambda x: a.sfn.get_execution_history(executionArn=x["run"])),
        ("states:StartExecution", lambda x: a.sfn.start_execution(stateMachineArn=x["sm_arn"])),
        ("states:StopExecution", lambda x: a.sfn.stop_execution(executionArn=x["run"])),
        # Destructive ones last.
        ("sqs:PurgeQueue", lambda x: a.sqs.purge_queue(QueueUrl=x["q_url"])),
        ("sns:Unsubscribe", lambda x: a.sns.unsubscribe(SubscriptionArn=x["sub"])),
        ("s3:DeleteObjects", None),
        ("sqs:DeleteQueue", lambda x: a.sqs.delete_queue(QueueUrl=x["q_url"])),
        ("sns:DeleteTopic", lambda x: a.sns.delete_topic(TopicArn=x["t_arn"])),
    ]
    # Listings show only granted resources.
    assert [b["Name"] for b in a.s3.list_buckets()["Buckets"]] == [y["bucket"]]
    assert [t["TopicArn"] for t in a.sns.list_topics()["Topics"]] == [y["t_arn"]]
    assert {s["TopicArn"] for s in a.sns.list_subscriptions()["Subscriptions"]} == {y["t_arn"]}
    assert [u.rsplit("/", 1)[1] for u in a.sqs.list_queues()["QueueUrls"]] == [y["queue"]]
    for op, call in rows:
        if call is None:
            continue
        denied(lambda: call(r["no"]), head=op.startswith("s3:Head"))
        try:
            call(y)
        except ClientError as e:
            # A granted call may fail for its own reasons (a made-up receipt
            # handle), never for authorisation.
            assert h.error_code(e) not in DENIED, (op, e.response)
    # DeleteObjects answers per key.
    out = a.s3.delete_objects(Bucket=r["no"]["bucket"], Delete={"Objects": [{"Key": "obj"}]})
    assert [e["Code"] for e in out["Errors"]] == ["AccessDenied"]
    # Creating is authorised on the name.
    denied(lambda: a.s3.create_bucket(Bucket=name("nope")))
    denied(lambda: a.sqs.create_queue(QueueName=name("nope")))
    denied(lambda: a.sns.create_topic(Name=name("nope")))
    denied(lambda: a.s3.delete_bucket(Bucket=r["no"]["bucket"]))

    time.sleep(1)
    assert snapshot(r["no"]) == before, "nothing happened to the ungranted resources"
    sfn.stop_execution(executionArn=r["no"]["run"])


# -- hostile case 8: --dev turns grants off, on purpose -----------------------------


def test_dev_mode_makes_every_caller_an_operator(tmp_path):
    """Pinned: under `nimbus up --dev` nothing is checked, so a function's
    credentials reach the native API and every resource. Never for shared
    machines (the README says so)."""
    from conftest import NimbusServer

    srv = NimbusServer(tmp_path / "data", tmp_path, extra_args=["--dev"]).start()
    try:
        lam = h.make_lambda_client(srv.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY)
        fn, other = name("dev"), name("other")
        for n in (fn, other):
            lam.create_function(FunctionName=n, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
                                Code={"ZipFile": h.handler_zip()})
        creds = credentials(lam, fn)
        status, body = native(srv, "GET", "/v1/functions", key_id=creds["AWS_ACCESS_KEY_ID"],
                              secret=creds["AWS_SECRET_ACCESS_KEY"])
        assert status == 200, body
        r = client_as(srv, creds, "lambda").invoke(FunctionName=other, Payload=b'{"n": 1}')
        assert h.read_payload(r)["event"] == {"n": 1}
    finally:
        srv.stop()


FAILER_SOURCE = f"""\
import json

def handler(event, context):
    if isinstance(event, dict) and event.get("action") == "env":
        import os
        return {{k: os.environ.get(k) for k in event["keys"]}}
    print({MARK!r} + json.dumps(event), flush=True)
    raise RuntimeError("fail so that the event is retried")
"""


def test_queued_retries_stop_when_the_grant_is_revoked(tmp_path):
    """An Event invoke made with a function's credentials is retried on its
    authority: once the grant is revoked, the queued retries do not run (they
    become dead letters saying why)."""
    from conftest import NimbusServer

    srv = NimbusServer(tmp_path / "data", tmp_path, extra_args=["--async-retry-delay", "2s"]).start()
    try:
        lam = h.make_lambda_client(srv.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY)
        failer, caller = name("failer"), name("caller")
        lam.create_function(FunctionName=failer, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
                            Code={"ZipFile": h.make_zip({"app.py": FAILER_SOURCE})})
        lam.create_function(FunctionName=caller, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
                            Code={"ZipFile": h.handler_zip()}, Tags={"nimbus:permissions": f"lambda:{failer}"})
        lam.put_function_event_invoke_config(FunctionName=failer, MaximumRetryAttempts=2)
        as_caller = client_as(srv, credentials(lam, caller), "lambda")

        r = as_caller.invoke(FunctionName=failer, InvocationType="Event", Payload=b'{"n": 1}')
        assert r["StatusCode"] == 202
        m.wait_for("the first attempt", lambda: len(m.log_lines(srv, failer, MARK)) >= 1, srv)
        set_permissions(srv, caller, [])

        def dead():
            status, body = native(srv, "GET", "/v1/dlq")
            assert status == 200, body
            return [e for e in body.get("events", body if isinstance(body, list) else []) if e.get("function") == failer]

        letters = m.wait_for("the dead letter", dead, srv, timeout=20)
        assert "grant revoked" in json.dumps(letters), letters
        time.sleep(2)
        assert len(m.log_lines(srv, failer, MARK)) == 1, "no retry ran after the revocation"
        status, text = native(srv, "GET", "/metrics")
        line = next(x for x in text.decode().splitlines() if x.startswith("nimbus_deliveries_revoked_total "))
        assert int(line.split()[1]) == 1, line
    finally:
        srv.stop()
