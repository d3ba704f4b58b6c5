"""KafkaCluster and KafkaEventSource: what each promises, per profile, and the checks on bad props."""

from __future__ import annotations

import base64
import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from messaging_constructs import HandlerFunction, KafkaCluster, KafkaClusterType, KafkaEventSource, PrivateNetwork, ProvisionedPollers, StateTable
from stacks._paths import lambda_code

from .helpers import actions, new_stack, only, resources, statements, template


def _cluster(profile: str = "sandbox", **options):
    stack = new_stack(profile)
    network = PrivateNetwork(stack, "Network")
    return stack, network, KafkaCluster(stack, "Cluster", network=network, **options)


def _consumer(stack, network, construct_id="Consumer"):
    return HandlerFunction(stack, construct_id, code_path=lambda_code("billing_consumer"), service_name="consumer", network=network)


@pytest.mark.parametrize(
    ("profile", "instance_type", "volume", "monitoring"),
    [("sandbox", "kafka.t3.small", 10, "DEFAULT"), ("production", "kafka.m7g.large", 100, "PER_BROKER")],
)
def test_provisioned_cluster_per_profile(profile, instance_type, volume, monitoring):
    stack, _, cluster = _cluster(profile)
    _, resource = only(resources(stack, "AWS::MSK::Cluster"))
    props = resource["Properties"]
    nodes = props["BrokerNodeGroupInfo"]
    assert nodes["InstanceType"] == instance_type and nodes["StorageInfo"]["EBSStorageInfo"]["VolumeSize"] == volume
    assert props["EnhancedMonitoring"] == monitoring
    # brokers in every subnet; env-agnostic stacks get 2 AZs
    assert props["NumberOfBrokerNodes"] == len(nodes["ClientSubnets"]) == cluster.broker_count == 2
    assert nodes["ConnectivityInfo"]["PublicAccess"]["Type"] == "DISABLED"
    assert props["ClientAuthentication"] == {"Sasl": {"Iam": {"Enabled": True}}, "Unauthenticated": {"Enabled": False}}
    assert props["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS", "InCluster": True}
    assert "Fn::GetAtt" in props["EncryptionInfo"]["EncryptionAtRest"]["DataVolumeKMSKeyId"]
    assert props["LoggingInfo"]["BrokerLogs"]["CloudWatchLogs"]["Enabled"] is True

    encrypted = [g for g in resources(stack, "AWS::Logs::LogGroup").values() if "KmsKeyId" in g["Properties"]]
    assert len(encrypted) == len(resources(stack, "AWS::Logs::LogGroup"))
    # A retained cluster would need its network retained too: deleted in both profiles, after a drain.
    assert resource["DeletionPolicy"] == "Delete"
    assert {c.get("DeletionPolicy", "Delete") for c in resources(stack, "AWS::MSK::Configuration").values()} == {"Delete"}
    broker_logs = stack.get_logical_id(cluster.log_group.node.default_child)
    assert resources(stack, "AWS::Logs::LogGroup")[broker_logs]["DeletionPolicy"] == ("Retain" if profile == "production" else "Delete")


def test_configuration_turns_off_auto_topic_creation():
    stack, _, _ = _cluster()
    _, config = only(resources(stack, "AWS::MSK::Configuration"))
    properties = config["Properties"]["ServerProperties"]
    assert "auto.create.topics.enable=false" in properties and "default.replication.factor=2" in properties
    assert "min.insync.replicas=1" in properties


def test_broker_alarms_per_broker():
    stack, _, cluster = _cluster()
    alarms = resources(stack, "AWS::CloudWatch::Alarm")
    disk = [a for a in alarms.values() if a["Properties"].get("MetricName") == "KafkaDataLogsDiskUsed"]
    cpu = [a for a in alarms.values() if "Metrics" in a["Properties"]]
    assert len(disk) == len(cpu) == 2 and len(cluster.alarms) == 4
    broker_ids = {dim["Value"] for d in disk for dim in d["Properties"]["Dimensions"] if dim["Name"] == "Broker ID"}
    assert broker_ids == {"1", "2"}
    assert all(a["Properties"]["Threshold"] == 60 for a in cpu) and all(a["Properties"]["Threshold"] == 80 for a in disk)


def _cluster_ingress(stack, cluster) -> list[dict]:
    cluster_sg = stack.get_logical_id(cluster.security_group.node.default_child)
    return [
        r["Properties"]
        for r in template(stack).to_json()["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == cluster_sg
    ]


def test_until_event_source_mappings_are_allowed_only_named_clients_are_admitted():
    stack, network, cluster = _cluster()
    producer = _consumer(stack, network, "Producer")
    cluster.allow_client(producer.function)
    assert {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in _cluster_ingress(stack, cluster)} == {
        stack.get_logical_id(producer.security_group.node.default_child)
    }


def test_security_group_admits_only_itself_and_named_clients():
    stack, network, cluster = _cluster()
    producer = _consumer(stack, network, "Producer")
    cluster.allow_client(producer.function)
    cluster_sg = stack.get_logical_id(cluster.security_group.node.default_child)
    cluster.allow_event_source_mappings()
    cluster.allow_event_source_mappings()  # idempotent
    ingress = _cluster_ingress(stack, cluster)
    assert len(ingress) == 2
    assert {(r["FromPort"], r["ToPort"]) for r in ingress} == {(9098, 9098)}
    assert all("SourceSecurityGroupId" in r for r in ingress) and not any("CidrIp" in r for r in ingress)
    sources = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in ingress}
    assert sources == {cluster_sg, stack.get_logical_id(producer.security_group.node.default_child)}
    # no inline rules that could open it to a CIDR
    assert "SecurityGroupIngress" not in template(stack).to_json()["Resources"][cluster_sg]["Properties"]


def test_grants_are_scoped_to_the_cluster_topic_and_group():
    stack, network, cluster = _cluster()
    fn = _consumer(stack, network)
    for grant in (cluster.grant_produce(fn, "clicks"), cluster.grant_consume(fn, "clicks", "aggregator"), cluster.grant_bootstrap_brokers(fn)):
        assert isinstance(grant, iam.Grant) and grant.success
    granted = statements(stack)
    kafka = [s for s in granted if any(a.startswith("kafka-cluster:") for a in actions(s))]
    assert not any(a in ("kafka-cluster:*", "*") for s in kafka for a in actions(s))
    rendered = json.dumps(kafka)
    assert "topic/" in rendered and "/clicks" in rendered and "group/" in rendered and "/aggregator" in rendered
    for statement in kafka:
        assert statement["Resource"] != "*"
        if "kafka-cluster:WriteData" in actions(statement):
            assert "topic/" in json.dumps(statement["Resource"])
        if "kafka-cluster:AlterGroup" in actions(statement):
            assert "group/" in json.dumps(statement["Resource"])


def test_topic_is_created_with_partitions_and_retention():
    stack, _, cluster = _cluster()
    cluster.add_topic("Topic", "clicks", partitions=6, retention=Duration.days(2))
    _, topic = only(resources(stack, "AWS::MSK::Topic"))
    props = topic["Properties"]
    assert props["PartitionCount"] == 6 and props["ReplicationFactor"] == 2 and props["TopicName"] == "clicks"
    assert json.loads(base64.b64decode(props["Configs"])) == {"retention.ms": str(2 * 86400 * 1000)}


def test_serverless_cluster():
    stack, _, cluster = _cluster(cluster_type=KafkaClusterType.SERVERLESS)
    _, resource = only(resources(stack, "AWS::MSK::ServerlessCluster"))
    assert resource["Properties"]["ClientAuthentication"] == {"Sasl": {"Iam": {"Enabled": True}}}
    assert not resources(stack, "AWS::MSK::Cluster") and cluster.broker_count == 0 and cluster.log_group is None
    with pytest.raises(ValueError, match="no topic API"):
        cluster.add_topic("Topic", "clicks", partitions=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(brokers_per_az=0), "brokers_per_az must be between 1 and 5"),
        (dict(volume_size=0), "volume_size must be between 1 and 16384 GiB"),
        (dict(enhanced_monitoring="EVERYTHING"), "enhanced_monitoring must be"),
        (dict(instance_type="m5.large"), "instance_type must be an MSK broker type"),
        (dict(cluster_name="-bad name"), "cluster_name must be"),
        (dict(cluster_type=KafkaClusterType.SERVERLESS, instance_type="kafka.t3.small"), "provisioned clusters only"),
    ],
)
def test_bad_cluster_props_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _cluster(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(partitions=0), "partitions must be between 1 and 1000"),
        (dict(partitions=3, retention=Duration.minutes(5)), "retention must be between 1 hour and 365 days"),
        (dict(partitions=3, replication_factor=3), "replication_factor must be between 1 and 2"),
    ],
)
def test_bad_topic_props_are_refused(options, message):
    _, _, cluster = _cluster()
    with pytest.raises(ValueError, match=message):
        cluster.add_topic("Topic", "clicks", **options)


def test_bad_topic_name_is_refused():
    _, _, cluster = _cluster()
    with pytest.raises(ValueError, match="topic_name must be"):
        cluster.add_topic("Topic", "no spaces", partitions=1)


def _source(**options):
    stack, network, cluster = _cluster()
    consumer = _consumer(stack, network)
    source = KafkaEventSource(stack, "Source", cluster=cluster, consumer=consumer, topic="clicks", consumer_group="aggregator", **options)
    return stack, network, cluster, consumer, source


def test_event_source_mapping_settings():
    stack, *_ = _source(batch_size=500, provisioned_pollers=ProvisionedPollers(minimum=2, maximum=4))
    _, mapping = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    props = mapping["Properties"]
    assert props["Topics"] == ["clicks"] and props["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "aggregator"}
    assert props["StartingPosition"] == "TRIM_HORIZON" and props["BatchSize"] == 500 and props["MaximumBatchingWindowInSeconds"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] == 3 and props["MaximumRecordAgeInSeconds"] == 6 * 3600
    assert props["ProvisionedPollerConfig"] == {"MinimumPollers": 2, "MaximumPollers": 4}
    assert "OnFailure" in props["DestinationConfig"]


def test_event_source_adds_endpoints_and_lag_alarm_and_failure_queue():
    stack, network, cluster, consumer, source = _source()
    services = {json.dumps(e["Properties"]["ServiceName"]) for e in resources(stack, "AWS::EC2::VPCEndpoint").values()}
    for service in ("lambda", "sts", "sqs"):
        assert any(f".{service}" in s for s in services), service
    metric_names = {a["Properties"].get("MetricName") for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert "MaxOffsetLag" in metric_names
    assert source.dead_letter_queue is not None and len(source.alarms) == 2  # the lag alarm and the on-failure queue's
    # the role may send to the on-failure queue and use its key with exact actions
    granted = statements(stack)
    key_actions = {a for s in granted for a in actions(s) if a.startswith("kms:")}
    assert key_actions <= {"kms:GenerateDataKey", "kms:Decrypt"}
    assert {a for s in granted for a in actions(s) if a.startswith("sqs:")} == {"sqs:SendMessage"}  # its async DLQ and the on-failure queue


def test_event_source_takes_a_function_imported_with_its_role_and_a_queue_of_yours():
    from aws_cdk import aws_sqs as sqs

    stack, network, cluster = _cluster()
    role = iam.Role(stack, "ImportedRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    consumer = lambda_.Function.from_function_attributes(
        stack, "Imported", function_arn="arn:aws:lambda:us-east-1:123456789012:function:aggregator", role=role, same_environment=True
    )
    dlq = sqs.Queue.from_queue_arn(stack, "Dlq", "arn:aws:sqs:us-east-1:123456789012:aggregator-failures")
    source = KafkaEventSource(stack, "Source", consumer=consumer, cluster=cluster, topic="clicks", consumer_group="aggregator", dead_letter_queue=dlq)
    assert source.dead_letter_queue is dlq
    _, mapping = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    assert mapping["Properties"]["FunctionName"] == "aggregator"
    assert mapping["Properties"]["DestinationConfig"] == {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:aggregator-failures"}}
    (_, policy) = only(resources(stack, "AWS::IAM::Policy"))
    sends = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if "sqs:SendMessage" in actions(s)]
    assert sends == [{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": "arn:aws:sqs:us-east-1:123456789012:aggregator-failures"}]
    assert not resources(stack, "AWS::SQS::Queue")


def test_fails_when_an_imported_consumer_has_no_role():
    stack, network, cluster = _cluster()
    consumer = lambda_.Function.from_function_arn(stack, "Imported", "arn:aws:lambda:us-east-1:123456789012:function:aggregator")
    with pytest.raises(ValueError, match=r"KafkaEventSource grants to the consumer's role: import the function with its role"):
        KafkaEventSource(stack, "Source", consumer=consumer, cluster=cluster, topic="clicks", consumer_group="aggregator")


def test_endpoints_are_added_once():
    stack, network, cluster, consumer, _ = _source()
    other = _consumer(stack, network, "Other")
    KafkaEventSource(stack, "Second", cluster=cluster, consumer=other, topic="clicks", consumer_group="second")
    cluster.grant_bootstrap_brokers(other)
    cluster.grant_bootstrap_brokers(consumer)
    names = [json.dumps(e["Properties"]["ServiceName"]) for e in resources(stack, "AWS::EC2::VPCEndpoint").values()]
    assert len(names) == len(set(names))
    assert any(".kafka-api" in n and "aws.api." in n for n in names)  # the dual-stack MSK API endpoint service


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(batch_size=0), "batch_size must be between 1 and 10000"),
        (dict(retry_attempts=-1), "retry_attempts must be between 0 and 10000"),
        (dict(max_record_age=Duration.seconds(30)), "max_record_age must be between 1 minute and 7 days"),
        (dict(max_batching_window=Duration.minutes(6)), "max_batching_window must be between"),
        (dict(provisioned_pollers=ProvisionedPollers(minimum=3, maximum=2)), "provisioned_pollers.maximum must be between 3"),
        (dict(starting_position=lambda_.StartingPosition.AT_TIMESTAMP), "starting_position must be TRIM_HORIZON or LATEST"),
    ],
)
def test_bad_event_source_props_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _source(**options)


def test_bad_consumer_group_is_refused():
    stack, network, cluster = _cluster()
    with pytest.raises(ValueError, match="consumer_group must be"):
        KafkaEventSource(stack, "Source", cluster=cluster, consumer=_consumer(stack, network), topic="t", consumer_group="has space")


def test_state_table_grants_only_item_actions():
    stack = new_stack()
    table = StateTable(stack, "Table", partition_key="user_id")
    fn = HandlerFunction(stack, "Fn", code_path=lambda_code("billing_consumer"), service_name="fn")
    table.grant_items(fn, "dynamodb:UpdateItem")
    granted_actions = {a for s in statements(stack) for a in actions(s) if a.startswith("dynamodb:")}
    assert granted_actions == {"dynamodb:UpdateItem"}
    with pytest.raises(ValueError, match="only item actions"):
        table.grant_items(fn, "dynamodb:DeleteTable")
    _, resource = only(resources(stack, "AWS::DynamoDB::Table"))
    assert resource["Properties"]["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert resource["Properties"]["SSESpecification"]["SSEType"] == "KMS"


def test_network_ensure_interface_endpoint_is_idempotent():
    stack = new_stack()
    network = PrivateNetwork(stack, "Network", interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SQS])
    first = network.ensure_interface_endpoint(ec2.InterfaceVpcEndpointAwsService.SQS)
    assert network.ensure_interface_endpoint(ec2.InterfaceVpcEndpointAwsService.SQS) is first
    assert len(resources(stack, "AWS::EC2::VPCEndpoint")) == 3  # SQS plus the DynamoDB and S3 gateways


def _names(profile: str = "sandbox", cidr: str = "10.40.0.0/16", **options) -> tuple[str, str]:
    """(cluster name, configuration name) as synthesized."""
    stack = new_stack(profile)
    network = PrivateNetwork(stack, "Network", cidr=cidr)
    KafkaCluster(stack, "Cluster", network=network, **options)
    (_, cluster) = only(resources(stack, "AWS::MSK::Cluster"))
    (_, configuration) = only(resources(stack, "AWS::MSK::Configuration"))
    return cluster["Properties"]["ClusterName"], configuration["Properties"]["Name"]


def test_names_change_with_what_forces_a_replacement_and_only_then():
    """CloudFormation cannot replace a resource whose custom name stays the same: the names follow the create-only properties."""
    cluster, configuration = _names()
    # in-place updates: broker size and storage, and the Kafka version on the cluster
    assert _names(instance_type="kafka.m7g.large", volume_size=50)[0] == cluster
    upgraded = _names(kafka_version="3.9.x.kraft")
    assert upgraded[0] == cluster and upgraded[1] != configuration
    # replacements: other subnets (a new CIDR replaces them), another key
    assert _names(cidr="10.41.0.0/16")[0] != cluster
    stack = new_stack()
    from messaging_constructs import EncryptionKey

    network = PrivateNetwork(stack, "Network")
    KafkaCluster(stack, "Cluster", network=network, encryption_key=EncryptionKey(stack, "Other").key)
    assert only(resources(stack, "AWS::MSK::Cluster"))[1]["Properties"]["ClusterName"] != cluster
    assert len(cluster) <= 64 and configuration.endswith("-config")


def test_a_chosen_cluster_name_is_kept():
    assert _names(cluster_name="clicks")[0] == "clicks"
