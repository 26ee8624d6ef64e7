"""Workflows as targets of queue events: an event source mapping whose
FunctionName is a state machine ARN starts an execution per batch (Nimbus's
extension, the job an EventBridge Pipe does on AWS)."""

import json
import time

import pytest
from botocore.exceptions import ClientError

import lambda_helpers as h
from messaging_helpers import client

PASS = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def test_a_queue_mapping_starts_one_execution_per_batch(server, lambda_client):
    sqs, sfn = client("sqs", server), client("stepfunctions", server)
    queue = sqs.create_queue(QueueName=h.unique_name("wq"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    machine = sfn.create_state_machine(name=h.unique_name("sm"), definition=PASS, roleArn=h.ROLE_ARN)["stateMachineArn"]

    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=machine, BatchSize=10, MaximumBatchingWindowInSeconds=1
    )
    assert mapping["FunctionArn"] == machine
    for n in range(5):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": n}))

    deadline = time.time() + 30
    seen = set()
    while time.time() < deadline and len(seen) < 5:
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]:
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if d["status"] == "SUCCEEDED":
                for r in json.loads(d["output"])["Records"]:
                    assert r["eventSource"] == "aws:sqs"
                    seen.add(json.loads(r["body"])["n"])
        time.sleep(0.2)
    assert seen == set(range(5)), "every message reached a workflow execution"
    # Deleted once their execution started: nothing comes back.
    time.sleep(1.5)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])


def test_a_missing_state_machine_is_refused(server, lambda_client):
    sqs = client("sqs", server)
    queue = sqs.create_queue(QueueName=h.unique_name("wq"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(ClientError) as e:
        lambda_client.create_event_source_mapping(
            EventSourceArn=queue_arn,
            FunctionName=f"arn:aws:states:{h.REGION}:{h.ACCOUNT_ID}:stateMachine:missing",
        )
    assert h.http_status(e.value) == 400
