"""The analytics constructs: EventStream, DeviceRule, IcebergLake, LakeDelivery, StreamSchemas, the stream route of
SecureRestApi, SecureQueue's delivery delay; and the pure functions of the ``Custom::IcebergTable`` handler."""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from pathlib import Path

import pytest
import sqlglot
from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from sqlglot import exp

from messaging_constructs import DeviceRule, EventStream, HandlerFunction, IcebergLake, LakeDelivery, SecureQueue, SecureRestApi, StreamSchemas
from messaging_constructs.event_stream import READ_ACTIONS, WRITE_ACTIONS
from messaging_constructs.iceberg_lake import HANDLER_CODE
from messaging_runtime.contracts.analytics import ANALYTICS_EVENT
from messaging_runtime.contracts.orders import ORDER_PLACED
from messaging_runtime.contracts.schemas import DRAFT_4, record_schema
from tests.unit.helpers import PSEUDO, actions, evaluate, new_stack

DATABASE = "lake_db"
EVENT_COLUMNS = [("event_id", "string"), ("event_type", "string"), ("event_date", "string"), ("schema_version", "int")]
QUARANTINE_COLUMNS = [("record_id", "string"), ("quarantine_date", "string"), ("reason", "string")]
INGEST_MODEL = {
    "type": "object",
    "required": ["events"],
    "properties": {"events": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["user_id"]}}},
}
THING = "${iot:Connection.Thing.ThingName}"


# --- reading templates ------------------------------------------------------------------


def _body(stack: Stack) -> dict:
    return Template.from_stack(stack).to_json()


def _of(body: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in body["Resources"].items() if v["Type"] == resource_type}


def _one(body: dict, resource_type: str) -> tuple[str, dict]:
    found = _of(body, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def _id(construct) -> str:
    """The logical id of an L2 construct's resource (or of an L1 construct)."""
    cfn = getattr(construct.node, "default_child", None) or construct
    return Stack.of(construct).get_logical_id(cfn)


def _statements_of(body: dict, role_id: str) -> list[dict]:
    """Every statement of every inline or managed policy attached to the role ``role_id``."""
    found = []
    for resource in body["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role_id} in resource["Properties"].get("Roles", []):
            found += resource["Properties"]["PolicyDocument"]["Statement"]
    return found


def _resources(statement: dict) -> list:
    return statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]


def _granted(statements: list[dict]) -> dict[str, list]:
    """Action -> every resource a statement grants it on."""
    granted: dict[str, list] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in actions(statement):
            granted.setdefault(action, []).extend(_resources(statement))
    return granted


def _alarms_on(body: dict, name: str, value) -> dict[str, dict]:
    """Alarms (MetricName -> Properties) whose one dimension is ``name`` = ``value``."""
    return {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in _of(body, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Dimensions") == [{"Name": name, "Value": value}]
    }


def _role(stack: Stack, construct_id: str) -> iam.Role:
    return iam.Role(stack, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))


def _function(stack: Stack, construct_id: str) -> lambda_.Function:
    return lambda_.Function(stack, construct_id, runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler", code=lambda_.Code.from_inline("x"))


def _get_att(resource_id: str, attribute: str = "Arn") -> dict:
    return {"Fn::GetAtt": [resource_id, attribute]}


# --- EventStream ------------------------------------------------------------------------


def _stream(profile: str = "sandbox", **props) -> tuple[Stack, EventStream]:
    stack = new_stack(profile)
    return stack, EventStream(stack, "Events", **props)


def test_stream_is_encrypted_with_its_customer_managed_key_on_demand_for_24_hours_in_the_sandbox():
    stack, stream = _stream()
    body = _body(stack)
    (stream_id, resource) = _one(body, "AWS::Kinesis::Stream")
    props = resource["Properties"]
    key_id = _id(stream.key)
    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": _get_att(key_id)}
    assert body["Resources"][key_id]["Type"] == "AWS::KMS::Key" and body["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in props
    assert props["RetentionPeriodHours"] == 24
    assert stream_id == _id(stream.stream)


def test_stream_is_provisioned_with_the_shard_count_for_7_days_in_production():
    stack, _ = _stream("production", shard_count=12)
    (_, resource) = _one(_body(stack), "AWS::Kinesis::Stream")
    props = resource["Properties"]
    assert props["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert props["ShardCount"] == 12
    assert props["RetentionPeriodHours"] == 7 * 24
    assert resource["DeletionPolicy"] == "Retain"


def test_stream_takes_the_key_given_and_the_capacity_mode_asked_for():
    stack = new_stack("production")
    key = kms.Key(stack, "Shared", enable_key_rotation=True)
    EventStream(stack, "Events", encryption_key=key, on_demand=True, retention=Duration.days(2))
    body = _body(stack)
    (_, resource) = _one(body, "AWS::Kinesis::Stream")
    assert resource["Properties"]["StreamEncryption"]["KeyId"] == _get_att(_id(key))
    assert resource["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in resource["Properties"]
    assert resource["Properties"]["RetentionPeriodHours"] == 48
    assert len(_of(body, "AWS::KMS::Key")) == 1


def test_stream_alarms_on_throttled_writes_failed_records_and_reader_lag_with_the_stream_name_alone():
    stack, stream = _stream(iterator_age_threshold=Duration.minutes(2))
    body = _body(stack)
    alarms = _of(body, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 3 and len(stream.alarms) == 3
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms.values()}
    assert set(by_metric) == {"WriteProvisionedThroughputExceeded", "PutRecords.FailedRecords", "GetRecords.IteratorAgeMilliseconds"}
    for alarm in by_metric.values():
        assert alarm["Namespace"] == "AWS/Kinesis"
        assert alarm["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": _id(stream.stream)}}]
        assert alarm["TreatMissingData"] == "notBreaching"
    lag = by_metric["GetRecords.IteratorAgeMilliseconds"]
    assert (lag["Statistic"], lag["Threshold"], lag["EvaluationPeriods"], lag["Period"]) == ("Maximum", 120_000, 3, 60)
    assert by_metric["WriteProvisionedThroughputExceeded"]["Threshold"] == 1 and by_metric["PutRecords.FailedRecords"]["Threshold"] == 1


def test_grant_write_is_put_records_on_the_stream_and_generate_data_key_on_its_key_only():
    stack, stream = _stream()
    writer = _role(stack, "Writer")
    stream.grant_write(writer)
    body = _body(stack)
    granted = _granted(_statements_of(body, _id(writer)))
    assert set(granted) == {*WRITE_ACTIONS, "kms:GenerateDataKey"}
    assert set(WRITE_ACTIONS) == {"kinesis:PutRecord", "kinesis:PutRecords"}
    assert all(granted[a] == [_get_att(_id(stream.stream))] for a in WRITE_ACTIONS)
    assert granted["kms:GenerateDataKey"] == [_get_att(_id(stream.key))]


def test_grant_read_is_the_read_actions_on_the_stream_and_decrypt_on_its_key_only():
    stack, stream = _stream()
    reader = _role(stack, "Reader")
    stream.grant_read(reader)
    granted = _granted(_statements_of(_body(stack), _id(reader)))
    assert set(granted) == {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "kinesis:ListShards",
        "kms:Decrypt",
    }
    assert set(READ_ACTIONS) == set(granted) - {"kms:Decrypt"}
    assert all(granted[a] == [_get_att(_id(stream.stream))] for a in READ_ACTIONS)
    assert granted["kms:Decrypt"] == [_get_att(_id(stream.key))]


def test_no_grant_of_a_stream_names_a_wildcard_action():
    stack, stream = _stream()
    stream.grant_write(_role(stack, "Writer"))
    stream.grant_read(_role(stack, "Reader"))
    stream.add_consumer(_function(stack, "Consumer"))
    body = _body(stack)
    policies = [*_of(body, "AWS::IAM::Policy").values(), *_of(body, "AWS::IAM::ManagedPolicy").values()]
    granted = [a for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"] for a in actions(s)]
    assert granted and [a for a in granted if "*" in a] == []


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(shard_count=0), "shard_count must be between 1 and 10000"),
        (dict(shard_count=10_001), "shard_count must be between 1 and 10000"),
        (dict(retention=Duration.hours(12)), "retention must be between 1 day and 365 days, got 12 hours"),
        (dict(retention=Duration.days(366)), "retention must be between 1 day and 365 days"),
        (dict(throttled_records_alarm_threshold=0), "throttled_records_alarm_threshold"),
        (dict(failed_records_alarm_threshold=0), "failed_records_alarm_threshold"),
    ],
)
def test_stream_refuses_bad_props(props, message):
    with pytest.raises(ValueError, match=message):
        _stream(**props)


# --- EventStream.add_consumer -----------------------------------------------------------


def test_a_consumer_reports_partial_failures_bisects_retries_and_sends_failures_to_a_queue_under_the_stream_key():
    stack, stream = _stream()
    reader = _function(stack, "Reader")
    consumer = stream.add_consumer(
        reader, tumbling_window=Duration.seconds(60), retry_attempts=3, max_record_age=Duration.minutes(30), batch_size=200, parallelization_factor=2
    )
    body = _body(stack)
    (_, mapping) = _one(body, "AWS::Lambda::EventSourceMapping")
    props = mapping["Properties"]
    assert props["EventSourceArn"] == _get_att(_id(stream.stream)) and props["FunctionName"] == {"Ref": _id(reader)}
    assert props["TumblingWindowInSeconds"] == 60
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == 3
    assert props["MaximumRecordAgeInSeconds"] == 1800
    assert (props["BatchSize"], props["ParallelizationFactor"], props["StartingPosition"]) == (200, 2, "TRIM_HORIZON")
    queue_id = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert body["Resources"][queue_id]["Type"] == "AWS::SQS::Queue"
    assert body["Resources"][queue_id]["Properties"]["KmsMasterKeyId"] == _get_att(_id(stream.key))
    assert queue_id == _id(consumer.dead_letter_queue)
    # The function may send to that queue (Lambda sends the failure records with the function's role).
    assert _get_att(queue_id) in _granted(_statements_of(body, _id(reader.role)))["sqs:SendMessage"]


def test_a_consumer_alarms_on_its_iterator_age_its_undeliverable_failures_and_a_non_empty_failure_queue():
    stack, stream = _stream()
    reader = _function(stack, "Reader")
    consumer = stream.add_consumer(reader, iterator_age_threshold=Duration.seconds(30))
    body = _body(stack)
    on_function = _alarms_on(body, "FunctionName", {"Ref": _id(reader)})
    assert set(on_function) == {"IteratorAge", "DestinationDeliveryFailures"}
    age = on_function["IteratorAge"]
    assert (age["Namespace"], age["Statistic"], age["Threshold"], age["EvaluationPeriods"]) == ("AWS/Lambda", "Maximum", 30_000, 3)
    assert on_function["DestinationDeliveryFailures"]["Namespace"] == "AWS/Lambda"
    on_queue = _alarms_on(body, "QueueName", _get_att(_id(consumer.dead_letter_queue), "QueueName"))
    assert set(on_queue) == {"ApproximateNumberOfMessagesVisible"}
    assert len(consumer.alarms) == 3


def test_a_consumer_without_a_tumbling_window_has_none_and_takes_the_defaults():
    stack, stream = _stream()
    stream.add_consumer(_function(stack, "Reader"))
    (_, mapping) = _one(_body(stack), "AWS::Lambda::EventSourceMapping")
    props = mapping["Properties"]
    assert "TumblingWindowInSeconds" not in props
    assert (props["BatchSize"], props["MaximumBatchingWindowInSeconds"], props["MaximumRetryAttempts"], props["MaximumRecordAgeInSeconds"]) == (
        500,
        1,
        5,
        3600,
    )


def test_a_consumer_can_send_its_failures_to_a_queue_given():
    stack, stream = _stream()
    shared = SecureQueue(stack, "Failures", terminal=True)
    stream.add_consumer(_function(stack, "Reader"), dead_letter_queue=shared)
    body = _body(stack)
    (_, mapping) = _one(body, "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == _get_att(_id(shared.queue))
    assert len(_of(body, "AWS::SQS::Queue")) == 1


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(batch_size=0), "batch_size must be between 1 and 10000"),
        (dict(batch_size=10_001), "batch_size must be between 1 and 10000"),
        (dict(max_batching_window=Duration.minutes(6)), "max_batching_window must be between"),
        (dict(tumbling_window=Duration.seconds(0)), "tumbling_window must be between 1 s and 15 minutes"),
        (dict(tumbling_window=Duration.minutes(16)), "tumbling_window must be between 1 s and 15 minutes"),
        (dict(parallelization_factor=0), "parallelization_factor must be between 1 and 10"),
        (dict(parallelization_factor=11), "parallelization_factor must be between 1 and 10"),
        (dict(retry_attempts=-1), "retry_attempts must be between 0 and 10000"),
        (dict(retry_attempts=10_001), "retry_attempts must be between 0 and 10000"),
        (dict(max_record_age=Duration.seconds(30)), "max_record_age must be between 1 minute and 7 days"),
        (dict(max_record_age=Duration.days(8)), "max_record_age must be between 1 minute and 7 days"),
    ],
)
def test_add_consumer_refuses_bad_ranges(props, message):
    stack, stream = _stream()
    with pytest.raises(ValueError, match=message):
        stream.add_consumer(_function(stack, "Reader"), **props)


def test_a_function_consumes_a_stream_once():
    stack, stream = _stream()
    reader = _function(stack, "Reader")
    stream.add_consumer(reader)
    with pytest.raises(ValueError, match="Test/Reader already consumes this stream"):
        stream.add_consumer(reader)


def test_two_handler_functions_can_consume_the_same_stream(tmp_path):
    (tmp_path / "handler.py").write_text("def lambda_handler(event, context):\n    return {}\n")
    stack, stream = _stream()
    first = HandlerFunction(stack, "First", code_path=str(tmp_path), service_name="first", runtime_layer=False)
    second = HandlerFunction(stack, "Second", code_path=str(tmp_path), service_name="second", runtime_layer=False)
    stream.add_consumer(first)
    stream.add_consumer(second)
    assert len(_of(_body(stack), "AWS::Lambda::EventSourceMapping")) == 2


# --- DeviceRule -------------------------------------------------------------------------


def _device_rule(**props) -> tuple[Stack, EventStream, DeviceRule]:
    stack, stream = _stream()
    return stack, stream, DeviceRule(stack, "Devices", stream=stream, **{"topic_prefix": "analytics/devices", **props})


def test_the_rule_adds_the_thing_name_and_platform_and_puts_each_message_on_the_stream_by_user():
    stack, stream, rule = _device_rule()
    body = _body(stack)
    (rule_id, resource) = _one(body, "AWS::IoT::TopicRule")
    payload = resource["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == "SELECT *, topic(3) AS device_id, 'device' AS platform FROM 'analytics/devices/+/events'"
    assert payload["AwsIotSqlVersion"] == "2016-03-23"
    assert payload["RuleDisabled"] is False
    (action,) = payload["Actions"]
    assert action == {"Kinesis": {"StreamName": {"Ref": _id(stream.stream)}, "PartitionKey": "${user_id}", "RoleArn": _get_att(_id(rule.role))}}
    assert rule.topic_filter == "analytics/devices/+/events"
    assert rule_id == _id(rule.rule)


def test_the_rule_sends_what_it_cannot_put_on_the_stream_to_an_encrypted_error_queue_that_alarms():
    stack, stream, rule = _device_rule()
    body = _body(stack)
    (_, resource) = _one(body, "AWS::IoT::TopicRule")
    error = resource["Properties"]["TopicRulePayload"]["ErrorAction"]["Sqs"]
    queue_id = error["QueueUrl"]["Ref"]
    assert error["RoleArn"] == _get_att(_id(rule.role)) and error["UseBase64"] is False
    assert body["Resources"][queue_id]["Properties"]["KmsMasterKeyId"] == _get_att(_id(stream.key))
    alarm = _alarms_on(body, "QueueName", _get_att(queue_id, "QueueName"))["ApproximateNumberOfMessagesVisible"]
    assert alarm["Threshold"] == 1 and alarm["Namespace"] == "AWS/SQS"


def test_the_rule_role_may_put_records_on_the_stream_and_send_to_the_error_queue_and_the_rule_waits_for_its_policy():
    stack, stream, rule = _device_rule()
    body = _body(stack)
    role = body["Resources"][_id(rule.role)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}}]
    granted = _granted(_statements_of(body, _id(rule.role)))
    assert set(granted) == {"kinesis:PutRecord", "kinesis:PutRecords", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}
    assert granted["kinesis:PutRecords"] == [_get_att(_id(stream.stream))]
    assert granted["sqs:SendMessage"] == [_get_att(_id(rule.error_queue))]
    assert set(map(json.dumps, granted["kms:GenerateDataKey"])) == {json.dumps(_get_att(_id(stream.key)))}
    (_, resource) = _one(body, "AWS::IoT::TopicRule")
    assert _id(rule.role.policy) in resource["DependsOn"]


def test_the_device_policy_lets_a_thing_connect_as_itself_and_publish_on_its_own_topic_only():
    stack, _, rule = _device_rule()
    (_, policy) = _one(_body(stack), "AWS::IoT::Policy")
    connect, publish = policy["Properties"]["PolicyDocument"]["Statement"]
    region, account = PSEUDO["AWS::Region"], PSEUDO["AWS::AccountId"]
    assert connect["Action"] == "iot:Connect"
    assert evaluate(connect["Resource"]) == f"arn:aws:iot:{region}:{account}:client/{THING}"
    assert evaluate(connect["Resource"]).endswith(f"client/{THING}")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    assert publish["Action"] == "iot:Publish"
    assert evaluate(publish["Resource"]) == f"arn:aws:iot:{region}:{account}:topic/analytics/devices/{THING}/events"
    assert evaluate(publish["Resource"]).endswith(f"topic/analytics/devices/{THING}/events")
    assert rule.device_policy is not None


def test_the_rule_alarms_on_parse_errors_and_throttling_with_the_rule_name_alone():
    stack, _, rule = _device_rule()
    body = _body(stack)
    on_rule = _alarms_on(body, "RuleName", {"Ref": _id(rule.rule)})
    assert set(on_rule) == {"ParseError", "RuleMessageThrottled"}
    assert all(a["Namespace"] == "AWS/IoT" and a["Statistic"] == "Sum" and a["Threshold"] == 1 for a in on_rule.values())
    iot_alarms = [a["Properties"] for a in _of(body, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/IoT"]
    assert len(iot_alarms) == 2 and all(len(a["Dimensions"]) == 1 for a in iot_alarms)


def test_a_deeper_prefix_takes_its_own_topic_level_field_platform_partition_key_and_name():
    stack, _, _ = _device_rule(topic_prefix="fleet/eu-west/sensors", device_field="sensor", platform="iot_v2", partition_key="${sensor}", rule_name="Fleet_1")
    (_, resource) = _one(_body(stack), "AWS::IoT::TopicRule")
    props = resource["Properties"]
    assert props["RuleName"] == "Fleet_1"
    assert props["TopicRulePayload"]["Sql"] == "SELECT *, topic(4) AS sensor, 'iot_v2' AS platform FROM 'fleet/eu-west/sensors/+/events'"
    assert props["TopicRulePayload"]["Actions"][0]["Kinesis"]["PartitionKey"] == "${sensor}"


@pytest.mark.parametrize("topic_prefix", ["", "analytics/+", "analytics/#", "/analytics", "analytics/", "a//b", "ana lytics", "$aws/things", "a/'b"])
def test_the_rule_refuses_a_bad_topic_prefix(topic_prefix):
    with pytest.raises(ValueError, match="topic_prefix must be topic levels"):
        _device_rule(topic_prefix=topic_prefix)


@pytest.mark.parametrize("rule_name", ["device-rule", "device rule", "", "x" * 129, "rule;drop"])
def test_the_rule_refuses_a_bad_rule_name(rule_name):
    with pytest.raises(ValueError, match="rule_name must be letters, digits and _"):
        _device_rule(rule_name=rule_name)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(device_field="Device"), "device_field must be a lower-case field name"),
        (dict(platform="Device'"), "platform must be lower-case"),
        (dict(partition_key="  "), "partition_key must not be empty"),
    ],
)
def test_the_rule_refuses_other_bad_props(props, message):
    with pytest.raises(ValueError, match=message):
        _device_rule(**props)


# --- IcebergLake and LakeDelivery ------------------------------------------------------


class Built:
    """A stack with a stream, a lake of two tables and two named queries, a delivery to both tables, a writer of one."""

    def __init__(self, profile: str) -> None:
        self.stack = new_stack(profile)
        self.stream = EventStream(self.stack, "Events")
        self.lake = IcebergLake(self.stack, "Lake", database_name=DATABASE)
        self.lake.add_table("events", columns=EVENT_COLUMNS, partitions=["event_date", "event_type"])
        self.lake.add_table("quarantine", columns=QUARANTINE_COLUMNS, partitions=["quarantine_date"], properties={"write_compression": "snappy"})
        self.lake.add_named_query("events_per_day", description="Events per day", sql=f"SELECT event_date, count(*) FROM {DATABASE}.events GROUP BY 1")
        self.lake.add_named_query("top pages", description="Top pages", sql="SELECT 1")
        self.transform = _function(self.stack, "Transform")
        self.delivery = LakeDelivery(self.stack, "Delivery", stream=self.stream, lake=self.lake, tables=["events", "quarantine"], transform=self.transform)
        self.writer = _role(self.stack, "RowWriter")
        self.lake.grant_write_rows(self.writer, tables=["events"])
        self.body = _body(self.stack)

    def resource(self, construct) -> dict:
        return self.body["Resources"][_id(construct)]

    def names(self) -> dict[str, str]:
        """Logical id -> a readable name, for :func:`evaluate` of ARNs and URLs built from references."""
        return {_id(self.lake.bucket): "lake-bucket", _id(self.lake.results_bucket): "results-bucket"}


@pytest.fixture(scope="module")
def built():
    cache: dict[str, Built] = {}

    def get(profile: str) -> Built:
        if profile not in cache:
            cache[profile] = Built(profile)
        return cache[profile]

    return get


def _glue_arn(resource: str) -> str:
    return f"arn:aws:glue:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:{resource}"


def test_the_lake_is_a_glue_database_in_the_account_catalog(built):
    b = built("sandbox")
    (_, database) = _one(b.body, "AWS::Glue::Database")
    assert database["Properties"]["CatalogId"] == {"Ref": "AWS::AccountId"}
    assert database["Properties"]["DatabaseInput"]["Name"] == DATABASE
    assert b.lake.database_name == DATABASE


@pytest.mark.parametrize("which", ["bucket", "results_bucket"])
def test_each_lake_bucket_is_cmk_encrypted_versioned_private_tls_only_and_logged(built, which):
    b = built("sandbox")
    bucket = getattr(b.lake, which)
    props = b.resource(bucket)["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {"BucketKeyEnabled": True, "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": _get_att(_id(b.lake.key))}}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    tidy = next(r for r in props["LifecycleConfiguration"]["Rules"] if r["Id"] == "tidy")
    assert tidy["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7} and tidy["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    (policy,) = [p["Properties"] for p in _of(b.body, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": _id(bucket)}]
    deny = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny == [
        {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": [_get_att(_id(bucket)), {"Fn::Join": ["", [_get_att(_id(bucket)), "/*"]]}],
        }
    ]


def test_query_results_expire_and_the_delivery_errors_prefix_expires_in_the_lake_bucket(built):
    b = built("sandbox")
    results = {r["Id"]: r for r in b.resource(b.lake.results_bucket)["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert results["results"] == {"Id": "results", "ExpirationInDays": 7, "Status": "Enabled"}
    lake = {r["Id"]: r for r in b.resource(b.lake.bucket)["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert lake["expire-delivery-errors"] == {"Id": "expire-delivery-errors", "Prefix": "delivery-errors/", "ExpirationInDays": 30, "Status": "Enabled"}
    assert not any(r.get("Prefix", "").startswith("warehouse/") for r in lake.values())


def test_both_buckets_log_access_to_the_stacks_sse_s3_log_bucket_which_only_s3_logging_of_them_may_write(built):
    b = built("sandbox")
    logs_id = _id(b.stack.node.find_child("BucketAccessLogs"))
    logs = b.body["Resources"][logs_id]["Properties"]
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    assert "LoggingConfiguration" not in logs
    (policy,) = [p["Properties"] for p in _of(b.body, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": logs_id}]
    delivery = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}]
    assert len(delivery) == 2
    for bucket, path in ((b.lake.bucket, "Test/Lake/Bucket/"), (b.lake.results_bucket, "Test/Lake/QueryResults/")):
        assert b.resource(bucket)["Properties"]["LoggingConfiguration"] == {"DestinationBucketName": {"Ref": logs_id}, "LogFilePrefix": path}
        (statement,) = [s for s in delivery if s["Condition"]["ArnLike"]["aws:SourceArn"] == _get_att(_id(bucket))]
        assert statement["Effect"] == "Allow" and statement["Action"] == "s3:PutObject"
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert statement["Resource"] == {"Fn::Join": ["", [_get_att(logs_id), f"/{path}*"]]}


@pytest.mark.parametrize(("profile", "cutoff", "recursive"), [("sandbox", 1_000_000_000, True), ("production", 100_000_000_000, False)])
def test_the_workgroup_enforces_engine_3_kms_results_and_the_profiles_scan_cutoff(built, profile, cutoff, recursive):
    b = built(profile)
    (_, workgroup) = _one(b.body, "AWS::Athena::WorkGroup")
    props = workgroup["Properties"]
    config = props["WorkGroupConfiguration"]
    assert props["Name"] == b.lake.workgroup_name == f"{DATABASE}-Test"
    assert props["State"] == "ENABLED"
    assert props["RecursiveDeleteOption"] is recursive
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert config["BytesScannedCutoffPerQuery"] == cutoff
    result = config["ResultConfiguration"]
    assert result["EncryptionConfiguration"] == {"EncryptionOption": "SSE_KMS", "KmsKey": _get_att(_id(b.lake.key))}
    assert evaluate(result["OutputLocation"], b.names()) == "s3://results-bucket/"


def test_the_scan_cutoff_and_results_expiry_can_be_set_and_the_cutoff_is_at_least_10_mb():
    stack = new_stack()
    IcebergLake(stack, "Lake", database_name=DATABASE, bytes_scanned_cutoff=50_000_000, results_expiry=Duration.days(2))
    body = _body(stack)
    (_, workgroup) = _one(body, "AWS::Athena::WorkGroup")
    assert workgroup["Properties"]["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"] == 50_000_000
    rules = [r for bucket in _of(body, "AWS::S3::Bucket").values() for r in bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])]
    assert {"Id": "results", "ExpirationInDays": 2, "Status": "Enabled"} in rules
    with pytest.raises(ValueError, match="bytes_scanned_cutoff must be between 1e\\+07"):
        IcebergLake(new_stack(), "Lake", database_name=DATABASE, bytes_scanned_cutoff=9_999_999)


@pytest.mark.parametrize(("profile", "removal"), [("sandbox", "destroy"), ("production", "retain")])
def test_each_table_is_an_iceberg_table_custom_resource_under_the_warehouse_prefix(built, profile, removal):
    b = built(profile)
    tables = _of(b.body, "Custom::IcebergTable")
    assert set(tables) == {_id(b.lake.tables["events"]), _id(b.lake.tables["quarantine"])}
    events = tables[_id(b.lake.tables["events"])]["Properties"]
    assert events["ServiceToken"] == _get_att(_id(b.lake.table_handler.function))
    assert (events["Workgroup"], events["Database"], events["Table"]) == (b.lake.workgroup_name, DATABASE, "events")
    assert events["Columns"] == [list(c) for c in EVENT_COLUMNS]
    assert events["Partitions"] == ["event_date", "event_type"]
    assert evaluate(events["Location"], b.names()) == f"s3://lake-bucket/warehouse/{DATABASE}/events/"
    assert events["TableProperties"] == {"format": "parquet", "write_compression": "zstd", "vacuum_max_snapshot_age_seconds": "86400"}
    assert events["RemovalPolicy"] == removal
    quarantine = tables[_id(b.lake.tables["quarantine"])]["Properties"]
    assert evaluate(quarantine["Location"], b.names()) == f"s3://lake-bucket/warehouse/{DATABASE}/quarantine/"
    assert quarantine["TableProperties"]["write_compression"] == "snappy" and quarantine["Partitions"] == ["quarantine_date"]


def test_a_table_waits_for_the_database_the_workgroup_the_results_bucket_and_the_handler_policy(built):
    b = built("sandbox")
    depends = b.resource(b.lake.tables["events"])["DependsOn"]
    for needed in (b.lake.database, b.lake.workgroup, b.lake.table_handler.role.policy, b.lake.results_bucket):
        assert _id(needed) in depends


def test_the_snapshot_age_sets_vacuum_max_snapshot_age():
    stack = new_stack()
    lake = IcebergLake(stack, "Lake", database_name=DATABASE, snapshot_age=Duration.hours(6))
    lake.add_table("events", columns=EVENT_COLUMNS)
    (_, table) = _one(_body(stack), "Custom::IcebergTable")
    assert table["Properties"]["TableProperties"]["vacuum_max_snapshot_age_seconds"] == "21600"
    assert table["Properties"]["Partitions"] == []


def _handler_statements(b: Built) -> list[dict]:
    return _statements_of(b.body, _id(b.lake.table_handler.role))


def test_the_table_handlers_table_grants_name_each_table_not_every_table(built):
    b = built("sandbox")
    statements = _handler_statements(b)
    table_actions = {"glue:CreateTable", "glue:DeleteTable"}
    ddl = [s for s in statements if table_actions & set(actions(s))]
    assert len(ddl) == 2  # one per table added
    tables = sorted(arn for s in ddl for r in _resources(s) if ":table/" in (arn := evaluate(r)))
    assert tables == [_glue_arn(f"table/{DATABASE}/events"), _glue_arn(f"table/{DATABASE}/quarantine")]
    glue = [evaluate(r) for s in statements if any(a.startswith("glue:") for a in actions(s)) for r in _resources(s)]
    assert glue and not [arn for arn in glue if "*" in arn]


def test_the_table_handler_may_create_and_drop_its_tables_in_the_database_and_catalog(built):
    b = built("sandbox")
    granted = _granted(_handler_statements(b))
    for action in ("glue:CreateTable", "glue:DeleteTable"):
        named = {evaluate(r) for r in granted[action]}
        assert {_glue_arn("catalog"), _glue_arn(f"database/{DATABASE}")} <= named, action


def test_named_queries_are_stored_in_the_workgroup_against_the_database(built):
    b = built("sandbox")
    queries = {q["Properties"]["Name"]: q for q in _of(b.body, "AWS::Athena::NamedQuery").values()}
    assert set(queries) == {"events_per_day", "top pages"}
    per_day = queries["events_per_day"]
    assert per_day["Properties"] == {
        "Name": "events_per_day",
        "Description": "Events per day",
        "Database": DATABASE,
        "WorkGroup": b.lake.workgroup_name,
        "QueryString": f"SELECT event_date, count(*) FROM {DATABASE}.events GROUP BY 1",
    }
    assert {_id(b.lake.workgroup), _id(b.lake.database)} <= set(per_day["DependsOn"])
    with pytest.raises(ValueError, match="named query events_per_day exists"):
        b.lake.add_named_query("events_per_day", description="again", sql="SELECT 2")


def test_grant_write_rows_names_exactly_the_tables_given(built):
    b = built("sandbox")
    granted = _granted(_statements_of(b.body, _id(b.writer)))
    glue = {"glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"}
    assert glue <= set(granted)
    for action in glue:
        assert sorted(evaluate(r) for r in granted[action]) == sorted(
            [_glue_arn("catalog"), _glue_arn(f"database/{DATABASE}"), _glue_arn(f"table/{DATABASE}/events")]
        )
    objects = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    for action in objects:
        assert granted[action] == [{"Fn::Join": ["", [_get_att(_id(b.lake.bucket)), f"/warehouse/{DATABASE}/events/*"]]}]
    assert granted["s3:ListBucket"] == [_get_att(_id(b.lake.bucket))]
    assert granted["kms:GenerateDataKey"] == [_get_att(_id(b.lake.key))]
    assert "quarantine" not in json.dumps(granted)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lake: lake.add_table("Events", columns=EVENT_COLUMNS), "table name must be lower-case"),
        (lambda lake: lake.add_table("events", columns=EVENT_COLUMNS, partitions=["day"]), "partitions \\['day'\\] must be columns"),
        (lambda lake: lake.add_expiry("warehouse/tmp/", Duration.days(1)), "tables expire by VACUUM"),
    ],
)
def test_the_lake_refuses_bad_tables_and_expiries(call, message):
    lake = IcebergLake(new_stack(), "Lake", database_name=DATABASE)
    with pytest.raises(ValueError, match=message):
        call(lake)


def test_the_lake_refuses_a_table_twice_and_a_bad_database_name():
    lake = IcebergLake(new_stack(), "Lake", database_name=DATABASE)
    lake.add_table("events", columns=EVENT_COLUMNS)
    with pytest.raises(ValueError, match="table events is already in the lake"):
        lake.add_table("events", columns=EVENT_COLUMNS)
    for name in ("Lake", "lake-db", "1lake", ""):
        with pytest.raises(ValueError, match="database_name must be lower-case"):
            IcebergLake(new_stack(), "Lake", database_name=name)


def test_the_delivery_reads_the_stream_and_writes_both_tables_through_the_transformation(built):
    b = built("sandbox")
    (delivery_id, resource) = _one(b.body, "AWS::KinesisFirehose::DeliveryStream")
    props = resource["Properties"]
    role_arn = _get_att(_id(b.delivery.role))
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert props["KinesisStreamSourceConfiguration"] == {"KinesisStreamARN": _get_att(_id(b.stream.stream)), "RoleARN": role_arn}
    assert "DeliveryStreamEncryptionConfigurationInput" not in props
    iceberg = props["IcebergDestinationConfiguration"]
    assert evaluate(iceberg["CatalogConfiguration"]["CatalogArn"]) == _glue_arn("catalog")
    assert evaluate(iceberg["CatalogConfiguration"]["CatalogArn"]).endswith(":catalog")
    assert iceberg["RoleARN"] == role_arn
    assert iceberg["DestinationTableConfigurationList"] == [
        {"DestinationDatabaseName": DATABASE, "DestinationTableName": "events", "S3ErrorOutputPrefix": "delivery-errors/events/"},
        {"DestinationDatabaseName": DATABASE, "DestinationTableName": "quarantine", "S3ErrorOutputPrefix": "delivery-errors/quarantine/"},
    ]
    assert iceberg["s3BackupMode"] == "FailedDataOnly"
    assert iceberg["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 64}
    assert iceberg["S3Configuration"]["BucketARN"] == _get_att(_id(b.lake.bucket))
    assert iceberg["S3Configuration"]["EncryptionConfiguration"] == {"KMSEncryptionConfig": {"AWSKMSKeyARN": _get_att(_id(b.lake.key))}}
    processing = iceberg["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    (processor,) = processing["Processors"]
    assert processor["Type"] == "Lambda"
    assert {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]} == {
        "LambdaArn": _get_att(_id(b.transform)),
        "NumberOfRetries": "3",
        "BufferIntervalInSeconds": "10",
        "BufferSizeInMBs": "1",
    }
    assert delivery_id == _id(b.delivery.delivery_stream)


def test_the_delivery_waits_for_its_role_policy_and_the_tables(built):
    b = built("sandbox")
    depends = b.resource(b.delivery.delivery_stream)["DependsOn"]
    assert {_id(b.delivery.role.policy), _id(b.lake.tables["events"]), _id(b.lake.tables["quarantine"])} <= set(depends)


def test_the_delivery_role_is_firehoses_in_this_account_and_invokes_the_transformation_only(built):
    b = built("sandbox")
    role = b.resource(b.delivery.role)["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    statements = _statements_of(b.body, _id(b.delivery.role))
    invoke = [s for s in statements if "lambda:InvokeFunction" in actions(s)]
    assert len(invoke) == 1 and _resources(invoke[0]) == [_get_att(_id(b.transform))]
    granted = _granted(statements)
    assert granted["kinesis:GetRecords"] == [_get_att(_id(b.stream.stream))]
    assert sorted(evaluate(r) for r in granted["glue:UpdateTable"]) == sorted(
        [_glue_arn("catalog"), _glue_arn(f"database/{DATABASE}"), _glue_arn(f"table/{DATABASE}/events"), _glue_arn(f"table/{DATABASE}/quarantine")]
    )
    assert not [a for a in granted if a.endswith("*")]


def test_the_delivery_alarms_on_failed_rows_freshness_and_throttled_reads(built):
    b = built("sandbox")
    name = {"Ref": _id(b.delivery.delivery_stream)}
    on_delivery = _alarms_on(b.body, "DeliveryStreamName", name)
    assert set(on_delivery) == {"DeliveryToIceberg.FailedRowCount", "ThrottledGetRecords"}
    assert all(a["Namespace"] == "AWS/Firehose" for a in on_delivery.values())
    assert on_delivery["DeliveryToIceberg.FailedRowCount"]["Threshold"] == 1
    (freshness,) = [a["Properties"] for a in _of(b.body, "AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]]
    assert freshness["Threshold"] == 300 and freshness["EvaluationPeriods"] == 2
    metrics = {m["Id"]: m for m in freshness["Metrics"]}
    (expression,) = [m for m in metrics.values() if "Expression" in m]
    assert expression["Expression"] == "FILL(freshness, 0) + FILL(behind, 0) / 1000" and expression["ReturnData"] is True
    stats = {m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"] for m in metrics.values() if "MetricStat" in m}
    assert set(stats) == {"DeliveryToIceberg.DataFreshness", "KinesisMillisBehindLatest"}
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == "AWS/Firehose"
        assert stat["Metric"]["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": name}]
        assert stat["Stat"] == "Maximum"
    assert len(b.delivery.alarms) == 3


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(tables=["events", "clicks"]), "tables must be tables of the lake \\(events\\), got \\['events', 'clicks'\\]"),
        (dict(tables=[]), "tables must be tables of the lake"),
        (dict(buffer_size_mb=0), "buffer_size_mb must be between 1 and 128"),
        (dict(buffer_size_mb=129), "buffer_size_mb must be between 1 and 128"),
        (dict(buffer_interval=Duration.seconds(901)), "buffer_interval must be between"),
        (dict(transform_buffer_size_mb=0.1), "transform_buffer_size_mb must be between 0.2 and 3"),
        (dict(transform_buffer_size_mb=4), "transform_buffer_size_mb must be between 0.2 and 3"),
        (dict(retry_duration=Duration.hours(3)), "retry_duration must be between"),
        (dict(freshness_target=Duration.seconds(30)), "freshness_target must be between 1 minute and 1 day"),
    ],
)
def test_the_delivery_refuses_tables_not_in_the_lake_and_bad_ranges(props, message):
    stack, stream = _stream()
    lake = IcebergLake(stack, "Lake", database_name=DATABASE)
    lake.add_table("events", columns=EVENT_COLUMNS)
    with pytest.raises(ValueError, match=message):
        LakeDelivery(stack, "Delivery", stream=stream, lake=lake, transform=_function(stack, "Transform"), **{"tables": ["events"], **props})


# --- StreamSchemas ----------------------------------------------------------------------


def test_each_kind_is_a_json_schema_in_the_registry_equal_to_its_contract():
    stack = new_stack()
    schemas = StreamSchemas(stack, "Schemas", kinds=[ANALYTICS_EVENT], registry_name="Analytics-events")
    body = _body(stack)
    (registry_id, registry) = _one(body, "AWS::Glue::Registry")
    assert registry["Properties"]["Name"] == "Analytics-events"
    (_, schema) = _one(body, "AWS::Glue::Schema")
    props = schema["Properties"]
    assert (props["Name"], props["DataFormat"], props["Compatibility"]) == ("AnalyticsEvent", "JSON", "BACKWARD")
    assert props["Registry"] == {"Arn": _get_att(registry_id)}
    assert props["SchemaDefinition"] == record_schema(ANALYTICS_EVENT)
    parsed = json.loads(props["SchemaDefinition"])
    assert parsed["$schema"] == DRAFT_4 and parsed["type"] == "object" and "user_id" in parsed["properties"]
    assert _of(body, "AWS::Glue::SchemaVersion") == {} and schemas.versions == {"AnalyticsEvent": []}


def test_a_later_version_of_a_kind_is_a_schema_version_registered_after_the_first():
    stack = new_stack()
    schemas = StreamSchemas(stack, "Schemas", kinds=[ORDER_PLACED, ANALYTICS_EVENT], registry_name="orders", compatibility="FULL")
    body = _body(stack)
    assert ORDER_PLACED.versions == (1, 2)
    schema_id = _id(schemas.schemas["OrderPlaced"])
    schema = body["Resources"][schema_id]["Properties"]
    assert schema["SchemaDefinition"] == record_schema(ORDER_PLACED, 1) and schema["Compatibility"] == "FULL"
    (version_id, version) = _one(body, "AWS::Glue::SchemaVersion")
    assert version["Properties"]["Schema"] == {"SchemaArn": _get_att(schema_id)}
    assert version["Properties"]["SchemaDefinition"] == record_schema(ORDER_PLACED, 2)
    assert json.loads(version["Properties"]["SchemaDefinition"]) != json.loads(schema["SchemaDefinition"])
    assert schema_id in version["DependsOn"]
    assert version_id == _id(schemas.versions["OrderPlaced"][0])
    assert len(_of(body, "AWS::Glue::Schema")) == 2


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(compatibility="backward"), "compatibility must be one of"),
        (dict(compatibility="STRICT"), "compatibility must be one of"),
        (dict(kinds=[]), "kinds must name at least one event kind"),
        (dict(registry_name="analytics events"), "registry_name must be letters"),
    ],
)
def test_stream_schemas_refuse_bad_props(props, message):
    with pytest.raises(ValueError, match=message):
        StreamSchemas(new_stack(), "Schemas", **{"kinds": [ANALYTICS_EVENT], "registry_name": "analytics", **props})


# --- SecureRestApi.add_stream_route -----------------------------------------------------


def _stream_route(profile: str = "sandbox", **options) -> tuple[Stack, EventStream, SecureRestApi, dict]:
    stack, stream = _stream(profile)
    api = SecureRestApi(stack, "Api")
    api.add_stream_route("POST", "/events", stream, request_model=INGEST_MODEL, **options)
    return stack, stream, api, _body(stack)


def test_the_stream_route_calls_kinesis_put_records_with_a_role_that_may_only_put_records_on_the_stream():
    _, stream, _, body = _stream_route()
    (_, method) = _one(body, "AWS::ApiGateway::Method")
    integration = method["Properties"]["Integration"]
    assert integration["Type"] == "AWS" and integration["IntegrationHttpMethod"] == "POST"
    assert evaluate(integration["Uri"]) == f"arn:aws:apigateway:{PSEUDO['AWS::Region']}:kinesis:action/PutRecords"
    role_id = integration["Credentials"]["Fn::GetAtt"][0]
    role = body["Resources"][role_id]["Properties"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [{"Service": "apigateway.amazonaws.com"}]
    granted = _granted(_statements_of(body, role_id))
    assert set(granted) == {"kinesis:PutRecord", "kinesis:PutRecords", "kms:GenerateDataKey"}
    assert granted["kinesis:PutRecords"] == [_get_att(_id(stream.stream))] and granted["kinesis:PutRecord"] == [_get_att(_id(stream.stream))]
    assert granted["kms:GenerateDataKey"] == [_get_att(_id(stream.key))]


def test_the_stream_route_maps_each_event_to_a_base64_record_keyed_by_user_and_never_passes_the_body_through():
    _, stream, _, body = _stream_route()
    (_, method) = _one(body, "AWS::ApiGateway::Method")
    integration = method["Properties"]["Integration"]
    assert integration["PassthroughBehavior"] == "NEVER"
    assert integration["RequestParameters"] == {"integration.request.header.Content-Type": "'application/x-amz-json-1.1'"}
    template = integration["RequestTemplates"]["application/json"]
    text = evaluate(template, {_id(stream.stream): "the-stream"})
    assert '"StreamName": "the-stream"' in text
    assert "$input.path('$.events')" in text
    assert "$util.base64Encode(" in text and "$.events[$foreach.index]" in text
    assert "$record.user_id" in text
    responses = {r["StatusCode"]: r for r in integration["IntegrationResponses"]}
    assert set(responses) == {"200", "400", "500"}
    assert "responseOverride.status = 207" in responses["200"]["ResponseTemplates"]["application/json"]
    assert (responses["400"]["SelectionPattern"], responses["500"]["SelectionPattern"]) == ("4\\d{2}", "5\\d{2}")


def test_the_stream_route_declares_its_responses_validates_the_model_and_is_iam_authorized_in_the_sandbox():
    _, _, api, body = _stream_route()
    (_, method) = _one(body, "AWS::ApiGateway::Method")
    props = method["Properties"]
    assert props["HttpMethod"] == "POST" and props["AuthorizationType"] == "AWS_IAM"
    assert [r["StatusCode"] for r in props["MethodResponses"]] == ["200", "207", "400", "500"]
    (model_id, model) = _one(body, "AWS::ApiGateway::Model")
    assert props["RequestModels"] == {"application/json": {"Ref": model_id}}
    assert model["Properties"]["Schema"] == {"$schema": "http://json-schema.org/draft-04/schema#", **INGEST_MODEL}
    (validator_id, validator) = _one(body, "AWS::ApiGateway::RequestValidator")
    assert props["RequestValidatorId"] == {"Ref": validator_id} and validator["Properties"]["ValidateRequestBody"] is True
    assert ("POST", "/events") in api.routes


def test_the_stream_route_takes_other_field_names():
    _, _, _, body = _stream_route(records_field="records", partition_key_field="device_id")
    (_, method) = _one(body, "AWS::ApiGateway::Method")
    text = evaluate(method["Properties"]["Integration"]["RequestTemplates"]["application/json"], {k: k for k in body["Resources"]})
    assert "$input.path('$.records')" in text and "$.records[$foreach.index]" in text and "$record.device_id" in text
    assert "$.events" not in text


@pytest.mark.parametrize(("field", "value"), [("records_field", "events.items"), ("records_field", ""), ("partition_key_field", "user-id")])
def test_the_stream_route_refuses_bad_field_names(field, value):
    stack, stream = _stream()
    api = SecureRestApi(stack, "Api")
    with pytest.raises(ValueError, match=f"{field} must be a JSON field name"):
        api.add_stream_route("POST", "/events", stream, request_model=INGEST_MODEL, **{field: value})


# --- SecureQueue(delivery_delay=...) ----------------------------------------------------


def _source_queue(body: dict) -> dict:
    (queue,) = [q["Properties"] for q in _of(body, "AWS::SQS::Queue").values() if "RedrivePolicy" in q["Properties"]]
    return queue


def test_a_delivery_delay_sets_delay_seconds_and_none_is_no_delay():
    stack = new_stack()
    SecureQueue(stack, "Delayed", delivery_delay=Duration.minutes(15))
    assert _source_queue(_body(stack))["DelaySeconds"] == 900
    stack = new_stack()
    SecureQueue(stack, "Plain")
    assert "DelaySeconds" not in _source_queue(_body(stack))


def test_a_delivery_delay_over_15_minutes_is_refused():
    with pytest.raises(ValueError, match="delivery delay must be between 0 s and 15 minutes, got 16 minutes"):
        SecureQueue(new_stack(), "Delayed", delivery_delay=Duration.minutes(16))


# --- the Custom::IcebergTable handler's pure functions -------------------------------


@pytest.fixture(scope="module")
def tables_handler():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "iceberg_tables",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }.items():
            patch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(f"iceberg_tables_{uuid.uuid4().hex[:8]}", Path(HANDLER_CODE) / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _table(**changes) -> dict:
    return {
        "Workgroup": "lake_db-Test",
        "Database": DATABASE,
        "Table": "events",
        "Location": "s3://lake-bucket/warehouse/lake_db/events/",
        "Columns": [list(c) for c in EVENT_COLUMNS],
        "Partitions": ["event_date", "event_type"],
        "TableProperties": {"format": "parquet", "write_compression": "zstd", "vacuum_max_snapshot_age_seconds": "86400"},
        "RemovalPolicy": "destroy",
        **changes,
    }


def test_create_statement_is_an_iceberg_create_table_if_not_exists_that_athena_parses(tables_handler):
    statement = tables_handler.create_statement(_table())
    assert statement.startswith(f"CREATE TABLE IF NOT EXISTS {DATABASE}.events (")
    assert "PARTITIONED BY (event_date, event_type)" in statement
    assert "LOCATION 's3://lake-bucket/warehouse/lake_db/events/'" in statement
    assert "'table_type'='ICEBERG'" in statement and "'vacuum_max_snapshot_age_seconds'='86400'" in statement
    parsed = sqlglot.parse_one(statement, read="athena")
    assert isinstance(parsed, exp.Create) and parsed.args.get("exists") is True
    table = parsed.find(exp.Table)
    assert (table.db, table.name) == (DATABASE, "events")
    text, integer = exp.DataType.Type.TEXT, exp.DataType.Type.INT
    assert [(c.name, c.args["kind"].this) for c in parsed.find_all(exp.ColumnDef)] == [
        ("event_id", text),
        ("event_type", text),
        ("event_date", text),
        ("schema_version", integer),
    ]
    partitioned = parsed.find(exp.PartitionedByProperty)
    assert [i.name for i in partitioned.find_all(exp.Identifier)] == ["event_date", "event_type"]
    properties = {p.name: p.args["value"].name for p in parsed.find_all(exp.Property) if type(p) is exp.Property}
    assert properties == {"table_type": "ICEBERG", "format": "parquet", "write_compression": "zstd", "vacuum_max_snapshot_age_seconds": "86400"}
    assert parsed.find(exp.LocationProperty).this.name == "s3://lake-bucket/warehouse/lake_db/events/"


def test_create_statement_without_partitions_has_no_partitioned_by(tables_handler):
    statement = tables_handler.create_statement(_table(Partitions=[]))
    assert "PARTITIONED BY" not in statement
    assert sqlglot.parse_one(statement, read="athena").find(exp.PartitionedByProperty) is None


def test_update_statements_add_only_the_new_trailing_columns_and_set_changed_properties(tables_handler):
    old = _table()
    new = _table(
        Columns=[*old["Columns"], ["device_id", "string"], ["score", "double"]],
        TableProperties={**old["TableProperties"], "vacuum_max_snapshot_age_seconds": "3600"},
    )
    add, set_properties = tables_handler.update_statements(old, new)
    assert add == f"ALTER TABLE {DATABASE}.events ADD COLUMNS (device_id string, score double)"
    assert set_properties.startswith(f"ALTER TABLE {DATABASE}.events SET TBLPROPERTIES (")
    assert "'vacuum_max_snapshot_age_seconds'='3600'" in set_properties
    for statement in (add, set_properties):
        assert isinstance(sqlglot.parse_one(statement, read="athena"), exp.Alter)
    assert tables_handler.update_statements(old, _table()) == []
    assert tables_handler.update_statements(old, _table(Workgroup="other", RemovalPolicy="retain")) == []
    (only_add,) = tables_handler.update_statements(old, _table(Columns=[*old["Columns"], ["late", "boolean"]]))
    assert only_add.endswith("ADD COLUMNS (late boolean)")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: {"Columns": t["Columns"][:-1]}, "columns can only be added at the end"),
        (lambda t: {"Columns": [*t["Columns"][:-1], ["schema_version", "bigint"]]}, "columns can only be added at the end"),
        (lambda t: {"Columns": [t["Columns"][1], t["Columns"][0], *t["Columns"][2:]]}, "columns can only be added at the end"),
        (lambda t: {"Columns": [["id", "string"], *t["Columns"][1:]]}, "columns can only be added at the end"),
        (lambda t: {"Partitions": ["event_date"]}, "Partitions cannot change in place"),
        (lambda t: {"Location": "s3://other-bucket/warehouse/lake_db/events/"}, "Location cannot change in place"),
        (lambda t: {"Database": "other_db"}, "Database cannot change in place"),
        (lambda t: {"Table": "events_v2"}, "Table cannot change in place"),
    ],
)
def test_update_statements_refuse_what_iceberg_cannot_change_in_place(tables_handler, change, reason):
    old = _table()
    with pytest.raises(tables_handler.Refused, match=reason):
        tables_handler.update_statements(old, _table(**change(old)))


def test_check_accepts_the_tables_the_lake_makes(tables_handler):
    tables_handler._check(_table())
    tables_handler._check(_table(Partitions=[], TableProperties={}))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (dict(Table="Events"), "Table must be lower-case"),
        (dict(Table="events; DROP TABLE x"), "Table must be lower-case"),
        (dict(Database="lake-db"), "Database must be lower-case"),
        (dict(Database=""), "Database must be lower-case"),
        (dict(Columns=[["event id", "string"]], Partitions=[]), "column 'event id'"),
        (dict(Columns=[["event_id", "varchar(10)"]], Partitions=[]), "column 'event_id' of type 'varchar\\(10\\)'"),
        (dict(Columns=[["event_id", "string"], ["event_id", "int"]], Partitions=[]), "columns must be distinct"),
        (dict(Partitions=["day"]), "partitions among them"),
        (dict(TableProperties={"format": "parquet'); DROP TABLE x; --"}), "table property 'format'"),
        (dict(TableProperties={"Format": "parquet"}), "table property 'Format'"),
        (dict(Location="s3://bucket/it's/"), "Location must be an s3:// URL"),
        (dict(Location="https://bucket/warehouse/"), "Location must be an s3:// URL"),
    ],
)
def test_check_refuses_quotes_and_bad_names(tables_handler, changes, reason):
    with pytest.raises(tables_handler.Refused, match=reason):
        tables_handler._check(_table(**changes))


def test_a_rule_without_a_name_gets_one_iot_accepts():
    """CloudFormation's generated names may hold '-', which IoT refuses in a rule name: the construct names the rule."""
    stack, _, _ = _device_rule()
    (_, resource) = _one(_body(stack), "AWS::IoT::TopicRule")
    name = resource["Properties"]["RuleName"]
    assert re.fullmatch(r"[A-Za-z0-9_]{1,128}", name) and "Devices" in name
