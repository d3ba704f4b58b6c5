"""PushWebSocketApi: the five compliance packs in both profiles, every promise on the synthesized template, every validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from messaging_constructs import HandlerFunction, MonitoringDashboard, Profile
from messaging_constructs.acknowledgements import ACKNOWLEDGE_CONTEXT_KEY, ACKNOWLEDGEMENT_METADATA, SANDBOX_COST, lambda_inside_vpc_websocket_pusher
from messaging_constructs.function import RUNTIME
from messaging_constructs.websocket_api import ACCESS_LOG_FIELDS, PushWebSocketApi
from stacks._blueprint import Blueprint
from stacks._paths import lambda_code
from tests.unit.helpers import Checked, actions, evaluate, new_stack, only, resources, synth_with_packs

CONNECTIONS_ARN_TAIL = "/v1/POST/@connections/*"


def _synth_with_packs(profile: str, outdir: Path, *, acknowledge: bool = True) -> Checked:
    """A stack as a blueprint makes it (shared key, alarm topic, dashboard; a network in production) with the status API, its
    connections function, a pusher (outside the network, as it must be) and a token issuer (in the network)."""
    app = App(outdir=str(outdir), context={"profile": profile, ACKNOWLEDGE_CONTEXT_KEY: acknowledge})
    stack = Stack(app, "Test")
    blueprint = Blueprint.create(stack, Profile.named(profile), interface_endpoints=[])

    def function(construct_id: str, code: str, network) -> HandlerFunction:
        return HandlerFunction(stack, construct_id, code_path=lambda_code(code), service_name=code, runtime_layer=False, network=network, **blueprint.common)

    connections = function("Connections", "status_connections", blueprint.network)
    pusher = function("Pusher", "status_pusher", None)
    if blueprint.network is not None:  # where functions run in the network (production); the sandbox runs none there
        lambda_inside_vpc_websocket_pusher(pusher)
    issuer = function("Issuer", "audit_consumer", blueprint.network)
    api = PushWebSocketApi(stack, "StatusApi", handler=connections, description="Live order status", **blueprint.common)
    api.grant_push(pusher)
    api.grant_issue_tokens(issuer)
    blueprint.dashboard.monitor(api)
    return synth_with_packs(app, outdir)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """``synthesized("sandbox" | "production" | "<profile>-raw")``, each made once per module; ``-raw``: acknowledgements off."""
    cache: dict[str, Checked] = {}

    def get(name: str) -> Checked:
        if name not in cache:
            profile, _, raw = name.partition("-")
            cache[name] = _synth_with_packs(profile, tmp_path_factory.mktemp(name), acknowledge=not raw)
        return cache[name]

    return get


def _of(body: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in body["Resources"].items() if v["Type"] == resource_type}


def _api_id(body: dict) -> str:
    (api_id, _) = only(_of(body, "AWS::ApiGatewayV2::Api"))
    return api_id


def _function_id(body: dict, name: str) -> str:
    return next(k for k, v in _of(body, "AWS::Lambda::Function").items() if k.startswith(name) and "Handler" in v["Properties"])


def _statements(body: dict, function: str) -> list[dict]:
    """The statements of the customer-managed policy of ``function``'s role."""
    role = body["Resources"][_function_id(body, function)]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [p for p in _of(body, "AWS::IAM::ManagedPolicy").values() if {"Ref": role} in p["Properties"].get("Roles", [])]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _granted(body: dict, function: str) -> dict[str, list]:
    """Action -> the resources ``function`` has it on."""
    granted: dict[str, list] = {}
    for statement in _statements(body, function):
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions(statement):
            granted.setdefault(action, []).extend(targets)
    return granted


# --- the packs ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_the_five_packs_leave_no_unacknowledged_error_or_warning(synthesized, profile):
    checked = synthesized(profile)
    assert checked.findings == []
    assert checked.messages == []


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_cfn_lint_reports_nothing(synthesized, profile):
    from cfnlint.api import ManualArgs, lint_file

    assert [str(match) for match in lint_file(synthesized(profile).template_file, config=ManualArgs(regions=["us-east-1"]))] == []


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_without_acknowledgements_the_packs_find_exactly_what_they_hide(synthesized, profile):
    raw = synthesized(f"{profile}-raw")
    ours = [a for a in raw.acknowledgements if a["path"].startswith("Test/StatusApi") or a["id"].startswith("AwsSolutions-IAM5[Resource::arn")]
    ours += [a for a in raw.acknowledgements if a["path"] == "Test/Pusher" and a["id"].endswith("LambdaInsideVPC") and a["kind"] != SANDBOX_COST]
    hidden = {(a["id"], a["path"]) for a in ours}
    found = {(rule, path) for rule, path in raw.findings if path.startswith("Test/StatusApi") or "execute-api" in rule}
    assert all(any(rule == finding and path.startswith(where) for rule, path in raw.findings) for finding, where in hidden)
    assert all(any(rule == finding and path.startswith(where) for finding, where in hidden) for rule, path in found)
    api = _api_id(raw.template)
    expected = {
        "AwsSolutions-APIG4",
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{api}>{CONNECTIONS_ARN_TAIL}]",
    }
    if profile == "sandbox":
        expected |= {f"{pack}-DynamoDBInBackupPlan" for pack in ("HIPAA.Security", "NIST.800.53.R5")}
    else:
        expected.add("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]")
        expected |= {f"{pack}-LambdaInsideVPC" for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")}
    assert {a["id"] for a in ours} == expected
    assert sorted(a["path"] for a in ours if a["id"] == "AwsSolutions-APIG4") == [
        "Test/StatusApi/Resource/$default-Route",
        "Test/StatusApi/Resource/$disconnect-Route",
    ]
    assert all(len(a["reason"]) > 40 for a in ours)


def test_production_takes_no_sandbox_cost_acknowledgement(synthesized):
    ours = [a for a in synthesized("production").acknowledgements if a["path"].startswith(("Test/StatusApi", "Test/Pusher"))]
    assert ours and [a for a in ours if a["kind"] == SANDBOX_COST] == []


# --- the template ---------------------------------------------------------------------------


def test_a_websocket_api_whose_connect_route_alone_is_authorized_by_the_handler(synthesized):
    body = synthesized("sandbox").template
    api = _api_id(body)
    assert body["Resources"][api]["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert body["Resources"][api]["Properties"]["Name"].startswith("Test-StatusApi-")
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in _of(body, "AWS::ApiGatewayV2::Route").values()}
    assert sorted(routes) == ["$connect", "$default", "$disconnect"]
    (authorizer_id, authorizer) = only(_of(body, "AWS::ApiGatewayV2::Authorizer"))
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM" and routes["$connect"]["AuthorizerId"] == {"Ref": authorizer_id}
    assert {routes[k]["AuthorizationType"] for k in ("$default", "$disconnect")} == {"NONE"}
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "REQUEST"
    assert props["IdentitySource"] == ["route.request.querystring.order_id", "route.request.querystring.token"]
    handler = _function_id(body, "Connections")
    assert {"Fn::GetAtt": [handler, "Arn"]} in props["AuthorizerUri"]["Fn::Join"][1]
    integrations = _of(body, "AWS::ApiGatewayV2::Integration")
    assert len(integrations) == 3
    assert all(
        i["Properties"]["IntegrationType"] == "AWS_PROXY" and {"Fn::GetAtt": [handler, "Arn"]} in i["Properties"]["IntegrationUri"]["Fn::Join"][1]
        for i in integrations.values()
    )
    (_, response) = only(_of(body, "AWS::ApiGatewayV2::RouteResponse"))
    default_route = next(k for k, v in _of(body, "AWS::ApiGatewayV2::Route").items() if v["Properties"]["RouteKey"] == "$default")
    assert response["Properties"]["RouteId"] == {"Ref": default_route} and routes["$default"]["RouteResponseSelectionExpression"] == "$default"
    permissions = [
        p["Properties"] for p in _of(body, "AWS::Lambda::Permission").values() if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [handler, "Arn"]}
    ]
    assert len(permissions) == 4 and {p["Principal"] for p in permissions} == {"apigateway.amazonaws.com"}


@pytest.mark.parametrize(("profile", "level", "retention"), [("sandbox", "OFF", 7), ("production", "ERROR", 365)])
def test_one_auto_deployed_stage_throttled_with_json_access_logs_in_an_encrypted_group(synthesized, profile, level, retention):
    body = synthesized(profile).template
    (_, stage) = only(_of(body, "AWS::ApiGatewayV2::Stage"))
    props = stage["Properties"]
    assert props["StageName"] == "v1" and props["AutoDeploy"] is True and props["ApiId"] == {"Ref": _api_id(body)}
    assert props["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": 50,
        "ThrottlingBurstLimit": 100,
        "LoggingLevel": level,
        "DataTraceEnabled": False,
        "DetailedMetricsEnabled": False,
    }
    group_id = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert group_id.startswith("StatusApiAccessLogs")
    group = body["Resources"][group_id]
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == retention
    assert group["DeletionPolicy"] == ("Delete" if profile == "sandbox" else "Retain")
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert fields == ACCESS_LOG_FIELDS
    assert {"routeKey": "$context.routeKey", "connectionId": "$context.connectionId", "status": "$context.status"}.items() <= fields.items()
    assert "querystring" not in props["AccessLogSettings"]["Format"].lower() and "token" not in props["AccessLogSettings"]["Format"].lower()


def test_production_makes_the_execution_log_group_before_the_stage(synthesized):
    body = synthesized("production").template
    (group_id, group) = only({k: v for k, v in _of(body, "AWS::Logs::LogGroup").items() if k.startswith("StatusApiExecutionLogs")})
    assert group["Properties"]["LogGroupName"] == {"Fn::Join": ["", ["/aws/apigateway/", {"Ref": _api_id(body)}, "/v1"]]}
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 365
    (_, stage) = only(_of(body, "AWS::ApiGatewayV2::Stage"))
    assert group_id in stage["DependsOn"]
    assert not [k for k in _of(synthesized("sandbox").template, "AWS::Logs::LogGroup") if k.startswith("StatusApiExecutionLogs")]


@pytest.mark.parametrize(("profile", "policy", "protected"), [("sandbox", "Delete", False), ("production", "Retain", True)])
def test_the_connections_table_is_keyed_by_order_and_connection_with_a_ttl(synthesized, profile, policy, protected):
    body = synthesized(profile).template
    (_, table) = only({k: v for k, v in _of(body, "AWS::DynamoDB::Table").items() if k.startswith("StatusApiConnections")})
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "order_id", "KeyType": "HASH"}, {"AttributeName": "connection_id", "KeyType": "RANGE"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["SSESpecification"]["SSEType"] == "KMS" and props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == policy and props.get("DeletionProtectionEnabled", False) is protected


@pytest.mark.parametrize(("profile", "policy", "window"), [("sandbox", "Delete", 7), ("production", "Retain", 30)])
def test_the_token_key_is_an_hmac_key_for_macs_only(synthesized, profile, policy, window):
    body = synthesized(profile).template
    (_, key) = only({k: v for k, v in _of(body, "AWS::KMS::Key").items() if k.startswith("StatusApiTokenKey")})
    props = key["Properties"]
    assert (props["KeySpec"], props["KeyUsage"], props["EnableKeyRotation"]) == ("HMAC_256", "GENERATE_VERIFY_MAC", False)
    assert key["DeletionPolicy"] == policy and props["PendingWindowInDays"] == window


def test_the_handler_gets_its_environment_and_only_the_item_and_verify_actions(synthesized):
    body = synthesized("production").template
    handler = body["Resources"][_function_id(body, "Connections")]["Properties"]
    variables = handler["Environment"]["Variables"]
    table = next(k for k in _of(body, "AWS::DynamoDB::Table") if k.startswith("StatusApiConnections"))
    key = next(k for k in _of(body, "AWS::KMS::Key") if k.startswith("StatusApiTokenKey"))
    assert variables["CONNECTIONS_TABLE_NAME"] == {"Ref": table}
    assert variables["STATUS_TOKEN_KEY_ID"] == {"Fn::GetAtt": [key, "Arn"]}
    assert variables["CONNECTION_TTL_SECONDS"] == "7200"
    granted = _granted(body, "Connections")
    assert granted["kms:VerifyMac"] == [{"Fn::GetAtt": [key, "Arn"]}]
    assert {"Fn::GetAtt": [table, "Arn"]} in granted["dynamodb:PutItem"] and {"Fn::GetAtt": [table, "Arn"]} in granted["dynamodb:DeleteItem"]
    assert not [a for a in granted if a in ("kms:GenerateMac", "dynamodb:Query", "execute-api:ManageConnections")]


def test_a_pusher_may_post_to_this_stage_s_connections_only_and_find_and_remove_them(synthesized):
    body = synthesized("sandbox").template
    granted = _granted(body, "Pusher")
    (arn,) = granted["execute-api:ManageConnections"]
    assert arn["Fn::Join"][1][-2:] == [{"Ref": _api_id(body)}, CONNECTIONS_ARN_TAIL]
    rendered = evaluate(
        {"Fn::Join": ["", [p if not (isinstance(p, dict) and p.get("Ref", "").startswith("StatusApi")) else "abc123" for p in arn["Fn::Join"][1]]]}
    )
    assert rendered == "arn:aws:execute-api:ap-southeast-5:123456789012:abc123/v1/POST/@connections/*"
    table = next(k for k in _of(body, "AWS::DynamoDB::Table") if k.startswith("StatusApiConnections"))
    assert {"Fn::GetAtt": [table, "Arn"]} in granted["dynamodb:Query"] and {"Fn::GetAtt": [table, "Arn"]} in granted["dynamodb:DeleteItem"]
    assert "dynamodb:PutItem" not in granted and "kms:GenerateMac" not in granted and "kms:VerifyMac" not in granted


def test_an_issuer_may_make_tokens_and_nothing_else_of_the_api(synthesized):
    body = synthesized("production").template
    granted = _granted(body, "Issuer")
    key = next(k for k in _of(body, "AWS::KMS::Key") if k.startswith("StatusApiTokenKey"))
    assert granted["kms:GenerateMac"] == [{"Fn::GetAtt": [key, "Arn"]}]
    assert "kms:VerifyMac" not in granted and "execute-api:ManageConnections" not in granted


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_alarms_on_execution_and_integration_errors_of_the_stage(synthesized, profile):
    body = synthesized(profile).template
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for k, a in _of(body, "AWS::CloudWatch::Alarm").items()
        if k.startswith("StatusApi") and "MetricName" in a["Properties"]
    }
    assert sorted(alarms) == ["ExecutionError", "IntegrationError"]
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/ApiGateway"
        assert alarm["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": _api_id(body)}}, {"Name": "Stage", "Value": "v1"}]
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == alarm["OKActions"] and len(alarm["AlarmActions"]) == 1


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_no_iam_action_has_a_wildcard(synthesized, profile):
    body = synthesized(profile).template
    documents = [r["Properties"]["PolicyDocument"] for t in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") for r in _of(body, t).values()]
    documents += [p["PolicyDocument"] for r in _of(body, "AWS::IAM::Role").values() for p in r["Properties"].get("Policies", [])]
    found = [a for d in documents for s in d["Statement"] for a in actions(s)]
    assert "execute-api:ManageConnections" in found and "kms:GenerateMac" in found and "kms:VerifyMac" in found
    assert not [a for a in found if "*" in a]


def test_the_dashboard_draws_connects_messages_errors_and_latency(synthesized):
    body = synthesized("sandbox").template
    (_, dashboard) = only(_of(body, "AWS::CloudWatch::Dashboard"))
    text = json.dumps(dashboard["Properties"]["DashboardBody"])
    for part in (
        "## StatusApi WebSocket API",
        "StatusApi: connects and messages",
        "StatusApi: errors",
        "ConnectCount",
        "MessageCount",
        "ClientError",
        "ExecutionError",
        "IntegrationError",
        "IntegrationLatency",
        '\\"ApiId\\"',
    ):
        assert part in text, part


# --- small stacks: props, grants and validation ----------------------------------------------


def _function(stack: Stack, construct_id: str = "Fn") -> lambda_.Function:
    return lambda_.Function(
        stack, construct_id, runtime=RUNTIME, handler="index.handler", code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n")
    )


def _api(profile: str = "sandbox", **props) -> tuple[Stack, PushWebSocketApi]:
    stack = new_stack(profile)
    return stack, PushWebSocketApi(stack, "StatusApi", handler=_function(stack), **props)


def test_props_reach_the_template():
    stack, api = _api(
        subscription_key="room",
        stage_name="live",
        api_name="rooms",
        throttling_rate_limit=10,
        throttling_burst_limit=20,
        connection_ttl=Duration.minutes(30),
        execution_logging=True,
        execution_errors_alarm_threshold=3,
        integration_errors_alarm_threshold=5,
    )
    (_, stage) = only(resources(stack, "AWS::ApiGatewayV2::Stage"))
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert (stage["Properties"]["StageName"], settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"], settings["LoggingLevel"]) == (
        "live",
        10,
        20,
        "ERROR",
    )
    (_, authorizer) = only(resources(stack, "AWS::ApiGatewayV2::Authorizer"))
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.room", "route.request.querystring.token"]
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    assert table["Properties"]["KeySchema"][0] == {"AttributeName": "room", "KeyType": "HASH"}
    (_, function) = only(resources(stack, "AWS::Lambda::Function"))
    assert function["Properties"]["Environment"]["Variables"]["CONNECTION_TTL_SECONDS"] == "1800"
    (_, api_resource) = only(resources(stack, "AWS::ApiGatewayV2::Api"))
    assert api_resource["Properties"]["Name"] == "rooms"
    thresholds = {
        a["Properties"]["MetricName"]: a["Properties"]["Threshold"]
        for a in resources(stack, "AWS::CloudWatch::Alarm").values()
        if "MetricName" in a["Properties"]
    }
    assert thresholds["ExecutionError"] == 3 and thresholds["IntegrationError"] == 5
    assert api.subscription_key == "room" and api.stage_name == "live" and api.connection_ttl.to_minutes() == 30
    assert api.execution_log_group is not None


def test_public_attributes_and_urls():
    stack, api = _api()
    resolved = stack.resolve(api.url)
    assert resolved["Fn::Join"][1][0] == "wss://" and resolved["Fn::Join"][1][-1].endswith("/v1")
    callback = stack.resolve(api.callback_url)
    assert callback["Fn::Join"][1][0] == "https://" and callback["Fn::Join"][1][-1].endswith("/v1")
    assert stack.resolve(api.connections_arn)["Fn::Join"][1][-1] == CONNECTIONS_ARN_TAIL
    assert api.connections.table is not None and api.token_key is not None and api.log_group is not None and api.key is not None
    assert api.authorizer is not None and api.stage is not None and len(api.alarms) == 2 and api.execution_log_group is None
    assert api.monitoring_label == "WebSocket API"
    MonitoringDashboard(stack, "Dashboard").monitor(api)


def test_grants_to_a_role_name_exact_actions():
    stack, api = _api()
    role = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    api.grant_manage_connections(role)
    api.grant_issue_tokens(role)
    (_, policy) = only({k: v for k, v in resources(stack, "AWS::IAM::Policy").items() if k.startswith("Caller")})
    found = sorted(a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in actions(s))
    assert found == ["execute-api:ManageConnections", "kms:GenerateMac"]
    recorded = [e.data["id"] for e in role.node.metadata if e.type == ACKNOWLEDGEMENT_METADATA]
    assert len(recorded) == 1 and recorded[0].startswith("AwsSolutions-IAM5[Resource::arn:") and recorded[0].endswith(CONNECTIONS_ARN_TAIL + "]")


def test_a_handler_whose_environment_cannot_be_set_is_refused():
    stack = new_stack()
    imported = lambda_.Function.from_function_arn(stack, "Imported", "arn:aws:lambda:us-east-1:123456789012:function:status")
    with pytest.raises(ValueError, match="handler must be a HandlerFunction or a lambda_.Function of this app"):
        PushWebSocketApi(stack, "StatusApi", handler=imported)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(subscription_key="order-id"), "subscription_key must be a letter or _"),
        (dict(subscription_key="token"), "subscription_key may not be 'token'"),
        (dict(subscription_key="connection_id"), "subscription_key may not be 'connection_id'"),
        (dict(stage_name="v-1"), "stage_name must be 1 to 128 letters, digits or underscores"),
        (dict(throttling_rate_limit=0), "throttling_rate_limit must be between 1 and 10000"),
        (dict(throttling_burst_limit=6000), "throttling_burst_limit must be between 1 and 5000"),
        (dict(connection_ttl=Duration.hours(3)), "connection_ttl must be between 1 minute and 2 hours, got 3 hours"),
        (dict(connection_ttl=Duration.seconds(30)), "connection_ttl must be between 1 minute and 2 hours"),
        (dict(execution_errors_alarm_threshold=0), "execution_errors_alarm_threshold must be between 1"),
        (dict(integration_errors_alarm_threshold=0), "integration_errors_alarm_threshold must be between 1"),
    ],
)
def test_fails_on_bad_props(props, message):
    with pytest.raises(ValueError, match=message):
        _api(**props)
