"""Lambda: metrics, alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)


def errors(function: lambda_.IFunction, **options) -> cloudwatch.Metric:
    """Errors, sum over 5 minutes unless ``options`` say otherwise."""
    return function.metric_errors(**{"statistic": "Sum", "period": PERIOD, **options})


def throttles(function: lambda_.IFunction, **options) -> cloudwatch.Metric:
    """Throttles, sum over 5 minutes unless ``options`` say otherwise."""
    return function.metric_throttles(**{"statistic": "Sum", "period": PERIOD, **options})


def alarms(
    scope: Construct, function: lambda_.IFunction, alarm_topic: sns.ITopic | None, *, errors_threshold: int = 1, throttles_threshold: int = 1
) -> list[cloudwatch.Alarm]:
    """Alarms on ``errors_threshold`` errors and ``throttles_threshold`` throttles in 5 minutes (default: any)."""
    return [
        make_alarm(
            scope,
            "ErrorsAlarm",
            metric=errors(function),
            threshold=errors_threshold,
            alarm_topic=alarm_topic,
            description=f"Function {function.node.path} reported errors: see its log group.",
        ),
        make_alarm(
            scope,
            "ThrottlesAlarm",
            metric=throttles(function),
            threshold=throttles_threshold,
            alarm_topic=alarm_topic,
            description=f"Function {function.node.path} was throttled: raise its reserved concurrency or lower the event source's maximum concurrency.",
        ),
    ]


def widgets(title: str, function: lambda_.IFunction) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: invocations, errors, throttles",
            left=[function.metric_invocations(period=PERIOD, label="invocations"), errors(function, label="errors"), throttles(function, label="throttles")],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: duration p99 (ms)",
            left=[function.metric_duration(period=PERIOD, statistic="p99")],
            width=12,
        ),
    ]


def iterator_age(function: lambda_.IFunction, **options) -> cloudwatch.Metric:
    """IteratorAge of a stream consumer. Default: maximum over 1 minute."""
    return function.metric("IteratorAge", **{"statistic": "Maximum", "period": Duration.minutes(1), "unit": cloudwatch.Unit.MILLISECONDS, **options})


def iterator_age_alarm(scope: Construct, function: lambda_.IFunction, threshold: Duration, alarm_topic: sns.ITopic | None) -> cloudwatch.Alarm:
    """Alarm when the stream consumer falls ``threshold`` or more behind."""
    return make_alarm(
        scope,
        "IteratorAgeAlarm",
        metric=iterator_age(function),
        threshold=threshold.to_milliseconds(),
        evaluation_periods=3,
        alarm_topic=alarm_topic,
        description=f"Stream consumer {function.node.path} is {threshold.to_seconds():g} s or more behind the stream.",
    )


def destination_delivery_failures_alarm(scope: Construct, function: lambda_.IFunction, alarm_topic: sns.ITopic | None, threshold: int = 1) -> cloudwatch.Alarm:
    """Alarm when Lambda could not send ``threshold`` failure records in 5 minutes to the event source's on-failure destination (default: any)."""
    return make_alarm(
        scope,
        "DestinationDeliveryFailuresAlarm",
        metric=function.metric("DestinationDeliveryFailures", statistic="Sum", period=PERIOD),
        threshold=threshold,
        alarm_topic=alarm_topic,
        description=f"Function {function.node.path}: failure records could not reach the on-failure destination; check its policy and key.",
    )
