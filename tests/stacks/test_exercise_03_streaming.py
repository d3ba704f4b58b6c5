"""Exercise03Streaming: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import json

import pytest

from stacks._blueprint import layer_construct_id

from .helpers import actions, function, props, statements

STACK = "Exercise03Streaming"


@pytest.fixture(params=["sandbox", "production"])
def profile(request):
    return request.param


@pytest.fixture
def template(profile, template_json):
    return template_json(profile, STACK)


def test_no_route_to_the_internet(template):
    types = {r["Type"] for r in template["Resources"].values()}
    assert not types & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway"}
    assert not [r for r in props(template, "AWS::EC2::Route").values() if "GatewayId" in r or "NatGatewayId" in r]
    assert all(not s.get("MapPublicIpOnLaunch") for s in props(template, "AWS::EC2::Subnet").values())


def test_endpoints_for_the_mapping_and_the_producer(template):
    services = {json.dumps(e["ServiceName"]).split(".")[-1].strip('"]}') for e in props(template, "AWS::EC2::VPCEndpoint").values()}
    assert {"lambda", "sts", "sqs", "kafka-api", "xray", "dynamodb"} <= services
    interface = [e for e in props(template, "AWS::EC2::VPCEndpoint").values() if e.get("VpcEndpointType") == "Interface"]
    assert interface and all(e["PrivateDnsEnabled"] for e in interface)


def test_security_groups_admit_only_named_peers(template):
    for ingress in props(template, "AWS::EC2::SecurityGroupIngress").values():
        assert "SourceSecurityGroupId" in ingress and "CidrIp" not in ingress
        assert (ingress["FromPort"], ingress["ToPort"]) in {(443, 443), (9098, 9098)}
    for group in props(template, "AWS::EC2::SecurityGroup").values():
        assert not group.get("SecurityGroupIngress")
        for egress in group.get("SecurityGroupEgress", []):
            assert egress.get("IpProtocol") != "-1"


@pytest.mark.parametrize(
    ("profile", "instance_type", "monitoring"), [("sandbox", "kafka.t3.small", "DEFAULT"), ("production", "kafka.m7g.large", "PER_BROKER")]
)
def test_cluster_per_profile(template, instance_type, monitoring):
    (cluster,) = props(template, "AWS::MSK::Cluster").values()
    assert cluster["BrokerNodeGroupInfo"]["InstanceType"] == instance_type and cluster["EnhancedMonitoring"] == monitoring
    assert cluster["ClientAuthentication"]["Unauthenticated"] == {"Enabled": False}
    assert cluster["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS", "InCluster": True}
    assert cluster["LoggingInfo"]["BrokerLogs"]["CloudWatchLogs"]["Enabled"]


@pytest.mark.parametrize(("profile", "partitions"), [("sandbox", 6), ("production", 24)])
def test_topic_created_by_the_stack(template, partitions):
    (topic,) = props(template, "AWS::MSK::Topic").values()
    assert topic["TopicName"] == "clickstream" and topic["PartitionCount"] == partitions


def test_producer_runs_in_the_vpc_with_the_kafka_layer_and_writes_only_its_topic(template):
    producer_id, producer = function(template, "clickstream_producer")
    assert producer["VpcConfig"]["SubnetIds"]
    variables = producer["Environment"]["Variables"]
    assert variables["TOPIC_NAME"] == "clickstream" and variables["COMPRESSION_TYPE"] == "lz4" and "CLUSTER_ARN" in variables
    assert variables["AWS_USE_DUALSTACK_ENDPOINT"] == "true"
    (layer_id,) = [
        layer["Ref"] for layer in producer["Layers"] if isinstance(layer, dict) and str(layer.get("Ref")).startswith(layer_construct_id("kafka_client"))
    ]
    assert template["Resources"][layer_id]["Properties"]["CompatibleArchitectures"] == ["arm64"]
    writes = [s for s in statements(template) if "kafka-cluster:WriteData" in actions(s)]
    assert len(writes) == 1 and "/clickstream" in json.dumps(writes[0]["Resource"]) and "topic/" in json.dumps(writes[0]["Resource"])


def test_aggregator_mapping(template):
    (mapping,) = props(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Topics"] == ["clickstream"] and mapping["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == "clickstream-aggregator"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["MaximumRetryAttempts"] == 3
    assert mapping["BatchSize"] == 500 and mapping["ProvisionedPollerConfig"]["MinimumPollers"] >= 1
    assert "OnFailure" in mapping["DestinationConfig"]
    aggregator_id, _ = function(template, "clickstream_aggregator")
    assert mapping["FunctionName"] == {"Ref": aggregator_id}


@pytest.mark.parametrize(("profile", "max_pollers", "concurrency"), [("sandbox", 2, None), ("production", 5, 24)])
def test_the_consumer_can_reach_every_partition(template, max_pollers, concurrency):
    (mapping,) = props(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["ProvisionedPollerConfig"]["MaximumPollers"] == max_pollers
    _, aggregator = function(template, "clickstream_aggregator")
    assert aggregator.get("ReservedConcurrentExecutions") == concurrency


def test_alarms_cover_brokers_lag_and_failures(template):
    alarms = props(template, "AWS::CloudWatch::Alarm").values()
    names = {a.get("MetricName") for a in alarms}
    assert {"KafkaDataLogsDiskUsed", "MaxOffsetLag", "ApproximateNumberOfMessagesVisible", "Errors"} <= names
    assert any("Metrics" in a for a in alarms)  # broker CPU, user + system


def test_no_wildcard_actions(template):
    for statement in statements(template):
        assert not any(a == "*" or a.endswith(":*") for a in actions(statement))
