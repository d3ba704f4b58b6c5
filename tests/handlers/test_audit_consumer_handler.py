"""The audit consumer: every order event logged once, bad records failed, none lost."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.record_shapes import (
    NOT_AN_OBJECT,
    NOT_AN_OBJECT_IDS,
    UNNAMEABLE_SQS_RECORD_IDS,
    UNNAMEABLE_SQS_RECORDS,
    metric_totals,
    unnameable_sqs_event,
)

FAST = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Wrong values for the fields the audit consumer reads.
BAD_VALUES = {
    "event_id": ["not-a-uuid", 42, ""],
    "event_type": ["OrderShipped", "orderplaced", ""],
    "version": [0, 2, "1", 1.5],
    "order_id": ["", 42],
    "occurred_at": ["yesterday", "2025-03-14T09:26:53", 1_741_944_413],
}


@pytest.fixture(scope="module")
def audit(moto_module, load_handler):
    return load_handler("audit_consumer")


def failures(*message_ids):
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def test_a_batch_of_good_events_has_no_failures(audit, sqs_events, new_order, lambda_context, log_records):
    logged = log_records(audit)
    orders = [new_order(), new_order(event_type="OrderCancelled"), new_order()]
    event = sqs_events.event([sqs_events.order_record(order, queue="audit") for order in orders])

    assert audit.lambda_handler(event, lambda_context) == failures()

    audited = [record for record in logged if record.getMessage() == "Order event audited"]
    assert [(r.event_id, r.event_type, r.order_id) for r in audited] == [(order["event_id"], order["event_type"], order["order_id"]) for order in orders]


def test_a_mixed_batch_fails_exactly_the_bad_records(audit, sqs_events, new_order, lambda_context):
    good = [sqs_events.order_record(new_order(), queue="audit") for _ in range(3)]
    not_json = sqs_events.record("order placed: o-1", queue="audit")
    not_object = sqs_events.record(json.dumps([new_order()]), queue="audit")
    unknown_type = sqs_events.order_record(new_order(event_type="OrderShipped"), queue="audit")
    future_version = sqs_events.order_record(new_order(version=2), queue="audit")
    records = [good[0], not_json, good[1], not_object, unknown_type, good[2], future_version]

    response = audit.lambda_handler(sqs_events.event(records), lambda_context)

    assert response == failures(not_json["messageId"], not_object["messageId"], unknown_type["messageId"], future_version["messageId"])


def test_a_batch_of_only_bad_records_is_reported_not_raised(audit, sqs_events, lambda_context):
    records = [sqs_events.record("{", queue="audit"), sqs_events.record("null", queue="audit")]

    response = audit.lambda_handler(sqs_events.event(records), lambda_context)

    assert response == failures(records[0]["messageId"], records[1]["messageId"])


def test_a_rejected_record_is_logged_with_its_reason(audit, sqs_events, new_order, lambda_context, log_records):
    logged = log_records(audit)
    record = sqs_events.order_record(new_order(version=7), queue="audit", receive_count=3)

    audit.lambda_handler(sqs_events.event([record]), lambda_context)

    [rejected] = [entry for entry in logged if entry.getMessage() == "Rejected record"]
    assert rejected.message_id == record["messageId"]
    assert rejected.receive_count == 3
    assert "unsupported version 7" in rejected.reason


def test_each_event_type_has_its_own_metric(audit, sqs_events, new_order, lambda_context, capsys):
    orders = [new_order(), new_order(), new_order(event_type="OrderCancelled")]
    capsys.readouterr()

    audit.lambda_handler(sqs_events.event([sqs_events.order_record(o, queue="audit") for o in orders]), lambda_context)

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {}
    for blob in emitted:
        for definition in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = blob[definition["Name"]]
            values[definition["Name"]] = sum(value) if isinstance(value, list) else value
    assert values["AuditedOrderPlaced"] == 2
    assert values["AuditedOrderCancelled"] == 1


@FAST
@given(data=st.data())
def test_no_record_is_lost_whatever_the_bodies(audit, sqs_events, order_strategies, lambda_context, data):
    good = data.draw(st.lists(order_strategies.valid_order(), max_size=5))
    bad = data.draw(st.lists(order_strategies.bad_body(BAD_VALUES), min_size=1, max_size=5))
    items = [(True, json.dumps(order)) for order in good] + [(False, body) for body in bad]
    items = data.draw(st.permutations(items))
    records = [sqs_events.record(body, queue="audit") for _, body in items]

    response = audit.lambda_handler(sqs_events.event(records), lambda_context)

    expected = [record["messageId"] for (is_good, _), record in zip(items, records, strict=True) if not is_good]
    assert response == failures(*expected)


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    audit, sqs_events, new_order, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(audit)
    bad, good = sqs_events.record(body, queue="audit"), sqs_events.order_record(new_order(), queue="audit")
    capsys.readouterr()

    assert audit.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(audit, sqs_events, new_order, lambda_context, log_records):
    logs = log_records(audit)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue="audit"), sqs_events.order_record(new_order(), queue="audit")
    del bad["body"]

    assert audit.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(audit, sqs_events, new_order, lambda_context, log_records, capsys, monkeypatch):
    real = audit.AuditedEvent.model_validate_json

    def reading(*args, **kwargs):
        if "o-unreadable" in str(kwargs.get("event", args[0] if args else "")):
            raise RecursionError("maximum recursion depth exceeded")
        return real(*args, **kwargs)

    monkeypatch.setattr(audit.AuditedEvent, "model_validate_json", reading)
    logs = log_records(audit)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue="audit"), sqs_events.order_record(new_order(), queue="audit")
    capsys.readouterr()

    assert audit.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(audit, sqs_events, new_order, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        audit.lambda_handler(unnameable_sqs_event(sqs_events.order_record(new_order(), queue="audit"), shape), lambda_context)
