"""The saga starter: one execution per order, named after it; a duplicate counted, never a second saga."""

import json

import boto3
import pytest

from tests.handlers.exercise_01 import failures

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


@pytest.fixture(scope="module")
def starter(moto_module, load_handler):
    role = "arn:aws:iam::123456789012:role/saga"
    arn = boto3.client("stepfunctions").create_state_machine(name="order-saga", definition=DEFINITION, roleArn=role)["stateMachineArn"]
    moto_module.setenv("STATE_MACHINE_ARN", arn)
    return load_handler("saga_starter")


def accepted(order_id: str, **overrides) -> dict:
    detail = {
        "version": 1,
        "order_id": order_id,
        "seq": 1,
        "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "quantity": 2}],
        "total": 12.5,
        "currency": "EUR",
        "accepted_at": "2026-01-01T00:00:00Z",
    }
    return {**detail, **overrides}


def record(sqs_events, eventbridge_event, detail, *, detail_type="OrderAccepted", source="blueprints.checkout"):
    return sqs_events.record(json.dumps(eventbridge_event(source, detail_type, detail)), queue="saga-starts")


def executions() -> list[dict]:
    client = boto3.client("stepfunctions")
    arn = client.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return client.list_executions(stateMachineArn=arn)["executions"]


def test_each_order_starts_one_execution_named_after_it_with_the_order_as_input(starter, sqs_events, eventbridge_event, lambda_context):
    event = sqs_events.event([record(sqs_events, eventbridge_event, accepted("o-start-1"))])
    assert starter.lambda_handler(event, lambda_context) == failures()
    (execution,) = [e for e in executions() if e["name"] == "o-start-1"]
    described = boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {
        "order": {k: v for k, v in accepted("o-start-1").items() if k in ("order_id", "customer_id", "items", "total", "currency")}
    }


def test_a_duplicate_delivery_starts_no_second_execution(starter, sqs_events, eventbridge_event, lambda_context):
    first = record(sqs_events, eventbridge_event, accepted("o-start-2"))
    again = record(sqs_events, eventbridge_event, accepted("o-start-2"))
    assert starter.lambda_handler(sqs_events.event([first]), lambda_context) == failures()
    assert starter.lambda_handler(sqs_events.event([again]), lambda_context) == failures()
    assert len([e for e in executions() if e["name"] == "o-start-2"]) == 1


def test_a_start_refused_as_already_existing_is_counted_not_failed(starter, sqs_events, eventbridge_event, lambda_context, monkeypatch, capsys):
    def refuse(**kwargs):
        raise starter.stepfunctions.exceptions.ExecutionAlreadyExists({"Error": {"Code": "ExecutionAlreadyExists", "Message": "closed"}}, "StartExecution")

    monkeypatch.setattr(starter.stepfunctions, "start_execution", refuse)
    one = record(sqs_events, eventbridge_event, accepted("o-start-7"))
    assert starter.lambda_handler(sqs_events.event([one]), lambda_context) == failures()
    assert '"DuplicateStartsRefused":[1.0]' in capsys.readouterr().out


def test_the_input_is_the_same_text_for_the_same_order_whatever_its_field_order(starter):
    one = starter.ORDER_ACCEPTED.parse(accepted("o-start-8"))
    other = starter.ORDER_ACCEPTED.parse(dict(reversed(list(accepted("o-start-8").items()))))
    assert starter.saga_input(one.model_dump()) == starter.saga_input(other.model_dump())


def test_bad_records_fail_alone_with_their_reason(starter, sqs_events, eventbridge_event, lambda_context):
    good = record(sqs_events, eventbridge_event, accepted("o-start-3"))
    wrong_type = record(sqs_events, eventbridge_event, accepted("o-start-4"), detail_type="OrderStatusChanged")
    wrong_source = record(sqs_events, eventbridge_event, accepted("o-start-5"), source="blueprints.orders")
    bad_order = record(sqs_events, eventbridge_event, accepted("not-an-order-id"))
    deep = sqs_events.record("[" * 1000 + "]" * 1000, queue="saga-starts")
    records = [good, wrong_type, wrong_source, bad_order, deep]
    assert starter.lambda_handler(sqs_events.event(records), lambda_context) == failures(*(r["messageId"] for r in records[1:]))
    assert [e["name"] for e in executions() if e["name"].startswith("o-start-")].count("o-start-3") == 1


def test_a_failing_start_fails_its_record_for_a_redelivery(starter, sqs_events, eventbridge_event, lambda_context, monkeypatch):
    def refuse(**kwargs):
        raise starter.stepfunctions.exceptions.StateMachineDoesNotExist({"Error": {"Code": "StateMachineDoesNotExist", "Message": "gone"}}, "StartExecution")

    monkeypatch.setattr(starter.stepfunctions, "start_execution", refuse)
    one = record(sqs_events, eventbridge_event, accepted("o-start-6"))
    assert starter.lambda_handler(sqs_events.event([one]), lambda_context) == failures(one["messageId"])
