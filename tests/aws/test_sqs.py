"""The SQS API (JSON protocol, as current botocore speaks it) against a running
Nimbus: queues, messages, visibility, long polling, delays, MD5s, redrive to a
dead-letter queue, purge and error cases; event source mappings end to end
(batches reach a Python function, partial batch failures, DLQ after
maxReceiveCount, nothing lost or duplicated); least privilege for function
credentials."""

import base64
import json
import time
import uuid

import pytest

import lambda_helpers as h
import messaging_helpers as m


@pytest.fixture(scope="module")
def sqs(server):
    return m.client("sqs", server)


def qname(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_queue(sqs, **attrs):
    return sqs.create_queue(QueueName=qname(), Attributes={k: str(v) for k, v in attrs.items()})["QueueUrl"]


def error_code(exc):
    return exc.value.response["Error"]["Code"]


def test_create_get_url_list_delete(sqs, server):
    name = qname("life")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url.endswith(f"/{h.ACCOUNT_ID}/{name}")
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    # The same name and attributes again is a success.
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix="life-")["QueueUrls"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == f"arn:aws:sqs:{h.REGION}:{h.ACCOUNT_ID}:{name}"
    assert attrs["VisibilityTimeout"] == "30"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as e:
        sqs.get_queue_url(QueueName=name)
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    assert url not in sqs.list_queues().get("QueueUrls", [])


def test_create_with_different_attributes_is_refused(sqs):
    name = qname()
    sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "10"})
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "20"})


def test_invalid_attributes(sqs):
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName=qname(), Attributes={"Colour": "blue"})
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.create_queue(QueueName=qname(), Attributes={"VisibilityTimeout": "99999"})
    url = make_queue(sqs)
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "-1"})
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"])


def test_send_receive_delete_with_attributes_and_md5s(sqs):
    url = make_queue(sqs)
    attrs = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
    }
    body = '{"orderId": "o-9", "note": "héllo"}'
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == m.md5_of_body(body)
    assert sent["MD5OfMessageAttributes"] == m.md5_of_attributes(attrs)
    r = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"], WaitTimeSeconds=1
    )
    [msg] = r["Messages"]
    assert msg["MessageId"] == sent["MessageId"]
    assert msg["Body"] == body
    assert msg["MD5OfBody"] == m.md5_of_body(body)
    assert msg["MD5OfMessageAttributes"] == m.md5_of_attributes(attrs)
    assert msg["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xff"
    assert msg["MessageAttributes"]["count"] == {"DataType": "Number", "StringValue": "42"}
    assert msg["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(msg["Attributes"]["SentTimestamp"]) > 0
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
    # Only the attributes asked for.
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attrs)
    [msg] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["kind"])["Messages"]
    assert set(msg["MessageAttributes"]) == {"kind"}


def test_batches(sqs):
    url = make_queue(sqs)
    entries = [{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(10)]
    entries[3]["MessageAttributes"] = {"n": {"DataType": "Number", "StringValue": "not a number"}}
    r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(s["Id"] for s in r["Successful"]) == sorted(f"m{i}" for i in range(10) if i != 3)
    assert [f["Id"] for f in r["Failed"]] == ["m3"]
    assert r["Failed"][0]["SenderFault"] is True
    for s in r["Successful"]:
        assert s["MD5OfMessageBody"] == m.md5_of_body(f"body {s['Id'][1:]}")
    got = []
    while len(got) < 9:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert batch, "messages went missing"
        got += batch
    assert len(got) == 9 and len({g["MessageId"] for g in got}) == 9
    d = sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": f"d{i}", "ReceiptHandle": g["ReceiptHandle"]} for i, g in enumerate(got)]
    )
    assert len(d["Successful"]) == 9 and not d.get("Failed")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"i{i}", "MessageBody": "x"} for i in range(11)])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "same", "MessageBody": "x"}] * 2)


def test_visibility_timeout_and_change_visibility(sqs):
    url = make_queue(sqs, VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="hide me")
    [first] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    time.sleep(1.3)
    [again] = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    # Extend, then release at once.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=60)
    time.sleep(1.3)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=0)
    [third] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert third["MessageId"] == first["MessageId"]
    # The old receipt handle no longer changes visibility.
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=5)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def test_long_polling_returns_early_when_a_message_arrives(sqs, server):
    url = make_queue(sqs)
    import threading

    def later():
        time.sleep(1.0)
        m.client("sqs", server).send_message(QueueUrl=url, MessageBody="late")

    t = threading.Thread(target=later)
    start = time.monotonic()
    t.start()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    elapsed = time.monotonic() - start
    t.join()
    assert [x["Body"] for x in r["Messages"]] == ["late"]
    assert 0.8 < elapsed < 5, elapsed
    # Nothing arrives: the call waits its full time.
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
    assert time.monotonic() - start >= 1.9


def test_delay_seconds(sqs):
    url = make_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    [now] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert now["Body"] == "now"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    start = time.monotonic()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert [x["Body"] for x in r["Messages"]] == ["later"]
    assert time.monotonic() - start > 1.0
    # A queue-level delay applies to every message.
    delayed = make_queue(sqs, DelaySeconds=1)
    sqs.send_message(QueueUrl=delayed, MessageBody="d")
    assert "Messages" not in sqs.receive_message(QueueUrl=delayed)


def test_redrive_to_dead_letter_queue(sqs):
    dlq = make_queue(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = make_queue(sqs, VisibilityTimeout=0, RedrivePolicy=policy)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"] == policy
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    sqs.send_message(QueueUrl=url, MessageBody="fine")
    seen = []
    for _ in range(6):
        for msg in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            seen.append(msg["Body"])
            if msg["Body"] == "fine":
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    assert seen.count("poison") == 2, seen
    assert seen.count("fine") == 1
    [dead] = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"])["Messages"]
    assert dead["Body"] == "poison"
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn + "-missing", "maxReceiveCount": 1})},
        )


def test_purge(sqs):
    url = make_queue(sqs)
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_errors_on_missing_queues_and_bad_input(sqs, server):
    missing = f"{server.url}/{h.ACCOUNT_ID}/does-not-exist"
    for call in (
        lambda: sqs.send_message(QueueUrl=missing, MessageBody="x"),
        lambda: sqs.receive_message(QueueUrl=missing),
        lambda: sqs.delete_queue(QueueUrl=missing),
        lambda: sqs.purge_queue(QueueUrl=missing),
        lambda: sqs.get_queue_attributes(QueueUrl=missing),
    ):
        with pytest.raises(sqs.exceptions.QueueDoesNotExist) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    url = make_queue(sqs)
    with pytest.raises(sqs.exceptions.ClientError) as e:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}})
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.ClientError) as e:
        sqs.create_queue(QueueName="bad name!")
    assert error_code(e) == "InvalidParameterValue"


def test_queue_url_may_name_any_host(sqs, server):
    name = qname()
    sqs.create_queue(QueueName=name)
    foreign = f"https://sqs.{h.REGION}.amazonaws.com/{h.ACCOUNT_ID}/{name}"
    sqs.send_message(QueueUrl=foreign, MessageBody="via a foreign url")
    [msg] = sqs.receive_message(QueueUrl=foreign, WaitTimeSeconds=1)["Messages"]
    assert msg["Body"] == "via a foreign url"


# --------------------------------------------------------------------------- event source mappings

# Prints each batch it gets; fails the messages whose body starts with "fail".
CONSUMER_SOURCE = """\
import json

def handler(event, context):
    records = event["Records"]
    print("BATCH " + json.dumps([{"id": r["messageId"], "body": r["body"], "count": r["attributes"]["ApproximateReceiveCount"],
                                  "source": r["eventSource"], "arn": r["eventSourceARN"], "md5": r["md5OfBody"],
                                  "attrs": r["messageAttributes"]} for r in records]))
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"].startswith("fail")]}
"""


def batches(server, name):
    return m.log_lines(server, name, "BATCH ")


def test_mapping_delivers_batches_to_a_function(sqs, server, lambda_client, create_function):
    fn = create_function(zip_bytes=h.make_zip({"app.py": CONSUMER_SOURCE}))
    url = make_queue(sqs, VisibilityTimeout=30)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    entries = [{"Id": f"e{i}", "MessageBody": f"job {i}"} for i in range(10)]
    for chunk in range(3):
        sqs.send_message_batch(QueueUrl=url, Entries=[dict(e, Id=f"{e['Id']}c{chunk}", MessageBody=f"{e['MessageBody']}/{chunk}") for e in entries])
    sqs.send_message(
        QueueUrl=url, MessageBody="with attributes", MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}}
    )
    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=fn.name, BatchSize=4, MaximumBatchingWindowInSeconds=1
    )
    assert mapping["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert mapping["BatchSize"] == 4 and mapping["EventSourceArn"] == arn
    assert mapping["FunctionArn"] == h.function_arn(fn.name)
    uuid_ = mapping["UUID"]
    got = lambda_client.get_event_source_mapping(UUID=uuid_)
    assert got["State"] == "Enabled"
    assert [x["UUID"] for x in lambda_client.list_event_source_mappings(FunctionName=fn.name)["EventSourceMappings"]] == [uuid_]

    def all_delivered():
        bodies = [r["body"] for b in batches(server, fn.name) for r in b]
        return bodies if len(bodies) >= 31 else None

    bodies = m.wait_for("31 messages at the function", all_delivered, server)
    assert sorted(bodies) == sorted([f"job {i}/{c}" for i in range(10) for c in range(3)] + ["with attributes"])
    assert all(1 <= len(b) <= 4 for b in batches(server, fn.name))
    record = next(r for b in batches(server, fn.name) for r in b if r["body"] == "with attributes")
    assert record["source"] == "aws:sqs" and record["arn"] == arn
    assert record["md5"] == m.md5_of_body("with attributes")
    assert record["attrs"]["kind"]["stringValue"] == "order"
    # Deleted after success: the queue is empty.
    m.wait_for(
        "the queue to be empty",
        lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0",
        server,
    )
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    # Disable, update, delete.
    upd = lambda_client.update_event_source_mapping(UUID=uuid_, Enabled=False, BatchSize=2)
    assert upd["BatchSize"] == 2
    assert lambda_client.get_event_source_mapping(UUID=uuid_)["State"] == "Disabled"
    lambda_client.delete_event_source_mapping(UUID=uuid_)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_event_source_mapping(UUID=uuid_)


def test_partial_batch_failure_redrives_only_the_failed_message(sqs, server, lambda_client, create_function):
    fn = create_function(zip_bytes=h.make_zip({"app.py": CONSUMER_SOURCE}))
    dlq = make_queue(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = make_queue(
        sqs, VisibilityTimeout=1, RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = [f"ok {i}" for i in range(9)] + ["fail me"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"m{i}", "MessageBody": b} for i, b in enumerate(bodies)])
    lambda_client.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=fn.name,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 2},
    )
    dead = m.drain(sqs, dlq, 1, timeout=40)
    assert [d["Body"] for d in dead] == ["fail me"]
    seen = [r for b in batches(server, fn.name) for r in b]
    ok = [r["body"] for r in seen if r["body"].startswith("ok")]
    assert sorted(ok) == sorted(bodies[:9]), "every good message exactly once"
    failed = [r for r in seen if r["body"] == "fail me"]
    assert [f["count"] for f in failed] == ["1", "2", "3"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)


def test_mapping_errors(lambda_client, sqs, create_function):
    fn = create_function()
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_event_source_mapping(UUID=str(uuid.uuid4()))
    url = make_queue(sqs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName="no-such-function")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=fn.name)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn.name, BatchSize=100)
    first = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn.name, Enabled=False)
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn.name)
    lambda_client.delete_event_source_mapping(UUID=first["UUID"])


# --------------------------------------------------------------------------- function credentials


def test_function_reaches_only_granted_queues(sqs, server, lambda_client, create_function):
    caller = m.create_caller(create_function)
    name = qname("granted")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]

    def call():
        r = lambda_client.invoke(
            FunctionName=caller.name, Payload=json.dumps({"service": "sqs", "queue": name, "body": "from inside"})
        )
        return json.loads(r["Payload"].read())

    assert call() == {"error": "AccessDenied"}
    m.grant(server, caller.name, f"sqs:{name}")
    assert "ok" in call(), call()
    [msg] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert msg["Body"] == "from inside"


# Sends to the queue it consumes: a loop, as Lambda's recursive loop detection
# sees them.
QUEUE_LOOPER_SOURCE = """\
import json, os, sys
sys.path.append(os.environ["TEST_SITE_PACKAGES"])
import boto3

def handler(event, context):
    for record in event["Records"]:
        n = int(record["body"]) + 1
        print("LOOP " + json.dumps({"n": n}))
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=record["eventSourceARN"].split(":")[-1])["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
"""


def test_a_function_sending_to_the_queue_it_consumes_is_stopped_after_16_invocations(sqs, server, lambda_client, create_function):
    fn = create_function(
        zip_bytes=h.make_zip({"app.py": QUEUE_LOOPER_SOURCE}),
        Environment={"Variables": {"TEST_SITE_PACKAGES": m.SITE_PACKAGES}},
        Timeout=30,
    )
    name = qname("loop")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    m.grant(server, fn.name, f"sqs:{name}")
    lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn.name, BatchSize=1)
    sqs.send_message(QueueUrl=url, MessageBody="0")

    def stopped():
        status, body = m.native(server, "GET", f"/v1/functions/{fn.name}/logs?limit=5000")
        return [e["message"] for e in body["events"] if "RecursiveInvocationException" in e["message"]]

    [line] = m.wait_for("the loop to be stopped", stopped, server, timeout=60)
    assert "the limit is 16" in line, line
    time.sleep(1)
    runs = sorted(r["n"] for r in m.log_lines(server, fn.name, "LOOP "))
    assert runs == list(range(1, 17)), runs
    # The looping message was deleted, not left to come back.
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, attrs


def test_message_limits_are_refused_as_sqs_refuses_them(sqs):
    """Review item 42: size, characters, attribute count, delay, visibility."""
    url = make_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x" * 262_144)
    for bad in (
        lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * 262_145),
        lambda: sqs.send_message(QueueUrl=url, MessageBody="a\u0000b"),
        lambda: sqs.send_message(QueueUrl=url, MessageBody="a\ufffeb"),
        lambda: sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
        ),
        lambda: sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901),
    ):
        with pytest.raises(sqs.exceptions.ClientError) as e:
            bad()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    [msg] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    with pytest.raises(sqs.exceptions.ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=43_201)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sqs.exceptions.ClientError):
        sqs.create_queue(QueueName=qname(), Attributes={"MaximumMessageSize": str(1_048_577)})
