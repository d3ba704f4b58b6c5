"""The audit consumer: every order event logged once, bad records failed, none lost."""

import json

import pytest

from tests.handlers.exercise_01 import Consumer, EveryConsumer, failures
from tests.handlers.record_shapes import metric_totals


@pytest.fixture(scope="module")
def consumer(moto_module, load_handler):
    return Consumer(load_handler("audit_consumer"), queue="audit", counted="AuditedOrderPlaced", effect_line=("INFO", "Order event audited"))


class TestAsEveryConsumer(EveryConsumer):
    """Reading, rejecting and reporting, as every Exercise 01 consumer does (tests/handlers/exercise_01.py)."""


def test_a_batch_of_good_events_has_no_failures(consumer, sqs_events, new_order, lambda_context, log_records):
    logged = log_records(consumer.module)
    orders = [new_order(), new_order(event_type="OrderCancelled"), new_order()]

    assert consumer.run(sqs_events, [consumer.record(sqs_events, order) for order in orders], lambda_context) == failures()

    audited = [record for record in logged if record.getMessage() == "Order event audited"]
    assert [(r.event_id, r.event_type, r.order_id, r.occurred_at) for r in audited] == [
        (order["event_id"], order["event_type"], order["order_id"], order["occurred_at"]) for order in orders
    ]


def test_a_mixed_batch_fails_exactly_the_bad_records(consumer, sqs_events, new_order, lambda_context):
    good = [consumer.record(sqs_events, new_order()) for _ in range(3)]
    not_json = consumer.body_record(sqs_events, "order placed: o-1")
    not_object = consumer.body_record(sqs_events, json.dumps([new_order()]))
    unknown_type = consumer.record(sqs_events, new_order(event_type="OrderShipped"))
    future_version = consumer.record(sqs_events, new_order(version=2))
    records = [good[0], not_json, good[1], not_object, unknown_type, good[2], future_version]

    response = consumer.run(sqs_events, records, lambda_context)

    assert response == failures(not_json["messageId"], not_object["messageId"], unknown_type["messageId"], future_version["messageId"])


def test_an_unknown_event_type_is_rejected_naming_the_types_audited(consumer, sqs_events, new_order, lambda_context, log_records):
    logged = log_records(consumer.module)
    record = consumer.record(sqs_events, new_order(event_type="OrderShipped"))

    assert consumer.run(sqs_events, [record], lambda_context) == failures(record["messageId"])

    [rejected] = [entry for entry in logged if entry.getMessage() == "Rejected record"]
    assert rejected.reason == "event_type: Input should be 'OrderPlaced' or 'OrderCancelled'"


def test_each_event_type_has_its_own_metric(consumer, sqs_events, new_order, lambda_context, capsys):
    orders = [new_order(), new_order(), new_order(event_type="OrderCancelled")]
    capsys.readouterr()

    consumer.run(sqs_events, [consumer.record(sqs_events, o) for o in orders], lambda_context)

    totals = metric_totals(capsys.readouterr().out)
    assert (totals["AuditedOrderPlaced"], totals["AuditedOrderCancelled"]) == (2, 1)
