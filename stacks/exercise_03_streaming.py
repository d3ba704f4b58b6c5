"""Exercise03Streaming: clickstream events through Amazon MSK, aggregated per user in DynamoDB."""

from __future__ import annotations

import math

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from messaging_constructs import KafkaCluster, KafkaEventSource, Profile, ProvisionedPollers, StateTable

from ._blueprint import Blueprint

TOPIC = "clickstream"
CONSUMER_GROUP = "clickstream-aggregator"
#: The aggregator's batches: large, since its cost per record falls with batch size.
BATCH_SIZE = 500
BATCH_WINDOW = Duration.seconds(1)


class Exercise03StreamingStack(Stack):
    """Clickstream events keyed by user through an MSK topic.

    - an MSK cluster (provisioned; IAM auth over TLS only; encrypted with the
      stack's key; broker logs; alarms on broker CPU and disk) in an isolated
      VPC with no internet route;
    - the ``clickstream`` topic, created by CloudFormation through the MSK
      topic API, with its partitions and retention per profile;
    - a producer function in the VPC (invoked directly, also to generate load)
      writing keyed records with IAM auth, idempotence, batching and lz4
      compression; it looks the bootstrap brokers up at cold start;
    - an aggregator function fed by a Lambda event source mapping (consumer
      group ``clickstream-aggregator``, provisioned pollers, partial batch
      responses, 3 retries, records at most 6 hours old, an on-failure queue
      with an alarm) keeping per-user counts in DynamoDB, each record applied
      at most once;
    - a lag alarm on the consumer group.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(self, profile or Profile.of(self), interface_endpoints=[], network=True)
        common, dashboard, network, profile = blueprint.common, blueprint.dashboard, blueprint.network, blueprint.profile
        assert network is not None
        # The topic's sizes are this blueprint's own, not the profile's: partitions bound the consumer's
        # parallelism (Lambda runs at most one batch per partition at a time).
        partitions = profile.pick(sandbox=6, production=24)
        retention = profile.pick(sandbox=Duration.days(1), production=Duration.days(7))

        cluster = KafkaCluster(self, "Cluster", network=network, **common)
        dashboard.monitor(cluster)
        topic = cluster.add_topic("ClickstreamTopic", TOPIC, partitions=partitions, retention=retention)

        producer = blueprint.function(
            "Producer",
            "clickstream_producer",
            environment={
                "CLUSTER_ARN": cluster.cluster_arn,
                "TOPIC_NAME": TOPIC,
                "COMPRESSION_TYPE": "lz4",
                # The MSK API's VPC endpoint answers only the dual-stack host name (kafka.<region>.api.aws).
                "AWS_USE_DUALSTACK_ENDPOINT": "true",
            },
            layers=[blueprint.layer("kafka_client", "confluent-kafka and the MSK IAM SASL signer")],
            timeout=Duration.seconds(120),
            memory_size=1024,
        )
        cluster.allow_client(producer.function, "Producer function")
        cluster.grant_bootstrap_brokers(producer)
        cluster.grant_produce(producer, TOPIC)

        aggregates = StateTable(self, "Aggregates", partition_key="user_id", **common)
        dashboard.monitor(aggregates)
        aggregator = blueprint.function(
            "Aggregator",
            "clickstream_aggregator",
            environment={"AGGREGATES_TABLE": aggregates.table.table_name},
            # One batch per partition at a time: where the profile reserves concurrency, room for all of them at once.
            reserved_concurrent_executions=partitions if profile.reserved_concurrency is not None else None,
        )
        aggregates.grant_items(aggregator, "dynamodb:UpdateItem")
        source = KafkaEventSource(
            self,
            "ClickstreamSource",
            consumer=aggregator,
            cluster=cluster,
            topic=TOPIC,
            consumer_group=CONSUMER_GROUP,
            topic_resource=topic,
            batch_size=BATCH_SIZE,
            max_batching_window=BATCH_WINDOW,
            # A poller drives up to 5 concurrent invocations: enough to reach every partition.
            provisioned_pollers=ProvisionedPollers(minimum=1, maximum=math.ceil(partitions / 5)),
            **common,
        )
        dashboard.monitor(source)

        CfnOutput(self, "ProducerFunctionName", value=producer.function.function_name)
        CfnOutput(self, "ClusterArn", value=cluster.cluster_arn)
        CfnOutput(self, "TopicName", value=TOPIC)
        CfnOutput(self, "AggregatesTableName", value=aggregates.table.table_name)
        CfnOutput(self, "OnFailureQueueUrl", value=source.dead_letter_queue.queue_url)
