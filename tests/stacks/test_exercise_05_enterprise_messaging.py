"""Exercise05EnterpriseMessaging: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import json

import pytest

from stacks.exercise_05_enterprise_messaging import TOPOLOGY

from .helpers import function, props

STACK = "Exercise05EnterpriseMessaging"


@pytest.fixture(params=["sandbox", "production"])
def profile(request):
    return request.param


@pytest.fixture
def template(profile, template_json):
    return template_json(profile, STACK)


def test_brokers_are_private_and_deployed_per_profile(template, profile):
    brokers = {b["EngineType"]: b for b in props(template, "AWS::AmazonMQ::Broker").values()}
    assert set(brokers) == {"RABBITMQ", "ACTIVEMQ"}
    assert all(b["PubliclyAccessible"] is False for b in brokers.values())
    if profile == "production":
        assert brokers["RABBITMQ"]["DeploymentMode"] == "CLUSTER_MULTI_AZ" and brokers["ACTIVEMQ"]["DeploymentMode"] == "ACTIVE_STANDBY_MULTI_AZ"
    else:
        assert {b["DeploymentMode"] for b in brokers.values()} == {"SINGLE_INSTANCE"}


def test_no_route_to_the_internet(template):
    types = {r["Type"] for r in template["Resources"].values()}
    assert not types & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway"}


def test_broker_ports_admit_only_named_peers(template):
    for ingress in props(template, "AWS::EC2::SecurityGroupIngress").values():
        assert "SourceSecurityGroupId" in ingress and "CidrIp" not in ingress
        assert ingress["FromPort"] in {443, 5671, 8162, 61614, 61617}
    for group in props(template, "AWS::EC2::SecurityGroup").values():
        assert not group.get("SecurityGroupIngress")


def test_secrets_use_the_stack_key(template):
    secrets = props(template, "AWS::SecretsManager::Secret").values()
    assert len(secrets) == 4 and all("KmsKeyId" in s for s in secrets)


def test_mappings_for_both_engines(template):
    mappings = {m["Queues"][0]: m for m in props(template, "AWS::Lambda::EventSourceMapping").values()}
    assert set(mappings) == {"shipment-updates", "quote-requests", "invoices"}
    assert {c["Type"] for c in mappings["shipment-updates"]["SourceAccessConfigurations"]} == {"BASIC_AUTH", "VIRTUAL_HOST"}
    assert {c["Type"] for c in mappings["invoices"]["SourceAccessConfigurations"]} == {"BASIC_AUTH"}


def test_rabbitmq_queues_dead_letter_after_a_delivery_limit(template):
    _, setup = function(template, "rabbitmq_setup")
    topology = json.loads(setup["Environment"]["Variables"]["TOPOLOGY"])
    assert topology == json.loads(json.dumps(TOPOLOGY, sort_keys=True))
    sources = [q for q in topology["queues"] if "dead_letter_exchange" in q]
    assert {q["name"] for q in sources} == {"shipment-updates", "quote-requests"}
    assert all(q["type"] == "quorum" and q["delivery_limit"] == 5 for q in sources)
    assert len(props(template, "Custom::Trigger")) == 1


def _queue_metrics(alarm: dict) -> list[dict]:
    """The queue-depth metrics an alarm watches: its own, or those of its math expression (an active/standby pair)."""
    metrics = [alarm] + [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    return [m for m in metrics if m.get("MetricName") in ("MessageCount", "QueueSize")]


def test_dead_letter_queues_alarm_on_any_message(template):
    alarms = [a for a in props(template, "AWS::CloudWatch::Alarm").values() if _queue_metrics(a)]
    dead = {d["Value"] for a in alarms if a["Threshold"] == 1 for m in _queue_metrics(a) for d in m["Dimensions"] if d["Name"] == "Queue"}
    assert dead == {"shipment-updates.dead-letter", "quote-requests.dead-letter", "DLQ.invoices"}


def test_bridges_publish_only_their_sources(template):
    conditions = []
    for policy in props(template, "AWS::IAM::ManagedPolicy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Action"] == "events:PutEvents":
                conditions.append(json.dumps(statement.get("Condition")))
    assert len(conditions) == 2 and any("legacy.warehouse" in c for c in conditions) and any("legacy.erp" in c for c in conditions)


def test_topology_is_valid_for_the_topology_function(monkeypatch):
    """The stack's TOPOLOGY passes the function's own validation, with the permissions the consumers and publishers need."""
    import importlib.util

    from stacks._paths import lambda_code

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location("rabbitmq_setup_for_stack_test", f"{lambda_code('rabbitmq_setup')}/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    topology = module.load_topology(json.dumps(TOPOLOGY))
    permissions = module.user_permissions(topology)
    assert permissions["configure"] == "^$"
    assert "shipment-updates" in permissions["read"] and "quote-requests" in permissions["read"] and "reply-to" in permissions["read"]
    assert "shipments" in permissions["write"] and "amq\\.default" in permissions["write"]
