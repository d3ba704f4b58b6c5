"""Kinesis Data Streams: metrics, alarms and widgets of a stream.

Stream-level metrics are in ``AWS/Kinesis`` with the one dimension ``StreamName``
(https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html):
``WriteProvisionedThroughputExceeded`` (records refused for the shards' write
limit), ``PutRecords.FailedRecords`` (records a PutRecords call did not store,
throttled or failed inside Kinesis), ``GetRecords.IteratorAgeMilliseconds`` (how
old the last record read was: how far the slowest reader is behind).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

NAMESPACE = "AWS/Kinesis"
PERIOD = Duration.minutes(5)


def metric(stream_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """A stream-level metric of ``stream_name``. Default: sum over 5 minutes."""
    return cloudwatch.Metric(
        namespace=NAMESPACE, metric_name=metric_name, dimensions_map={"StreamName": stream_name}, **{"statistic": "Sum", "period": PERIOD, **options}
    )


def alarms(
    scope: Construct, stream_name: str, alarm_topic: sns.ITopic | None, *, throttled_records: int, failed_records: int, iterator_age: Duration
) -> list[cloudwatch.Alarm]:
    return [
        make_alarm(
            scope,
            "WriteThrottledAlarm",
            metric=metric(stream_name, "WriteProvisionedThroughputExceeded"),
            threshold=throttled_records,
            alarm_topic=alarm_topic,
            description=f"Stream {stream_name}: writes refused for the shards' limit (1 MB/s or 1,000 records/s each); add shards or spread partition keys.",
        ),
        make_alarm(
            scope,
            "FailedRecordsAlarm",
            metric=metric(stream_name, "PutRecords.FailedRecords"),
            threshold=failed_records,
            alarm_topic=alarm_topic,
            description=f"Stream {stream_name}: PutRecords calls left records unstored; their producers must retry them.",
        ),
        make_alarm(
            scope,
            "IteratorAgeAlarm",
            metric=metric(stream_name, "GetRecords.IteratorAgeMilliseconds", statistic="Maximum", period=Duration.minutes(1)),
            threshold=iterator_age.to_milliseconds(),
            evaluation_periods=3,
            alarm_topic=alarm_topic,
            description=f"Stream {stream_name}: a reader is {iterator_age.to_seconds():g} s or more behind; records expire at the retention period.",
        ),
    ]


def widgets(title: str, stream_name: str) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: records in and refused",
            left=[
                metric(stream_name, "IncomingRecords"),
                metric(stream_name, "WriteProvisionedThroughputExceeded"),
                metric(stream_name, "PutRecords.FailedRecords"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: reader lag (ms)",
            left=[metric(stream_name, "GetRecords.IteratorAgeMilliseconds", statistic="Maximum", period=Duration.minutes(1))],
            width=12,
        ),
    ]
