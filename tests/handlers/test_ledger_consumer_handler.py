"""The ledger consumer (FIFO): a failure holds back the rest of its customer's records, order is kept."""

import json

import pytest

from messaging_runtime.contracts.orders import ORDER_MESSAGES
from tests.handlers.exercise_01 import Consumer, EveryConsumer, failures

QUEUE = "ledger.fifo"


@pytest.fixture(scope="module")
def consumer(moto_module, load_handler):
    # The ledger is the log group: a line per posted event is the effect.
    return Consumer(load_handler("ledger_consumer"), queue=QUEUE, counted="LedgerLinesPosted", effect_line=("INFO", "Ledger line posted"))


class TestAsEveryConsumer(EveryConsumer):
    """Reading, rejecting and reporting, as every Exercise 01 consumer does, FIFO groups held back (tests/handlers/exercise_01.py)."""


def test_a_good_batch_is_applied_in_order(consumer, monkeypatch, sqs_events, new_order, lambda_context):
    applied = consumer.spy(monkeypatch, "apply", key="event_id")
    orders = [new_order(customer_id="c-1"), new_order(customer_id="c-2"), new_order(customer_id="c-1")]

    response = consumer.run(sqs_events, [consumer.record(sqs_events, o) for o in orders], lambda_context)

    assert response == failures()
    assert applied == [order["event_id"] for order in orders]


def test_a_cancellation_credits_what_the_placement_debited(consumer, new_order):
    placed = new_order(total=80.1)
    cancelled = dict(placed, event_id="e3c1d6a8-4b7e-4f0a-8a8e-5d2b9c1e7f30", event_type="OrderCancelled")

    debit = consumer.module.apply(ORDER_MESSAGES.parse(json.dumps(placed)))
    credit = consumer.module.apply(ORDER_MESSAGES.parse(json.dumps(cancelled)))

    assert (debit["amount"], credit["amount"]) == ("80.1", "-80.1")


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_when_record_k_fails_the_later_records_of_its_customer_fail_too(consumer, monkeypatch, sqs_events, new_order, lambda_context, k):
    applied = consumer.spy(monkeypatch, "apply", key="event_id")
    orders = [new_order(customer_id=f"c-{i % 2}") for i in range(6)]
    orders[k]["version"] = 99
    records = [consumer.record(sqs_events, o) for o in orders]

    response = consumer.run(sqs_events, records, lambda_context)

    held_back = [i for i in range(6) if i >= k and i % 2 == k % 2]
    assert response == failures(*[records[i]["messageId"] for i in held_back])
    assert applied == [order["event_id"] for i, order in enumerate(orders) if i not in held_back]


def test_an_exception_in_apply_stops_the_batch(consumer, sqs_events, new_order, lambda_context, monkeypatch):
    orders = [new_order(customer_id="c-7") for _ in range(4)]
    records = [consumer.record(sqs_events, o) for o in orders]
    seen = []

    def failing_second(event):
        seen.append(str(event.event_id))
        if len(seen) == 2:
            raise RuntimeError("ledger unavailable")
        return {}

    monkeypatch.setattr(consumer.module, "apply", failing_second)

    response = consumer.run(sqs_events, records, lambda_context)

    assert response == failures(*[r["messageId"] for r in records[1:]])
    assert seen == [orders[0]["event_id"], orders[1]["event_id"]]


def test_a_record_in_the_wrong_message_group_is_rejected(consumer, monkeypatch, sqs_events, new_order, lambda_context, log_records):
    applied = consumer.spy(monkeypatch, "apply", key="event_id")
    logs = log_records(consumer.module)
    first = consumer.record(sqs_events, new_order(customer_id="c-1"))
    misgrouped = consumer.record(sqs_events, new_order(customer_id="c-1"), group_id="c-2")
    last = consumer.record(sqs_events, new_order(customer_id="c-1"))

    response = consumer.run(sqs_events, [first, misgrouped, last], lambda_context)

    assert response == failures(misgrouped["messageId"])
    assert len(applied) == 2
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (misgrouped["messageId"], "message group 'c-2' is not the event's customer 'c-1'")
