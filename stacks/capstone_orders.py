"""CapstoneOrders: real-time order processing with an outbox, a saga with compensations and a circuit breaker."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from messaging_constructs import (
    AwaitCallback,
    EventBus,
    HandlerFunction,
    Invoke,
    Outbox,
    Profile,
    PushWebSocketApi,
    QueueEventSource,
    Saga,
    SagaStep,
    ScheduleGroup,
    SecureRestApi,
    StateTable,
)
from messaging_constructs.acknowledgements import lambda_inside_vpc_websocket_pusher
from messaging_constructs.monitoring._alarms import make_alarm
from messaging_runtime.checkout import OPEN_ORDERS_INDEX
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED, ORDER_STATUS_CHANGED, SOURCE, PlaceOrderRequest
from messaging_runtime.contracts.schemas import json_schema
from messaging_runtime.saga_steps import SAGA_ORDER_FIELDS

from ._blueprint import Blueprint
from ._order_kpis import add_business_view

#: An order not in a terminal status this long after it was accepted is past its deadline (the reconciler's cue).
ORDER_DEADLINE = Duration.minutes(30)


def request_model() -> dict[str, Any]:
    """The draft 4 schema API Gateway validates ``POST /orders`` with: the contract's, producer view, definitions inlined."""
    schema = json_schema(PlaceOrderRequest, consumer=False)
    definitions = schema.pop("definitions", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    return inline(schema)


class CapstoneOrdersStack(Stack):
    """Orders placed over HTTP, carried through a saga, every status change published through an outbox.

    - the order API writes an order and its ``OrderAccepted`` in one transaction
      (orders table and the :class:`Outbox`); the outbox pipe puts every event
      of an order on the bus in the order written;
    - a rule sends ``OrderAccepted`` to the saga-starts queue; the starter runs
      one saga per order (execution name = order id, so a duplicate is refused);
    - the :class:`Saga` reserves stock, authorizes the payment (behind a
      circuit breaker kept in DynamoDB), waits for the merchant (a task token
      on the merchant queue, with a timeout) and confirms; any failure records
      COMPENSATING, voids the authorization and releases the stock (last first),
      and ends COMPENSATED, or CANCELLED when the customer asked;
    - every status change is written with its ``OrderStatusChanged`` event in
      one transaction, through the outbox, by the status steps.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = profile or Profile.of(self)
        blueprint = Blueprint.create(
            self,
            profile,
            interface_endpoints=[
                ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
                ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
                ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
                ec2.InterfaceVpcEndpointAwsService.KMS,
            ],
        )
        common, dashboard, queue = blueprint.common, blueprint.dashboard, blueprint.queue

        bus = EventBus(self, "Bus", **common)
        orders = StateTable(self, "Orders", partition_key="order_id", **common)
        # Orders not yet terminal, by deadline: what the reconciler reads (sparse: the key goes when the order ends).
        orders.table.add_global_secondary_index(
            index_name=OPEN_ORDERS_INDEX,
            partition_key=dynamodb.Attribute(name="open", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="deadline", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["status", *SAGA_ORDER_FIELDS[1:]],
        )
        outbox = Outbox(self, "Outbox", bus=bus, event_source=SOURCE, network=blueprint.network, **common)
        stock = StateTable(self, "Stock", partition_key="pk", **common)
        payments = StateTable(self, "Payments", partition_key="pk", **common)  # authorizations, by order
        breakers = StateTable(self, "CircuitBreakers", partition_key="pk", time_to_live_attribute="expires_at", **common)
        dashboard.monitor(bus).monitor(outbox).monitor(orders).monitor(stock).monitor(payments)

        def function(construct_id: str, code: str, **environment: str) -> HandlerFunction:
            return blueprint.function(construct_id, code, environment=environment)

        order_tables = {"ORDERS_TABLE_NAME": orders.table.table_name, "OUTBOX_TABLE_NAME": outbox.table.table_name}
        # Accepting an order is one transaction: a 100 ms design budget warm; the alarm allows for cold starts (p99 over 15 minutes).
        api = SecureRestApi(self, "OrderApi", description="Place, read and cancel orders", latency_alarm_threshold=Duration.millis(250), **common)
        # Live status: a WebSocket API whose connections subscribe to one order each, with the token the order API gives.
        live = PushWebSocketApi(self, "StatusApi", handler=function("StatusConnections", "status_connections"), **common)
        dashboard.monitor(live)
        order_api = function(
            "OrderApiHandler",
            "order_api",
            **order_tables,
            ORDER_DEADLINE_SECONDS=str(int(ORDER_DEADLINE.to_seconds())),
            STATUS_TOKEN_KEY_ID=live.token_key.key_arn,
        )
        live.grant_issue_tokens(order_api)
        orders.grant_items(order_api, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        outbox.grant_write(order_api)
        api.add_route("POST", "/orders", order_api, request_model=request_model(), required_headers=["Idempotency-Key"])
        api.add_route("GET", "/orders/{order_id}", order_api)
        api.add_route("POST", "/orders/{order_id}/cancel", order_api)
        dashboard.monitor(api)
        status = function("OrderStatus", "order_status", **order_tables)
        orders.grant_items(status, "dynamodb:GetItem", "dynamodb:UpdateItem")
        outbox.grant_write(status)
        stock_reservations = function("StockReservations", "stock_reservations", STOCK_TABLE_NAME=stock.table.table_name)
        stock.grant_items(stock_reservations, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        payments_fn = function("PaymentsHandler", "payments", PAYMENTS_TABLE_NAME=payments.table.table_name, BREAKER_TABLE_NAME=breakers.table.table_name)
        payments.grant_items(payments_fn, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        breakers.grant_items(payments_fn, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")

        # The merchant's app reads these and answers with SendTaskSuccess or SendTaskFailure (error MerchantDeclined); the saga
        # waits 5 minutes in the sandbox, 15 in production, then compensates.
        merchant_requests = queue("MerchantRequests")

        def record(state_id: str, to: str, **extra: str) -> Invoke:
            return Invoke(state_id, status, {"order_id.$": "$.order.order_id", "to": to, **extra})

        order = {"order.$": "$.order"}
        saga = Saga(
            self,
            "OrderSaga",
            steps=[
                SagaStep(
                    Invoke("ReserveStock", stock_reservations, {"action": "reserve", **order}),
                    Invoke("ReleaseStock", stock_reservations, {"action": "release", **order}),
                ),
                SagaStep(record("RecordStockReserved", "STOCK_RESERVED")),
                SagaStep(
                    Invoke("AuthorizePayment", payments_fn, {"action": "authorize", **order}), Invoke("VoidPayment", payments_fn, {"action": "void", **order})
                ),
                SagaStep(record("RecordAwaitingMerchant", "AWAITING_MERCHANT")),
                SagaStep(
                    AwaitCallback("AwaitMerchant", merchant_requests, order, timeout=profile.pick(sandbox=Duration.minutes(5), production=Duration.minutes(15)))
                ),
                SagaStep(record("RecordConfirmed", "CONFIRMED")),
            ],
            on_failure=record("RecordCompensating", "COMPENSATING", **{"error.$": "$.error"}),
            on_compensated=record("RecordCompensated", "FINISHED"),
            on_abandoned=record("RecordFailed", "FAILED"),
            timeout=Duration.hours(2),
            **common,
        )
        dashboard.monitor(saga)
        add_business_view(self, dashboard, [stock_reservations, payments_fn, status], blueprint.alarms)

        saga_starts = queue("SagaStarts")
        starter = function("SagaStarter", "saga_starter", STATE_MACHINE_ARN=saga.state_machine.state_machine_arn)
        saga.grant_start_execution(starter)
        QueueEventSource(self, "SagaStartsSource", consumer=starter, queue=saga_starts, max_concurrency=5)
        bus.add_rule(
            "SagaStartsRule",
            description="Accepted orders, to the saga starter",
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[ORDER_ACCEPTED.name]),
            target=saga_starts,
        )

        status_updates = queue("StatusUpdates")
        # The management API (@connections) is served on API Gateway's public endpoint only: the pusher runs outside the network.
        pusher = blueprint.function(
            "StatusPusher",
            "status_pusher",
            environment={"CONNECTIONS_TABLE_NAME": live.connections.table.table_name, "WEBSOCKET_ENDPOINT": live.callback_url},
            in_network=False,
        )
        if profile.functions_in_vpc:
            lambda_inside_vpc_websocket_pusher(pusher)
        live.grant_push(pusher)
        QueueEventSource(self, "StatusUpdatesSource", consumer=pusher, queue=status_updates, max_concurrency=5)
        bus.add_rule(
            "StatusUpdatesRule",
            description="Every status change of an order, to the live status pusher",
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[ORDER_STATUS_CHANGED.name]),
            target=status_updates,
        )

        reconcile = queue("Reconcile")
        reconciler = function(
            "OrderReconciler", "order_reconciler", ORDERS_TABLE_NAME=orders.table.table_name, STATE_MACHINE_ARN=saga.state_machine.state_machine_arn
        )
        orders.grant_index_query(reconciler, OPEN_ORDERS_INDEX)
        saga.grant_start_execution(reconciler)
        saga.grant_manage_executions(reconciler)
        QueueEventSource(self, "ReconcileSource", consumer=reconciler, queue=reconcile, max_concurrency=2)
        schedules = ScheduleGroup(self, "Schedules", **common)
        schedules.send_message(
            "Reconcile",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(5)),
            queue=reconcile,
            message={"version": 1, "kind": "reconcile"},
            description="Looks for orders past their deadline",
        )
        make_alarm(
            self,
            "OrdersPastDeadlineAlarm",
            metric=cloudwatch.Metric(
                namespace="MessagingBlueprints",
                metric_name="OrdersPastDeadline",
                dimensions_map={"service": "order_reconciler"},
                statistic="Maximum",
                period=Duration.minutes(15),
            ),
            threshold=1,
            description="Orders are past their deadline: the reconciler is ending them through the saga; if this stays, one cannot be ended.",
            alarm_topic=blueprint.alarms,
        )

        CfnOutput(self, "OrderApiUrl", value=api.url)
        CfnOutput(self, "StatusWebSocketUrl", value=live.url)
        CfnOutput(self, "BusName", value=bus.bus.event_bus_name)
        CfnOutput(self, "StateMachineArn", value=saga.state_machine.state_machine_arn)
        CfnOutput(self, "MerchantRequestsQueueUrl", value=merchant_requests.queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
