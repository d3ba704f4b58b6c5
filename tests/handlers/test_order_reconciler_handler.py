"""The order reconciler: every open order past its deadline ended through the saga, whatever state its saga is in."""

import itertools
import json
import time

import boto3
import pytest

from messaging_runtime.checkout import OrderStore
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED
from messaging_runtime.outbox import Outbox
from tests.handlers.exercise_01 import emitted_metrics, failures
from tests.runtime.test_outbox_and_orders import create_order_tables

DEFINITION = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})
NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
def reconciler(moto_module, load_handler):
    create_order_tables(boto3.client("dynamodb"))
    arn = boto3.client("stepfunctions").create_state_machine(name="order-saga", definition=DEFINITION, roleArn="arn:aws:iam::123456789012:role/s")[
        "stateMachineArn"
    ]
    moto_module.setenv("ORDERS_TABLE_NAME", "orders")
    moto_module.setenv("STATE_MACHINE_ARN", arn)
    return load_handler("order_reconciler")


@pytest.fixture
def late_order(reconciler):
    """An open order whose deadline passed a minute ago (its id, and the store)."""
    store = OrderStore(boto3.client("dynamodb"), "orders", Outbox("outbox"))

    def place(deadline_seconds: int = -60) -> str:
        order_id = f"o-late-{next(NUMBERS)}"
        order = ORDER_ACCEPTED.current(
            version=1, order_id=order_id, seq=1, customer_id="c-1", items=[{"sku": "SKU-1", "quantity": 2}], total=12.5, currency="EUR",
            accepted_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
        store.place(order, idempotency_key=order_id, request_digest="h", deadline_seconds=deadline_seconds, now=time.time())
        return order_id

    place.store = store
    return place


def run(reconciler, sqs_events, lambda_context) -> dict:
    event = sqs_events.event([sqs_events.record(json.dumps({"version": 1, "kind": "reconcile"}), queue="reconcile")])
    return reconciler.lambda_handler(event, lambda_context)


def executions(reconciler) -> dict[str, dict]:
    client = boto3.client("stepfunctions")
    return {e["name"]: e for e in client.list_executions(stateMachineArn=reconciler.STATE_MACHINE_ARN)["executions"]}


def close_all(late_order):
    """End every open order, so that each test sees only its own."""
    for order in late_order.store.past_deadline(time.time() + 10_000, limit=1000):
        for to in ("COMPENSATING", "COMPENSATED"):
            late_order.store.change_status(order["order_id"], to, now=time.time())


def test_an_order_whose_saga_never_started_gets_one_named_after_it_that_only_compensates(reconciler, late_order, sqs_events, lambda_context):
    close_all(late_order)
    order_id = late_order()
    assert run(reconciler, sqs_events, lambda_context) == failures()
    started = executions(reconciler)[order_id]
    saga_input = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=started["executionArn"])["input"])
    assert saga_input["compensate"]["Error"] == "OrderExpired" and saga_input["order"]["order_id"] == order_id
    assert saga_input["order"]["items"] == [{"sku": "SKU-1", "quantity": 2}] and saga_input["order"]["total"] == 12.5


def test_a_saga_stuck_past_the_deadline_is_stopped_and_a_compensating_one_runs(reconciler, late_order, sqs_events, lambda_context):
    close_all(late_order)
    order_id = late_order()
    client = boto3.client("stepfunctions")
    stuck = client.start_execution(stateMachineArn=reconciler.STATE_MACHINE_ARN, name=order_id, input="{}")["executionArn"]
    assert run(reconciler, sqs_events, lambda_context) == failures()
    assert client.describe_execution(executionArn=stuck)["status"] == "ABORTED"
    assert f"{order_id}-reconciled" in executions(reconciler)


def test_a_second_run_starts_nothing_twice(reconciler, late_order, sqs_events, lambda_context, capsys):
    close_all(late_order)
    order_id = late_order()
    run(reconciler, sqs_events, lambda_context)
    capsys.readouterr()
    assert run(reconciler, sqs_events, lambda_context) == failures()  # the first run's saga is running: it is stopped, once
    names = [name for name in executions(reconciler) if name.startswith(order_id)]
    assert sorted(names) == [order_id, f"{order_id}-reconciled"]
    assert run(reconciler, sqs_events, lambda_context) == failures()
    assert emitted_metrics(capsys.readouterr().out)["CompensationsAlreadyStarted"] == [1.0]
    assert sorted(name for name in executions(reconciler) if name.startswith(order_id)) == sorted(names)


def test_orders_within_their_deadline_are_left_alone_and_the_count_is_reported(reconciler, late_order, sqs_events, lambda_context, capsys):
    close_all(late_order)
    order_id = late_order(deadline_seconds=600)
    capsys.readouterr()
    assert run(reconciler, sqs_events, lambda_context) == failures()
    assert order_id not in executions(reconciler)
    assert emitted_metrics(capsys.readouterr().out)["OrdersPastDeadline"] == [0.0]


def test_a_trigger_that_is_not_a_reconcile_request_fails_alone(reconciler, sqs_events, lambda_context):
    bad = sqs_events.record(json.dumps({"version": 1, "kind": "other"}), queue="reconcile")
    assert reconciler.lambda_handler(sqs_events.event([bad]), lambda_context) == failures(bad["messageId"])
