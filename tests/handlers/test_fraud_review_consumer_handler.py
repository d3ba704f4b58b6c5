"""The fraud-review consumer: large orders flagged, anything else failed with a reason."""

import json
from decimal import Decimal

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

BAD_VALUES = {
    "event_id": ["not-a-uuid", 42],
    "event_type": ["OrderShipped", ""],
    "version": [0, 2, "1"],
    "order_id": ["", 42],
    "customer_id": ["", 42],
    # Below the threshold is as bad as malformed: the filter should never deliver it.
    "total": [-1, 0, 499.99, "750", "lots"],
}


@pytest.fixture(scope="module")
def fraud_review(moto_module, load_handler):
    return load_handler("fraud_review_consumer")


@pytest.fixture
def flagged(fraud_review, monkeypatch):
    """The order ids ``flag_for_review`` was called with, in order."""
    calls = []
    real = fraud_review.flag_for_review

    def counting(candidate):
        calls.append(candidate.order_id)
        return real(candidate)

    monkeypatch.setattr(fraud_review, "flag_for_review", counting)
    return calls


def failures(*message_ids):
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def record(sqs_events, order, **options):
    return sqs_events.order_record(order, queue="fraud-review", **options)


def test_orders_at_or_above_the_threshold_are_flagged(fraud_review, flagged, sqs_events, new_order, lambda_context):
    orders = [new_order(total=500), new_order(total=12_000.5, event_type="OrderCancelled"), new_order(total=500.01)]

    response = fraud_review.lambda_handler(sqs_events.event([record(sqs_events, o) for o in orders]), lambda_context)

    assert response == failures()
    assert flagged == [order["order_id"] for order in orders]


def test_the_flag_says_what_and_why(fraud_review, new_order):
    order = new_order(total=999.99)

    flag = fraud_review.flag_for_review(fraud_review.ReviewCandidate.model_validate_json(json.dumps(order)))

    assert flag == {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "event_type": "OrderPlaced",
        "total": "999.99",
        "reason": "total at or above 500",
    }


def test_an_order_below_the_threshold_is_a_failed_item_with_the_reason_logged(fraud_review, flagged, sqs_events, new_order, lambda_context, log_records):
    logged = log_records(fraud_review)
    small = record(sqs_events, new_order(total=499.99))
    large = record(sqs_events, new_order(total=800))

    response = fraud_review.lambda_handler(sqs_events.event([small, large]), lambda_context)

    assert response == failures(small["messageId"])
    assert len(flagged) == 1
    [rejected] = [entry for entry in logged if entry.getMessage() == "Rejected record"]
    assert rejected.message_id == small["messageId"]
    assert "below the review threshold 500" in rejected.reason


def test_a_mixed_batch_fails_exactly_the_bad_records(fraud_review, flagged, sqs_events, new_order, lambda_context):
    good = record(sqs_events, new_order(total=750))
    text = sqs_events.record("<order total='900'/>", queue="fraud-review")
    number = sqs_events.record("900", queue="fraud-review")
    no_total = new_order()
    del no_total["total"]
    missing = record(sqs_events, no_total)
    records = [text, good, number, missing]

    response = fraud_review.lambda_handler(sqs_events.event(records), lambda_context)

    assert response == failures(text["messageId"], number["messageId"], missing["messageId"])
    assert len(flagged) == 1


@FAST
@given(data=st.data())
def test_no_record_is_lost_whatever_the_bodies(fraud_review, sqs_events, order_strategies, lambda_context, data):
    large = order_strategies.valid_order(min_total=Decimal("500"))
    good = data.draw(st.lists(large, max_size=4))
    bad = data.draw(st.lists(order_strategies.bad_body(BAD_VALUES, large), min_size=1, max_size=4))
    items = data.draw(st.permutations([(True, json.dumps(o)) for o in good] + [(False, body) for body in bad]))
    records = [sqs_events.record(body, queue="fraud-review") for _, body in items]

    response = fraud_review.lambda_handler(sqs_events.event(records), lambda_context)

    expected = [record["messageId"] for (is_good, _), record in zip(items, records, strict=True) if not is_good]
    assert response == failures(*expected)


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    fraud_review, sqs_events, new_order, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(fraud_review)
    bad, good = sqs_events.record(body, queue="fraud-review"), sqs_events.order_record(new_order(total=750.0), queue="fraud-review")
    capsys.readouterr()

    assert fraud_review.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(fraud_review, sqs_events, new_order, lambda_context, log_records):
    logs = log_records(fraud_review)
    bad, good = (
        sqs_events.order_record(new_order(order_id="o-unreadable", total=750.0), queue="fraud-review"),
        sqs_events.order_record(new_order(total=750.0), queue="fraud-review"),
    )
    del bad["body"]

    assert fraud_review.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(fraud_review, sqs_events, new_order, lambda_context, log_records, capsys, monkeypatch):
    real = fraud_review.ReviewCandidate.model_validate_json

    def reading(*args, **kwargs):
        if "o-unreadable" in str(kwargs.get("event", args[0] if args else "")):
            raise RecursionError("maximum recursion depth exceeded")
        return real(*args, **kwargs)

    monkeypatch.setattr(fraud_review.ReviewCandidate, "model_validate_json", reading)
    logs = log_records(fraud_review)
    bad, good = (
        sqs_events.order_record(new_order(order_id="o-unreadable", total=750.0), queue="fraud-review"),
        sqs_events.order_record(new_order(total=750.0), queue="fraud-review"),
    )
    capsys.readouterr()

    assert fraud_review.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(fraud_review, sqs_events, new_order, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        fraud_review.lambda_handler(unnameable_sqs_event(sqs_events.order_record(new_order(total=750.0), queue="fraud-review"), shape), lambda_context)
