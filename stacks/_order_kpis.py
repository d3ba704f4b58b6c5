"""CapstoneOrders' business view: KPIs on the dashboard and a latency alarm per hop against its budget (docs/capstone-orders.md)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from messaging_constructs import HandlerFunction, MonitoringDashboard
from messaging_constructs.monitoring._alarms import make_alarm

NAMESPACE = "MessagingBlueprints"
PERIOD = Duration.minutes(5)
#: From an order's acceptance to its saga's start (outbox, pipe, bus, queue, starter): the seed's 1 second for business events.
ACCEPTED_TO_SAGA_BUDGET = Duration.seconds(1)
#: A saga step (stock, payment, status): p99 of its function's duration.
STEP_BUDGET = Duration.seconds(1)


def business_metric(service: str, name: str, statistic: str, **dimensions: str) -> cloudwatch.Metric:
    """A metric a handler emits with Powertools (dimension ``service``, its folder's name, and any others it adds)."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service, **dimensions},
        statistic=statistic,
        period=PERIOD,
        label=f"{name} {statistic}",
    )


def add_business_view(scope: Construct, dashboard: MonitoringDashboard, steps: Sequence[HandlerFunction], alarm_topic: sns.ITopic) -> list[cloudwatch.Alarm]:
    """The KPI section of the dashboard, and the latency alarms: accepted-to-saga-start and each saga step."""
    outcomes = [business_metric("order_status", "OrderStatusChanges", "Sum", status=s) for s in ("CONFIRMED", "COMPENSATED", "CANCELLED", "FAILED")]
    dashboard.add_section(
        "Orders",
        [
            cloudwatch.GraphWidget(
                title="Orders: accepted, and how they ended", left=[business_metric("order_api", "OrdersAccepted", "Sum"), *outcomes], width=12
            ),
            cloudwatch.GraphWidget(
                title="Orders: time to confirm p50, p99 (ms)",
                left=[business_metric("order_status", "TimeToConfirm", s, status="CONFIRMED") for s in ("p50", "p99")],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Orders: accepted to saga start p99 (ms)", left=[business_metric("saga_starter", "AcceptedToSagaStart", "p99")], width=6
            ),
            cloudwatch.GraphWidget(
                title="Payment provider circuit (0 closed, 1 half-open, 2 open)",
                left=[business_metric("payments", "PaymentCircuitState", "Maximum")],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=2),
                width=12,
            ),
        ],
    )
    alarms = [
        make_alarm(
            scope,
            "AcceptedToSagaStartAlarm",
            metric=business_metric("saga_starter", "AcceptedToSagaStart", "p99"),
            threshold=ACCEPTED_TO_SAGA_BUDGET.to_milliseconds(),
            evaluation_periods=3,
            description="Orders take longer than their 1-second budget from acceptance to their saga (outbox pipe, bus, queue, starter).",
            alarm_topic=alarm_topic,
        )
    ]
    for step in steps:
        alarms.append(
            make_alarm(
                step,
                "StepLatencyAlarm",
                metric=step.function.metric_duration(statistic="p99", period=PERIOD),
                threshold=STEP_BUDGET.to_milliseconds(),
                evaluation_periods=3,
                description=f"Saga step {step.node.id} runs longer than its 1-second budget (p99, 15 minutes).",
                alarm_topic=alarm_topic,
            )
        )
    return alarms
