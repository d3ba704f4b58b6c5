"""The inventory service: one inventory event per order event, whatever the duplicates and replays; bad records failed."""

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.exercise_02 import failures, handle, reject_entries, watch_put_events
from tests.handlers.record_shapes import (
    DEEPLY_NESTED,
    NOT_AN_OBJECT,
    NOT_AN_OBJECT_IDS,
    UNNAMEABLE_SQS_RECORD_IDS,
    UNNAMEABLE_SQS_RECORDS,
    metric_totals,
    unnameable_sqs_event,
)

FAST = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TABLE_NAME = "inventory-idempotency"
BASE_DELAY = 0.05
ORDERS = "blueprints.orders"

# Wrong values for the fields inventory reads (None and removal are always tried too).
BAD_VALUES = {
    "version": [1, {}, []],  # the envelope's version is a string
    "id": [42, [], {}],
    "source": ["blueprints.billing", "blueprints.inventory", "", 42],
    "detail-type": ["OrderShipped", "orderplaced", "StockReserved", 42],
    "account": [123456789012, []],
    "time": ["yesterday", True, [], "2025-13-01T00:00:00Z"],
    "region": [1, []],
    "resources": ["arn:aws:x", {}, [1]],
    "detail": ["{}", [], {}, 42],
    "detail.version": [0, 3, "2", 2.0, True, -1],
    "detail.order_id": ["", "42", 42, "o-", "o 1"],
}
BAD_ITEMS = {
    "detail.items": [[], {}, [{}], [{"sku": "SKU-1"}], [{"sku": "SKU-1", "quantity": 0}], [{"sku": "x", "quantity": 1}], [{"sku": "SKU-1", "quantity": True}]],
}


@pytest.fixture(scope="module")
def world(moto_module, create_idempotency_table, event_bus_with_queues):
    """The bus the service publishes to, with a queue behind a rule on the inventory's source to see what it puts there."""
    create_idempotency_table(TABLE_NAME)
    bus = event_bus_with_queues("blueprints", {"inventory-published": {"source": ["blueprints.inventory"]}})
    moto_module.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    moto_module.setenv("BUS_NAME", bus.arn)
    moto_module.setenv("PUT_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
    return bus


@pytest.fixture(scope="module")
def loaded(world, load_handler):
    return watch_put_events(load_handler("inventory_service"))


@pytest.fixture
def inventory(loaded, world, received_events):
    """The handler, with no PutEvents call, pause or published event left over from another test."""
    loaded.calls.clear()
    loaded.pauses.clear()
    received_events(world.queue_urls["inventory-published"])
    return loaded


@pytest.fixture
def published(world, received_events):
    """``published()``: the events the service has put on the bus so far (taken off the queue)."""
    return lambda: received_events(world.queue_urls["inventory-published"])


_numbers = iter(range(1, 1_000_000))


def new_order(version=2, **overrides):
    detail = {
        "version": version,
        "order_id": f"o-inv-{next(_numbers):06d}",
        "customer_id": "c-0001",
        "total": 42.5,
        "currency": "EUR",
    }
    if version >= 2:
        detail["items"] = [{"sku": "SKU-a", "quantity": 2}, {"sku": "SKU-b", "quantity": 10}]
    detail.update(overrides)
    return detail


@pytest.fixture
def record(sqs_events, eventbridge_event):
    def build(detail_type, detail, source=ORDERS, **envelope):
        return sqs_events.record(json.dumps(eventbridge_event(source, detail_type, detail, **envelope)), queue="inventory")

    return build


def test_a_placed_order_within_the_limits_reserves_its_stock(inventory, published, record, lambda_context, world):
    order = new_order()

    assert handle(inventory, [record("OrderPlaced", order)], lambda_context) == failures()

    [[entry]] = inventory.calls
    assert entry["Source"] == "blueprints.inventory"
    assert entry["DetailType"] == "StockReserved"
    assert entry["EventBusName"] == world.arn
    [event] = published()
    assert (event["source"], event["detail-type"]) == ("blueprints.inventory", "StockReserved")
    assert event["detail"] == {"version": 1, "order_id": order["order_id"], "items": order["items"]}


def test_a_placed_order_over_the_limit_reports_the_short_skus(inventory, published, record, lambda_context):
    items = [
        {"sku": "SKU-big", "quantity": 11},
        {"sku": "SKU-ok", "quantity": 10},
        {"sku": "SKU-twice", "quantity": 6},
        {"sku": "SKU-twice", "quantity": 5},
    ]
    order = new_order(items=items)

    assert handle(inventory, [record("OrderPlaced", order)], lambda_context) == failures()

    [event] = published()
    assert event["detail-type"] == "StockShortage"
    assert event["detail"] == {"version": 1, "order_id": order["order_id"], "missing": ["SKU-big", "SKU-twice"]}


def test_a_placed_version_1_order_reserves_no_items(inventory, published, record, lambda_context):
    order = new_order(version=1)

    assert handle(inventory, [record("OrderPlaced", order)], lambda_context) == failures()

    [event] = published()
    assert event["detail-type"] == "StockReserved"
    assert event["detail"] == {"version": 1, "order_id": order["order_id"], "items": []}


@pytest.mark.parametrize("version", [1, 2])
def test_a_cancelled_order_releases_its_stock(inventory, published, record, lambda_context, version):
    order = new_order(version=version, items=[{"sku": "SKU-c", "quantity": 30}]) if version == 2 else new_order(version=1)

    assert handle(inventory, [record("OrderCancelled", order)], lambda_context) == failures()

    [event] = published()
    assert event["detail-type"] == "StockReleased"
    assert event["detail"] == {"version": 1, "order_id": order["order_id"], "items": order.get("items", [])}


def test_unknown_detail_fields_are_ignored(inventory, published, record, lambda_context):
    order = new_order(gift_wrap=True)

    assert handle(inventory, [record("OrderPlaced", order)], lambda_context) == failures()
    assert [e["detail-type"] for e in published()] == ["StockReserved"]


def test_the_limit_comes_from_the_environment(world, load_handler, monkeypatch, record, lambda_context, received_events):
    monkeypatch.setenv("MAX_UNITS_PER_SKU", "2")
    module = load_handler("inventory_service")
    received_events(world.queue_urls["inventory-published"])

    assert handle(module, [record("OrderPlaced", new_order())], lambda_context) == failures()

    [event] = received_events(world.queue_urls["inventory-published"])
    assert event["detail"]["missing"] == ["SKU-b"]


@pytest.mark.parametrize(
    ("detail_type", "source", "change", "reason"),
    [
        ("OrderPlaced", ORDERS, {"version": 3}, "detail.version: Input should be 1 or 2"),
        ("OrderPlaced", ORDERS, {"version": 0}, "detail.version: Input should be 1 or 2"),
        ("OrderPlaced", ORDERS, {"version": "2"}, "detail.version: Value error, must be a whole number"),
        ("OrderPlaced", ORDERS, {"version": True}, "detail.version: Value error, must be a whole number"),
        ("OrderShipped", ORDERS, {}, "detail-type: Input should be 'OrderPlaced' or 'OrderCancelled'"),
        ("OrderPlaced", "blueprints.billing", {}, "source: Input should be 'blueprints.orders'"),
        (
            "StockReserved",
            "blueprints.inventory",
            {},
            "source: Input should be 'blueprints.orders'; detail-type: Input should be 'OrderPlaced' or 'OrderCancelled'",
        ),
        ("OrderPlaced", ORDERS, {"items": []}, "detail.items: List should have at least 1 item after validation, not 0"),
        ("OrderPlaced", ORDERS, {"order_id": 42}, "detail.order_id: Input should be a valid string"),
    ],
)
def test_an_event_inventory_does_not_know_is_a_failed_item_with_its_reason(
    inventory, published, record, lambda_context, log_records, detail_type, source, change, reason
):
    logs = log_records(inventory)
    bad = record(detail_type, {**new_order(), **change}, source=source)

    assert handle(inventory, [bad], lambda_context) == failures(bad["messageId"])

    assert inventory.calls == []
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.reason == reason
    assert rejected.message_id == bad["messageId"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json {", "body: Invalid JSON: expected ident at line 1 column 2"),
        ("[1, 2]", "body: Input should be an object"),
        (json.dumps(new_order()), "source: Field required; account: Field required;"),  # an order, but not in an EventBridge event
    ],
)
def test_a_body_that_is_not_an_eventbridge_event_is_a_failed_item(inventory, sqs_events, lambda_context, log_records, body, reason):
    logs = log_records(inventory)
    bad = sqs_events.record(body, queue="inventory")

    assert handle(inventory, [bad], lambda_context) == failures(bad["messageId"])

    assert inventory.calls == []
    assert reason in next(r for r in logs if r.getMessage() == "Rejected record").reason


def test_a_mixed_batch_fails_exactly_the_bad_records(inventory, published, record, sqs_events, lambda_context):
    good = [record("OrderPlaced", new_order()), record("OrderCancelled", new_order(version=1))]
    bad = [record("OrderPlaced", new_order(version=3)), sqs_events.record("\x00", queue="inventory")]

    response = handle(inventory, [good[0], bad[0], good[1], bad[1]], lambda_context)

    assert response == failures(bad[0]["messageId"], bad[1]["messageId"])
    assert sorted(e["detail-type"] for e in published()) == ["StockReleased", "StockReserved"]


def test_the_same_message_delivered_twice_publishes_once(inventory, published, record, lambda_context):
    first = record("OrderPlaced", new_order())
    again = dict(first, receiptHandle="another-receipt-handle")

    assert handle(inventory, [first], lambda_context) == failures()
    assert handle(inventory, [again], lambda_context) == failures()

    assert len(inventory.calls) == 1
    assert len(published()) == 1


def test_the_same_order_under_a_new_event_id_publishes_once(inventory, published, record, lambda_context):
    """A retried producer puts the order on the bus again, with a new id: still one reservation."""
    order = new_order()
    batch = [record("OrderPlaced", order), record("OrderPlaced", order), record("OrderPlaced", new_order(version=1, order_id=order["order_id"]))]

    assert handle(inventory, batch, lambda_context) == failures()

    assert len(inventory.calls) == 1


def test_placing_and_cancelling_the_same_order_are_two_events(inventory, published, record, lambda_context):
    order = new_order()

    handle(inventory, [record("OrderPlaced", order), record("OrderCancelled", order)], lambda_context)

    assert [e["detail-type"] for e in published()] == ["StockReserved", "StockReleased"]


def test_an_archive_replay_does_no_double_work(inventory, published, lambda_context, sqs_events, event_bus_with_queues, received_events):
    """Through moto's EventBridge: an order, its archive, a replay. The replayed copy has a new id and a
    replay-name, and inventory treats it as the event it already handled."""
    events = boto3.client("events")
    bus = event_bus_with_queues("orders-replay", {"inventory-replay": {"source": [ORDERS]}})
    archive_arn = events.create_archive(ArchiveName="orders-replay-archive", EventSourceArn=bus.arn)["ArchiveArn"]
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    order = new_order()
    events.put_events(Entries=[{"Source": ORDERS, "DetailType": "OrderPlaced", "Detail": json.dumps(order), "EventBusName": bus.arn}])
    events.start_replay(
        ReplayName="orders-replay-1",
        EventSourceArn=archive_arn,
        EventStartTime=start,
        EventEndTime=datetime.now(timezone.utc) + timedelta(minutes=1),
        Destination={"Arn": bus.arn},
    )

    original, replayed = received_events(bus.queue_urls["inventory-replay"])
    assert "replay-name" not in original and replayed["replay-name"] == "orders-replay-1"
    assert replayed["id"] != original["id"]
    assert (replayed["time"], replayed["detail"]) == (original["time"], original["detail"])

    records = [sqs_events.record(json.dumps(event), queue="inventory") for event in (original, replayed)]
    assert handle(inventory, records[:1], lambda_context) == failures()
    assert handle(inventory, records[1:], lambda_context) == failures()

    assert len(inventory.calls) == 1
    assert [e["detail"]["order_id"] for e in published()] == [order["order_id"]]


def refuse_orders(module, monkeypatch, refusals, calls=None):
    """EventBridge refuses the stock event of each order in ``refusals`` (order id -> (ErrorCode, ErrorMessage)),
    in the first ``calls`` PutEvents calls (all of them if None); the rest goes on the bus."""

    def decide(call_number, entry):
        return refusals.get(json.loads(entry["Detail"])["order_id"]) if calls is None or call_number <= calls else None

    return reject_entries(module, monkeypatch, decide)


THROTTLED = ("ThrottlingException", "Rate exceeded")


def test_a_publish_failure_fails_the_record_and_a_redelivery_publishes(inventory, published, record, lambda_context, monkeypatch, log_records):
    logs = log_records(inventory)
    unlucky, lucky = new_order(), new_order()
    requests = refuse_orders(inventory, monkeypatch, {unlucky["order_id"]: THROTTLED}, calls=3)
    first = [record("OrderPlaced", unlucky), record("OrderPlaced", lucky)]

    assert handle(inventory, first, lambda_context) == failures(first[0]["messageId"])

    assert [len(entries) for entries in requests] == [2, 1, 1]  # both events in one call, then the refused one alone
    assert len(inventory.pauses) == 2 and all(0 <= pause <= 2 * BASE_DELAY for pause in inventory.pauses)
    assert [e["detail"]["order_id"] for e in published()] == [lucky["order_id"]]
    [failed] = [r for r in logs if r.getMessage() == "Record failed, SQS will deliver it again"]
    assert (failed.message_id, failed.reason) == (
        first[0]["messageId"],
        "StockReserved not put on the bus: ThrottlingException: Rate exceeded (after 3 attempts)",
    )
    statuses = [item["status"]["S"] for item in boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]]
    assert "INPROGRESS" not in statuses  # nothing left to block the next delivery
    # SQS delivers the failed message again; this time EventBridge takes it.
    redelivered = dict(first[0], attributes=dict(first[0]["attributes"], ApproximateReceiveCount="2"))
    assert handle(inventory, [redelivered], lambda_context) == failures()
    assert [e["detail"]["order_id"] for e in published()] == [unlucky["order_id"]]


def test_a_retried_entry_that_gets_through_succeeds(inventory, published, record, lambda_context, monkeypatch):
    order = new_order()
    requests = refuse_orders(inventory, monkeypatch, {order["order_id"]: ("InternalFailure", "Internal Service Failure")}, calls=1)

    assert handle(inventory, [record("OrderPlaced", order)], lambda_context) == failures()

    assert len(requests) == 2 and len(inventory.pauses) == 1
    assert len(published()) == 1


def test_a_non_retryable_entry_error_fails_the_record_at_once(inventory, record, lambda_context, monkeypatch, log_records):
    logs = log_records(inventory)
    order = new_order()
    requests = refuse_orders(inventory, monkeypatch, {order["order_id"]: ("NotAuthorizedForSourceException", "not allowed")})
    bad = record("OrderPlaced", order)

    assert handle(inventory, [bad], lambda_context) == failures(bad["messageId"])

    assert len(requests) == 1 and inventory.pauses == []
    [failed] = [r for r in logs if r.getMessage() == "Record failed, SQS will deliver it again"]
    assert failed.reason == "StockReserved not put on the bus: NotAuthorizedForSourceException: not allowed"
    assert failed.message_id == bad["messageId"]


def test_a_failing_call_fails_the_record(inventory, record, lambda_context, monkeypatch, log_records):
    logs = log_records(inventory)

    def refuse(**params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutEvents")

    monkeypatch.setattr(inventory.eventbridge, "put_events", refuse)
    bad = record("OrderCancelled", new_order())

    assert handle(inventory, [bad], lambda_context) == failures(bad["messageId"])
    [failed] = [r for r in logs if r.getMessage() == "Record failed, SQS will deliver it again"]
    assert (failed.message_id, failed.reason) == (bad["messageId"], "StockReleased not put on the bus: AccessDeniedException: denied")


def test_the_idempotency_record_is_keyed_on_the_business_event_and_expires(inventory, published, record, lambda_context):
    order = new_order()
    event = inventory.OrderEvent.model_validate_json(json.dumps(_envelope("OrderPlaced", order)))
    assert inventory.idempotency_key(event) == f"blueprints.orders/OrderPlaced/{order['order_id']}"

    handle(inventory, [record("OrderPlaced", order)], lambda_context)

    [reserved] = published()
    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    [item] = [item for item in items if reserved["id"] in item.get("data", {}).get("S", "")]
    assert item["status"]["S"] == "COMPLETED"
    assert json.loads(item["data"]["S"]) == {"detail_type": "StockReserved", "event_id": reserved["id"]}
    # Keyed as the handler keyed it before the batch publishing: records written before a deployment still count.
    assert item["id"]["S"].startswith(f"exercise01-handler-under-test.{inventory.__name__}.react_once#")
    assert int(item["expiration"]["N"]) > datetime.now(timezone.utc).timestamp() + 13 * 24 * 3600


def _envelope(detail_type, detail):
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": ORDERS,
        "account": "123456789012",
        "time": "2025-06-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


# --- the batch: one PutEvents per 10 stock events, each record's fate its own event's ------------------------


def test_a_batch_puts_its_stock_events_in_full_calls_and_logs_one_line(inventory, published, record, lambda_context, log_records, capsys):
    logs = log_records(inventory)
    orders = [new_order() for _ in range(23)]
    capsys.readouterr()

    assert handle(inventory, [record("OrderCancelled" if i % 4 == 3 else "OrderPlaced", o) for i, o in enumerate(orders)], lambda_context) == failures()

    assert [len(entries) for entries in inventory.calls] == [10, 10, 3]
    assert sorted(e["detail"]["order_id"] for e in published()) == sorted(o["order_id"] for o in orders)
    assert [r.getMessage() for r in logs if r.levelname == "INFO"] == ["Batch processed"]
    assert {name: n for name, n in metric_totals(capsys.readouterr().out).items() if name.startswith("Stock")} == {"StockReserved": 18, "StockReleased": 5}


def test_only_the_records_whose_events_are_not_on_the_bus_fail(inventory, published, record, lambda_context, monkeypatch):
    orders = [new_order() for _ in range(12)]
    refused = {orders[3]["order_id"]: ("MalformedDetail", "no"), orders[10]["order_id"]: THROTTLED}
    requests = refuse_orders(inventory, monkeypatch, refused)
    batch = [record("OrderPlaced", order) for order in orders]

    assert handle(inventory, batch, lambda_context) == failures(batch[3]["messageId"], batch[10]["messageId"])

    assert [len(entries) for entries in requests] == [10, 2, 1, 1]
    assert sorted(e["detail"]["order_id"] for e in published()) == sorted(o["order_id"] for o in orders if o["order_id"] not in refused)
    # Their claims were released: the redelivery publishes them.
    monkeypatch.undo()
    assert handle(inventory, [batch[3], batch[10]], lambda_context) == failures()
    assert sorted(e["detail"]["order_id"] for e in published()) == sorted(refused)


def test_the_records_of_one_order_in_a_batch_share_its_fate(inventory, published, record, lambda_context, monkeypatch):
    unlucky, lucky = new_order(), new_order()
    requests = refuse_orders(inventory, monkeypatch, {unlucky["order_id"]: ("MalformedDetail", "no")})
    batch = [record("OrderPlaced", unlucky), record("OrderPlaced", lucky), record("OrderPlaced", unlucky), record("OrderPlaced", lucky)]

    assert handle(inventory, batch, lambda_context) == failures(batch[0]["messageId"], batch[2]["messageId"])

    assert [order_ids for order_ids in ([json.loads(e["Detail"])["order_id"] for e in call] for call in requests)] == [[unlucky["order_id"], lucky["order_id"]]]
    assert [e["detail"]["order_id"] for e in published()] == [lucky["order_id"]]


def test_an_order_another_invocation_is_handling_fails_its_record(inventory, published, record, lambda_context):
    """Powertools' rule for a record in progress: it fails, and its redelivery finds the order done or free again."""
    busy, free = new_order(), new_order()
    inventory.store.save_inprogress(data=f"{ORDERS}/OrderPlaced/{busy['order_id']}", remaining_time_in_millis=60_000)
    batch = [record("OrderPlaced", busy), record("OrderPlaced", free)]

    assert handle(inventory, batch, lambda_context) == failures(batch[0]["messageId"])

    assert [e["detail"]["order_id"] for e in published()] == [free["order_id"]]


def test_a_store_that_cannot_be_reached_fails_only_the_records_it_failed(inventory, published, record, lambda_context, monkeypatch):
    unreachable, fine = new_order(), new_order()
    real = inventory.store.save_inprogress

    def save_inprogress(data, remaining_time_in_millis=None):
        if unreachable["order_id"] in data:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return real(data=data, remaining_time_in_millis=remaining_time_in_millis)

    monkeypatch.setattr(inventory.store, "save_inprogress", save_inprogress)
    batch = [record("OrderPlaced", unreachable), record("OrderPlaced", fine)]

    assert handle(inventory, batch, lambda_context) == failures(batch[0]["messageId"])

    assert [e["detail"]["order_id"] for e in published()] == [fine["order_id"]]


@FAST
@given(data=st.data())
def test_no_record_is_lost_whatever_the_bodies(loaded, sqs_events, eventbridge_strategies, lambda_context, data):
    strategies = eventbridge_strategies
    v1 = strategies.event(ORDERS, ("OrderPlaced", "OrderCancelled"), strategies.order(1))
    v2 = strategies.event(ORDERS, ("OrderPlaced", "OrderCancelled"), strategies.order(2))
    good = data.draw(st.lists(v1 | v2, max_size=4))
    bad = data.draw(st.lists(strategies.bad_body(v1 | v2, BAD_VALUES) | strategies.bad_body(v2, BAD_ITEMS), min_size=1, max_size=4))
    items = data.draw(st.permutations([(True, json.dumps(event)) for event in good] + [(False, body) for body in bad]))
    records = [sqs_events.record(body, queue="inventory") for _, body in items]

    response = handle(loaded, records, lambda_context)

    expected = [record["messageId"] for (is_good, _), record in zip(items, records, strict=True) if not is_good]
    assert response == failures(*expected)


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    inventory, sqs_events, record, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(inventory)
    bad, good = sqs_events.record(body, queue="inventory"), record("OrderPlaced", new_order())
    capsys.readouterr()

    assert inventory.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(inventory, sqs_events, record, lambda_context, log_records):
    logs = log_records(inventory)
    bad, good = record("OrderPlaced", new_order(order_id="o-unreadable")), record("OrderPlaced", new_order())
    del bad["body"]

    assert inventory.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(inventory, sqs_events, record, lambda_context, log_records, capsys, monkeypatch):
    real = inventory.OrderEvent.model_validate_json

    def reading(text, *args, **kwargs):
        if "o-unreadable" in str(text):
            raise RecursionError("maximum recursion depth exceeded")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(inventory.OrderEvent, "model_validate_json", reading)
    logs = log_records(inventory)
    bad, good = record("OrderPlaced", new_order(order_id="o-unreadable")), record("OrderPlaced", new_order())
    capsys.readouterr()

    assert inventory.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(inventory, sqs_events, record, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        inventory.lambda_handler(unnameable_sqs_event(record("OrderPlaced", new_order()), shape), lambda_context)


@pytest.mark.parametrize("where", ["detail", "field"])
def test_an_eventbridge_event_nested_too_deeply_fails_only_its_record(inventory, sqs_events, eventbridge_event, record, lambda_context, log_records, where):
    logs = log_records(inventory)
    detail = "NESTED" if where == "detail" else {**new_order(), "order_id": "NESTED"}
    body = json.dumps(eventbridge_event(ORDERS, "OrderPlaced", detail)).replace('"NESTED"', DEEPLY_NESTED)
    bad, good = sqs_events.record(body, queue="inventory"), record("OrderPlaced", new_order())

    assert inventory.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and "Invalid JSON: recursion limit exceeded" in rejected.reason
