"""The ledger consumer (FIFO): a failure holds back the rest of its customer's records, order is kept."""

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
QUEUE = "ledger.fifo"

BAD_VALUES = {
    "event_id": ["not-a-uuid", 42],
    "event_type": ["OrderShipped", ""],
    "version": [0, 2, "1"],
    "order_id": ["", 42],
    "total": [-1, "10", "ten"],
    "currency": ["eur", "", 978],
}


@pytest.fixture(scope="module")
def ledger(moto_module, load_handler):
    return load_handler("ledger_consumer")


@pytest.fixture
def applied(ledger, monkeypatch):
    """The event ids ``apply`` was called with, in order."""
    calls = []
    real_apply = ledger.apply

    def observing_apply(event):
        calls.append(str(event.event_id))
        return real_apply(event)

    monkeypatch.setattr(ledger, "apply", observing_apply)
    return calls


def group_of(record_):
    return record_["attributes"]["MessageGroupId"]


def expected_failures(records, bad_indexes):
    """Each bad record, and every later record of a customer (message group) that already failed."""
    failed, failed_groups = [], set()
    for index, rec in enumerate(records):
        if index in bad_indexes or group_of(rec) in failed_groups:
            failed.append(rec["messageId"])
            failed_groups.add(group_of(rec))
    return failed


def failures(*message_ids):
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def record(sqs_events, order, **options):
    return sqs_events.order_record(order, queue=QUEUE, **options)


def test_a_good_batch_is_applied_in_order(ledger, applied, sqs_events, new_order, lambda_context):
    orders = [new_order(customer_id="c-1"), new_order(customer_id="c-2"), new_order(customer_id="c-1")]

    response = ledger.lambda_handler(sqs_events.event([record(sqs_events, o) for o in orders]), lambda_context)

    assert response == failures()
    assert applied == [order["event_id"] for order in orders]


def test_a_cancellation_credits_what_the_placement_debited(ledger, new_order):
    placed = new_order(total=80.1)
    cancelled = dict(placed, event_id="e3c1d6a8-4b7e-4f0a-8a8e-5d2b9c1e7f30", event_type="OrderCancelled")

    debit = ledger.apply(ledger.LedgerEvent.model_validate_json(json.dumps(placed)))
    credit = ledger.apply(ledger.LedgerEvent.model_validate_json(json.dumps(cancelled)))

    assert (debit["amount"], credit["amount"]) == ("80.1", "-80.1")


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_when_record_k_fails_the_later_records_of_its_customer_fail_too(ledger, applied, sqs_events, new_order, lambda_context, k):
    orders = [new_order(customer_id=f"c-{i % 2}") for i in range(6)]
    orders[k]["version"] = 99
    records = [record(sqs_events, o) for o in orders]

    response = ledger.lambda_handler(sqs_events.event(records), lambda_context)

    held_back = [i for i in range(6) if i >= k and i % 2 == k % 2]
    assert response == failures(*[records[i]["messageId"] for i in held_back])
    assert applied == [order["event_id"] for i, order in enumerate(orders) if i not in held_back]


def test_an_exception_in_apply_stops_the_batch(ledger, sqs_events, new_order, lambda_context, monkeypatch):
    orders = [new_order(customer_id="c-7") for _ in range(4)]
    records = [record(sqs_events, o) for o in orders]
    seen = []

    def failing_second(event):
        seen.append(str(event.event_id))
        if len(seen) == 2:
            raise RuntimeError("ledger unavailable")
        return {}

    monkeypatch.setattr(ledger, "apply", failing_second)

    response = ledger.lambda_handler(sqs_events.event(records), lambda_context)

    assert response == failures(*[r["messageId"] for r in records[1:]])
    assert seen == [orders[0]["event_id"], orders[1]["event_id"]]


def test_a_record_in_the_wrong_message_group_is_rejected(ledger, applied, sqs_events, new_order, lambda_context):
    first = record(sqs_events, new_order(customer_id="c-1"))
    misgrouped = record(sqs_events, new_order(customer_id="c-1"), group_id="c-2")
    last = record(sqs_events, new_order(customer_id="c-1"))

    response = ledger.lambda_handler(sqs_events.event([first, misgrouped, last]), lambda_context)

    assert response == failures(misgrouped["messageId"])
    assert len(applied) == 2


@FAST
@given(data=st.data())
def test_a_bad_record_holds_back_exactly_the_rest_of_its_group(ledger, sqs_events, order_strategies, lambda_context, data):
    valid = order_strategies.valid_order()
    good = valid.map(lambda order: (True, order))
    bad = order_strategies.bad_body(BAD_VALUES, valid).map(lambda body: (False, body))
    items = data.draw(st.lists(good | bad, min_size=1, max_size=8))
    records = [record(sqs_events, body) if is_good else sqs_events.record(body, queue=QUEUE, group_id="c-any") for is_good, body in items]

    response = ledger.lambda_handler(sqs_events.event(records), lambda_context)

    bad_indexes = {i for i, (is_good, _) in enumerate(items) if not is_good}
    assert response == failures(*expected_failures(records, bad_indexes))


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    ledger, sqs_events, new_order, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(ledger)
    bad, good = sqs_events.record(body, queue=QUEUE, group_id="c-odd"), sqs_events.order_record(new_order(), queue=QUEUE)
    capsys.readouterr()

    assert ledger.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(ledger, sqs_events, new_order, lambda_context, log_records):
    logs = log_records(ledger)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue=QUEUE), sqs_events.order_record(new_order(), queue=QUEUE)
    del bad["body"]

    assert ledger.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(ledger, sqs_events, new_order, lambda_context, log_records, capsys, monkeypatch):
    real = ledger.LedgerEvent.model_validate_json

    def reading(*args, **kwargs):
        if "o-unreadable" in str(kwargs.get("event", args[0] if args else "")):
            raise RecursionError("maximum recursion depth exceeded")
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger.LedgerEvent, "model_validate_json", reading)
    logs = log_records(ledger)
    bad, good = sqs_events.order_record(new_order(order_id="o-unreadable"), queue=QUEUE), sqs_events.order_record(new_order(), queue=QUEUE)
    capsys.readouterr()

    assert ledger.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(ledger, sqs_events, new_order, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        ledger.lambda_handler(unnameable_sqs_event(sqs_events.order_record(new_order(), queue=QUEUE), shape), lambda_context)
