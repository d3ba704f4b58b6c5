"""Exercise 04 figures: the command handler's CPU and reads per command, and the projection's CPU per stream record.

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

(c) CPU time per DynamoDB stream record of the projection (``account_projection``,
    the read model consumer), against the floor of the stream image's own
    decode: ``TypeDeserializer`` over each record's ``NewImage``. The records
    are the INSERTs of event items as the command handler writes them (1,000
    accounts, mostly deposits), in the shape Lambda delivers; each round uses
    newer versions, so every event is applied (no stale path). The table
    gives the medians of per-round figures, as in ``kafka_consumer_cpu.py``:
    once with the read model's DynamoDB client replaced by an in-memory fake
    that keeps each account's version and checks the projection's version
    condition (the handler's own cost), once on moto's in-process DynamoDB.

The handlers run as in Lambda minus the network: Logger and Metrics do their
full work, their output goes to /dev/null, and tracing is off.

Run from the repository root: ``python benchmarks/event_store_commands.py``.
"""

import contextlib
import itertools
import os
import statistics
import sys
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_function, prepare_environment  # noqa: E402
from boto3.dynamodb.types import TypeDeserializer  # noqa: E402

TABLE = "benchmark-event-store"
ROUNDS = 5
COMMANDS_PER_ROUND = 100
HISTORY = 200  # events before the measured commands in (b)
MEASURED = 50
SNAPSHOT_SETTINGS = (0, 5, 20, 100)
READ_MODEL = "benchmark-read-model"
PROJECTION_ROUNDS = 5
PROJECTION_MOTO_ROUNDS = 3
PROJECTION_RECORDS = 10_000  # per round: batches until this many records
PROJECTION_MOTO_RECORDS = 1_000  # moto's UpdateItem costs a millisecond or more
PROJECTION_BATCH_SIZES = (100, 1_000)
ACCOUNTS = 1_000
TARGET_RATIO = 3

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise04-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise04Benchmark",
    EVENT_STORE_TABLE=TABLE,
    READ_MODEL_TABLE=READ_MODEL,
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


# --- (c) the projection: CPU per stream record ------------------------------------------------

_versions = dict.fromkeys(range(ACCOUNTS), 0)
_sequence = itertools.count(4_100_000_000_000_000_000_001)


def stream_event(size):
    """A DynamoDB stream event of ``size`` INSERTs of event items, each account's versions going on from the last event's."""
    records = []
    for index in range(size):
        account = (index * 7919) % ACCOUNTS
        _versions[account] += 1
        version = _versions[account]
        kind = "AccountOpened" if version == 1 else ("MoneyWithdrawn" if version % 4 == 0 else "MoneyDeposited")
        data = {"owner": {"S": "Benchmark Owner"}} if version == 1 else {"amount": {"N": "12.5"}}
        image = {
            "aggregate_id": {"S": f"acc-{account:05d}"},
            "version": {"N": str(version)},
            "kind": {"S": "event"},
            "type": {"S": kind},
            "data": {"M": data},
            "balance": {"N": str(1000 + version)},
            "status": {"S": "open"},
            "owner": {"S": "Benchmark Owner"},
            "occurred_at": {"S": "2025-03-14T09:26:53.589+00:00"},
            "command_id": {"S": str(uuid.uuid4())},
        }
        keys = {"aggregate_id": image["aggregate_id"], "version": image["version"]}
        stream = {"ApproximateCreationDateTime": 1741944413, "Keys": keys, "NewImage": image, "SequenceNumber": str(next(_sequence)), "SizeBytes": 300}
        records.append(
            {
                "eventID": uuid.uuid4().hex,
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {**stream, "StreamViewType": "NEW_IMAGE"},
                "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/2025-01-01T00:00:00.000",
            }
        )
    return {"Records": records}


_deserialize = TypeDeserializer().deserialize


def decode_images(event):
    """The floor: the stream image's own decode, as plain values."""
    for record in event["Records"]:
        {name: _deserialize(value) for name, value in record["dynamodb"]["NewImage"].items()}


class FakeReadModel:
    """UpdateItem in memory with the projection's condition (an older version or none): what it sends DynamoDB, minus the network."""

    def __init__(self):
        self.versions = {}

    def update_item(self, *, Key, ExpressionAttributeValues, **_):  # noqa: N803 - boto3's names
        from botocore.exceptions import ClientError

        account, version = Key["account_id"]["S"], int(ExpressionAttributeValues[":version"]["N"])
        if self.versions.get(account, 0) >= version:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
        self.versions[account] = version
        return {}


def per_record_us(events, run):
    records = sum(len(event["Records"]) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


def measure_projection(label, module, batch_size, rounds, records_per_round):
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    module.lambda_handler(stream_event(10), context)  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        events = [stream_event(batch_size) for _ in range(max(1, records_per_round // batch_size))]
        handler = per_record_us(events, run_handler)
        floor = per_record_us(events, decode_images)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    return label, batch_size, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios)


def projection_rows(dynamodb):
    dynamodb.create_table(
        TableName=READ_MODEL,
        AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    projection = load_function("account_projection", "benchmark_account_projection")
    moto_client = projection.dynamodb
    projection.dynamodb = FakeReadModel()
    rows = [measure_projection("in-memory fake DynamoDB", projection, size, PROJECTION_ROUNDS, PROJECTION_RECORDS) for size in PROJECTION_BATCH_SIZES]
    projection.dynamodb = moto_client
    rows.append(measure_projection("moto DynamoDB (in process)", projection, 100, PROJECTION_MOTO_ROUNDS, PROJECTION_MOTO_RECORDS))
    return rows


def main():
    from moto import mock_aws

    with mock_aws():
        import boto3

        dynamodb = boto3.client("dynamodb")
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpu = cpu_per_command(dynamodb)
            reads = [reads_per_command(dynamodb, every) for every in SNAPSHOT_SETTINGS]
            projection = projection_rows(dynamodb)

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
    print()
    print(
        f"(c) account_projection: CPU time per stream record, median of {PROJECTION_ROUNDS} rounds ({PROJECTION_MOTO_ROUNDS} on moto); "
        f"{ACCOUNTS:,} accounts; floor = TypeDeserializer over each NewImage"
    )
    header = f"{'run':28} {'batch':>6} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, handler, floor, ratio in projection:
        print(f"{label:28} {size:>6} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")
    ratio = next(row[4] for row in projection if row[0].startswith("in-memory") and row[1] == 100)
    print(f"projection at batch 100, DynamoDB faked in memory: {ratio:.1f} x the decode floor (target: at most {TARGET_RATIO} x)")


if __name__ == "__main__":
    main()
