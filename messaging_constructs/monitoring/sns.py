"""SNS: metrics, alarms and dashboard widgets."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

PERIOD = Duration.minutes(5)


def notifications_failed(topic: sns.ITopic, **options) -> cloudwatch.Metric:
    """NumberOfNotificationsFailed, sum over 5 minutes unless ``options`` say otherwise."""
    return topic.metric_number_of_notifications_failed(**{"statistic": "Sum", "period": PERIOD, **options})


def failed_notifications_alarm(scope: Construct, topic: sns.ITopic, alarm_topic: sns.ITopic | None, threshold: int = 1) -> cloudwatch.Alarm:
    """Alarm on ``threshold`` failed deliveries in 5 minutes (after SNS's own retries; default: any)."""
    return make_alarm(
        scope,
        "NotificationsFailedAlarm",
        metric=notifications_failed(topic),
        threshold=threshold,
        description=f"Topic {topic.node.path} failed to deliver notifications: see the delivery-status log group and the subscription DLQs.",
        alarm_topic=alarm_topic,
    )


def widgets(title: str, topic: sns.ITopic) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: published, delivered, failed",
            left=[
                topic.metric_number_of_messages_published(period=PERIOD, label="published"),
                topic.metric_number_of_notifications_delivered(period=PERIOD, label="delivered"),
                notifications_failed(topic, label="failed"),
                topic.metric_number_of_notifications_filtered_out(period=PERIOD, label="filtered out"),
            ],
            width=24,
        )
    ]
