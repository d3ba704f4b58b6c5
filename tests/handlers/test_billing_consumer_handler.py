"""The billing consumer: one charge per order, whatever the duplicates; bad records failed."""

import json

import boto3
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
TABLE_NAME = "billing-idempotency"

BAD_VALUES = {
    "event_id": ["not-a-uuid", 42],
    "event_type": ["OrderCancelled", "OrderShipped", ""],
    "version": [0, 2, "1", 1.5],
    "order_id": ["", "42", 42, "o-"],
    "customer_id": ["", 42, "customer"],
    "total": [-1, -0.01, "12.50", "twelve", 1e400],
    "currency": ["eur", "EURO", "", 978],
}


@pytest.fixture(scope="module")
def billing(moto_module, load_handler):
    # The idempotency table as the library creates it: Powertools' default key and TTL names.
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(TableName=TABLE_NAME, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})
    moto_module.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    return load_handler("billing_consumer")


@pytest.fixture
def charges(billing, monkeypatch):
    """Every order ``charge`` was called with, in order."""
    charged = []
    real_charge = billing.charge

    def counting_charge(order):
        charged.append(order.order_id)
        return real_charge(order)

    monkeypatch.setattr(billing, "charge", counting_charge)
    return charged


def failures(*message_ids):
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def record(sqs_events, order, **options):
    return sqs_events.order_record(order, queue="billing", **options)


def test_a_batch_of_placed_orders_is_charged_without_failures(billing, charges, sqs_events, new_order, lambda_context):
    orders = [new_order() for _ in range(4)]

    response = billing.lambda_handler(sqs_events.event([record(sqs_events, o) for o in orders]), lambda_context)

    assert response == failures()
    assert charges == [order["order_id"] for order in orders]


def test_the_same_message_delivered_twice_charges_once(billing, charges, sqs_events, new_order, lambda_context):
    order = new_order()
    first = record(sqs_events, order)
    again = dict(first, receiptHandle="another-receipt-handle")

    assert billing.lambda_handler(sqs_events.event([first]), lambda_context) == failures()
    assert billing.lambda_handler(sqs_events.event([again]), lambda_context) == failures()

    assert charges == [order["order_id"]]


def test_the_same_order_under_new_message_and_event_ids_charges_once(billing, charges, sqs_events, new_order, lambda_context):
    order = new_order()
    republished = dict(order, event_id="0b4f9a52-8f0e-4f57-9a55-2f1d8f3f6c11")
    batch = [record(sqs_events, order), record(sqs_events, republished), record(sqs_events, order)]

    assert billing.lambda_handler(sqs_events.event(batch), lambda_context) == failures()
    assert billing.lambda_handler(sqs_events.event([record(sqs_events, order)]), lambda_context) == failures()

    assert charges == [order["order_id"]]


def test_a_duplicate_gets_the_stored_invoice(billing, charges, sqs_events, new_order, lambda_context):
    order = new_order(total=42.5, currency="USD")
    invoice = billing.charge_once(order=billing.PlacedOrder.model_validate_json(json.dumps(order)))

    again = billing.charge_once(order=billing.PlacedOrder.model_validate_json(json.dumps(order)))

    assert (
        again
        == invoice
        == {
            "invoice_id": f"inv-{order['order_id']}",
            "order_id": order["order_id"],
            "customer_id": order["customer_id"],
            "amount": "42.5",
            "currency": "USD",
        }
    )
    assert charges == [order["order_id"]]


def test_the_idempotency_record_is_keyed_on_the_order_and_expires(billing, sqs_events, new_order, lambda_context):
    order = new_order()

    billing.lambda_handler(sqs_events.event([record(sqs_events, order)]), lambda_context)

    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    [item] = [item for item in items if item["status"]["S"] == "COMPLETED" and order["order_id"] in item["data"]["S"]]
    assert item["id"]["S"].startswith("exercise01-handler-under-test.")
    assert int(item["expiration"]["N"]) > 0


def test_a_failed_charge_fails_only_its_record_and_is_charged_on_redelivery(billing, charges, sqs_events, new_order, lambda_context, monkeypatch):
    unlucky, lucky = new_order(), new_order()
    counting_charge = billing.charge

    def flaky_charge(order):
        if order.order_id == unlucky["order_id"] and unlucky["order_id"] not in charges:
            charges.append("declined")
            raise RuntimeError("payment provider unavailable")
        return counting_charge(order)

    monkeypatch.setattr(billing, "charge", flaky_charge)
    first = [record(sqs_events, unlucky), record(sqs_events, lucky)]

    assert billing.lambda_handler(sqs_events.event(first), lambda_context) == failures(first[0]["messageId"])
    # SQS redelivers the failed message; the failure left no record behind, so it is charged now.
    redelivered = dict(first[0], attributes=dict(first[0]["attributes"], ApproximateReceiveCount="2"))
    monkeypatch.setattr(billing, "charge", counting_charge)
    assert billing.lambda_handler(sqs_events.event([redelivered]), lambda_context) == failures()

    assert charges == ["declined", lucky["order_id"], unlucky["order_id"]]


def test_a_mixed_batch_fails_exactly_the_bad_records(billing, charges, sqs_events, new_order, lambda_context):
    good = [new_order(), new_order()]
    cancelled = record(sqs_events, new_order(event_type="OrderCancelled"))
    negative = record(sqs_events, new_order(total=-5))
    garbage = sqs_events.record("\x00not json", queue="billing")
    records = [record(sqs_events, good[0]), cancelled, negative, record(sqs_events, good[1]), garbage]

    response = billing.lambda_handler(sqs_events.event(records), lambda_context)

    assert response == failures(cancelled["messageId"], negative["messageId"], garbage["messageId"])
    assert charges == [order["order_id"] for order in good]


@FAST
@given(data=st.data())
def test_no_record_is_lost_whatever_the_bodies(billing, sqs_events, order_strategies, lambda_context, data):
    placed = order_strategies.valid_order(event_types=("OrderPlaced",))
    good = data.draw(st.lists(placed, max_size=4))
    bad = data.draw(st.lists(order_strategies.bad_body(BAD_VALUES, placed), min_size=1, max_size=4))
    items = data.draw(st.permutations([(True, json.dumps(o)) for o in good] + [(False, body) for body in bad]))
    records = [sqs_events.record(body, queue="billing") for _, body in items]

    response = billing.lambda_handler(sqs_events.event(records), lambda_context)

    expected = [record["messageId"] for (is_good, _), record in zip(items, records, strict=True) if not is_good]
    assert response == failures(*expected)


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    billing, sqs_events, new_order, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(billing)
    bad, good = sqs_events.record(body, queue="billing"), sqs_events.order_record(new_order(), queue="billing")
    capsys.readouterr()

    assert billing.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(billing, sqs_events, new_order, lambda_context, log_records):
    logs = log_records(billing)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue="billing"), sqs_events.order_record(new_order(), queue="billing")
    del bad["body"]

    assert billing.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(billing, sqs_events, new_order, lambda_context, log_records, capsys, monkeypatch):
    real = billing.PlacedOrder.model_validate_json

    def reading(*args, **kwargs):
        if "o-unreadable" in str(kwargs.get("event", args[0] if args else "")):
            raise RecursionError("maximum recursion depth exceeded")
        return real(*args, **kwargs)

    monkeypatch.setattr(billing.PlacedOrder, "model_validate_json", reading)
    logs = log_records(billing)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue="billing"), sqs_events.order_record(new_order(), queue="billing")
    capsys.readouterr()

    assert billing.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(billing, sqs_events, new_order, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        billing.lambda_handler(unnameable_sqs_event(sqs_events.order_record(new_order(), queue="billing"), shape), lambda_context)
