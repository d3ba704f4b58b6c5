"""CapstoneAnalytics: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from messaging_constructs.iceberg_lake import HANDLER_CODE
from messaging_runtime import lake as lake_tables
from stacks._paths import lambda_code
from stacks.analytics_queries import queries_for
from stacks.capstone_analytics import DEVICE_TOPIC_PREFIX, PRODUCTION_SHARDS, ingest_model
from tests.stacks.helpers import actions, function, props
from tests.unit.helpers import PSEUDO, evaluate

STACK = "CapstoneAnalytics"
DATABASE = "capstoneanalytics_lake"
#: Each handler function's service name and the file of its handler.
HANDLERS = {
    "lake_transform": Path(lambda_code("lake_transform")) / "handler.py",
    "event_aggregator": Path(lambda_code("event_aggregator")) / "handler.py",
    "lake_erasure": Path(lambda_code("lake_erasure")) / "handler.py",
    "iceberg_tables": Path(HANDLER_CODE) / "handler.py",
}


@pytest.fixture(params=["sandbox", "production"])
def template(request, template_json):
    return template_json(request.param, STACK)


def _only(template: dict, resource_type: str) -> tuple[str, dict]:
    found = props(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def _all_statements(template: dict) -> list[dict]:
    """Every statement of every identity policy: managed, inline, and the roles' own inline policies."""
    found = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            found += properties["PolicyDocument"]["Statement"]
        elif resource["Type"] == "AWS::IAM::Role":
            found += [s for policy in properties.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    return found


def _stream_id(template: dict) -> str:
    return _only(template, "AWS::Kinesis::Stream")[0]


def _lake_bucket_id(template: dict) -> str:
    """The bucket the Iceberg tables are in (their Location names it)."""
    buckets = set()
    for table in props(template, "Custom::IcebergTable").values():
        buckets |= {part["Ref"] for part in table["Location"]["Fn::Join"][1] if isinstance(part, dict)}
    (bucket,) = buckets
    return bucket


def _without_nulls(value):
    """``value`` as a template holds it: CloudFormation (through jsii) drops the keys whose value is null (``"default": null``)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _environment_read(path: Path) -> set[str]:
    """The environment variables a handler reads (``os.environ[...]``, ``os.environ.get(...)``, ``os.getenv(...)``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            names.add(node.slice.value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
            names.add(node.args[0].value)
    return names


def test_every_queue_is_encrypted_with_the_stacks_customer_managed_key(template):
    queues = props(template, "AWS::SQS::Queue")
    assert len(queues) == 8
    (key_id, key) = _only(template, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True
    assert all(queue["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]} for queue in queues.values())
    assert not [q for q in queues.values() if q.get("SqsManagedSseEnabled")]


def test_the_stream_is_encrypted_with_the_cmk_and_sized_by_the_profile(template_json):
    for profile in ("sandbox", "production"):
        template = template_json(profile, STACK)
        (_, stream) = _only(template, "AWS::Kinesis::Stream")
        (key_id, _) = _only(template, "AWS::KMS::Key")
        assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    sandbox = _only(template_json("sandbox", STACK), "AWS::Kinesis::Stream")[1]
    production = _only(template_json("production", STACK), "AWS::Kinesis::Stream")[1]
    assert sandbox["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in sandbox
    assert production["StreamModeDetails"] == {"StreamMode": "PROVISIONED"} and production["ShardCount"] == PRODUCTION_SHARDS == 12
    assert (sandbox["RetentionPeriodHours"], production["RetentionPeriodHours"]) == (24, 168)


def test_post_events_goes_straight_to_kinesis_put_records_validated_by_the_contract(template):
    (_, method) = _only(template, "AWS::ApiGateway::Method")
    (resource_id, resource) = _only(template, "AWS::ApiGateway::Resource")
    assert method["HttpMethod"] == "POST" and method["ResourceId"] == {"Ref": resource_id} and resource["PathPart"] == "events"
    integration = method["Integration"]
    assert integration["Type"] == "AWS" and integration["PassthroughBehavior"] == "NEVER"
    assert evaluate(integration["Uri"]) == f"arn:aws:apigateway:{PSEUDO['AWS::Region']}:kinesis:action/PutRecords"
    request = integration["RequestTemplates"]["application/json"]["Fn::Join"][1]
    assert {"Ref": _stream_id(template)} in request
    role_id = integration["Credentials"]["Fn::GetAtt"][0]
    granted = {
        a
        for p in props(template, "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p.get("Roles", [])
        for s in p["PolicyDocument"]["Statement"]
        for a in actions(s)
    }
    assert granted == {"kinesis:PutRecord", "kinesis:PutRecords", "kms:GenerateDataKey"}
    (model_id, model) = _only(template, "AWS::ApiGateway::Model")
    assert method["RequestModels"] == {"application/json": {"Ref": model_id}}
    assert model["Schema"] == _without_nulls({"$schema": "http://json-schema.org/draft-04/schema#", **ingest_model()})


def test_post_events_is_iam_authorized_in_the_sandbox_and_cognito_in_production(template_json):
    (_, sandbox) = _only(template_json("sandbox", STACK), "AWS::ApiGateway::Method")
    assert sandbox["AuthorizationType"] == "AWS_IAM" and "AuthorizerId" not in sandbox
    production = template_json("production", STACK)
    (_, method) = _only(production, "AWS::ApiGateway::Method")
    (authorizer_id, authorizer) = _only(production, "AWS::ApiGateway::Authorizer")
    assert method["AuthorizationType"] == "COGNITO_USER_POOLS" and method["AuthorizerId"] == {"Ref": authorizer_id}
    (pool_id, _) = _only(production, "AWS::Cognito::UserPool")
    assert authorizer["Type"] == "COGNITO_USER_POOLS" and authorizer["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]


def test_device_messages_go_to_the_stream_through_the_iot_rule(template):
    (_, rule) = _only(template, "AWS::IoT::TopicRule")
    payload = rule["TopicRulePayload"]
    assert payload["Sql"] == f"SELECT *, topic(3) AS device_id, 'device' AS platform FROM '{DEVICE_TOPIC_PREFIX}/+/events'"
    (action,) = payload["Actions"]
    assert action["Kinesis"]["StreamName"] == {"Ref": _stream_id(template)} and action["Kinesis"]["PartitionKey"] == "${user_id}"
    assert "Sqs" in payload["ErrorAction"]


def test_firehose_delivers_the_stream_to_both_lake_tables_through_the_transformation(template):
    (_, delivery) = _only(template, "AWS::KinesisFirehose::DeliveryStream")
    assert delivery["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert delivery["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {"Fn::GetAtt": [_stream_id(template), "Arn"]}
    iceberg = delivery["IcebergDestinationConfiguration"]
    assert evaluate(iceberg["CatalogConfiguration"]["CatalogArn"]).endswith(":catalog")
    assert [(t["DestinationDatabaseName"], t["DestinationTableName"]) for t in iceberg["DestinationTableConfigurationList"]] == [
        (DATABASE, lake_tables.EVENTS_TABLE),
        (DATABASE, lake_tables.QUARANTINE_TABLE),
    ]
    (processor,) = iceberg["ProcessingConfiguration"]["Processors"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    transform_id, _ = function(template, "lake_transform")
    assert parameters["LambdaArn"] == {"Fn::GetAtt": [transform_id, "Arn"]}
    tables = {t["Table"]: t for t in props(template, "Custom::IcebergTable").values()}
    assert set(tables) == {lake_tables.EVENTS_TABLE, lake_tables.QUARANTINE_TABLE}
    assert tables[lake_tables.EVENTS_TABLE]["Partitions"] == list(lake_tables.EVENT_PARTITIONS)
    assert [c for c, _ in tables[lake_tables.EVENTS_TABLE]["Columns"]] == [c for c, _, _ in lake_tables.EVENT_COLUMNS]


def test_the_aggregator_reads_the_stream_in_60_second_tumbling_windows(template):
    aggregator_id, _ = function(template, "event_aggregator")
    (mapping,) = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if m["FunctionName"] == {"Ref": aggregator_id}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [_stream_id(template), "Arn"]}
    assert mapping["TumblingWindowInSeconds"] == 60
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BisectBatchOnFunctionError"] is True
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (1000, 5)
    on_failure = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert template["Resources"][on_failure]["Type"] == "AWS::SQS::Queue"


def test_erasure_requests_wait_15_minutes_and_reach_the_erasure_one_at_a_time(template):
    erasure_id, _ = function(template, "lake_erasure")
    (mapping,) = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if m["FunctionName"] == {"Ref": erasure_id}]
    queue_id = mapping["EventSourceArn"]["Fn::GetAtt"][0]
    queue = template["Resources"][queue_id]["Properties"]
    assert queue["DelaySeconds"] == 900
    assert mapping["BatchSize"] == 1 and mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert [q for q in props(template, "AWS::SQS::Queue").values() if "DelaySeconds" in q] == [queue]


def test_the_named_queries_are_the_analytics_queries_for_the_lake_database(template):
    (_, workgroup) = _only(template, "AWS::Athena::WorkGroup")
    stored = {q["Name"]: q for q in props(template, "AWS::Athena::NamedQuery").values()}
    expected = {q.name: q for q in queries_for(DATABASE)}
    assert len(expected) == 8 and set(stored) == set(expected)
    for name, query in expected.items():
        assert stored[name]["QueryString"] == query.sql
        assert stored[name]["Description"] == query.description
        assert stored[name]["Database"] == DATABASE and stored[name]["WorkGroup"] == workgroup["Name"]


def test_every_function_is_given_exactly_the_environment_its_handler_reads(template):
    services = {f["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for f in props(template, "AWS::Lambda::Function").values() if "Environment" in f}
    assert services == set(HANDLERS)
    for service, path in HANDLERS.items():
        _, fn = function(template, service)
        given = {name for name in fn["Environment"]["Variables"] if not name.startswith("POWERTOOLS_")}
        read = {name for name in _environment_read(path) if not name.startswith(("POWERTOOLS_", "AWS_"))}
        assert given == read, service
    (_, workgroup) = _only(template, "AWS::Athena::WorkGroup")
    (table_id, _) = _only(template, "AWS::DynamoDB::Table")
    erasure = function(template, "lake_erasure")[1]["Environment"]["Variables"]
    assert erasure["LAKE_DATABASE"] == DATABASE and erasure["ATHENA_WORKGROUP"] == workgroup["Name"]
    assert erasure["REPORTS_BUCKET"] == {"Ref": _lake_bucket_id(template)}
    assert erasure["AGGREGATES_TABLE"] == {"Ref": table_id} and erasure["AGGREGATE_DAYS"] == "30"
    aggregator = function(template, "event_aggregator")[1]["Environment"]["Variables"]
    assert aggregator["AGGREGATES_TABLE"] == {"Ref": table_id} and aggregator["AGGREGATE_DAYS"] == erasure["AGGREGATE_DAYS"]
    assert function(template, "lake_transform")[1]["Environment"]["Variables"]["LAKE_DATABASE"] == DATABASE


def test_no_iam_statement_grants_a_wildcard_action(template):
    statements = _all_statements(template)
    assert len(statements) > 40
    assert [a for s in statements for a in actions(s) if a.endswith("*")] == []


def test_every_alarm_notifies_the_alarm_topic_on_alarm_and_on_recovery(template):
    alarms = props(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 30
    (topic_id, _) = _only(template, "AWS::SNS::Topic")
    assert [k for k, a in alarms.items() if a.get("AlarmActions") != [{"Ref": topic_id}]] == []
    assert [k for k, a in alarms.items() if a.get("OKActions") != [{"Ref": topic_id}]] == []


def test_production_runs_every_handler_in_the_network_with_the_athena_and_s3_endpoints(template_json):
    production = template_json("production", STACK)
    for service in HANDLERS:
        _, fn = function(production, service)
        assert fn["VpcConfig"]["SubnetIds"] and fn["VpcConfig"]["SecurityGroupIds"], service
    services = {evaluate(e["ServiceName"]): e["VpcEndpointType"] for e in props(production, "AWS::EC2::VPCEndpoint").values()}
    region = PSEUDO["AWS::Region"]
    assert services[f"com.amazonaws.{region}.athena"] == "Interface" and services[f"com.amazonaws.{region}.s3"] == "Gateway"
    sandbox = template_json("sandbox", STACK)
    assert [k for k, f in props(sandbox, "AWS::Lambda::Function").items() if "VpcConfig" in f] == []


def test_the_outputs_name_what_a_user_needs(template):
    outputs = template["Outputs"]
    assert {
        "IngestUrl",
        "StreamName",
        "DeviceTopicFilter",
        "DevicePolicyName",
        "LakeDatabase",
        "AthenaWorkgroup",
        "LakeBucket",
        "AggregatesTable",
        "ErasureRequestsQueueUrl",
        "AlarmTopicArn",
    } <= set(outputs)
    assert outputs["StreamName"]["Value"] == {"Ref": _stream_id(template)}
    assert outputs["DeviceTopicFilter"]["Value"] == f"{DEVICE_TOPIC_PREFIX}/+/events"
    assert outputs["LakeDatabase"]["Value"] == DATABASE
    assert outputs["LakeBucket"]["Value"] == {"Ref": _lake_bucket_id(template)}
    url = evaluate(outputs["IngestUrl"]["Value"], {k: k for k in template["Resources"]})
    (api_id, _) = _only(template, "AWS::ApiGateway::RestApi")
    assert url.startswith(f"https://{api_id}.execute-api.{PSEUDO['AWS::Region']}.") and url.endswith("/events")
