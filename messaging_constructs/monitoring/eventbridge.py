"""EventBridge (rules, pipes, schedules): metrics, alarms and dashboard widgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Fn
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)


def _metric(namespace: str, dimensions: dict[str, str], metric_name: str, **options) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=metric_name,
        dimensions_map=dimensions,
        **{"statistic": "Sum", "period": PERIOD, **options},
    )


def _count_alarms(
    scope: Construct,
    label: str,
    metric,
    alarms: Sequence[tuple[str, str]],
    alarm_topic: sns.ITopic | None,
    thresholds: Mapping[str, float],
) -> list[cloudwatch.Alarm]:
    """One alarm per (metric name, explanation), each on ``thresholds[name]`` occurrences in 5 minutes (default: 1, any)."""
    return [
        make_alarm(
            scope,
            f"{name}Alarm",
            metric=metric(name),
            threshold=thresholds.get(name, 1),
            alarm_topic=alarm_topic,
            description=f"{label} {scope.node.path}: {text}",
        )
        for name, text in alarms
    ]


def rule_name_of(rule: events.IRule) -> str:
    """The plain name of a rule on a custom bus, at deploy time.

    CDK's ``rule.rule_name`` is the rule's ``Ref``, which for a rule on a
    custom bus is ``<bus>|<rule>``, not a name CloudWatch knows. The rule's
    ARN is ``arn:<partition>:events:<region>:<account>:rule/<bus>/<rule>``
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-manage-iam-access.html),
    and neither a custom bus's name nor a rule's may contain ``/``.
    """
    return Fn.select(2, Fn.split("/", rule.rule_arn))


def rule_metric(event_bus_name: str, rule_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/Events`` metric of one rule on a custom bus. Default: sum over 5 minutes.

    EventBridge publishes the metrics of a rule on a custom bus under two
    dimensions, ``EventBusName`` and ``RuleName``; a metric with ``RuleName``
    alone is a rule of the default bus
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html).
    """
    return _metric("AWS/Events", {"EventBusName": event_bus_name, "RuleName": rule_name}, metric_name, **options)


def rule_alarms(
    scope: Construct, event_bus_name: str, rule_name: str, alarm_topic: sns.ITopic | None, thresholds: Mapping[str, float] | None = None
) -> list[cloudwatch.Alarm]:
    """Alarms on failed invocations and on events sent to (or lost on the way to) the target's DLQ.

    :param thresholds: metric name -> count in 5 minutes. Default: 1 (any) for each.
    """
    return _count_alarms(
        scope,
        "Rule",
        lambda name: rule_metric(event_bus_name, rule_name, name),
        (
            ("FailedInvocations", "events could not be delivered to the target; after the retry policy they go to the target's DLQ."),
            ("InvocationsSentToDlq", "events were sent to the target's dead-letter queue: inspect and redrive them."),
            ("InvocationsFailedToBeSentToDlq", "events could not even be sent to the DLQ and are lost: check the DLQ's policy and key."),
        ),
        alarm_topic,
        thresholds or {},
    )


def pipe_metric(pipe_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/EventBridge/Pipes`` metric of one pipe. Default: sum over 5 minutes."""
    return _metric("AWS/EventBridge/Pipes", {"PipeName": pipe_name}, metric_name, **options)


def pipe_alarms(scope: Construct, pipe_name: str, alarm_topic: sns.ITopic | None, thresholds: Mapping[str, float] | None = None) -> list[cloudwatch.Alarm]:
    """Alarm on failed pipe executions (``ExecutionFailed``; default threshold 1, any)."""
    return _count_alarms(
        scope,
        "Pipe",
        lambda name: pipe_metric(pipe_name, name),
        (("ExecutionFailed", "executions failed: see its log group."),),
        alarm_topic,
        thresholds or {},
    )


def schedule_group_metric(group_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/Scheduler`` metric of one schedule group. Default: sum over 5 minutes."""
    return _metric("AWS/Scheduler", {"ScheduleGroup": group_name}, metric_name, **options)


def schedule_group_alarms(
    scope: Construct, group_name: str, alarm_topic: sns.ITopic | None, thresholds: Mapping[str, float] | None = None
) -> list[cloudwatch.Alarm]:
    """Alarms on target errors, on invocations out of retries and on invocations the DLQ did not take.

    :param thresholds: metric name -> count in 5 minutes. Default: 1 (any) for each.
    """
    return _count_alarms(
        scope,
        "Schedule group",
        lambda name: schedule_group_metric(group_name, name),
        (
            ("TargetErrorCount", "a scheduled invocation failed at its target; it is retried, then sent to the DLQ."),
            ("InvocationDroppedCount", "a scheduled invocation ran out of retries: it went to the group's DLQ, or was lost if the DLQ refused it."),
            ("InvocationsFailedToBeSentToDeadLetterCount", "an invocation could not be sent to the DLQ and is lost: check the DLQ's policy and key."),
        ),
        alarm_topic,
        thresholds or {},
    )


def rule_widgets(title: str, event_bus_name: str, rule_name: str) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: matched, failed, dead-lettered",
            left=[
                rule_metric(event_bus_name, rule_name, "MatchedEvents", label="matched"),
                rule_metric(event_bus_name, rule_name, "FailedInvocations", label="failed"),
                rule_metric(event_bus_name, rule_name, "InvocationsSentToDlq", label="to DLQ"),
            ],
            width=24,
        )
    ]
