"""The one way this library makes an alarm, and the warning when nobody would hear it."""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct, IConstruct

#: The id of the warning a construct with alarms but no alarm topic adds (acknowledge it with
#: ``Annotations.of(scope).acknowledge_warning(NO_ALARM_TOPIC, reason)``).
NO_ALARM_TOPIC = "messaging-blueprints:no-alarm-topic"
_WARNING = "aws:cdk:warning"


def make_alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: cloudwatch.IMetric,
    threshold: float,
    description: str,
    alarm_topic: sns.ITopic | None,
    evaluation_periods: int = 1,
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
) -> cloudwatch.Alarm:
    """An alarm that treats missing data as fine and notifies ``alarm_topic`` on alarm and on recovery.

    Without a topic the alarm is made all the same (it shows in CloudWatch and
    on the dashboard); :func:`warn_without_alarm_topic` tells the user.
    """
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        metric=metric,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        comparison_operator=comparison,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    if alarm_topic is not None:
        action = actions.SnsAction(alarm_topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
    return alarm


def _warned(scope: IConstruct) -> bool:
    return any(entry.type == _WARNING and NO_ALARM_TOPIC in str(entry.data) for entry in scope.node.metadata)


def warn_without_alarm_topic(scope: Construct, alarm_topic: sns.ITopic | None) -> None:
    """Warn at synth, once per construct, that the alarms of ``scope`` notify nobody.

    Constructs call it first thing, so a construct inside one that has
    already warned (a function's dead-letter queue, a projection's function)
    does not warn again.
    """
    if alarm_topic is not None or any(_warned(ancestor) for ancestor in scope.node.scopes):
        return
    Annotations.of(scope).add_warning_v2(
        NO_ALARM_TOPIC,
        "no alarm_topic: the alarms of this construct are created but notify nobody; pass alarm_topic= (an AlarmTopic or any sns.ITopic)",
    )


def alarm_topic_for(scope: Construct, alarm_topic) -> sns.ITopic | None:
    """The ``sns.ITopic`` of ``alarm_topic`` (an :class:`AlarmTopic`, a :class:`SecureTopic` or any ``sns.ITopic``),
    with the warning of :func:`warn_without_alarm_topic` when there is none."""
    from .._interfaces import optional_topic_of

    topic = optional_topic_of(alarm_topic)
    warn_without_alarm_topic(scope, topic)
    return topic
