"""The orders publisher against a moto event bus, with a rule to an SQS queue to see what arrives."""

import json
from collections import Counter

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.handlers.exercise_02 import reject_entries, watch_put_events
from tests.handlers.record_shapes import metric_totals, nested

BASE_DELAY = 0.05
BUS_NAME = "blueprints"


@pytest.fixture(scope="module")
def shared_bus(moto_module, event_bus_with_queues):
    """The bus as the blueprint wires it: one queue behind a rule on the orders' source."""
    return event_bus_with_queues(BUS_NAME, {"all-orders": {"source": ["blueprints.orders"]}})


@pytest.fixture
def bus(shared_bus, received_events):
    """The bus, with nothing left on its queue by another test."""
    received_events(shared_bus.queue_urls["all-orders"])
    return shared_bus


@pytest.fixture
def publisher(bus, load_handler, monkeypatch):
    monkeypatch.setenv("BUS_NAME", BUS_NAME)
    monkeypatch.setenv("PUT_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
    return watch_put_events(load_handler("orders_publisher"))


def order(index, **overrides):
    detail = {
        "version": 2,
        "order_id": f"o-{index:04d}",
        "customer_id": f"c-{index % 7:04d}",
        "total": round(10 + index * 7.35, 2),
        "currency": "EUR",
        "items": [{"sku": f"SKU-{index:03d}", "quantity": 1 + index % 4}, {"sku": "SKU-common", "quantity": 2}],
    }
    detail.update(overrides)
    return detail


def request_event(index, detail_type=None, **overrides):
    return {"detail_type": detail_type or ("OrderCancelled" if index % 5 == 4 else "OrderPlaced"), "detail": order(index, **overrides)}


def request(count):
    return {"events": [request_event(i) for i in range(count)]}


def order_ids(entries):
    return [json.loads(entry["Detail"])["order_id"] for entry in entries]


def test_25_events_take_3_put_events_calls(publisher, lambda_context):
    result = publisher.lambda_handler(request(25), lambda_context)

    assert result == {"published": 25}
    assert [len(entries) for entries in publisher.calls] == [10, 10, 5]


def test_every_entry_has_the_source_detail_type_bus_and_detail(publisher, lambda_context):
    sent = request(25)

    publisher.lambda_handler(sent, lambda_context)

    entries = [entry for call in publisher.calls for entry in call]
    assert len(entries) == 25
    for entry, event in zip(entries, sent["events"], strict=True):
        assert entry["Source"] == "blueprints.orders"
        assert entry["DetailType"] == event["detail_type"]
        assert entry["EventBusName"] == BUS_NAME
        assert json.loads(entry["Detail"]) == event["detail"]
        assert set(entry) == {"Source", "DetailType", "Detail", "EventBusName"}


def test_every_event_arrives_on_the_bus_once(publisher, bus, lambda_context, received_events):
    sent = request(25)

    publisher.lambda_handler(sent, lambda_context)

    arrived = received_events(bus.queue_urls["all-orders"])
    assert sorted((e["detail-type"], e["detail"]["order_id"]) for e in arrived) == sorted(
        (event["detail_type"], event["detail"]["order_id"]) for event in sent["events"]
    )
    assert {e["source"] for e in arrived} == {"blueprints.orders"}
    assert {e["detail"]["version"] for e in arrived} == {2}


def test_the_detail_keeps_a_numeric_total_and_the_items(publisher, bus, lambda_context, received_events):
    detail = order(1, total=1234.5, items=[{"sku": "SKU-a", "quantity": 3}])

    publisher.lambda_handler({"events": [{"detail_type": "OrderPlaced", "detail": detail}]}, lambda_context)

    [event] = received_events(bus.queue_urls["all-orders"])
    assert event["detail"] == {
        "version": 2,
        "order_id": "o-0001",
        "customer_id": "c-0001",
        "total": 1234.5,
        "currency": "EUR",
        "items": [{"sku": "SKU-a", "quantity": 3}],
    }


def test_the_bus_may_be_given_by_its_arn(bus, load_handler, monkeypatch, lambda_context, received_events):
    monkeypatch.setenv("BUS_NAME", bus.arn)
    module = load_handler("orders_publisher")

    assert module.lambda_handler(request(3), lambda_context) == {"published": 3}
    assert len(received_events(bus.queue_urls["all-orders"])) == 3


@pytest.mark.parametrize(
    ("bad_index", "change", "reason"),
    [
        (2, {"total": -1}, r"events\[2\]: detail.total: .*greater than or equal to 0"),
        (0, {"currency": "eur"}, r"events\[0\]: detail.currency: "),
        (7, {"version": 1}, r"events\[7\]: detail.version: Input should be 2$"),
        (7, {"version": True}, r"events\[7\]: detail.version: "),
        (3, {"total": "12.00"}, r"events\[3\]: detail.total: .*must be a number"),
        (5, {"coupon": "FREE"}, r"events\[5\]: detail.coupon: Extra inputs are not permitted"),
        (9, {"customer_id": "c 9"}, r"events\[9\]: detail.customer_id: "),
        (11, {"order_id": "order-11"}, r"events\[11\]: detail.order_id: "),
        (12, {"items": []}, r"events\[12\]: detail.items: .*at least 1 item"),
        (13, {"items": [{"sku": "SKU-1", "quantity": 1}] * 51}, r"events\[13\]: detail.items: .*at most 50 items"),
        (14, {"items": [{"sku": "SKU-1", "quantity": 0}]}, r"events\[14\]: detail.items.0.quantity: .*greater than or equal to 1"),
        (15, {"items": [{"sku": "SKU-1", "quantity": 1.5}]}, r"events\[15\]: detail.items.0.quantity: "),
        (16, {"items": [{"sku": "sku-1", "quantity": 1}]}, r"events\[16\]: detail.items.0.sku: "),
        (17, {"items": [{"sku": "SKU-1"}]}, r"events\[17\]: detail.items.0.quantity: Field required"),
    ],
)
def test_an_invalid_event_names_its_index_and_nothing_is_put(publisher, bus, lambda_context, received_events, bad_index, change, reason):
    sent = request(25)
    sent["events"][bad_index]["detail"].update(change)

    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(sent, lambda_context)

    assert publisher.calls == []
    assert received_events(bus.queue_urls["all-orders"]) == []


def test_a_missing_items_list_is_refused(publisher, lambda_context):
    sent = request(3)
    del sent["events"][1]["detail"]["items"]

    with pytest.raises(ValueError, match=r"events\[1\]: detail.items: Field required"):
        publisher.lambda_handler(sent, lambda_context)
    assert publisher.calls == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"detail_type": "OrderShipped", "detail": order(0)}, r"events\[0\]: detail_type: "),
        ({"detail": order(0)}, r"events\[0\]: detail_type: Field required"),
        ({"detail_type": "OrderPlaced"}, r"events\[0\]: detail: Field required"),
        ({"detail_type": "OrderPlaced", "detail": order(0), "source": "x"}, r"events\[0\]: source: Extra inputs"),
        ("OrderPlaced", r"events\[0\]: event: "),
    ],
)
def test_a_malformed_event_is_refused(publisher, lambda_context, event, reason):
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler({"events": [event]}, lambda_context)
    assert publisher.calls == []


def test_every_invalid_event_is_reported(publisher, lambda_context):
    sent = request(6)
    sent["events"][1]["detail"]["currency"] = "euro"
    sent["events"][4]["detail_type"] = "OrderShipped"

    with pytest.raises(ValueError) as raised:
        publisher.lambda_handler(sent, lambda_context)

    assert str(raised.value).startswith("2 invalid event(s), nothing published: events[1]: detail.currency: ")
    assert "; events[4]: detail_type: " in str(raised.value)
    assert publisher.calls == []


@pytest.mark.parametrize("event", [{}, {"events": "o-1"}, {"orders": []}, [], None])
def test_a_request_without_an_events_list_is_refused(publisher, lambda_context, event):
    with pytest.raises(ValueError, match='"events" list'):
        publisher.lambda_handler(event, lambda_context)
    assert publisher.calls == []


def test_an_empty_list_puts_nothing(publisher, lambda_context):
    assert publisher.lambda_handler({"events": []}, lambda_context) == {"published": 0}
    assert publisher.calls == []


def test_only_the_failed_entries_are_retried(publisher, bus, lambda_context, monkeypatch, received_events):
    failing = {"o-0003": ("InternalFailure", "Internal Service Failure"), "o-0008": ("ThrottlingException", "Rate exceeded")}

    def decide(call_number, entry):
        return failing.get(json.loads(entry["Detail"])["order_id"]) if call_number == 1 else None

    requests = reject_entries(publisher, monkeypatch, decide)

    result = publisher.lambda_handler(request(25), lambda_context)

    assert result == {"published": 25}
    assert [len(entries) for entries in requests] == [10, 10, 5, 2]
    assert order_ids(requests[3]) == ["o-0003", "o-0008"]
    retried = [entry for entry in requests[0] if json.loads(entry["Detail"])["order_id"] in failing]
    assert requests[3] == retried  # the very entries, unchanged
    sent = Counter(order_id for entries in requests for order_id in order_ids(entries))
    assert {order_id for order_id, n in sent.items() if n > 1} == set(failing)
    assert len(publisher.pauses) == 1 and 0 <= publisher.pauses[0] <= BASE_DELAY
    arrived = [e["detail"]["order_id"] for e in received_events(bus.queue_urls["all-orders"])]
    assert sorted(arrived) == [f"o-{i:04d}" for i in range(25)]


def test_results_are_matched_to_entries_by_position(publisher, lambda_context, monkeypatch):
    """Failed results carry no id of their entry: only their position says which entry failed."""

    def decide(call_number, entry):
        return ("InternalFailure", "boom") if call_number == 1 and json.loads(entry["Detail"])["order_id"] in ("o-0000", "o-0009") else None

    requests = reject_entries(publisher, monkeypatch, decide)

    publisher.lambda_handler(request(10), lambda_context)

    assert order_ids(requests[1]) == ["o-0000", "o-0009"]


def test_a_persistent_failure_raises_naming_the_entries_and_claims_nothing(publisher, bus, lambda_context, monkeypatch, capsys, received_events):
    doomed = {"o-0004", "o-0017"}

    def decide(call_number, entry):
        return ("ThrottlingException", "Rate exceeded") if json.loads(entry["Detail"])["order_id"] in doomed else None

    requests = reject_entries(publisher, monkeypatch, decide)
    capsys.readouterr()

    with pytest.raises(publisher.PublishError) as raised:
        publisher.lambda_handler(request(25), lambda_context)

    message = str(raised.value)
    assert message.startswith("2 order event(s) not put on the bus (23 were): ")
    assert "events[4] (OrderCancelled o-0004): ThrottlingException: Rate exceeded (after 3 attempts)" in message
    assert "events[17] (OrderPlaced o-0017): ThrottlingException: Rate exceeded (after 3 attempts)" in message
    assert set(raised.value.failed) == {4, 17}
    assert raised.value.published == 23
    sent = Counter(order_id for entries in requests for order_id in order_ids(entries))
    assert {order_id: sent[order_id] for order_id in doomed} == {"o-0004": 3, "o-0017": 3}
    assert len(requests) == 3 + 1 + 1  # the first pass, then both entries together in each retry pass
    assert len(publisher.pauses) == 2  # one pause before each retry pass
    arrived = sorted(e["detail"]["order_id"] for e in received_events(bus.queue_urls["all-orders"]))
    assert arrived == sorted(f"o-{i:04d}" for i in range(25) if f"o-{i:04d}" not in doomed)
    emitted = metric_totals(capsys.readouterr().out)
    assert emitted["OrderEventsPublished"] == 23
    assert emitted["OrderEventsFailedToPublish"] == 2


@pytest.mark.parametrize("code", ["MalformedDetail", "NotAuthorizedForSourceException", "AccessDeniedException"])
def test_a_non_retryable_error_is_not_retried(publisher, lambda_context, monkeypatch, code):
    def decide(call_number, entry):
        return (code, "no") if json.loads(entry["Detail"])["order_id"] == "o-0001" else None

    requests = reject_entries(publisher, monkeypatch, decide)

    with pytest.raises(publisher.PublishError, match=rf"events\[1\] \(OrderPlaced o-0001\): {code}: no$"):
        publisher.lambda_handler(request(3), lambda_context)

    assert len(requests) == 1
    assert publisher.pauses == []


def test_failed_entries_of_several_calls_are_retried_together(publisher, lambda_context, monkeypatch):
    failing = {"o-0001", "o-0004", "o-0009", "o-0010", "o-0015", "o-0019", "o-0020", "o-0022", "o-0024"}

    def decide(call_number, entry):
        return ("ThrottlingException", "Rate exceeded") if call_number <= 3 and json.loads(entry["Detail"])["order_id"] in failing else None

    requests = reject_entries(publisher, monkeypatch, decide)

    assert publisher.lambda_handler(request(25), lambda_context) == {"published": 25}

    assert [len(entries) for entries in requests] == [10, 10, 5, 9]
    assert order_ids(requests[3]) == sorted(failing)
    assert len(publisher.pauses) == 1


def test_a_call_that_fails_later_leaves_earlier_failed_entries_unretried(publisher, lambda_context, monkeypatch):
    real_put_events = publisher.eventbridge.put_events
    requests = []

    def put_events(**params):
        requests.append(params["Entries"])
        if len(requests) == 2:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutEvents")
        response = real_put_events(**params)
        response["Entries"][2] = {"ErrorCode": "InternalFailure", "ErrorMessage": "boom"}
        return response

    monkeypatch.setattr(publisher.eventbridge, "put_events", put_events)

    with pytest.raises(publisher.PublishError) as raised:
        publisher.lambda_handler(request(15), lambda_context)

    assert len(requests) == 2
    assert raised.value.published == 9
    assert raised.value.failed[2] == "InternalFailure: boom (not retried: publishing stopped after AccessDeniedException: denied)"
    assert {index: raised.value.failed[index] for index in range(10, 15)} == {index: "AccessDeniedException: denied" for index in range(10, 15)}


def test_a_failing_call_stops_publishing(publisher, lambda_context, monkeypatch):
    def refuse(**params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutEvents")

    monkeypatch.setattr(publisher.eventbridge, "put_events", refuse)

    with pytest.raises(publisher.PublishError) as raised:
        publisher.lambda_handler(request(15), lambda_context)

    assert raised.value.published == 0
    assert Counter(reason.split(":")[0] for reason in raised.value.failed.values()) == {"AccessDeniedException": 10, "NotSent": 5}


def test_calls_also_stay_under_the_request_size_limit(publisher, lambda_context, monkeypatch):
    entries = [publisher.to_entry(event) for event in publisher.validate_request(request(12))]
    largest = max(publisher.entry_size(entry) for entry in entries)
    monkeypatch.setattr(publisher.bus, "max_request_bytes", 3 * largest)

    assert publisher.lambda_handler(request(12), lambda_context) == {"published": 12}

    assert [len(entries) for entries in publisher.calls] == [3, 3, 3, 3]
    assert all(sum(publisher.entry_size(entry) for entry in call) <= 3 * largest for call in publisher.calls)


def test_an_entry_over_the_size_limit_is_refused(publisher, lambda_context, monkeypatch):
    monkeypatch.setattr(publisher, "MAX_REQUEST_BYTES", 200)
    sent = request(3)
    sent["events"][2]["detail"]["items"] = [{"sku": f"SKU-{i:060d}", "quantity": 1} for i in range(3)]

    with pytest.raises(ValueError, match=r"events\[2\]: the entry is \d+ bytes, over the 200-byte PutEvents limit"):
        publisher.lambda_handler(sent, lambda_context)
    assert publisher.calls == []


def test_the_publisher_keeps_to_256_kb_and_retries_as_the_environment_says(bus, load_handler, monkeypatch):
    # How the calls are filled and the pauses drawn is the runtime's (tests/runtime/test_publishers.py); these are the settings.
    monkeypatch.setenv("BUS_NAME", BUS_NAME)
    monkeypatch.setenv("PUT_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("PUT_RETRY_BASE_DELAY_SECONDS", "0.5")
    module = load_handler("orders_publisher")

    assert (module.bus.event_bus_name, module.bus.max_request_bytes) == (BUS_NAME, 256 * 1024)
    assert (module.bus.retry.max_attempts, module.bus.retry.base_delay_seconds, module.bus.retry.max_delay_seconds) == (5, 0.5, 5.0)


def test_the_error_message_lists_entries_up_to_a_limit(publisher):
    failed = {i: "ThrottlingException" for i in range(130)}

    message = str(publisher.PublishError(failed, 0, {i: f"(OrderPlaced o-{i})" for i in range(130)}))

    assert message.startswith("130 order event(s) not put on the bus (0 were): events[0] (OrderPlaced o-0): ThrottlingException; events[1]")
    assert message.endswith("events[99] (OrderPlaced o-99): ThrottlingException; and 30 more")


def test_nothing_else_is_called(publisher, lambda_context):
    calls = Counter()
    publisher.eventbridge.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))

    publisher.lambda_handler(request(21), lambda_context)

    assert calls == {"PutEvents": 3}
    assert boto3.client("events").list_event_buses()["EventBuses"]  # moto is still the one answering


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (nested(990), r'"events" list'),
        ({"events": nested(990)}, r"^1 invalid event\(s\), nothing published: events\[0\]: event: Input should be a valid dictionary"),
        ({"events": [{"detail_type": "OrderPlaced", "detail": nested(990)}]}, r"events\[0\]: detail: "),
        ({"events": [request_event(0, total=nested(990))]}, r"events\[0\]: detail.total: "),
        ({"events": [request_event(0, notes=nested(990))]}, r"events\[0\]: detail.notes: Extra inputs are not permitted"),
    ],
    ids=["the request", "the events", "the detail", "a field", "an unknown field"],
)
def test_a_deeply_nested_request_is_refused_and_nothing_is_put(publisher, lambda_context, event, reason):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(event, lambda_context)
    assert publisher.calls == []
