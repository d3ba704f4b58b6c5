"""The saga's status steps: each move written with its event, refusals named as the state machine catches them."""

import itertools
import json

import boto3
import pytest

from messaging_runtime.checkout import OrderStore
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED
from messaging_runtime.outbox import Outbox

NOW = 1_767_225_600.0
ORDER_NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
def handler(moto_module, load_handler):
    client = boto3.client("dynamodb")
    for table, key in (("orders", "order_id"), ("outbox", "aggregate_id")):
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    moto_module.setenv("ORDERS_TABLE_NAME", "orders")
    moto_module.setenv("OUTBOX_TABLE_NAME", "outbox")
    return load_handler("order_status")


@pytest.fixture
def place(handler):
    store = OrderStore(boto3.client("dynamodb"), "orders", Outbox("outbox"))

    def place(**fields) -> str:
        order_id = f"o-status-{next(ORDER_NUMBERS)}"
        order = ORDER_ACCEPTED.current(
            version=1,
            order_id=order_id,
            seq=1,
            customer_id="c-1",
            items=[{"sku": "SKU-1", "quantity": 1}],
            total=5,
            currency="EUR",
            accepted_at="2026-01-01T00:00:00Z",
        )
        store.place(order, idempotency_key=order_id, request_digest="h", deadline_seconds=60, now=NOW)
        return order_id

    place.store = store
    return place


def last_event(order_id: str) -> dict:
    item = boto3.client("dynamodb").get_item(TableName="outbox", Key={"aggregate_id": {"S": order_id}})["Item"]
    return json.loads(item["detail"]["S"])


def test_a_step_forward_returns_the_new_status_and_publishes_it(handler, place, lambda_context):
    order_id = place()
    assert handler.lambda_handler({"order_id": order_id, "to": "STOCK_RESERVED"}, lambda_context) == {
        "order_id": order_id,
        "status": "STOCK_RESERVED",
        "seq": 2,
    }
    assert last_event(order_id)["status"] == "STOCK_RESERVED"


def test_a_retried_step_changes_nothing(handler, place, lambda_context):
    order_id = place()
    first = handler.lambda_handler({"order_id": order_id, "to": "STOCK_RESERVED"}, lambda_context)
    assert handler.lambda_handler({"order_id": order_id, "to": "STOCK_RESERVED"}, lambda_context) == first


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"Error": "PaymentDeclined", "Cause": "{}"}, "the payment was declined"),
        ({"Error": "States.Timeout", "Cause": ""}, "the merchant did not answer in time"),
        ({"Error": "Lambda.Unknown", "Cause": ""}, "the order failed (Lambda.Unknown)"),
        ("not an object", "the order failed (unknown error)"),
    ],
)
def test_compensating_records_the_reason_the_customer_sees(handler, place, lambda_context, error, reason):
    order_id = place()
    handler.lambda_handler({"order_id": order_id, "to": "COMPENSATING", "error": error}, lambda_context)
    assert last_event(order_id)["reason"] == reason


def test_a_cancel_request_turns_the_next_step_into_order_cancelled_and_the_end_into_cancelled(handler, place, lambda_context):
    order_id = place()
    place.store.request_cancel(order_id, "c-1")
    with pytest.raises(handler.OrderCancelled):
        handler.lambda_handler({"order_id": order_id, "to": "STOCK_RESERVED"}, lambda_context)
    handler.lambda_handler({"order_id": order_id, "to": "COMPENSATING", "error": {"Error": "OrderCancelled"}}, lambda_context)
    assert handler.lambda_handler({"order_id": order_id, "to": "FINISHED"}, lambda_context)["status"] == "CANCELLED"


def test_a_compensated_order_without_a_cancel_ends_compensated(handler, place, lambda_context):
    order_id = place()
    handler.lambda_handler({"order_id": order_id, "to": "COMPENSATING", "error": {"Error": "StockShortage"}}, lambda_context)
    assert handler.lambda_handler({"order_id": order_id, "to": "FINISHED"}, lambda_context)["status"] == "COMPENSATED"


def test_an_abandoned_saga_marks_the_order_failed_from_any_open_status(handler, place, lambda_context):
    order_id = place()
    handler.lambda_handler({"order_id": order_id, "to": "STOCK_RESERVED"}, lambda_context)
    assert handler.lambda_handler({"order_id": order_id, "to": "FAILED"}, lambda_context)["status"] == "FAILED"


def test_a_move_that_is_not_allowed_or_an_unknown_order_is_transition_not_allowed(handler, place, lambda_context):
    with pytest.raises(handler.TransitionNotAllowed, match="may not go from ACCEPTED to CONFIRMED"):
        handler.lambda_handler({"order_id": place(), "to": "CONFIRMED"}, lambda_context)
    for to in ("STOCK_RESERVED", "FINISHED"):
        with pytest.raises(handler.TransitionNotAllowed, match="no such order"):
            handler.lambda_handler({"order_id": "o-unknown", "to": to}, lambda_context)


@pytest.mark.parametrize(
    "event", [None, [], {"to": "CONFIRMED"}, {"order_id": "o-1"}, {"order_id": 7, "to": "CONFIRMED"}, {"order_id": "o-1", "to": "SHIPPED"}]
)
def test_input_the_saga_never_sends_is_invalid_saga_input(handler, lambda_context, event):
    with pytest.raises(handler.InvalidSagaInput):
        handler.lambda_handler(event, lambda_context)


def test_an_order_compensated_already_stays_as_it_is_whatever_a_second_saga_records(handler, place, lambda_context):
    order_id = place()
    for to in ("COMPENSATING", "FINISHED"):
        handler.lambda_handler({"order_id": order_id, "to": to, "error": {"Error": "OrderExpired"}}, lambda_context)
    before = last_event(order_id)
    for to in ("COMPENSATING", "FINISHED", "FAILED"):
        assert handler.lambda_handler({"order_id": order_id, "to": to}, lambda_context)["status"] == "COMPENSATED"
    assert last_event(order_id) == before


def test_a_confirmed_order_answers_compensation_with_saga_already_completed_so_nothing_undoes_it(handler, place, lambda_context):
    order_id = place()
    for to in ("STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED"):
        handler.lambda_handler({"order_id": order_id, "to": to}, lambda_context)
    before = last_event(order_id)
    with pytest.raises(Exception, match="is CONFIRMED: nothing to compensate") as raised:
        handler.lambda_handler({"order_id": order_id, "to": "COMPENSATING", "error": {"Error": "Sandbox.Timedout"}}, lambda_context)
    assert type(raised.value).__name__ == "SagaAlreadyCompleted"  # the error name the saga's failure path ends on
    assert last_event(order_id) == before
    assert handler.lambda_handler({"order_id": order_id, "to": "FAILED"}, lambda_context)["status"] == "CONFIRMED"
