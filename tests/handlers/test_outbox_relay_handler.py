"""The outbox pipe's enrichment: stream records of outbox writes in, bus events out, in order; anything else fails the batch."""

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

from messaging_constructs.outbox import RELAY_CODE
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED, ORDER_STATUS_CHANGED
from messaging_runtime.outbox import Outbox

NOW = 1_767_225_600.0


@pytest.fixture(scope="module")
def relay(handler_env):
    handler_env.setenv("EVENT_SOURCE", "blueprints.checkout")
    spec = importlib.util.spec_from_file_location("outbox_relay_under_test", Path(RELAY_CODE) / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def accepted(order_id="o-1"):
    return ORDER_ACCEPTED.current(
        version=1,
        order_id=order_id,
        seq=1,
        customer_id="c-1",
        items=[{"sku": "SKU-1", "quantity": 1}],
        total=5,
        currency="EUR",
        accepted_at="2026-01-01T00:00:00Z",
    )


def changed(seq, status, previous, order_id="o-1"):
    return ORDER_STATUS_CHANGED.current(
        version=1, order_id=order_id, seq=seq, customer_id="c-1", status=status, previous_status=previous, changed_at="2026-01-01T00:00:01Z"
    )


RECORD_NUMBERS = itertools.count(1)


def record(item, name="MODIFY"):
    number = next(RECORD_NUMBERS)
    return {
        "eventID": str(number),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"aggregate_id": item["aggregate_id"]},
            "NewImage": item,
            "SequenceNumber": str(number),
            "SizeBytes": 300,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/outbox/stream/2026-01-01T00:00:00.000",
    }


def test_each_outbox_write_becomes_its_event_in_the_order_received(relay, lambda_context):
    outbox = Outbox("outbox")
    items = [
        outbox.put("o-1", 1, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]["Item"],
        outbox.put("o-1", 2, ORDER_STATUS_CHANGED, changed(2, "STOCK_RESERVED", "ACCEPTED"), now=NOW)["Put"]["Item"],
        outbox.put("o-2", 1, ORDER_ACCEPTED, accepted("o-2"), now=NOW)["Put"]["Item"],
    ]
    entries = relay.lambda_handler([record(items[0], "INSERT"), record(items[1]), record(items[2], "INSERT")], lambda_context)
    assert [(e["detail_type"], e["detail"]["order_id"], e["detail"]["seq"]) for e in entries] == [
        ("OrderAccepted", "o-1", 1),
        ("OrderStatusChanged", "o-1", 2),
        ("OrderAccepted", "o-2", 1),
    ]
    assert ORDER_STATUS_CHANGED.parse(entries[1]["detail"]).status == "STOCK_RESERVED"


def test_an_empty_batch_is_an_empty_answer(relay, lambda_context):
    assert relay.lambda_handler([], lambda_context) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"eventID": "x", "dynamodb": {}},
        {"eventID": "x", "dynamodb": {"NewImage": {"aggregate_id": {"S": "o-1"}}}},
        "not a record",
    ],
)
def test_a_record_that_is_not_an_outbox_write_fails_the_batch_for_the_pipe_to_bisect(relay, lambda_context, bad):
    good = record(Outbox("outbox").put("o-1", 1, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]["Item"], "INSERT")
    with pytest.raises(ValueError):
        relay.lambda_handler([good, bad], lambda_context)


def test_an_event_of_another_source_is_refused(relay, lambda_context):
    item = Outbox("outbox").put("o-1", 1, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]["Item"]
    item["source"] = {"S": "blueprints.orders"}
    with pytest.raises(ValueError, match="this outbox publishes 'blueprints.checkout'"):
        relay.lambda_handler([record(item, "INSERT")], lambda_context)


def test_a_pipe_batch_that_is_not_a_list_is_refused(relay, lambda_context):
    with pytest.raises(ValueError, match="JSON array of stream records"):
        relay.lambda_handler({"Records": []}, lambda_context)
