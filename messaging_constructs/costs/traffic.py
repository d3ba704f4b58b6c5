"""What one million messages cost on a path through a synthesized stack.

A path is a list of hops, each naming the resources it uses by their CDK names; what a hop costs per message is
computed from the template (a queue's FIFO flag and key reuse period, the batch size of the mapping that reads it,
a function's memory, architecture and tracing, a table's billing mode, a state machine's type, a stream's mode and
its readers) and the price table. What the template cannot know is the hop's own: how many writes a handler makes
per record, its CPU time per record (measured by ``make bench``), how long it waits on AWS per call, and how much
it logs. ``Traffic`` gives the rate and the message size the figures assume.

Each hop's docstring says what it counts and where the rule comes from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._templates import referenced
from ._lines import Line, Template
from .prices import PriceTable

MILLION = 1_000_000
#: Lambda gives a function one vCPU at 1,769 MB and CPU in proportion to memory below it (Lambda's memory page).
FULL_VCPU_MB = 1769
#: Lambda's START, END and REPORT lines of one invocation, in bytes (text format, as a REPORT with X-Ray reads).
PLATFORM_LOG_BYTES = 420
#: Lambda's X-Ray sampling, not configurable: one request a second and 5 % of the rest (Lambda developer guide, X-Ray).
XRAY_RESERVOIR_PER_SECOND = 1.0
XRAY_RATE = 0.05
#: SQS reuses a data key for KmsDataKeyReusePeriodSeconds: 60 s to 24 hours, 300 s by default (SQS CreateQueue).
DEFAULT_KEY_REUSE_SECONDS = 300
#: SNS reuses a data key for up to 5 minutes (SNS developer guide, server-side encryption).
SNS_KEY_REUSE_SECONDS = 300


@dataclass(frozen=True)
class Traffic:
    """The load the figures assume: ``rate`` messages a second, each ``message_bytes`` long."""

    rate: float = 100.0
    message_bytes: int = 1024

    @property
    def seconds_per_million(self) -> float:
        return MILLION / self.rate


@dataclass
class Context:
    template: Template
    prices: PriceTable
    traffic: Traffic

    def line(self, item: str, per_message: float, price: str) -> Line:
        """A line for ``per_message`` units of ``price`` a message, priced per million messages."""
        return Line.of(item, per_message * MILLION, price, self.prices)


def _chunks(size: int, chunk_kb: int = 64) -> int:
    return max(1, math.ceil(size / (chunk_kb * 1024)))


def _mapping_of(template: Template, source_id: str) -> Mapping[str, Any]:
    found = template.referring("AWS::Lambda::EventSourceMapping", "EventSourceArn", source_id)
    if len(found) != 1:
        raise LookupError(f"{len(found)} event source mappings read {source_id}; name the hop's batch explicitly")
    return found[0][1]


class Hop:
    """One step of a path; ``lines`` prices it per million messages entering the path."""

    share: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Publish(Hop):
    """Messages published to an SNS topic in batches of ``batch`` (PublishBatch bills a call per 64 KB of payload).

    A FIFO topic also bills the payload published and delivered, and each delivery to a subscribed queue; deliveries
    from a standard topic to SQS and Lambda are free (SNS pricing). An encrypted topic reuses a data key for up to
    five minutes per publishing principal (SNS developer guide, "Estimating AWS KMS costs").
    """

    topic: str
    batch: int = 1
    publishers: int = 1
    share: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        logical_id, props = ctx.template.named(self.topic, "AWS::SNS::Topic")
        size = ctx.traffic.message_bytes
        calls = _chunks(size * self.batch) / self.batch * self.share
        if props.get("FifoTopic"):
            subscriptions = len(ctx.template.referring("AWS::SNS::Subscription", "TopicArn", logical_id))
            gigabytes = size / 1e9 * self.share
            yield ctx.line(f"SNS FIFO publish, {self.topic} (batches of {self.batch})", calls, "sns.fifo_publish")
            yield ctx.line(f"SNS FIFO payload published, GB, {self.topic}", gigabytes, "sns.fifo_publish_payload")
            yield ctx.line(f"SNS FIFO deliveries, {self.topic} ({subscriptions} subscriptions)", subscriptions * self.share, "sns.fifo_delivery")
            yield ctx.line(f"SNS FIFO payload delivered, GB, {self.topic}", subscriptions * gigabytes, "sns.fifo_delivery_payload")
        else:
            yield ctx.line(f"SNS publish, {self.topic} (batches of {self.batch})", calls, "sns.publish")
        if props.get("KmsMasterKeyId") is not None:
            # SNS's formula, R = B / D * (2 * P): two calls per publishing principal per 5-minute data key.
            periods = math.ceil(ctx.traffic.seconds_per_million / SNS_KEY_REUSE_SECONDS)
            yield ctx.line(f"KMS, {self.topic}: data keys reused {SNS_KEY_REUSE_SECONDS} s", 2 * self.publishers * periods / MILLION, "kms.request")


@dataclass
class Queue(Hop):
    """Messages through an SQS queue to the Lambda mapping that reads it.

    Requests: the send (``send_batch`` messages a call; 1 when SNS or EventBridge sends), and the mapping's receive
    and delete, a call each per batch of the mapping's ``BatchSize`` (``records`` overrides it when the batches are
    smaller than full). Standard or FIFO price from the queue's ``FifoQueue``. With a customer-managed key, each
    sending principal calls KMS twice and each receiving principal once per ``KmsDataKeyReusePeriodSeconds`` (the
    formula of the SQS developer guide, "Estimating AWS KMS costs"), so KMS costs per million messages fall with the
    rate. Lambda's pollers also make empty receives on an idle queue; AWS does not document how many, so they are not
    counted.
    """

    queue: str
    send_batch: int = 1
    records: int | None = None
    senders: int = 1
    share: float = 1.0

    def batch(self, ctx: Context) -> int:
        logical_id, _ = ctx.template.named(self.queue, "AWS::SQS::Queue")
        return self.records or int(_mapping_of(ctx.template, logical_id).get("BatchSize", 10))

    def lines(self, ctx: Context) -> Iterator[Line]:
        logical_id, props = ctx.template.named(self.queue, "AWS::SQS::Queue")
        price = "sqs.fifo_request" if props.get("FifoQueue") else "sqs.request"
        batch = self.batch(ctx)
        size = ctx.traffic.message_bytes
        requests = _chunks(size * self.send_batch) / self.send_batch + 2 * _chunks(size * batch) / batch
        yield ctx.line(f"SQS requests, {self.queue} (send in {self.send_batch}s, receive and delete in {batch}s)", requests * self.share, price)
        key = props.get("KmsMasterKeyId")
        if key is not None and not (isinstance(key, str) and key.startswith("alias/aws/")):
            reuse = int(props.get("KmsDataKeyReusePeriodSeconds", DEFAULT_KEY_REUSE_SECONDS))
            # SQS's formula, R = B / D * (2 * P + C): per period each sending principal makes two calls
            # (GenerateDataKey, Decrypt), each receiving principal one. The queue sees its share of the messages over
            # the same time, so the calls do not depend on the share.
            calls = (2 * self.senders + 1) * math.ceil(ctx.traffic.seconds_per_million / reuse) / MILLION
            yield ctx.line(f"KMS, {self.queue}: data keys reused {reuse} s", calls, "kms.request")


@dataclass
class Function(Hop):
    """Invocations of a Lambda function, ``records`` messages each (or the batch size of the queue ``batch_of``).

    Duration per invocation: ``wait_ms`` waiting on AWS per invocation, plus per record ``wait_ms_per_record`` and
    ``cpu_us_per_record`` (measured on one full core by ``make bench``) scaled to the function's share of a vCPU
    (its memory over 1,769 MB), billed per started millisecond at the function's memory and architecture. With
    active tracing, X-Ray records the sampled invocations (default rule). Logs: Lambda's own lines per invocation,
    ``log_bytes`` per invocation (metrics) and ``log_bytes_per_record``.
    """

    function: str
    cpu_us_per_record: float
    wait_ms: float = 0.0
    wait_ms_per_record: float = 0.0
    records: int | None = None
    batch_of: Queue | None = None
    log_bytes: int = 600
    log_bytes_per_record: int = 0
    share: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        _, props = ctx.template.named(self.function, "AWS::Lambda::Function")
        memory = int(props.get("MemorySize", 128))
        arm = "arm64" in props.get("Architectures", [])
        records = self.records or (self.batch_of.batch(ctx) if self.batch_of else 1)
        cpu_ms = self.cpu_us_per_record / 1000 * max(1.0, FULL_VCPU_MB / memory)
        billed_ms = math.ceil(self.wait_ms + records * (cpu_ms + self.wait_ms_per_record))
        invocations = self.share / records
        yield ctx.line(f"Lambda invocations, {self.function} ({records} a batch)", invocations, "lambda.request")
        gb_seconds = invocations * billed_ms / 1000 * memory / 1024
        arch = "arm64" if arm else "x86_64"
        yield ctx.line(f"Lambda GB-seconds, {self.function} ({billed_ms} ms at {memory} MB, {arch})", gb_seconds, f"lambda.gb_second_{arch}")
        log = invocations * (PLATFORM_LOG_BYTES + self.log_bytes) + self.share * self.log_bytes_per_record
        yield ctx.line(f"CloudWatch Logs, GB, {self.function}", log / 1e9, "cloudwatch.logs_ingested")
        if props.get("TracingConfig", {}).get("Mode") == "Active":
            per_second = ctx.traffic.rate * invocations
            traced = min(per_second, XRAY_RESERVOIR_PER_SECOND + XRAY_RATE * max(0.0, per_second - XRAY_RESERVOIR_PER_SECOND))
            yield ctx.line(f"X-Ray traces, {self.function}", traced / ctx.traffic.rate, "xray.trace")


@dataclass
class TableWrites(Hop):
    """DynamoDB request units a message costs in a table: on demand at the request-unit price; provisioned capacity
    is paid by the hour (the idle figure) and adds nothing here. A transactional write takes two units per KB."""

    table: str
    write_units: float = 0.0
    read_units: float = 0.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        _, props = ctx.template.named(self.table, "AWS::DynamoDB::Table")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            return
        if self.write_units:
            yield ctx.line(f"DynamoDB write units, {self.table}", self.write_units, "dynamodb.write_request_unit")
        if self.read_units:
            yield ctx.line(f"DynamoDB read units, {self.table}", self.read_units, "dynamodb.read_request_unit")


@dataclass
class BusEvents(Hop):
    """Events put on an EventBridge bus (billed per 64 KB), ``events`` a message; deliveries to SQS, Lambda, Step
    Functions and other AWS targets are included (EventBridge pricing). An archive of the bus bills the bytes archived."""

    bus: str
    events: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        logical_id, _ = ctx.template.named(self.bus, "AWS::Events::EventBus")
        size = ctx.traffic.message_bytes
        yield ctx.line(f"EventBridge events, {self.bus}", self.events * _chunks(size), "eventbridge.event")
        if ctx.template.referring("AWS::Events::Archive", "SourceArn", logical_id):
            yield ctx.line(f"EventBridge archive, GB, {self.bus}", self.events * size / 1e9, "eventbridge.archive")


@dataclass
class PipeRequests(Hop):
    """Requests through an EventBridge pipe, after its filter (billed per 64 KB)."""

    pipe: str
    requests: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        ctx.template.named(self.pipe, "AWS::Pipes::Pipe")
        yield ctx.line(f"Pipes requests, {self.pipe}", self.requests * _chunks(ctx.traffic.message_bytes), "pipes.request")


@dataclass
class Workflow(Hop):
    """State transitions of a Step Functions state machine a message takes; a standard workflow bills each one.
    At logging level ALL each transition also writes an execution history event of ``log_bytes_per_transition``."""

    state_machine: str
    transitions: int
    log_bytes_per_transition: int = 700

    def lines(self, ctx: Context) -> Iterator[Line]:
        _, props = ctx.template.named(self.state_machine, "AWS::StepFunctions::StateMachine")
        if props.get("StateMachineType", "STANDARD") != "STANDARD":
            raise ValueError(f"{self.state_machine}: only standard workflows are priced")
        yield ctx.line(f"Step Functions transitions, {self.state_machine}", self.transitions, "stepfunctions.transition")
        if props.get("LoggingConfiguration", {}).get("Level") == "ALL":
            yield ctx.line(
                f"CloudWatch Logs, GB, {self.state_machine} (level ALL)", self.transitions * self.log_bytes_per_transition / 1e9, "cloudwatch.logs_ingested"
            )


@dataclass
class RestRequests(Hop):
    """API Gateway REST requests, ``requests`` a message; with a WAF web ACL in the stack each is also inspected."""

    requests: float = 1.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        yield ctx.line("API Gateway REST requests", self.requests, "apigateway.rest_request")
        if any(True for _ in ctx.template.of_type("AWS::WAFv2::WebACL")):
            yield ctx.line("WAF requests inspected", self.requests, "waf.request")


@dataclass
class WebSocketMessages(Hop):
    """API Gateway WebSocket messages (per 32 KB) and connection minutes, per message."""

    messages: float = 1.0
    connection_minutes: float = 0.0

    def lines(self, ctx: Context) -> Iterator[Line]:
        yield ctx.line("API Gateway WebSocket messages", self.messages * _chunks(ctx.traffic.message_bytes, 32), "apigateway.websocket_message")
        if self.connection_minutes:
            yield ctx.line("API Gateway WebSocket connection minutes", self.connection_minutes, "apigateway.websocket_connection_minute")


@dataclass
class StreamRecords(Hop):
    """Records written to a Kinesis stream, ``records_bytes`` each (the message's size by default), and read by
    every reader the template gives it (event source mappings and Firehose delivery streams). On demand: GB in and
    GB out per reader; provisioned: PUT payload units of 25 KB (reads are in the shard-hours)."""

    stream: str
    record_bytes: int | None = None

    def lines(self, ctx: Context) -> Iterator[Line]:
        logical_id, props = ctx.template.named(self.stream, "AWS::Kinesis::Stream")
        size = self.record_bytes or ctx.traffic.message_bytes
        if props.get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND":
            readers = len(ctx.template.referring("AWS::Lambda::EventSourceMapping", "EventSourceArn", logical_id)) + sum(
                1
                for _, p in ctx.template.of_type("AWS::KinesisFirehose::DeliveryStream")
                if referenced(p.get("KinesisStreamSourceConfiguration", {}).get("KinesisStreamARN")) == logical_id
            )
            yield ctx.line(f"Kinesis on-demand GB in, {self.stream}", size / 1e9, "kinesis.on_demand_ingested")
            yield ctx.line(f"Kinesis on-demand GB out, {self.stream} ({readers} readers)", readers * size / 1e9, "kinesis.on_demand_retrieved")
        else:
            yield ctx.line(f"Kinesis PUT payload units, {self.stream}", math.ceil(size / (25 * 1024)), "kinesis.put_payload_unit")


@dataclass
class Delivery(Hop):
    """Bytes a Firehose delivery stream writes to Iceberg tables for a message (``row_bytes``)."""

    delivery_stream: str
    row_bytes: int

    def lines(self, ctx: Context) -> Iterator[Line]:
        ctx.template.named(self.delivery_stream, "AWS::KinesisFirehose::DeliveryStream")
        yield ctx.line(f"Firehose to Iceberg, GB, {self.delivery_stream}", self.row_bytes / 1e9, "firehose.iceberg_ingested")


@dataclass
class DeviceMessages(Hop):
    """MQTT messages into AWS IoT Core (per 5 KB), the topic rule they trigger and its actions (from the template)."""

    rule: str

    def lines(self, ctx: Context) -> Iterator[Line]:
        _, props = ctx.template.named(self.rule, "AWS::IoT::TopicRule")
        actions = len(props["TopicRulePayload"].get("Actions", []))
        yield ctx.line("IoT Core messages", _chunks(ctx.traffic.message_bytes, 5), "iot.message")
        yield ctx.line(f"IoT rule {self.rule} triggered", 1, "iot.rule")
        yield ctx.line(f"IoT rule actions ({actions})", actions, "iot.action")


@dataclass
class KmsCalls(Hop):
    """KMS requests a message makes itself (a signature made and checked, say), not data keys a service reuses."""

    what: str
    calls: float

    def lines(self, ctx: Context) -> Iterator[Line]:
        yield ctx.line(f"KMS, {self.what}", self.calls, "kms.request")


@dataclass
class Path:
    """A message's way through a stack: ``hops`` in order, named ``name``."""

    name: str
    hops: list[Hop] = field(default_factory=list)

    def cost(self, template: Mapping[str, Any], prices: PriceTable, traffic: Traffic = Traffic()) -> list[Line]:
        """The path's lines per million messages."""
        ctx = Context(Template(template), prices, traffic)
        return [line for hop in self.hops for line in hop.lines(ctx)]
