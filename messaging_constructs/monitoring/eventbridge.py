"""EventBridge (rules, pipes, schedules): metrics, alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)


def rule_metric(rule_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/Events`` metric of one rule. Default: sum over 5 minutes."""
    return cloudwatch.Metric(
        namespace="AWS/Events",
        metric_name=metric_name,
        dimensions_map={"RuleName": rule_name},
        **{"statistic": "Sum", "period": PERIOD, **options},
    )


def rule_alarms(scope: Construct, rule_name: str, alarm_topic: sns.ITopic | None) -> list[cloudwatch.Alarm]:
    """Alarms on any failed invocation and any event sent to (or lost on the way to) the target's DLQ."""
    return [
        make_alarm(
            scope,
            f"{metric}Alarm",
            metric=rule_metric(rule_name, metric),
            threshold=1,
            alarm_topic=alarm_topic,
            description=f"Rule {scope.node.path}: {text}",
        )
        for metric, text in (
            ("FailedInvocations", "events could not be delivered to the target; after the retry policy they go to the target's DLQ."),
            ("InvocationsSentToDlq", "events were sent to the target's dead-letter queue: inspect and redrive them."),
            ("InvocationsFailedToBeSentToDlq", "events could not even be sent to the DLQ and are lost: check the DLQ's policy and key."),
        )
    ]


def pipe_metric(pipe_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/EventBridge/Pipes`` metric of one pipe. Default: sum over 5 minutes."""
    return cloudwatch.Metric(
        namespace="AWS/EventBridge/Pipes",
        metric_name=metric_name,
        dimensions_map={"PipeName": pipe_name},
        **{"statistic": "Sum", "period": PERIOD, **options},
    )


def pipe_alarms(scope: Construct, pipe_name: str, alarm_topic: sns.ITopic | None) -> list[cloudwatch.Alarm]:
    """Alarm on any failed pipe execution."""
    return [
        make_alarm(
            scope,
            "ExecutionFailedAlarm",
            metric=pipe_metric(pipe_name, "ExecutionFailed"),
            threshold=1,
            alarm_topic=alarm_topic,
            description=f"Pipe {scope.node.path} failed executions: see its log group.",
        )
    ]


def schedule_group_metric(group_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/Scheduler`` metric of one schedule group. Default: sum over 5 minutes."""
    return cloudwatch.Metric(
        namespace="AWS/Scheduler",
        metric_name=metric_name,
        dimensions_map={"ScheduleGroup": group_name},
        **{"statistic": "Sum", "period": PERIOD, **options},
    )


def schedule_group_alarms(scope: Construct, group_name: str, alarm_topic: sns.ITopic | None) -> list[cloudwatch.Alarm]:
    """Alarms on target errors and on dropped invocations."""
    return [
        make_alarm(
            scope,
            f"{metric}Alarm",
            metric=schedule_group_metric(group_name, metric),
            threshold=1,
            alarm_topic=alarm_topic,
            description=f"Schedule group {scope.node.path}: {text}",
        )
        for metric, text in (
            ("TargetErrorCount", "a scheduled invocation failed at its target; it is retried, then sent to the DLQ."),
            ("InvocationDroppedCount", "a scheduled invocation was dropped without reaching its DLQ."),
        )
    ]


def rule_widgets(title: str, rule_name: str) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: matched, failed, dead-lettered",
            left=[
                rule_metric(rule_name, "MatchedEvents", label="matched"),
                rule_metric(rule_name, "FailedInvocations", label="failed"),
                rule_metric(rule_name, "InvocationsSentToDlq", label="to DLQ"),
            ],
            width=24,
        )
    ]
