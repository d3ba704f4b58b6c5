"""Step Functions: execution metrics (namespace AWS/States, dimension StateMachineArn), alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)


def executions(state_machine: sfn.IStateMachine, metric_name: str, **options) -> cloudwatch.Metric:
    """``ExecutionsFailed``, ``ExecutionsTimedOut``, ``ExecutionsAborted``, ``ExecutionsSucceeded``...: sum over 5 minutes by default."""
    return state_machine.metric(metric_name, **{"statistic": "Sum", "period": PERIOD, **options})


def alarms(scope: Construct, state_machine: sfn.IStateMachine, alarm_topic: sns.ITopic | None, *, failed_threshold: int = 1) -> list[cloudwatch.Alarm]:
    """Alarms on failed (``failed_threshold`` in 5 minutes), timed-out and aborted executions (any)."""
    return [
        make_alarm(
            scope,
            f"{metric}Alarm",
            metric=executions(state_machine, metric),
            threshold=threshold,
            description=f"State machine {state_machine.node.path}: {what}. Read the execution's history.",
            alarm_topic=alarm_topic,
        )
        for metric, threshold, what in (
            ("ExecutionsFailed", failed_threshold, "executions failed (the failure path could not finish)"),
            ("ExecutionsTimedOut", 1, "executions ran past their timeout"),
            ("ExecutionsAborted", 1, "executions were stopped by hand or by a redeploy"),
        )
    ]


def widgets(title: str, state_machine: sfn.IStateMachine) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: executions",
            left=[
                executions(state_machine, m, label=m.removeprefix("Executions").lower())
                for m in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut")
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: execution time p50, p99",
            left=[state_machine.metric("ExecutionTime", statistic=s, period=PERIOD, label=s) for s in ("p50", "p99")],
            width=12,
        ),
    ]
