"""SecureRestApi: the five compliance packs in both profiles, every promise on the synthesized template, every validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from messaging_constructs import HandlerFunction, MonitoringDashboard, Profile
from messaging_constructs.acknowledgements import ACKNOWLEDGE_CONTEXT_KEY, ACKNOWLEDGEMENT_METADATA, SANDBOX_COST
from messaging_constructs.function import RUNTIME
from messaging_constructs.rest_api import ACCESS_LOG_FIELDS, JSON_SCHEMA_DRAFT_4, SecureRestApi
from stacks._blueprint import Blueprint
from stacks._paths import lambda_code
from tests.unit.helpers import Checked, actions, new_stack, only, resources, synth_with_packs

ORDER_SCHEMA = {
    "type": "object",
    "required": ["orderId", "items"],
    "properties": {"orderId": {"type": "string", "minLength": 1}, "items": {"type": "array", "minItems": 1}},
    "additionalProperties": False,
}


def _add_order_routes(api: SecureRestApi, handler) -> None:
    api.add_route("POST", "/orders", handler, request_model=ORDER_SCHEMA, required_headers=["Idempotency-Key"])
    api.add_route("GET", "/orders/{id}", handler)


# --- the packs, on a stack like a blueprint's ---------------------------------------------


def _synth_with_packs(profile: str, outdir: Path, *, acknowledge: bool = True) -> Checked:
    """A stack as a blueprint makes it (shared key, alarm topic, dashboard; a network in production) holding an order API
    of the profile's defaults with two routes; the sandbox one also a Cognito-authorized API with a user pool of its own."""
    app = App(outdir=str(outdir), context={"profile": profile, ACKNOWLEDGE_CONTEXT_KEY: acknowledge})
    stack = Stack(app, "Test")
    blueprint = Blueprint.create(stack, Profile.named(profile), interface_endpoints=[])
    handler = HandlerFunction(
        stack, "Orders", code_path=lambda_code("audit_consumer"), service_name="orders", runtime_layer=False, network=blueprint.network, **blueprint.common
    )
    apis = [SecureRestApi(stack, "OrdersApi", **blueprint.common)]
    if profile == "sandbox":
        apis.append(SecureRestApi(stack, "StaffApi", authorization="cognito", **blueprint.common))
    for api in apis:
        _add_order_routes(api, handler)
        blueprint.dashboard.monitor(api)
    return synth_with_packs(app, outdir)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """``synthesized("sandbox" | "production" | "sandbox-raw")``, each made once per module; ``-raw``: acknowledgements off."""
    cache: dict[str, Checked] = {}

    def get(name: str) -> Checked:
        if name not in cache:
            profile, _, raw = name.partition("-")
            cache[name] = _synth_with_packs(profile, tmp_path_factory.mktemp(name), acknowledge=not raw)
        return cache[name]

    return get


def _of(body: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in body["Resources"].items() if v["Type"] == resource_type}


def _api_id(body: dict, name: str = "OrdersApi") -> str:
    return next(k for k, v in _of(body, "AWS::ApiGateway::RestApi").items() if k.startswith(name))


def _stage_id(body: dict, name: str = "OrdersApi") -> str:
    api = _api_id(body, name)
    return next(k for k, v in _of(body, "AWS::ApiGateway::Stage").items() if v["Properties"]["RestApiId"] == {"Ref": api})


def _stage(body: dict, name: str = "OrdersApi") -> dict:
    return body["Resources"][_stage_id(body, name)]


def _methods(body: dict, name: str = "OrdersApi") -> dict[str, dict]:
    api = _api_id(body, name)
    return {v["Properties"]["HttpMethod"]: v for v in _of(body, "AWS::ApiGateway::Method").values() if v["Properties"]["RestApiId"] == {"Ref": api}}


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_the_five_packs_leave_no_unacknowledged_error_or_warning(synthesized, profile):
    checked = synthesized(profile)
    assert checked.findings == []
    assert checked.messages == []


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_cfn_lint_reports_nothing(synthesized, profile):
    from cfnlint.api import ManualArgs, lint_file

    assert [str(match) for match in lint_file(synthesized(profile).template_file, config=ManualArgs(regions=["us-east-1"]))] == []


def test_without_acknowledgements_the_packs_find_exactly_what_they_hide(synthesized):
    raw = synthesized("sandbox-raw")
    ours = [a for a in raw.acknowledgements if a["path"].startswith(("Test/OrdersApi", "Test/StaffApi"))]
    hidden = {(a["id"], a["path"]) for a in ours}
    found = {(rule, path) for rule, path in raw.findings if path.startswith(("Test/OrdersApi", "Test/StaffApi"))}
    assert all(any(rule == finding and path.startswith(where) for rule, path in found) for finding, where in hidden)
    assert all(any(rule == finding and path.startswith(where) for finding, where in hidden) for rule, path in found)
    assert {a["id"] for a in ours} == {
        "AwsSolutions-COG4",
        "AwsSolutions-COG8",
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG6",
        *(
            f"{pack}-{rule}"
            for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")
            for rule in ("APIGWExecutionLoggingEnabled", "APIGWCacheEnabledAndEncrypted", "APIGWSSLEnabled")
        ),
        *(f"{pack}-APIGWAssociatedWithWAF" for pack in ("NIST.800.53.R5", "PCI.DSS.321")),
    }
    assert all(len(a["reason"]) > 40 for a in ours)


def test_production_takes_no_sandbox_cost_acknowledgement(synthesized):
    ours = [a for a in synthesized("production").acknowledgements if a["path"].startswith("Test/OrdersApi")]
    assert {a["id"].split("-", 1)[-1] for a in ours} == {"APIGWCacheEnabledAndEncrypted", "APIGWSSLEnabled"}
    assert [a for a in ours if a["kind"] == SANDBOX_COST] == []


# --- the template ----------------------------------------------------------------------


def test_a_regional_api_named_after_its_construct_whose_stage_waits_for_the_account_logging_role(synthesized):
    """Access logs need the account's API Gateway CloudWatch Logs role: one per stack, kept on delete (shared by every API)."""
    body = synthesized("sandbox").template
    api = body["Resources"][_api_id(body)]["Properties"]
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Name"].startswith("Test-OrdersApi-")
    ((account_id, account),) = _of(body, "AWS::ApiGateway::Account").items()
    assert account["DeletionPolicy"] == "Retain" and account_id in _stage(body)["DependsOn"]
    (role_id,) = [k for k, r in _of(body, "AWS::IAM::Role").items() if "apigateway" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]} and body["Resources"][role_id]["DeletionPolicy"] == "Retain"
    trust = body["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


@pytest.mark.parametrize(("profile", "retention"), [("sandbox", 7), ("production", 365)])
def test_access_logs_are_json_lines_in_an_encrypted_log_group(synthesized, profile, retention):
    body = synthesized(profile).template
    setting = _stage(body)["Properties"]["AccessLogSetting"]
    group_id = setting["DestinationArn"]["Fn::GetAtt"][0]
    assert setting["DestinationArn"] == {"Fn::GetAtt": [group_id, "Arn"]} and group_id.startswith("OrdersApiAccessLogs")
    group = body["Resources"][group_id]
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == retention
    assert group["DeletionPolicy"] == ("Delete" if profile == "sandbox" else "Retain")
    fields = json.loads(setting["Format"])
    assert fields == ACCESS_LOG_FIELDS
    assert {
        "requestId": "$context.requestId",
        "caller": "$context.identity.caller",
        "status": "$context.status",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integration.latency",
        "errorMessage": "$context.error.message",
    }.items() <= fields.items()


@pytest.mark.parametrize(("profile", "level"), [("sandbox", "OFF"), ("production", "ERROR")])
def test_tracing_metrics_throttling_and_execution_logging(synthesized, profile, level):
    stage = _stage(synthesized(profile).template)["Properties"]
    assert stage["StageName"] == "v1"
    assert stage["TracingEnabled"] is True
    assert stage["MethodSettings"] == [
        {
            "HttpMethod": "*",
            "ResourcePath": "/*",
            "MetricsEnabled": True,
            "DataTraceEnabled": False,
            "LoggingLevel": level,
            "ThrottlingRateLimit": 50,
            "ThrottlingBurstLimit": 100,
        }
    ]
    assert "CacheClusterEnabled" not in stage and "ClientCertificateId" not in stage


def test_production_execution_logs_go_to_a_group_made_before_the_stage(synthesized):
    body = synthesized("production").template
    api_id = _api_id(body)
    (group_id, group) = only({k: v for k, v in _of(body, "AWS::Logs::LogGroup").items() if k.startswith("OrdersApiExecutionLogs")})
    assert group["Properties"]["LogGroupName"] == {"Fn::Join": ["", ["API-Gateway-Execution-Logs_", {"Ref": api_id}, "/v1"]]}
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 365
    assert group_id in _stage(body)["DependsOn"]
    assert not [k for k in _of(synthesized("sandbox").template, "AWS::Logs::LogGroup") if "ExecutionLogs" in k]


def test_one_validator_checks_body_and_parameters_of_every_method(synthesized):
    body = synthesized("sandbox").template
    api_id = _api_id(body)
    (validator_id, validator) = only(
        {k: v for k, v in _of(body, "AWS::ApiGateway::RequestValidator").items() if v["Properties"]["RestApiId"] == {"Ref": api_id}}
    )
    assert validator["Properties"] == {"RestApiId": {"Ref": api_id}, "ValidateRequestBody": True, "ValidateRequestParameters": True}
    assert {m["Properties"]["RequestValidatorId"]["Ref"] for m in _methods(body).values()} == {validator_id}


def test_the_request_model_is_the_schema_in_draft_4_and_redeploys_with_it(synthesized):
    body = synthesized("sandbox").template
    api_id = _api_id(body)
    (model_id, model) = only({k: v for k, v in _of(body, "AWS::ApiGateway::Model").items() if v["Properties"]["RestApiId"] == {"Ref": api_id}})
    assert model["Properties"]["ContentType"] == "application/json"
    assert model["Properties"]["Schema"] == {"$schema": JSON_SCHEMA_DRAFT_4, **ORDER_SCHEMA}
    methods = _methods(body)
    assert methods["POST"]["Properties"]["RequestModels"] == {"application/json": {"Ref": model_id}}
    assert "RequestModels" not in methods["GET"]["Properties"]
    (_, deployment) = only({k: v for k, v in _of(body, "AWS::ApiGateway::Deployment").items() if v["Properties"]["RestApiId"] == {"Ref": api_id}})
    assert model_id in deployment["DependsOn"]


def test_required_headers_and_path_parameters_are_required_request_parameters(synthesized):
    methods = _methods(synthesized("sandbox").template)
    assert methods["POST"]["Properties"]["RequestParameters"] == {"method.request.header.Idempotency-Key": True}
    assert methods["GET"]["Properties"]["RequestParameters"] == {"method.request.path.id": True}


def test_routes_are_lambda_proxy_integrations_each_allowed_for_its_own_method_and_path(synthesized):
    body = synthesized("sandbox").template
    function_arn = {"Fn::GetAtt": [next(k for k in _of(body, "AWS::Lambda::Function") if k.startswith("Orders")), "Arn"]}
    for method in _methods(body).values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY" and integration["IntegrationHttpMethod"] == "POST"
        assert function_arn in integration["Uri"]["Fn::Join"][1]
    api_id = _api_id(body)
    permissions = [p["Properties"] for p in _of(body, "AWS::Lambda::Permission").values() if {"Ref": api_id} in p["Properties"]["SourceArn"]["Fn::Join"][1]]
    assert sorted(p["SourceArn"]["Fn::Join"][1][-1] for p in permissions) == ["/GET/orders/*", "/POST/orders"]
    assert all(p["Action"] == "lambda:InvokeFunction" and p["Principal"] == "apigateway.amazonaws.com" for p in permissions)
    assert not [p for p in permissions if "test-invoke-stage" in json.dumps(p)]


@pytest.mark.parametrize(
    ("profile", "name", "authorization"),
    [("sandbox", "OrdersApi", "AWS_IAM"), ("production", "OrdersApi", "COGNITO_USER_POOLS"), ("sandbox", "StaffApi", "COGNITO_USER_POOLS")],
)
def test_every_method_is_authorized_as_the_profile_or_the_prop_says(synthesized, profile, name, authorization):
    body = synthesized(profile).template
    methods = _methods(body, name)
    assert sorted(methods) == ["GET", "POST"]
    assert {m["Properties"]["AuthorizationType"] for m in methods.values()} == {authorization}
    authorizers = {m["Properties"].get("AuthorizerId", {}).get("Ref") for m in methods.values()}
    if authorization == "AWS_IAM":
        assert authorizers == {None}
    else:
        (authorizer,) = authorizers
        props = body["Resources"][authorizer]["Properties"]
        assert props["Type"] == "COGNITO_USER_POOLS" and props["IdentitySource"] == "method.request.header.Authorization"
        assert props["ProviderARNs"] == [{"Fn::GetAtt": [next(k for k in _of(body, "AWS::Cognito::UserPool") if k.startswith(name)), "Arn"]}]


@pytest.mark.parametrize(
    ("profile", "name", "tier", "protected", "policy"),
    [("sandbox", "StaffApi", "ESSENTIALS", False, "Delete"), ("production", "OrdersApi", "PLUS", True, "Retain")],
)
def test_the_user_pool_is_admin_only_with_mfa_and_follows_the_profile(synthesized, profile, name, tier, protected, policy):
    (_, pool) = only({k: v for k, v in _of(synthesized(profile).template, "AWS::Cognito::UserPool").items() if k.startswith(name)})
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert props["MfaConfiguration"] == "ON" and props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert props["Policies"]["PasswordPolicy"] == {
        "MinimumLength": 12,
        "RequireLowercase": True,
        "RequireUppercase": True,
        "RequireNumbers": True,
        "RequireSymbols": True,
        "TemporaryPasswordValidityDays": 3,
    }
    assert props["UserPoolTier"] == tier
    assert (props.get("UserPoolAddOns") == {"AdvancedSecurityMode": "ENFORCED"}) is protected
    assert (props.get("DeletionProtection") == "ACTIVE") is protected
    assert pool["DeletionPolicy"] == policy


def test_production_puts_a_web_acl_with_managed_rules_and_a_rate_limit_on_the_stage(synthesized):
    body = synthesized("production").template
    (acl_id, acl) = only(_of(body, "AWS::WAFv2::WebACL"))
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL" and props["DefaultAction"] == {"Allow": {}}
    rules = {rule["Name"]: rule for rule in props["Rules"]}
    assert sorted(rules) == ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "RateLimitPerIp"]
    for name in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        assert rules[name]["Statement"] == {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": name}}
        assert rules[name]["OverrideAction"] == {"None": {}}
    assert rules["RateLimitPerIp"]["Statement"] == {"RateBasedStatement": {"AggregateKeyType": "IP", "Limit": 1000, "EvaluationWindowSec": 300}}
    assert rules["RateLimitPerIp"]["Action"] == {"Block": {}}
    for visibility in [props["VisibilityConfig"], *(rule["VisibilityConfig"] for rule in props["Rules"])]:
        assert visibility["CloudWatchMetricsEnabled"] is True and visibility["SampledRequestsEnabled"] is True
    (_, association) = only(_of(body, "AWS::WAFv2::WebACLAssociation"))
    stage_id = _stage_id(body)
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert association["Properties"]["ResourceArn"]["Fn::Join"][1][-3:] == [{"Ref": _api_id(body)}, "/stages/", {"Ref": stage_id}]
    (_, logging) = only(_of(body, "AWS::WAFv2::LoggingConfiguration"))
    assert logging["Properties"]["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert logging["Properties"]["RedactedFields"] == [{"SingleHeader": {"Name": "authorization"}}]
    (group_id, group) = only({k: v for k, v in _of(body, "AWS::Logs::LogGroup").items() if k.startswith("OrdersApiWebAclLogs")})
    assert group["Properties"]["LogGroupName"]["Fn::Join"][1][0].startswith("aws-waf-logs-")
    assert "KmsKeyId" in group["Properties"]
    assert logging["Properties"]["LogDestinationConfigs"][0]["Fn::Join"][1][-2:] == [":log-group:", {"Ref": group_id}]


def test_the_sandbox_has_no_web_acl(synthesized):
    body = synthesized("sandbox").template
    assert not _of(body, "AWS::WAFv2::WebACL") and not _of(body, "AWS::WAFv2::WebACLAssociation")


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_alarms_on_5xx_and_p99_latency_of_the_stage_as_aws_publishes_them(synthesized, profile):
    body = synthesized(profile).template
    api_name = body["Resources"][_api_id(body)]["Properties"]["Name"]
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for k, a in _of(body, "AWS::CloudWatch::Alarm").items() if k.startswith("OrdersApi")}
    assert sorted(alarms) == ["5XXError", "Latency"]
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/ApiGateway"
        assert alarm["Dimensions"] == [{"Name": "ApiName", "Value": api_name}, {"Name": "Stage", "Value": "v1"}]
        assert alarm["Period"] == 300 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["AlarmActions"] == alarm["OKActions"] and len(alarm["AlarmActions"]) == 1
    assert (alarms["5XXError"]["Statistic"], alarms["5XXError"]["Threshold"], alarms["5XXError"]["EvaluationPeriods"]) == ("Sum", 1, 1)
    assert (alarms["Latency"]["ExtendedStatistic"], alarms["Latency"]["Threshold"], alarms["Latency"]["EvaluationPeriods"]) == ("p99", 1000, 3)


@pytest.mark.parametrize("profile", ["sandbox", "production"])
def test_no_iam_action_has_a_wildcard(synthesized, profile):
    body = synthesized(profile).template
    documents = [r["Properties"]["PolicyDocument"] for t in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") for r in _of(body, t).values()]
    documents += [p["PolicyDocument"] for r in _of(body, "AWS::IAM::Role").values() for p in r["Properties"].get("Policies", [])]
    found = [a for d in documents for s in d["Statement"] for a in actions(s)]
    assert found and not [a for a in found if "*" in a]


def test_the_dashboard_draws_requests_errors_and_latency_of_the_stage(synthesized):
    body = synthesized("production").template
    (_, dashboard) = only(_of(body, "AWS::CloudWatch::Dashboard"))
    text = json.dumps(dashboard["Properties"]["DashboardBody"])
    for part in (
        "## OrdersApi",
        "OrdersApi: requests, 4XX, 5XX",
        "OrdersApi: latency p99 (ms)",
        "AWS/ApiGateway",
        "IntegrationLatency",
        "5XXError",
        "4XXError",
    ):
        assert part in text


# --- small stacks: props, grants and validation ----------------------------------------------


def _function(stack: Stack) -> lambda_.Function:
    return lambda_.Function(
        stack, "Fn", runtime=RUNTIME, handler="index.handler", code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n")
    )


def _api(profile: str = "sandbox", **props) -> tuple[Stack, SecureRestApi]:
    stack = new_stack(profile)
    api = SecureRestApi(stack, "OrdersApi", **props)
    _add_order_routes(api, _function(stack))
    return stack, api


def test_throttling_and_alarm_thresholds_are_props():
    stack, api = _api(throttling_rate_limit=10, throttling_burst_limit=20, server_errors_alarm_threshold=5, latency_alarm_threshold=Duration.millis(1500))
    (_, stage) = only(resources(stack, "AWS::ApiGateway::Stage"))
    assert (stage["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"], stage["Properties"]["MethodSettings"][0]["ThrottlingBurstLimit"]) == (10, 20)
    thresholds = {a["Properties"]["MetricName"]: a["Properties"]["Threshold"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert thresholds == {"5XXError": 5, "Latency": 1500}
    assert len(api.alarms) == 2


def test_the_sandbox_may_choose_the_web_acl_and_execution_logging_and_then_acknowledges_neither():
    stack, api = _api(web_acl=True, web_acl_rate_limit=500, execution_logging=True, stage_name="live", api_name="orders")
    (_, acl) = only(resources(stack, "AWS::WAFv2::WebACL"))
    (rate,) = [r for r in acl["Properties"]["Rules"] if r["Name"] == "RateLimitPerIp"]
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == 500
    assert api.web_acl is not None and api.web_acl_log_group is not None and api.execution_log_group is not None
    (_, stage) = only(resources(stack, "AWS::ApiGateway::Stage"))
    assert stage["Properties"]["StageName"] == "live" and stage["Properties"]["MethodSettings"][0]["LoggingLevel"] == "ERROR"
    recorded = {e.data["id"] for node in stack.node.find_all() for e in node.node.metadata if e.type == ACKNOWLEDGEMENT_METADATA}
    assert not [i for i in recorded if "WAF" in i or "APIG3" in i or "APIG6" in i or "ExecutionLogging" in i]
    dimensions = {json.dumps(a["Properties"]["Dimensions"]) for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert dimensions == {json.dumps([{"Name": "ApiName", "Value": "orders"}, {"Name": "Stage", "Value": "live"}])}


def test_a_given_user_pool_is_used_and_none_is_made():
    stack = new_stack("production")
    pool = cognito.UserPool.from_user_pool_arn(stack, "Pool", "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abcdefgh")
    api = SecureRestApi(stack, "OrdersApi", user_pool=pool)
    _add_order_routes(api, _function(stack))
    assert api.user_pool is pool and not resources(stack, "AWS::Cognito::UserPool")
    (_, authorizer) = only(resources(stack, "AWS::ApiGateway::Authorizer"))
    assert authorizer["Properties"]["ProviderARNs"] == ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abcdefgh"]


def test_public_attributes():
    stack, api = _api()
    assert api.authorization == "iam" and api.user_pool is None and api.authorizer is None and api.web_acl is None
    assert api.stage.node.path == "Test/OrdersApi/Resource/DeploymentStage.v1" and api.url == api.api.url
    assert sorted(api.routes) == [("GET", "/orders/{id}"), ("POST", "/orders")]
    assert api.log_group is not None and api.key is not None and api.monitoring_label == "api"
    MonitoringDashboard(stack, "Dashboard").monitor(api)


def test_grant_invoke_names_one_method_and_path_of_the_stage():
    stack, api = _api()
    role = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    api.grant_invoke(role, "post", "/orders")
    api.grant_invoke(role, "GET", "/orders/{id}")
    api_ref = {"Ref": stack.get_logical_id(api.api.node.default_child)}
    (_, policy) = only(resources(stack, "AWS::IAM::Policy"))
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"execute-api:Invoke"}
    tails = sorted(s["Resource"]["Fn::Join"][1][-2:][1] for s in statements)
    assert tails == ["/v1/GET/orders/*", "/v1/POST/orders"]
    assert all(s["Resource"]["Fn::Join"][1][-2] == api_ref for s in statements)


def test_grant_invoke_refuses_a_cognito_api_and_unknown_routes():
    _, api = _api()
    with pytest.raises(ValueError, match="no route DELETE /orders/{id}: add it with add_route first"):
        api.grant_invoke(iam.AccountRootPrincipal(), "DELETE", "/orders/{id}")
    _, cognito_api = _api(authorization="cognito")
    with pytest.raises(ValueError, match='grant_invoke needs authorization="iam"'):
        cognito_api.grant_invoke(iam.AccountRootPrincipal(), "GET", "/orders/{id}")


def test_a_handler_function_is_taken_as_the_handler(tmp_path):
    (tmp_path / "handler.py").write_text("def lambda_handler(event, context):\n    return {}\n")
    stack = new_stack()
    handler = HandlerFunction(stack, "Orders", code_path=str(tmp_path), service_name="orders", runtime_layer=False)
    api = SecureRestApi(stack, "OrdersApi")
    method = api.add_route("PUT", "/orders/{id}/items/{item+}", handler, required_headers=["If-Match"])
    assert method.http_method == "PUT"
    (_, props) = only(resources(stack, "AWS::ApiGateway::Method"))
    assert props["Properties"]["RequestParameters"] == {
        "method.request.path.id": True,
        "method.request.path.item": True,
        "method.request.header.If-Match": True,
    }


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (dict(authorization="oauth"), "authorization must be one of iam, cognito, got 'oauth'"),
        (dict(authorization="iam", user_pool=object()), 'user_pool needs authorization="cognito"'),
        (dict(stage_name="v-1"), "stage_name must be 1 to 128 letters, digits or underscores"),
        (dict(throttling_rate_limit=0), "throttling_rate_limit must be between 1 and 10000"),
        (dict(throttling_burst_limit=6000), "throttling_burst_limit must be between 1 and 5000"),
        (dict(web_acl_rate_limit=5), "web_acl_rate_limit must be between 10 and 2e\\+09"),
        (dict(server_errors_alarm_threshold=0), "server_errors_alarm_threshold must be between 1"),
        (dict(latency_alarm_threshold=Duration.minutes(10)), "latency_alarm_threshold must be between 1 and 300000 ms"),
        (dict(api_name="commandes-été"), "api_name must be ASCII"),
    ],
)
def test_fails_on_bad_props(props, message):
    with pytest.raises(ValueError, match=message):
        SecureRestApi(new_stack(), "OrdersApi", **props)


@pytest.mark.parametrize(
    ("method", "path", "extra", "message"),
    [
        ("FETCH", "/orders", {}, "method must be one of"),
        ("GET", "orders", {}, "path must start with '/'"),
        ("GET", "/", {}, "a route needs a path below '/'"),
        ("GET", "/orders/{id", {}, "path segments must be literal"),
        ("GET", "/orders/{rest+}/items", {}, r"a greedy parameter \{name\+\} may only be the last segment"),
        ("GET", "/orders/{id}/items/{id}", {}, "a path parameter is named twice"),
        ("POST", "/orders/", {}, "POST /orders is already routed"),
        ("POST", "/carts", dict(required_headers=["Idempotency Key"]), "required_headers must be HTTP header names"),
        ("POST", "/carts", dict(required_headers=["If-Match", "if-match"]), "required_headers names a header twice"),
        ("POST", "/carts", dict(request_model={"$schema": "https://json-schema.org/draft/2020-12/schema"}), "API Gateway models are JSON Schema draft 4"),
        ("POST", "/carts", dict(request_model=["not", "a", "schema"]), "request_model must be a JSON Schema object"),
    ],
)
def test_add_route_fails_on_what_api_gateway_would_refuse(method, path, extra, message):
    stack, api = _api()
    with pytest.raises(ValueError, match=message):
        api.add_route(method, path, stack.node.find_child("Fn"), **extra)
