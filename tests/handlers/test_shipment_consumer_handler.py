"""The shipment consumer: latest status per shipment, delays bridged to the bus once, bad messages fail the whole batch by name."""

import base64
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.amazon_mq import BatchFailed
from messaging_runtime.contracts.shipments import ShipmentUpdateV1
from tests.handlers.mq_events import OMIT, RabbitMQEvents, new_shipment_update

FAST = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TABLE_NAME = "shipments"
BUS_NAME = "legacy-bridge"
BASE_DELAY = 0.05
QUEUE = "shipments::/"
OTHER_QUEUE = "shipments-eu::warehouse-eu"
STATUSES = ("picked", "packed", "shipped", "delayed", "delivered")


@pytest.fixture(scope="module")
def world(moto_module, event_bus_with_queues):
    """The shipments table and the bus, with a queue behind a rule on the warehouse source to see what is bridged."""
    boto3.client("dynamodb").create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=[{"AttributeName": "shipment_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "shipment_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    bus = event_bus_with_queues(BUS_NAME, {"shipment-delays": {"source": ["legacy.warehouse"]}})
    moto_module.setenv("SHIPMENTS_TABLE", TABLE_NAME)
    moto_module.setenv("EVENT_BUS_NAME", bus.name)
    moto_module.setenv("PUT_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
    return bus


@pytest.fixture(scope="module")
def loaded(world, load_function_module):
    module = load_function_module("shipment_consumer")  # handler.py and its shipment_table.py
    module.pauses = []
    module.bus.retry = dataclasses.replace(module.bus.retry, sleep=module.pauses.append)
    module.calls = []

    def count(params, **_):
        module.calls.append(params["Entries"])

    module.eventbridge.meta.events.register("before-parameter-build.events.PutEvents", count)
    return module


@pytest.fixture
def consumer(loaded, world, received_events, capsys):
    """The handler, with no PutEvents call, pause, bridged event or printed metric left over from another test."""
    loaded.calls.clear()
    loaded.pauses.clear()
    received_events(world.queue_urls["shipment-delays"])
    capsys.readouterr()
    return loaded


@pytest.fixture
def bridged(world, received_events):
    """``bridged()``: the events put on the bus since the last call (taken off the queue)."""
    return lambda: received_events(world.queue_urls["shipment-delays"])


@pytest.fixture(scope="module")
def rmq():
    return RabbitMQEvents()


def stored(shipment_id):
    item = boto3.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"shipment_id": {"S": shipment_id}}, ConsistentRead=True).get("Item")
    if item is None:
        return None
    return {name: (sorted(value["SS"]) if "SS" in value else value["S"]) for name, value in item.items()}


def metric_totals(output):
    """{metric name: sum of values} over the EMF lines printed."""
    totals = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values if isinstance(values, list) else [values])
    return totals


def at(minutes):
    return (datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical(minutes):
    return (datetime(2025, 3, 14, 9, 0) + timedelta(minutes=minutes)).isoformat(timespec="microseconds") + "Z"


def handle(module, event, context):
    return module.lambda_handler(event, context)


def failing(module, event, context):
    with pytest.raises(BatchFailed) as raised:
        module.lambda_handler(event, context)
    return raised.value


# --- a good batch --------------------------------------------------------------


def test_a_batch_from_two_queues_records_every_shipment_and_bridges_the_delay(consumer, bridged, rmq, lambda_context, capsys):
    picked = new_shipment_update(status="picked", occurred_at=at(0))
    delayed = new_shipment_update(status="delayed", occurred_at=at(5), carrier="UPS")
    delivered = new_shipment_update(status="delivered", occurred_at="2025-03-14T09:10:00.250+00:00", carrier=OMIT)
    event = rmq.event({QUEUE: [rmq.shipment_message(picked), rmq.shipment_message(delayed)], OTHER_QUEUE: [rmq.shipment_message(delivered)]})

    assert handle(consumer, event, lambda_context) == {"messages": 3, "recorded": 2, "recorded and bridged": 1}

    assert stored(picked["shipment_id"]) == {
        "shipment_id": picked["shipment_id"],
        "order_id": picked["order_id"],
        "status": "picked",
        "occurred_at": canonical(0),
        "carrier": "DHL",
        "message_id": event["rmqMessagesByQueue"][QUEUE][0]["basicProperties"]["messageId"],
        "update_key": stored(picked["shipment_id"])["update_key"],
    }
    assert stored(picked["shipment_id"])["update_key"].startswith(canonical(0) + "#1#")
    assert stored(delivered["shipment_id"])["occurred_at"] == "2025-03-14T09:10:00.250000Z"
    assert "carrier" not in stored(delivered["shipment_id"])
    assert "unbridged_delays" not in stored(delayed["shipment_id"])  # forwarded, so nothing left to bridge
    [event_on_bus] = bridged()
    assert event_on_bus["source"] == "legacy.warehouse"
    assert event_on_bus["detail-type"] == "ShipmentDelayed"
    assert event_on_bus["time"] == "2025-03-14T09:05:00Z"
    assert event_on_bus["detail"] == {
        "schema_version": 1,
        "shipment_id": delayed["shipment_id"],
        "order_id": delayed["order_id"],
        "status": "delayed",
        "occurred_at": canonical(5),
        "carrier": "UPS",
    }
    totals = metric_totals(capsys.readouterr().out)
    assert totals["ShipmentsRecorded"] == 3 and totals["ShipmentsBridged"] == 1
    assert (totals["RejectedMessages"], totals["FailedMessages"]) == (0, 0) and "DuplicateShipmentsSkipped" not in totals


def test_a_later_update_replaces_the_status_and_keeps_the_carrier_it_does_not_name(consumer, rmq, lambda_context):
    shipment = new_shipment_update(status="shipped", occurred_at=at(0), carrier="DPD")
    later = dict(shipment, status="delivered", occurred_at=at(30))
    del later["carrier"]

    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(shipment)]}), lambda_context)
    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(later)]}), lambda_context)

    assert stored(shipment["shipment_id"])["status"] == "delivered"
    assert stored(shipment["shipment_id"])["occurred_at"] == canonical(30)
    assert stored(shipment["shipment_id"])["carrier"] == "DPD"


def test_unknown_fields_are_ignored(consumer, rmq, lambda_context):
    update = new_shipment_update(dock="B7", weight_kg=12.5)

    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(update)]}), lambda_context)

    assert stored(update["shipment_id"])["status"] == "picked"
    assert "dock" not in stored(update["shipment_id"])


def test_a_text_plain_message_without_properties_is_read(consumer, rmq, lambda_context):
    update = new_shipment_update()
    message = rmq.shipment_message(update, content_type="text/plain; charset=utf-8", content_encoding="UTF-8", headers={})

    handle(consumer, rmq.event({QUEUE: [message]}), lambda_context)

    assert stored(update["shipment_id"])["status"] == "picked"


# --- duplicates and order -----------------------------------------------------


def test_a_redelivered_batch_has_one_effect(consumer, bridged, rmq, lambda_context, capsys):
    updates = [new_shipment_update(status="delayed", occurred_at=at(1)), new_shipment_update(status="packed", occurred_at=at(2))]
    event = rmq.event({QUEUE: [rmq.shipment_message(update) for update in updates]})
    handle(consumer, event, lambda_context)
    assert len(bridged()) == 1
    before = [stored(update["shipment_id"]) for update in updates]
    capsys.readouterr()

    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "skipped": 2}

    assert bridged() == []
    assert [stored(update["shipment_id"]) for update in updates] == before
    totals = metric_totals(capsys.readouterr().out)
    assert totals["DuplicateShipmentsSkipped"] == 2
    assert "ShipmentsRecorded" not in totals and "ShipmentsBridged" not in totals


def test_the_same_update_twice_in_one_batch_is_recorded_once(consumer, bridged, rmq, lambda_context):
    update = new_shipment_update(status="delayed")
    # The warehouse published it twice: two AMQP messages with different message ids.
    event = rmq.event({QUEUE: [rmq.shipment_message(update), rmq.shipment_message(update)]})

    assert handle(consumer, event, lambda_context) == {"messages": 2, "recorded and bridged": 1, "skipped": 1}

    assert len(bridged()) == 1


def test_an_older_update_arriving_late_is_skipped(consumer, bridged, rmq, lambda_context, capsys):
    shipped = new_shipment_update(status="shipped", occurred_at=at(20))
    late_delay = dict(shipped, status="delayed", occurred_at=at(10))

    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(shipped)]}), lambda_context)
    capsys.readouterr()
    assert handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(late_delay)]}), lambda_context) == {"messages": 1, "skipped": 1}

    assert stored(shipped["shipment_id"])["status"] == "shipped"
    assert bridged() == []  # an update that was not recorded is not forwarded either
    assert metric_totals(capsys.readouterr().out)["DuplicateShipmentsSkipped"] == 1


def test_an_exact_duplicate_at_the_same_time_as_the_stored_update_is_skipped(consumer, rmq, lambda_context, capsys):
    packed = new_shipment_update(status="packed", occurred_at=at(5))
    same_update = dict(packed, occurred_at="2025-03-14T09:05:00.000+00:00")  # the same time, written another way

    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(packed)]}), lambda_context)
    before = stored(packed["shipment_id"])
    capsys.readouterr()
    assert handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(same_update)]}), lambda_context) == {"messages": 1, "skipped": 1}

    assert stored(packed["shipment_id"]) == before
    totals = metric_totals(capsys.readouterr().out)
    assert totals["DuplicateShipmentsSkipped"] == 1 and "ShipmentUpdatesSuperseded" not in totals


@pytest.mark.parametrize(
    ("one", "other", "kept"),
    [
        ({"status": "shipped"}, {"status": "delivered"}, {"status": "delivered"}),
        ({"status": "packed"}, {"status": "delayed"}, {"status": "delayed"}),
        ({"status": "shipped", "carrier": "DHL"}, {"status": "shipped", "carrier": "UPS"}, None),
    ],
    ids=["shipped and delivered", "packed and delayed", "same status, another carrier"],
)
def test_two_distinct_updates_of_the_same_second_end_the_same_whatever_their_order_and_the_loser_is_counted(
    consumer, bridged, rmq, lambda_context, capsys, log_records, one, other, kept
):
    logs = log_records(consumer)
    shipment = new_shipment_update(occurred_at=at(7))
    messages = {id(change): rmq.shipment_message(dict(shipment, **change)) for change in (one, other)}
    capsys.readouterr()
    outcomes, ends = [], []
    for arrivals in ((one, other), (other, one)):
        boto3.client("dynamodb").delete_item(TableName=TABLE_NAME, Key={"shipment_id": {"S": shipment["shipment_id"]}})
        for change in arrivals:  # each in an invocation of its own
            outcomes.append(handle(consumer, rmq.event({QUEUE: [messages[id(change)]]}), lambda_context))
        ends.append(stored(shipment["shipment_id"]))

    assert ends[0] == ends[1]
    winner, loser = (one, other) if all(ends[0][name] == value for name, value in one.items()) else (other, one)
    assert all(ends[0][name] == value for name, value in winner.items())
    assert ends[0]["message_id"] == messages[id(winner)]["basicProperties"]["messageId"]
    if kept is not None:
        assert winner == kept
    # The loser is never dropped silently: recorded and then superseded, or superseded on arrival; counted and logged either way.
    assert sum("superseded" in outcome for outcome in outcomes) == 1
    assert metric_totals(capsys.readouterr().out)["ShipmentUpdatesSuperseded"] == 2
    superseded = [r for r in logs if r.getMessage() == "Shipment update superseded by another of the same time"]
    assert [(r.levelname, r.occurred_at, r.kept_status, r.superseded_status) for r in superseded] == [
        ("WARNING", canonical(7), winner["status"], loser["status"])
    ] * 2
    if "delayed" in (one["status"], other["status"]):
        assert len(bridged()) == 2  # the delay went on the bus once in each run


def test_a_redelivery_of_a_same_second_pair_changes_nothing(consumer, bridged, rmq, lambda_context, capsys):
    shipped = new_shipment_update(status="shipped", occurred_at=at(9))
    delivered = dict(shipped, status="delivered")
    event = rmq.event({QUEUE: [rmq.shipment_message(shipped), rmq.shipment_message(delivered)]})
    assert handle(consumer, event, lambda_context) == {"messages": 2, "recorded": 2}
    before = stored(shipped["shipment_id"])
    capsys.readouterr()

    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "superseded": 1, "skipped": 1}

    assert stored(shipped["shipment_id"]) == before
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["ShipmentUpdatesSuperseded"], totals["DuplicateShipmentsSkipped"]) == (1, 1)
    assert "ShipmentsRecorded" not in totals


def test_times_are_compared_as_times_not_as_the_text_sent(consumer, rmq, lambda_context):
    # "09:05:00Z" sorts after "09:05:00.5Z" as text but is earlier.
    first = new_shipment_update(status="packed", occurred_at="2025-03-14T09:05:00.5Z")
    earlier = dict(first, status="picked", occurred_at="2025-03-14T09:05:00Z")

    handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(first), rmq.shipment_message(earlier)]}), lambda_context)

    assert stored(first["shipment_id"])["status"] == "packed"


@FAST
@given(data=st.data())
def test_whatever_the_order_and_the_duplicates_the_latest_update_wins_and_each_recorded_delay_is_bridged_once(consumer, bridged, rmq, lambda_context, data):
    minutes = data.draw(st.lists(st.integers(0, 500), min_size=1, max_size=6, unique=True))
    shipment = new_shipment_update()
    updates = [dict(shipment, status=data.draw(st.sampled_from(STATUSES)), occurred_at=at(m)) for m in minutes]
    again = data.draw(st.lists(st.sampled_from(updates), max_size=len(updates)))
    deliveries = data.draw(st.permutations(updates + again))
    batches = data.draw(st.integers(1, len(deliveries)))
    size = -(-len(deliveries) // batches)

    for start in range(0, len(deliveries), size):
        chunk = deliveries[start : start + size]
        handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(update) for update in chunk]}), lambda_context)

    # The model: an update is recorded when it is later than every update recorded before it.
    latest, expected_delays = None, []
    for update in deliveries:
        if latest is None or update["occurred_at"] > latest["occurred_at"]:
            latest = update
            if update["status"] == "delayed":
                expected_delays.append(update["occurred_at"])
    assert stored(shipment["shipment_id"])["status"] == latest["status"]
    assert stored(shipment["shipment_id"])["occurred_at"] == latest["occurred_at"][:-1] + ".000000Z"
    assert sorted(e["time"] for e in bridged()) == sorted(expected_delays)


# --- bad input ------------------------------------------------------------------

BAD_MESSAGES = {
    "not base64": (dict(data="eyJzY2hlbWFfdmVyc2lvbiI6!!"), "data is not base64"),
    "not UTF-8": (dict(body=b"\xff\xfe{}"), "body is not UTF-8 text"),
    "not JSON": (dict(body="{schema_version: 1"), "body: Invalid JSON: key must be a string at line 1 column 2"),
    "JSON but not an object": (dict(body="[1, 2]"), "body: Input should be an object"),
    "a number": (dict(body="42"), "body: Input should be an object"),
    "null": (dict(body="null"), "body: Input should be an object"),
    "deeply nested": (dict(body="[" * 1000 + "]" * 1000), "body: Invalid JSON: recursion limit exceeded"),
    "deeply nested field": (dict(body='{"schema_version": 1, "carrier": ' + "[" * 1000 + "]" * 1000 + "}"), "body: Invalid JSON: recursion limit"),
    "unknown status": (dict(body=new_shipment_update(status="lost")), "status: Input should be 'picked'"),
    "missing shipment id": (dict(body=new_shipment_update(shipment_id=OMIT)), "shipment_id: Field required"),
    "bad shipment id": (dict(body=new_shipment_update(shipment_id="42")), "shipment_id: String should match pattern"),
    "time without zone": (dict(body=new_shipment_update(occurred_at="2025-03-14T09:00:00")), "occurred_at: Input should have timezone info"),
    "time not in UTC": (dict(body=new_shipment_update(occurred_at="2025-03-14T09:00:00+02:00")), "occurred_at: Value error, must be a UTC time"),
    "time as a number": (dict(body=new_shipment_update(occurred_at=1741942800)), "occurred_at: Value error, must be an ISO 8601 date-time string"),
    "version as text": (dict(body=new_shipment_update(schema_version="1")), "schema_version: Value error, must be a whole number"),
    "unsupported version": (dict(body=new_shipment_update(schema_version=2)), "schema_version: Input should be 1"),
    "binary content type": (dict(body=new_shipment_update(), content_type="application/octet-stream"), "content type 'application/octet-stream' is not JSON"),
    "compressed body": (dict(body=new_shipment_update(), content_encoding="gzip"), "content encoding 'gzip' is not supported"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_a_bad_message_fails_the_batch_by_its_id_and_the_good_ones_are_applied(consumer, bridged, rmq, lambda_context, capsys, log_records, kind):
    logs = log_records(consumer)
    options, reason = BAD_MESSAGES[kind]
    options = dict(options)
    body = options.pop("body", b"")
    good = [new_shipment_update(status="delayed"), new_shipment_update()]
    bad = rmq.message(json.dumps(body) if isinstance(body, dict) else body, **options)
    event = rmq.event({QUEUE: [rmq.shipment_message(good[0]), bad], OTHER_QUEUE: [rmq.shipment_message(good[1])]})

    error = failing(consumer, event, lambda_context)

    bad_id = bad["basicProperties"]["messageId"]
    assert error.failed_message_ids == [bad_id]
    assert reason in error.failures[0].reason
    assert str(error).startswith(f"1 of 3 messages failed; the broker redelivers the batch: {QUEUE}[1] ({bad_id}): ")
    assert [stored(update["shipment_id"])["status"] for update in good] == ["delayed", "picked"]
    assert [e["detail"]["shipment_id"] for e in bridged()] == [good[0]["shipment_id"]]
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["RejectedMessages"], totals["FailedMessages"], totals["ShipmentsRecorded"]) == (1, 1, 2)
    [logged] = [r for r in logs if r.getMessage() == "Message failed"]
    assert (logged.levelname, logged.message_id, logged.place, logged.queue, logged.redelivered) == ("ERROR", bad_id, f"{QUEUE}[1]", QUEUE, False)
    assert logged.reason == error.failures[0].reason


def test_a_batch_with_many_bad_messages_names_exactly_those_in_order(consumer, rmq, lambda_context):
    good = [new_shipment_update() for _ in range(3)]
    bad = [
        rmq.message(data="%%%"),
        rmq.message("not json at all"),
        rmq.message(json.dumps(new_shipment_update(schema_version=3))),
        rmq.message(json.dumps(new_shipment_update(status="returned"))),
    ]
    event = rmq.event(
        {
            QUEUE: [bad[0], rmq.shipment_message(good[0]), bad[1]],
            OTHER_QUEUE: [rmq.shipment_message(good[1]), bad[2]],
            "shipments-us::warehouse-us": [bad[3], rmq.shipment_message(good[2])],
        }
    )

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [message["basicProperties"]["messageId"] for message in bad]
    assert str(error).startswith("4 of 7 messages failed")
    assert all(stored(update["shipment_id"]) is not None for update in good)


def test_a_message_without_an_amqp_message_id_is_named_by_its_queue_and_place(consumer, rmq, lambda_context):
    anonymous = rmq.message("garbage", message_id=None)
    event = rmq.event({QUEUE: [rmq.shipment_message(new_shipment_update())], OTHER_QUEUE: [rmq.shipment_message(new_shipment_update()), anonymous]})

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [f"{OTHER_QUEUE}[1]"]


def test_a_message_without_data_fails_with_its_reason(consumer, rmq, lambda_context):
    message = rmq.message("x")
    del message["data"]

    error = failing(consumer, rmq.event({QUEUE: [message]}), lambda_context)

    assert error.failures[0].reason == "message has no base64 data"


def test_any_exception_while_reading_a_message_is_its_rejection(consumer, rmq, lambda_context, monkeypatch, capsys):
    # The contract reads JSON text in one pass and falls back to decoded values: fail both ways.
    def failing_on_it(real):
        def validate(document):
            if "lost-in-parsing" in str(document):
                raise TypeError("unhashable type: 'list'")
            return real(document)

        return validate

    for method in ("model_validate", "model_validate_json"):
        monkeypatch.setattr(ShipmentUpdateV1.Consumer, method, failing_on_it(getattr(ShipmentUpdateV1.Consumer, method)))
    good, bad = new_shipment_update(), rmq.shipment_message(new_shipment_update(carrier="lost-in-parsing"))
    capsys.readouterr()

    error = failing(consumer, rmq.event({QUEUE: [bad, rmq.shipment_message(good)]}), lambda_context)

    assert [(f.message_id, f.reason) for f in error.failures] == [
        (bad["basicProperties"]["messageId"], "the body cannot be read: TypeError: unhashable type: 'list'")
    ]
    assert stored(good["shipment_id"])["status"] == "picked"
    assert metric_totals(capsys.readouterr().out)["RejectedMessages"] == 1


@pytest.mark.parametrize(
    ("shape", "label", "reason"),
    [
        ("text", f"{QUEUE}[1]", "not a message object (str)"),
        ("null", f"{QUEUE}[1]", "not a message object (NoneType)"),
        ("properties not an object", f"{QUEUE}[1]", "basicProperties is list, expected an object"),
        ("messages not a list", QUEUE, "the messages are dict, expected a list"),
    ],
)
def test_a_message_lambda_would_never_send_fails_the_batch_with_a_clear_reason(consumer, rmq, lambda_context, capsys, shape, label, reason):
    good = new_shipment_update()
    message = rmq.shipment_message(good)
    odd = {
        "text": "a shipment",
        "null": None,
        "properties not an object": dict(rmq.shipment_message(new_shipment_update()), basicProperties=[["messageId", "m-1"]]),
    }.get(shape)
    by_queue = {QUEUE: {"0": message}} if shape == "messages not a list" else {QUEUE: [message, odd]}
    capsys.readouterr()

    error = failing(consumer, rmq.event({**by_queue, OTHER_QUEUE: [rmq.shipment_message(new_shipment_update())]}), lambda_context)

    assert [(f.label, f.reason) for f in error.failures] == [(label, reason)]
    assert metric_totals(capsys.readouterr().out)["RejectedMessages"] == 1
    if shape != "messages not a list":
        assert stored(good["shipment_id"])["status"] == "picked"


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"eventSource": "aws:mq", "messages": []}, {"rmqMessagesByQueue": []}])
def test_an_event_that_is_not_from_rabbitmq_is_refused(consumer, lambda_context, event):
    with pytest.raises(ValueError, match="not an Amazon MQ for RabbitMQ event"):
        consumer.lambda_handler(event, lambda_context)


def test_an_empty_batch_does_nothing(consumer, rmq, lambda_context):
    assert handle(consumer, rmq.event({}), lambda_context) == {"messages": 0}


# --- the bridge when EventBridge fails ------------------------------------------


def fail_put_events(module, monkeypatch, results, only=lambda entry: True):
    """Answer the entries ``only`` picks from ``results`` (one result per entry attempt) while it lasts; the rest go through for real."""
    real_put_events = module.eventbridge.put_events
    pending = list(results)

    def put_events(**params):
        module.calls.append(params["Entries"])
        failing = {i: pending.pop(0) for i, entry in enumerate(params["Entries"]) if only(entry) and pending}
        passing = [entry for i, entry in enumerate(params["Entries"]) if i not in failing]
        real = iter(real_put_events(Entries=passing)["Entries"] if passing else [])
        if passing:
            module.calls.pop()  # the real call counted itself
        return {"FailedEntryCount": len(failing), "Entries": [failing[i] if i in failing else next(real) for i in range(len(params["Entries"]))]}

    monkeypatch.setattr(module.eventbridge, "put_events", put_events)


THROTTLED = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}


def test_a_put_events_failure_fails_the_batch_and_the_redelivery_bridges_once(consumer, bridged, rmq, lambda_context, monkeypatch, capsys):
    delayed = new_shipment_update(status="delayed", occurred_at=at(3))
    other = new_shipment_update(status="shipped")
    event = rmq.event({QUEUE: [rmq.shipment_message(delayed), rmq.shipment_message(other)]})
    fail_put_events(consumer, monkeypatch, [THROTTLED] * 3)

    error = failing(consumer, event, lambda_context)

    delayed_id = event["rmqMessagesByQueue"][QUEUE][0]["basicProperties"]["messageId"]
    assert error.failed_message_ids == [delayed_id]
    assert "BridgeFailed: PutEvents did not take the ShipmentDelayed event after 3 attempt(s): ThrottlingException: Rate exceeded" in str(error)
    assert len(consumer.pauses) == 2 and all(0 <= pause <= 2 * BASE_DELAY for pause in consumer.pauses)
    assert bridged() == []
    assert stored(delayed["shipment_id"])["status"] == "delayed"  # recorded, waiting to be bridged
    assert stored(delayed["shipment_id"])["unbridged_delays"] == [canonical(3)]
    capsys.readouterr()

    # The broker redelivers the whole batch; EventBridge takes the event this time.
    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "bridged on redelivery": 1, "skipped": 1}
    assert [e["detail"]["shipment_id"] for e in bridged()] == [delayed["shipment_id"]]
    assert "unbridged_delays" not in stored(delayed["shipment_id"])
    totals = metric_totals(capsys.readouterr().out)
    assert totals["ShipmentsBridged"] == 1 and totals["DuplicateShipmentsSkipped"] == 2 and "ShipmentsRecorded" not in totals

    # A further redelivery has nothing left to do.
    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "skipped": 2}
    assert bridged() == []


def test_a_delay_overtaken_before_its_redelivery_is_still_bridged_once(consumer, bridged, rmq, lambda_context, monkeypatch):
    delayed = new_shipment_update(status="delayed", occurred_at=at(3))
    delivered = dict(delayed, status="delivered", occurred_at=at(90))
    event = rmq.event({QUEUE: [rmq.shipment_message(delayed), rmq.shipment_message(delivered)]})
    fail_put_events(consumer, monkeypatch, [THROTTLED] * 3)

    failing(consumer, event, lambda_context)
    assert stored(delayed["shipment_id"])["status"] == "delivered"
    assert bridged() == []

    handle(consumer, rmq.redelivery(event), lambda_context)
    handle(consumer, rmq.redelivery(event), lambda_context)

    assert [e["detail"]["occurred_at"] for e in bridged()] == [canonical(3)]
    assert stored(delayed["shipment_id"])["status"] == "delivered"


def test_a_delay_outranked_in_the_same_second_before_its_redelivery_is_still_bridged_once(consumer, bridged, rmq, lambda_context, monkeypatch, capsys):
    delayed = new_shipment_update(status="delayed", occurred_at=at(3))
    delivered = dict(delayed, status="delivered")
    event = rmq.event({QUEUE: [rmq.shipment_message(delayed), rmq.shipment_message(delivered)]})
    fail_put_events(consumer, monkeypatch, [THROTTLED] * 3)

    failing(consumer, event, lambda_context)
    assert stored(delayed["shipment_id"])["status"] == "delivered"
    assert bridged() == []
    capsys.readouterr()

    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "bridged on redelivery": 1, "skipped": 1}
    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "superseded": 1, "skipped": 1}

    assert [e["detail"]["status"] for e in bridged()] == ["delayed"]
    assert stored(delayed["shipment_id"])["status"] == "delivered"
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["ShipmentsBridged"], totals["ShipmentUpdatesSuperseded"]) == (1, 2)


def test_a_failed_entry_that_gets_through_on_a_retry_succeeds(consumer, bridged, rmq, lambda_context, monkeypatch):
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal Service Failure"}])

    assert handle(consumer, rmq.event({QUEUE: [rmq.shipment_message(new_shipment_update(status="delayed"))]}), lambda_context)["recorded and bridged"] == 1

    assert len(consumer.calls) == 2 and len(consumer.pauses) == 1
    assert len(bridged()) == 1


def test_a_non_retryable_entry_error_fails_at_once(consumer, rmq, lambda_context, monkeypatch):
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "not allowed"}])

    error = failing(consumer, rmq.event({QUEUE: [rmq.shipment_message(new_shipment_update(status="delayed"))]}), lambda_context)

    assert len(consumer.calls) == 1 and consumer.pauses == []
    assert "after 1 attempt(s): NotAuthorizedForSourceException: not allowed" in error.failures[0].reason


def test_the_delays_of_a_batch_go_on_the_bus_ten_per_call(consumer, bridged, rmq, lambda_context, capsys):
    delays = [new_shipment_update(status="delayed", occurred_at=at(i)) for i in range(23)]
    others = [new_shipment_update(status="shipped") for _ in range(7)]
    event = rmq.event({QUEUE: [rmq.shipment_message(update) for update in delays[:12] + others + delays[12:]]})

    assert handle(consumer, event, lambda_context) == {"messages": 30, "recorded and bridged": 23, "recorded": 7}

    assert [len(call) for call in consumer.calls] == [10, 10, 3]
    assert sorted(e["detail"]["shipment_id"] for e in bridged()) == sorted(update["shipment_id"] for update in delays)
    assert all("unbridged_delays" not in stored(update["shipment_id"]) for update in delays)
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["ShipmentsRecorded"], totals["ShipmentsBridged"], totals["FailedMessages"]) == (30, 23, 0)


def test_an_entry_put_events_refuses_in_a_full_call_fails_only_its_message(consumer, bridged, rmq, lambda_context, monkeypatch):
    delays = [new_shipment_update(status="delayed", occurred_at=at(i)) for i in range(10)]
    unlucky = delays[6]["shipment_id"]
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "MalformedDetail", "ErrorMessage": "no"}], only=lambda entry: unlucky in entry["Detail"])
    event = rmq.event({QUEUE: [rmq.shipment_message(update) for update in delays]})

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [RabbitMQEvents.message_ids(event)[6]]
    assert error.failures[0].reason == "BridgeFailed: PutEvents did not take the ShipmentDelayed event after 1 attempt(s): MalformedDetail: no"
    assert [len(call) for call in consumer.calls] == [10] and consumer.pauses == []
    assert len(bridged()) == 9 and stored(unlucky)["unbridged_delays"] == [canonical(6)]
    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 10, "skipped": 9, "bridged on redelivery": 1}
    assert [e["detail"]["shipment_id"] for e in bridged()] == [unlucky]


def test_a_dynamodb_error_fails_only_its_message_and_the_redelivery_records_it(consumer, rmq, lambda_context, monkeypatch):
    unlucky, lucky = new_shipment_update(), new_shipment_update()
    real_update_item = consumer.shipment_table.dynamodb.update_item

    def update_item(**params):
        if params["Key"]["shipment_id"]["S"] == unlucky["shipment_id"]:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem")
        return real_update_item(**params)

    monkeypatch.setattr(consumer.shipment_table.dynamodb, "update_item", update_item)
    event = rmq.event({QUEUE: [rmq.shipment_message(unlucky), rmq.shipment_message(lucky)]})

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [event["rmqMessagesByQueue"][QUEUE][0]["basicProperties"]["messageId"]]
    assert "ClientError" in error.failures[0].reason and "ProvisionedThroughputExceededException" in error.failures[0].reason
    assert stored(unlucky["shipment_id"]) is None and stored(lucky["shipment_id"]) is not None
    monkeypatch.setattr(consumer.shipment_table.dynamodb, "update_item", real_update_item)
    assert handle(consumer, rmq.redelivery(event), lambda_context) == {"messages": 2, "recorded": 1, "skipped": 1}


def test_the_message_data_is_the_base64_of_the_body(rmq):
    update = new_shipment_update()
    message = rmq.shipment_message(update)
    assert json.loads(base64.b64decode(message["data"])) == update
    assert message["basicProperties"]["bodySize"] == len(base64.b64decode(message["data"]))
    assert message["basicProperties"]["headers"]["event"] == {"bytes": list(b"picked")}
