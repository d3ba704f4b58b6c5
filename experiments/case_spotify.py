"""CaseSpotify's experiment: crypto-shredding a listening history, and what per-user keys cost.

Shredding: a listening history (``users`` x ``events_per_user`` events, both families) goes through the real
transformation handler (``lambdas/case_spotify_transform``, one module per family, as one function per family is
deployed) in the buffers Firehose would pass, with moto's KMS and DynamoDB; the rows it answers are what Firehose
would commit. One user is then erased through the real erasure handler (an SQS batch), and a reader with a cold
cache opens every row: the erased user's rows must all fail (their key is gone), every other row must open to the
values the client sent. KMS requests are counted on the wire (a botocore hook on the session the handlers' clients
come from), for the key cache as deployed and for a cache emptied at every invocation, against one per record.

Cost: a month of per-user keys for ``users`` listeners, priced with ``messaging_constructs.costs.PriceTable``:
a customer-managed key per user, a data key per user in a DynamoDB table (this stack), and one key per table.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import math
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from messaging_constructs.costs import PriceTable
from messaging_runtime import listening
from messaging_runtime.contracts.listening import FAMILIES
from messaging_runtime.crypto_shredding import InvalidTag, KeyCache, KeyErased, UserKeys

ROOT = Path(__file__).resolve().parent.parent
REGION, ACCOUNT = "us-east-1", "123456789012"
DATABASE = "casespotify_lake"
BUFFER_RECORDS = 500
#: The history's mix: what share of a user's events each type is (plays and skips on one stream, the rest on the other).
EVENT_MIX = {"play": 0.6, "skip": 0.25, "like": 0.1, "search": 0.05}
_numbers = itertools.count()
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --- the history ---


def history(users: int, events_per_user: int, *, seed: int = 11, start: datetime = datetime(2026, 11, 30, 8, tzinfo=UTC)) -> list[dict[str, Any]]:
    """``users`` x ``events_per_user`` listening events, interleaved in time as they would reach the streams."""
    chance = random.Random(seed)
    tracks = ["spotify:track:" + "".join(chance.choice(_BASE62) for _ in range(22)) for _ in range(300)]
    types, weights = zip(*EVENT_MIX.items(), strict=True)
    events = []
    for number in range(users):
        user, device, country = (
            f"u-{number:04d}",
            chance.choice(["ios", "android", "web", "desktop", "speaker", "car"]),
            chance.choice(["SE", "US", "BR", "DE"]),
        )
        moment = start + timedelta(seconds=chance.randrange(3600))
        for _ in range(events_per_user):
            moment += timedelta(seconds=chance.randrange(20, 240))
            event_type = chance.choices(types, weights)[0]
            event: dict[str, Any] = {
                "schema_version": 1,
                "event_id": str(uuid.UUID(int=chance.getrandbits(128), version=4)),
                "event_type": event_type,
                "event_time": moment.isoformat().replace("+00:00", "Z"),
                "user_id": user,
                "device": device,
                "country": country,
            }
            if event_type == "search":
                event["query"] = chance.choice(["abba", "lofi beats", "sleep", "jazz for work"])
            else:
                event["track_id"] = chance.choice(tracks)
            if event_type in ("play", "skip"):
                event["ms_played"] = chance.randrange(1_000, 30_000) if event_type == "skip" else chance.randrange(30_000, 360_000)
            events.append(event)
    events.sort(key=lambda e: e["event_time"])
    return events


def family_of(event: dict[str, Any]) -> str:
    return next(family for family, types in FAMILIES.items() if event["event_type"] in types)


def firehose_buffers(events: list[dict[str, Any]], *, size: int = BUFFER_RECORDS) -> list[dict[str, Any]]:
    """Firehose transformation events of a Kinesis source, ``size`` records each (arrival one second after the event)."""
    buffers, sequence = [], 49_600_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    for offset in range(0, len(events), size):
        records = []
        for event in events[offset : offset + size]:
            sequence += 1
            arrival = int(datetime.fromisoformat(event["event_time"]).timestamp() * 1000) + 1000
            records.append(
                {
                    "recordId": f"{sequence}000000000000000000000000{len(str(sequence))}",
                    "approximateArrivalTimestamp": arrival,
                    "data": base64.b64encode(json.dumps(event).encode()).decode(),
                    "kinesisRecordMetadata": {"shardId": "shardId-000000000000", "partitionKey": event["user_id"], "sequenceNumber": str(sequence)},
                }
            )
        buffers.append({"invocationId": str(uuid.uuid4()), "region": REGION, "records": records})
    return buffers


# --- the AWS side, in moto ---


def create_tables(dynamodb: Any, user_keys: str, erasures: str) -> None:
    for name, key in ((user_keys, "pk"), (erasures, "request_id")):
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def load_handler(function: str, environment: dict[str, str]) -> ModuleType:
    """``lambdas/<function>/handler.py`` imported afresh under ``environment`` (as a new function instance)."""
    import os

    os.environ.update(environment)
    path = ROOT / "lambdas" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"case_spotify_{function}_{next(_numbers)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class KmsCounter:
    """KMS requests seen on the wire, by operation (a botocore ``before-call`` hook)."""

    calls: Counter[str] = field(default_factory=Counter)

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class LambdaContext:
    function_name = "case-spotify-under-test"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:case-spotify-under-test"
    memory_limit_in_mb = 512
    aws_request_id = "5f0c1f9e-3a8e-4c1e-9b9e-0d1f2a3b4c5d"
    log_group_name = "/aws/lambda/case-spotify-under-test"
    log_stream_name = "2026/12/03/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Shredding:
    """What the experiment measured."""

    users: int
    events: int
    rows: dict[str, list[dict[str, Any]]]
    quarantined: int
    invocations: int
    write_calls: Counter[str]
    write_calls_cold_cache: int
    reader_calls: Counter[str]
    victim: str
    victim_rows: int
    victim_failures: Counter[str]
    others_rows: int
    others_matching: int
    swapped_rejected: int
    swapped_tried: int
    victim_in_clear: int

    @property
    def write_calls_total(self) -> int:
        return sum(self.write_calls.values())


def _write(events: list[dict[str, Any]], handlers: dict[str, ModuleType], *, clear_cache: bool) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """Every event through its family's handler; the rows per table, the records quarantined, the invocations."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    quarantined = invocations = 0
    for family, handler in handlers.items():
        for buffer in firehose_buffers([e for e in events if family_of(e) == family]):
            if clear_cache:
                handler.keys.cache.clear()
            answer = handler.lambda_handler(buffer, LambdaContext())
            invocations += 1
            assert len(answer["records"]) == len(buffer["records"])
            for record in answer["records"]:
                if record["result"] != "Ok":
                    continue
                table = record["metadata"]["otfMetadata"]["destinationTableName"]
                quarantined += table.endswith("_quarantine")
                rows[table].append(json.loads(base64.b64decode(record["data"])))
    return dict(rows), quarantined, invocations


def _transform_environment(family: str, table: str, key_arn: str, cache_seconds: int) -> dict[str, str]:
    return {
        "EVENT_FAMILY": family,
        "LAKE_DATABASE": DATABASE,
        "USER_KEYS_TABLE": table,
        "USER_KEYS_KMS_KEY": key_arn,
        "KEY_CACHE_SECONDS": str(cache_seconds),
        "POWERTOOLS_SERVICE_NAME": "case_spotify_transform",
        "POWERTOOLS_METRICS_NAMESPACE": "CaseSpotify",
    }


def run_shredding(users: int = 50, events_per_user: int = 200, *, victim_number: int = 17, cache_seconds: int = 300) -> Shredding:
    """The experiment; call it inside moto (``mock_aws``) with the handler environment set (region, fake credentials)."""
    events = history(users, events_per_user)
    counter = KmsCounter()
    boto3.setup_default_session(region_name=REGION)
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.kms", counter)
    kms, dynamodb, sqs_events = boto3.client("kms"), boto3.client("dynamodb"), []
    key_arn = kms.create_key(Description="CaseSpotify user data keys")["KeyMetadata"]["Arn"]
    counter.calls.clear()

    # Cold cache at every invocation first, on tables of its own: only its KMS count is kept.
    create_tables(dynamodb, "cold-user-keys", "cold-erasures")
    cold = {family: load_handler("case_spotify_transform", _transform_environment(family, "cold-user-keys", key_arn, cache_seconds)) for family in FAMILIES}
    _write(events, cold, clear_cache=True)
    cold_calls = counter.total
    counter.calls.clear()

    # As deployed: one warm function per family, its key cache kept between invocations.
    create_tables(dynamodb, "user-keys", "erasures")
    handlers = {family: load_handler("case_spotify_transform", _transform_environment(family, "user-keys", key_arn, cache_seconds)) for family in FAMILIES}
    rows, quarantined, invocations = _write(events, handlers, clear_cache=False)
    write_calls = Counter(counter.calls)
    counter.calls.clear()

    # Erase one user through the erasure handler, as the queue would deliver the request.
    victim = f"u-{victim_number:04d}"
    erasure = load_handler(
        "case_spotify_erasure",
        {"USER_KEYS_TABLE": "user-keys", "ERASURES_TABLE": "erasures", "POWERTOOLS_SERVICE_NAME": "case_spotify_erasure"},
    )
    request = {"schema_version": 1, "request_id": "er-0001", "user_id": victim, "requested_at": "2026-12-01T09:00:00Z"}
    sqs_events.append({"Records": [_sqs_record(request)]})
    answer = erasure.lambda_handler(sqs_events[-1], LambdaContext())
    assert answer == {"batchItemFailures": []}, answer
    assert counter.total == 0, "the erasure made KMS requests"

    # A reader with a cold cache opens every row.
    reader = UserKeys(dynamodb=dynamodb, kms=kms, table_name="user-keys", kms_key_id=key_arn, cache=KeyCache(ttl_seconds=3600))
    sent = {e["event_id"]: e for e in events}
    victim_rows = others_rows = others_matching = 0
    failures: Counter[str] = Counter()
    for table, table_rows in rows.items():
        if table.endswith("_quarantine"):
            continue
        for row in table_rows:
            original = sent[row["event_id"]]
            try:
                opened = listening.open_row(table, row, reader.for_key)
            except KeyErased:
                failures["key erased"] += original["user_id"] == victim
                failures["other user's key erased"] += original["user_id"] != victim
            except InvalidTag:
                failures["authentication failed"] += 1
            else:
                expected = {name: str(original[name]) for name in opened}
                others_matching += opened == expected and original["user_id"] != victim
                failures["victim's row opened"] += original["user_id"] == victim
            victim_rows += original["user_id"] == victim
            others_rows += original["user_id"] != victim
    reader_calls = Counter(counter.calls)

    # A sealed value moved into another user's row (or another column, another row) fails authentication.
    swapped_rejected = swapped_tried = 0
    plays = [r for r in rows["plays"] if sent[r["event_id"]]["user_id"] != victim]
    for first, second in zip(plays[:50], plays[50:100], strict=True):
        for moved in ({**second, "track_id": first["track_id"]}, {**second, "device": second["country"]}):
            swapped_tried += 1
            try:
                listening.open_row("plays", moved, reader.for_key)
            except InvalidTag:
                swapped_rejected += 1
    victim_in_clear = sum(victim in json.dumps(row) for table_rows in rows.values() for row in table_rows)
    boto3.DEFAULT_SESSION.events.unregister("before-call.kms", counter)
    return Shredding(
        users=users,
        events=len(events),
        rows=rows,
        quarantined=quarantined,
        invocations=invocations,
        write_calls=write_calls,
        write_calls_cold_cache=cold_calls,
        reader_calls=reader_calls,
        victim=victim,
        victim_rows=victim_rows,
        victim_failures=failures,
        others_rows=others_rows,
        others_matching=others_matching,
        swapped_rejected=swapped_rejected,
        swapped_tried=swapped_tried,
        victim_in_clear=victim_in_clear,
    )


def _sqs_record(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764579600000",
            "SenderId": ACCOUNT,
            "ApproximateFirstReceiveTimestamp": "1764579600000",
        },
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:erasure-requests",
        "awsRegion": REGION,
    }


# --- cost of per-user keys ---

#: Assumptions of the monthly figures (stated in docs/case-spotify.md): each listener listens an hour a day and sends
#: 30 events in that hour, on both families' streams; a reader (a training job) opens every user's rows once a day.
LISTENING_MINUTES_A_DAY = 60
EVENTS_A_DAY = 30
DAYS = 30
READS_A_DAY = 1
#: Tables in the lake with one key each (the per-table alternative): four event types.
TABLES = len(listening.TABLES)


@dataclass(frozen=True)
class KeyCost:
    """One way of keying a month of ``users`` listeners."""

    design: str
    keys: float
    kms_requests: float
    dynamodb_read_units: float
    can_shred_one_user: bool
    prices: PriceTable

    @property
    def usd(self) -> dict[str, float]:
        return {
            "keys": self.keys * self.prices["kms.key"].usd,
            "KMS requests": self.kms_requests * self.prices["kms.request"].usd,
            "DynamoDB reads": self.dynamodb_read_units * self.prices["dynamodb.read_request_unit"].usd,
        }

    @property
    def total(self) -> float:
        return sum(self.usd.values())


def unwraps_a_month(users: int, cache_minutes: float) -> float:
    """Writers' unwraps: per user and day, one per family and cache period of listening, never more than one per event
    (one per event without a cache); plus the reader's one per user per read."""
    periods = len(FAMILIES) * math.ceil(LISTENING_MINUTES_A_DAY / cache_minutes) if cache_minutes > 0 else EVENTS_A_DAY
    return users * DAYS * (min(EVENTS_A_DAY, periods) + READS_A_DAY)


def key_costs(users: int = 1_000_000, prices: PriceTable | None = None) -> list[KeyCost]:
    """A month of keys for ``users`` listeners, four ways. Each unwrap of a data key in the table reads two items
    (user and key, eventually consistent, 0.5 read unit each); a per-user KMS key needs no table."""
    prices = prices or PriceTable.load()
    cached, hour, uncached = unwraps_a_month(users, 5), unwraps_a_month(users, 60), unwraps_a_month(users, 0)
    return [
        KeyCost("a KMS key per user (data keys under it, cached 5 min)", users, cached, 0, True, prices),
        KeyCost("a data key per user in DynamoDB, cached 5 min (this stack)", 1, cached, cached, True, prices),
        KeyCost("a data key per user in DynamoDB, cached 60 min", 1, hour, hour, True, prices),
        KeyCost("a data key per user in DynamoDB, unwrapped for every event", 1, uncached, uncached, True, prices),
        KeyCost(f"one KMS key per table ({TABLES} tables)", TABLES, 0, 0, False, prices),
    ]


def one_time_costs(users: int = 1_000_000, prices: PriceTable | None = None) -> dict[str, float]:
    """Making every user's data key once (GenerateDataKey, a two-item transaction: 4 write units) and erasing one
    user (a consistent read, a three-item transaction: 6 write units)."""
    prices = prices or PriceTable.load()
    write, read, kms = prices["dynamodb.write_request_unit"].usd, prices["dynamodb.read_request_unit"].usd, prices["kms.request"].usd
    return {"making every user's key": users * (kms + 4 * write + read), "erasing one user": 1 * read + 6 * write}


# --- what sealing costs a record ---


def sealing_cost(events: list[dict[str, Any]], *, repeat: int = 3) -> dict[str, float]:
    """CPU per playback record on this machine (best of ``repeat``, µs): reading the event, and reading and sealing its
    row; and the bytes of an event and of its sealed row (the lake stores the row)."""
    import time

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payloads = [json.dumps(e).encode() for e in events if family_of(e) == "playback"]
    aead, key_id, arrived = AESGCM(AESGCM.generate_key(256)), uuid.uuid4().hex, datetime(2026, 12, 1, tzinfo=UTC)

    def best(work: Any) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return min(times) / len(payloads) * 1e6

    read = best(lambda: [listening.read_event(p, "playback") for p in payloads])
    sealed = best(lambda: [listening.event_row(listening.read_event(p, "playback"), arrived, key_id, aead) for p in payloads])
    rows = [listening.event_row(listening.read_event(p, "playback"), arrived, key_id, aead) for p in payloads]
    return {
        "read_us": read,
        "read_and_seal_us": sealed,
        "event_bytes": sum(map(len, payloads)) / len(payloads),
        "row_bytes": sum(len(json.dumps(r, separators=(",", ":"))) for r in rows) / len(rows),
    }
