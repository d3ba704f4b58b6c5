"""CaseNetflix's handlers: a team's consumer behind its circuit breaker, the encoding steps and the workflow starter."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.handlers.record_shapes import metric_totals

BREAKERS, ENCODINGS, BUS = "breakers", "encodings", "netflix-bus"


def bus_event(detail_type: str, detail: dict, source: str = "netflix.playback") -> str:
    return json.dumps({"version": "0", "id": "x", "detail-type": detail_type, "source": source, "account": "123456789012",
                       "time": "2026-01-01T20:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})  # fmt: skip


def stopped(event_id: str, **overrides) -> dict:
    detail = {"version": 1, "event_id": event_id, "member_id": "m-1", "title_id": "t-1", "position_seconds": 60, "rebuffer_count": 2}
    return {**detail, "at": "2026-01-01T20:00:00Z", **overrides}


def uploaded(upload_id: str = "u-1", **overrides) -> dict:
    title = {"version": 1, "event_id": f"{upload_id}-up", "upload_id": upload_id, "title_id": "t-9", "source_uri": f"s3://studio/{upload_id}.mxf"}
    return {**title, "profiles": ["h264-hd", "av1-hd"], **overrides}


def table(name: str):
    dynamodb = boto3.resource("dynamodb")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb.Table(name)


@pytest.fixture(scope="module")
def tables(moto_module):
    for name, value in {"BREAKER_TABLE_NAME": BREAKERS, "ENCODINGS_TABLE_NAME": ENCODINGS, "BUS_NAME": BUS, "TEAM_NAME": "Quality"}.items():
        moto_module.setenv(name, value)
    return table(BREAKERS), table(ENCODINGS)


@pytest.fixture
def consumer(tables, load_function_module, capsys):
    tables[0].delete_item(Key={"pk": "circuit#sink-Quality"})
    loaded = load_function_module("case_netflix_team_consumer")
    capsys.readouterr()
    return loaded


def test_a_consumer_delivers_each_event_once_and_rejects_what_is_not_an_event_of_the_bus(consumer, sqs_events, lambda_context, capsys):
    good = [sqs_events.record(bus_event("PlaybackStopped", stopped(f"e-{n}"))) for n in range(3)]
    again = sqs_events.record(bus_event("PlaybackStopped", stopped("e-0")))
    unknown = sqs_events.record(bus_event("PlaybackPaused", stopped("e-7")))
    broken = sqs_events.record(bus_event("PlaybackStopped", stopped("e-8", rebuffer_count=-1)))
    not_json = sqs_events.record("{")

    response = consumer.lambda_handler(sqs_events.event([*good, again, unknown, broken, not_json]), lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in (unknown, broken, not_json)]}
    assert sorted(consumer.sink.delivered) == ["e-0", "e-1", "e-2"] and consumer.sink.delivered["e-0"]["rebuffer_count"] == 2
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["EventsDelivered"], totals["DuplicatesSkipped"], totals["RejectedRecords"]) == (3, 1, 3)


def test_a_failing_service_opens_the_breaker_and_later_records_fail_without_calling_it(consumer, sqs_events, lambda_context, monkeypatch, capsys):
    monkeypatch.setattr(consumer.sink, "failure_rate", 1.0)
    records = [sqs_events.record(bus_event("PlaybackStopped", stopped(f"f-{n}"))) for n in range(8)]

    response = consumer.lambda_handler(sqs_events.event(records), lambda_context)

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [r["messageId"] for r in records]
    assert consumer.sink.calls == consumer.breaker.failure_threshold == 5
    assert consumer.breaker.state() == "open"
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["SinkFailures"], totals["CircuitOpenRefusals"], totals["SinkCircuitState"]) == (5, 3, 2)


@pytest.fixture
def steps(tables, load_function_module, capsys):
    events, sqs = boto3.client("events"), boto3.client("sqs")
    if BUS not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=BUS)
        url = sqs.create_queue(QueueName="published")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="published", EventBusName=BUS, EventPattern=json.dumps({"detail-type": ["TitlePublished"]}))
        events.put_targets(Rule="published", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    loaded = load_function_module("case_netflix_encoding")
    capsys.readouterr()
    return loaded


def published() -> list[dict]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="published")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"])["detail"] for m in messages]


def test_encode_then_publish_records_the_renditions_once_and_puts_title_published(steps, tables, lambda_context):
    title = uploaded("u-10")
    first = steps.lambda_handler({"action": "encode", "title": title}, lambda_context)
    again = steps.lambda_handler({"action": "encode", "title": title}, lambda_context)
    assert first == again == {"renditions": ["s3://studio/u-10/h264-hd.mp4", "s3://studio/u-10/av1-hd.mp4"]}

    assert steps.lambda_handler({"action": "publish", "title": title}, lambda_context) == {"published": True}

    assert tables[1].get_item(Key={"pk": "upload#u-10"})["Item"]["status"] == "PUBLISHED"
    (detail,) = published()
    assert (detail["event_id"], detail["title_id"], detail["renditions"]) == ("u-10-published", "t-9", first["renditions"])
    with pytest.raises(steps.SagaAlreadyCompleted):  # the failure path finds the work done: nothing to undo
        steps.lambda_handler({"action": "record", "to": "COMPENSATING", "title": title}, lambda_context)
    assert steps.lambda_handler({"action": "discard", "title": title}, lambda_context) == {"discarded": False}


def test_a_discard_first_stops_a_late_encode_and_publish(steps, tables, lambda_context):
    title = uploaded("u-11")
    assert steps.lambda_handler({"action": "discard", "title": title}, lambda_context) == {"discarded": True}
    with pytest.raises(steps.EncodingDiscarded):
        steps.lambda_handler({"action": "encode", "title": title}, lambda_context)
    with pytest.raises(steps.EncodingDiscarded):
        steps.lambda_handler({"action": "publish", "title": title}, lambda_context)
    assert steps.lambda_handler({"action": "record", "to": "COMPENSATED", "title": title}, lambda_context) == {"outcome": "COMPENSATED"}
    assert tables[1].get_item(Key={"pk": "upload#u-11"})["Item"]["outcome"] == "COMPENSATED"
    assert published() == []


def test_a_source_that_is_not_a_mezzanine_file_is_refused_and_bad_input_is_invalid(steps, tables, lambda_context):
    with pytest.raises(steps.EncodeFailed, match="not a mezzanine file"):
        steps.lambda_handler({"action": "encode", "title": uploaded("u-12", source_uri="s3://studio/u-12.mp4")}, lambda_context)
    assert "Item" not in tables[1].get_item(Key={"pk": "upload#u-12"})
    with pytest.raises(steps.InvalidSagaInput):
        steps.lambda_handler({"action": "transcode", "title": uploaded()}, lambda_context)
    with pytest.raises(steps.InvalidSagaInput):
        steps.lambda_handler({"action": "encode", "title": uploaded(profiles=["vp9"])}, lambda_context)
    with pytest.raises(steps.InvalidSagaInput):
        steps.lambda_handler({"action": "record", "to": "DONE", "title": uploaded()}, lambda_context)


def test_the_starter_runs_one_workflow_per_upload_and_rejects_other_events(tables, load_function_module, moto_module, sqs_events, lambda_context, capsys):
    client = boto3.client("stepfunctions")
    definition = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}})
    arn = client.create_state_machine(name="encoding", definition=definition, roleArn="arn:aws:iam::123456789012:role/encoding")["stateMachineArn"]
    moto_module.setenv("STATE_MACHINE_ARN", arn)
    starter = load_function_module("case_netflix_encoding_starter")
    capsys.readouterr()
    first = sqs_events.record(bus_event("TitleUploaded", uploaded("u-20"), source="netflix.studio"))
    duplicate = sqs_events.record(bus_event("TitleUploaded", uploaded("u-20"), source="netflix.studio"))
    other = sqs_events.record(bus_event("PlaybackStopped", stopped("e-1")))

    response = starter.lambda_handler(sqs_events.event([first, duplicate, other]), lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": other["messageId"]}]}
    (execution,) = client.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == "u-20"
    started = json.loads(client.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["title"]["upload_id"] == "u-20" and started["title"]["profiles"] == ["h264-hd", "av1-hd"]
    totals = metric_totals(capsys.readouterr().out)
    assert totals["WorkflowStarts"] + totals["DuplicateStartsRefused"] == 2 and totals["WorkflowStarts"] >= 1
