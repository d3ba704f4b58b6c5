"""DynamoDB: metrics, alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)
#: Every data-plane operation the constructs' users make (a CloudWatch math
#: expression may hold at most 10 metrics).
_OPERATIONS = [
    dynamodb.Operation.GET_ITEM,
    dynamodb.Operation.PUT_ITEM,
    dynamodb.Operation.UPDATE_ITEM,
    dynamodb.Operation.DELETE_ITEM,
    dynamodb.Operation.QUERY,
    dynamodb.Operation.SCAN,
    dynamodb.Operation.BATCH_WRITE_ITEM,
    dynamodb.Operation.TRANSACT_WRITE_ITEMS,
]


def throttled_requests(table: dynamodb.ITable) -> cloudwatch.IMetric:
    """Read and write throttle events of the table, whatever the operation; sum over 5 minutes."""
    return cloudwatch.MathExpression(
        expression="reads + writes",
        using_metrics={
            "reads": table.metric("ReadThrottleEvents", statistic="Sum", period=PERIOD),
            "writes": table.metric("WriteThrottleEvents", statistic="Sum", period=PERIOD),
        },
        label="throttle events",
        period=PERIOD,
    )


def system_errors(table: dynamodb.ITable) -> cloudwatch.IMetric:
    """System errors across the data-plane operations, sum over 5 minutes."""
    return table.metric_system_errors_for_operations(operations=_OPERATIONS, period=PERIOD)


def alarms(
    scope: Construct, table: dynamodb.ITable, alarm_topic: sns.ITopic | None, *, throttles_threshold: int = 1, system_errors_threshold: int = 1
) -> list[cloudwatch.Alarm]:
    """Alarms on ``throttles_threshold`` throttled requests and ``system_errors_threshold`` system errors in 5 minutes (default: any)."""
    return [
        make_alarm(
            scope,
            "ThrottlesAlarm",
            metric=throttled_requests(table),
            threshold=throttles_threshold,
            alarm_topic=alarm_topic,
            description=f"Table {table.node.path} throttled requests.",
        ),
        make_alarm(
            scope,
            "SystemErrorsAlarm",
            metric=system_errors(table),
            threshold=system_errors_threshold,
            alarm_topic=alarm_topic,
            description=f"Table {table.node.path} returned system errors.",
        ),
    ]


def widgets(title: str, table: dynamodb.ITable) -> list[cloudwatch.IWidget]:
    return [
        # Each math expression names its operations' metrics the same way, so
        # the two cannot share a graph.
        cloudwatch.GraphWidget(title=f"{title}: throttled requests", left=[throttled_requests(table)], width=12),
        cloudwatch.GraphWidget(title=f"{title}: system errors", left=[system_errors(table)], width=12),
    ]


def conditional_check_failures(table: dynamodb.ITable, **options) -> cloudwatch.Metric:
    """ConditionalCheckFailedRequests of single-item writes (not of transactions). Default: sum over 5 minutes."""
    return table.metric_conditional_check_failed_requests(**{"statistic": "Sum", "period": PERIOD, **options})


def conflict_alarm(scope: Construct, construct_id: str, metric: cloudwatch.IMetric, threshold: int, alarm_topic: sns.ITopic | None) -> cloudwatch.Alarm:
    """Alarm when writers lose the version race ``threshold`` times or more in 5 minutes."""
    return make_alarm(
        scope,
        construct_id,
        metric=metric,
        threshold=threshold,
        alarm_topic=alarm_topic,
        description=f"{scope.node.path}: {threshold}+ lost version races in 5 minutes; writers contend for the same aggregates.",
    )
