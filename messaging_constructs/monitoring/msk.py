"""Amazon MSK: metrics, alarms and dashboard widgets (namespace ``AWS/Kafka``)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

NAMESPACE = "AWS/Kafka"
PERIOD = Duration.minutes(5)


def cluster_metric(cluster_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """A cluster-level metric. Default: average over 5 minutes."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"Cluster Name": cluster_name},
        **{"statistic": "Average", "period": PERIOD, **options},
    )


def broker_metric(cluster_name: str, broker_id: int, metric_name: str, **options) -> cloudwatch.Metric:
    """A metric of one broker (IDs start at 1). Default: average over 5 minutes."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"Cluster Name": cluster_name, "Broker ID": str(broker_id)},
        **{"statistic": "Average", "period": PERIOD, **options},
    )


def broker_cpu(cluster_name: str, broker_id: int, **options) -> cloudwatch.MathExpression:
    """CPU in use on one broker: ``CpuUser + CpuSystem`` (percent). Default: over 5 minutes."""
    period = options.pop("period", PERIOD)
    return cloudwatch.MathExpression(
        # Ids unique per broker, so that several brokers can share a graph.
        expression=f"user{broker_id} + system{broker_id}",
        using_metrics={
            f"user{broker_id}": broker_metric(cluster_name, broker_id, "CpuUser", period=period),
            f"system{broker_id}": broker_metric(cluster_name, broker_id, "CpuSystem", period=period),
        },
        period=period,
        label=options.pop("label", f"broker {broker_id} CPU %"),
        **options,
    )


def consumer_group_metric(cluster_name: str, consumer_group: str, topic: str, metric_name: str, **options) -> cloudwatch.Metric:
    """A consumer-lag metric (``MaxOffsetLag``, ``SumOffsetLag``, ``EstimatedMaxTimeLag``). Default: maximum over 1 minute."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"Cluster Name": cluster_name, "Consumer Group": consumer_group, "Topic": topic},
        **{"statistic": "Maximum", "period": Duration.minutes(1), **options},
    )


def broker_alarms(
    scope: Construct,
    cluster_name: str,
    broker_ids: Sequence[int],
    *,
    cpu_percent: float,
    disk_percent: float,
    alarm_topic: sns.ITopic | None,
) -> list[cloudwatch.Alarm]:
    """Per broker: CPU in use at or above ``cpu_percent`` for 15 minutes; data-log disk at or above ``disk_percent``."""
    alarms = []
    for broker_id in broker_ids:
        alarms.append(
            make_alarm(
                scope,
                f"Broker{broker_id}CpuAlarm",
                metric=broker_cpu(cluster_name, broker_id),
                threshold=cpu_percent,
                evaluation_periods=3,
                description=f"MSK cluster {cluster_name} broker {broker_id}: CPU (user + system) at or above {cpu_percent:g}% for 15 minutes; "
                "AWS advises keeping it under 60% so that a broker can take over a failed one's load.",
                alarm_topic=alarm_topic,
            )
        )
        alarms.append(
            make_alarm(
                scope,
                f"Broker{broker_id}DiskAlarm",
                metric=broker_metric(cluster_name, broker_id, "KafkaDataLogsDiskUsed", statistic="Maximum"),
                threshold=disk_percent,
                description=f"MSK cluster {cluster_name} broker {broker_id}: data-log disk {disk_percent:g}% full or more; "
                "raise the volume size or shorten retention before the broker stops accepting writes.",
                alarm_topic=alarm_topic,
            )
        )
    return alarms


def lag_alarm(
    scope: Construct,
    construct_id: str,
    cluster_name: str,
    consumer_group: str,
    topic: str,
    *,
    max_offset_lag: int,
    alarm_topic: sns.ITopic | None,
) -> cloudwatch.Alarm:
    """The consumer group is ``max_offset_lag`` records or more behind on some partition for 5 minutes."""
    return make_alarm(
        scope,
        construct_id,
        metric=consumer_group_metric(cluster_name, consumer_group, topic, "MaxOffsetLag"),
        threshold=max_offset_lag,
        evaluation_periods=5,
        description=f"Consumer group {consumer_group} is {max_offset_lag} or more records behind on a partition of {topic} for 5 minutes: "
        "the consumer is failing or too slow (see its errors and the on-failure queue).",
        alarm_topic=alarm_topic,
    )


def broker_widgets(title: str, cluster_name: str, broker_ids: Sequence[int]) -> list[cloudwatch.IWidget]:
    """CPU, disk and bytes in/out per broker."""
    return [
        cloudwatch.GraphWidget(title=f"{title}: broker CPU %", left=[broker_cpu(cluster_name, b) for b in broker_ids], width=8),
        cloudwatch.GraphWidget(
            title=f"{title}: data-log disk used %",
            left=[broker_metric(cluster_name, b, "KafkaDataLogsDiskUsed", statistic="Maximum", label=f"broker {b}") for b in broker_ids],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: bytes in / out per second",
            left=[broker_metric(cluster_name, b, "BytesInPerSec", label=f"broker {b} in") for b in broker_ids],
            right=[broker_metric(cluster_name, b, "BytesOutPerSec", label=f"broker {b} out") for b in broker_ids],
            width=8,
        ),
    ]


def lag_widgets(title: str, cluster_name: str, consumer_group: str, topic: str) -> list[cloudwatch.IWidget]:
    """Offset lag (records) and estimated time lag (seconds) of one consumer group on one topic."""
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: offset lag (records)",
            left=[
                consumer_group_metric(cluster_name, consumer_group, topic, "MaxOffsetLag", label="max per partition"),
                consumer_group_metric(cluster_name, consumer_group, topic, "SumOffsetLag", label="sum"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: estimated time lag (s)",
            left=[consumer_group_metric(cluster_name, consumer_group, topic, "EstimatedMaxTimeLag")],
            width=12,
        ),
    ]


def per_topic(cluster_name: str, metric_name: str, **options) -> cloudwatch.MathExpression:
    """A per-topic metric of every topic of the cluster, one series per topic (Metrics Insights). Default: average over 5 minutes.

    MSK Serverless publishes throughput only per ``Cluster Name`` and ``Topic``, and topics are made by clients.
    """
    return cloudwatch.MathExpression(
        expression=f'SELECT AVG({metric_name}) FROM SCHEMA("{NAMESPACE}", "Cluster Name", Topic) WHERE "Cluster Name" = \'{cluster_name}\' GROUP BY Topic',
        period=options.pop("period", PERIOD),
        label=options.pop("label", ""),
        **options,
    )


def serverless_widgets(title: str, cluster_name: str) -> list[cloudwatch.IWidget]:
    """Bytes in and out per second, one line per topic."""
    return [
        cloudwatch.GraphWidget(title=f"{title}: bytes in per second, per topic", left=[per_topic(cluster_name, "BytesInPerSec")], width=12),
        cloudwatch.GraphWidget(title=f"{title}: bytes out per second, per topic", left=[per_topic(cluster_name, "BytesOutPerSec")], width=12),
    ]
