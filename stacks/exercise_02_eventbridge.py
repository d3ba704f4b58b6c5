"""Exercise02EventBridge: three services that talk only through events on one custom bus."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from messaging_constructs import EventBus, EventPipe, HandlerFunction, IdempotencyTable, Profile, QueueEventSource, ScheduleGroup

from ._blueprint import Blueprint
from .exercise_02_schemas import event_schemas

#: The detail of a RestockRequested event, from the work message's JSON body.
RESTOCK_DETAIL_TEMPLATE = (
    '{"version": <$.body.version>, "kind": "<$.body.kind>", "request_id": "<$.body.request_id>", "sku": "<$.body.sku>", "quantity": <$.body.quantity>}'
)
#: Inventory reserves at most this many units of one SKU per order.
MAX_UNITS_PER_SKU = 10


class Exercise02EventBridgeStack(Stack):
    """Orders, inventory and notifications, decoupled by one encrypted, archived bus.

    - orders publishes ``OrderPlaced`` / ``OrderCancelled`` (PutEvents, 10 per call);
    - a rule routes order events (``exists`` and ``numeric`` filters) to the
      inventory queue; inventory reserves or releases stock and publishes
      ``StockReserved`` / ``StockShortage`` / ``StockReleased``;
    - a rule routes everything from ``blueprints.*`` (``prefix``) except
      ``StockReleased`` (``anything-but``) to the notifications queue;
    - a schedule puts a ``DailyReportRequested`` event on the bus every day;
    - a pipe turns ``restock`` messages of a work queue into ``RestockRequested`` events;
    - consumers sit behind SQS queues so that bursts are buffered; every rule
      target, schedule and queue has a DLQ; the bus is archived for replay and
      every event type and version has a schema in the registry.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(self, profile or Profile.of(self), interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE])
        common, dashboard, queue = blueprint.common, blueprint.dashboard, blueprint.queue

        bus = EventBus(self, "Bus", **common)
        for name, content in event_schemas().items():
            bus.add_schema(name, content)
        idempotency = IdempotencyTable(self, "IdempotencyTable", **common)

        def function(construct_id: str, code: str, **environment: str) -> HandlerFunction:
            return blueprint.function(construct_id, code, environment={"BUS_NAME": bus.bus.event_bus_name, **environment})

        # Idempotency records outlive the archive, so a replay of any archived event is recognised.
        remember = str(int(max(Duration.days(14).to_seconds(), (bus.archive_retention or Duration.days(0)).to_seconds())))

        publisher = function("OrdersPublisher", "orders_publisher")
        bus.grant_put_events(publisher, sources=["blueprints.orders"])

        inventory_queue = queue("InventoryQueue")
        inventory = function(
            "Inventory",
            "inventory_service",
            IDEMPOTENCY_TABLE_NAME=idempotency.table.table_name,
            IDEMPOTENCY_EXPIRES_AFTER_SECONDS=remember,
            MAX_UNITS_PER_SKU=str(MAX_UNITS_PER_SKU),
        )
        idempotency.grant_idempotency(inventory)
        bus.grant_put_events(inventory, sources=["blueprints.inventory"])
        QueueEventSource(self, "InventorySource", consumer=inventory, queue=inventory_queue, max_concurrency=5)
        bus.add_rule(
            "InventoryRule",
            description="Order events, any supported version, to inventory",
            event_pattern=events.EventPattern(
                source=["blueprints.orders"],
                detail_type=["OrderPlaced", "OrderCancelled"],
                detail={"order_id": events.Match.exists(), "version": events.Match.greater_than_or_equal(1)},
            ),
            target=inventory_queue,
        )

        notifications_queue = queue("NotificationsQueue")
        notifications = function(
            "Notifications", "notifications_service", IDEMPOTENCY_TABLE_NAME=idempotency.table.table_name, IDEMPOTENCY_EXPIRES_AFTER_SECONDS=remember
        )
        idempotency.grant_idempotency(notifications)
        QueueEventSource(
            self,
            "NotificationsSource",
            consumer=notifications,
            queue=notifications_queue,
            batch_size=50,
            max_batching_window=Duration.seconds(5),
            max_concurrency=2,
        )
        bus.add_rule(
            "NotificationsRule",
            description="Everything the blueprint's services publish, but stock releases",
            event_pattern=events.EventPattern(
                source=events.Match.prefix("blueprints."),
                detail_type=events.Match.anything_but("StockReleased"),
            ),
            target=notifications_queue,
        )
        dashboard.monitor(bus)

        schedules = ScheduleGroup(self, "Schedules", **common)
        schedules.put_event(
            "DailyReport",
            schedule=scheduler.ScheduleExpression.cron(minute="0", hour="6"),
            bus=bus,
            source="blueprints.scheduler",
            detail_type="DailyReportRequested",
            detail={"version": 1, "report": "daily"},
            description="Asks for the daily report at 06:00 UTC",
        )

        work_queue = queue("WorkQueue")
        EventPipe(
            self,
            "RestockPipe",
            source=work_queue,
            target=bus,
            filter_patterns=[{"body": {"kind": ["restock"]}}],
            # The body's fields, not "<$.body>": a JSON body in that form loses its quotes.
            input_template=RESTOCK_DETAIL_TEMPLATE,
            event_source="blueprints.warehouse",
            detail_type="RestockRequested",
            **common,
        )

        CfnOutput(self, "BusName", value=bus.bus.event_bus_name)
        CfnOutput(self, "ArchiveName", value=bus.archive.archive_name if bus.archive else "-")
        CfnOutput(self, "OrdersPublisherFunctionName", value=publisher.function.function_name)
        CfnOutput(self, "WorkQueueUrl", value=work_queue.queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
        for name, q in (("Inventory", inventory_queue), ("Notifications", notifications_queue)):
            CfnOutput(self, f"{name}DeadLetterQueueUrl", value=q.dead_letter_queue.queue_url)
