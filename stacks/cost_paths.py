"""Each blueprint's main path, priced by ``make cost`` (``messaging_constructs.costs``), and the levers that move it.

A path names the stack's resources by their CDK names; the template gives what it knows (FIFO or not, memory,
batch sizes, key reuse, billing mode, readers of a stream), this module what it cannot: how many messages take each
branch, the writes a handler makes per record and the CPU it spends per record. CPU figures are the measured ones
of docs/performance.md ("Consumer CPU per record", ``make bench``); ``tests/test_cost_report.py`` keeps them equal.
Waits on AWS are assumptions, stated once here: ``DYNAMODB_MS`` per DynamoDB call, ``API_MS`` per call to SNS,
SQS, EventBridge or Kinesis.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from messaging_constructs.costs import (
    BusEvents,
    Delivery,
    DeviceMessages,
    Function,
    Hop,
    KmsCalls,
    Path,
    PipeRequests,
    Publish,
    Queue,
    RestRequests,
    StreamRecords,
    TableWrites,
    Traffic,
    WebSocketMessages,
    Workflow,
)

#: Assumed wait per synchronous DynamoDB call and per call to another AWS API, in milliseconds.
DYNAMODB_MS = 6.0
API_MS = 15.0
#: Measured CPU per record (µs on one core), docs/performance.md "Consumer CPU per record".
CPU_US = {
    "billing": 24.2,
    "as deployed with a log line per record": 101.0,
    "notifications in memory": 154.0,
    "inventory in memory": 111.0,
    "clickstream aggregator": 26.7,
    "account projection": 48.7,
    "shipment consumer": 57.6,
    "invoice consumer": 73.0,
    "lake transformation": 53.3,
    "event aggregator": 24.7,
}
#: Powertools idempotency bookkeeping per record, measured beside them (docs/performance.md).
IDEMPOTENCY_US = 70.0
#: A handler whose CPU per record has not been measured: the largest measured figure, as a bound.
UNMEASURED_US = 154.0

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Lever:
    """One change to a path and what it does to the cost: ``path`` priced on the template ``transform`` makes."""

    name: str
    path: Path
    traffic: Traffic = Traffic()
    transform: Transform | None = None


@dataclass(frozen=True)
class MainPath:
    """A blueprint's main path: what one message is, its hops, the load assumed, and its levers."""

    message: str
    path: Path
    traffic: Traffic = Traffic()
    levers: list[Lever] = field(default_factory=list)


def _set_on_all(resource_type: str, **properties: Any) -> Transform:
    """A template transform that sets ``properties`` on every resource of ``resource_type`` (a what-if, not a deployable template)."""

    def transform(template: Mapping[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(dict(template))
        for resource in changed["Resources"].values():
            if resource["Type"] == resource_type:
                resource.setdefault("Properties", {}).update(properties)
        return changed

    return transform


def _exercise_01(*, publish_batch: int = 10, consumer_batch: int | None = None) -> Path:
    billing, fraud, audit = (
        Queue("Billing", records=consumer_batch),
        Queue("FraudReview", share=0.1, records=consumer_batch),
        Queue("Audit", records=consumer_batch),
    )
    ledger = Queue("Ledger", records=consumer_batch)
    logged = CPU_US["as deployed with a log line per record"]
    return Path(
        "an order event, published in batches to both topics, through the four queues (10 % to fraud review)",
        [
            Function("Producer", cpu_us_per_record=UNMEASURED_US, wait_ms=2 * API_MS, records=publish_batch),
            Publish("Orders", batch=publish_batch),
            Publish("OrdersFifo", batch=publish_batch),
            billing,
            Function("BillingConsumer", cpu_us_per_record=CPU_US["billing"] + IDEMPOTENCY_US, wait_ms_per_record=2 * DYNAMODB_MS, batch_of=billing),
            TableWrites("IdempotencyTable", write_units=2),
            fraud,
            Function("FraudReviewConsumer", cpu_us_per_record=logged, batch_of=fraud, log_bytes_per_record=350, share=0.1),
            audit,
            Function("AuditConsumer", cpu_us_per_record=logged, batch_of=audit, log_bytes_per_record=350),
            ledger,
            Function("LedgerConsumer", cpu_us_per_record=logged, batch_of=ledger, log_bytes_per_record=350),
        ],
    )


def _exercise_02() -> Path:
    inventory, notifications = Queue("InventoryQueue"), Queue("NotificationsQueue")
    return Path(
        "an order placed: OrderPlaced and StockReserved on the bus, inventory and notifications each consuming through their queue",
        [
            Function("OrdersPublisher", cpu_us_per_record=UNMEASURED_US, wait_ms=API_MS, records=10),
            BusEvents("Bus", events=2),
            inventory,
            Function("Inventory", cpu_us_per_record=CPU_US["inventory in memory"], wait_ms=API_MS, wait_ms_per_record=2 * DYNAMODB_MS, batch_of=inventory),
            TableWrites("IdempotencyTable", write_units=4),
            notifications,
            Function("Notifications", cpu_us_per_record=CPU_US["notifications in memory"], wait_ms_per_record=2 * DYNAMODB_MS, batch_of=notifications),
        ],
    )


def _exercise_03() -> Path:
    return Path(
        "a click produced to the clickstream topic by a client and aggregated per user (MSK bills brokers, not records)",
        [
            Function("Aggregator", cpu_us_per_record=CPU_US["clickstream aggregator"], wait_ms_per_record=DYNAMODB_MS, records=500),
            TableWrites("Aggregates", write_units=1),
        ],
    )


def _exercise_04() -> Path:
    return Path(
        "a command (Lambda Invoke) appending one event, a snapshot every fifth, projected into the balances",
        [
            Function("Commands", cpu_us_per_record=UNMEASURED_US, wait_ms=3 * DYNAMODB_MS, records=1),
            TableWrites("EventStore", write_units=2 * (2 + 1 / 5), read_units=2),
            Function("BalancesHandler", cpu_us_per_record=CPU_US["account projection"], wait_ms_per_record=DYNAMODB_MS, records=100),
            TableWrites("BalancesReadModel", write_units=1),
        ],
    )


def _exercise_05() -> Path:
    return Path(
        "a shipment update over AMQP through RabbitMQ to its consumer (Amazon MQ bills brokers, not messages), 10 % delayed ones bridged to the bus",
        [
            Function("ShipmentConsumer", cpu_us_per_record=CPU_US["shipment consumer"], wait_ms_per_record=DYNAMODB_MS, records=10),
            TableWrites("Shipments", write_units=1),
            BusEvents("Bus", events=0.1),
            Queue("CustomerCareQueue", share=0.1, records=1),
        ],
    )


def _capstone_orders() -> Path:
    saga, status = Queue("SagaStarts"), Queue("StatusUpdates", records=4)
    return Path(
        "an order on the happy path, from POST /orders to CONFIRMED, one status page watching it",
        [
            RestRequests(1),
            Function("OrderApiHandler", cpu_us_per_record=UNMEASURED_US, wait_ms=DYNAMODB_MS, records=1),
            KmsCalls("the status page's token made and checked", 2),
            TableWrites("Orders", write_units=12, read_units=3),
            TableWrites("OutboxTable", write_units=8),
            PipeRequests("OutboxPipe", 4),
            BusEvents("Bus", events=4),
            saga,
            Function("SagaStarter", cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=API_MS, batch_of=saga),
            Workflow("OrderSaga", transitions=8),
            Function("StockReservations", cpu_us_per_record=UNMEASURED_US, wait_ms=2 * DYNAMODB_MS, records=1),
            TableWrites("Stock", write_units=2, read_units=1),
            Function("PaymentsHandler", cpu_us_per_record=UNMEASURED_US, wait_ms=2 * DYNAMODB_MS, records=1),
            TableWrites("Payments", write_units=1, read_units=1),
            Function("OrderStatus", cpu_us_per_record=UNMEASURED_US, wait_ms=2 * DYNAMODB_MS, records=1, share=3),
            Queue("StatusUpdates", share=3, records=4),
            Function("StatusPusher", cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=DYNAMODB_MS + API_MS, batch_of=status, share=3),
            TableWrites("StatusApiConnections", read_units=1),
            WebSocketMessages(3, connection_minutes=1),
            Function("StatusConnections", cpu_us_per_record=UNMEASURED_US, wait_ms=DYNAMODB_MS, records=1, share=2),
        ],
    )


def _capstone_analytics(*, mqtt: bool = False, per_event_requests: bool = False) -> Path:
    ingress = [DeviceMessages("Devices")] if mqtt else [RestRequests(1 if per_event_requests else 1 / 500)]
    return Path(
        ("a device event over MQTT" if mqtt else "an event posted over HTTP (500 a request)") + " into the stream, the Iceberg lake and the minute aggregates",
        [
            *ingress,
            StreamRecords("Events"),
            Function("LakeTransform", cpu_us_per_record=CPU_US["lake transformation"], records=5000, log_bytes=800),
            Delivery("Delivery", row_bytes=1300),
            Function("EventAggregator", cpu_us_per_record=CPU_US["event aggregator"], records=1000, wait_ms=10 * DYNAMODB_MS),
            TableWrites("Aggregates", write_units=0.02),
        ],
    )


def _case_netflix() -> Path:
    recommendations, analytics, quality = Queue("RecommendationsEvents"), Queue("AnalyticsEvents"), Queue("QualityEvents", share=0.25)

    def team(queue: Queue, function: str, share: float = 1.0) -> list[Hop]:
        return [
            queue,
            Function(function, cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=DYNAMODB_MS, batch_of=queue, share=share),
            TableWrites("CircuitBreakers", read_units=0.5 * share),  # the breaker's eventually consistent GetItem per event
        ]

    return Path(
        "a playback event put on the bus once, routed to the recommendations and analytics teams (a quarter, rebuffered stops, to quality too)",
        [BusEvents("Bus"), *team(recommendations, "RecommendationsConsumer"), *team(analytics, "AnalyticsConsumer"), *team(quality, "QualityConsumer", 0.25)],
    )


def _case_uber() -> Path:
    # A position also deletes the driver's entry in its old cell when the cell changes: 7 % of filtered positions in the experiment.
    writes = 2.07
    return Path(
        "a driver's position over MQTT (after the app's distance filter), through the drivers' rule and the positions stream into the H3 index",
        [
            DeviceMessages("Drivers"),
            StreamRecords("Positions"),
            Function("PositionsHandler", cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=writes * DYNAMODB_MS, records=100),
            TableWrites("DriverIndex", write_units=writes),
        ],
    )


def _case_airbnb() -> Path:
    saga = Queue("SagaStarts")
    return Path(
        "a booking requested, charged once and confirmed, and its two events on the ledger",
        [
            Function("BookingCommands", cpu_us_per_record=UNMEASURED_US, wait_ms=3 * DYNAMODB_MS, records=1, share=2),  # request, confirm
            TableWrites("EventStore", write_units=8, read_units=4),  # 2 events + 2 markers, transactional; marker read + query per command
            TableWrites("OutboxTable", write_units=4),
            PipeRequests("OutboxPipe", 2),
            BusEvents("Bus", events=2),
            saga,
            Function("SagaStarter", cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=API_MS, batch_of=saga),
            Workflow("PaymentSaga", transitions=4),
            Function("Payments", cpu_us_per_record=UNMEASURED_US, wait_ms=3 * DYNAMODB_MS + API_MS, records=1),
            TableWrites("PaymentRequests", write_units=2, read_units=1),
            Function("LedgerHandler", cpu_us_per_record=CPU_US["account projection"], wait_ms_per_record=DYNAMODB_MS, records=2),
            TableWrites("LedgerReadModel", write_units=2),
        ],
    )


def _case_spotify(*, unwraps_per_event: float = 24 / 30) -> Path:
    # 24 unwraps a day (2 families x 12 five-minute periods) for 30 events a day per listener (docs/case-spotify.md).
    return Path(
        "a play on the playback stream, sealed under the user's cached data key by the transformation, into the plays table",
        [
            StreamRecords("PlaybackEvents"),
            Function("PlaybackTransform", cpu_us_per_record=UNMEASURED_US, records=3000, log_bytes=800),
            KmsCalls("the user's data key unwrapped (5-minute cache)", unwraps_per_event),
            TableWrites("UserKeys", read_units=unwraps_per_event),  # two eventually consistent reads per unwrap
            Delivery("PlaybackDelivery", row_bytes=600),
        ],
    )


#: Each blueprint's main path and its levers.
MAIN_PATHS: dict[str, MainPath] = {
    "Exercise01Queues": MainPath(
        "order event",
        _exercise_01(),
        levers=[
            Lever("unbatched: producer publishes one at a time, consumers take one message each", _exercise_01(publish_batch=1, consumer_batch=1)),
            Lever(
                "FIFO everywhere: every topic and queue FIFO, not only the ledger",
                _exercise_01(),
                transform=lambda t: _set_on_all("AWS::SQS::Queue", FifoQueue=True)(_set_on_all("AWS::SNS::Topic", FifoTopic=True)(t)),
            ),
            Lever(
                "no data-key reuse: the producer encrypts each message with a data key of its own (envelope encryption, no cache)",
                Path("", [*_exercise_01().hops, KmsCalls("a data key made per message and opened by each of its 3.1 consumers", 1 + 3.1)]),
            ),
            Lever("at 1 message a second, keys reused 300 s (as deployed)", _exercise_01(), Traffic(rate=1)),
            Lever(
                "at 1 message a second, keys reused 60 s",
                _exercise_01(),
                Traffic(rate=1),
                _set_on_all("AWS::SQS::Queue", KmsDataKeyReusePeriodSeconds=60),
            ),
            Lever(
                "at 1 message a second, keys reused 24 hours",
                _exercise_01(),
                Traffic(rate=1),
                _set_on_all("AWS::SQS::Queue", KmsDataKeyReusePeriodSeconds=86400),
            ),
        ],
    ),
    "Exercise02EventBridge": MainPath("order placed", _exercise_02()),
    "Exercise03Streaming": MainPath("click", _exercise_03(), Traffic(rate=1000, message_bytes=200)),
    "Exercise04EventSourcing": MainPath("command", _exercise_04(), Traffic(rate=10, message_bytes=500)),
    "Exercise05EnterpriseMessaging": MainPath("shipment update", _exercise_05(), Traffic(rate=10, message_bytes=500)),
    "CapstoneOrders": MainPath("order", _capstone_orders(), Traffic(rate=10, message_bytes=1024)),
    "CapstoneAnalytics": MainPath(
        "event",
        _capstone_analytics(),
        Traffic(rate=1000, message_bytes=1024),
        levers=[
            Lever("one event per HTTP request instead of 500", _capstone_analytics(per_event_requests=True), Traffic(rate=1000)),
            Lever("over MQTT instead of HTTP", _capstone_analytics(mqtt=True), Traffic(rate=1000)),
        ],
    ),
    "CaseNetflix": MainPath("playback event", _case_netflix(), Traffic(rate=100, message_bytes=1024)),
    # 10,000 drivers online x 5.62 positions a minute after the filter (the experiment's share) is about 940 a second.
    "CaseUber": MainPath("position update", _case_uber(), Traffic(rate=940, message_bytes=200)),
    "CaseAirbnb": MainPath("booking", _case_airbnb(), Traffic(rate=10, message_bytes=1024)),
    "CaseSpotify": MainPath(
        "listening event",
        _case_spotify(),
        Traffic(rate=100, message_bytes=263),
        levers=[
            Lever("keys cached 60 minutes instead of 5", _case_spotify(unwraps_per_event=2 / 30), Traffic(rate=100, message_bytes=263)),
            Lever("no key cache: a KMS Decrypt for every event", _case_spotify(unwraps_per_event=1.0), Traffic(rate=100, message_bytes=263)),
        ],
    ),
}
