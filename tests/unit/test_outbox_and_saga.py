"""Outbox and Saga: the templates they make."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_

from messaging_constructs import EventBus, SecureQueue
from messaging_constructs.outbox import OUTBOX_FILTER, Outbox
from messaging_constructs.saga import ALREADY_COMPLETED_ERROR, TRANSIENT_ERRORS, AwaitCallback, Invoke, Saga, SagaStep
from tests.unit.helpers import actions, new_stack, only, resources, statements

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:step"


def test_outbox_table_streams_new_images_with_ttl_and_the_pipe_filters_outbox_writes_through_the_relay():
    stack = new_stack()
    outbox = Outbox(stack, "Outbox", bus=EventBus(stack, "Bus"), event_source="blueprints.checkout")
    tables = resources(stack, "AWS::DynamoDB::Table")
    (_, table) = only(tables)
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "aggregate_id", "KeyType": "HASH"}]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (_, pipe) = only(resources(stack, "AWS::Pipes::Pipe"))
    pipe = pipe["Properties"]
    assert json.loads(pipe["SourceParameters"]["FilterCriteria"]["Filters"][0]["Pattern"]) == OUTBOX_FILTER
    assert pipe["TargetParameters"] == {
        "EventBridgeEventBusParameters": {"DetailType": "$.detail_type", "Source": "blueprints.checkout"},
        "InputTemplate": "<$.detail>",
    }
    assert pipe["SourceParameters"]["DynamoDBStreamParameters"]["OnPartialBatchItemFailure"] == "AUTOMATIC_BISECT"
    assert "DeadLetterConfig" in pipe["SourceParameters"]["DynamoDBStreamParameters"]
    assert outbox.relay.function.node.default_child is not None and pipe["Enrichment"]["Fn::GetAtt"][0].startswith("OutboxRelay")
    # The pipe may put only this outbox's source on the bus.
    put = [s for s in statements(stack) if "events:PutEvents" in actions(s)]
    assert put and all(s["Condition"] == {"StringEquals": {"events:source": ["blueprints.checkout"]}} for s in put)


def test_outbox_write_grant_is_put_item_and_the_key_only():
    stack = new_stack()
    outbox = Outbox(stack, "Outbox", bus=EventBus(stack, "Bus"), event_source="blueprints.checkout")
    writer = lambda_.Function(stack, "Writer", runtime=lambda_.Runtime.PYTHON_3_12, handler="x.h", code=lambda_.Code.from_inline("x"))
    outbox.grant_write(writer)
    policies = resources(stack, "AWS::IAM::Policy").values()
    granted = {a for policy in policies for statement in policy["Properties"]["PolicyDocument"]["Statement"] for a in actions(statement)}
    assert {"dynamodb:PutItem", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"} <= granted
    assert not any(a.startswith("dynamodb:") and a != "dynamodb:PutItem" for a in granted)


@pytest.mark.parametrize("source", ["", "aws.orders"])
def test_outbox_refuses_a_missing_or_aws_source(source):
    stack = new_stack()
    with pytest.raises(ValueError, match="event_source"):
        Outbox(stack, "Outbox", bus=EventBus(stack, "Bus"), event_source=source)


def _saga(stack, **options) -> Saga:
    fn = lambda_.Function.from_function_arn(stack, "Step", FUNCTION_ARN)
    queue = SecureQueue(stack, "Callbacks")

    def task(name):
        return Invoke(name, fn, {"step": name, "order.$": "$.order"})

    return Saga(
        stack,
        "Saga",
        steps=[
            SagaStep(task("A"), task("UndoA")),
            SagaStep(task("B")),
            SagaStep(task("C"), task("UndoC")),
            SagaStep(AwaitCallback("Wait", queue, {"order.$": "$.order"}, timeout=Duration.minutes(2))),
        ],
        on_failure=task("Failing"),
        on_compensated=task("Finished"),
        on_abandoned=task("Abandoning"),
        **options,
    )


def _definition(stack) -> dict:
    (_, machine) = only(resources(stack, "AWS::StepFunctions::StateMachine"))
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "ARN" for p in parts))


def test_saga_runs_the_steps_in_order_and_each_failure_compensates_from_its_own_step_backwards():
    stack = new_stack()
    _saga(stack)
    states = _definition(stack)["States"]
    assert _definition(stack)["StartAt"] == "Start" and states["Start"]["Default"] == "A"
    assert [states["A"]["Next"], states["B"]["Next"], states["C"]["Next"], states["Wait"]["Next"]] == ["B", "C", "Wait", "Completed"]
    for step in ("A", "B", "C", "Wait"):
        (catch,) = states[step]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{step} failed"}
        assert states[f"{step} failed"]["Next"] == "Failing"
    assert states["Failing"]["Next"] == "Compensate from"
    entry = {c["StringEquals"]: c["Next"] for c in states["Compensate from"]["Choices"]}
    assert entry == {"A": "UndoA", "B": "UndoA", "C": "UndoC", "Wait": "UndoC"}
    assert states["UndoC"]["Next"] == "UndoA" and states["UndoA"]["Next"] == "Finished" and states["Finished"]["Next"] == "Compensated"
    assert states["Compensated"]["Type"] == "Succeed" and states["Completed"]["Type"] == "Succeed"


def test_an_input_asking_for_compensation_runs_every_compensation_and_no_step():
    stack = new_stack()
    _saga(stack)
    states = _definition(stack)["States"]
    (choice,) = states["Start"]["Choices"]
    assert choice == {"Variable": "$.compensate", "IsPresent": True, "Next": "Compensation requested"}
    assert states["Compensation requested"] == {"Type": "Pass", "InputPath": "$.compensate", "ResultPath": "$.error", "Next": "Compensate everything"}
    assert states["Compensate everything"]["Result"] == "Wait" and states["Compensate everything"]["Next"] == "Failing"


def test_saga_retries_transient_errors_with_jittered_backoff_and_compensations_on_anything():
    stack = new_stack()
    _saga(stack, transient_attempts=3, compensation_attempts=5)
    states = _definition(stack)["States"]
    (retry,) = states["A"]["Retry"]
    assert retry == {
        "ErrorEquals": list(TRANSIENT_ERRORS),
        "IntervalSeconds": 1,
        "MaxAttempts": 3,
        "BackoffRate": 2,
        "MaxDelaySeconds": 30,
        "JitterStrategy": "FULL",
    }
    assert "Retry" not in states["Wait"]
    for compensation in ("UndoA", "UndoC", "Finished"):
        (retry,) = states[compensation]["Retry"]
        assert retry["ErrorEquals"] == ["States.ALL"] and retry["MaxAttempts"] == 5 and retry["JitterStrategy"] == "FULL"
        assert states[compensation]["Catch"][0]["Next"] == "Abandoning"
    # The failure path: SagaAlreadyCompleted ends it succeeded, unretried; matched before States.ALL (the first match wins).
    already, retry = states["Failing"]["Retry"]
    assert already == {"ErrorEquals": [ALREADY_COMPLETED_ERROR], "MaxAttempts": 0}
    assert retry["ErrorEquals"] == ["States.ALL"] and retry["MaxAttempts"] == 5
    completed, abandoned = states["Failing"]["Catch"]
    assert completed["ErrorEquals"] == [ALREADY_COMPLETED_ERROR] and states[completed["Next"]] == {"Type": "Succeed"}
    assert abandoned["ErrorEquals"] == ["States.ALL"] and abandoned["Next"] == "Abandoning"
    assert states["Abandoning"]["Next"] == "Abandoned" and states["Abandoned"]["Type"] == "Fail"
    assert states["Abandoning"]["Catch"][0]["Next"] == "Abandoned"


def test_saga_is_a_standard_workflow_logged_traced_encrypted_and_alarmed():
    stack = new_stack()
    _saga(stack, timeout=Duration.hours(2))
    (_, machine) = only(resources(stack, "AWS::StepFunctions::StateMachine"))
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD" and props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL" and props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    assert _definition(stack)["TimeoutSeconds"] == 7200
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(stack, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/States"
    }
    assert set(alarms) == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(a["Namespace"] == "AWS/States" and [d["Name"] for d in a["Dimensions"]] == ["StateMachineArn"] for a in alarms.values())


def test_saga_needs_a_step_and_a_state_id_per_task():
    stack = new_stack()
    fn = lambda_.Function.from_function_arn(stack, "Step", FUNCTION_ARN)
    with pytest.raises(ValueError, match="at least one step"):
        Saga(stack, "Saga", steps=[], on_failure=Invoke("F", fn, {}), on_compensated=Invoke("C", fn, {}))
    with pytest.raises(ValueError, match="its own state_id"):
        Saga(stack, "Saga2", steps=[SagaStep(Invoke("A", fn, {}))], on_failure=Invoke("A", fn, {}), on_compensated=Invoke("C", fn, {}))


def test_saga_role_invokes_exactly_its_functions_and_sends_exactly_to_its_queue():
    stack = new_stack()
    _saga(stack)
    granted = [s for s in statements(stack) if s["Effect"] == "Allow"]
    invoke = [s for s in granted if "lambda:InvokeFunction" in actions(s)]
    assert invoke and all(s["Resource"] == FUNCTION_ARN for s in invoke)
    send = [s for s in granted if "sqs:SendMessage" in actions(s)]
    assert send and all("Fn::GetAtt" in s["Resource"] for s in send)
    assert not [a for s in granted for a in actions(s) if a.endswith("*")]


def test_a_callback_step_carries_the_task_token_its_timeout_and_no_retry():
    stack = new_stack()
    _saga(stack)
    wait = _definition(stack)["States"]["Wait"]
    assert wait["Resource"] == "arn:ARN:states:::sqs:sendMessage.waitForTaskToken"  # ARN: the partition, resolved at deploy
    assert wait["Parameters"]["MessageBody"] == {"order.$": "$.order", "task_token.$": "$$.Task.Token"}
    assert wait["TimeoutSeconds"] == 120 and "Retry" not in wait and wait["ResultPath"] == "$.Wait"
