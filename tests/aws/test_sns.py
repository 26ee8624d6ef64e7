"""The SNS API (Query protocol, XML answers) against a running Nimbus: topics,
subscriptions (lambda and sqs), publish with message attributes, filter
policies, raw delivery, fan-out to two functions and a queue, errors, and
least privilege for function credentials."""

import json
import time
import uuid

import pytest

import lambda_helpers as h
import messaging_helpers as m

# Prints the SNS event it receives.
SUBSCRIBER_SOURCE = """\
import json

def handler(event, context):
    print("SNS " + json.dumps(event))
    return "ok"
"""


@pytest.fixture(scope="module")
def sns(server):
    return m.client("sns", server)


@pytest.fixture(scope="module")
def sqs(server):
    return m.client("sqs", server)


def tname(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def queue(sqs):
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def test_topics_create_list_attributes_delete(sns):
    name = tname()
    arn = sns.create_topic(Name=name)["TopicArn"]
    assert arn == f"arn:aws:sns:{h.REGION}:{h.ACCOUNT_ID}:{name}"
    assert sns.create_topic(Name=name)["TopicArn"] == arn
    assert arn in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Alerts & more")
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["DisplayName"] == "Alerts & more" and attrs["TopicArn"] == arn
    sns.delete_topic(TopicArn=arn)
    assert arn not in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_topic_attributes(TopicArn=arn)


def test_errors(sns, sqs):
    missing = f"arn:aws:sns:{h.REGION}:{h.ACCOUNT_ID}:nope-{uuid.uuid4().hex[:6]}"
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.publish(TopicArn=missing, Message="x")
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.subscribe(TopicArn=missing, Protocol="sqs", Endpoint=queue(sqs)[1])
    arn = sns.create_topic(Name=tname())["TopicArn"]
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(TopicArn=arn, Protocol="carrier-pigeon", Endpoint="x")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue(sqs)[1], Attributes={"FilterPolicy": "[not json"})
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.create_topic(Name="bad name!")
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.unsubscribe(SubscriptionArn=f"{arn}:{uuid.uuid4()}")


def test_publish_to_queue_envelope_raw_and_filter(sns, sqs):
    arn = sns.create_topic(Name=tname())["TopicArn"]
    env_url, env_arn = queue(sqs)
    raw_url, raw_arn = queue(sqs)
    flt_url, flt_arn = queue(sqs)
    env_sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=env_arn, ReturnSubscriptionArn=True)["SubscriptionArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=raw_arn, Attributes={"RawMessageDelivery": "true"})
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=flt_arn,
        Attributes={"FilterPolicy": json.dumps({"kind": ["order"], "amount": [{"numeric": [">", 100]}]})},
    )
    attrs = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "amount": {"DataType": "Number", "StringValue": "250"},
    }
    mid = sns.publish(TopicArn=arn, Message="big order", Subject="orders", MessageAttributes=attrs)["MessageId"]
    sns.publish(TopicArn=arn, Message="small order", MessageAttributes=dict(attrs, amount={"DataType": "Number", "StringValue": "5"}))
    sns.publish(TopicArn=arn, Message="no attributes")

    envelopes = [json.loads(x["Body"]) for x in m.drain(sqs, env_url, 3)]
    assert sorted(e["Message"] for e in envelopes) == ["big order", "no attributes", "small order"]
    big = next(e for e in envelopes if e["Message"] == "big order")
    assert big["Type"] == "Notification" and big["MessageId"] == mid and big["TopicArn"] == arn
    assert big["Subject"] == "orders"
    assert big["MessageAttributes"]["amount"] == {"Type": "Number", "Value": "250"}
    assert "SigningCertURL" in big and "UnsubscribeURL" in big and env_sub in big["UnsubscribeURL"]

    raw = m.drain(sqs, raw_url, 3)
    assert sorted(x["Body"] for x in raw) == ["big order", "no attributes", "small order"]
    big_raw = next(x for x in raw if x["Body"] == "big order")
    assert big_raw["MessageAttributes"]["kind"] == {"DataType": "String", "StringValue": "order"}
    assert big_raw["MD5OfMessageAttributes"] == m.md5_of_attributes(big_raw["MessageAttributes"])

    filtered = m.drain(sqs, flt_url, 1)
    assert [json.loads(x["Body"])["Message"] for x in filtered] == ["big order"]
    assert "Messages" not in sqs.receive_message(QueueUrl=flt_url, WaitTimeSeconds=1)


def test_subscriptions_list_attributes_unsubscribe(sns, sqs):
    arn = sns.create_topic(Name=tname())["TopicArn"]
    _, qarn = queue(sqs)
    sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)["SubscriptionArn"]
    assert sub.startswith(arn + ":")
    # Subscribing again gives the same subscription.
    assert sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)["SubscriptionArn"] == sub
    by_topic = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert by_topic == [{"SubscriptionArn": sub, "Owner": h.ACCOUNT_ID, "Protocol": "sqs", "Endpoint": qarn, "TopicArn": arn}]
    assert sub in [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]]
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue='{"a": ["b"]}')
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attrs["FilterPolicy"] == '{"a": ["b"]}' and attrs["Protocol"] == "sqs" and attrs["TopicArn"] == arn
    sns.unsubscribe(SubscriptionArn=sub)
    assert sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"] == []


def test_fan_out_to_two_functions_and_a_queue(sns, sqs, server, create_function):
    fns = [create_function(zip_bytes=h.make_zip({"app.py": SUBSCRIBER_SOURCE})) for _ in range(2)]
    arn = sns.create_topic(Name=tname("fan"))["TopicArn"]
    url, qarn = queue(sqs)
    subs = [sns.subscribe(TopicArn=arn, Protocol="lambda", Endpoint=h.function_arn(f.name))["SubscriptionArn"] for f in fns]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)
    mid = sns.publish(
        TopicArn=arn, Message="disk usage 91%", Subject="disk", MessageAttributes={"severity": {"DataType": "String", "StringValue": "high"}}
    )["MessageId"]
    for f, sub in zip(fns, subs):
        [event] = m.wait_for(f"the SNS event at {f.name}", lambda: m.log_lines(server, f.name, "SNS "), server)
        [record] = event["Records"]
        assert record["EventSource"] == "aws:sns" and record["EventVersion"] == "1.0"
        assert record["EventSubscriptionArn"] == sub
        s = record["Sns"]
        assert s["Type"] == "Notification" and s["MessageId"] == mid and s["TopicArn"] == arn
        assert s["Message"] == "disk usage 91%" and s["Subject"] == "disk"
        assert s["MessageAttributes"] == {"severity": {"Type": "String", "Value": "high"}}
        assert "SigningCertUrl" in s and "UnsubscribeUrl" in s
    [queued] = m.drain(sqs, url, 1)
    assert json.loads(queued["Body"])["MessageId"] == mid


def test_function_reaches_only_granted_topics(sns, sqs, server, lambda_client, create_function):
    caller = m.create_caller(create_function)
    name = tname("granted")
    arn = sns.create_topic(Name=name)["TopicArn"]
    url, qarn = queue(sqs)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})

    def call():
        r = lambda_client.invoke(FunctionName=caller.name, Payload=json.dumps({"service": "sns", "topic": arn, "body": "hi"}))
        return json.loads(r["Payload"].read())

    assert call() == {"error": "AuthorizationError"}
    m.grant(server, caller.name, f"sns:{name}")
    assert "ok" in call()
    assert [x["Body"] for x in m.drain(sqs, url, 1)] == ["hi"]


def test_async_destinations_can_be_queues_and_topics(sns, sqs, server, lambda_client, create_function):
    fn = create_function()
    url, qarn = queue(sqs)
    topic = sns.create_topic(Name=tname("dest"))["TopicArn"]
    turl, tqarn = queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tqarn, Attributes={"RawMessageDelivery": "true"})
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name, DestinationConfig={"OnSuccess": {"Destination": qarn}}
    )
    lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=b'{"n": 1}')
    [record] = m.drain(sqs, url, 1)
    body = json.loads(record["Body"])
    assert body["requestContext"]["condition"] == "Success" and body["requestPayload"] == {"n": 1}
    lambda_client.put_function_event_invoke_config(
        FunctionName=fn.name, DestinationConfig={"OnSuccess": {"Destination": topic}}
    )
    lambda_client.invoke(FunctionName=fn.name, InvocationType="Event", Payload=b'{"n": 2}')
    [record] = m.drain(sqs, turl, 1)
    assert json.loads(record["Body"])["requestPayload"] == {"n": 2}
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.put_function_event_invoke_config(
            FunctionName=fn.name, DestinationConfig={"OnFailure": {"Destination": "arn:aws:s3:::bucket"}}
        )


# Publishes to the topic it is subscribed to: a loop, as Lambda's recursive
# loop detection sees them.
LOOPER_SOURCE = """\
import json, os, sys
sys.path.append(os.environ["TEST_SITE_PACKAGES"])
import boto3

def handler(event, context):
    sns = event["Records"][0]["Sns"]
    n = int(sns["Message"]) + 1
    print("LOOP " + json.dumps({"n": n}))
    boto3.client("sns").publish(TopicArn=sns["TopicArn"], Message=str(n))
    return "ok"
"""


def log_text(server, name):
    status, body = m.native(server, "GET", f"/v1/functions/{name}/logs?limit=5000")
    assert status == 200, (status, body)
    return [e["message"] for e in body["events"]]


def test_a_function_publishing_to_its_own_topic_is_stopped_after_16_invocations(sns, server, create_function):
    fn = create_function(
        zip_bytes=h.make_zip({"app.py": LOOPER_SOURCE}),
        Environment={"Variables": {"TEST_SITE_PACKAGES": m.SITE_PACKAGES}},
        Timeout=30,
    )
    name = tname("loop")
    arn = sns.create_topic(Name=name)["TopicArn"]
    m.grant(server, fn.name, f"sns:{name}")
    sns.subscribe(TopicArn=arn, Protocol="lambda", Endpoint=h.function_arn(fn.name))
    sns.publish(TopicArn=arn, Message="0")
    m.wait_for(
        "the loop to be stopped",
        lambda: [line for line in log_text(server, fn.name) if "RecursiveInvocationException" in line],
        server,
        timeout=60,
    )
    time.sleep(1)
    runs = sorted(r["n"] for r in m.log_lines(server, fn.name, "LOOP "))
    assert runs == list(range(1, 17)), runs
    stopped = [line for line in log_text(server, fn.name) if "RecursiveInvocationException" in line]
    assert len(stopped) == 1 and "the limit is 16" in stopped[0], stopped


def test_message_size_counts_attributes_and_json_structure_needs_a_default(sns):
    """Review item 43: SNS's 256 KB covers the message and its attributes."""
    arn = sns.create_topic(Name=tname("size"))["TopicArn"]
    sns.publish(TopicArn=arn, Message="x" * 262_144)
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.publish(TopicArn=arn, Message="x" * 262_145)
    attrs = {"note": {"DataType": "String", "StringValue": "y" * 200}}
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.publish(TopicArn=arn, Message="x" * 262_100, MessageAttributes=attrs)
    with pytest.raises(sns.exceptions.InvalidParameterException) as e:
        sns.publish(TopicArn=arn, Message=json.dumps({"sqs": "only"}), MessageStructure="json")
    assert "No default entry" in e.value.response["Error"]["Message"]
