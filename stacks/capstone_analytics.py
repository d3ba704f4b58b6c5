"""CapstoneAnalytics: product and device events over HTTP and MQTT into a stream, an Iceberg lake, real-time aggregates."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from messaging_constructs import (
    DeviceRule,
    EventStream,
    IcebergLake,
    KafkaCluster,
    KafkaEventSource,
    LakeDelivery,
    Profile,
    QueueEventSource,
    SecureQueue,
    SecureRestApi,
    StateTable,
    StreamSchemas,
)
from messaging_constructs.acknowledgements import aws_solutions_iam5_object_keys
from messaging_runtime import lake as lake_tables
from messaging_runtime.contracts.analytics import ANALYTICS_EVENT, AnalyticsEventV1
from messaging_runtime.contracts.schemas import json_schema
from messaging_runtime.erasure import REPORT_PREFIX

from ._blueprint import Blueprint
from .analytics_queries import queries_for

#: What one event type's traffic is sized for (the course's seed): events per second, and the bytes of a typical event.
EVENTS_PER_SECOND = 10_000
EVENT_BYTES = 1_000
#: Production shards: 10,000 events/s of 1 KB need 10 (1,000 records/s and 1 MB/s each); 2 more for hot keys and growth.
PRODUCTION_SHARDS = 12
#: Records per HTTP request (Kinesis PutRecords takes 500 at most).
MAX_EVENTS_PER_REQUEST = 500
#: Aggregates and erasure items are kept this long (DynamoDB TTL).
AGGREGATE_DAYS = 30
#: The context key that adds the optional Kafka source (``-c analytics-kafka-source=true``).
KAFKA_SOURCE_CONTEXT = "analytics-kafka-source"
KAFKA_TOPIC = "clickstream"
KAFKA_CONSUMER_GROUP = "analytics-forwarder"
#: An erasure waits this long, so that the user's events still in flight reach the lake first (freshness target + margin).
ERASURE_DELAY = Duration.minutes(15)
FRESHNESS_TARGET = Duration.minutes(5)
DEVICE_TOPIC_PREFIX = "analytics/devices"
_ATHENA_TYPES = {"string": "string", "int": "int"}


def ingest_model() -> dict[str, Any]:
    """The draft 4 schema API Gateway validates ``POST /events`` with: 1 to 500 events, each the contract (inlined)."""
    event = json_schema(AnalyticsEventV1, consumer=False)
    event.pop("definitions", None)
    return {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS_PER_REQUEST, "items": event}},
    }


def columns(spec: tuple[tuple[str, str, bool], ...]) -> list[tuple[str, str]]:
    return [(name, _ATHENA_TYPES[kind]) for name, kind, _ in spec]


class CapstoneAnalyticsStack(Stack):
    """Events in over HTTP and MQTT, validated against their contract, in an Iceberg lake and per-minute aggregates.

    - ingestion: ``POST /events`` on a REST API goes straight to Kinesis
      ``PutRecords`` (no function: request validation from the contract,
      throttling, IAM or Cognito); devices publish over MQTT to AWS IoT Core,
      whose topic rule puts each message on the same stream;
    - the stream (on-demand in the sandbox, 12 shards in production) is read
      by Firehose, whose transformation turns each record into an ``events``
      row or, when it is not a valid event, a ``quarantine`` row with the
      reason; Firehose commits them to Apache Iceberg tables (Glue catalog,
      Parquet, partitioned by date and type) within the freshness target;
    - the aggregator reads the same stream in 60-second tumbling windows and
      writes events, late events and unique users per type and minute to
      DynamoDB;
    - an Athena workgroup holds the named queries (per type per day, sessions,
      funnel, top pages, late share, freshness, quarantine);
    - erasure requests (a queue) remove a user's rows from the lake and their
      share from the aggregates, and leave a report in the lake bucket;
    - the contract is registered in a Glue schema registry (BACKWARD);
    - optionally (``kafka_source``, or the context value ``analytics-kafka-source``),
      Exercise 03's Kafka path as a third source: an MSK cluster with the
      ``clickstream`` topic, whose clicks a forwarder function puts on the
      stream as analytics events (an MSK cluster costs money idle: off by default).

    :param kafka_source: add the Kafka source. Default: the context value ``analytics-kafka-source`` (``true``), else no.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, kafka_source: bool | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = profile or Profile.of(self)
        if kafka_source is None:
            kafka_source = str(self.node.try_get_context(KAFKA_SOURCE_CONTEXT)).lower() == "true"
        # In production the functions run in the network: the erasure and the table handler reach Athena and S3 through
        # endpoints; the Kafka source needs the network in any profile (MSK), and its forwarder reaches Kinesis through one.
        endpoints = [ec2.InterfaceVpcEndpointAwsService.ATHENA, *([ec2.InterfaceVpcEndpointAwsService.KINESIS_STREAMS] if kafka_source else [])]
        blueprint = Blueprint.create(self, profile, interface_endpoints=endpoints, network=True if kafka_source else None)
        if blueprint.network is not None:
            blueprint.network.ensure_gateway_endpoint(ec2.GatewayVpcEndpointAwsService.S3)
        common, dashboard = blueprint.common, blueprint.dashboard
        database = f"{construct_id.lower()}_lake"

        stream = EventStream(self, "Events", shard_count=PRODUCTION_SHARDS, **common)
        StreamSchemas(self, "Schemas", kinds=[ANALYTICS_EVENT], registry_name=f"{construct_id}-events")
        # 10,000 events/s at up to 500 per request is 20 requests/s; the limits leave room for small batches.
        api = SecureRestApi(
            self, "IngestApi", description="Product events in, straight to the stream", throttling_rate_limit=500, throttling_burst_limit=1000, **common
        )
        api.add_stream_route("POST", "/events", stream, request_model=ingest_model())
        devices = DeviceRule(self, "Devices", stream=stream, topic_prefix=DEVICE_TOPIC_PREFIX, **common)
        dashboard.monitor(api).monitor(stream).monitor(devices)

        lake = IcebergLake(self, "Lake", database_name=database, network=blueprint.network, **common)
        lake.add_table(lake_tables.EVENTS_TABLE, columns=columns(lake_tables.EVENT_COLUMNS), partitions=lake_tables.EVENT_PARTITIONS)
        lake.add_table(lake_tables.QUARANTINE_TABLE, columns=columns(lake_tables.QUARANTINE_COLUMNS), partitions=lake_tables.QUARANTINE_PARTITIONS)
        for query in queries_for(database):
            lake.add_named_query(query.name, description=query.description, sql=query.sql)
        transform = blueprint.function("LakeTransform", "lake_transform", environment={"LAKE_DATABASE": database}, timeout=Duration.minutes(1), memory_size=512)
        delivery = LakeDelivery(
            self,
            "Delivery",
            stream=stream,
            lake=lake,
            tables=[lake_tables.EVENTS_TABLE, lake_tables.QUARANTINE_TABLE],
            transform=transform,
            freshness_target=FRESHNESS_TARGET,
            alarm_topic=blueprint.alarms,
        )
        dashboard.monitor(lake).monitor(delivery)

        aggregates = StateTable(self, "Aggregates", partition_key="pk", sort_key="sk", time_to_live_attribute="expires_at", **common)
        aggregator = blueprint.function(
            "EventAggregator", "event_aggregator", environment={"AGGREGATES_TABLE": aggregates.table.table_name, "AGGREGATE_DAYS": str(AGGREGATE_DAYS)}
        )
        aggregates.grant_items(aggregator, "dynamodb:BatchWriteItem")
        stream.add_consumer(aggregator, tumbling_window=Duration.seconds(60), batch_size=1000, max_batching_window=Duration.seconds(5))
        dashboard.monitor(aggregates)

        erasures = SecureQueue(
            self, "ErasureRequests", delivery_delay=ERASURE_DELAY, age_alarm_threshold=Duration.hours(1), consumer_timeout=Duration.minutes(15), **common
        )
        dashboard.monitor(erasures)
        erasure = blueprint.function(
            "LakeErasure",
            "lake_erasure",
            environment={
                "ATHENA_WORKGROUP": lake.workgroup_name,
                "LAKE_DATABASE": database,
                "REPORTS_BUCKET": lake.bucket.bucket_name,
                "AGGREGATES_TABLE": aggregates.table.table_name,
                "AGGREGATE_DAYS": str(AGGREGATE_DAYS),
            },
            timeout=Duration.minutes(15),
        )
        lake.grant_modify(erasure, tables=[lake_tables.EVENTS_TABLE, lake_tables.QUARANTINE_TABLE])
        reports = lake.bucket.arn_for_objects(f"{REPORT_PREFIX}*")
        erasure.role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[reports]))
        aws_solutions_iam5_object_keys(erasure.role.policy, [reports])
        aggregates.grant_items(erasure, "dynamodb:Query", "dynamodb:BatchWriteItem")
        QueueEventSource(self, "ErasureRequestsSource", consumer=erasure, queue=erasures, batch_size=1, max_concurrency=2)

        if kafka_source:
            self._add_kafka_source(blueprint, stream)

        CfnOutput(self, "IngestUrl", value=f"{api.url}events")
        CfnOutput(self, "StreamName", value=stream.stream_name)
        CfnOutput(self, "DeviceTopicFilter", value=devices.topic_filter)
        CfnOutput(self, "DevicePolicyName", value=devices.device_policy.ref)
        CfnOutput(self, "LakeDatabase", value=database)
        CfnOutput(self, "AthenaWorkgroup", value=lake.workgroup_name)
        CfnOutput(self, "LakeBucket", value=lake.bucket.bucket_name)
        CfnOutput(self, "AggregatesTable", value=aggregates.table.table_name)
        CfnOutput(self, "ErasureRequestsQueueUrl", value=erasures.queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)

    def _add_kafka_source(self, blueprint: Blueprint, stream: EventStream) -> None:
        """Exercise 03's Kafka path: an MSK cluster and topic, and a forwarder from the topic to the stream."""
        network, common = blueprint.network, blueprint.common
        assert network is not None
        cluster = KafkaCluster(self, "KafkaCluster", network=network, **common)
        topic = cluster.add_topic("ClickstreamTopic", KAFKA_TOPIC, partitions=blueprint.profile.pick(sandbox=6, production=24))
        forwarder = blueprint.function("KafkaForwarder", "kafka_forwarder", environment={"STREAM_NAME": stream.stream_name})
        stream.grant_write(forwarder)
        source = KafkaEventSource(
            self,
            "KafkaSource",
            consumer=forwarder,
            cluster=cluster,
            topic=KAFKA_TOPIC,
            consumer_group=KAFKA_CONSUMER_GROUP,
            topic_resource=topic,
            batch_size=500,
            max_batching_window=Duration.seconds(1),
            **common,
        )
        blueprint.dashboard.monitor(cluster).monitor(source)
        CfnOutput(self, "KafkaClusterArn", value=cluster.cluster_arn)
        CfnOutput(self, "KafkaTopic", value=KAFKA_TOPIC)
