"""The accounts projection: stream records to the read model, newest version wins; anything else a failed item."""

import json
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EVENT_STORE = "accounts-event-store"
READ_MODEL = "accounts-read-model"
serializer = TypeSerializer()
deserializer = TypeDeserializer()


@pytest.fixture(scope="module")
def world(moto_module, account_tables):
    """The tables, and the stream ARN of the event store."""
    stream_arn = account_tables.create_event_store(EVENT_STORE)
    account_tables.create_read_model(READ_MODEL)
    moto_module.setenv("EVENT_STORE_TABLE", EVENT_STORE)
    moto_module.setenv("READ_MODEL_TABLE", READ_MODEL)
    return stream_arn


@pytest.fixture(scope="module")
def loaded(world, load_function_module):
    return load_function_module("account_projection")


@pytest.fixture(scope="module")
def commands(world, load_function_module):
    """The command handler, to put real events on the stream."""
    return load_function_module("account_commands")


@pytest.fixture
def projection(loaded, account_tables):
    account_tables.recreate(READ_MODEL, account_tables.create_read_model)
    return loaded


def read_model(account_id):
    item = boto3.client("dynamodb").get_item(TableName=READ_MODEL, Key={"account_id": {"S": account_id}}, ConsistentRead=True).get("Item")
    return None if item is None else {name: deserializer.deserialize(value) for name, value in item.items()}


def failures(*records):
    return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in records]}


def image(account_id="acc-1", version=1, type_="AccountOpened", balance=0, status="open", owner="Ada", data=None, **extra):
    """An event item as the command handler writes it, in DynamoDB JSON."""
    item = {
        "aggregate_id": account_id,
        "version": version,
        "kind": "event",
        "type": type_,
        "data": data if data is not None else ({"owner": owner} if type_ == "AccountOpened" else {"amount": Decimal("1")}),
        "balance": Decimal(str(balance)),
        "status": status,
        "owner": owner,
        "occurred_at": f"2025-03-14T09:{version % 60:02d}:00.000+00:00",
        "command_id": f"cmd-{version}",
    }
    item.update(extra)
    return {name: serializer.serialize(value) for name, value in item.items() if value is not None}


def keys_of(new_image):
    return {"aggregate_id": new_image.get("aggregate_id", {"S": "acc-1"}), "version": new_image.get("version", {"N": "1"})}


@pytest.fixture
def insert(stream_records):
    def build(new_image, event_name="INSERT"):
        return stream_records.record(event_name, keys=keys_of(new_image), new_image=new_image)

    return build


def handle(module, records, context):
    return module.lambda_handler({"Records": records}, context)


# --- real records from the event store's stream ------------------------------------------


def test_appended_events_reach_the_read_model(projection, commands, world, stream_records, lambda_context):
    commands.lambda_handler({"command": "open", "account_id": "acc-real", "owner": "Ada Lovelace"}, lambda_context)
    commands.lambda_handler({"command": "deposit", "account_id": "acc-real", "amount": 100}, lambda_context)
    commands.lambda_handler({"command": "withdraw", "account_id": "acc-real", "amount": 30.5}, lambda_context)
    records = [r for r in stream_records.read_stream(world) if r["dynamodb"]["Keys"]["aggregate_id"]["S"] == "acc-real"]
    assert [r["eventName"] for r in records] == ["INSERT"] * 3
    assert records[0]["eventSourceARN"] == world

    assert handle(projection, records, lambda_context) == failures()

    last = {name: deserializer.deserialize(value) for name, value in records[-1]["dynamodb"]["NewImage"].items()}
    assert read_model("acc-real") == {
        "account_id": "acc-real",
        "balance": Decimal("69.5"),
        "status": "open",
        "owner": "Ada Lovelace",
        "last_version": 3,
        "last_event_type": "MoneyWithdrawn",
        "updated_at": last["occurred_at"],
    }


def test_a_snapshot_on_the_stream_is_a_failed_item_and_the_events_around_it_are_applied(
    projection, commands, world, stream_records, lambda_context, log_records
):
    logs = log_records(projection)
    commands.lambda_handler({"command": "open", "account_id": "acc-snap", "owner": "Ada"}, lambda_context)
    for _ in range(5):
        commands.lambda_handler({"command": "deposit", "account_id": "acc-snap", "amount": 1}, lambda_context)
    records = [r for r in stream_records.read_stream(world) if r["dynamodb"]["Keys"]["aggregate_id"]["S"].startswith("acc-snap")]
    [snapshot] = [r for r in records if r["dynamodb"]["Keys"]["aggregate_id"]["S"] == "acc-snap#snapshot"]

    assert handle(projection, records, lambda_context) == failures(snapshot)

    assert read_model("acc-snap")["last_version"] == 6
    assert read_model("acc-snap#snapshot") is None
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.sequence_number == snapshot["dynamodb"]["SequenceNumber"]
    # A snapshot has no event type, which the contract (ACCOUNT_EVENTS) reads first.
    assert rejected.reason == "type: Field required"


# --- newest version wins ----------------------------------------------------------------


def test_a_duplicate_changes_nothing_and_is_counted(projection, insert, lambda_context, capsys):
    record = insert(image(version=1))
    assert handle(projection, [record], lambda_context) == failures()
    before = read_model("acc-1")
    capsys.readouterr()

    assert handle(projection, [record, dict(record)], lambda_context) == failures()

    assert read_model("acc-1") == before
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # Counted once per batch, not once per record.
    assert [blob["SkippedStaleEvents"] for blob in metrics if "SkippedStaleEvents" in blob] == [[2.0]]


def test_an_older_event_after_a_newer_one_leaves_the_newer_state(projection, insert, lambda_context):
    v3 = insert(image(version=3, type_="MoneyWithdrawn", balance=70, data={"amount": Decimal("30")}))
    v2 = insert(image(version=2, type_="MoneyDeposited", balance=100, data={"amount": Decimal("100")}))

    assert handle(projection, [v3, v2], lambda_context) == failures()

    model = read_model("acc-1")
    assert (model["last_version"], model["balance"], model["last_event_type"]) == (3, 70, "MoneyWithdrawn")


def test_the_owner_is_known_even_when_the_opening_event_comes_last(projection, insert, lambda_context):
    records = [
        insert(image(version=2, type_="MoneyDeposited", balance=5, owner="Grace Hopper")),
        insert(image(version=1, owner="Grace Hopper")),
    ]

    assert handle(projection, records, lambda_context) == failures()

    assert read_model("acc-1")["owner"] == "Grace Hopper"


def test_an_event_without_an_owner_keeps_the_one_the_read_model_has(projection, insert, lambda_context):
    handle(projection, [insert(image(version=1, owner="Ada"))], lambda_context)

    assert handle(projection, [insert(image(version=2, type_="MoneyDeposited", balance=1, owner=None))], lambda_context) == failures()

    model = read_model("acc-1")
    assert (model["owner"], model["last_version"]) == ("Ada", 2)


def test_a_closing_event_closes_the_account_in_the_read_model(projection, insert, lambda_context):
    handle(projection, [insert(image(version=1))], lambda_context)

    handle(projection, [insert(image(version=2, type_="AccountClosed", status="closed", data={}))], lambda_context)

    assert read_model("acc-1")["status"] == "closed"


# --- binary attributes: base64 text on the stream ------------------------------------------


def test_an_event_with_binary_attributes_read_from_the_stream_is_projected(projection, world, stream_records, lambda_context, log_records):
    logs = log_records(projection)
    item = {
        **image(account_id="acc-binary", version=1),
        "signature": {"B": b"hello"},
        "thumbprints": {"BS": [b"hello", b"world"]},
        "data": {"M": {"owner": {"S": "Ada"}, "scan": {"B": b"\x00\xffpdf"}, "pages": {"L": [{"B": b"page 1"}, {"M": {"raw": {"B": b"p2"}}}]}}},
    }
    boto3.client("dynamodb").put_item(TableName=EVENT_STORE, Item=item)
    [record] = [r for r in stream_records.read_stream(world) if r["dynamodb"]["Keys"]["aggregate_id"]["S"] == "acc-binary"]
    new_image = record["dynamodb"]["NewImage"]
    # As Lambda passes them: base64 text, in a map and a list too.
    assert new_image["signature"] == {"B": "aGVsbG8="}
    assert new_image["thumbprints"] == {"BS": ["aGVsbG8=", "d29ybGQ="]} or new_image["thumbprints"] == {"BS": ["d29ybGQ=", "aGVsbG8="]}
    assert new_image["data"]["M"]["scan"] == {"B": "AP9wZGY="}

    assert handle(projection, [record], lambda_context) == failures()

    assert read_model("acc-binary")["last_version"] == 1 and read_model("acc-binary")["owner"] == "Ada"
    assert not [r for r in logs if r.getMessage() == "Rejected record"]


def test_a_binary_attribute_that_is_not_base64_is_a_failed_item_with_its_reason(projection, insert, lambda_context, log_records):
    logs = log_records(projection)
    bad = insert(with_value("signature", {"M": {"scan": {"B": "not base64!"}}}))

    assert handle(projection, [bad], lambda_context) == failures(bad)

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.reason.startswith("NewImage is not DynamoDB JSON: signature.scan: B is not base64")


# --- input no stream sends: too deep, not a record, no sequence number ----------------------------


def deeply_nested(depth):
    value = {"S": "bottom"}
    for _ in range(depth):
        value = {"L": [value]}
    return value


@pytest.mark.parametrize("depth", [33, 1000])
def test_an_image_nested_deeper_than_dynamodb_allows_is_a_failed_item_with_its_reason(projection, insert, lambda_context, log_records, capsys, depth):
    logs = log_records(projection)
    good = insert(image(account_id="acc-good-deep", version=1))
    bad = insert(image(version=7))
    bad["dynamodb"]["NewImage"]["data"] = {"M": {"tree": deeply_nested(depth)}}
    capsys.readouterr()

    assert handle(projection, [bad, good], lambda_context) == failures(bad)

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.reason.startswith("NewImage is not DynamoDB JSON: data.tree") and "nested deeper than the 32 levels DynamoDB allows" in rejected.reason
    assert read_model("acc-good-deep")["last_version"] == 1
    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line and "FailedRecords" in line]
    assert (blob["RejectedRecords"], blob["FailedRecords"]) == ([1.0], [1.0])


def test_an_image_at_dynamodbs_deepest_nesting_is_projected(projection, insert, lambda_context):
    record = insert(image(account_id="acc-deep-ok", version=1, data={"owner": "Ada"}))
    record["dynamodb"]["NewImage"]["data"]["M"]["tree"] = deeply_nested(31)  # data is level 1, so 32 in all

    assert handle(projection, [record], lambda_context) == failures()


def test_any_exception_while_reading_a_record_is_that_records_failure(projection, insert, lambda_context, log_records, monkeypatch):
    logs = log_records(projection)
    contract = projection.read_model.ACCOUNT_EVENTS

    class Odd:
        """The contract, but raising something other than a validation error for one account."""

        @staticmethod
        def model_validate(item):
            if item["aggregate_id"] == "acc-odd":
                raise TypeError("unhashable type: 'dict'")
            return contract.model_validate(item)

    monkeypatch.setattr(projection.read_model, "ACCOUNT_EVENTS", Odd)
    bad, good = insert(image(account_id="acc-odd", version=1)), insert(image(account_id="acc-fine", version=1))

    assert handle(projection, [bad, good], lambda_context) == failures(bad)

    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert rejected.reason == "the item cannot be read: TypeError: unhashable type: 'dict'"
    assert read_model("acc-odd") is None and read_model("acc-fine")["last_version"] == 1


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("text", r"^not a DynamoDB stream event: Records\[1\] is str, expected a record object$"),
        ("no dynamodb", r"^not a DynamoDB stream event: Records\[1\] has no dynamodb.SequenceNumber, "),
        ("no sequence number", r"^not a DynamoDB stream event: Records\[1\] has no dynamodb.SequenceNumber, "),
        ("no records", r'^not a DynamoDB stream event: expected "Records", a list of records$'),
    ],
)
def test_fails_when_a_record_cannot_be_named_in_the_response(projection, insert, lambda_context, shape, expected):
    good = insert(image(account_id="acc-shape", version=1))
    odd = insert(image(account_id="acc-shape", version=2))
    if shape == "text":
        odd = "INSERT acc-shape 2"
    elif shape == "no dynamodb":
        del odd["dynamodb"]
    else:
        del odd["dynamodb"]["SequenceNumber"]
    event = {"Records": {"0": good}} if shape == "no records" else {"Records": [good, odd]}

    # Lambda names a failed stream record by its sequence number: without one it can be neither reported nor retried alone.
    with pytest.raises(ValueError, match=expected):
        projection.lambda_handler(event, lambda_context)


# --- records that are not appended events ---------------------------------------------


def without(name):
    new_image = image(version=7)
    del new_image[name]
    return new_image


def with_value(name, value):
    new_image = image(version=7)
    new_image[name] = value
    return new_image


@pytest.mark.parametrize(
    ("event_name", "new_image", "reason"),
    [
        ("MODIFY", image(version=7), "eventName is 'MODIFY': only INSERT records are read"),
        ("REMOVE", None, "eventName is 'REMOVE'"),
        ("INSERT", None, "no NewImage: the stream must carry new images"),
        ("INSERT", {}, "no NewImage"),
        ("INSERT", image(version=7, kind="snapshot"), "kind: Input should be 'event'"),
        ("INSERT", without("aggregate_id"), "aggregate_id: Field required"),
        ("INSERT", without("version"), "version: Field required"),
        ("INSERT", without("kind"), "kind: Field required"),
        ("INSERT", without("type"), "type: Field required"),
        ("INSERT", without("data"), "data: Field required"),
        ("INSERT", without("balance"), "balance: Field required"),
        ("INSERT", without("status"), "status: Field required"),
        ("INSERT", without("occurred_at"), "occurred_at: Field required"),
        ("INSERT", without("command_id"), "command_id: Field required"),
        ("INSERT", with_value("aggregate_id", {"S": "acc-1#snapshot"}), "aggregate_id: String should match pattern"),
        ("INSERT", with_value("version", {"S": "7"}), "version: Input should be a valid integer"),
        ("INSERT", with_value("version", {"N": "7.5"}), "version: Input should be a valid integer"),
        ("INSERT", with_value("version", {"N": "0"}), "version: Input should be greater than or equal to 1"),
        ("INSERT", with_value("type", {"S": "MoneyLent"}), "type: Input should be 'AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn' or 'AccountClosed'"),
        ("INSERT", with_value("balance", {"S": "10"}), "balance: Value error, must be a number"),
        ("INSERT", with_value("status", {"S": "frozen"}), "status: Input should be 'open' or 'closed'"),
        ("INSERT", with_value("data", {"S": "{}"}), "data: Input should be a valid dictionary"),
        ("INSERT", with_value("owner", {"N": "1"}), "owner: Input should be a valid string"),
        ("INSERT", with_value("occurred_at", {"S": "yesterday"}), "occurred_at: Value error, must be an ISO 8601 timestamp"),
        ("INSERT", with_value("occurred_at", {"S": "2025-03-14T09:00:00"}), "occurred_at: Value error, must carry a time zone"),
        ("INSERT", with_value("balance", {"N": "not a number"}), "balance: Input should be a finite number"),
        ("INSERT", with_value("balance", {"X": "1"}), "NewImage is not DynamoDB JSON"),
        ("INSERT", with_value("balance", "1"), "NewImage is not DynamoDB JSON"),
        ("INSERT", with_value("aggregate_id", {"S": "acc-1", "N": "1"}), "NewImage is not DynamoDB JSON: aggregate_id: an attribute value is an object"),
        ("INSERT", with_value("data", {"M": {"amount": {"N": "1"}, "note": {}}}), "NewImage is not DynamoDB JSON: data.note: an attribute value"),
        ("INSERT", with_value("data", {"M": {"tags": {"L": [{"S": "a"}, {"Z": "b"}]}}}), "NewImage is not DynamoDB JSON: data.tags[1]: unknown type 'Z'"),
    ],
)
def test_a_record_that_is_not_an_appended_event_is_a_failed_item_with_its_reason(
    projection, stream_records, insert, lambda_context, log_records, event_name, new_image, reason
):
    logs = log_records(projection)
    good_before = insert(image(account_id="acc-good-1", version=1))
    bad = stream_records.record(event_name, keys={"aggregate_id": {"S": "acc-1"}, "version": {"N": "7"}}, new_image=new_image)
    good_after = insert(image(account_id="acc-good-2", version=1))

    assert handle(projection, [good_before, bad, good_after], lambda_context) == failures(bad)

    assert read_model("acc-1") is None
    assert read_model("acc-good-1")["last_version"] == read_model("acc-good-2")["last_version"] == 1
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    assert reason in rejected.reason
    assert (rejected.sequence_number, rejected.keys) == (bad["dynamodb"]["SequenceNumber"], bad["dynamodb"]["Keys"])


# Wrong DynamoDB values for each attribute an event needs.
BAD_ATTRIBUTES = {
    "aggregate_id": [{"S": ""}, {"S": "a#b"}, {"N": "1"}, {"S": "x" * 65}],
    "version": [{"S": "1"}, {"N": "0"}, {"N": "-3"}, {"N": "1.5"}, {"BOOL": True}],
    "kind": [{"S": "snapshot"}, {"S": "Event"}, {"NULL": True}],
    "type": [{"S": "AccountFrozen"}, {"S": ""}, {"N": "1"}],
    "data": [{"S": "x"}, {"L": []}, {"NULL": True}],
    "balance": [{"S": "1"}, {"BOOL": False}, {"NULL": True}, {"M": {}}],
    "status": [{"S": "OPEN"}, {"S": ""}, {"N": "1"}],
    "occurred_at": [{"S": ""}, {"S": "2025-13-01T00:00:00Z"}, {"S": "2025-01-01T00:00:00"}, {"N": "1"}],
    "command_id": [{"N": "1"}, {"NULL": True}, {"L": []}],
    "owner": [{"S": ""}, {"N": "1"}, {"BOOL": True}],
}
OPTIONAL = {"owner"}


@st.composite
def bad_record(draw):
    choice = draw(st.sampled_from(["attribute", "event name", "image shape"]))
    version = draw(st.integers(1, 10_000))
    new_image = image(account_id="acc-fuzz", version=version)
    event_name = "INSERT"
    if choice == "attribute":
        name = draw(st.sampled_from(sorted(BAD_ATTRIBUTES)))
        if name not in OPTIONAL and draw(st.booleans()):
            del new_image[name]
        else:
            new_image[name] = draw(st.sampled_from(BAD_ATTRIBUTES[name]))
    elif choice == "event name":
        event_name = draw(st.sampled_from(["MODIFY", "REMOVE", "insert", ""]))
    else:
        name = draw(st.sampled_from(sorted(new_image)))
        new_image[name] = draw(st.sampled_from([{}, {"S": "a", "N": "1"}, {"Q": "1"}, [], "plain", None, {"N": "abc"}, {"N": ""}]))
    return event_name, new_image


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bad_record(), good_version=st.integers(1, 10_000))
def test_generated_bad_records_fail_alone(loaded, world, stream_records, lambda_context, case, good_version):
    event_name, new_image = case
    bad = stream_records.record(event_name, keys={"aggregate_id": {"S": "acc-fuzz"}, "version": {"N": "1"}}, new_image=new_image)
    good = stream_records.record("INSERT", keys={"aggregate_id": {"S": "acc-good"}, "version": {"N": "1"}}, new_image=image("acc-good", good_version))

    assert handle(loaded, [bad, good], lambda_context) == failures(bad)

    assert read_model("acc-fuzz") is None
    assert read_model("acc-good")["last_version"] >= good_version


# --- infrastructure errors and metrics ---------------------------------------------------


def test_a_failed_update_is_a_failed_item_and_a_later_delivery_applies_it(projection, insert, lambda_context, monkeypatch):
    record = insert(image(version=1))
    real_call = projection.dynamodb._make_api_call

    def denied(operation, params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, operation)

    monkeypatch.setattr(projection.dynamodb, "_make_api_call", denied)
    assert handle(projection, [record], lambda_context) == failures(record)
    assert read_model("acc-1") is None

    monkeypatch.setattr(projection.dynamodb, "_make_api_call", real_call)
    assert handle(projection, [record], lambda_context) == failures()
    assert read_model("acc-1")["last_version"] == 1


def test_every_outcome_has_its_metric(projection, insert, stream_records, lambda_context, capsys):
    first = insert(image(version=1))
    capsys.readouterr()

    handle(projection, [first, first, stream_records.record("REMOVE", keys=keys_of(image()))], lambda_context)

    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line and "FailedRecords" in line]
    assert (blob["EventsProjected"], blob["SkippedStaleEvents"], blob["RejectedRecords"], blob["FailedRecords"]) == ([1.0], [1.0], [1.0], [1.0])
