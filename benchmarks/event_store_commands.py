"""The account command handler against moto's in-process DynamoDB: CPU per command, and reads per command by snapshot frequency.

(a) CPU time per deposit command (``time.process_time``) through the
    handler, against two baselines run in the same round:
    a bare ``put_item`` of an event-sized item (the least a write can cost),
    and the very DynamoDB calls the handler makes for a deposit (snapshot
    query, events query, TransactWriteItems), issued directly, so the
    difference between the handler and that floor is the handler's own work
    (validation, folding, Logger, Metrics). Each of the three runs on a
    table of its own that starts with one opened account; the table gives
    the medians over the rounds. moto's TransactWriteItems copies the whole
    table before it writes (to roll back on failure), so its cost grows with
    the table, unlike DynamoDB's, and dominates both the handler's figure and
    the "same calls" floor; the benchmark tables have no stream, which moto
    would copy too.

(b) Items read per command by ``load()`` (the newest snapshot plus the
    events after it) for an account that already has 200 events, averaged
    over the next 50 deposits, for each SNAPSHOT_EVERY; 0 means no
    snapshots. The counts are exact, not timed; the snapshot items written
    per 250 events are the price paid for them.

The handler runs as in Lambda minus the network: Logger and Metrics do their
full work, their output goes to /dev/null, and tracing is off.

Run from the repository root: ``python benchmarks/event_store_commands.py``.
"""

import contextlib
import itertools
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_function, prepare_environment  # noqa: E402

TABLE = "benchmark-event-store"
ROUNDS = 5
COMMANDS_PER_ROUND = 100
HISTORY = 200  # events before the measured commands in (b)
MEASURED = 50
SNAPSHOT_SETTINGS = (0, 5, 20, 100)

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise04-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise04Benchmark",
    EVENT_STORE_TABLE=TABLE,
)


# Commands are idempotent on command_id: every benchmark command is a new one.
COMMAND_IDS = (f"bench-{n}" for n in itertools.count())


def recreate_table(dynamodb):
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=TABLE)
    dynamodb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "aggregate_id", "AttributeType": "S"}, {"AttributeName": "version", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "aggregate_id", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
        # No stream: moto copies the stream's records with the table on every transaction.
    )


def load_commands(name, **env):
    os.environ.update({key: str(value) for key, value in env.items()})
    return load_function("account_commands", name)


def event_item(account_id, version):
    return {
        "aggregate_id": {"S": account_id},
        "version": {"N": str(version)},
        "kind": {"S": "event"},
        "type": {"S": "MoneyDeposited"},
        "data": {"M": {"amount": {"N": "12.5"}}},
        "balance": {"N": str(12.5 * (version - 1))},
        "status": {"S": "open"},
        "owner": {"S": "Benchmark Owner"},
        "occurred_at": {"S": "2025-03-14T09:26:53.589+00:00"},
        "command_id": {"S": f"cmd-{version}"},
    }


def snapshot_item(account_id, version):
    state = {"M": {"balance": {"N": str(12.5 * (version - 1))}, "status": {"S": "open"}, "owner": {"S": "Benchmark Owner"}}}
    return {"aggregate_id": {"S": account_id + "#snapshot"}, "version": {"N": str(version)}, "kind": {"S": "snapshot"}, "state": state}


def cpu_seconds(run, count):
    start = time.process_time()
    for index in range(count):
        run(index)
    return time.process_time() - start


def cpu_per_command(dynamodb):
    module = load_commands("benchmark_account_commands_cpu", SNAPSHOT_EVERY=5)
    context = Context()
    account = "acc-1"
    handler_us, put_us, calls_us = [], [], []

    def through_the_handler(index):
        response = module.lambda_handler({"command": "deposit", "command_id": next(COMMAND_IDS), "account_id": account, "amount": 12.5}, context)
        if not response["ok"]:
            raise RuntimeError(response)

    def bare_put(index):
        dynamodb.put_item(TableName=TABLE, Item=event_item(account, index + 2))

    def same_calls(index):
        version = index + 2
        marker = {"aggregate_id": {"S": f"command#{account}#same-{index}"}, "version": {"N": "0"}}
        dynamodb.get_item(TableName=TABLE, Key=marker, ConsistentRead=True)
        dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="aggregate_id = :id",
            ExpressionAttributeValues={":id": {"S": account + "#snapshot"}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="aggregate_id = :id AND #version > :after",
            ExpressionAttributeNames={"#version": "version"},
            ExpressionAttributeValues={":id": {"S": account}, ":after": {"N": str((version - 1) - (version - 1) % 5)}},
            ConsistentRead=True,
        )
        puts = [
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": event_item(account, version),
                    "ConditionExpression": "attribute_not_exists(#version)",
                    "ExpressionAttributeNames": {"#version": "version"},
                }
            }
        ]
        if version % 5 == 0:
            puts.append({"Put": {"TableName": TABLE, "Item": snapshot_item(account, version)}})
        puts.append(
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {**marker, "kind": {"S": "command"}, "command": {"S": "deposit"}},
                    "ConditionExpression": "attribute_not_exists(aggregate_id)",
                }
            }
        )
        dynamodb.transact_write_items(TransactItems=puts)

    for _ in range(ROUNDS):
        # Each measurement on a table of its own that starts with the opened account, so all three write to tables of the same size.
        recreate_table(dynamodb)
        module.lambda_handler({"command": "open", "command_id": next(COMMAND_IDS), "account_id": account, "owner": "Benchmark Owner"}, context)
        handler_us.append(cpu_seconds(through_the_handler, COMMANDS_PER_ROUND) / COMMANDS_PER_ROUND * 1e6)
        recreate_table(dynamodb)
        dynamodb.put_item(TableName=TABLE, Item=event_item(account, 1))
        put_us.append(cpu_seconds(bare_put, COMMANDS_PER_ROUND) / COMMANDS_PER_ROUND * 1e6)
        recreate_table(dynamodb)
        dynamodb.put_item(TableName=TABLE, Item=event_item(account, 1))
        calls_us.append(cpu_seconds(same_calls, COMMANDS_PER_ROUND) / COMMANDS_PER_ROUND * 1e6)
    ratios_put = [h / p for h, p in zip(handler_us, put_us, strict=True)]
    ratios_calls = [h / c for h, c in zip(handler_us, calls_us, strict=True)]
    return statistics.median(handler_us), statistics.median(put_us), statistics.median(calls_us), statistics.median(ratios_put), statistics.median(ratios_calls)


def reads_per_command(dynamodb, every):
    module = load_commands(f"benchmark_account_commands_every_{every}", SNAPSHOT_EVERY=every)
    context = Context()
    recreate_table(dynamodb)
    account = "acc-history"
    module.lambda_handler({"command": "open", "command_id": next(COMMAND_IDS), "account_id": account, "owner": "Benchmark Owner"}, context)
    for _ in range(HISTORY - 1):
        module.lambda_handler({"command": "deposit", "command_id": next(COMMAND_IDS), "account_id": account, "amount": 1}, context)
    loads = []
    real_load = module.load

    def counting_load(account_id):
        result = real_load(account_id)
        loads.append(result)
        return result

    module.load = counting_load
    for _ in range(MEASURED):
        response = module.lambda_handler({"command": "deposit", "command_id": next(COMMAND_IDS), "account_id": account, "amount": 1}, context)
        if not response["ok"]:
            raise RuntimeError(response)
    snapshots = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="aggregate_id = :id",
        ExpressionAttributeValues={":id": {"S": account + "#snapshot"}},
        Select="COUNT",
        ConsistentRead=True,
    )["Count"]
    items = [result.items_read for result in loads]
    return (
        every,
        statistics.mean(items),
        statistics.mean(result.events_read for result in loads),
        max(items),
        snapshots,
    )


def main():
    from moto import mock_aws

    with mock_aws():
        import boto3

        dynamodb = boto3.client("dynamodb")
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpu = cpu_per_command(dynamodb)
            reads = [reads_per_command(dynamodb, every) for every in SNAPSHOT_SETTINGS]

    handler, put, calls, ratio_put, ratio_calls = cpu
    print(f"(a) CPU time per deposit command, median of {ROUNDS} rounds of {COMMANDS_PER_ROUND} (moto in-process DynamoDB, SNAPSHOT_EVERY=5)")
    header = f"{'handler us':>11} {'put_item us':>12} {'same calls us':>14} {'handler/put_item':>17} {'handler/same calls':>19}"
    print(header)
    print("-" * len(header))
    print(f"{handler:>11.0f} {put:>12.0f} {calls:>14.0f} {ratio_put:>17.1f} {ratio_calls:>19.2f}")
    print()
    print(f"(b) Items read by load() per command, an account with {HISTORY} events, over the next {MEASURED} commands")
    stored = f"snapshots per {HISTORY + MEASURED} events"
    header = f"{'SNAPSHOT_EVERY':>14} {'items read (avg)':>17} {'events read (avg)':>18} {'items read (max)':>17} {stored:>26}"
    print(header)
    print("-" * len(header))
    for every, items, events, most, snapshots in reads:
        label = "0 (never)" if every == 0 else str(every)
        print(f"{label:>14} {items:>17.1f} {events:>18.1f} {most:>17} {snapshots:>26}")


if __name__ == "__main__":
    main()
