"""CaseAirbnb's handlers against moto: the booking commands (event store + outbox), payments (one charge per key
whatever is retried), the saga starter (one execution per booking and purpose) and the ledger (projection and rebuild)."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from messaging_runtime.event_sourcing import plain, stored

STORE, OUTBOX, REQUESTS, LEDGER, REBUILT = "airbnb-store", "airbnb-outbox", "airbnb-requests", "airbnb-ledger", "airbnb-rebuilt"
deserializer = TypeDeserializer()


def _table(name: str, *keys: tuple[str, str, str], stream: bool = False) -> str | None:
    options = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}} if stream else {}
    answer = boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
        BillingMode="PAY_PER_REQUEST",
        **options,
    )
    return answer["TableDescription"].get("LatestStreamArn")


@pytest.fixture(scope="module")
def tables(moto_module):
    store_stream = _table(STORE, ("aggregate_id", "S", "HASH"), ("version", "N", "RANGE"), stream=True)
    _table(OUTBOX, ("aggregate_id", "S", "HASH"), stream=True)
    _table(REQUESTS, ("pk", "S", "HASH"))
    _table(LEDGER, ("booking_id", "S", "HASH"))
    _table(REBUILT, ("booking_id", "S", "HASH"))
    for name, value in {
        "EVENT_STORE_TABLE": STORE,
        "OUTBOX_TABLE_NAME": OUTBOX,
        "REQUESTS_TABLE_NAME": REQUESTS,
        "READ_MODEL_TABLE": LEDGER,
        "REBUILD_TABLE": REBUILT,
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:payment-saga",
    }.items():
        moto_module.setenv(name, value)
    return store_stream


@pytest.fixture(scope="module")
def bookings(tables, load_function_module):
    return load_function_module("case_airbnb_bookings")


@pytest.fixture(scope="module")
def payments(tables, load_function_module):
    module = load_function_module("case_airbnb_payments")
    module.clock = lambda: 1_800_000_000.0
    return module


def request(booking_id, amount=36_000, key=None):
    return {
        "command": "request",
        "booking_id": booking_id,
        "command_id": key or f"k-{booking_id}",
        "guest_id": "g-1",
        "listing_id": "l-1",
        "nights": 3,
        "amount_minor": amount,
        "currency": "EUR",
    }


def history(booking_id):
    items = boto3.client("dynamodb").query(
        TableName=STORE, KeyConditionExpression="aggregate_id = :id", ExpressionAttributeValues={":id": {"S": booking_id}}, ConsistentRead=True
    )["Items"]
    return [plain(item) for item in items]


def slot(booking_id):
    item = boto3.client("dynamodb").get_item(TableName=OUTBOX, Key={"aggregate_id": {"S": booking_id}}, ConsistentRead=True)["Item"]
    return plain(item)


# --- booking commands ------------------------------------------------------------------------------------------


def test_a_request_appends_its_event_in_schema_version_2_with_its_outbox_event_and_a_marker(bookings, lambda_context):
    answer = bookings.lambda_handler(request("b-req"), lambda_context)
    assert answer == {"ok": True, "booking_id": "b-req", "version": 1, "status": "REQUESTED", "guest_id": "g-1", "amount_minor": 36000} | {
        "currency": "EUR",
        "charged_minor": 0,
        "refunded_minor": 0,
    }
    event, marker = (
        [i for i in history("b-req") if i["kind"] == "event"],
        boto3.client("dynamodb").get_item(TableName=STORE, Key=stored({"aggregate_id": "command#b-req#k-b-req", "version": 0})),
    )
    assert event[0]["type"] == "BookingRequested" and event[0]["schema_version"] == 2
    assert event[0]["data"]["price"] == {"amount_minor": 36000, "currency": "EUR"} and event[0]["charged_minor"] == 0
    assert "Item" in marker
    outbox = slot("b-req")
    assert outbox["seq"] == 1 and outbox["detail_type"] == "BookingChanged" and outbox["source"] == "blueprints.stays"
    assert json.loads(outbox["detail"])["type"] == "BookingRequested" and json.loads(outbox["detail"])["amount_minor"] == 36000


def test_a_command_sent_again_with_its_key_answers_the_same_and_writes_nothing(bookings, lambda_context):
    first = bookings.lambda_handler(request("b-twice"), lambda_context)
    again = bookings.lambda_handler(request("b-twice"), lambda_context)
    assert first == again and len(history("b-twice")) == 1
    other_key = bookings.lambda_handler(request("b-twice", key="another"), lambda_context)
    assert other_key["ok"] is False and other_key["error"] == "BookingExists"


def test_a_cancel_publishes_the_status_it_cancelled_from_and_a_confirm_after_it_is_refused_for_the_saga(bookings, lambda_context):
    bookings.lambda_handler(request("b-cancel"), lambda_context)
    cancelled = bookings.lambda_handler({"command": "cancel", "booking_id": "b-cancel", "command_id": "c-1"}, lambda_context)
    assert cancelled["status"] == "CANCELLED" and cancelled["version"] == 2
    detail = json.loads(slot("b-cancel")["detail"])
    assert (detail["seq"], detail["type"], detail["previous_status"]) == (2, "BookingCancelled", "REQUESTED")
    with pytest.raises(Exception) as refused:
        bookings.lambda_handler({"command": "confirm", "booking_id": "b-cancel", "charge": {"charge_id": "ch_1", "charged_minor": 36000}}, lambda_context)
    assert type(refused.value).__name__ == "BookingNotConfirmable"
    # The failure path on a cancelled booking changes nothing; the refund is recorded.
    assert bookings.lambda_handler({"command": "fail", "booking_id": "b-cancel", "error": {"Error": "BookingNotConfirmable"}}, lambda_context)["version"] == 2
    refund = {"refund_id": "re_1", "charged_minor": 36000, "refunded_minor": 36000}
    recorded = bookings.lambda_handler({"command": "record_refund", "booking_id": "b-cancel", "refund": refund}, lambda_context)
    assert (recorded["version"], recorded["charged_minor"], recorded["refunded_minor"]) == (3, 36000, 36000)


def test_the_failure_path_on_a_confirmed_booking_says_the_saga_is_done(bookings, lambda_context):
    bookings.lambda_handler(request("b-done"), lambda_context)
    confirm = {"command": "confirm", "booking_id": "b-done", "charge": {"charge_id": "ch_2", "charged_minor": 36000}}
    assert bookings.lambda_handler(confirm, lambda_context)["status"] == "CONFIRMED"
    assert bookings.lambda_handler(confirm, lambda_context)["version"] == 2  # the saga's retry: the marker's answer
    with pytest.raises(Exception) as done:
        bookings.lambda_handler({"command": "fail", "booking_id": "b-done", "error": {"Error": "Lambda.Unknown"}}, lambda_context)
    assert type(done.value).__name__ == "SagaAlreadyCompleted"


def test_a_charge_that_does_not_pay_the_price_confirms_nothing(bookings, lambda_context):
    bookings.lambda_handler(request("b-short"), lambda_context)
    with pytest.raises(Exception) as refused:
        bookings.lambda_handler({"command": "confirm", "booking_id": "b-short", "charge": {"charge_id": "ch", "charged_minor": 1}}, lambda_context)
    assert type(refused.value).__name__ == "BookingNotConfirmable" and len(history("b-short")) == 1


def test_bad_commands_are_answered_for_clients_and_raised_for_the_saga(bookings, lambda_context):
    answer = bookings.lambda_handler({"command": "request", "booking_id": "nope"}, lambda_context)
    assert answer["ok"] is False and answer["error"] == "InvalidCommand" and "booking_id" in answer["message"]
    assert bookings.lambda_handler({"command": "cancel", "booking_id": "b-none", "command_id": "x"}, lambda_context)["error"] == "BookingNotFound"
    with pytest.raises(Exception) as bug:
        bookings.lambda_handler({"command": "confirm", "booking_id": "b-none", "charge": {"charge_id": "c", "charged_minor": 1}}, lambda_context)
    assert type(bug.value).__name__ == "InvalidCommand"


# --- payments -----------------------------------------------------------------------------------------------------


def saga_input(action, booking_id, amount=36_000):
    return {"action": action, "booking": {"booking_id": booking_id, "guest_id": "g-1", "amount_minor": amount, "currency": "EUR"}}


def test_a_charge_repeated_is_answered_from_its_record_without_calling_the_provider(payments, lambda_context):
    first = payments.lambda_handler(saga_input("charge", "b-p1"), lambda_context)
    payments.provider.charges.clear()  # a second call to the provider would charge again now
    assert payments.lambda_handler(saga_input("charge", "b-p1"), lambda_context) == first
    assert payments.provider.charges == {} and first["charged_minor"] == 36000


def test_a_timeout_after_the_provider_charged_is_retried_with_the_same_key_and_charges_once(payments, lambda_context, monkeypatch):
    real = payments.provider.charge

    def charged_then_lost(key, amount, currency):
        real(key, amount, currency)
        raise payments.ProviderTimeout("no answer")

    monkeypatch.setattr(payments.provider, "charge", charged_then_lost)
    with pytest.raises(payments.ProviderTimeout):
        payments.lambda_handler(saga_input("charge", "b-p2"), lambda_context)
    monkeypatch.setattr(payments.provider, "charge", real)
    answer = payments.lambda_handler(saga_input("charge", "b-p2"), lambda_context)
    assert answer["charge_id"] == payments.provider.charges["charge:b-p2"].charge_id
    assert [key for key in payments.provider.charges if key == "charge:b-p2"] == ["charge:b-p2"]


def test_a_decline_is_final_and_recorded(payments, lambda_context):
    with pytest.raises(payments.PaymentDeclined):
        payments.lambda_handler(saga_input("charge", "b-p3", amount=5_000_000), lambda_context)
    payments.provider.decline_above_minor = 10**12  # the record answers, not the provider
    try:
        with pytest.raises(payments.PaymentDeclined, match="over the limit"):
            payments.lambda_handler(saga_input("charge", "b-p3", amount=5_000_000), lambda_context)
    finally:
        payments.provider.decline_above_minor = 1_000_000


def test_a_request_whose_lease_is_held_is_retryable_and_taken_over_once_the_lease_ran_out(payments, lambda_context):
    table = boto3.resource("dynamodb").Table(REQUESTS)
    table.put_item(Item={"pk": "charge:b-p4", "status": "STARTED", "request": {"amount_minor": 36000, "currency": "EUR"}, "lease_until": 1_800_000_030})
    with pytest.raises(payments.PaymentInProgress):
        payments.lambda_handler(saga_input("charge", "b-p4"), lambda_context)
    payments.clock = lambda: 1_800_000_031.0
    try:
        assert payments.lambda_handler(saga_input("charge", "b-p4"), lambda_context)["charged_minor"] == 36000
    finally:
        payments.clock = lambda: 1_800_000_000.0
    assert table.get_item(Key={"pk": "charge:b-p4"}, ConsistentRead=True)["Item"]["status"] == "SUCCEEDED"


def test_a_key_used_for_another_request_is_refused(payments, lambda_context):
    payments.lambda_handler(saga_input("charge", "b-p5"), lambda_context)
    with pytest.raises(payments.IdempotencyKeyReused):
        payments.lambda_handler(saga_input("charge", "b-p5", amount=1), lambda_context)


def test_a_refund_gives_back_the_charge_once_and_a_refund_before_any_charge_cancels_the_key(payments, lambda_context):
    charge = payments.lambda_handler(saga_input("charge", "b-p6"), lambda_context)
    refund = payments.lambda_handler(saga_input("refund", "b-p6"), lambda_context)
    assert refund["refunded_minor"] == refund["charged_minor"] == charge["charged_minor"] and refund["refund_id"]
    assert payments.lambda_handler(saga_input("refund", "b-p6"), lambda_context) == refund
    nothing = payments.lambda_handler(saga_input("refund", "b-p7"), lambda_context)
    assert nothing == {"refund_id": None, "charged_minor": 0, "refunded_minor": 0}
    with pytest.raises(payments.PaymentDeclined, match="cancelled"):  # a charge still in flight arrives after the refund
        payments.lambda_handler(saga_input("charge", "b-p7"), lambda_context)


def test_input_the_saga_never_sends_is_refused_by_name(payments, lambda_context):
    for event in ({"action": "steal"}, {"action": "charge", "booking": {"booking_id": "b-1"}}):
        with pytest.raises(Exception) as refused:
            payments.lambda_handler(event, lambda_context)
        assert type(refused.value).__name__ == "InvalidSagaInput"


# --- saga starter -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starter(tables, moto_module, load_function_module):
    client = boto3.client("stepfunctions")
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    arn = client.create_state_machine(name="payment-saga", definition=definition, roleArn="arn:aws:iam::123456789012:role/saga")["stateMachineArn"]
    moto_module.setenv("STATE_MACHINE_ARN", arn)
    return load_function_module("case_airbnb_saga_starter"), arn


def change(booking_id, type_="BookingRequested", previous=None, seq=1, status="REQUESTED"):
    detail = {"version": 1, "booking_id": booking_id, "seq": seq, "type": type_, "status": status, "guest_id": "g-1", "amount_minor": 36000}
    detail |= {"currency": "EUR", "charged_minor": 0, "refunded_minor": 0, "occurred_at": "2026-03-01T10:00:00.000+00:00"}
    return detail | ({"previous_status": previous} if previous else {})


def test_the_starter_runs_one_charge_saga_per_request_and_one_refund_saga_per_cancelled_confirmation(starter, sqs_events, eventbridge_event, lambda_context):
    module, arn = starter
    events = [
        change("b-s1"),
        change("b-s1"),
        change("b-s2", "BookingCancelled", "CONFIRMED", 3, "CANCELLED"),
        change("b-s3", "BookingConfirmed", "REQUESTED", 2),
    ]
    records = [sqs_events.record(json.dumps(eventbridge_event("blueprints.stays", "BookingChanged", detail)), queue="saga-starts") for detail in events]
    answer = module.lambda_handler({"Records": records}, lambda_context)
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[3]["messageId"]}]}  # no saga is for a confirmation
    executions = {e["name"]: e for e in boto3.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]}
    assert set(executions) == {"b-s1", "b-s2-refund"}
    refund_input = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=executions["b-s2-refund"]["executionArn"])["input"])
    assert refund_input["compensate"]["Error"] == "BookingCancelled" and refund_input["booking"]["amount_minor"] == 36000


# --- ledger -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(tables, load_function_module):
    return load_function_module("case_airbnb_ledger"), load_function_module("case_airbnb_ledger", "ledger_rebuild")


def v1_request(booking_id):
    """A BookingRequested item as the release before schema version 2 wrote it: the total as a decimal number."""
    data = {"listing_id": "l-9", "guest_id": "g-9", "nights": 2, "total": 199.99, "currency": "EUR"}
    state = {"status": "REQUESTED", "guest_id": "g-9", "amount_minor": 19999, "currency": "EUR", "charged_minor": 0, "refunded_minor": 0}
    item = {"aggregate_id": booking_id, "version": 1, "kind": "event", "type": "BookingRequested", "schema_version": 1, "data": data}
    return json.loads(json.dumps(item | state | {"occurred_at": "2025-12-01T08:00:00.000+00:00", "command_id": "old"}), parse_float=Decimal)


def test_the_ledger_keeps_the_newest_state_whatever_the_order_and_the_rebuild_reads_old_schema_versions(
    ledger, bookings, stream_records, lambda_context, tables
):
    projection, rebuild = ledger
    bookings.lambda_handler(request("b-l1"), lambda_context)
    bookings.lambda_handler({"command": "confirm", "booking_id": "b-l1", "charge": {"charge_id": "ch_9", "charged_minor": 36000}}, lambda_context)
    boto3.resource("dynamodb").Table(STORE).put_item(Item=v1_request("b-l0"))
    records = [r for r in stream_records.read_stream(tables) if r["dynamodb"]["NewImage"]["kind"]["S"] == "event"]
    ours = [r for r in records if r["dynamodb"]["Keys"]["aggregate_id"]["S"] in ("b-l0", "b-l1")]
    answer = projection.lambda_handler({"Records": list(reversed(ours)) * 2}, lambda_context)  # newest first, twice
    assert answer == {"batchItemFailures": []}
    row = {k: deserializer.deserialize(v) for k, v in boto3.client("dynamodb").get_item(TableName=LEDGER, Key={"booking_id": {"S": "b-l1"}})["Item"].items()}
    assert (row["status"], row["charged_minor"], row["balance_minor"], row["last_version"]) == ("CONFIRMED", 36000, 36000, 2)
    result = rebuild.lambda_handler({}, lambda_context)
    assert result["complete"] and result["rejected"] == 0
    rebuilt = boto3.client("dynamodb").get_item(TableName=REBUILT, Key={"booking_id": {"S": "b-l0"}})["Item"]
    assert rebuilt["amount_minor"] == {"N": "19999"} and rebuilt["status"] == {"S": "REQUESTED"}
    live = boto3.client("dynamodb").get_item(TableName=LEDGER, Key={"booking_id": {"S": "b-l1"}})["Item"]
    assert boto3.client("dynamodb").get_item(TableName=REBUILT, Key={"booking_id": {"S": "b-l1"}})["Item"] == live


def test_a_record_that_is_not_a_booking_event_fails_alone(ledger, stream_records, lambda_context):
    projection, _ = ledger
    bad = stream_records.record(
        "INSERT", keys={"aggregate_id": {"S": "b-x"}, "version": {"N": "1"}}, new_image={"aggregate_id": {"S": "b-x"}, "kind": {"S": "event"}}
    )
    assert projection.lambda_handler({"Records": [bad]}, lambda_context) == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}


def test_the_rebuild_refuses_to_write_into_the_event_store(ledger, lambda_context):
    _, rebuild = ledger
    with pytest.raises(ValueError, match="cannot be the event store"):
        rebuild.lambda_handler({"target_table": STORE}, lambda_context)
