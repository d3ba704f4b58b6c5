"""MessageBroker and MqEventSource: what each promises, per engine and profile, and the checks on bad props."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ElementTree

import pytest

from messaging_constructs import BrokerEngine, HandlerFunction, MessageBroker, MqEventSource, PrivateNetwork
from stacks._paths import lambda_code

from .helpers import actions, new_stack, only, resources, statements, template


def _broker(engine: BrokerEngine = BrokerEngine.RABBITMQ, profile: str = "sandbox", **options):
    stack = new_stack(profile)
    network = PrivateNetwork(stack, "Network")
    return stack, network, MessageBroker(stack, "Broker", engine=engine, network=network, **options)


def _function(stack, network, construct_id="Consumer"):
    return HandlerFunction(stack, construct_id, code_path=lambda_code("billing_consumer"), service_name="consumer", network=network)


@pytest.mark.parametrize(
    ("engine", "profile", "mode", "subnets", "instance_type"),
    [
        (BrokerEngine.RABBITMQ, "sandbox", "SINGLE_INSTANCE", 1, "mq.t3.micro"),
        (BrokerEngine.ACTIVEMQ, "sandbox", "SINGLE_INSTANCE", 1, "mq.t3.micro"),
        (BrokerEngine.RABBITMQ, "production", "CLUSTER_MULTI_AZ", 2, "mq.m5.large"),
        (BrokerEngine.ACTIVEMQ, "production", "ACTIVE_STANDBY_MULTI_AZ", 2, "mq.m5.large"),
    ],
)
def test_deployment_per_engine_and_profile(engine, profile, mode, subnets, instance_type):
    stack, _, broker = _broker(engine, profile)
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    props = resource["Properties"]
    assert props["DeploymentMode"] == mode and len(props["SubnetIds"]) == subnets and props["HostInstanceType"] == instance_type
    assert props["PubliclyAccessible"] is False and props["AutoMinorVersionUpgrade"] is True
    assert props["EngineVersion"] == engine.default_version
    assert props["MaintenanceWindowStartTime"] == {"DayOfWeek": "SUNDAY", "TimeOfDay": "03:00", "TimeZone": "UTC"}
    assert props["Logs"]["General"] is True
    # A retained broker would need its network retained too: deleted in both profiles, with its secrets, after a drain.
    assert resource["DeletionPolicy"] == "Delete"
    assert {s["DeletionPolicy"] for s in resources(stack, "AWS::SecretsManager::Secret").values()} == {"Delete"}


def test_activemq_encrypts_with_the_key_keeps_audit_logs_and_dead_letters_per_queue():
    stack, _, broker = _broker(BrokerEngine.ACTIVEMQ)
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    props = resource["Properties"]
    assert props["EncryptionOptions"]["UseAwsOwnedKey"] is False and "Fn::GetAtt" in props["EncryptionOptions"]["KmsKeyId"]
    assert props["Logs"]["Audit"] is True
    assert [u["Username"] for u in props["Users"]] == ["admin", "app"]
    assert [u["ConsoleAccess"] for u in props["Users"]] == [True, False]
    _, config = only(resources(stack, "AWS::AmazonMQ::Configuration"))
    xml = base64.b64decode(config["Properties"]["Data"]).decode()
    assert "individualDeadLetterStrategy" in xml and 'queuePrefix="DLQ."' in xml and 'queue="&gt;"' in xml


def test_rabbitmq_uses_an_aws_owned_key_and_one_user():
    stack, _, broker = _broker(BrokerEngine.RABBITMQ)
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    props = resource["Properties"]
    assert props["EncryptionOptions"] == {"UseAwsOwnedKey": True}
    assert [u["Username"] for u in props["Users"]] == ["admin"]
    assert "ConsoleAccess" not in props["Users"][0] and "Groups" not in props["Users"][0]  # neither applies to RabbitMQ
    assert "Audit" not in props["Logs"]
    assert not resources(stack, "AWS::AmazonMQ::Configuration")


def test_passwords_are_generated_in_secrets_encrypted_with_the_key():
    stack, _, broker = _broker(BrokerEngine.ACTIVEMQ)
    secrets = resources(stack, "AWS::SecretsManager::Secret")
    assert len(secrets) == 2
    for secret in secrets.values():
        props = secret["Properties"]
        assert "KmsKeyId" in props and props["GenerateSecretString"]["PasswordLength"] == 32
        assert props["GenerateSecretString"]["ExcludePunctuation"] is True
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    for user in resource["Properties"]["Users"]:
        rendered = json.dumps(user["Password"])
        assert "resolve:secretsmanager" in rendered  # a dynamic reference, never a literal


def test_security_group_admits_only_named_peers_on_tls_ports():
    stack, network, broker = _broker(BrokerEngine.ACTIVEMQ)
    fn = _function(stack, network)
    broker.allow_client(fn.function, "stomp", "openwire")
    t = template(stack).to_json()["Resources"]
    group = stack.get_logical_id(broker.security_group.node.default_child)
    ingress = [r["Properties"] for r in t.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group]
    assert sorted(r["FromPort"] for r in ingress) == [61614, 61617]
    assert all("SourceSecurityGroupId" in r for r in ingress)
    assert "SecurityGroupIngress" not in t[group]["Properties"]


def test_unknown_protocol_is_refused():
    stack, network, broker = _broker(BrokerEngine.RABBITMQ)
    with pytest.raises(ValueError, match="RABBITMQ brokers have no 'stomp' port"):
        broker.allow_client(_function(stack, network).function, "stomp")


@pytest.mark.parametrize(("engine", "metrics"), [(BrokerEngine.ACTIVEMQ, {"CpuUtilization", "HeapUsage", "StorePercentUsage", "CurrentConnectionsCount"})])
def test_activemq_alarms(engine, metrics):
    stack, _, broker = _broker(engine)
    names = {a["Properties"].get("MetricName") for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert metrics <= names
    alarms = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/AmazonMQ"]
    assert {d["Value"] for a in alarms for d in a.get("Dimensions", [])} == {f"{broker.broker_name}-1"}


def test_rabbitmq_alarms_take_the_worst_node():
    stack, _, broker = _broker(BrokerEngine.RABBITMQ)
    alarms = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()]
    queries = [m["Expression"] for a in alarms for m in a.get("Metrics", []) if "Expression" in m]
    assert any("MAX(SystemCpuUtilization)" in q for q in queries) and any("MAX(RabbitMQMemUsed)" in q for q in queries)
    assert any("MIN(RabbitMQDiskFree)" in q for q in queries)
    assert any(a.get("MetricName") == "ConnectionCount" for a in alarms)
    memory = [a for a in alarms if any("RabbitMQMemUsed" in m.get("Expression", "") for m in a.get("Metrics", []))]
    assert memory[0]["Threshold"] == pytest.approx(0.8 * 0.4 * 2**30)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(broker_name="has space"), "broker_name must be"),
        (dict(admin_username="a"), "admin_username must be"),
        (dict(admin_username="same", application_username="same"), "must differ"),
        (dict(maintenance_day="Sunday"), "maintenance_day must be"),
        (dict(maintenance_time="3am"), "maintenance_time must be HH:MM"),
        (dict(instance_type="m5.large"), "instance_type must be an Amazon MQ type"),
        (dict(instance_type="mq.m7g.medium"), "no memory figure for mq.m7g.medium"),
        (dict(application_username="guest"), "RabbitMQ brokers refuse"),
        (dict(admin_username="ad~min"), "RabbitMQ brokers refuse"),
    ],
)
def test_bad_broker_props_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _broker(**options)


def test_active_standby_queue_alarms_watch_both_instances():
    stack, network, broker = _broker(BrokerEngine.ACTIVEMQ, "production")
    broker.add_queue_alarm("DlqAlarm", "DLQ.orders", threshold=1)
    (alarm,) = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if "DLQ.orders" in json.dumps(a)]
    watched = {d["Value"] for m in alarm["Metrics"] if "MetricStat" in m for d in m["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "Broker"}
    assert watched == {f"{broker.broker_name}-1", f"{broker.broker_name}-2"}
    assert any(m.get("Expression", "").startswith("MAX([") for m in alarm["Metrics"])


def test_t3_micro_cannot_be_a_cluster():
    with pytest.raises(ValueError, match="single instances"):
        _broker(BrokerEngine.RABBITMQ, "production", instance_type="mq.t3.micro")


@pytest.mark.parametrize(("engine", "dead_letter"), [(BrokerEngine.RABBITMQ, "orders.dead-letter"), (BrokerEngine.ACTIVEMQ, "DLQ.orders")])
def test_event_source_mapping(engine, dead_letter):
    stack, network, broker = _broker(engine)
    consumer = _function(stack, network)
    source = MqEventSource(stack, "Source", broker=broker, consumer=consumer, queue="orders", batch_size=20)
    _, mapping = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    props = mapping["Properties"]
    assert props["Queues"] == ["orders"] and props["BatchSize"] == 20 and props["MaximumBatchingWindowInSeconds"] == 1
    types = [c["Type"] for c in props["SourceAccessConfigurations"]]
    assert types == (["BASIC_AUTH", "VIRTUAL_HOST"] if engine is BrokerEngine.RABBITMQ else ["BASIC_AUTH"])
    assert source.dead_letter_queue_name == dead_letter
    depth_alarms = [
        a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") in ("MessageCount", "QueueSize")
    ]
    queues = {d["Value"] for a in depth_alarms for d in a["Dimensions"] if d["Name"] == "Queue"}
    assert queues == {"orders", dead_letter}
    assert any(a["Threshold"] == 1 for a in depth_alarms)
    granted = statements(stack)
    assert any(actions(s) == ["mq:DescribeBroker"] and s["Resource"] == {"Fn::GetAtt": [stack.get_logical_id(broker.broker), "Arn"]} for s in granted)
    assert any("secretsmanager:GetSecretValue" in actions(s) for s in granted)
    services = {json.dumps(e["Properties"]["ServiceName"]) for e in resources(stack, "AWS::EC2::VPCEndpoint").values()}
    for service in ("lambda", "sts", "secretsmanager"):
        assert any(f".{service}" in s for s in services), service


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(batch_size=0), "batch_size must be between 1 and 10000"),
        (dict(virtual_host="/other"), "virtual_host applies to RabbitMQ brokers only"),
        (dict(dead_letter_queue_name="orders"), "dead_letter_queue_name must differ"),
    ],
)
def test_bad_event_source_props_are_refused(options, message):
    stack, network, broker = _broker(BrokerEngine.ACTIVEMQ)
    with pytest.raises(ValueError, match=message):
        MqEventSource(stack, "Source", broker=broker, consumer=_function(stack, network), queue="orders", **options)


def _names(engine: BrokerEngine, profile: str = "sandbox", **options) -> tuple[str, str | None]:
    """(broker name, configuration name or None) as synthesized."""
    stack, _, _ = _broker(engine, profile, **options)
    (_, broker) = only(resources(stack, "AWS::AmazonMQ::Broker"))
    configurations = list(resources(stack, "AWS::AmazonMQ::Configuration").values())
    return broker["Properties"]["BrokerName"], configurations[0]["Properties"]["Name"] if configurations else None


@pytest.mark.parametrize("engine", list(BrokerEngine))
def test_names_change_with_what_forces_a_replacement_and_only_then(engine):
    """CloudFormation cannot replace a resource whose custom name stays the same: the names follow the create-only properties."""
    broker, configuration = _names(engine)
    assert len(broker) <= 50
    # in place: the instance type, maintenance window and engine version of the broker
    assert _names(engine, instance_type="mq.m5.large", maintenance_day="MONDAY")[0] == broker
    other_version = {BrokerEngine.RABBITMQ: "3.13", BrokerEngine.ACTIVEMQ: "5.17"}[engine]
    upgraded = _names(engine, engine_version=other_version)
    assert upgraded[0] == broker
    if engine is BrokerEngine.ACTIVEMQ:
        # the configuration's engine version is create-only
        assert upgraded[1] != configuration and configuration.endswith("-config")
    # replacement: production's deployment mode and subnets
    assert _names(engine, "production")[0] != broker


def test_a_chosen_broker_name_is_kept():
    assert _names(BrokerEngine.RABBITMQ, broker_name="warehouse")[0] == "warehouse"


def _matches(pattern: str, name: str) -> bool:
    """ActiveMQ destination wildcards: ``.`` separates, ``*`` is one element, ``>`` the rest."""
    want, have = pattern.split("."), name.split(".")
    for index, element in enumerate(want):
        if element == ">":
            return True
        if index >= len(have) or element not in ("*", have[index]):
            return False
    return len(want) == len(have)


def _rights(xml: str, group: str, kind: str, name: str) -> set[str]:
    """What ``group`` may do on a destination: ActiveMQ unites the groups of every entry that matches it."""
    namespace = "{http://activemq.apache.org/schema/core}"
    rights = set()
    for entry in ElementTree.fromstring(xml).iter(f"{namespace}authorizationEntry"):
        pattern = entry.get(kind)
        if pattern is not None and _matches(pattern, name):
            rights |= {right for right in ("read", "write", "admin") if group in (entry.get(right) or "").split(",")}
    return rights


def test_activemq_application_user_may_use_only_its_queues():
    """Without an authorization map every ActiveMQ user may use every destination, dead-letter queues included."""
    stack, network, broker = _broker(BrokerEngine.ACTIVEMQ)
    MqEventSource(stack, "Source", broker=broker, consumer=_function(stack, network), queue="orders")
    broker.allow_application("invoices", write=True)
    _, config = only(resources(stack, "AWS::AmazonMQ::Configuration"))
    xml = base64.b64decode(config["Properties"]["Data"]).decode()
    assert _rights(xml, "application", "queue", "orders") == {"read"}
    assert _rights(xml, "application", "queue", "invoices") == {"write"}
    # The application may create nothing: its queues are made by the broker at start.
    namespace = "{http://activemq.apache.org/schema/core}"
    assert sorted(q.get("physicalName") for q in ElementTree.fromstring(xml).iter(f"{namespace}queue")) == ["invoices", "orders"]
    for other in ("DLQ.orders", "DLQ.invoices", "payments", "orders.archive"):
        assert _rights(xml, "application", "queue", other) == set(), other
    assert _rights(xml, "application", "topic", "ActiveMQ.Advisory.Queue") == {"read", "admin"}
    assert _rights(xml, "application", "topic", "prices") == set()
    for group in ("admin", "activemq-webconsole"):
        assert _rights(xml, group, "queue", "DLQ.orders") == _rights(xml, group, "topic", "prices") == {"read", "write", "admin"}
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    assert [(u["Username"], u["Groups"]) for u in resource["Properties"]["Users"]] == [("admin", ["admin"]), ("app", ["application"])]


@pytest.mark.parametrize(
    ("engine", "queue", "options", "message"),
    [
        (BrokerEngine.RABBITMQ, "orders", {"read": True}, "allow_application applies to ActiveMQ"),
        (BrokerEngine.ACTIVEMQ, "orders", {}, "needs read=True and/or write=True"),
        (BrokerEngine.ACTIVEMQ, "orders.>", {"read": True}, "plain ActiveMQ queue name"),
        (BrokerEngine.ACTIVEMQ, "DLQ.orders", {"read": True}, "not a DLQ"),
    ],
)
def test_fails_when_application_access_is_not_a_plain_queue_on_activemq(engine, queue, options, message):
    _, _, broker = _broker(engine)
    with pytest.raises(ValueError, match=message):
        broker.allow_application(queue, **options)


def _thresholds(stack) -> dict[str, float]:
    """Alarm construct id (last path part of its logical id's prefix) -> threshold."""
    found = {}
    for logical_id, alarm in resources(stack, "AWS::CloudWatch::Alarm").items():
        found[logical_id] = alarm["Properties"]["Threshold"]
    return found


def test_activemq_alarm_thresholds_are_props():
    stack, _, _ = _broker(BrokerEngine.ACTIVEMQ, cpu_alarm_percent=70, memory_alarm_percent=75, storage_alarm_percent=60, max_connections=50)
    thresholds = _thresholds(stack)
    for name, value in (("Cpu", 70), ("Heap", 75), ("Store", 60), ("Connections", 50)):
        (found,) = [v for k, v in thresholds.items() if k.startswith(f"BrokerInstance1{name}Alarm")]
        assert found == value, name


def test_activemq_alarm_thresholds_default_to_80_percent():
    stack, _, _ = _broker(BrokerEngine.ACTIVEMQ)
    thresholds = _thresholds(stack)
    for name in ("Cpu", "Heap", "Store"):
        (found,) = [v for k, v in thresholds.items() if k.startswith(f"BrokerInstance1{name}Alarm")]
        assert found == 80, name


def test_rabbitmq_alarm_thresholds_are_props():
    stack, _, _ = _broker(BrokerEngine.RABBITMQ, cpu_alarm_percent=70, memory_alarm_percent=50, disk_free_alarm_gib=2)
    thresholds = _thresholds(stack)
    by_name = {name: next(v for k, v in thresholds.items() if k.startswith(f"Broker{name}Alarm")) for name in ("Cpu", "Memory", "Disk")}
    assert by_name == {"Cpu": 70, "Memory": pytest.approx(0.5 * 0.4 * 2**30), "Disk": 2 * 2**30}


def test_fails_when_an_alarm_percent_is_out_of_range():
    with pytest.raises(ValueError, match="memory_alarm_percent must be between 1 and 100 %, got 120 %"):
        _broker(memory_alarm_percent=120)


@pytest.mark.parametrize(("profile", "multi_az", "mode"), [("sandbox", None, "SINGLE_INSTANCE"), ("production", False, "SINGLE_INSTANCE")])
def test_deployment_follows_the_profile_unless_multi_az_is_given(profile, multi_az, mode):
    stack, _, _ = _broker(BrokerEngine.ACTIVEMQ, profile, multi_az=multi_az)
    _, resource = only(resources(stack, "AWS::AmazonMQ::Broker"))
    assert resource["Properties"]["DeploymentMode"] == mode


def test_event_source_dead_letter_alarm_threshold_is_a_prop():
    stack, network, broker = _broker(BrokerEngine.RABBITMQ)
    MqEventSource(stack, "Source", consumer=_function(stack, network), broker=broker, queue="orders", dead_letter_alarm_threshold=5, max_queue_depth=50)
    depth = {
        d["Value"]: a["Properties"]["Threshold"]
        for a in resources(stack, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "MessageCount"
        for d in a["Properties"]["Dimensions"]
        if d["Name"] == "Queue"
    }
    assert depth == {"orders": 50, "orders.dead-letter": 5}


def test_event_source_mappings_are_allowed_once_however_many_consumers():
    stack, network, broker = _broker(BrokerEngine.RABBITMQ)
    consumer = _function(stack, network)
    MqEventSource(stack, "A", consumer=consumer, broker=broker, queue="a")
    MqEventSource(stack, "B", consumer=consumer, broker=broker, queue="b")
    broker.allow_event_source_mappings()
    group = stack.get_logical_id(broker.security_group.node.default_child)
    self_ingress = [
        r["Properties"]
        for r in resources(stack, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group and r["Properties"].get("SourceSecurityGroupId", {}).get("Fn::GetAtt", [None])[0] == group
    ]
    assert len(self_ingress) == 1 and self_ingress[0]["FromPort"] == 5671


def test_fails_when_an_imported_consumer_has_no_role():
    from aws_cdk import aws_lambda as lambda_

    stack, network, broker = _broker(BrokerEngine.RABBITMQ)
    consumer = lambda_.Function.from_function_arn(stack, "Imported", "arn:aws:lambda:us-east-1:123456789012:function:consumer")
    with pytest.raises(ValueError, match="MqEventSource grants to the consumer's role"):
        MqEventSource(stack, "Source", consumer=consumer, broker=broker, queue="orders")
