"""The read model rebuild: the whole event store replayed gives the read model the stream built, in any order."""

import dataclasses
import re

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EVENT_STORE = "accounts-event-store"
READ_MODEL = "accounts-read-model"
REBUILT = "accounts-read-model-rebuilt"
deserializer = TypeDeserializer()


@pytest.fixture(scope="module")
def world(moto_module, account_tables):
    account_tables.create_event_store(EVENT_STORE)
    account_tables.create_read_model(READ_MODEL)
    account_tables.create_read_model(REBUILT)
    moto_module.setenv("EVENT_STORE_TABLE", EVENT_STORE)
    moto_module.setenv("READ_MODEL_TABLE", READ_MODEL)
    moto_module.setenv("REBUILD_TABLE", REBUILT)
    moto_module.setenv("SNAPSHOT_EVERY", "3")


@pytest.fixture(scope="module")
def modules(world, load_function_module):
    """The three entry points: commands, the stream consumer and the rebuild."""
    return (
        load_function_module("account_commands"),
        load_function_module("account_projection"),
        load_function_module("account_projection", "rebuild"),
    )


@pytest.fixture(scope="module")
def long_context(lambda_context):
    """A context with the time a rebuild is given: 15 minutes."""
    return dataclasses.replace(lambda_context, timeout_ms=900_000)


def empty_tables(account_tables):
    """Fresh tables; returns the event store's new stream ARN."""
    account_tables.recreate(READ_MODEL, account_tables.create_read_model)
    account_tables.recreate(REBUILT, account_tables.create_read_model)
    return account_tables.recreate(EVENT_STORE, account_tables.create_event_store)


@pytest.fixture
def stream_arn(world, account_tables):
    return empty_tables(account_tables)


def table_items(name):
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=name, ConsistentRead=True)
    items = [{key: deserializer.deserialize(value) for key, value in item.items()} for page in pages for item in page["Items"]]
    return sorted(items, key=lambda item: item["account_id"])


def run_commands(commands, context, history):
    for command in history:
        commands.lambda_handler(command, context)


def what_the_mapping_delivers(records):
    """The event source mapping's filter: INSERTs of event items only."""
    return [r for r in records if r["eventName"] == "INSERT" and r["dynamodb"]["NewImage"].get("kind") == {"S": "event"}]


# --- the property -------------------------------------------------------------------

ACCOUNTS = ("acc-a", "acc-b", "acc-c")
amounts = st.decimals(min_value=1, max_value=100, places=2).map(float)
command_strategy = st.one_of(
    st.builds(lambda account: {"command": "open", "account_id": account, "owner": f"Owner {account}"}, st.sampled_from(ACCOUNTS)),
    st.builds(lambda account, amount: {"command": "deposit", "account_id": account, "amount": amount}, st.sampled_from(ACCOUNTS), amounts),
    st.builds(lambda account, amount: {"command": "withdraw", "account_id": account, "amount": amount}, st.sampled_from(ACCOUNTS), amounts),
    st.builds(lambda account: {"command": "close", "account_id": account}, st.sampled_from(ACCOUNTS)),
)
histories = st.lists(command_strategy, min_size=1, max_size=30).map(
    lambda cmds: [{"command": "open", "account_id": account, "owner": f"Owner {account}"} for account in ACCOUNTS[:2]] + cmds
)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, seed=st.randoms(use_true_random=False), batch_size=st.integers(1, 10))
def test_incremental_projection_in_any_order_and_a_rebuild_give_the_same_read_model(
    modules, account_tables, stream_records, lambda_context, long_context, history, seed, batch_size
):
    commands, projection, rebuild = modules
    arn = empty_tables(account_tables)
    run_commands(commands, lambda_context, history)
    records = what_the_mapping_delivers(stream_records.read_stream(arn))
    # Redeliveries: some records come twice, and everything arrives shuffled.
    deliveries = records + [record for record in records if seed.random() < 0.3]
    seed.shuffle(deliveries)

    for start in range(0, len(deliveries), batch_size):
        assert projection.lambda_handler({"Records": deliveries[start : start + batch_size]}, lambda_context) == {"batchItemFailures": []}
    result = rebuild.lambda_handler({}, long_context)

    accounts = {r["dynamodb"]["Keys"]["aggregate_id"]["S"] for r in records}
    assert result["events"] == len(records)
    assert (result["accounts"], result["target_table"], result["rejected"], result["complete"]) == (len(accounts), REBUILT, 0, True)
    incremental, rebuilt = table_items(READ_MODEL), table_items(REBUILT)
    assert incremental == rebuilt
    # And both show each account as the newest event left it.
    for model in rebuilt:
        state = commands.load(model["account_id"]).state
        assert (model["last_version"], model["balance"], model["status"], model["owner"]) == (state.version, state.balance, state.status, state.owner)


# --- the rebuild's own behaviour --------------------------------------------------------


def test_an_empty_store_rebuilds_nothing(modules, stream_arn, long_context):
    assert modules[2].lambda_handler({}, long_context) == {
        "events": 0,
        "accounts": 0,
        "target_table": REBUILT,
        "already_current": 0,
        "rejected": 0,
        "rejected_items": [],
        "complete": True,
    }


def test_snapshots_are_not_applied(modules, stream_arn, lambda_context, long_context):
    commands, _, rebuild = modules
    deposits = [{"command": "deposit", "account_id": "acc-1", "amount": 1}] * 5
    run_commands(commands, lambda_context, [{"command": "open", "account_id": "acc-1", "owner": "Ada"}, *deposits])

    result = rebuild.lambda_handler({}, long_context)

    assert (result["events"], result["accounts"]) == (6, 1)
    assert [item["account_id"] for item in table_items(REBUILT)] == ["acc-1"]
    assert table_items(REBUILT)[0]["balance"] == 5


def test_the_request_can_name_the_target_table(modules, stream_arn, account_tables, lambda_context, long_context):
    commands, _, rebuild = modules
    run_commands(commands, lambda_context, [{"command": "open", "account_id": "acc-1", "owner": "Ada"}])

    result = rebuild.lambda_handler({"target_table": READ_MODEL}, long_context)

    assert (result["target_table"], result["events"]) == (READ_MODEL, 1)
    assert [item["account_id"] for item in table_items(READ_MODEL)] == ["acc-1"]
    assert table_items(REBUILT) == []


def test_rebuilding_an_up_to_date_table_changes_nothing(modules, stream_arn, lambda_context, long_context):
    commands, _, rebuild = modules
    history = [{"command": "open", "account_id": "acc-1", "owner": "Ada"}, {"command": "deposit", "account_id": "acc-1", "amount": 3}]
    run_commands(commands, lambda_context, history)
    rebuild.lambda_handler({}, long_context)
    before = table_items(REBUILT)

    result = rebuild.lambda_handler({}, long_context)

    assert (result["events"], result["already_current"]) == (2, 2)
    assert table_items(REBUILT) == before


def test_an_item_that_is_not_an_event_is_reported_and_the_rest_rebuilt(modules, stream_arn, lambda_context, long_context, log_records):
    commands, _, rebuild = modules
    logs = log_records(rebuild)
    run_commands(commands, lambda_context, [{"command": "open", "account_id": "acc-1", "owner": "Ada"}])
    boto3.client("dynamodb").put_item(
        TableName=EVENT_STORE,
        Item={"aggregate_id": {"S": "acc-broken"}, "version": {"N": "1"}, "kind": {"S": "event"}, "type": {"S": "MoneyLent"}},
    )

    result = rebuild.lambda_handler({}, long_context)

    assert (result["events"], result["rejected"]) == (1, 1)
    [rejected] = result["rejected_items"]
    assert (rejected["aggregate_id"], rejected["version"]) == ("acc-broken", "1")
    # The contract reads the event type first: an unknown one is the whole reason.
    assert rejected["reason"] == "type: Input should be 'AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn' or 'AccountClosed'"
    assert [r.getMessage() for r in logs].count("Rejected item") == 1
    assert [item["account_id"] for item in table_items(REBUILT)] == ["acc-1"]


def test_an_event_with_binary_attributes_is_rebuilt(modules, stream_arn, lambda_context, long_context):
    # The rebuild reads the store with Scan, where boto3 hands binary values over as bytes already (not the stream's base64 text).
    commands, _, rebuild = modules
    run_commands(commands, lambda_context, [{"command": "open", "account_id": "acc-bin", "owner": "Ada"}])
    boto3.client("dynamodb").update_item(
        TableName=EVENT_STORE,
        Key={"aggregate_id": {"S": "acc-bin"}, "version": {"N": "1"}},
        UpdateExpression="SET signature = :b, thumbprints = :bs, #data.#scan = :b",
        ExpressionAttributeNames={"#data": "data", "#scan": "scan"},
        ExpressionAttributeValues={":b": {"B": b"hello"}, ":bs": {"BS": [b"hello", b"world"]}},
    )

    result = rebuild.lambda_handler({}, long_context)

    assert (result["events"], result["rejected"]) == (1, 0)
    assert [item["account_id"] for item in table_items(REBUILT)] == ["acc-bin"]


def test_any_exception_while_reading_an_item_rejects_that_item_and_the_rest_is_rebuilt(modules, stream_arn, lambda_context, long_context, monkeypatch):
    commands, _, rebuild = modules
    run_commands(commands, lambda_context, [{"command": "open", "account_id": account, "owner": "Ada"} for account in ("acc-odd", "acc-ok")])
    real_parse = rebuild.read_model.parse_item

    def parse_item(item):
        if item["aggregate_id"] == "acc-odd":
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(item)

    monkeypatch.setattr(rebuild.read_model, "parse_item", parse_item)

    result = rebuild.lambda_handler({}, long_context)

    assert (result["events"], result["rejected"]) == (1, 1)
    assert result["rejected_items"] == [
        {"aggregate_id": "acc-odd", "version": "1", "reason": "the item cannot be read: RecursionError: maximum recursion depth exceeded"}
    ]
    assert [item["account_id"] for item in table_items(REBUILT)] == ["acc-ok"]


def test_small_pages_give_the_same_result(modules, stream_arn, load_function_module, monkeypatch, lambda_context, long_context):
    commands, _, rebuild = modules
    run_commands(commands, lambda_context, [{"command": "open", "account_id": f"acc-{n}", "owner": "Ada"} for n in range(7)])
    monkeypatch.setenv("SCAN_PAGE_SIZE", "2")
    paged = load_function_module("account_projection", "rebuild")
    scans = []
    paged.dynamodb.meta.events.register("before-call.dynamodb.Scan", lambda **_: scans.append(1))

    result = paged.lambda_handler({}, long_context)

    assert (result["events"], result["accounts"], result["complete"]) == (7, 7, True)
    assert len(scans) >= 4
    assert len(table_items(REBUILT)) == 7


def test_a_rebuild_short_of_time_stops_and_goes_on_from_where_it_stopped(modules, stream_arn, load_function_module, monkeypatch, lambda_context):
    commands, _, _ = modules
    run_commands(commands, lambda_context, [{"command": "open", "account_id": f"acc-{n}", "owner": "Ada"} for n in range(5)])
    monkeypatch.setenv("SCAN_PAGE_SIZE", "2")
    paged = load_function_module("account_projection", "rebuild")
    short = dataclasses.replace(lambda_context, timeout_ms=paged.REMAINING_TIME_MARGIN_MS - 1)

    first = paged.lambda_handler({}, short)

    assert (first["events"], first["complete"]) == (2, False)
    assert set(first["next_start_key"]) == {"aggregate_id", "version"}
    seen = first["events"]
    request = {"start_key": first["next_start_key"]}
    for _ in range(10):
        result = paged.lambda_handler(request, short)
        seen += result["events"]
        if result["complete"]:
            break
        request = {"start_key": result["next_start_key"]}
    assert result["complete"] and "next_start_key" not in result
    assert seen == 5
    assert len(table_items(REBUILT)) == 5


def nested(depth):
    """``depth`` lists one inside the other, built without recursion."""
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"target_table": EVENT_STORE}, "the target table cannot be the event store"),
        ({"target_table": "no spaces allowed"}, "invalid rebuild request: target_table: String should match pattern"),
        ({"target_table": 42}, "target_table: Input should be a valid string"),
        ({"table": REBUILT}, "invalid rebuild request: table: Extra inputs are not permitted"),
        ({"start_key": "acc-1"}, "start_key: Input should be a valid dictionary"),
        # As deep as the runtime's JSON decoder lets a payload be: refused like any other bad request.
        ({"start_key": {"aggregate_id": {"S": nested(990)}}}, "invalid rebuild request: start_key.aggregate_id.S: Input should be a valid string"),
        ({"target_table": nested(990)}, "invalid rebuild request: target_table: Input should be a valid string"),
        (nested(990), "invalid rebuild request: item: Input should be a valid dictionary"),
    ],
    ids=["event store", "bad name", "number", "unknown field", "start key as text", "deep start key", "deep table", "deep request"],
)
def test_a_bad_request_is_refused_before_anything_is_read(modules, stream_arn, long_context, request_, message):
    rebuild = modules[2]
    scans = []

    def count(**_):
        scans.append(1)

    rebuild.dynamodb.meta.events.register("before-call.dynamodb.Scan", count)
    try:
        with pytest.raises(ValueError, match=re.escape(message)):
            rebuild.lambda_handler(request_, long_context)
    finally:
        rebuild.dynamodb.meta.events.unregister("before-call.dynamodb.Scan", count)

    assert scans == []


def test_without_a_default_table_the_request_must_name_one(world, stream_arn, load_function_module, monkeypatch, long_context):
    monkeypatch.delenv("REBUILD_TABLE")
    rebuild = load_function_module("account_projection", "rebuild")

    with pytest.raises(ValueError, match="no target table: the request names none and REBUILD_TABLE is not set"):
        rebuild.lambda_handler({}, long_context)
    assert rebuild.lambda_handler({"target_table": REBUILT}, long_context)["complete"] is True
