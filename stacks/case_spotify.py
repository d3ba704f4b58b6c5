"""CaseSpotify: listening events by family into an Iceberg lake, each user's personal fields under a key of their own."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from messaging_constructs import EventStream, IcebergLake, LakeDelivery, Profile, QueueEventSource, StateTable, StreamSchemas
from messaging_runtime import listening
from messaging_runtime.contracts.listening import FAMILIES, FAMILY_KINDS

from ._blueprint import Blueprint

#: Each family's stream and delivery construct ids (``playback`` -> ``PlaybackEvents``, ``PlaybackDelivery``...).
STREAM_IDS = {family: f"{family.title()}Events" for family in FAMILIES}
#: How long a transformation keeps a user's unwrapped key: KMS is called about once per user and period.
KEY_CACHE = Duration.minutes(5)
#: An erasure waits this long, so that the user's events in flight are sealed (under the key it deletes) first.
ERASURE_DELAY = Duration.minutes(15)
#: Erasure records outlive every backup of the key table (PITR and the backup plan keep 35 days) with room to spare.
ERASURE_RECORD_DAYS = 400
FRESHNESS_TARGET = Duration.minutes(5)
#: Production shards per family stream (each takes 1,000 records/s or 1 MB/s of writes).
PRODUCTION_SHARDS = 4


class CaseSpotifyStack(Stack):
    """Spotify-style event delivery with crypto-shredding.

    - one Kinesis stream per event family (``PlaybackEvents``: play and skip;
      ``InteractionEvents``: like and search), their contracts in a Glue
      schema registry;
    - per family, Firehose into the Iceberg lake through a transformation
      that routes each event to its type's table (``plays``, ``skips``,
      ``likes``, ``searches``; what is not an event of the family to the
      family's quarantine table) and seals the row's personal fields with
      AES-GCM under the user's own data key;
    - the ``UserKeys`` table: each user's data key, made by KMS under the
      stack's key and stored only wrapped (``messaging_runtime.crypto_shredding``);
    - erasure: a request on the ``ErasureRequests`` queue (DLQ, alarms) is
      handled 15 minutes later by a function that deletes the user's key and
      records the erasure in the ``Erasures`` table; every row of the user's,
      in every table and every copy, is then unreadable.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = profile or Profile.of(self)
        # In production the functions run in the network: the transformations reach KMS through an endpoint (DynamoDB's
        # gateway endpoint comes with the blueprint), the lake's table handler Athena and S3.
        blueprint = Blueprint.create(self, profile, interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.KMS])
        common, dashboard = blueprint.common, blueprint.dashboard
        database = f"{construct_id.lower()}_lake"

        user_keys = StateTable(self, "UserKeys", partition_key="pk", **common)
        erasures = StateTable(self, "Erasures", partition_key="request_id", time_to_live_attribute="expires_at", **common)
        dashboard.monitor(user_keys).monitor(erasures)
        crypto = blueprint.layer("crypto", "cryptography (AES-GCM) for the per-user encryption")

        StreamSchemas(self, "Schemas", kinds=list(FAMILY_KINDS.values()), registry_name=f"{construct_id}-events")
        lake = IcebergLake(self, "Lake", database_name=database, network=blueprint.network, **common)
        for family in FAMILIES:
            for table in listening.family_tables(family):
                lake.add_table(table, columns=listening.columns(table), partitions=listening.partitions(table))
        dashboard.monitor(lake)

        for family in FAMILIES:
            name = family.title()
            stream = EventStream(self, STREAM_IDS[family], shard_count=PRODUCTION_SHARDS, **common)
            transform = blueprint.function(
                f"{name}Transform",
                "case_spotify_transform",
                environment={
                    "EVENT_FAMILY": family,
                    "LAKE_DATABASE": database,
                    "USER_KEYS_TABLE": user_keys.table.table_name,
                    "USER_KEYS_KMS_KEY": blueprint.key.key_arn,
                    "KEY_CACHE_SECONDS": str(int(KEY_CACHE.to_seconds())),
                },
                layers=[crypto],
                timeout=Duration.minutes(1),
                memory_size=512,
            )
            # Reads the user item and the key item; a new user's two items in one transaction (Put, with conditions).
            user_keys.grant_items(transform, "dynamodb:GetItem", "dynamodb:PutItem")
            blueprint.key.grant(transform, "kms:GenerateDataKey", "kms:Decrypt")
            delivery = LakeDelivery(
                self,
                f"{name}Delivery",
                stream=stream,
                lake=lake,
                tables=listening.family_tables(family),
                transform=transform,
                freshness_target=FRESHNESS_TARGET,
                alarm_topic=blueprint.alarms,
            )
            dashboard.monitor(stream).monitor(delivery)
            CfnOutput(self, f"{name}StreamName", value=stream.stream_name)

        requests = blueprint.queue("ErasureRequests", delivery_delay=ERASURE_DELAY, age_alarm_threshold=Duration.hours(1))
        erasure = blueprint.function(
            "KeyErasure",
            "case_spotify_erasure",
            environment={
                "USER_KEYS_TABLE": user_keys.table.table_name,
                "ERASURES_TABLE": erasures.table.table_name,
                "ERASURE_RECORD_DAYS": str(ERASURE_RECORD_DAYS),
            },
        )
        # One transaction: read the user item, delete both key items (conditionally), put the erasure's record.
        user_keys.grant_items(erasure, "dynamodb:GetItem", "dynamodb:DeleteItem")
        erasures.grant_items(erasure, "dynamodb:PutItem")
        QueueEventSource(self, "ErasureRequestsSource", consumer=erasure, queue=requests, batch_size=10, max_concurrency=2)

        CfnOutput(self, "LakeDatabase", value=database)
        CfnOutput(self, "AthenaWorkgroup", value=lake.workgroup_name)
        CfnOutput(self, "UserKeysTable", value=user_keys.table.table_name)
        CfnOutput(self, "ErasuresTable", value=erasures.table.table_name)
        CfnOutput(self, "ErasureRequestsQueueUrl", value=requests.queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
