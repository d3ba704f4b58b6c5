"""SecureRestApi: an API Gateway REST API in front of Lambda functions, secure and observable by default."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, Names, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from . import acknowledgements as ack
from ._iam import ManagedPolicyRole
from ._interfaces import function_of
from ._naming import per_stack_creation
from ._validation import check_range, check_threshold, require
from .api_gateway_logging import cloud_watch_logging, execution_log_group
from .encryption import KeyUser, allow_service, key_or_new
from .monitoring._alarms import alarm_topic_for, make_alarm
from .profile import Profile

if TYPE_CHECKING:
    from ._interfaces import FunctionLike
    from .event_stream import EventStream

#: How methods are authorized: SigV4-signed requests checked against IAM, or a Cognito user pool's tokens.
AUTHORIZATIONS = ("iam", "cognito")
DEFAULT_STAGE_NAME = "v1"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: The JSON Schema version API Gateway models are written in.
JSON_SCHEMA_DRAFT_4 = "http://json-schema.org/draft-04/schema#"
#: The one action a grant names; what API Gateway checks for IAM-authorized methods.
INVOKE_ACTION = "execute-api:Invoke"
PERIOD = Duration.minutes(5)
#: Consecutive 5-minute periods of high p99 latency that raise the latency alarm.
LATENCY_EVALUATION_PERIODS = 3

#: One access-log line per request, as JSON (``$context`` variables of REST APIs).
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "caller": "$context.identity.caller",
    "user": "$context.identity.user",
    "userArn": "$context.identity.userArn",
    "cognitoSubject": "$context.authorizer.claims.sub",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integration.latency",
    "integrationStatus": "$context.integration.status",
    "integrationError": "$context.integration.error",
    "errorMessage": "$context.error.message",
    "errorResponseType": "$context.error.responseType",
    "authorizerError": "$context.authorizer.error",
    "wafResponseCode": "$context.wafResponseCode",
    "xrayTraceId": "$context.xrayTraceId",
}

#: The body of an AWS integration's error answer: the service's message, never its request.
_ERROR_TEMPLATE = "{\"message\": $input.json('$.message')}"

_SEGMENT = re.compile(r"^(?:[A-Za-z0-9._~-]+|\{[A-Za-z0-9._-]+\+?\})$")
_PARAMETER = re.compile(r"^\{([A-Za-z0-9._-]+)\+?\}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class SecureRestApi(Construct):
    """A regional API Gateway REST API whose routes are Lambda proxy integrations.

    - one stage (``v1``) with X-Ray tracing, detailed CloudWatch metrics and
      method throttling (50 requests per second, bursts of 100) on every method;
    - access logs, one JSON line per request (request id, caller, Cognito
      subject, status, latency, integration latency and status, error message
      and type, WAF response code, X-Ray trace id), to a log group encrypted
      with ``encryption_key`` and kept for the profile's retention;
    - every method authorized, with IAM (SigV4) or a Cognito user pool (see
      ``authorization``); every route validated by one request validator
      (body and parameters): its path parameters, required headers and, when
      given, a JSON Schema model of its body (:meth:`add_route`);
    - in production, a WAFv2 web ACL on the stage: the AWS managed rule groups
      ``AWSManagedRulesCommonRuleSet`` and ``AWSManagedRulesKnownBadInputsRuleSet``
      and a per-IP rate limit, with CloudWatch metrics and sampled requests,
      logging to an encrypted log group (``aws-waf-logs-...``) without the
      ``Authorization`` header;
    - alarms on server errors (``5XXError``) and on p99 latency of the stage.

    Access logs, and execution logs (API Gateway's own log of each request's
    processing, at ``ERROR`` with data tracing off, where the profile says so:
    production), need the account's API Gateway CloudWatch Logs role, one
    setting per account and region: without it a stage fails to deploy with
    "CloudWatch Logs role ARN must be set in account settings to enable
    logging". The stack sets it (``api_gateway_logging.cloud_watch_logging``:
    a role with the log actions in a customer-managed policy), and keeps the
    setting and the role when it is deleted, since every other API of the
    account writes its logs with them. The construct makes the execution log
    group itself (``API-Gateway-Execution-Logs_<api id>/<stage>``), encrypted,
    with the profile's retention and removal, before the stage, so API Gateway
    never makes one without either. The sandbox leaves execution logging off
    (the access log carries each error's message and type) and acknowledges it.

    Authorization ``"cognito"`` without ``user_pool`` makes a user pool:
    administrators create users (no self sign-up), sign-in with email, password
    of 12 characters or more with all four character classes, MFA required
    (TOTP, no SMS), account recovery by email; in production on the Plus
    feature plan with threat protection enforced, deletion protection and
    retained on delete; in the sandbox on the Essentials plan and deleted with
    the stack. Add an app client with ``user_pool.add_client(...)``.

    No cache: responses (order status...) must never be served stale, so the
    stage has no cache cluster, and API Gateway needs no client certificate to
    invoke Lambda (it signs the call with SigV4); both compliance rules are
    acknowledged with these reasons.

    :param authorization: ``"iam"`` (``AWS_IAM`` on every method; callers sign
        requests, see :meth:`grant_invoke`) or ``"cognito"`` (a Cognito user
        pool authorizer; callers send an ID token in ``Authorization``).
        Default: the profile's (sandbox ``iam``, production ``cognito``).
    :param user_pool: the pool whose tokens the Cognito authorizer accepts.
        Only with ``"cognito"``. Default: a new pool, as described above.
    :param api_name: the REST API's name, also the ``ApiName`` dimension of its
        metrics. Default: a name from the construct path.
    :param description: Default: none.
    :param stage_name: Default: ``v1``.
    :param throttling_rate_limit: steady requests per second per method (stage
        method throttling). Default: 50.
    :param throttling_burst_limit: burst per method. Default: 100.
    :param execution_logging: execution logs at ``ERROR`` level, data tracing
        off (needs the account's CloudWatch Logs role, see above). Default: the
        profile's (sandbox off, production on). Turned off in production, the
        compliance packs report it and it is yours to acknowledge.
    :param web_acl: a WAFv2 web ACL on the stage. It costs about $5 a month,
        $1 a month per rule (three) and $0.60 per million requests; on first
        delivery WAF adds the log group to the account's ``AWSWAF-LOGS`` log
        resource policy. Default: the profile's (sandbox no, production yes).
        Turned off in production, the packs report it.
    :param web_acl_rate_limit: requests per client IP in 5 minutes above which
        the web ACL blocks that IP (10 to 2,000,000,000). Default: 1,000.
    :param encryption_key: encrypts the access, execution and WAF log groups.
        Default: a new key with rotation.
    :param server_errors_alarm_threshold: ``5XXError`` responses (sum over 5
        minutes) that raise the alarm. Default: 1 (any).
    :param latency_alarm_threshold: p99 ``Latency`` of the stage that raises
        the alarm when it lasts three 5-minute periods in a row (a single slow
        cold start does not). Default: 1 second.
    :param alarm_topic: where alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: decides authorization, execution logging, the web ACL, the
        user pool's plan, log retention and removal. Default: from context.

    Attributes: ``api`` (the ``apigateway.RestApi``), ``api_name``, ``stage``, ``stage_name``, ``url``,
    ``log_group`` (access logs), ``execution_log_group`` (or None), ``web_acl``
    (a ``wafv2.CfnWebACL``, or None), ``web_acl_log_group`` (or None),
    ``user_pool`` (or None), ``authorizer`` (or None), ``request_validator``,
    ``authorization``, ``key``, ``alarms``, ``routes`` (method and path to
    ``apigateway.Method``).
    """

    monitoring_label = "api"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        authorization: str | None = None,
        user_pool: cognito.IUserPool | None = None,
        api_name: str | None = None,
        description: str | None = None,
        stage_name: str = DEFAULT_STAGE_NAME,
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        execution_logging: bool | None = None,
        web_acl: bool | None = None,
        web_acl_rate_limit: int = 1000,
        encryption_key: kms.IKey | None = None,
        server_errors_alarm_threshold: int = 1,
        latency_alarm_threshold: Duration | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        self.authorization = authorization or self.profile.pick(sandbox="iam", production="cognito")
        require(self.authorization in AUTHORIZATIONS, f"authorization must be one of {', '.join(AUTHORIZATIONS)}, got {self.authorization!r}")
        require(user_pool is None or self.authorization == "cognito", 'user_pool needs authorization="cognito"')
        require(bool(re.fullmatch(r"[A-Za-z0-9_]{1,128}", stage_name)), f"stage_name must be 1 to 128 letters, digits or underscores, got {stage_name!r}")
        check_range("throttling_rate_limit", throttling_rate_limit, 1, 10000, "requests/s")
        check_range("throttling_burst_limit", throttling_burst_limit, 1, 5000, "requests")
        check_range("web_acl_rate_limit", web_acl_rate_limit, 10, 2_000_000_000, "requests")
        check_threshold("server_errors_alarm_threshold", server_errors_alarm_threshold, 1)
        latency_alarm_threshold = latency_alarm_threshold or Duration.seconds(1)
        check_range("latency_alarm_threshold", latency_alarm_threshold.to_milliseconds(), 1, 300_000, "ms")
        if execution_logging is None:
            execution_logging = self.profile.pick(sandbox=False, production=True)
        if web_acl is None:
            web_acl = self.profile.pick(sandbox=False, production=True)
        sandbox = self.profile.name == "sandbox"

        self.api_name = api_name or Names.unique_resource_name(self, max_length=128, separator="-")
        require(self.api_name.isascii(), f"api_name must be ASCII (API Gateway drops other characters from the ApiName of its metrics), got {self.api_name!r}")
        self.stage_name = stage_name
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.LOGS)
        self.log_group = logs.LogGroup(
            self, "AccessLogs", encryption_key=self.key, retention=self.profile.log_retention, removal_policy=self.profile.removal_policy
        )
        self.api = apigateway.RestApi(
            self,
            "Resource",
            rest_api_name=self.api_name,
            description=description,
            endpoint_configuration=apigateway.EndpointConfiguration(types=[apigateway.EndpointType.REGIONAL]),
            cloud_watch_role=False,
            deploy=True,
            deploy_options=apigateway.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigateway.LogGroupLogDestination(self.log_group),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))),
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.ERROR if execution_logging else apigateway.MethodLoggingLevel.OFF,
                data_trace_enabled=False,
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
            ),
        )
        self.stage: apigateway.Stage = self.api.deployment_stage
        stage_resource = self.stage.node.default_child
        # Access (and execution) logs need the account's API Gateway CloudWatch Logs role.
        stage_resource.node.add_dependency(cloud_watch_logging(self))
        self.request_validator = self.api.add_request_validator("RequestValidator", validate_request_body=True, validate_request_parameters=True)
        self.routes: dict[tuple[str, str], apigateway.Method] = {}

        self.execution_log_group: logs.LogGroup | None = None
        if execution_logging:
            self.execution_log_group = execution_log_group(
                self, self.stage, f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{stage_name}", self.key, self.profile
            )
        elif sandbox:
            ack.aws_solutions_apig6(stage_resource)

        self.user_pool: cognito.IUserPool | None = None
        self.authorizer: apigateway.CognitoUserPoolsAuthorizer | None = None
        if self.authorization == "cognito":
            self.user_pool = user_pool or self._new_user_pool()
            self.authorizer = apigateway.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[self.user_pool])
        else:
            ack.aws_solutions_cog4(self.api)

        self.web_acl: wafv2.CfnWebACL | None = None
        self.web_acl_log_group: logs.LogGroup | None = None
        if web_acl:
            self._protect_with_web_acl(web_acl_rate_limit)
        elif sandbox:
            ack.aws_solutions_apig3(stage_resource)
        ack.apigw_cache_enabled_and_encrypted(stage_resource)

        self.alarms: list[cloudwatch.Alarm] = [
            make_alarm(
                self,
                "ServerErrorsAlarm",
                metric=server_errors(self.api_name, stage_name),
                threshold=server_errors_alarm_threshold,
                alarm_topic=alarm_topic,
                description=f"API {self.node.path} (stage {stage_name}) answered with 5XX errors: see its access log and the X-Ray traces.",
            ),
            make_alarm(
                self,
                "LatencyAlarm",
                metric=latency(self.api_name, stage_name),
                threshold=latency_alarm_threshold.to_milliseconds(),
                evaluation_periods=LATENCY_EVALUATION_PERIODS,
                alarm_topic=alarm_topic,
                description=(
                    f"API {self.node.path} (stage {stage_name}): p99 latency at or above {latency_alarm_threshold.to_milliseconds():g} ms "
                    f"for {LATENCY_EVALUATION_PERIODS * 5} minutes; compare with its integration latency."
                ),
            ),
        ]

    @property
    def url(self) -> str:
        """The stage's URL, ``https://<api id>.execute-api.<region>.<suffix>/<stage>/``."""
        return self.api.url

    # --- routes ----------------------------------------------------------------

    def add_route(
        self,
        method: str,
        path: str,
        handler: FunctionLike,
        *,
        request_model: Mapping | None = None,
        required_headers: Sequence[str] = (),
    ) -> apigateway.Method:
        """Route ``method`` on ``path`` (``/orders/{id}/cancel``) to ``handler`` (a :class:`HandlerFunction` or any
        ``lambda_.IFunction``) as a Lambda proxy integration, authorized and validated.

        Every path parameter (``{id}``, ``{proxy+}``) and every header named in
        ``required_headers`` (``Idempotency-Key``) is a required request
        parameter; with ``request_model`` (a JSON Schema draft-4 object) the
        ``application/json`` body must match it. API Gateway answers 400 to a
        request that fails validation, without invoking the function. The
        function may be invoked by this API for this method and path only.

        Returns the ``apigateway.Method``.
        """
        integration = apigateway.LambdaIntegration(function_of(handler), proxy=True, allow_test_invoke=False)
        return self._route(method, path, integration, request_model=request_model, required_headers=required_headers)

    def add_stream_route(
        self,
        method: str,
        path: str,
        stream: EventStream,
        *,
        request_model: Mapping,
        records_field: str = "events",
        partition_key_field: str = "user_id",
    ) -> apigateway.Method:
        """Route ``method`` on ``path`` straight to Kinesis ``PutRecords`` on ``stream``: no function in the path.

        The body is ``{"<records_field>": [record, ...]}`` (1 to 500 records, as
        ``request_model``, a draft-4 schema of the body, says; API Gateway refuses
        anything else with 400 before Kinesis sees it). Each record becomes one
        stream record: its JSON as the data, its ``partition_key_field`` as the
        partition key (the model must require it: Kinesis refuses an empty key).
        PutRecords is not atomic: the answer is 200 when every record was
        stored, 207 when some were not, with ``failed`` (how many) and
        ``results`` (per record, in order: ``SequenceNumber`` and ``ShardId``,
        or ``ErrorCode`` and ``ErrorMessage``), so the client resends exactly
        the records that failed. A Kinesis error is answered 400 (the request)
        or 500 (Kinesis; the server-errors alarm). API Gateway calls Kinesis
        with a role that may put records on this stream only.
        """
        require(bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", records_field)), f"records_field must be a JSON field name, got {records_field!r}")
        require(
            bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", partition_key_field)), f"partition_key_field must be a JSON field name, got {partition_key_field!r}"
        )
        role = ManagedPolicyRole(
            self,
            f"{_route_id(method.upper(), _normalize_path(path))}Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description=f"API {self.node.path} puts records on its stream",
        )
        stream.grant_write(role)
        request = (
            f"#set($records = $input.path('$.{records_field}'))\n"
            f'{{"StreamName": "{stream.stream_name}", "Records": [\n'
            f"#foreach($record in $records)\n"
            f'{{"Data": "$util.base64Encode($input.json("$.{records_field}[$foreach.index]"))", '
            f'"PartitionKey": "$util.escapeJavaScript($record.{partition_key_field})"}}#if($foreach.hasNext),#end\n'
            "#end\n"
            "]}"
        )
        response = (
            "#if($input.path('$.FailedRecordCount') > 0)#set($context.responseOverride.status = 207)#end\n"
            "{\"failed\": $input.json('$.FailedRecordCount'), \"results\": $input.json('$.Records')}"
        )
        integration = apigateway.AwsIntegration(
            service="kinesis",
            action="PutRecords",
            integration_http_method="POST",
            options=apigateway.IntegrationOptions(
                credentials_role=role,
                passthrough_behavior=apigateway.PassthroughBehavior.NEVER,
                request_parameters={"integration.request.header.Content-Type": "'application/x-amz-json-1.1'"},
                request_templates={"application/json": request},
                integration_responses=[
                    apigateway.IntegrationResponse(status_code="200", response_templates={"application/json": response}),
                    apigateway.IntegrationResponse(status_code="400", selection_pattern="4\\d{2}", response_templates={"application/json": _ERROR_TEMPLATE}),
                    apigateway.IntegrationResponse(status_code="500", selection_pattern="5\\d{2}", response_templates={"application/json": _ERROR_TEMPLATE}),
                ],
            ),
        )
        responses = [apigateway.MethodResponse(status_code=code) for code in ("200", "207", "400", "500")]
        return self._route(method, path, integration, request_model=request_model, method_responses=responses)

    def _route(
        self,
        method: str,
        path: str,
        integration: apigateway.Integration,
        *,
        request_model: Mapping | None = None,
        required_headers: Sequence[str] = (),
        method_responses: Sequence[apigateway.MethodResponse] | None = None,
    ) -> apigateway.Method:
        verb = method.upper()
        require(verb in HTTP_METHODS, f"method must be one of {', '.join(sorted(HTTP_METHODS))}, got {method!r}")
        path = _normalize_path(path)
        require((verb, path) not in self.routes, f"{verb} {path} is already routed")
        headers = list(required_headers)
        bad = [h for h in headers if not _HEADER.fullmatch(h)]
        require(not bad, f"required_headers must be HTTP header names, got {', '.join(map(repr, bad))}")
        require(len({h.lower() for h in headers}) == len(headers), "required_headers names a header twice")
        parameters = {f"method.request.path.{name}": True for name in path_parameters(path)}
        parameters.update({f"method.request.header.{header}": True for header in headers})
        models = {"application/json": self._model(verb, path, request_model)} if request_model is not None else None
        authorization = (
            dict(authorization_type=apigateway.AuthorizationType.COGNITO, authorizer=self.authorizer)
            if self.authorization == "cognito"
            else dict(authorization_type=apigateway.AuthorizationType.IAM)
        )
        resource = self.api.root.resource_for_path(path)
        created = resource.add_method(
            verb,
            integration,
            request_validator=self.request_validator,
            request_parameters=parameters or None,
            request_models=models,
            method_responses=list(method_responses) if method_responses else None,
            **authorization,
        )
        self.routes[(verb, path)] = created
        return created

    def _model(self, verb: str, path: str, schema: Mapping) -> apigateway.IModel:
        require(isinstance(schema, Mapping), f"request_model must be a JSON Schema object (a mapping), got {type(schema).__name__}")
        declared = schema.get("$schema", JSON_SCHEMA_DRAFT_4)
        require(
            declared.rstrip("#") == JSON_SCHEMA_DRAFT_4.rstrip("#"), f"API Gateway models are JSON Schema draft 4 ({JSON_SCHEMA_DRAFT_4}), got {declared!r}"
        )
        body = {"$schema": JSON_SCHEMA_DRAFT_4, **{k: v for k, v in schema.items() if k != "$schema"}}
        construct_id = f"{_route_id(verb, path)}Model"
        model = apigateway.CfnModel(self.api, construct_id, rest_api_id=self.api.rest_api_id, content_type="application/json", schema=body)
        # A deployment is a snapshot of the API, models included: a changed schema must make a new one.
        deployment = self.api.latest_deployment
        if deployment is not None:
            deployment.node.add_dependency(model)
            deployment.add_to_logical_id({"model": {"route": f"{verb} {path}", "schema": body}})
        return apigateway.Model.from_model_name(self.api, f"{construct_id}Ref", model.ref)

    # --- grants ----------------------------------------------------------------

    def grant_invoke(self, grantee: iam.IGrantable, method: str, path: str) -> iam.Grant:
        """``execute-api:Invoke`` on exactly one route of the stage, for an API with IAM authorization.

        The resource is the route's ARN, ``arn:<partition>:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>``,
        with each path parameter as ``*`` (it stands for one request path segment's value, which IAM
        matches in the ARN); the route must have been added with :meth:`add_route`.
        """
        require(self.authorization == "iam", 'grant_invoke needs authorization="iam": Cognito-authorized methods do not check IAM permissions')
        verb = method.upper()
        path = _normalize_path(path)
        require((verb, path) in self.routes, f"no route {verb} {path}: add it with add_route first")
        arn_path = "/" + "/".join("*" if _PARAMETER.fullmatch(segment) else segment for segment in path.strip("/").split("/"))
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=[INVOKE_ACTION], resource_arns=[self.api.arn_for_execute_api(verb, arn_path, self.stage_name)]
        )

    # --- monitoring ------------------------------------------------------------

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """``metric_name`` (``AWS/ApiGateway``) of the stage: dimensions ``ApiName`` and ``Stage``. Default: over 5 minutes."""
        return stage_metric(self.api_name, self.stage_name, metric_name, **options)

    def metric_server_errors(self, **options) -> cloudwatch.Metric:
        """``5XXError`` of the stage. Default: sum over 5 minutes."""
        return server_errors(self.api_name, self.stage_name, **options)

    def metric_latency(self, **options) -> cloudwatch.Metric:
        """``Latency`` of the stage. Default: p99 over 5 minutes."""
        return latency(self.api_name, self.stage_name, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """Widgets for a dashboard section: requests and errors, latency (see :meth:`MonitoringDashboard.monitor`)."""
        return widgets(title, self.api_name, self.stage_name)

    # --- parts -------------------------------------------------------------------

    def _new_user_pool(self) -> cognito.UserPool:
        production = self.profile.pick(sandbox=False, production=True)
        pool = cognito.UserPool(
            self,
            "UserPool",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            feature_plan=cognito.FeaturePlan.PLUS if production else cognito.FeaturePlan.ESSENTIALS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION if production else None,
            deletion_protection=self.profile.deletion_protection,
            removal_policy=self.profile.removal_policy,
        )
        if not production:
            ack.aws_solutions_cog8(pool)
        return pool

    def _protect_with_web_acl(self, rate_limit: int) -> None:
        stack = Stack.of(self)
        metric_prefix = Names.unique_resource_name(self, max_length=200, separator="-")

        def visibility(suffix: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, sampled_requests_enabled=True, metric_name=f"{metric_prefix}-{suffix}"
            )

        def managed(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(vendor_name="AWS", name=name)
                ),
                visibility_config=visibility(name),
            )

        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            description=f"Protects the {self.stage_name} stage of {self.node.path}",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("web-acl"),
            rules=[
                managed("AWSManagedRulesCommonRuleSet", 0),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 1),
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=2,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(aggregate_key_type="IP", limit=rate_limit, evaluation_window_sec=300)
                    ),
                    visibility_config=visibility("RateLimitPerIp"),
                ),
            ],
        )
        # The stage's ARN names the stage by its Ref, so the association waits for the stage.
        wafv2.CfnWebACLAssociation(self, "WebAclAssociation", resource_arn=self.stage.stage_arn, web_acl_arn=self.web_acl.attr_arn)
        # WAF delivers to CloudWatch Logs only into groups whose names start with aws-waf-logs-.
        self.web_acl_log_group = logs.LogGroup(
            self,
            "WebAclLogs",
            log_group_name=f"aws-waf-logs-{per_stack_creation(self, max_length=200)}",
            encryption_key=self.key,
            retention=self.profile.log_retention,
            removal_policy=self.profile.removal_policy,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WebAclLogging",
            resource_arn=self.web_acl.attr_arn,
            # The log group's ARN without the ":*" that its Arn attribute ends with, as WAF requires.
            log_destination_configs=[
                stack.format_arn(
                    service="logs", resource="log-group", resource_name=self.web_acl_log_group.log_group_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
                )
            ],
            redacted_fields=[wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "authorization"})],
        )


# --- paths -------------------------------------------------------------------------


def _normalize_path(path: str) -> str:
    """``orders/{id}/`` -> ``/orders/{id}``; raises ``ValueError`` for a path API Gateway would refuse."""
    require(isinstance(path, str) and path.startswith("/"), f"path must start with '/', got {path!r}")
    segments = path.strip("/").split("/") if path.strip("/") else []
    require(bool(segments), "a route needs a path below '/'")
    bad = [s for s in segments if not _SEGMENT.fullmatch(s)]
    require(not bad, f"path segments must be literal (letters, digits, . _ ~ -) or {{parameter}}, got {', '.join(map(repr, bad))} in {path!r}")
    greedy = [i for i, s in enumerate(segments) if s.endswith("+}")]
    require(not greedy or greedy == [len(segments) - 1], f"a greedy parameter {{name+}} may only be the last segment, in {path!r}")
    names = path_parameters("/" + "/".join(segments))
    require(len(set(names)) == len(names), f"a path parameter is named twice in {path!r}")
    return "/" + "/".join(segments)


def path_parameters(path: str) -> list[str]:
    """The names of the path parameters of ``path``: ``/orders/{id}/items/{item+}`` -> ``["id", "item"]``."""
    return [m.group(1) for m in (_PARAMETER.fullmatch(s) for s in path.strip("/").split("/")) if m]


def _route_id(verb: str, path: str) -> str:
    """``POST /orders/{id}/cancel`` -> ``PostOrdersIdCancel``: a construct id for what one route adds."""
    words = re.findall(r"[A-Za-z0-9]+", path)
    return verb.capitalize() + "".join(w[:1].upper() + w[1:] for w in words)


# --- metrics ---------------------------------------------------------------------------
# AWS/ApiGateway publishes REST API metrics per ApiName, and per ApiName and Stage (and per method with detailed
# metrics); ApiName is the API's name with non-ASCII characters removed. The dimensions here are literal names.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html

NAMESPACE = "AWS/ApiGateway"


def stage_metric(api_name: str, stage_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """``metric_name`` of one stage (dimensions ``ApiName`` and ``Stage``), over 5 minutes unless ``options`` say otherwise."""
    return cloudwatch.Metric(
        namespace=NAMESPACE, metric_name=metric_name, dimensions_map={"ApiName": api_name, "Stage": stage_name}, **{"period": PERIOD, **options}
    )


def server_errors(api_name: str, stage_name: str, **options) -> cloudwatch.Metric:
    """``5XXError``, sum over 5 minutes unless ``options`` say otherwise."""
    return stage_metric(api_name, stage_name, "5XXError", **{"statistic": "Sum", **options})


def client_errors(api_name: str, stage_name: str, **options) -> cloudwatch.Metric:
    """``4XXError``, sum over 5 minutes unless ``options`` say otherwise."""
    return stage_metric(api_name, stage_name, "4XXError", **{"statistic": "Sum", **options})


def requests(api_name: str, stage_name: str, **options) -> cloudwatch.Metric:
    """``Count`` (read with ``SampleCount``, as AWS documents it), over 5 minutes unless ``options`` say otherwise."""
    return stage_metric(api_name, stage_name, "Count", **{"statistic": "SampleCount", **options})


def latency(api_name: str, stage_name: str, **options) -> cloudwatch.Metric:
    """``Latency`` in milliseconds, p99 over 5 minutes unless ``options`` say otherwise."""
    return stage_metric(api_name, stage_name, "Latency", **{"statistic": "p99", **options})


def integration_latency(api_name: str, stage_name: str, **options) -> cloudwatch.Metric:
    """``IntegrationLatency`` in milliseconds, p99 over 5 minutes unless ``options`` say otherwise."""
    return stage_metric(api_name, stage_name, "IntegrationLatency", **{"statistic": "p99", **options})


def widgets(title: str, api_name: str, stage_name: str) -> list[cloudwatch.IWidget]:
    return [
        cloudwatch.GraphWidget(
            title=f"{title}: requests, 4XX, 5XX",
            left=[
                requests(api_name, stage_name, label="requests"),
                client_errors(api_name, stage_name, label="4XX"),
                server_errors(api_name, stage_name, label="5XX"),
            ],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: latency p99 (ms)",
            left=[latency(api_name, stage_name, label="latency"), integration_latency(api_name, stage_name, label="integration latency")],
            width=12,
        ),
    ]
