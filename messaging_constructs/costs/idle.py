"""What a synthesized stack costs a month with no traffic at all: the resources billed by the hour or the month.

Read from the template, so it prices what CloudFormation will create, whoever wrote it. Priced: customer-managed KMS
keys, alarm metrics (standard or high resolution; each metric of a math expression, one per Metrics Insights query),
dashboards, interface VPC endpoints (per AZ) and NAT gateways, Amazon MQ broker instances (one, two for active/standby,
three for a RabbitMQ cluster), MSK brokers and their storage, MSK Serverless clusters, Kinesis streams (on-demand
stream-hours; provisioned shard-hours and extended retention), DynamoDB provisioned capacity (tables and their global
secondary indexes), WAF web ACLs and rules, Secrets Manager secrets, and Lambda event source mappings with provisioned
pollers. Everything else a messaging app holds is billed by use and costs nothing idle; ``UNPRICED_AT_REST`` names
what is billed at rest by the size of its data (buckets, table storage, backups), which a template cannot know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._lines import Line, Template, construct_name
from .prices import PriceTable

HOURS_PER_MONTH = 730
#: Billed at rest by the size of what they hold, which a template cannot tell: left out of the idle figure.
UNPRICED_AT_REST = {
    "AWS::S3::Bucket": "S3 storage (by size)",
    "AWS::DynamoDB::Table": "DynamoDB storage, backups and point-in-time recovery (by size)",
    "AWS::Backup::BackupVault": "backup storage (by size)",
    "AWS::Logs::LogGroup": "log storage (by size)",
    "AWS::Events::Archive": "archived events (by size)",
}
#: Broker instances each deployment mode bills (Amazon MQ pricing: an active/standby pair is two brokers).
BROKER_INSTANCES = {"SINGLE_INSTANCE": 1, "ACTIVE_STANDBY_MULTI_AZ": 2, "CLUSTER_MULTI_AZ": 3}


def _alarm_metrics(properties: Mapping[str, Any]) -> tuple[int, int]:
    """(standard, high-resolution) metrics an alarm is billed for."""
    if "Metrics" not in properties:
        high = int(properties.get("Period", 60)) < 60
        return (0, 1) if high else (1, 0)
    standard = high = 0
    for query in properties["Metrics"]:
        stat = query.get("MetricStat")
        if stat is not None:
            if int(stat.get("Period", 60)) < 60:
                high += 1
            else:
                standard += 1
        elif str(query.get("Expression", "")).lstrip().upper().startswith("SELECT"):
            standard += 1
    return standard, high


def idle_cost(template: Mapping[str, Any], prices: PriceTable) -> list[Line]:
    """The monthly cost of ``template``'s resources at zero traffic, a line per kind of resource."""
    view = Template(template)
    lines: list[Line] = []

    def add(item: str, quantity: float, price: str) -> None:
        if quantity:
            lines.append(Line.of(item, quantity, price, prices))

    add("KMS customer-managed keys", sum(1 for _ in view.of_type("AWS::KMS::Key")), "kms.key")
    standard = high = 0
    for _, properties in view.of_type("AWS::CloudWatch::Alarm"):
        s, h = _alarm_metrics(properties)
        standard, high = standard + s, high + h
    add("alarm metrics", standard, "cloudwatch.alarm_metric")
    add("high-resolution alarm metrics", high, "cloudwatch.alarm_metric_high_resolution")
    add("dashboards", sum(1 for _ in view.of_type("AWS::CloudWatch::Dashboard")), "cloudwatch.dashboard")
    endpoint_azs = sum(len(p.get("SubnetIds", [])) for _, p in view.of_type("AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Interface")
    add("interface endpoint-AZ hours", endpoint_azs * HOURS_PER_MONTH, "vpc.interface_endpoint")
    add("NAT gateway hours", sum(1 for _ in view.of_type("AWS::EC2::NatGateway")) * HOURS_PER_MONTH, "vpc.nat_gateway")
    for logical_id, p in view.of_type("AWS::AmazonMQ::Broker"):
        engine, instance = str(p["EngineType"]).lower(), p["HostInstanceType"]
        instances = BROKER_INSTANCES[p.get("DeploymentMode", "SINGLE_INSTANCE")]
        add(f"{construct_name(logical_id)}: {instances} × {engine} {instance} broker hours", instances * HOURS_PER_MONTH, f"mq.{engine}.{instance}")
    for logical_id, p in view.of_type("AWS::MSK::Cluster"):
        group, brokers = p["BrokerNodeGroupInfo"], int(p["NumberOfBrokerNodes"])
        add(f"{construct_name(logical_id)}: {brokers} × {group['InstanceType']} broker hours", brokers * HOURS_PER_MONTH, f"msk.{group['InstanceType']}")
        volume = group.get("StorageInfo", {}).get("EBSStorageInfo", {}).get("VolumeSize", 0)
        add(f"{construct_name(logical_id)}: {brokers} × {volume} GB broker storage", brokers * volume, "msk.storage")
    add("MSK Serverless cluster hours", sum(1 for _ in view.of_type("AWS::MSK::ServerlessCluster")) * HOURS_PER_MONTH, "msk.serverless_cluster")
    for logical_id, p in view.of_type("AWS::Kinesis::Stream"):
        if p.get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND":
            add(f"{construct_name(logical_id)}: on-demand stream hours", HOURS_PER_MONTH, "kinesis.on_demand_stream")
            continue
        shards = int(p.get("ShardCount", 1))
        add(f"{construct_name(logical_id)}: {shards} shard hours", shards * HOURS_PER_MONTH, "kinesis.shard")
        if int(p.get("RetentionPeriodHours", 24)) > 24:
            add(f"{construct_name(logical_id)}: {shards} shards' retention past 24 hours", shards * HOURS_PER_MONTH, "kinesis.extended_retention_shard")
    for logical_id, p in view.of_type("AWS::DynamoDB::Table"):
        if p.get("BillingMode", "PROVISIONED") != "PROVISIONED":
            continue
        throughputs = [p.get("ProvisionedThroughput", {})] + [i.get("ProvisionedThroughput", {}) for i in p.get("GlobalSecondaryIndexes", [])]
        add(
            f"{construct_name(logical_id)}: read capacity unit hours",
            sum(int(t.get("ReadCapacityUnits", 0)) for t in throughputs) * HOURS_PER_MONTH,
            "dynamodb.read_capacity_unit",
        )
        add(
            f"{construct_name(logical_id)}: write capacity unit hours",
            sum(int(t.get("WriteCapacityUnits", 0)) for t in throughputs) * HOURS_PER_MONTH,
            "dynamodb.write_capacity_unit",
        )
    acls = list(view.of_type("AWS::WAFv2::WebACL"))
    add("WAF web ACLs", len(acls), "waf.web_acl")
    add("WAF rules", sum(len(p.get("Rules", [])) for _, p in acls), "waf.rule")
    add("Secrets Manager secrets", sum(1 for _ in view.of_type("AWS::SecretsManager::Secret")), "secretsmanager.secret")
    pollers = sum(
        int(p["ProvisionedPollerConfig"].get("MinimumPollers", 1)) for _, p in view.of_type("AWS::Lambda::EventSourceMapping") if "ProvisionedPollerConfig" in p
    )
    if pollers and "lambda.event_poller_unit" in prices:
        add("event source mapping pollers always on (event poller unit hours)", pollers * HOURS_PER_MONTH, "lambda.event_poller_unit")
    return lines


def unpriced(template: Mapping[str, Any], prices: PriceTable | None = None) -> list[str]:
    """What the template holds that the idle figure leaves out: what is billed at rest by its size (see
    ``UNPRICED_AT_REST``), and provisioned event pollers when the table has no price for them."""
    types = {resource.get("Type") for resource in template.get("Resources", {}).values()}
    out = [what for resource_type, what in UNPRICED_AT_REST.items() if resource_type in types]
    provisioned = any("ProvisionedPollerConfig" in p for _, p in Template(template).of_type("AWS::Lambda::EventSourceMapping"))
    if provisioned and (prices is None or "lambda.event_poller_unit" not in prices):
        out.append("the provisioned pollers of event source mappings (event poller units, always on; no confirmed price in the table)")
    return out
