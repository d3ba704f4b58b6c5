"""The notifications service: one notification per business event it knows; everything else failed, loudly."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.exercise_02 import failures, handle
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
TABLE_NAME = "notifications-idempotency"
NOT_NOTIFIED = "is not an event this function notifies about"

_numbers = iter(range(1, 1_000_000))


def order_detail(version):
    detail = {"version": version, "order_id": f"o-note-{next(_numbers):06d}", "customer_id": "c-0042", "total": 19.99, "currency": "EUR"}
    if version == 2:
        detail["items"] = [{"sku": "SKU-a", "quantity": 1}]
    return detail


# (source, detail-type, a fresh valid detail, the notification kind)
KNOWN = {
    "OrderPlaced v1": ("blueprints.orders", "OrderPlaced", lambda: order_detail(1), "order_placed"),
    "OrderPlaced v2": ("blueprints.orders", "OrderPlaced", lambda: order_detail(2), "order_placed"),
    "OrderCancelled v1": ("blueprints.orders", "OrderCancelled", lambda: order_detail(1), "order_cancelled"),
    "OrderCancelled v2": ("blueprints.orders", "OrderCancelled", lambda: order_detail(2), "order_cancelled"),
    "StockReserved": (
        "blueprints.inventory",
        "StockReserved",
        lambda: {"version": 1, "order_id": f"o-note-{next(_numbers):06d}", "items": [{"sku": "SKU-a", "quantity": 1}]},
        "stock_reserved",
    ),
    "StockShortage": (
        "blueprints.inventory",
        "StockShortage",
        lambda: {"version": 1, "order_id": f"o-note-{next(_numbers):06d}", "missing": ["SKU-a"]},
        "stock_shortage",
    ),
    "DailyReportRequested": ("blueprints.scheduler", "DailyReportRequested", lambda: {"version": 1, "report": "daily"}, "daily_report"),
    "RestockRequested": (
        "blueprints.warehouse",
        "RestockRequested",
        lambda: {"version": 1, "kind": "restock", "request_id": f"r-{next(_numbers)}", "sku": f"SKU-r{next(_numbers)}", "quantity": 5},
        "restock_requested",
    ),
}

_days = iter(range(1_000_000))


def fresh_time():
    """A day of its own (before anything the other tests use), so time-keyed events never collide."""
    return (datetime(1990, 1, 1, 8, tzinfo=timezone.utc) + timedelta(days=next(_days))).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def notifications(moto_module, load_handler, create_idempotency_table):
    create_idempotency_table(TABLE_NAME)
    moto_module.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    return load_handler("notifications_service")


@pytest.fixture
def notified(notifications, monkeypatch):
    """Every (kind, payload) ``notify`` was called with, in order."""
    calls = []
    real_notify = notifications.notify

    def counting_notify(kind, payload):
        calls.append((kind, payload))
        return real_notify(kind, payload)

    monkeypatch.setattr(notifications, "notify", counting_notify)
    return calls


@pytest.fixture
def record(sqs_events, eventbridge_event):
    def build(source, detail_type, detail, **envelope):
        envelope.setdefault("time", fresh_time())
        return sqs_events.record(json.dumps(eventbridge_event(source, detail_type, detail, **envelope)), queue="notifications")

    return build


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_each_known_event_is_notified_once(notifications, notified, record, lambda_context, name):
    source, detail_type, detail, kind = KNOWN[name]
    body = detail()

    assert handle(notifications, [record(source, detail_type, body)], lambda_context) == failures()

    [(notified_kind, payload)] = notified
    assert notified_kind == kind
    if "order_id" in body:
        assert payload["order_id"] == body["order_id"]


def test_an_order_notification_says_what_was_ordered(notifications, notified, record, lambda_context):
    detail = order_detail(2)

    handle(notifications, [record("blueprints.orders", "OrderPlaced", detail)], lambda_context)

    assert notified == [
        (
            "order_placed",
            {
                "order_id": detail["order_id"],
                "customer_id": "c-0042",
                "total": 19.99,  # as the contract writes it: a JSON number
                "currency": "EUR",
                "items": [{"sku": "SKU-a", "quantity": 1}],
            },
        )
    ]


def test_the_scheduled_and_piped_events_say_when(notifications, notified, record, lambda_context):
    daily = record("blueprints.scheduler", "DailyReportRequested", {"version": 1, "report": "daily"}, time="2025-03-14T23:30:00-02:00")
    restock = record(
        "blueprints.warehouse",
        "RestockRequested",
        {"version": 1, "kind": "restock", "request_id": "r-7", "sku": "SKU-x", "quantity": 7},
        time="2025-03-14T09:00:00Z",
    )

    assert handle(notifications, [daily, restock], lambda_context) == failures()

    assert notified == [
        ("daily_report", {"report": "daily", "day": "2025-03-15"}),
        ("restock_requested", {"request_id": "r-7", "sku": "SKU-x", "quantity": 7}),
    ]


def test_a_notification_emits_a_metric(notifications, record, lambda_context, capsys):
    capsys.readouterr()

    handle(notifications, [record("blueprints.orders", "OrderCancelled", order_detail(1))], lambda_context)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    sent = [blob["NotificationsSent"] for blob in blobs if "NotificationsSent" in blob]
    assert sum(sum(value) if isinstance(value, list) else value for value in sent) == 1


def test_a_batch_logs_one_line_and_publishes_its_counts_once(notifications, notified, record, lambda_context, log_records, capsys):
    logs = log_records(notifications)
    details = [order_detail(2) for _ in range(5)]
    batch = [record("blueprints.orders", "OrderPlaced", detail) for detail in details] + [record("blueprints.orders", "OrderPlaced", details[0])]
    capsys.readouterr()

    assert handle(notifications, batch, lambda_context) == failures()

    assert len(notified) == 5
    [line] = [r for r in logs if r.levelname == "INFO"]
    assert (line.getMessage(), line.records, line.NotificationsSent, line.DuplicateEventsSkipped) == ("Batch processed", 6, 5, 1)
    emitted = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emitted) == 1  # one EMF blob for the batch, not one per record
    assert metric_totals(emitted[0])["NotificationsSent"] == 5


def test_an_order_read_in_version_1_is_notified_as_the_current_version_without_items(notifications, notified, record, lambda_context):
    detail = order_detail(1)

    handle(notifications, [record("blueprints.orders", "OrderCancelled", detail)], lambda_context)

    assert notified == [("order_cancelled", {"order_id": detail["order_id"], "customer_id": "c-0042", "total": 19.99, "currency": "EUR", "items": []})]


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_the_same_message_delivered_twice_notifies_once(notifications, notified, record, lambda_context, name):
    source, detail_type, detail, _ = KNOWN[name]
    first = record(source, detail_type, detail())
    again = dict(first, receiptHandle="another-receipt-handle")

    assert handle(notifications, [first], lambda_context) == failures()
    assert handle(notifications, [again], lambda_context) == failures()

    assert len(notified) == 1


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_a_replayed_event_notifies_once(notifications, notified, sqs_events, eventbridge_event, lambda_context, name):
    """An archive replay sends the event again with a new id, the same time and detail, and a replay-name."""
    source, detail_type, detail, _ = KNOWN[name]
    original = eventbridge_event(source, detail_type, detail(), time=fresh_time())
    replayed = dict(original, id=str(uuid.uuid4()), **{"replay-name": "notifications-replay"})
    records = [sqs_events.record(json.dumps(event), queue="notifications") for event in (original, replayed)]

    assert handle(notifications, records, lambda_context) == failures()

    assert len(notified) == 1


def test_the_same_order_put_on_the_bus_again_notifies_once(notifications, notified, record, lambda_context):
    detail = order_detail(2)
    republished = [record("blueprints.orders", "OrderPlaced", detail), record("blueprints.orders", "OrderPlaced", detail)]
    as_version_1 = record("blueprints.orders", "OrderPlaced", {k: v for k, v in detail.items() if k != "items"} | {"version": 1})

    assert handle(notifications, [*republished, as_version_1], lambda_context) == failures()

    assert len(notified) == 1


def test_one_event_leads_to_one_notification_per_kind(notifications, notified, record, lambda_context):
    detail = order_detail(1)
    order_id = detail["order_id"]
    batch = [
        record("blueprints.orders", "OrderPlaced", detail),
        record("blueprints.inventory", "StockReserved", {"version": 1, "order_id": order_id, "items": []}),
        record("blueprints.orders", "OrderCancelled", detail),
    ]

    assert handle(notifications, batch, lambda_context) == failures()

    assert [kind for kind, _ in notified] == ["order_placed", "stock_reserved", "order_cancelled"]


def test_one_daily_report_per_day(notifications, notified, record, lambda_context):
    daily = {"version": 1, "report": "daily"}
    batch = [
        record("blueprints.scheduler", "DailyReportRequested", daily, time="2031-05-01T06:00:00Z"),
        record("blueprints.scheduler", "DailyReportRequested", daily, time="2031-05-01T06:00:07Z"),  # a second firing that day
        record("blueprints.scheduler", "DailyReportRequested", daily, time="2031-05-02T06:00:00Z"),
    ]

    assert handle(notifications, batch, lambda_context) == failures()

    assert notified == [("daily_report", {"report": "daily", "day": "2031-05-01"}), ("daily_report", {"report": "daily", "day": "2031-05-02"})]


def test_a_restock_request_redelivered_by_the_pipe_is_one_notification(notifications, notified, record, lambda_context):
    """The pipe gives each delivery a new event time; the request id recognises the retry."""
    first = {"version": 1, "kind": "restock", "request_id": "r-twice", "sku": "SKU-twice", "quantity": 3}
    other = dict(first, request_id="r-other")
    batch = [
        record("blueprints.warehouse", "RestockRequested", first, time="2031-06-01T10:00:00Z"),
        record("blueprints.warehouse", "RestockRequested", first, time="2031-06-01T10:05:00Z"),
        record("blueprints.warehouse", "RestockRequested", other, time="2031-06-01T10:05:00Z"),
    ]

    assert handle(notifications, batch, lambda_context) == failures()

    assert [payload["request_id"] for _, payload in notified] == ["r-twice", "r-other"]


@pytest.mark.parametrize(
    ("source", "detail_type", "detail", "reason"),
    [
        (
            "blueprints.inventory",
            "StockReleased",
            {"version": 1, "order_id": "o-1", "items": []},
            f"detail-type: Value error, StockReleased of blueprints.inventory {NOT_NOTIFIED}",
        ),
        ("blueprints.inventory", "StockReserved", {"version": 2, "order_id": "o-1", "items": []}, "detail.version: Input should be 1"),
        ("blueprints.orders", "OrderPlaced", dict(order_detail(2), version=3), "detail.version: Input should be 1 or 2"),
        ("blueprints.orders", "OrderPlaced", dict(order_detail(1), version=True), "detail.version: Value error, must be a whole number"),
        (
            "blueprints.orders",
            "OrderShipped",
            order_detail(2),
            f"detail-type: Value error, OrderShipped of blueprints.orders {NOT_NOTIFIED}",
        ),
        (
            "blueprints.orders",
            "DailyReportRequested",
            {"version": 1, "report": "daily"},
            f"detail-type: Value error, DailyReportRequested of blueprints.orders {NOT_NOTIFIED}",
        ),
        (
            "aws.scheduler",
            "DailyReportRequested",
            {"version": 1, "report": "daily"},
            f"detail-type: Value error, DailyReportRequested of aws.scheduler {NOT_NOTIFIED}",
        ),
        ("blueprints.scheduler", "DailyReportRequested", {"version": 1, "report": "weekly"}, "detail.report: Input should be 'daily'"),
        ("blueprints.warehouse", "RestockRequested", {"version": 1, "kind": "cancel", "request_id": "r-1", "sku": "SKU-1", "quantity": 1}, "detail.kind: "),
        (
            "blueprints.warehouse",
            "RestockRequested",
            {"version": 1, "kind": "restock", "request_id": "r-1", "sku": "SKU-1", "quantity": 0},
            "detail.quantity: ",
        ),
        ("blueprints.inventory", "StockShortage", {"version": 1, "order_id": "o-1", "missing": []}, "detail.missing: "),
        ("blueprints.orders", "OrderPlaced", dict(order_detail(2), items=[]), "detail.items: "),
        ("blueprints.orders", "OrderCancelled", dict(order_detail(1), total=-1), "detail.total: "),
    ],
)
def test_an_unknown_event_is_a_failed_item_with_its_reason(notifications, notified, record, lambda_context, log_records, source, detail_type, detail, reason):
    logs = log_records(notifications)
    bad = record(source, detail_type, detail)

    assert handle(notifications, [bad], lambda_context) == failures(bad["messageId"])

    assert notified == []
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert reason in rejected.reason
    assert rejected.message_id == bad["messageId"]


def test_a_failed_notification_is_sent_on_redelivery(notifications, notified, record, lambda_context, monkeypatch):
    unlucky, lucky = order_detail(2), order_detail(2)
    counting_notify = notifications.notify
    refused = []

    def flaky_notify(kind, payload):
        if payload["order_id"] == unlucky["order_id"] and not refused:
            refused.append(payload["order_id"])
            raise RuntimeError("mail relay unavailable")
        return counting_notify(kind, payload)

    monkeypatch.setattr(notifications, "notify", flaky_notify)
    first = [record("blueprints.orders", "OrderPlaced", unlucky), record("blueprints.orders", "OrderPlaced", lucky)]

    assert handle(notifications, first, lambda_context) == failures(first[0]["messageId"])
    # SQS delivers the failed message again; the failure left no record behind, so it is sent now.
    redelivered = dict(first[0], attributes=dict(first[0]["attributes"], ApproximateReceiveCount="2"))
    assert handle(notifications, [redelivered], lambda_context) == failures()

    assert refused == [unlucky["order_id"]]
    assert [payload["order_id"] for _, payload in notified] == [lucky["order_id"], unlucky["order_id"]]


def test_the_idempotency_records_expire(notifications, record, lambda_context):
    handle(notifications, [record("blueprints.orders", "OrderPlaced", order_detail(1))], lambda_context)

    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    assert items and all(item["status"]["S"] == "COMPLETED" and int(item["expiration"]["N"]) > 0 for item in items)


# Wrong values for the envelope fields and for each kind's detail (None and removal are always tried too).
ENVELOPE_BAD = {
    "version": [0, {}],
    "id": [42, []],
    "source": ["blueprints.billing", "blueprints", 42],
    "detail-type": ["StockReleased", "Unknown", 42],
    "account": [42, {}],
    "time": ["today", True, []],
    "region": [1, {}],
    "resources": ["arn", [1]],
    "detail": ["{}", [], {}, 1],
    "detail.version": [0, 3, "1", True, 1.0],
}
DETAIL_BAD = {
    "blueprints.orders": {
        "detail.order_id": ["", 42, "o-"],
        "detail.customer_id": ["", 42, "customer"],
        "detail.total": [-1, "12.50", 1e400],
        "detail.currency": ["eur", 978],
    },
    "blueprints.inventory": {"detail.order_id": ["", 42, "x"]},
    "blueprints.scheduler": {"detail.report": ["weekly", 1]},
    "blueprints.warehouse": {"detail.kind": ["cancel", 1], "detail.sku": ["", "sku"], "detail.quantity": [0, -1, 1.5, "3", True]},
}


@FAST
@given(data=st.data())
def test_no_record_is_lost_whatever_the_bodies(notifications, sqs_events, eventbridge_strategies, lambda_context, data):
    strategies = eventbridge_strategies
    by_source = {
        "blueprints.orders": strategies.event("blueprints.orders", ("OrderPlaced", "OrderCancelled"), strategies.order(1) | strategies.order(2)),
        "blueprints.inventory": strategies.event(
            "blueprints.inventory",
            ("StockReserved",),
            st.fixed_dictionaries({"version": st.just(1), "order_id": strategies.order_id(), "items": strategies.items(min_size=0)}),
        )
        | strategies.event(
            "blueprints.inventory",
            ("StockShortage",),
            st.fixed_dictionaries({"version": st.just(1), "order_id": strategies.order_id(), "missing": st.lists(strategies.sku(), min_size=1, max_size=3)}),
        ),
        "blueprints.scheduler": strategies.event("blueprints.scheduler", ("DailyReportRequested",), st.just({"version": 1, "report": "daily"})),
        "blueprints.warehouse": strategies.event(
            "blueprints.warehouse",
            ("RestockRequested",),
            st.fixed_dictionaries(
                {"version": st.just(1), "kind": st.just("restock"), "request_id": st.uuids().map(str), "sku": strategies.sku(), "quantity": st.integers(1, 100)}
            ),
        ),
    }
    valid = st.one_of(*by_source.values())
    bad_body = st.one_of(strategies.bad_body(valid, ENVELOPE_BAD), *(strategies.broken_event(by_source[s], DETAIL_BAD[s]) for s in by_source))
    good = data.draw(st.lists(valid, max_size=4))
    bad = data.draw(st.lists(bad_body, min_size=1, max_size=4))
    items = data.draw(st.permutations([(True, json.dumps(event)) for event in good] + [(False, body) for body in bad]))
    records = [sqs_events.record(body, queue="notifications") for _, body in items]

    response = handle(notifications, records, lambda_context)

    expected = [record["messageId"] for (is_good, _), record in zip(items, records, strict=True) if not is_good]
    assert response == failures(*expected)


# --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------


@pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
    notifications, sqs_events, record, lambda_context, log_records, capsys, body, reason
):
    logs = log_records(notifications)
    bad, good = sqs_events.record(body, queue="notifications"), record("blueprints.orders", "OrderPlaced", order_detail(1))
    capsys.readouterr()

    assert notifications.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and reason in rejected.reason
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


def test_a_record_without_a_body_fails_with_that_reason(notifications, sqs_events, record, lambda_context, log_records):
    logs = log_records(notifications)
    bad, good = (
        record("blueprints.orders", "OrderPlaced", {**order_detail(1), "order_id": "o-unreadable"}),
        record("blueprints.orders", "OrderPlaced", order_detail(1)),
    )
    del bad["body"]

    assert notifications.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the record has no body")


def test_any_exception_while_reading_a_record_is_that_records_failure(notifications, sqs_events, record, lambda_context, log_records, capsys, monkeypatch):
    real = notifications.BusEvent.model_validate_json

    def reading(text, *args, **kwargs):
        if "o-unreadable" in str(text):
            raise RecursionError("maximum recursion depth exceeded")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(notifications.BusEvent, "model_validate_json", reading)
    logs = log_records(notifications)
    bad, good = (
        record("blueprints.orders", "OrderPlaced", {**order_detail(1), "order_id": "o-unreadable"}),
        record("blueprints.orders", "OrderPlaced", order_detail(1)),
    )
    capsys.readouterr()

    assert notifications.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
def test_fails_when_a_record_cannot_be_named_in_the_response(notifications, sqs_events, record, lambda_context, shape, expected):
    # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        notifications.lambda_handler(unnameable_sqs_event(record("blueprints.orders", "OrderPlaced", order_detail(1)), shape), lambda_context)


@pytest.mark.parametrize("where", ["detail", "field"])
def test_an_eventbridge_event_nested_too_deeply_fails_only_its_record(notifications, sqs_events, eventbridge_event, record, lambda_context, log_records, where):
    logs = log_records(notifications)
    detail = "NESTED" if where == "detail" else {**order_detail(1), "order_id": "NESTED"}
    body = json.dumps(eventbridge_event("blueprints.orders", "OrderPlaced", detail)).replace('"NESTED"', DEEPLY_NESTED)
    bad, good = sqs_events.record(body, queue="notifications"), record("blueprints.orders", "OrderPlaced", order_detail(1))

    assert notifications.lambda_handler(sqs_events.event([bad, good]), lambda_context) == failures(bad["messageId"])

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.message_id == bad["messageId"] and "Invalid JSON: recursion limit exceeded" in rejected.reason
