"""The account commands: every rule and error, snapshots written with their event, optimistic concurrency."""

import dataclasses
import json
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.record_shapes import nested

TABLE = "accounts-event-store"
BASE_DELAY = 0.05
FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
deserializer = TypeDeserializer()


@pytest.fixture(scope="module")
def store(moto_module, account_tables):
    account_tables.create_event_store(TABLE)
    moto_module.setenv("EVENT_STORE_TABLE", TABLE)
    moto_module.setenv("CONFLICT_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
    return TABLE


@pytest.fixture(scope="module")
def load_commands(store, load_function_module):
    """``load_commands(**env)``: the handler as a new execution environment would import it; pauses recorded, not slept."""

    def load(**env):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, str(value))
            module = load_function_module("account_commands")
        module.pauses = []
        module.sleep = module.pauses.append
        return module

    return load


@pytest.fixture(scope="module")
def loaded(load_commands):
    return load_commands()


@pytest.fixture
def commands(loaded, account_tables):
    """The handler with the default settings (a snapshot every 5 events, 3 conflict retries) and an empty store."""
    account_tables.recreate(TABLE, account_tables.create_event_store)
    loaded.pauses.clear()
    return loaded


def stored(account_id):
    """Every item of the partition, oldest version first, as plain values."""
    pages = (
        boto3.client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=TABLE,
            KeyConditionExpression="aggregate_id = :id",
            ExpressionAttributeValues={":id": {"S": account_id}},
            ConsistentRead=True,
        )
    )
    return [{name: deserializer.deserialize(value) for name, value in item.items()} for page in pages for item in page["Items"]]


def item_count():
    return boto3.client("dynamodb").scan(TableName=TABLE, Select="COUNT", ConsistentRead=True)["Count"]


def run(module, context, **command):
    return module.lambda_handler(command, context)


def opened(module, context, account_id="acc-1", owner="Ada Lovelace", deposits=()):
    assert run(module, context, command="open", account_id=account_id, owner=owner)["ok"]
    for amount in deposits:
        assert run(module, context, command="deposit", account_id=account_id, amount=amount)["ok"]


def emitted_metrics(output):
    """{(name, dimensions): [values]} from the EMF lines printed so far."""
    found = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = tuple(sorted((name, blob[name]) for names in directive["Dimensions"] for name in names if name != "service"))
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                found.setdefault((metric["Name"], dimensions), []).extend(values if isinstance(values, list) else [values])
    return found


# --- each command -----------------------------------------------------------------


def test_open_creates_the_account_with_its_first_event(commands, lambda_context):
    response = run(commands, lambda_context, command="open", account_id="acc-1", owner="Ada Lovelace", command_id="cmd-1")

    assert response == {"ok": True, "account_id": "acc-1", "version": 1, "balance": "0.00", "status": "open"}
    [event] = stored("acc-1")
    occurred_at = datetime.fromisoformat(event.pop("occurred_at"))
    assert occurred_at.utcoffset() == timedelta(0)
    assert event == {
        "aggregate_id": "acc-1",
        "version": 1,
        "kind": "event",
        "type": "AccountOpened",
        "data": {"owner": "Ada Lovelace"},
        "balance": 0,
        "status": "open",
        "owner": "Ada Lovelace",
        "command_id": "cmd-1",
    }


def test_a_deposit_adds_to_the_balance(commands, lambda_context):
    opened(commands, lambda_context)

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=12.5)

    assert response == {"ok": True, "account_id": "acc-1", "version": 2, "balance": "12.50", "status": "open"}
    event = stored("acc-1")[-1]
    assert (event["type"], event["data"], event["balance"], event["status"], event["owner"]) == (
        "MoneyDeposited",
        {"amount": Decimal("12.5")},
        Decimal("12.5"),
        "open",
        "Ada Lovelace",
    )


def test_a_withdrawal_takes_from_the_balance(commands, lambda_context):
    opened(commands, lambda_context, deposits=[100])

    response = run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=30.25)

    assert response == {"ok": True, "account_id": "acc-1", "version": 3, "balance": "69.75", "status": "open"}
    assert stored("acc-1")[-1]["type"] == "MoneyWithdrawn"


def test_withdrawing_the_whole_balance_leaves_zero(commands, lambda_context):
    opened(commands, lambda_context, deposits=[40])

    assert run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=40)["balance"] == "0.00"


def test_closing_an_empty_account_closes_it(commands, lambda_context):
    opened(commands, lambda_context, deposits=[10])
    run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=10)

    response = run(commands, lambda_context, command="close", account_id="acc-1")

    assert response == {"ok": True, "account_id": "acc-1", "version": 4, "balance": "0.00", "status": "closed"}
    event = stored("acc-1")[-1]
    assert (event["type"], event["data"], event["status"]) == ("AccountClosed", {}, "closed")


def test_decimal_amounts_add_up_exactly(commands, lambda_context):
    opened(commands, lambda_context, deposits=[0.1, 0.2])

    assert run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=0.3)["balance"] == "0.00"


def test_the_command_id_defaults_to_the_request_id(commands, lambda_context):
    context = dataclasses.replace(lambda_context, aws_request_id="1f1e7c4a-0000-4000-8000-00000000abcd")

    run(commands, context, command="open", account_id="acc-1", owner="Ada")

    assert stored("acc-1")[0]["command_id"] == "1f1e7c4a-0000-4000-8000-00000000abcd"


def test_accounts_are_independent(commands, lambda_context):
    opened(commands, lambda_context, account_id="acc-1", deposits=[5])
    opened(commands, lambda_context, account_id="acc-2")

    response = run(commands, lambda_context, command="deposit", account_id="acc-2", amount=7)

    assert (response["version"], response["balance"]) == (2, "7.00")
    assert [e["version"] for e in stored("acc-1")] == [1, 2]


def test_an_accepted_command_emits_its_metrics(commands, lambda_context, capsys):
    opened(commands, lambda_context, deposits=[1])
    capsys.readouterr()

    run(commands, lambda_context, command="deposit", account_id="acc-1", amount=1)

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[("CommandsAccepted", ())] == [1]
    assert metrics[("EventsRead", ())] == [2]
    assert metrics[("SnapshotsRead", ())] == [0]
    assert ("CommandsRejected", ()) not in metrics


# --- domain errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "command", "error", "message"),
    [
        ([], {"command": "deposit", "amount": 5}, "AccountNotFound", "Account acc-1 does not exist; open it first."),
        ([], {"command": "withdraw", "amount": 5}, "AccountNotFound", "Account acc-1 does not exist; open it first."),
        ([], {"command": "close"}, "AccountNotFound", "Account acc-1 does not exist; open it first."),
        (["open"], {"command": "open", "owner": "Someone Else"}, "AccountExists", "Account acc-1 already exists."),
        (
            ["open", 100],
            {"command": "withdraw", "amount": 100.01},
            "InsufficientFunds",
            "Cannot withdraw 100.01 from account acc-1: its balance is 100.00.",
        ),
        (["open"], {"command": "withdraw", "amount": 1}, "InsufficientFunds", "Cannot withdraw 1.00 from account acc-1: its balance is 0.00."),
        (
            ["open", 12.5],
            {"command": "close"},
            "BalanceNotZero",
            "Account acc-1 still holds 12.50; withdraw it before closing the account.",
        ),
        (["open", "close"], {"command": "deposit", "amount": 5}, "AccountClosed", "Account acc-1 is closed and accepts no further commands."),
        (["open", "close"], {"command": "withdraw", "amount": 5}, "AccountClosed", "Account acc-1 is closed and accepts no further commands."),
        (["open", "close"], {"command": "close"}, "AccountClosed", "Account acc-1 is closed and accepts no further commands."),
        (["open", "close"], {"command": "open", "owner": "Ada"}, "AccountClosed", "Account acc-1 is closed and accepts no further commands."),
    ],
)
def test_a_command_the_rules_refuse_gets_its_error_and_writes_nothing(commands, lambda_context, history, command, error, message):
    for step in history:
        if step == "open":
            run(commands, lambda_context, command="open", account_id="acc-1", owner="Ada")
        elif step == "close":
            run(commands, lambda_context, command="close", account_id="acc-1")
        else:
            run(commands, lambda_context, command="deposit", account_id="acc-1", amount=step)
    before = stored("acc-1")

    response = run(commands, lambda_context, account_id="acc-1", **command)

    assert response == {"ok": False, "error": error, "message": message}
    assert stored("acc-1") == before


def test_a_refusal_is_counted_by_error_code(commands, lambda_context, capsys):
    opened(commands, lambda_context)
    capsys.readouterr()

    run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=1)

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[("CommandsRejected", ())] == [1]
    assert metrics[("CommandsRejected", (("error", "InsufficientFunds"),))] == [1]
    assert ("CommandsAccepted", ()) not in metrics


# --- invalid commands ------------------------------------------------------------------

OWNER_RULE = r"Invalid open command: owner: String should match pattern '^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$'."


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "The command must be a JSON object, got list."),
        ("deposit", "The command must be a JSON object, got str."),
        ({"account_id": "acc-1"}, "command: must be one of open, deposit, withdraw, close."),
        ({"command": "transfer", "account_id": "acc-1"}, "command: must be one of open, deposit, withdraw, close."),
        ({"command": "deposit", "amount": 5}, "Invalid deposit command: account_id: Field required."),
        ({"command": "close", "account_id": "acc#snapshot"}, "Invalid close command: account_id: String should match pattern"),
        ({"command": "close", "account_id": ""}, "account_id: String should match pattern"),
        ({"command": "close", "account_id": "a" * 65}, "account_id: String should match pattern"),
        ({"command": "close", "account_id": 42}, "account_id: Input should be a valid string"),
        ({"command": "open", "account_id": "acc-1"}, "Invalid open command: owner: Field required."),
        # The contract's rule for an owner (contracts.accounts.Owner): not blank, no control characters.
        ({"command": "open", "account_id": "acc-1", "owner": "   "}, OWNER_RULE),
        ({"command": "open", "account_id": "acc-1", "owner": "Ada\nLovelace"}, OWNER_RULE),
        ({"command": "open", "account_id": "acc-1", "owner": "x" * 201}, "owner: String should have at most 200 characters"),
        ({"command": "open", "account_id": "acc-1", "owner": 7}, "owner: Input should be a valid string"),
        ({"command": "deposit", "account_id": "acc-1"}, "Invalid deposit command: amount: Field required."),
        ({"command": "deposit", "account_id": "acc-1", "amount": 0}, "amount: Input should be greater than 0"),
        ({"command": "withdraw", "account_id": "acc-1", "amount": -5}, "amount: Input should be greater than 0"),
        ({"command": "deposit", "account_id": "acc-1", "amount": 1.005}, "amount: Decimal input should have no more than 2 decimal places"),
        ({"command": "deposit", "account_id": "acc-1", "amount": "10"}, "amount: Value error, must be a number"),
        ({"command": "deposit", "account_id": "acc-1", "amount": True}, "amount: Value error, must be a number"),
        ({"command": "deposit", "account_id": "acc-1", "amount": float("nan")}, "amount: Input should be a finite number"),
        ({"command": "deposit", "account_id": "acc-1", "amount": 1e16}, "amount: Decimal input should have no more than 15 digits in total"),
        ({"command": "deposit", "account_id": "acc-1", "amount": 5, "owner": "Ada"}, "owner: Extra inputs are not permitted"),
        ({"command": "close", "account_id": "acc-1", "command_id": "has space"}, "command_id: String should match pattern"),
        (
            {"command": "deposit", "account_id": "bad id", "amount": 0},
            "Invalid deposit command: account_id: String should match pattern '^[A-Za-z0-9_-]{1,64}$'; amount: Input should be greater than 0.",
        ),
    ],
)
def test_an_invalid_command_is_refused_naming_the_field(commands, lambda_context, command, message):
    response = commands.lambda_handler(command, lambda_context)

    assert response["ok"] is False
    assert response["error"] == "InvalidCommand"
    assert message in response["message"]
    assert item_count() == 0


# Wrong values for each field of a command (removal is tried too, for the required ones).
BAD_VALUES = {
    "command": [None, "", "Deposit", "transfer", 1, [], {}],
    "account_id": [None, "", "a b", "a#b", "é", "x" * 65, 1, [], {}],
    "command_id": ["", " ", "x" * 129, "caf\u00e9", 1, []],  # null is the same as leaving it out
    "owner": [None, "", "  ", "\t", "a\x00b", "x" * 201, 1, [], {}],
    "amount": [None, 0, -1, 0.001, 1.234, -0.01, "1", True, [], {}, float("inf"), float("nan"), 10**16],
}
REQUIRED = {"open": ["command", "account_id", "owner"], "deposit": ["command", "account_id", "amount"], "close": ["command", "account_id"]}
REQUIRED["withdraw"] = REQUIRED["deposit"]


@st.composite
def broken_command(draw):
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    command = {"command": kind, "account_id": "acc-never-written", "command_id": "cmd-1"}
    if kind == "open":
        command["owner"] = "Ada"
    if kind in ("deposit", "withdraw"):
        command["amount"] = 5
    change = draw(st.sampled_from(["remove", "bad value", "unknown field"]))
    if change == "remove":
        field = draw(st.sampled_from(REQUIRED[kind]))
        del command[field]
    elif change == "bad value":
        field = draw(st.sampled_from([name for name in BAD_VALUES if name in command]))
        command[field] = draw(st.sampled_from(BAD_VALUES[field]))
    else:
        field = draw(st.sampled_from(["owner", "amount", "Amount", "account", "version", "balance"]).filter(lambda name: name not in command))
        command[field] = draw(st.sampled_from(["Ada", 5, None]))
    return field, command


any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)


@FAST
@given(case=broken_command())
def test_generated_broken_commands_are_refused_naming_the_field_and_write_nothing(loaded, store, lambda_context, case):
    field, command = case

    response = loaded.lambda_handler(command, lambda_context)

    assert response["ok"] is False and response["error"] == "InvalidCommand"
    assert f"{field}:" in response["message"]
    assert not stored("acc-never-written")


@FAST
@given(payload=any_json)
def test_arbitrary_payloads_are_refused_and_write_nothing(loaded, store, lambda_context, payload):
    before = item_count()

    response = loaded.lambda_handler(payload, lambda_context)

    assert response["ok"] is False and response["error"] == "InvalidCommand"
    assert item_count() == before


# --- snapshots and loading -------------------------------------------------------------


def test_a_snapshot_is_written_in_the_same_transaction_as_every_fifth_event(commands, lambda_context):
    transactions = []

    def remember(params, **_):
        transactions.append([(put["Put"]["Item"]["aggregate_id"]["S"], int(put["Put"]["Item"]["version"]["N"])) for put in params["TransactItems"]])

    commands.dynamodb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", remember)
    try:
        opened(commands, lambda_context, deposits=[10] * 10)
    finally:
        commands.dynamodb.meta.events.unregister("before-parameter-build.dynamodb.TransactWriteItems", remember)

    # Each transaction ends with the command's marker.
    assert all(entries[-1][0].startswith("command#acc-1#") and entries[-1][1] == 0 for entries in transactions)
    assert transactions[4][:-1] == [("acc-1", 5), ("acc-1#snapshot", 5)]
    assert transactions[9][:-1] == [("acc-1", 10), ("acc-1#snapshot", 10)]
    assert all(len(entries) == 2 for index, entries in enumerate(transactions) if index not in (4, 9))
    events = stored("acc-1")
    snapshots = stored("acc-1#snapshot")
    assert [s["version"] for s in snapshots] == [5, 10]
    for snapshot in snapshots:
        event = events[int(snapshot["version"]) - 1]
        assert snapshot["kind"] == "snapshot"
        assert snapshot["state"] == {"balance": event["balance"], "status": event["status"], "owner": "Ada Lovelace"}
    assert snapshots[1]["state"]["balance"] == Decimal("90")


def test_load_reads_the_newest_snapshot_and_the_events_after_it_only(commands, lambda_context):
    opened(commands, lambda_context, deposits=[1] * 11)  # versions 1..12, snapshots at 5 and 10
    counts = []

    def count(parsed, **_):
        counts.append(parsed["Count"])

    commands.dynamodb.meta.events.register("after-call.dynamodb.Query", count)
    try:
        result = commands.load("acc-1")
    finally:
        commands.dynamodb.meta.events.unregister("after-call.dynamodb.Query", count)

    assert (result.snapshot_version, result.events_read, result.items_read) == (10, 2, 3)
    assert counts == [1, 2]
    assert result.state == commands.fold([commands.Event(e["type"], int(e["version"]), e["data"]) for e in stored("acc-1")])


def test_without_snapshots_load_reads_every_event(load_commands, account_tables, lambda_context):
    account_tables.recreate(TABLE, account_tables.create_event_store)
    never = load_commands(SNAPSHOT_EVERY=0)
    opened(never, lambda_context, deposits=[1] * 11)

    result = never.load("acc-1")

    assert stored("acc-1#snapshot") == []
    assert (result.snapshot_version, result.events_read, result.items_read) == (0, 12, 12)
    assert result.state.balance == 11


def test_a_gap_in_the_history_is_an_error_not_an_answer(commands, lambda_context):
    opened(commands, lambda_context)
    item = {"aggregate_id": {"S": "acc-1"}, "version": {"N": "3"}, "kind": {"S": "event"}, "type": {"S": "MoneyDeposited"}, "data": {"M": {}}}
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)

    with pytest.raises(ValueError, match="event version 3 follows version 1"):
        run(commands, lambda_context, command="deposit", account_id="acc-1", amount=1)


def test_an_event_without_its_data_is_an_error(commands, lambda_context):
    opened(commands, lambda_context)
    item = {"aggregate_id": {"S": "acc-1"}, "version": {"N": "2"}, "kind": {"S": "event"}, "type": {"S": "MoneyDeposited"}, "data": {"M": {}}}
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)

    with pytest.raises(ValueError, match="MoneyDeposited at version 2 has no valid amount"):
        run(commands, lambda_context, command="deposit", account_id="acc-1", amount=1)


def test_an_unreadable_snapshot_is_an_error(commands, lambda_context):
    opened(commands, lambda_context)
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={"aggregate_id": {"S": "acc-1#snapshot"}, "version": {"N": "1"}, "kind": {"S": "snapshot"}, "state": {"M": {"balance": {"S": "1"}}}},
    )

    with pytest.raises(ValueError, match="snapshot at version 1 is not a valid account state"):
        run(commands, lambda_context, command="deposit", account_id="acc-1", amount=1)


# --- infrastructure errors -------------------------------------------------------------


def test_an_infrastructure_error_raises(commands, lambda_context, monkeypatch):
    def denied(operation, params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, operation)

    monkeypatch.setattr(commands.dynamodb, "_make_api_call", denied)

    with pytest.raises(ClientError, match="AccessDeniedException"):
        run(commands, lambda_context, command="open", account_id="acc-1", owner="Ada")


def test_a_transaction_cancelled_for_another_reason_than_a_conflict_raises(commands, lambda_context, monkeypatch):
    opened(commands, lambda_context)
    real_call = commands.dynamodb._make_api_call

    def throttled(operation, params):
        if operation == "TransactWriteItems":
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}, "CancellationReasons": [{"Code": "ThrottlingError"}]}
            raise ClientError(error, operation)
        return real_call(operation, params)

    monkeypatch.setattr(commands.dynamodb, "_make_api_call", throttled)

    with pytest.raises(ClientError, match="TransactionCanceledException"):
        run(commands, lambda_context, command="deposit", account_id="acc-1", amount=1)
    assert commands.pauses == []


# --- concurrency ---------------------------------------------------------------------
#
# Two writers are two execution environments: two loads of the handler, each
# with its own client. Deterministic tests let the second writer append between
# the first one's load and its append; threaded tests run both at once.


def interleave(module, monkeypatch, other_writes):
    """After each of ``module``'s loads, run the next of ``other_writes`` (callables) before it goes on."""
    real_load = module.load
    pending = list(other_writes)

    def load_then_let_the_other_write(account_id):
        result = real_load(account_id)
        if pending:
            pending.pop(0)()
        return result

    monkeypatch.setattr(module, "load", load_then_let_the_other_write)


def command_by(module, command_id="other-writer", **command):
    return lambda: module.execute(module.parse_command(command), command_id)


def test_a_writer_that_loses_the_version_reloads_and_appends_the_next_one(commands, load_commands, lambda_context, monkeypatch, capsys):
    opened(commands, lambda_context, deposits=[100])
    other = load_commands()
    interleave(commands, monkeypatch, [command_by(other, command="deposit", account_id="acc-1", amount=50)])
    capsys.readouterr()

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=25, command_id="mine")

    assert response == {"ok": True, "account_id": "acc-1", "version": 4, "balance": "175.00", "status": "open"}
    events = stored("acc-1")
    assert [(e["version"], e["command_id"]) for e in events[2:]] == [(3, "other-writer"), (4, "mine")]
    assert len(commands.pauses) == 1 and 0 <= commands.pauses[0] <= BASE_DELAY
    assert emitted_metrics(capsys.readouterr().out)[("ConcurrencyConflicts", ())] == [1]


def test_a_retried_command_is_decided_again_on_the_new_state(commands, load_commands, lambda_context, monkeypatch):
    opened(commands, lambda_context, deposits=[100])
    other = load_commands()
    interleave(commands, monkeypatch, [command_by(other, command="withdraw", account_id="acc-1", amount=80)])

    response = run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=80)

    assert response == {"ok": False, "error": "InsufficientFunds", "message": "Cannot withdraw 80.00 from account acc-1: its balance is 20.00."}
    assert [e["command_id"] for e in stored("acc-1")][-1] == "other-writer"
    assert len(stored("acc-1")) == 3


def test_after_the_last_retry_the_answer_is_conflict_and_nothing_is_written(commands, load_commands, lambda_context, monkeypatch):
    opened(commands, lambda_context)
    other = load_commands()
    interleave(commands, monkeypatch, [command_by(other, f"other-{n}", command="deposit", account_id="acc-1", amount=1) for n in range(4)])

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="mine")

    assert response == {
        "ok": False,
        "error": "Conflict",
        "message": "Account acc-1 kept changing while the command was applied (4 attempts); nothing was written, the command can be sent again.",
    }
    assert "mine" not in [e["command_id"] for e in stored("acc-1")]
    assert [e["version"] for e in stored("acc-1")] == [1, 2, 3, 4, 5]
    # Full jitter below a ceiling that doubles: 0.05, 0.1, 0.2.
    assert len(commands.pauses) == 3
    assert all(0 <= pause <= BASE_DELAY * 2**index for index, pause in enumerate(commands.pauses))


def test_a_conflict_on_a_snapshot_version_writes_neither_the_event_nor_the_snapshot(commands, load_commands, lambda_context, monkeypatch):
    opened(commands, lambda_context, deposits=[1, 1, 1])  # version 4; the next is a snapshot version
    other = load_commands()
    interleave(commands, monkeypatch, [command_by(other, command="deposit", account_id="acc-1", amount=10)])

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="mine")

    assert (response["version"], response["balance"]) == (6, "18.00")
    [snapshot] = stored("acc-1#snapshot")
    assert (snapshot["version"], snapshot["state"]["balance"]) == (5, Decimal("13"))


def threaded_writers(load_commands, monkeypatch, **env):
    """Two environments whose first load waits for the other's, so both decide on the same version.

    moto's in-process DynamoDB is not safe under threads: a transaction writes
    item by item and, when it fails, restores a copy of the table taken before
    it started, which can undo the other thread's write. DynamoDB runs each
    call atomically, so the clients here take turns, one call at a time; the
    calls still interleave in whatever order the threads reach them.
    """
    writers = [load_commands(**env), load_commands(**env)]
    lock = threading.Lock()
    barrier = threading.Barrier(len(writers), timeout=10)
    for module in writers:
        real_call = module.dynamodb._make_api_call
        real_load = module.load
        module.loaded_versions = []

        def one_call_at_a_time(operation, params, _real=real_call):
            with lock:
                return _real(operation, params)

        def load_and_meet(account_id, _real=real_load, _module=module):
            result = _real(account_id)
            _module.loaded_versions.append(result.state.version)
            if len(_module.loaded_versions) == 1:
                barrier.wait()
            return result

        monkeypatch.setattr(module.dynamodb, "_make_api_call", one_call_at_a_time)
        monkeypatch.setattr(module, "load", load_and_meet)
    return writers


def race(writers, commands_to_send):
    results = [None] * len(writers)

    def send(index):
        module = writers[index]
        try:
            # execute, not lambda_handler: Powertools' metric set is shared by every Metrics
            # instance in the process, and two flushes at once would fight over it.
            results[index] = module.execute(module.parse_command(commands_to_send[index]), f"writer-{index}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[index] = exc
        finally:
            module.metrics.clear_metrics()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_two_threads_writing_the_same_version_one_wins_and_the_other_retries(commands, load_commands, lambda_context, monkeypatch):
    opened(commands, lambda_context)
    writers = threaded_writers(load_commands, monkeypatch)

    results = race(writers, [{"command": "deposit", "account_id": "acc-1", "amount": amount} for amount in (10, 20)])

    assert all(isinstance(result, dict) and result["ok"] for result in results), results
    assert sorted(result["version"] for result in results) == [2, 3]
    assert [w.loaded_versions[0] for w in writers] == [1, 1]
    loser = next(w for w, result in zip(writers, results, strict=True) if result["version"] == 3)
    assert loser.loaded_versions == [1, 2] and len(loser.pauses) == 1
    events = stored("acc-1")
    assert [e["version"] for e in events] == [1, 2, 3]
    assert sorted(e["command_id"] for e in events[1:]) == ["writer-0", "writer-1"]
    assert events[-1]["balance"] == 30


def test_two_threads_without_retries_one_wins_and_the_other_gets_conflict(commands, load_commands, lambda_context, monkeypatch):
    opened(commands, lambda_context)
    writers = threaded_writers(load_commands, monkeypatch, MAX_CONFLICT_RETRIES=0)

    results = race(writers, [{"command": "deposit", "account_id": "acc-1", "amount": amount} for amount in (10, 20)])

    assert sorted(str(result.get("ok")) for result in results) == ["False", "True"], results
    winner, loser = sorted(results, key=lambda result: not result["ok"])
    assert winner["version"] == 2
    assert loser["error"] == "Conflict" and "(1 attempts)" in loser["message"]
    events = stored("acc-1")
    assert [e["version"] for e in events] == [1, 2]
    assert events[-1]["balance"] == Decimal(winner["balance"])
    assert all(w.pauses == [] for w in writers)


# --- idempotency on command_id --------------------------------------------------------


def marker(account_id, command_id):
    key = {"aggregate_id": {"S": f"command#{account_id}#{command_id}"}, "version": {"N": "0"}}
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")
    return None if item is None else {name: deserializer.deserialize(value) for name, value in item.items()}


def test_the_same_command_id_twice_has_one_effect_and_the_same_answer(commands, lambda_context, capsys):
    opened(commands, lambda_context, deposits=[10])
    capsys.readouterr()

    first = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")
    again = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")

    assert first == again == {"ok": True, "account_id": "acc-1", "version": 3, "balance": "15.00", "status": "open"}
    assert [e["command_id"] for e in stored("acc-1")].count("dep-1") == 1
    recorded = marker("acc-1", "dep-1")
    assert recorded.pop("recorded_at")
    assert recorded == {
        "aggregate_id": "command#acc-1#dep-1",
        "version": 0,
        "kind": "command",
        "command": "deposit",
        "result": {"version": 3, "balance": "15.00", "status": "open"},
    }
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[("CommandsAccepted", ())] == [1]
    assert metrics[("DuplicateCommands", ())] == [1]


def test_a_command_repeated_after_others_gets_its_original_answer_and_writes_nothing(commands, lambda_context):
    opened(commands, lambda_context)
    first = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")
    run(commands, lambda_context, command="deposit", account_id="acc-1", amount=7)
    run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=2)
    before = item_count()

    again = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")

    assert again == first == {"ok": True, "account_id": "acc-1", "version": 2, "balance": "5.00", "status": "open"}
    assert item_count() == before
    assert [e["version"] for e in stored("acc-1")] == [1, 2, 3, 4]


def test_a_duplicate_that_wins_the_race_gives_its_answer_to_the_one_that_lost(commands, load_commands, lambda_context, monkeypatch, capsys):
    opened(commands, lambda_context, deposits=[100])
    other = load_commands()
    interleave(commands, monkeypatch, [command_by(other, "dep-1", command="deposit", account_id="acc-1", amount=25)])
    capsys.readouterr()

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=25, command_id="dep-1")

    assert response == {"ok": True, "account_id": "acc-1", "version": 3, "balance": "125.00", "status": "open"}
    assert [(e["version"], e["command_id"]) for e in stored("acc-1")][2:] == [(3, "dep-1")]
    assert emitted_metrics(capsys.readouterr().out)[("DuplicateCommands", ())] == [1]


def test_a_duplicate_is_answered_from_the_marker_when_only_the_marker_put_fails(commands, lambda_context, monkeypatch):
    opened(commands, lambda_context)
    run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")
    real_get = commands.recorded_answer
    reads = []

    def missed_the_first_time(account_id, command_id):
        reads.append(command_id)
        return None if len(reads) == 1 else real_get(account_id, command_id)

    monkeypatch.setattr(commands, "recorded_answer", missed_the_first_time)

    response = run(commands, lambda_context, command="deposit", account_id="acc-1", amount=5, command_id="dep-1")

    assert response == {"ok": True, "account_id": "acc-1", "version": 2, "balance": "5.00", "status": "open"}
    assert reads == ["dep-1", "dep-1"] and commands.pauses == []
    assert [e["version"] for e in stored("acc-1")] == [1, 2]


def test_a_refused_command_records_nothing_and_is_decided_again_when_sent_again(commands, lambda_context):
    opened(commands, lambda_context)

    refused = run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=30, command_id="wd-1")
    assert refused["error"] == "InsufficientFunds"
    assert marker("acc-1", "wd-1") is None
    run(commands, lambda_context, command="deposit", account_id="acc-1", amount=50)

    accepted = run(commands, lambda_context, command="withdraw", account_id="acc-1", amount=30, command_id="wd-1")

    assert accepted == {"ok": True, "account_id": "acc-1", "version": 3, "balance": "20.00", "status": "open"}


def test_without_a_command_id_two_invocations_with_the_same_request_id_are_one_effect(commands, lambda_context):
    opened(commands, lambda_context)
    retried = dataclasses.replace(lambda_context, aws_request_id="2a2e7c4a-0000-4000-8000-00000000abcd")

    first = commands.lambda_handler({"command": "deposit", "account_id": "acc-1", "amount": 5}, retried)
    again = commands.lambda_handler({"command": "deposit", "account_id": "acc-1", "amount": 5}, retried)

    assert first == again == {"ok": True, "account_id": "acc-1", "version": 2, "balance": "5.00", "status": "open"}
    assert [e["command_id"] for e in stored("acc-1")][1:] == ["2a2e7c4a-0000-4000-8000-00000000abcd"]
    assert marker("acc-1", "2a2e7c4a-0000-4000-8000-00000000abcd")["command"] == "deposit"


# --- properties ------------------------------------------------------------------------

SNAPSHOT_SETTINGS = (0, 1, 2, 3, 5, 7)
ACCOUNTS = ("acc-a", "acc-b")
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("250"), places=2)
command_strategy = st.one_of(
    st.builds(lambda account: {"command": "open", "account_id": account, "owner": f"Owner of {account}"}, st.sampled_from(ACCOUNTS)),
    st.builds(lambda account, amount: {"command": "deposit", "account_id": account, "amount": float(amount)}, st.sampled_from(ACCOUNTS), amounts),
    st.builds(lambda account, amount: {"command": "withdraw", "account_id": account, "amount": float(amount)}, st.sampled_from(ACCOUNTS), amounts),
    st.builds(lambda account: {"command": "close", "account_id": account}, st.sampled_from(ACCOUNTS)),
)
# Opening first makes the interesting paths (money moving, closing) more likely.
histories = st.lists(command_strategy, min_size=1, max_size=25).map(lambda cmds: [{"command": "open", "account_id": "acc-a", "owner": "Owner of acc-a"}] + cmds)


def reference_outcome(accounts, command):
    """What a bank would say, written plainly, to check the handler's answers against."""
    account = accounts.get(command["account_id"])
    amount = Decimal(repr(command["amount"])) if "amount" in command else None
    if account is not None and account["status"] == "closed":
        return "AccountClosed"
    if command["command"] == "open":
        if account is not None:
            return "AccountExists"
        accounts[command["account_id"]] = {"status": "open", "balance": Decimal(0)}
        return "ok"
    if account is None:
        return "AccountNotFound"
    if command["command"] == "deposit":
        account["balance"] += amount
    elif command["command"] == "withdraw":
        if amount > account["balance"]:
            return "InsufficientFunds"
        account["balance"] -= amount
    elif account["balance"] != 0:
        return "BalanceNotZero"
    else:
        account["status"] = "closed"
    return "ok"


@pytest.fixture(scope="module")
def by_snapshot_setting(load_commands):
    return {every: load_commands(SNAPSHOT_EVERY=every) for every in SNAPSHOT_SETTINGS}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(every=st.sampled_from(SNAPSHOT_SETTINGS), history=histories)
def test_snapshot_plus_tail_is_the_whole_history_and_balances_never_go_negative(by_snapshot_setting, account_tables, lambda_context, every, history):
    module = by_snapshot_setting[every]
    account_tables.recreate(TABLE, account_tables.create_event_store)
    accounts = {}

    for command in history:
        response = module.lambda_handler(command, lambda_context)
        assert ("ok" if response["ok"] else response["error"]) == reference_outcome(accounts, command), (command, response)

    for account_id, expected in accounts.items():
        items = stored(account_id)
        assert [item["version"] for item in items] == list(range(1, len(items) + 1))
        events = [module.Event(item["type"], int(item["version"]), item["data"]) for item in items]
        from_scratch = module.fold(events)
        assert (from_scratch.balance, from_scratch.status) == (expected["balance"], expected["status"])
        prefix = module.AccountState()
        for item, event in zip(items, events, strict=True):
            prefix = module.evolve(prefix, event)
            assert prefix.balance >= 0
            assert (item["balance"], item["status"], item["owner"]) == (prefix.balance, prefix.status, prefix.owner)
        snapshots = stored(account_id + "#snapshot")
        expected_snapshots = [v for v in range(1, len(items) + 1) if every and v % every == 0]
        assert [s["version"] for s in snapshots] == expected_snapshots
        for snapshot in snapshots:
            version = int(snapshot["version"])
            assert module.state_from_snapshot(version, snapshot["state"]) == module.fold(events[:version])
        result = module.load(account_id)
        assert result.state == from_scratch
        newest = expected_snapshots[-1] if expected_snapshots else 0
        assert (result.snapshot_version, result.events_read) == (newest, len(items) - newest)


@settings(max_examples=300, deadline=None, database=None)
@given(history=histories, every=st.integers(1, 10))
def test_the_rules_alone_keep_balances_at_zero_or_above_and_any_snapshot_plus_tail_is_the_whole(loaded, history, every):
    """The pure functions, without the store: many more histories in the same time."""
    events = {}
    for raw in history:
        command = loaded.parse_command(raw)
        before = loaded.fold(events.get(command.account_id, []))
        decision = loaded.decide(before, command)
        if isinstance(decision, loaded.Rejection):
            continue
        assert before.status != "closed"
        after = loaded.fold(decision, before)
        assert after.balance >= 0
        assert after.version == before.version + len(decision)
        events.setdefault(command.account_id, []).extend(decision)
    for history_of_one in events.values():
        whole = loaded.fold(history_of_one)
        for version in range(every, len(history_of_one) + 1, every):
            snapshot = loaded.snapshot_state(loaded.fold(history_of_one[:version]))
            restored = loaded.state_from_snapshot(version, snapshot)
            assert loaded.fold(history_of_one[version:], restored) == whole


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (nested(990), "The command must be a JSON object, got list."),
        ({"command": nested(990), "account_id": "acc-1"}, "command: must be one of open, deposit, withdraw, close."),
        ({"command": "deposit", "account_id": "acc-1", "amount": nested(990)}, "Invalid deposit command: amount: Value error, must be a number."),
        ({"command": "open", "account_id": "acc-1", "owner": "Ada", "notes": nested(990)}, "Invalid open command: notes: Extra inputs are not permitted."),
        ({"command": "open", "account_id": nested(990), "owner": "Ada"}, "Invalid open command: account_id: Input should be a valid string."),
    ],
    ids=["the command", "its name", "an amount", "an unknown field", "the account id"],
)
def test_a_deeply_nested_command_is_refused_naming_the_field_and_writes_nothing(loaded, store, lambda_context, command, message):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    before = item_count()

    assert loaded.lambda_handler(command, lambda_context) == {"ok": False, "error": "InvalidCommand", "message": message}

    assert item_count() == before
