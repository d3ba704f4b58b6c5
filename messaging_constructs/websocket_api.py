"""PushWebSocketApi: an API Gateway WebSocket API that pushes messages to the subscribers of one subject (an order...)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, Names, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import acknowledgements as ack
from ._interfaces import function_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .api_gateway_logging import cloud_watch_logging, execution_log_group
from .encryption import KeyUser, allow_service, key_or_new
from .monitoring._alarms import alarm_topic_for, make_alarm
from .profile import Profile
from .state_table import StateTable

if TYPE_CHECKING:
    from ._interfaces import FunctionLike

DEFAULT_STAGE_NAME = "v1"
#: The action that lets a backend post to, read and close the connections of a stage (the management API).
MANAGE_CONNECTIONS_ACTION = "execute-api:ManageConnections"
#: API Gateway closes every WebSocket connection after 2 hours, so a connection item need not live longer.
MAX_CONNECTION_DURATION = Duration.hours(2)
PERIOD = Duration.minutes(5)
#: The connections table's sort key and TTL attribute.
CONNECTION_ID_ATTRIBUTE = "connection_id"
EXPIRES_AT_ATTRIBUTE = "expires_at"

#: One access-log line per connect, message and disconnect, as JSON (``$context`` variables of WebSocket APIs). The
#: query string, which carries the token, is not among them.
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "eventType": "$context.eventType",
    "connectionId": "$context.connectionId",
    "messageId": "$context.messageId",
    "status": "$context.status",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "principalId": "$context.authorizer.principalId",
    "authorizerStatus": "$context.authorizer.status",
    "authorizerError": "$context.authorizer.error",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "errorMessage": "$context.error.message",
    "errorResponseType": "$context.error.responseType",
}

_QUERY_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class PushWebSocketApi(Construct):
    """A WebSocket API whose clients subscribe to one subject each (an order's status) and receive what a backend pushes.

    A client connects to ``wss://<api id>.execute-api.<region>.<suffix>/<stage>?<subscription_key>=<id>&token=<token>``.
    One function, ``handler``, is the REQUEST authorizer of ``$connect`` (identity sources: those two query string
    parameters, so API Gateway refuses a connection without them, 401, before calling it) and the integration of
    ``$connect``, ``$disconnect`` and ``$default`` (Lambda proxy); ``$default`` returns the function's answer to the
    client. ``lambdas/status_connections`` is such a function for order status. The construct:

    - makes the connections table (a :class:`StateTable`: partition key ``subscription_key``, sort key
      ``connection_id``, TTL attribute ``expires_at``), encrypted with ``encryption_key``;
    - makes the token key: a KMS ``HMAC_256`` key for ``GENERATE_VERIFY_MAC``, kept and removed as the profile says.
      KMS offers no automatic rotation for HMAC keys; replacing the key revokes every token;
    - lets ``handler`` put and delete connection items and verify tokens (``kms:VerifyMac``), and sets its
      environment: ``CONNECTIONS_TABLE_NAME``, ``STATUS_TOKEN_KEY_ID`` (the key's ARN) and ``CONNECTION_TTL_SECONDS``;
    - deploys one stage (``v1``, auto deploy) with default route throttling (50 messages per second, bursts of 100)
      and access logs, one JSON line per connect, message and disconnect (route, connection id, status, principal,
      authorizer and integration status and error, source IP; never the query string), to a log group encrypted
      with ``encryption_key`` and kept for the profile's retention;
    - alarms on ``ExecutionError`` (API Gateway could not call the function) and ``IntegrationError`` (the function
      failed or answered 4XX/5XX) of the stage, any in 5 minutes. Connections the authorizer denies count as
      ``ClientError``, on the dashboard but not alarmed: anyone can try a wrong token.

    Backends push with the stage's management API (``callback_url``): :meth:`grant_push` lets one post to the
    stage's connections and read and delete connection items; :meth:`grant_issue_tokens` lets one make tokens
    (``kms:GenerateMac``), e.g. the API that creates the subject.

    Execution logging (``ERROR``, no data tracing) is on where the profile says so (production); like access logging
    it needs the account's API Gateway CloudWatch Logs role (see :class:`SecureRestApi`). The construct makes the
    execution log group (``/aws/apigateway/<api id>/<stage>``), encrypted, before the stage. WebSocket APIs offer no
    X-Ray tracing, cache, client certificate or AWS WAF (no compliance rule asks for them on a WebSocket stage), and
    authorize on ``$connect`` only: ``AwsSolutions-APIG4`` on ``$disconnect`` and ``$default`` is acknowledged.

    Pushers must reach the public management endpoint: API Gateway does not serve a WebSocket API through an
    ``execute-api`` VPC endpoint, so a pusher in an isolated network (no NAT) cannot post. Run it outside the
    network and record why with :func:`messaging_constructs.acknowledgements.lambda_inside_vpc_websocket_pusher`. Functions in the network that make or check
    tokens need the network's KMS interface endpoint.

    :param handler: the authorizer and the integration of every route (a :class:`HandlerFunction` or a
        ``lambda_.Function`` of this app, whose environment can be set). Required.
    :param subscription_key: the query string parameter naming what a client subscribes to, also the connections
        table's partition key and the key of the authorizer's context the handler puts it in. Default: ``order_id``.
    :param api_name: the API's name. Default: a name from the construct path.
    :param description: Default: none.
    :param stage_name: Default: ``v1``.
    :param throttling_rate_limit: steady messages per second (connects included) of the stage's routes. Default: 50.
    :param throttling_burst_limit: burst of the stage's routes. Default: 100.
    :param connection_ttl: how long a connection item lives unless ``$disconnect`` deletes it first (1 minute to
        2 hours, API Gateway's longest connection). Default: 2 hours.
    :param execution_logging: execution logs at ``ERROR``. Default: the profile's (sandbox off, production on).
    :param encryption_key: encrypts the connections table and the log groups. Default: a new key with rotation.
    :param execution_errors_alarm_threshold: ``ExecutionError`` (sum over 5 minutes) that raises the alarm. Default: 1.
    :param integration_errors_alarm_threshold: ``IntegrationError`` (sum over 5 minutes) that raises the alarm. Default: 1.
    :param alarm_topic: where alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: decides execution logging, retention and removal. Default: from context.

    Attributes: ``api`` (the ``apigwv2.WebSocketApi``), ``api_name``, ``stage``, ``stage_name``, ``url`` (``wss://``),
    ``callback_url`` (``https://``, the management API's endpoint), ``connections`` (the :class:`StateTable`),
    ``token_key``, ``handler``, ``authorizer``, ``log_group``, ``execution_log_group`` (or None), ``key``, ``alarms``,
    ``connection_ttl``, ``subscription_key``.
    """

    monitoring_label = "WebSocket API"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: FunctionLike,
        subscription_key: str = "order_id",
        api_name: str | None = None,
        description: str | None = None,
        stage_name: str = DEFAULT_STAGE_NAME,
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        connection_ttl: Duration | None = None,
        execution_logging: bool | None = None,
        encryption_key: kms.IKey | None = None,
        execution_errors_alarm_threshold: int = 1,
        integration_errors_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        function = function_of(handler)
        require(hasattr(function, "add_environment"), "handler must be a HandlerFunction or a lambda_.Function of this app: its environment is set here")
        require(
            bool(_QUERY_PARAMETER.fullmatch(subscription_key)),
            f"subscription_key must be a letter or _ then up to 63 letters, digits or _, got {subscription_key!r}",
        )
        require(subscription_key not in ("token", CONNECTION_ID_ATTRIBUTE, EXPIRES_AT_ATTRIBUTE), f"subscription_key may not be {subscription_key!r}")
        require(bool(re.fullmatch(r"[A-Za-z0-9_]{1,128}", stage_name)), f"stage_name must be 1 to 128 letters, digits or underscores, got {stage_name!r}")
        check_range("throttling_rate_limit", throttling_rate_limit, 1, 10000, "messages/s")
        check_range("throttling_burst_limit", throttling_burst_limit, 1, 5000, "messages")
        self.connection_ttl = connection_ttl or MAX_CONNECTION_DURATION
        check_duration_range("connection_ttl", self.connection_ttl, Duration.minutes(1), MAX_CONNECTION_DURATION)
        check_threshold("execution_errors_alarm_threshold", execution_errors_alarm_threshold, 1)
        check_threshold("integration_errors_alarm_threshold", integration_errors_alarm_threshold, 1)
        if execution_logging is None:
            execution_logging = self.profile.pick(sandbox=False, production=True)

        self.subscription_key, self.stage_name, self.handler = subscription_key, stage_name, handler
        self.api_name = api_name or Names.unique_resource_name(self, max_length=128, separator="-")
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.LOGS)
        common = dict(encryption_key=self.key, alarm_topic=alarm_topic, profile=self.profile)
        self.connections = StateTable(
            self, "Connections", partition_key=subscription_key, sort_key=CONNECTION_ID_ATTRIBUTE, time_to_live_attribute=EXPIRES_AT_ATTRIBUTE, **common
        )
        self.token_key = kms.Key(
            self,
            "TokenKey",
            key_spec=kms.KeySpec.HMAC_256,
            key_usage=kms.KeyUsage.GENERATE_VERIFY_MAC,
            enable_key_rotation=False,
            description=f"Signs and checks the subscription tokens of {self.node.path}",
            pending_window=self.profile.key_pending_window,
            removal_policy=self.profile.removal_policy,
        )
        self.log_group = logs.LogGroup(
            self, "AccessLogs", encryption_key=self.key, retention=self.profile.log_retention, removal_policy=self.profile.removal_policy
        )

        def integration(route: str) -> integrations.WebSocketLambdaIntegration:
            return integrations.WebSocketLambdaIntegration(f"{route}Integration", function)

        self.authorizer = authorizers.WebSocketLambdaAuthorizer(
            "Authorizer",
            function,
            identity_source=[f"route.request.querystring.{subscription_key}", "route.request.querystring.token"],
        )
        self.api = apigwv2.WebSocketApi(
            self,
            "Resource",
            api_name=self.api_name,
            description=description,
            connect_route_options=apigwv2.WebSocketRouteOptions(integration=integration("Connect"), authorizer=self.authorizer),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(integration=integration("Disconnect")),
            default_route_options=apigwv2.WebSocketRouteOptions(integration=integration("Default"), return_response=True),
        )
        self.stage = apigwv2.WebSocketStage(self, "Stage", web_socket_api=self.api, stage_name=stage_name, auto_deploy=True)
        stage_resource: apigwv2.CfnStage = self.stage.node.default_child
        # Access (and execution) logs need the account's API Gateway CloudWatch Logs role.
        stage_resource.node.add_dependency(cloud_watch_logging(self))
        stage_resource.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.log_group.log_group_arn, format=json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))
        )
        stage_resource.default_route_settings = apigwv2.CfnStage.RouteSettingsProperty(
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            logging_level="ERROR" if execution_logging else "OFF",
            data_trace_enabled=False,
            detailed_metrics_enabled=False,
        )
        self.execution_log_group: logs.LogGroup | None = None
        if execution_logging:
            self.execution_log_group = execution_log_group(self, self.stage, f"/aws/apigateway/{self.api.api_id}/{stage_name}", self.key, self.profile)
        ack.aws_solutions_apig4_websocket_routes(self.api)

        function.add_environment("CONNECTIONS_TABLE_NAME", self.connections.table.table_name)
        function.add_environment("STATUS_TOKEN_KEY_ID", self.token_key.key_arn)
        function.add_environment("CONNECTION_TTL_SECONDS", str(int(self.connection_ttl.to_seconds())))
        self.connections.grant_items(handler, "dynamodb:PutItem", "dynamodb:DeleteItem")
        self.token_key.grant(handler, "kms:VerifyMac")

        self.alarms: list[cloudwatch.Alarm] = [
            make_alarm(
                self,
                "ExecutionErrorsAlarm",
                metric=self.metric_execution_errors(),
                threshold=execution_errors_alarm_threshold,
                alarm_topic=alarm_topic,
                description=f"WebSocket API {self.node.path} (stage {stage_name}) could not call its function: see the access log's integrationError.",
            ),
            make_alarm(
                self,
                "IntegrationErrorsAlarm",
                metric=self.metric_integration_errors(),
                threshold=integration_errors_alarm_threshold,
                alarm_topic=alarm_topic,
                description=f"WebSocket API {self.node.path} (stage {stage_name}): its function failed or answered 4XX/5XX; see the function's log.",
            ),
        ]

    @property
    def url(self) -> str:
        """Where clients connect: ``wss://<api id>.execute-api.<region>.<suffix>/<stage>``."""
        return self.stage.url

    @property
    def callback_url(self) -> str:
        """The stage's management API, for ``PostToConnection``: ``https://<api id>.execute-api.<region>.<suffix>/<stage>``."""
        return self.stage.callback_url

    @property
    def connections_arn(self) -> str:
        """``arn:<partition>:execute-api:<region>:<account>:<api id>/<stage>/POST/@connections/*``: posting to any connection of the stage.

        The ``*`` stands for the connection id in the request path, not for actions or other stages.
        """
        return Stack.of(self).format_arn(
            service="execute-api",
            resource=self.api.api_id,
            resource_name=f"{self.stage_name}/POST/@connections/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    # --- grants ----------------------------------------------------------------

    def grant_manage_connections(self, grantee: iam.IGrantable) -> iam.Grant:
        """``execute-api:ManageConnections`` on :attr:`connections_arn` only: posting to the stage's connections, not reading or closing them."""
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=[MANAGE_CONNECTIONS_ACTION], resource_arns=[self.connections_arn])
        ack.aws_solutions_iam5_websocket_connections(grantee, self.connections_arn)
        return grant

    def grant_push(self, grantee: iam.IGrantable) -> iam.Grant:
        """What a pusher needs: :meth:`grant_manage_connections`, and ``dynamodb:Query`` and ``dynamodb:DeleteItem``
        on the connections table (to find a subject's connections and remove the gone ones), with their key actions."""
        return self.grant_manage_connections(grantee).combine(self.connections.grant_items(grantee, "dynamodb:Query", "dynamodb:DeleteItem"))

    def grant_issue_tokens(self, grantee: iam.IGrantable) -> iam.Grant:
        """``kms:GenerateMac`` on the token key: making subscription tokens (``messaging_runtime.status_tokens``)."""
        return self.token_key.grant(grantee, "kms:GenerateMac")

    # --- monitoring ------------------------------------------------------------

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """``metric_name`` (``AWS/ApiGateway``) of the stage: dimensions ``ApiId`` and ``Stage``. Default: sum over 5 minutes."""
        return stage_metric(self.api.api_id, self.stage_name, metric_name, **options)

    def metric_execution_errors(self, **options) -> cloudwatch.Metric:
        """``ExecutionError``: calls of the integration that failed. Default: sum over 5 minutes."""
        return self.metric("ExecutionError", **options)

    def metric_integration_errors(self, **options) -> cloudwatch.Metric:
        """``IntegrationError``: requests the integration answered with 4XX/5XX. Default: sum over 5 minutes."""
        return self.metric("IntegrationError", **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """Widgets for a dashboard section: connects and messages, errors, integration latency."""
        return widgets(title, self.api.api_id, self.stage_name)


# --- metrics ------------------------------------------------------------------------------
# AWS/ApiGateway publishes WebSocket API metrics per ApiId, and per ApiId and Stage (per route only with detailed
# metrics): ConnectCount, MessageCount, IntegrationError, ClientError, ExecutionError, IntegrationLatency.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-logging.html

NAMESPACE = "AWS/ApiGateway"


def stage_metric(api_id: str, stage_name: str, metric_name: str, **options) -> cloudwatch.Metric:
    """``metric_name`` of one WebSocket stage (dimensions ``ApiId`` and ``Stage``), sum over 5 minutes unless ``options`` say otherwise."""
    return cloudwatch.Metric(
        namespace=NAMESPACE, metric_name=metric_name, dimensions_map={"ApiId": api_id, "Stage": stage_name}, **{"period": PERIOD, "statistic": "Sum", **options}
    )


def widgets(title: str, api_id: str, stage_name: str) -> list[cloudwatch.IWidget]:
    def sum_of(name: str, label: str) -> cloudwatch.Metric:
        return stage_metric(api_id, stage_name, name, label=label)

    return [
        cloudwatch.GraphWidget(title=f"{title}: connects and messages", left=[sum_of("ConnectCount", "connects"), sum_of("MessageCount", "messages")], width=8),
        cloudwatch.GraphWidget(
            title=f"{title}: errors",
            left=[sum_of("ClientError", "client"), sum_of("IntegrationError", "integration"), sum_of("ExecutionError", "execution")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title=f"{title}: integration latency p99 (ms)",
            left=[stage_metric(api_id, stage_name, "IntegrationLatency", statistic="p99", label="integration latency")],
            width=8,
        ),
    ]


# --- acknowledgements -----------------------------------------------------------------------
