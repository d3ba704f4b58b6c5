"""The billing consumer: one charge per order, whatever the duplicates; bad records failed."""

import json

import boto3
import pytest

from messaging_runtime.contracts.orders import ORDER_PLACED_MESSAGE
from tests.handlers.exercise_01 import Consumer, EveryConsumer, failures
from tests.handlers.record_shapes import metric_totals

TABLE_NAME = "billing-idempotency"


@pytest.fixture(scope="module")
def consumer(moto_module, load_handler, create_idempotency_table):
    create_idempotency_table(TABLE_NAME)
    moto_module.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    return Consumer(
        load_handler("billing_consumer"),
        queue="billing",
        counted="OrdersCharged",
        effect_line=None,  # the charge is the effect; its invoice is stored in the idempotency table, not logged
        valid={"event_types": ("OrderPlaced",)},
        bad_values={"event_type": ["OrderCancelled"]},
    )


class TestAsEveryConsumer(EveryConsumer):
    """Reading, rejecting and reporting, as every Exercise 01 consumer does (tests/handlers/exercise_01.py)."""


def test_a_batch_of_placed_orders_is_charged_without_failures(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    charges = consumer.spy(monkeypatch, "charge")
    orders = [new_order() for _ in range(4)]

    response = consumer.run(sqs_events, [consumer.record(sqs_events, o) for o in orders], lambda_context)

    assert response == failures()
    assert charges == [order["order_id"] for order in orders]


def test_the_same_message_delivered_twice_charges_once(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    charges = consumer.spy(monkeypatch, "charge")
    order = new_order()
    first = consumer.record(sqs_events, order)
    again = dict(first, receiptHandle="another-receipt-handle")

    assert consumer.run(sqs_events, [first], lambda_context) == failures()
    assert consumer.run(sqs_events, [again], lambda_context) == failures()

    assert charges == [order["order_id"]]


def test_the_same_order_under_new_message_and_event_ids_charges_once_and_counts_the_duplicates(
    consumer, monkeypatch, sqs_events, new_order, lambda_context, capsys
):
    charges = consumer.spy(monkeypatch, "charge")
    order = new_order()
    republished = dict(order, event_id="0b4f9a52-8f0e-4f57-9a55-2f1d8f3f6c11")
    batch = [consumer.record(sqs_events, order), consumer.record(sqs_events, republished), consumer.record(sqs_events, order)]
    capsys.readouterr()

    assert consumer.run(sqs_events, batch, lambda_context) == failures()
    assert consumer.run(sqs_events, [consumer.record(sqs_events, order)], lambda_context) == failures()

    assert charges == [order["order_id"]]
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["OrdersCharged"], totals["DuplicateOrdersSkipped"]) == (1, 3)


def test_a_duplicate_gets_the_stored_invoice(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    charges = consumer.spy(monkeypatch, "charge")
    order = new_order(total=42.5, currency="USD")
    invoice = consumer.module.charge_once(order=ORDER_PLACED_MESSAGE.parse(json.dumps(order)))

    again = consumer.module.charge_once(order=ORDER_PLACED_MESSAGE.parse(json.dumps(order)))

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


def test_the_idempotency_record_is_keyed_on_the_order_and_expires(consumer, sqs_events, new_order, lambda_context):
    order = new_order()

    consumer.run(sqs_events, [consumer.record(sqs_events, order)], lambda_context)

    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    [item] = [item for item in items if item["status"]["S"] == "COMPLETED" and order["order_id"] in item["data"]["S"]]
    assert item["id"]["S"].startswith("exercise01-handler-under-test.")
    assert int(item["expiration"]["N"]) > 0


def test_a_failed_charge_fails_only_its_record_and_is_charged_on_redelivery(consumer, sqs_events, new_order, lambda_context, monkeypatch, log_records):
    charges = consumer.spy(monkeypatch, "charge")
    logs = log_records(consumer.module)
    unlucky, lucky = new_order(), new_order()
    counting_charge = consumer.module.charge

    def flaky_charge(order):
        if order.order_id == unlucky["order_id"] and unlucky["order_id"] not in charges:
            charges.append("declined")
            raise RuntimeError("payment provider unavailable")
        return counting_charge(order)

    monkeypatch.setattr(consumer.module, "charge", flaky_charge)
    first = [consumer.record(sqs_events, unlucky), consumer.record(sqs_events, lucky)]

    assert consumer.run(sqs_events, first, lambda_context) == failures(first[0]["messageId"])
    [failed] = [r for r in logs if r.getMessage() == "Record failed"]
    assert (failed.message_id, str(failed.exc_info[1])) == (first[0]["messageId"], "payment provider unavailable")
    # SQS redelivers the failed message; the failure left no record behind, so it is charged now.
    redelivered = dict(first[0], attributes=dict(first[0]["attributes"], ApproximateReceiveCount="2"))
    monkeypatch.setattr(consumer.module, "charge", counting_charge)
    assert consumer.run(sqs_events, [redelivered], lambda_context) == failures()

    assert charges == ["declined", lucky["order_id"], unlucky["order_id"]]


def test_a_mixed_batch_fails_exactly_the_bad_records(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    charges = consumer.spy(monkeypatch, "charge")
    good = [new_order(), new_order()]
    cancelled = consumer.record(sqs_events, new_order(event_type="OrderCancelled"))
    negative = consumer.record(sqs_events, new_order(total=-5))
    garbage = consumer.body_record(sqs_events, "\x00not json")
    records = [consumer.record(sqs_events, good[0]), cancelled, negative, consumer.record(sqs_events, good[1]), garbage]

    response = consumer.run(sqs_events, records, lambda_context)

    assert response == failures(cancelled["messageId"], negative["messageId"], garbage["messageId"])
    assert charges == [order["order_id"] for order in good]
