"""SQS: metrics, alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(1)


def age_of_oldest_message(queue: sqs.IQueue, **options) -> cloudwatch.Metric:
    """ApproximateAgeOfOldestMessage, maximum over 1 minute unless ``options`` say otherwise."""
    return queue.metric_approximate_age_of_oldest_message(**{"statistic": "Maximum", "period": PERIOD, **options})


def messages_visible(queue: sqs.IQueue, **options) -> cloudwatch.Metric:
    """ApproximateNumberOfMessagesVisible, maximum over 1 minute unless ``options`` say otherwise."""
    return queue.metric_approximate_number_of_messages_visible(**{"statistic": "Maximum", "period": PERIOD, **options})


def age_alarm(scope: Construct, queue: sqs.IQueue, threshold: Duration, alarm_topic: sns.ITopic | None) -> cloudwatch.Alarm:
    """Alarm when the oldest message has waited ``threshold`` or longer."""
    return make_alarm(
        scope,
        "AgeOfOldestMessageAlarm",
        metric=age_of_oldest_message(queue),
        threshold=threshold.to_seconds(),
        evaluation_periods=1,
        description=f"Oldest message in {queue.node.path} waited {threshold.to_seconds():g} s or more: consumers are behind or failing.",
        alarm_topic=alarm_topic,
    )


def not_empty_alarm(scope: Construct, construct_id: str, queue: sqs.IQueue, alarm_topic: sns.ITopic | None, threshold: int = 1) -> cloudwatch.Alarm:
    """Alarm as soon as a dead-letter queue holds ``threshold`` messages (default: any message)."""
    what = "messages" if threshold == 1 else f"{threshold} or more messages"
    return make_alarm(
        scope,
        construct_id,
        metric=messages_visible(queue),
        threshold=threshold,
        description=f"Dead-letter queue {queue.node.path} holds {what}: inspect them and redrive (docs/exercise-01.md).",
        alarm_topic=alarm_topic,
    )


def widgets(title: str, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue | None) -> list[cloudwatch.IWidget]:
    """A row for the queue: depth and age, and the DLQ depth."""
    left = [messages_visible(queue, label="visible"), queue.metric_approximate_number_of_messages_not_visible(period=PERIOD, label="in flight")]
    if dead_letter_queue is not None:
        left.append(messages_visible(dead_letter_queue, label="dead-lettered"))
    return [
        cloudwatch.GraphWidget(title=f"{title}: messages", left=left, width=12),
        cloudwatch.GraphWidget(title=f"{title}: age of oldest (s)", left=[age_of_oldest_message(queue)], width=12),
    ]
