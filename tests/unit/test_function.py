"""HandlerFunction: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_

from messaging_constructs import HandlerFunction, PrivateNetwork, QueueEventSource, RuntimeLayer, SecureQueue
from messaging_constructs.runtime_layer import _CopyPackage
from tests.unit.helpers import new_stack, only, resources, template


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("handler")
    (folder / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    return str(folder)


def _function(code: str, profile: str = "sandbox", **props):
    stack = new_stack(profile)
    return stack, HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", **props)


def _lambda(stack) -> dict:
    return only(resources(stack, "AWS::Lambda::Function"))[1]["Properties"]


def test_runtime_architecture_tracing_memory_and_timeout(code):
    stack, _ = _function(code)
    props = _lambda(stack)
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == 256 and props["Timeout"] == 30


def test_powertools_comes_from_the_published_layer_resolved_per_region(code):
    stack, _ = _function(code)
    layer = _lambda(stack)["Layers"][0]
    parameters = template(stack).to_json()["Parameters"]
    assert parameters[layer["Ref"]] == {
        "Type": "AWS::SSM::Parameter::Value<String>",
        "Default": "/aws/service/powertools/python/arm64/python3.14/3.37.0",
    }


def test_powertools_environment_is_set_and_encrypted(code):
    stack, _ = _function(code, environment={"TABLE": "t"})
    props = _lambda(stack)
    assert props["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "consumer",
        "POWERTOOLS_METRICS_NAMESPACE": "MessagingBlueprints",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "TABLE": "t",
    }
    assert "KmsKeyArn" in props


def test_own_log_group_encrypted_with_retention(code):
    stack, fn = _function(code)
    (group_id, group) = only(resources(stack, "AWS::Logs::LogGroup"))
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 7
    assert _lambda(stack)["LoggingConfig"]["LogGroup"] == {"Ref": group_id}


def test_role_has_no_aws_managed_policy_and_no_inline_policy(code):
    stack, _ = _function(code)
    (_, role) = only(resources(stack, "AWS::IAM::Role"))
    assert "ManagedPolicyArns" not in role["Properties"]
    assert not resources(stack, "AWS::IAM::Policy")
    (_, policy) = only(resources(stack, "AWS::IAM::ManagedPolicy"))
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "sqs:SendMessage", "kms:GenerateDataKey"} <= actions
    assert not any(a.endswith("*") for a in actions)


def test_asynchronous_failures_go_to_an_encrypted_dlq_with_an_alarm(code):
    stack, fn = _function(code)
    dlq_id = stack.get_logical_id(fn.dead_letter_queue.node.default_child)
    assert _lambda(stack)["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    template(stack).has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})
    template(stack).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateNumberOfMessagesVisible", "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]},
    )


def test_the_role_sends_to_the_dlq_with_exactly_the_producer_actions(code):
    stack, fn = _function(code)
    (_, policy) = only(resources(stack, "AWS::IAM::ManagedPolicy"))
    dlq_arn = {"Fn::GetAtt": [stack.get_logical_id(fn.dead_letter_queue.node.default_child), "Arn"]}
    key_arn = {"Fn::GetAtt": [stack.get_logical_id(fn.key.node.default_child), "Arn"]}
    by_resource = {json.dumps(s["Resource"]): s["Action"] for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert by_resource[json.dumps(dlq_arn)] == "sqs:SendMessage"
    assert by_resource[json.dumps(key_arn)] == ["kms:GenerateDataKey", "kms:Decrypt"]


def test_a_given_dead_letter_queue_takes_the_async_failures(code):
    stack = new_stack()
    shared = SecureQueue(stack, "Shared", terminal=True)
    fn = HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", dead_letter_queue=shared)
    assert fn.dead_letter_queue is shared.queue
    assert _lambda(stack)["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [stack.get_logical_id(shared.queue.node.default_child), "Arn"]}}
    assert len(resources(stack, "AWS::SQS::Queue")) == 1


def test_alarms_on_errors_and_throttles(code):
    stack, _ = _function(code)
    thresholds = {a["Properties"]["MetricName"]: a["Properties"]["Threshold"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert thresholds["Errors"] == 1 and thresholds["Throttles"] == 1


def test_error_and_throttle_thresholds_are_props(code):
    stack, _ = _function(code, errors_alarm_threshold=5, throttles_alarm_threshold=3)
    thresholds = {a["Properties"]["MetricName"]: a["Properties"]["Threshold"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert thresholds["Errors"] == 5 and thresholds["Throttles"] == 3


@pytest.mark.parametrize(("profile", "expected"), [("sandbox", None), ("production", 10)])
def test_reserved_concurrency_follows_the_profile(code, profile, expected):
    stack, _ = _function(code, profile)
    assert _lambda(stack).get("ReservedConcurrentExecutions") == expected


def test_queue_event_source_reports_batch_item_failures(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", consumer_timeout=fn.timeout)
    source = QueueEventSource(stack, "WorkSource", consumer=fn, queue=queue, batch_size=100, max_batching_window=Duration.seconds(5), max_concurrency=4)
    (mapping_id, mapping) = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    assert mapping["Properties"] == {
        "EventSourceArn": {"Fn::GetAtt": [stack.get_logical_id(queue.queue.node.default_child), "Arn"]},
        "FunctionName": {"Ref": stack.get_logical_id(fn.function.node.default_child)},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 5,
        "ScalingConfig": {"MaximumConcurrency": 4},
    }
    # The mapping stays where HandlerFunction.add_sqs_source made it: its logical id follows the function and the queue.
    assert mapping_id == stack.get_logical_id(source.mapping.node.default_child) and mapping_id.startswith("ConsumerSqsEventSourceTestWork")


def test_queue_event_source_lets_the_function_consume_the_queue(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", consumer_timeout=fn.timeout)
    QueueEventSource(stack, "WorkSource", consumer=fn, queue=queue)
    (_, policy) = only(resources(stack, "AWS::IAM::ManagedPolicy"))
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "kms:Decrypt"} <= actions


def test_queue_event_source_may_be_disabled(code):
    stack, fn = _function(code)
    QueueEventSource(stack, "WorkSource", consumer=fn, queue=SecureQueue(stack, "Work", consumer_timeout=fn.timeout), enabled=False)
    (_, mapping) = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    assert mapping["Properties"]["Enabled"] is False


def test_in_a_network_the_function_runs_in_isolated_subnets_with_https_egress_only(code):
    stack = new_stack("production")
    network = PrivateNetwork(stack, "Network", interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SNS])
    fn = HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", network=network)
    props = resources(stack, "AWS::Lambda::Function")[stack.get_logical_id(fn.function.node.default_child)]["Properties"]
    assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [stack.get_logical_id(fn.security_group.node.default_child), "GroupId"]}]
    group = resources(stack, "AWS::EC2::SecurityGroup")[stack.get_logical_id(fn.security_group.node.default_child)]
    assert "SecurityGroupIngress" not in group["Properties"]
    (egress,) = group["Properties"]["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)


# --- the runtime layer ------------------------------------------------------


def _layer_ref(stack: Stack) -> dict:
    (layer_id, _) = only(resources(stack, "AWS::Lambda::LayerVersion"))
    return {"Ref": layer_id}


def _synth_to(outdir: Path, code: str, profile: str = "sandbox") -> tuple[dict, Path]:
    """Synthesize one function into ``outdir``: its template and the folder of the runtime layer's asset."""
    app = App(outdir=str(outdir), context={"profile": profile})
    HandlerFunction(Stack(app, "Test"), "Consumer", code_path=code, service_name="consumer")
    app.synth()
    body = json.loads((outdir / "Test.template.json").read_text())
    (layer,) = [r for r in body["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    return body, outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"


def test_the_runtime_layer_comes_after_powertools_and_before_the_callers_layers(code):
    stack = new_stack()
    extra = lambda_.LayerVersion.from_layer_version_arn(stack, "Extra", "arn:aws:lambda:us-east-1:123456789012:layer:extra:1")
    HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", layers=[extra])
    layers = _lambda(stack)["Layers"]
    assert len(layers) == 3
    assert layers[1] == _layer_ref(stack)
    assert layers[2] == "arn:aws:lambda:us-east-1:123456789012:layer:extra:1"


def test_the_runtime_layer_is_for_python_3_14_on_arm64_and_says_what_it_holds(code):
    stack, _ = _function(code)
    (_, layer) = only(resources(stack, "AWS::Lambda::LayerVersion"))
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.14"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert "messaging_runtime" in layer["Properties"]["Description"]
    assert "LayerName" not in layer["Properties"]


@pytest.mark.parametrize(("profile", "policy"), [("sandbox", "Delete"), ("production", "Retain")])
def test_the_runtime_layer_removal_follows_the_profile(code, profile, policy):
    stack, _ = _function(code, profile)
    (_, layer) = only(resources(stack, "AWS::Lambda::LayerVersion"))
    assert layer["DeletionPolicy"] == layer["UpdateReplacePolicy"] == policy


def test_one_runtime_layer_per_stack_however_many_functions(code):
    stack = new_stack()
    functions = [HandlerFunction(stack, f"Consumer{i}", code_path=code, service_name=f"consumer{i}") for i in range(3)]
    assert RuntimeLayer.of(functions[0]) is RuntimeLayer.of(stack)
    ref = _layer_ref(stack)
    assert [f["Properties"]["Layers"][1] for f in resources(stack, "AWS::Lambda::Function").values()] == [ref] * 3


def test_each_stack_gets_its_own_runtime_layer_from_one_asset(code):
    app = App()
    stacks = [Stack(app, name) for name in ("One", "Two")]
    for stack in stacks:
        HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer")
    assert RuntimeLayer.of(stacks[0]) is not RuntimeLayer.of(stacks[1])
    (first,), (second,) = (resources(stack, "AWS::Lambda::LayerVersion").values() for stack in stacks)
    assert first["Properties"]["Content"]["S3Key"] == second["Properties"]["Content"]["S3Key"]


def test_the_runtime_layer_asset_holds_the_package_under_python_without_byte_code(code, tmp_path):
    _, asset = _synth_to(tmp_path, code)
    assert (asset / "python" / "messaging_runtime" / "__init__.py").is_file()
    assert sorted(p.name for p in asset.iterdir()) == ["python"]
    assert sorted(p.name for p in (asset / "python").iterdir()) == ["messaging_runtime"]
    assert not [p for p in asset.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]


def test_the_runtime_layer_asset_hash_is_the_same_in_every_synth(code, tmp_path):
    """The hash is of the packaged files (AssetHashType.OUTPUT): a second app, in another folder, gets the same one."""
    first, _ = _synth_to(tmp_path / "one", code)
    second, _ = _synth_to(tmp_path / "two", code, "production")

    def key(body: dict) -> str:
        (layer,) = [r for r in body["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
        return layer["Properties"]["Content"]["S3Key"]

    assert key(first) == key(second)


def test_local_bundling_copies_the_package_and_its_subpackages_without_byte_code(tmp_path):
    source = tmp_path / "source"
    (source / "contracts" / "__pycache__").mkdir(parents=True)
    (source / "__pycache__").mkdir()
    for name in ("__init__.py", "py.typed", "contracts/__init__.py", "contracts/orders.py"):
        (source / name).write_text("# source\n")
    for name in ("__pycache__/x.cpython-314.pyc", "contracts/__pycache__/orders.cpython-314.pyc", "stray.pyc"):
        (source / name).write_bytes(b"\0")
    output = tmp_path / "output"
    output.mkdir()
    assert _CopyPackage(source).try_bundle(str(output), None) is True
    packaged = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    assert packaged == [f"python/messaging_runtime/{name}" for name in ("__init__.py", "contracts/__init__.py", "contracts/orders.py", "py.typed")]


def test_a_function_may_opt_out_of_the_runtime_layer(code):
    stack, _ = _function(code, runtime_layer=False)
    assert len(_lambda(stack)["Layers"]) == 1
    assert not resources(stack, "AWS::Lambda::LayerVersion")


def test_without_the_runtime_layer_four_layers_may_be_given(code):
    stack = new_stack()
    given = [lambda_.LayerVersion.from_layer_version_arn(stack, f"L{i}", f"arn:aws:lambda:us-east-1:123456789012:layer:l{i}:1") for i in range(4)]
    HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", runtime_layer=False, layers=given)
    assert len(_lambda(stack)["Layers"]) == 5


def test_fails_when_layers_would_exceed_lambdas_five(code):
    stack = new_stack()
    given = [lambda_.LayerVersion.from_layer_version_arn(stack, f"L{i}", f"arn:aws:lambda:us-east-1:123456789012:layer:l{i}:1") for i in range(4)]
    with pytest.raises(ValueError, match="at most 5 layers: Powertools and the runtime layer leave room for 3 in layers, got 4"):
        HandlerFunction(stack, "Consumer", code_path=code, service_name="consumer", layers=given)


def test_fails_when_memory_is_out_of_range(code):
    with pytest.raises(ValueError, match="memory_size must be between 128 and 10240 MiB, got 64 MiB"):
        _function(code, memory_size=64)


def test_fails_when_batch_size_above_10_has_no_batching_window(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", consumer_timeout=fn.timeout)
    with pytest.raises(ValueError, match="batch_size above 10 needs a max_batching_window"):
        QueueEventSource(stack, "Source", consumer=fn, queue=queue, batch_size=100)


def test_fails_when_fifo_batch_size_is_above_10(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", fifo=True, consumer_timeout=fn.timeout)
    with pytest.raises(ValueError, match="batch_size must be between 1 and 10, got 20"):
        QueueEventSource(stack, "Source", consumer=fn, queue=queue, batch_size=20, max_batching_window=Duration.seconds(1))


def test_fails_when_queue_visibility_is_under_six_times_the_function_timeout(code):
    stack, fn = _function(code, timeout=Duration.minutes(1))
    queue = SecureQueue(stack, "Work")
    with pytest.raises(ValueError, match=r"at least 6 times the consumer timeout \(360 s\), got 30 s"):
        QueueEventSource(stack, "Source", consumer=fn, queue=queue)


def test_fails_when_max_concurrency_is_below_two(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", consumer_timeout=fn.timeout)
    with pytest.raises(ValueError, match="max_concurrency must be between 2 and 1000, got 1"):
        QueueEventSource(stack, "Source", consumer=fn, queue=queue, max_concurrency=1)


def test_fails_when_the_batching_window_is_over_five_minutes(code):
    stack, fn = _function(code)
    queue = SecureQueue(stack, "Work", consumer_timeout=fn.timeout)
    with pytest.raises(ValueError, match="max_batching_window must be between 0 s and 5 minutes, got 6 minutes"):
        QueueEventSource(stack, "Source", consumer=fn, queue=queue, max_batching_window=Duration.minutes(6))
