"""The fraud-review consumer: large orders flagged, anything else failed with a reason."""

import json
from decimal import Decimal

import pytest

from messaging_runtime.contracts.orders import ORDER_MESSAGES
from tests.handlers.exercise_01 import Consumer, EveryConsumer, failures


@pytest.fixture(scope="module")
def consumer(moto_module, load_handler):
    return Consumer(
        load_handler("fraud_review_consumer"),
        queue="fraud-review",
        counted="OrdersFlaggedForReview",
        effect_line=("WARNING", "Order flagged for fraud review"),  # the flag is the effect
        accepted={"total": 750.0},
        valid={"min_total": Decimal("500")},
        # Below the threshold is as bad as malformed: the filter should never deliver it.
        bad_values={"total": [0, 499.99, "750"]},
    )


class TestAsEveryConsumer(EveryConsumer):
    """Reading, rejecting and reporting, as every Exercise 01 consumer does (tests/handlers/exercise_01.py)."""


def test_orders_at_or_above_the_threshold_are_flagged(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    flagged = consumer.spy(monkeypatch, "flag_for_review")
    orders = [new_order(total=500), new_order(total=12_000.5, event_type="OrderCancelled"), new_order(total=500.01)]

    response = consumer.run(sqs_events, [consumer.record(sqs_events, o) for o in orders], lambda_context)

    assert response == failures()
    assert flagged == [order["order_id"] for order in orders]


def test_the_flag_says_what_and_why(consumer, new_order, log_records):
    logged = log_records(consumer.module)
    order = new_order(total=999.99)

    consumer.module.flag_for_review(ORDER_MESSAGES.parse(json.dumps(order)))

    [flag] = [r for r in logged if r.getMessage() == "Order flagged for fraud review"]
    assert flag.levelname == "WARNING"
    assert (flag.order_id, flag.customer_id, flag.event_type, flag.total, flag.reason) == (
        order["order_id"],
        order["customer_id"],
        "OrderPlaced",
        "999.99",
        "total at or above 500",
    )


def test_an_order_below_the_threshold_is_a_failed_item_with_the_reason_logged(consumer, monkeypatch, sqs_events, new_order, lambda_context, log_records):
    flagged = consumer.spy(monkeypatch, "flag_for_review")
    logged = log_records(consumer.module)
    small = consumer.record(sqs_events, new_order(total=499.99))
    large = consumer.record(sqs_events, new_order(total=800))

    response = consumer.run(sqs_events, [small, large], lambda_context)

    assert response == failures(small["messageId"])
    assert len(flagged) == 1
    [rejected] = [entry for entry in logged if entry.getMessage() == "Rejected record"]
    assert rejected.message_id == small["messageId"]
    assert rejected.reason == "total 499.99 is below the review threshold 500; the subscription filter should not have delivered it"


def test_a_mixed_batch_fails_exactly_the_bad_records(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    flagged = consumer.spy(monkeypatch, "flag_for_review")
    good = consumer.record(sqs_events, new_order(total=750))
    text = consumer.body_record(sqs_events, "<order total='900'/>")
    number = consumer.body_record(sqs_events, "900")
    no_total = new_order()
    del no_total["total"]
    missing = consumer.record(sqs_events, no_total)
    records = [text, good, number, missing]

    response = consumer.run(sqs_events, records, lambda_context)

    assert response == failures(text["messageId"], number["messageId"], missing["messageId"])
    assert len(flagged) == 1
