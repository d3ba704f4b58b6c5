"""Fixtures for the Lambda handler tests.

Handlers create their AWS clients when they are imported, so a test imports
its handler only after the environment and moto are in place, through
``load_handler``, which loads ``lambdas/<function>/handler.py`` by path under
a fresh module name (every function folder has a ``handler.py``).

Events are built in the shape Lambda's SQS event source mapping delivers,
with the attributes SNS raw delivery produces.
"""

import base64
import contextlib
import hashlib
import importlib.util
import itertools
import json
import logging
import string
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest
from hypothesis import strategies as st
from moto import mock_aws

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FUNCTION_NAME = "exercise01-handler-under-test"

BASE_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
    "POWERTOOLS_SERVICE_NAME": "exercise01-queues",
    "POWERTOOLS_METRICS_NAMESPACE": "Exercise01Queues",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
# Anything that could point the clients at a real account or endpoint.
CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_SECURITY_TOKEN",
    "POWERTOOLS_DEV",
    "POWERTOOLS_IDEMPOTENCY_DISABLED",
)


@contextlib.contextmanager
def handler_environment() -> Iterator[pytest.MonkeyPatch]:
    """The environment every handler runs with (no real account or endpoint reachable); restored on exit."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEARED_ENV:
            patch.delenv(name, raising=False)
        for name, value in BASE_ENV.items():
            patch.setenv(name, value)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        yield patch


@pytest.fixture(scope="module")
def handler_env():
    """The environment every handler runs with; restored after the module."""
    with handler_environment() as patch:
        yield patch


@pytest.fixture(scope="module")
def moto_module(handler_env):
    """moto for a whole test module (hypothesis tests cannot use function-scoped fixtures).

    Yields the module's MonkeyPatch, for the variables a handler adds (table names...).
    """
    with mock_aws():
        yield handler_env


_loaded_names: list[str] = []
_module_numbers = itertools.count()


def _load_handler(function: str) -> ModuleType:
    path = LAMBDAS_DIR / function / "handler.py"
    name = f"handler_under_test_{function}_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _loaded_names.append(name)
    # Lambda runs handler.py with its folder on the path: a function's own small modules import by their names.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.fixture(scope="session")
def load_handler() -> Callable[[str], ModuleType]:
    """Import ``lambdas/<function>/handler.py`` afresh; call it once env and moto are set."""
    yield _load_handler
    for name in _loaded_names:
        sys.modules.pop(name, None)


@dataclass
class FakeLambdaContext:
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{FUNCTION_NAME}"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "7d5f1c3e-1c1a-4d43-9d3c-3f6d8a1b2c4d"
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
    timeout_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@pytest.fixture(scope="session")
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


class SqsEvents:
    """Builds SQS events as the event source mapping passes them to a function."""

    # The principal SNS delivers with, as it appears in SenderId.
    SNS_SENDER_ID = "AIDAIT2UOQQY3AUEKVGXU"

    def __init__(self) -> None:
        self._sequence = itertools.count(18_849_496_460_467_696_128, 65_536)

    def record(
        self,
        body: str,
        *,
        queue: str = "orders",
        message_id: str | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        receive_count: int = 1,
        event_type_attribute: str | None = None,
    ) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        attributes = {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(now_ms - 250),
            "SenderId": self.SNS_SENDER_ID,
            "ApproximateFirstReceiveTimestamp": str(now_ms - 200),
        }
        if queue.endswith(".fifo"):
            if group_id is None:
                raise ValueError("a FIFO record needs a message group id")
            attributes["SequenceNumber"] = str(next(self._sequence))
            attributes["MessageGroupId"] = group_id
            attributes["MessageDeduplicationId"] = deduplication_id or hashlib.sha256(body.encode()).hexdigest()
        message_attributes = {}
        if event_type_attribute is not None:
            message_attributes["event_type"] = {
                "stringValue": event_type_attribute,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        return {
            "messageId": message_id or str(uuid.uuid4()),
            "receiptHandle": base64.b64encode(uuid.uuid4().bytes * 4).decode(),
            "body": body,
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}",
            "awsRegion": REGION,
        }

    def order_record(self, order: dict[str, Any], **options: Any) -> dict[str, Any]:
        """A record carrying an order event, as raw SNS delivery leaves it."""
        if options.get("queue", "").endswith(".fifo"):
            options.setdefault("group_id", order.get("customer_id"))
            options.setdefault("deduplication_id", order.get("event_id"))
        options.setdefault("event_type_attribute", order.get("event_type"))
        return self.record(json.dumps(order), **options)

    @staticmethod
    def event(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": records}


@pytest.fixture(scope="session")
def sqs_events() -> SqsEvents:
    return SqsEvents()


def _order(**overrides: Any) -> dict[str, Any]:
    order = {
        "event_id": str(uuid.uuid4()),
        "event_type": "OrderPlaced",
        "version": 1,
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "total": 123.45,
        "currency": "EUR",
        "occurred_at": "2025-03-14T09:26:53.589000+00:00",
    }
    order.update(overrides)
    return order


@pytest.fixture(scope="session")
def new_order() -> Callable[..., dict[str, Any]]:
    """A valid order event as a dict, with fresh ids; keyword arguments override fields."""
    return _order


# Characters SQS accepts in a message body.
_SQS_TEXT = st.characters(
    codec="utf-8",
    exclude_categories=("Cs",),
    exclude_characters="".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") + "\ufffe\uffff",
)

_ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])

# Values wrong for any field of an order event.
WRONG_FOR_ANY_FIELD = [None, True, False, [], {}, [1], {"value": 1}]


class OrderStrategies:
    """Hypothesis strategies for order-event bodies, good and bad."""

    def valid_order(
        self,
        *,
        event_types: tuple[str, ...] = ("OrderPlaced", "OrderCancelled"),
        min_total: Decimal = Decimal("0"),
    ) -> st.SearchStrategy[dict[str, Any]]:
        ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)
        return st.fixed_dictionaries(
            {
                "event_id": st.uuids(version=4).map(str),
                "event_type": st.sampled_from(event_types),
                "version": st.just(1),
                "order_id": ids.map(lambda suffix: f"o-{suffix}"),
                "customer_id": ids.map(lambda suffix: f"c-{suffix}"),
                "total": st.decimals(min_value=min_total, max_value=Decimal("99999999.99"), places=2).map(float),
                "currency": st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
                "occurred_at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES).map(
                    lambda moment: moment.isoformat()
                ),
            }
        )

    def not_json(self) -> st.SearchStrategy[str]:
        def is_json(text: str) -> bool:
            try:
                json.loads(text)
            except ValueError:
                return False
            return True

        return st.text(_SQS_TEXT, min_size=1, max_size=200).filter(lambda text: not is_json(text))

    def any_json(self) -> st.SearchStrategy[str]:
        scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(_SQS_TEXT, max_size=20))
        keys = st.text(_SQS_TEXT, max_size=10)
        values = st.recursive(
            scalars,
            lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
            max_leaves=12,
        )
        return values.map(json.dumps)

    def broken_order(
        self,
        bad_values: dict[str, list[Any]],
        valid: st.SearchStrategy[dict[str, Any]] | None = None,
    ) -> st.SearchStrategy[str]:
        """A valid order with one field the function reads removed or given a wrong value."""
        valid = valid if valid is not None else self.valid_order()

        @st.composite
        def build(draw: Callable[..., Any]) -> str:
            order = dict(draw(valid))
            field = draw(st.sampled_from(sorted(bad_values)))
            if draw(st.booleans()):
                del order[field]
            else:
                order[field] = draw(st.sampled_from(WRONG_FOR_ANY_FIELD + bad_values[field]))
            return json.dumps(order)

        return build()

    def bad_body(
        self,
        bad_values: dict[str, list[Any]],
        valid: st.SearchStrategy[dict[str, Any]] | None = None,
    ) -> st.SearchStrategy[str]:
        return self.not_json() | self.any_json() | self.broken_order(bad_values, valid)


@pytest.fixture(scope="session")
def order_strategies() -> OrderStrategies:
    return OrderStrategies()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records() -> Callable[[ModuleType], list[logging.LogRecord]]:
    """``log_records(module)`` collects what a loaded handler logs, extra keys included."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def attach(module: ModuleType) -> list[logging.LogRecord]:
        handler = _ListHandler()
        underlying = module.logger._logger  # the logging.Logger behind Powertools' Logger
        underlying.addHandler(handler)
        attached.append((underlying, handler))
        return handler.records

    yield attach
    for underlying, handler in attached:
        underlying.removeHandler(handler)


# --- EventBridge ------------------------------------------------------------
#
# Events in the shape a rule with an SQS target leaves them: the message body
# is the whole event. Used by the Exercise 02 handler tests.


def _eventbridge_event(source: str, detail_type: str, detail: Any, **overrides: Any) -> dict[str, Any]:
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
    event.update(overrides)
    return event


@pytest.fixture(scope="session")
def eventbridge_event() -> Callable[..., dict[str, Any]]:
    """``eventbridge_event(source, detail_type, detail, **overrides)``: an EventBridge event as a dict, with a fresh id."""
    return _eventbridge_event


def _drain_queue(queue_url: str) -> list[dict[str, Any]]:
    import boto3

    sqs = boto3.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )


def _received_events(queue_url: str) -> list[dict[str, Any]]:
    events = []
    for message in _drain_queue(queue_url):
        event = json.loads(message["Body"])
        # moto's default target input leaves "account" out of the event; EventBridge sends it.
        event.setdefault("account", ACCOUNT_ID)
        events.append(event)
    return events


@pytest.fixture(scope="session")
def received_events() -> Callable[[str], list[dict[str, Any]]]:
    """``received_events(queue_url)``: every EventBridge event on the queue (taken off it), as dicts."""
    return _received_events


@dataclass
class EventBusWithQueues:
    name: str
    arn: str
    queue_urls: dict[str, str]
    queue_arns: dict[str, str]


def _event_bus_with_queues(name: str, patterns: dict[str, dict[str, Any]]) -> EventBusWithQueues:
    """A custom bus, and for each queue name a rule with that event pattern and the queue as its target."""
    import boto3

    events, sqs = boto3.client("events"), boto3.client("sqs")
    arn = events.create_event_bus(Name=name)["EventBusArn"]
    urls, arns = {}, {}
    for queue, pattern in patterns.items():
        urls[queue] = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arns[queue] = sqs.get_queue_attributes(QueueUrl=urls[queue], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=f"{queue}-rule", EventBusName=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=f"{queue}-rule", EventBusName=name, Targets=[{"Id": queue, "Arn": arns[queue]}])
    return EventBusWithQueues(name=name, arn=arn, queue_urls=urls, queue_arns=arns)


@pytest.fixture(scope="session")
def event_bus_with_queues() -> Callable[[str, dict[str, dict[str, Any]]], EventBusWithQueues]:
    """``event_bus_with_queues(name, {queue: pattern})``, in the moto that is active."""
    return _event_bus_with_queues


def _create_idempotency_table(name: str) -> None:
    """The idempotency table as the library creates it: Powertools' default key and TTL names."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})


@pytest.fixture(scope="session")
def create_idempotency_table() -> Callable[[str], None]:
    """``create_idempotency_table(name)``, in the moto that is active."""
    return _create_idempotency_table


class EventBridgeStrategies:
    """Hypothesis strategies for EventBridge events, good and bad, and for the Exercise 02 details."""

    _IDS = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)

    def order_id(self) -> st.SearchStrategy[str]:
        return self._IDS.map(lambda suffix: f"o-{suffix}")

    def sku(self) -> st.SearchStrategy[str]:
        return self._IDS.map(lambda suffix: f"SKU-{suffix}")

    def items(self, *, min_size: int = 1, max_quantity: int = 20) -> st.SearchStrategy[list[dict[str, Any]]]:
        item = st.fixed_dictionaries({"sku": self.sku(), "quantity": st.integers(1, max_quantity)})
        return st.lists(item, min_size=min_size, max_size=6)

    def order(self, version: int) -> st.SearchStrategy[dict[str, Any]]:
        fields = {
            "version": st.just(version),
            "order_id": self.order_id(),
            "customer_id": self._IDS.map(lambda suffix: f"c-{suffix}"),
            "total": st.decimals(min_value=Decimal("0"), max_value=Decimal("99999999.99"), places=2).map(float),
            "currency": st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
        }
        if version >= 2:
            fields["items"] = self.items()
        return st.fixed_dictionaries(fields)

    def event(self, source: str, detail_types: tuple[str, ...], detail: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda detail_type, body, event_id, moment: _eventbridge_event(source, detail_type, body, id=event_id, time=moment.strftime("%Y-%m-%dT%H:%M:%SZ")),
            st.sampled_from(detail_types),
            detail,
            st.uuids(version=4).map(str),
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
        )

    def broken_event(self, valid: st.SearchStrategy[dict[str, Any]], bad_values: dict[str, list[Any]]) -> st.SearchStrategy[str]:
        """A valid event with one required field removed or given a value wrong for it.

        ``bad_values`` maps a dotted path ("source", "detail.order_id") to values
        that are wrong there; None is added to every list.
        """

        @st.composite
        def build(draw: Callable[..., Any]) -> str:
            event = json.loads(json.dumps(draw(valid)))
            path = draw(st.sampled_from(sorted(bad_values)))
            *parents, name = path.split(".")
            target = event
            for parent in parents:
                target = target[parent]
            if draw(st.booleans()):
                target.pop(name, None)
            else:
                target[name] = draw(st.sampled_from([None, *bad_values[path]]))
            return json.dumps(event)

        return build()

    def bad_body(self, valid: st.SearchStrategy[dict[str, Any]], bad_values: dict[str, list[Any]]) -> st.SearchStrategy[str]:
        """Not JSON, any JSON, or a broken event."""
        return OrderStrategies().not_json() | OrderStrategies().any_json() | self.broken_event(valid, bad_values)


@pytest.fixture(scope="session")
def eventbridge_strategies() -> EventBridgeStrategies:
    return EventBridgeStrategies()


# --- Exercise 04: event store, read model, stream records ---------------------
#
# The tables as the blueprint creates them, and DynamoDB stream records in the
# shape Lambda's event source mapping delivers, read from moto's own stream.

_function_module_names: list[str] = []


def _load_function_module(function: str, module: str = "handler") -> ModuleType:
    """Import ``lambdas/<function>/<module>.py`` afresh, with its folder importable as in Lambda.

    The folder's other modules are imported anew with it and taken out of
    ``sys.modules`` again afterwards, so two loads never share them and no
    folder's modules leak into another's.
    """
    folder = LAMBDAS_DIR / function
    siblings = {path.stem for path in folder.glob("*.py")}
    hidden = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
    name = f"{module}_under_test_{function}_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    assert spec is not None and spec.loader is not None, folder / f"{module}.py"
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    _function_module_names.append(name)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.path.remove(str(folder))
        for sibling in siblings:
            sys.modules.pop(sibling, None)
        sys.modules.update(hidden)
    return loaded


@pytest.fixture(scope="session")
def load_function_module() -> Callable[..., ModuleType]:
    """``load_function_module(function, module="handler")``: a folder's entry point, imported afresh with its sibling modules."""
    yield _load_function_module
    for name in _function_module_names:
        sys.modules.pop(name, None)


def _create_event_store(name: str) -> str:
    """The event store: ``aggregate_id`` (S) and ``version`` (N), stream of new images. Returns the stream ARN."""
    import boto3

    description = boto3.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "aggregate_id", "AttributeType": "S"}, {"AttributeName": "version", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "aggregate_id", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]
    return description["LatestStreamArn"]


def _create_read_model(name: str) -> None:
    """A read model table: ``account_id`` (S)."""
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _recreate_table(name: str, create: Callable[[str], Any]) -> Any:
    """Drop the table if it exists and create it empty again."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    try:
        dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
    return create(name)


@dataclass(frozen=True)
class AccountTables:
    create_event_store: Callable[[str], str]
    create_read_model: Callable[[str], None]
    recreate: Callable[[str, Callable[[str], Any]], Any]


@pytest.fixture(scope="session")
def account_tables() -> AccountTables:
    """Create (or empty by recreating) the Exercise 04 tables in the moto that is active."""
    return AccountTables(create_event_store=_create_event_store, create_read_model=_create_read_model, recreate=_recreate_table)


class StreamRecords:
    """DynamoDB stream records as the event source mapping passes them to a function."""

    def __init__(self) -> None:
        self._sequence = itertools.count(4_100_000_000_000_000_000_001)

    @staticmethod
    def _as_json(value: Any) -> Any:
        """An attribute value as the stream's JSON carries it: boto3 decodes B and BS to bytes, Lambda passes base64 text."""
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {name: StreamRecords._as_json(item) for name, item in value.items()}
        if isinstance(value, list):
            return [StreamRecords._as_json(item) for item in value]
        return value

    @staticmethod
    def _lambda_shape(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
        stream_record = StreamRecords._as_json(dict(record["dynamodb"]))
        created = stream_record.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):  # boto3 parses it; Lambda passes epoch seconds
            stream_record["ApproximateCreationDateTime"] = int(created.timestamp())
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", REGION),
            "dynamodb": stream_record,
            "eventSourceARN": stream_arn,
        }

    def read_stream(self, stream_arn: str) -> list[dict[str, Any]]:
        """Every record on the table's stream so far, oldest first, from moto's DynamoDB Streams."""
        import boto3
        from botocore.config import Config

        # botocore would send a stream ARN's calls to an account endpoint moto does not serve.
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        records = []
        for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
                if not page["Records"]:
                    break
                records.extend(self._lambda_shape(record, stream_arn) for record in page["Records"])
                iterator = page.get("NextShardIterator")
        return records

    def record(
        self,
        event_name: str,
        *,
        keys: dict[str, Any],
        new_image: dict[str, Any] | None = None,
        stream_arn: str = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/event-store/stream/2025-01-01T00:00:00.000",
    ) -> dict[str, Any]:
        """A hand-made record; ``keys`` and ``new_image`` are already in DynamoDB JSON."""
        stream_record: dict[str, Any] = {
            "ApproximateCreationDateTime": int(time.time()),
            "Keys": keys,
            "SequenceNumber": str(next(self._sequence)),
            "SizeBytes": 100 + len(json.dumps(new_image or {})),
            "StreamViewType": "NEW_IMAGE",
        }
        if new_image is not None:
            stream_record["NewImage"] = new_image
        return {
            "eventID": uuid.uuid4().hex,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": stream_record,
            "eventSourceARN": stream_arn,
        }

    @staticmethod
    def event(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": records}


@pytest.fixture(scope="session")
def stream_records() -> StreamRecords:
    return StreamRecords()


# --- Exercise 04: a request id per invocation -------------------------------------
#
# Lambda gives every invocation a request id of its own (an asynchronous retry
# keeps it). The account command handler is idempotent on it when a command
# has no command_id, so the account tests, which share one context between
# many invocations, see a new request id at each read of ``aws_request_id``
# unless a context was made with one: ``dataclasses.replace(lambda_context,
# aws_request_id="...")`` stands for retries of one invocation.

_ACCOUNT_TEST_MODULES = ("test_account_commands_handler", "test_account_projection_handler", "test_account_rebuild")


def _request_id(context: FakeLambdaContext) -> str:
    return context.__dict__.get("_fixed_request_id") or str(uuid.uuid4())


def _fix_request_id(context: FakeLambdaContext, value: str) -> None:
    context.__dict__["_fixed_request_id"] = value


@pytest.fixture(autouse=True)
def _a_request_id_per_invocation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.module.__name__.rpartition(".")[2] in _ACCOUNT_TEST_MODULES:
        monkeypatch.setattr(FakeLambdaContext, "aws_request_id", property(_request_id, _fix_request_id))


# --- a local stand-in for CloudFormation's pre-signed response URL (custom resource handlers) ---------------------


class _Answers(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        _Answers.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def answers():
    """A local stand-in for CloudFormation's pre-signed response URL: the answers it received."""
    _Answers.received = []
    server = HTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", _Answers.received
    server.shutdown()
