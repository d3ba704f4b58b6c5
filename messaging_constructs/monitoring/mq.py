"""Amazon MQ: metrics, alarms and dashboard widgets (namespace ``AWS/AmazonMQ``).

ActiveMQ publishes per broker instance: the ``Broker`` dimension is the
broker's name with ``-1`` (and ``-2`` for the standby of an active/standby
pair). RabbitMQ publishes broker-wide counts under the broker's name and
node resources under ``Broker`` and ``Node``; node names are only known
once the broker runs, so node alarms use CloudWatch Metrics Insights queries
that take the worst node.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._alarms import make_alarm

NAMESPACE = "AWS/AmazonMQ"
PERIOD = Duration.minutes(5)


def metric(dimensions: dict[str, str], metric_name: str, **options) -> cloudwatch.Metric:
    """An ``AWS/AmazonMQ`` metric. Default: average over 5 minutes."""
    return cloudwatch.Metric(namespace=NAMESPACE, metric_name=metric_name, dimensions_map=dimensions, **{"statistic": "Average", "period": PERIOD, **options})


def worst_node(broker_name: str, metric_name: str, aggregate: str = "MAX", **options) -> cloudwatch.MathExpression:
    """A RabbitMQ node metric, the worst node's value (Metrics Insights: ``MAX`` or ``MIN`` over the broker's nodes)."""
    return cloudwatch.MathExpression(
        expression=f"SELECT {aggregate}({metric_name}) FROM SCHEMA(\"{NAMESPACE}\", Broker, Node) WHERE Broker = '{broker_name}'",
        period=options.pop("period", PERIOD),
        label=options.pop("label", f"{metric_name} ({aggregate.lower()} over nodes)"),
        **options,
    )


def _alarm(scope, construct_id, metric_, threshold, description, alarm_topic, comparison=None, evaluation_periods=3) -> cloudwatch.Alarm:
    options = {"comparison": comparison} if comparison is not None else {}
    return make_alarm(
        scope,
        construct_id,
        metric=metric_,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        description=description,
        alarm_topic=alarm_topic,
        **options,
    )


def activemq_alarms(
    scope: Construct,
    broker_name: str,
    instances: Sequence[str],
    *,
    cpu_percent: float,
    heap_percent: float,
    store_percent: float,
    max_connections: int,
    alarm_topic: sns.ITopic | None,
) -> list[cloudwatch.Alarm]:
    """Per broker instance: CPU, JVM heap, store use and connections, each at or above its threshold for 15 minutes."""
    alarms = []
    for instance in instances:
        suffix = instance.rsplit("-", 1)[-1]
        dims = {"Broker": instance}
        for name, metric_name, threshold, what in (
            ("Cpu", "CpuUtilization", cpu_percent, f"CPU at or above {cpu_percent:g}%"),
            ("Heap", "HeapUsage", heap_percent, f"JVM heap at or above {heap_percent:g}% (the broker slows producers, then stops them)"),
            ("Store", "StorePercentUsage", store_percent, f"message store at or above {store_percent:g}% (at 100% the broker refuses messages)"),
            ("Connections", "CurrentConnectionsCount", max_connections, f"{max_connections} or more connections"),
        ):
            alarms.append(
                _alarm(
                    scope,
                    f"Instance{suffix}{name}Alarm",
                    metric(dims, metric_name, statistic="Maximum"),
                    threshold,
                    f"ActiveMQ broker {instance}: {what} for 15 minutes.",
                    alarm_topic,
                )
            )
    return alarms


def rabbitmq_alarms(
    scope: Construct,
    broker_name: str,
    *,
    cpu_percent: float,
    memory_bytes: float,
    disk_free_bytes: float,
    max_connections: int,
    alarm_topic: sns.ITopic | None,
) -> list[cloudwatch.Alarm]:
    """CPU and memory of the busiest node, free disk of the fullest node, and the broker's connections."""
    return [
        _alarm(
            scope,
            "CpuAlarm",
            worst_node(broker_name, "SystemCpuUtilization"),
            cpu_percent,
            f"RabbitMQ broker {broker_name}: a node's CPU at or above {cpu_percent:g}% for 15 minutes.",
            alarm_topic,
        ),
        _alarm(
            scope,
            "MemoryAlarm",
            worst_node(broker_name, "RabbitMQMemUsed"),
            memory_bytes,
            f"RabbitMQ broker {broker_name}: a node uses {memory_bytes / 2**20:.0f} MiB or more, near the memory high watermark "
            "at which RabbitMQ blocks every publisher.",
            alarm_topic,
        ),
        _alarm(
            scope,
            "DiskAlarm",
            worst_node(broker_name, "RabbitMQDiskFree", "MIN"),
            disk_free_bytes,
            f"RabbitMQ broker {broker_name}: a node has less than {disk_free_bytes / 2**30:.1f} GiB of disk free; at the free-disk limit "
            "RabbitMQ blocks every publisher.",
            alarm_topic,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        ),
        _alarm(
            scope,
            "ConnectionsAlarm",
            metric({"Broker": broker_name}, "ConnectionCount", statistic="Maximum"),
            max_connections,
            f"RabbitMQ broker {broker_name}: {max_connections} or more connections for 15 minutes (a client leaking connections?).",
            alarm_topic,
        ),
    ]


def queue_depth(engine: str, broker_name: str, queue: str, *, virtual_host: str = "/", instances: Sequence[str] = (), **options) -> cloudwatch.IMetric:
    """Messages in one queue: RabbitMQ ``MessageCount`` (ready + unacknowledged), ActiveMQ ``QueueSize``. Default: maximum over 5 minutes.

    An ActiveMQ active/standby pair publishes under whichever instance is active (``-1`` or ``-2``),
    so its depth is the larger of the two series.
    """
    options = {"statistic": "Maximum", **options}
    if engine == "RABBITMQ":
        return metric({"Broker": broker_name, "VirtualHost": virtual_host, "Queue": queue}, "MessageCount", **options)
    instances = list(instances) or [f"{broker_name}-1"]
    if len(instances) == 1:
        return metric({"Broker": instances[0], "Queue": queue}, "QueueSize", **options)
    label = options.pop("label", f"{queue} depth")
    # Ids unique per queue, so that several queues can share a graph.
    prefix = f"q{zlib.crc32(queue.encode()):08x}"
    series = {f"{prefix}_{i}": metric({"Broker": instance, "Queue": queue}, "QueueSize", **options) for i, instance in enumerate(instances, 1)}
    return cloudwatch.MathExpression(expression=f"MAX([{', '.join(series)}])", using_metrics=series, label=label, period=options.get("period", PERIOD))


def queue_depth_alarm(
    scope: Construct,
    construct_id: str,
    engine: str,
    broker_name: str,
    queue: str,
    *,
    threshold: int,
    virtual_host: str,
    instances: Sequence[str] = (),
    alarm_topic: sns.ITopic | None,
) -> cloudwatch.Alarm:
    """A queue holds ``threshold`` messages or more (for a dead-letter queue: 1)."""
    what = "holds messages: inspect them and move them back once fixed" if threshold == 1 else f"holds {threshold} or more messages for 15 minutes"
    return _alarm(
        scope,
        construct_id,
        queue_depth(engine, broker_name, queue, virtual_host=virtual_host, instances=instances),
        threshold,
        f"Queue {queue} on broker {broker_name} {what}.",
        alarm_topic,
        evaluation_periods=1 if threshold == 1 else 3,
    )


def widgets(title: str, engine: str, broker_name: str, instances: Sequence[str], queues: Sequence[str], virtual_host: str) -> list[cloudwatch.IWidget]:
    """Resources and connections of the broker, depth of its queues."""
    if engine == "RABBITMQ":
        resources = [worst_node(broker_name, "SystemCpuUtilization", label="CPU % (busiest node)")]
        connections = [metric({"Broker": broker_name}, "ConnectionCount", statistic="Maximum", label="connections")]
    else:
        resources = [metric({"Broker": i}, name, statistic="Maximum", label=f"{i} {name}") for i in instances for name in ("CpuUtilization", "HeapUsage")]
        connections = [metric({"Broker": i}, "CurrentConnectionsCount", statistic="Maximum", label=i) for i in instances]
    depth = [queue_depth(engine, broker_name, q, virtual_host=virtual_host, instances=instances, label=q) for q in queues]
    return [
        cloudwatch.GraphWidget(title=f"{title}: CPU / heap %", left=resources, width=8),
        cloudwatch.GraphWidget(title=f"{title}: connections", left=connections, width=8),
        cloudwatch.GraphWidget(title=f"{title}: queue depth", left=depth or _broker_messages(engine, broker_name, instances), width=8),
    ]


def _broker_messages(engine: str, broker_name: str, instances: Sequence[str]) -> list[cloudwatch.IMetric]:
    """Messages on the whole broker: RabbitMQ ``MessageCount`` per broker, ActiveMQ ``TotalMessageCount`` per instance."""
    if engine == "RABBITMQ":
        return [metric({"Broker": broker_name}, "MessageCount", statistic="Maximum", label="messages")]
    return [metric({"Broker": i}, "TotalMessageCount", statistic="Maximum", label=i) for i in instances]
