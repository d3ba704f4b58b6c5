"""The transactional outbox and the order store of Capstone 07-A, on moto's DynamoDB (transactions and conditions included)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_runtime.checkout import OPEN_ORDERS_INDEX, OrderStore, TransitionRefused, customer_id_of, order_id_for, request_hash
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED, ORDER_STATUS_CHANGED, TERMINAL, TRANSITIONS, PlaceOrderRequest
from messaging_runtime.outbox import Outbox, bus_entry

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def dynamodb(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb")
        create_order_tables(client)
        yield client


def create_order_tables(client) -> None:
    """The orders table (with its open-orders index) and the outbox table, as CapstoneOrders makes them."""
    client.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "open", "AttributeType": "S"},
            {"AttributeName": "deadline", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": OPEN_ORDERS_INDEX,
                "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}, {"AttributeName": "deadline", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName="outbox",
        KeySchema=[{"AttributeName": "aggregate_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "aggregate_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def store(dynamodb):
    return OrderStore(dynamodb, "orders", Outbox("outbox"))


def accepted(order_id: str = "o-1", **overrides):
    fields = dict(
        version=1,
        order_id=order_id,
        seq=1,
        customer_id="c-1",
        items=[{"sku": "SKU-1", "quantity": 2}],
        total=12.5,
        currency="EUR",
        accepted_at="2026-01-01T00:00:00+00:00",
    )
    return ORDER_ACCEPTED.current(**{**fields, **overrides})


def slot(client, aggregate_id: str) -> dict:
    return client.get_item(TableName="outbox", Key={"aggregate_id": {"S": aggregate_id}}, ConsistentRead=True)["Item"]


def stream_record(item: dict, event_name: str = "MODIFY") -> dict:
    """The record the outbox table's stream (new images) carries for a write of ``item``, as a pipe hands it over."""
    return {"eventID": "1", "eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": {"Keys": {}, "NewImage": item, "StreamViewType": "NEW_IMAGE"}}


# --- the outbox item ----------------------------------------------------------------------------------------------


def test_the_first_event_needs_an_empty_slot_and_each_next_one_the_previous_seq():
    outbox = Outbox("outbox", retention_days=2)
    first = outbox.put("o-1", 1, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]
    assert first["ConditionExpression"] == "attribute_not_exists(#key)"
    assert first["Item"]["expires_at"] == {"N": str(int(NOW) + 2 * 86400)}
    assert json.loads(first["Item"]["detail"]["S"]) == json.loads(accepted().model_dump_json())
    third = outbox.put("o-1", 3, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]
    assert third["ConditionExpression"] == "#seq = :previous" and third["ExpressionAttributeValues"] == {":previous": {"N": "2"}}


@pytest.mark.parametrize("seq", [0, -1, 1.0, True, "1"])
def test_a_seq_that_is_not_a_whole_number_from_1_is_refused(seq):
    with pytest.raises(ValueError, match="seq must be"):
        Outbox("outbox").put("o-1", seq, ORDER_ACCEPTED, accepted())


def test_an_event_of_another_kind_is_refused():
    with pytest.raises(TypeError, match="not a version of OrderStatusChanged"):
        Outbox("outbox").put("o-1", 1, ORDER_STATUS_CHANGED, accepted())


def test_a_stream_record_of_the_slot_becomes_the_bus_event_it_holds():
    item = Outbox("outbox").put("o-1", 1, ORDER_ACCEPTED, accepted(), now=NOW)["Put"]["Item"]
    entry = bus_entry(stream_record(item, "INSERT"))
    assert entry["source"] == "blueprints.checkout" and entry["detail_type"] == "OrderAccepted" and entry["seq"] == 1
    assert ORDER_ACCEPTED.parse(entry["detail"]).model_dump() == accepted().model_dump()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "expected a DynamoDB stream record"),
        ({"eventID": "9", "dynamodb": {}}, "has no dynamodb.NewImage"),
        ({"eventID": "9", "dynamodb": {"NewImage": {"aggregate_id": {"S": "o-1"}}}}, "lacks seq, source, detail_type, detail, event_id"),
    ],
)
def test_a_record_that_is_not_an_outbox_write_names_what_it_lacks(record, message):
    with pytest.raises(ValueError, match=message):
        bus_entry(record)


# --- the order store ----------------------------------------------------------------------------------------------


def test_placing_writes_the_order_and_its_first_event_in_one_transaction(store, dynamodb):
    created, item = store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    assert created and item["status"] == "ACCEPTED" and item["seq"] == 1 and item["deadline"] == int(NOW) + 1800
    order = store.get("o-1")
    assert order["total"] == Decimal("12.5") and order["items"] == [{"sku": "SKU-1", "quantity": Decimal(2)}]
    assert slot(dynamodb, "o-1")["detail_type"] == {"S": "OrderAccepted"}


def test_placing_the_same_order_again_returns_the_first_and_writes_nothing(store, dynamodb):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    event_id = slot(dynamodb, "o-1")["event_id"]
    created, existing = store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW + 5)
    assert not created and existing["accepted_at"] == "2026-01-01T00:00:00+00:00"
    assert slot(dynamodb, "o-1")["event_id"] == event_id


def test_an_order_is_not_written_without_its_event(store, dynamodb):
    # The slot already holds an event of this id (a bug elsewhere): the transaction fails whole.
    dynamodb.put_item(TableName="outbox", Item={"aggregate_id": {"S": "o-1"}, "seq": {"N": "7"}})
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    assert store.get("o-1") is None


def test_each_status_change_bumps_seq_and_writes_its_event(store, dynamodb):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    order = store.change_status("o-1", "STOCK_RESERVED", now=NOW + 1)
    assert order["status"] == "STOCK_RESERVED" and order["seq"] == 2
    event = ORDER_STATUS_CHANGED.parse(json.loads(slot(dynamodb, "o-1")["detail"]["S"]))
    assert (event.seq, event.status, event.previous_status, event.reason) == (2, "STOCK_RESERVED", "ACCEPTED", None)
    compensating = store.change_status("o-1", "COMPENSATING", reason="the payment was declined", now=NOW + 2)
    assert compensating["seq"] == 3 and store.get("o-1")["reason"] == "the payment was declined"


def test_a_repeated_status_change_is_a_no_op(store, dynamodb):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    store.change_status("o-1", "STOCK_RESERVED", now=NOW + 1)
    event_id = slot(dynamodb, "o-1")["event_id"]
    assert store.change_status("o-1", "STOCK_RESERVED", now=NOW + 2)["seq"] == 2
    assert slot(dynamodb, "o-1")["event_id"] == event_id


def test_a_move_the_state_table_does_not_allow_is_refused(store):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    with pytest.raises(TransitionRefused, match="may not go from ACCEPTED to CONFIRMED"):
        store.change_status("o-1", "CONFIRMED", now=NOW)
    with pytest.raises(TransitionRefused, match="no such order"):
        store.change_status("o-2", "STOCK_RESERVED", now=NOW)


def test_a_cancel_request_stops_the_next_step_forward_but_not_the_compensation(store):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    assert store.request_cancel("o-1", "c-1")["cancel_requested"] is True
    with pytest.raises(TransitionRefused) as refused:
        store.change_status("o-1", "STOCK_RESERVED", now=NOW)
    assert refused.value.cancel_requested
    assert store.change_status("o-1", "COMPENSATING", reason="cancelled by the customer", now=NOW)["status"] == "COMPENSATING"


def test_only_the_customer_may_cancel_and_only_before_a_terminal_status(store):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    with pytest.raises(TransitionRefused, match="no such order"):
        store.request_cancel("o-1", "c-2")
    for to in ("STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED"):
        store.change_status("o-1", to, now=NOW)
    with pytest.raises(TransitionRefused, match="already CONFIRMED"):
        store.request_cancel("o-1", "c-1")


def test_a_change_that_lost_a_race_is_read_again(store, dynamodb, monkeypatch):
    store.place(accepted(), idempotency_key="k-1", request_digest="h", deadline_seconds=1800, now=NOW)
    real_get, raced = store.get, []

    def get_then_race(order_id):
        order = real_get(order_id)
        if not raced:  # another writer moves the order after this read
            raced.append(True)
            store.change_status(order_id, "STOCK_RESERVED", now=NOW)
        return order

    monkeypatch.setattr(store, "get", get_then_race)
    order = store.change_status("o-1", "COMPENSATING", reason="the payment was declined", now=NOW)
    assert order["seq"] == 3 and order["status"] == "COMPENSATING"
    assert json.loads(slot(dynamodb, "o-1")["detail"]["S"])["previous_status"] == "STOCK_RESERVED"


def test_open_orders_past_their_deadline_are_found_oldest_first_and_a_terminal_one_leaves_the_index(store):
    for number, deadline in ((1, 60), (2, 30), (3, 600)):
        store.place(accepted(f"o-{number}"), idempotency_key=f"k-{number}", request_digest="h", deadline_seconds=deadline, now=NOW)
    assert [o["order_id"] for o in store.past_deadline(NOW + 100)] == ["o-2", "o-1"]
    for to in ("COMPENSATING", "COMPENSATED"):
        store.change_status("o-2", to, now=NOW + 1)
    assert "open" not in store.get("o-2")
    assert [o["order_id"] for o in store.past_deadline(NOW + 100)] == ["o-1"]
    assert [o["order_id"] for o in store.past_deadline(NOW + 1000, limit=1)] == ["o-1"]


def test_identities_and_request_digests():
    assert customer_id_of("arn:aws:iam::123456789012:user/alice") != customer_id_of("arn:aws:iam::123456789012:user/bob")
    customer = customer_id_of("sub-1")
    assert order_id_for(customer, "k") == order_id_for(customer, "k") != order_id_for(customer, "k2")
    assert order_id_for(customer, "k") != order_id_for(customer_id_of("sub-2"), "k")
    one = PlaceOrderRequest(items=[{"sku": "SKU-1", "quantity": 1}], total=1, currency="EUR")
    assert request_hash(one) == request_hash(PlaceOrderRequest(items=[{"sku": "SKU-1", "quantity": 1}], total=1, currency="EUR"))
    assert request_hash(one) != request_hash(PlaceOrderRequest(items=[{"sku": "SKU-1", "quantity": 2}], total=1, currency="EUR"))


STATUSES = sorted(TRANSITIONS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.sampled_from(STATUSES), max_size=12))
def test_any_sequence_of_moves_keeps_seq_gapless_and_each_event_in_its_slot(dynamodb, moves):
    order_id = f"o-{time.time_ns()}"
    store = OrderStore(dynamodb, "orders", Outbox("outbox"))
    store.place(accepted(order_id), idempotency_key="k", request_digest="h", deadline_seconds=60, now=NOW)
    status, seq = "ACCEPTED", 1
    for to in moves:
        allowed = to == status or to in TRANSITIONS[status]
        try:
            order = store.change_status(order_id, to, now=NOW)
        except TransitionRefused:
            assert not allowed
            continue
        assert allowed
        seq += to != status
        status = to
        assert (order["status"], order["seq"]) == (status, seq)
        stored = json.loads(slot(dynamodb, order_id)["detail"]["S"])
        assert stored["seq"] == seq
        if status in TERMINAL:
            assert not TRANSITIONS[status]
    assert int(slot(dynamodb, order_id)["seq"]["N"]) == seq


def test_the_serialised_item_reads_back_through_the_stream_shape():
    serializer = TypeSerializer()
    item = Outbox("outbox").put(
        "o-1",
        2,
        ORDER_STATUS_CHANGED,
        ORDER_STATUS_CHANGED.current(
            version=1, order_id="o-1", seq=2, customer_id="c-1", status="STOCK_RESERVED", previous_status="ACCEPTED", changed_at="2026-01-01T00:00:01Z"
        ),
        now=NOW,
    )["Put"]["Item"]
    assert all(set(value) <= set(serializer.serialize("x")) | {"N"} for value in item.values())
    assert bus_entry(stream_record(item))["detail"]["status"] == "STOCK_RESERVED"
