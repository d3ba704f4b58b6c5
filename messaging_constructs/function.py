"""HandlerFunction: a hardened Python Lambda function for message handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from . import acknowledgements as ack
from ._grants import grant_send_messages
from ._iam import ManagedPolicyRole
from ._validation import check_range, check_threshold, require
from .encryption import KeyUser, allow_service, key_or_new
from .monitoring import lambda_function as lambda_monitoring
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

#: The newest Python runtime that both Lambda and the pinned aws-cdk-lib know.
RUNTIME = lambda_.Runtime.PYTHON_3_14
DEFAULT_TIMEOUT = Duration.seconds(30)
#: The Powertools release whose published layer the functions use.
POWERTOOLS_VERSION = "3.37.0"
#: Lambda's limit of layers per function.
MAX_LAYERS = 5


def powertools_layer_parameter(version: str = POWERTOOLS_VERSION, runtime: lambda_.Runtime = RUNTIME) -> str:
    """The public SSM parameter, published by Powertools in every region, holding the layer ARN."""
    return f"/aws/service/powertools/python/arm64/{runtime.name}/{version}"


@jsii.implements(iam.IGrantable)
class HandlerFunction(Construct):
    """A Python Lambda function with the defaults a message handler needs.

    - runtime ``python3.14`` on ``arm64``; code from ``code_path`` (a folder);
    - Powertools from the layer AWS publishes, its ARN resolved per region at
      deploy time from the public SSM parameter (nothing bundled, no lookup);
    - the handler runtime, ``messaging_runtime``, from the stack's
      :class:`RuntimeLayer` (one per stack, built from source without Docker);
    - its own log group, encrypted with ``encryption_key`` and kept for the
      profile's retention; a role with a customer-managed policy holding only
      its own log and X-Ray permissions plus whatever is granted to it;
    - X-Ray active tracing; Powertools service name and metrics namespace set;
    - asynchronous invocations retried twice then sent to a dead-letter
      queue (a terminal :class:`SecureQueue`, or yours) that alarms on any
      message; the role may send to it (``sqs:SendMessage``, and
      ``kms:GenerateDataKey`` and ``kms:Decrypt`` on its key);
    - alarms on errors and throttles.

    It is an ``iam.IGrantable``; constructs that take a function take it or
    any ``lambda_.IFunction``. To consume a queue, a topic of a Kafka cluster
    or a broker queue, give it to :class:`QueueEventSource`,
    :class:`KafkaEventSource` or :class:`MqEventSource` as ``consumer``.

    :param code_path: folder holding ``handler.py``. Required.
    :param service_name: Powertools service name (``POWERTOOLS_SERVICE_NAME``). Required.
    :param handler: Default: ``handler.lambda_handler``.
    :param metrics_namespace: ``POWERTOOLS_METRICS_NAMESPACE``. Default: ``MessagingBlueprints``.
    :param description: Default: none.
    :param timeout: Default: 30 seconds.
    :param memory_size: MiB (128 to 10,240). Default: 256.
    :param reserved_concurrent_executions: Default: the profile's (sandbox:
        none; production: 10).
    :param environment: extra environment variables. Default: none.
    :param encryption_key: encrypts the log group, the environment and the
        asynchronous DLQ. Default: a new key with rotation.
    :param dead_letter_queue: where failed asynchronous invocations go, used as it
        is. Default: a new terminal ``SecureQueue`` encrypted with ``encryption_key``.
    :param network: run in this network's private subnets, with a security
        group that may reach only HTTPS (the VPC endpoints). Default: none
        (outside a VPC); give one for the production profile.
    :param powertools_version: Default: ``3.37.0``.
    :param runtime_layer: attach the stack's :class:`RuntimeLayer` (``messaging_runtime``),
        after Powertools and before ``layers``. Default: True.
    :param layers: further layers (client libraries...), after Powertools and the
        runtime layer; Lambda allows 5 layers in all. Default: none.
    :param errors_alarm_threshold: ``Errors`` in 5 minutes that raise the alarm. Default: 1 (any).
    :param throttles_alarm_threshold: ``Throttles`` in 5 minutes that raise the alarm. Default: 1 (any).
    :param alarm_topic: where alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: decides log retention, removal and reserved concurrency. Default: from context.

    Attributes: ``function``, ``role``, ``key``, ``log_group``, ``dead_letter_queue`` (an ``sqs.IQueue``),
    ``security_group`` (or None), ``timeout``, ``alarms``.
    """

    monitoring_label = "function"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code_path: str,
        service_name: str,
        handler: str = "handler.lambda_handler",
        metrics_namespace: str = "MessagingBlueprints",
        description: str | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
        memory_size: int = 256,
        reserved_concurrent_executions: int | None = None,
        environment: Mapping[str, str] | None = None,
        encryption_key: kms.IKey | None = None,
        network: PrivateNetwork | None = None,
        powertools_version: str = POWERTOOLS_VERSION,
        runtime_layer: bool = True,
        layers: Sequence[lambda_.ILayerVersion] = (),
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        errors_alarm_threshold: int = 1,
        throttles_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_threshold("errors_alarm_threshold", errors_alarm_threshold, 1)
        check_threshold("throttles_alarm_threshold", throttles_alarm_threshold, 1)
        defaults = "Powertools and the runtime layer" if runtime_layer else "Powertools"
        room = MAX_LAYERS - (2 if runtime_layer else 1)
        require(
            len(layers) <= room,
            f"a function may have at most {MAX_LAYERS} layers: {defaults} leave room for {room} in layers, got {len(layers)}",
        )
        check_range("memory_size", memory_size, 128, 10240, "MiB")
        check_range("timeout", timeout.to_seconds(), 1, 900, "s")
        if reserved_concurrent_executions is None:
            reserved_concurrent_executions = self.profile.reserved_concurrency
        check_range("reserved_concurrent_executions", reserved_concurrent_executions, 0, 10000)
        self._alarm_topic = alarm_topic
        self.service_name, self.metrics_namespace = service_name, metrics_namespace
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.LOGS)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            encryption_key=self.key,
            retention=self.profile.log_retention,
            removal_policy=self.profile.removal_policy,
        )
        self.role = ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs the {service_name} function",
        )
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn]))
        # Function dead-letter queues are DLQs to AwsSolutions-SQS3: no acknowledgement (role=None).
        self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
            self, "AsyncDeadLetterQueue", dead_letter_queue, role=None, encryption_key=self.key, alarm_topic=alarm_topic, profile=self.profile
        )
        self.security_group: ec2.SecurityGroup | None = None
        vpc_options: dict = {}
        if network is not None:
            self.security_group = network.function_security_group(self, "SecurityGroup")
            vpc_options = dict(vpc=network.vpc, vpc_subnets=network.subnet_selection, security_groups=[self.security_group])
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
        layer_arn = ssm.StringParameter.value_for_string_parameter(self, powertools_layer_parameter(powertools_version))
        default_layers: list[lambda_.ILayerVersion] = [lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", layer_arn)]
        if runtime_layer:
            # Imported here: runtime_layer imports RUNTIME from this module.
            from .runtime_layer import RuntimeLayer

            default_layers.append(RuntimeLayer.of(self, profile=self.profile))
        self.function = lambda_.Function(
            self,
            "Resource",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(code_path, exclude=["__pycache__", "*.pyc"]),
            layers=[*default_layers, *layers],
            description=description,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrent_executions,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **(environment or {}),
            },
            environment_encryption=self.key,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=2,
            **vpc_options,
        )
        # CDK makes the function depend on the role, which it already
        # references (cfn-lint W3005); it need only wait for the policy.
        function_resource = self.function.node.default_child
        function_resource.add_override("DependsOn", [Stack.of(self).get_logical_id(self.role.policy.node.default_child)])
        # Lambda sends failed asynchronous events to the DLQ, and encrypts them for it, with the role's credentials.
        grant_send_messages(self.role, self.dead_letter_queue)
        self.alarms: list[cloudwatch.Alarm] = (
            lambda_monitoring.alarms(self, self.function, alarm_topic, errors_threshold=errors_alarm_threshold, throttles_threshold=throttles_alarm_threshold)
            + dead_letter_alarms
        )

        ack.aws_solutions_iam5_any_resource(self.role)
        ack.serverless_lambda_async_failure_destination(self.function)
        # A sandbox choice: the profile that runs functions in a VPC and reserves concurrency (production) acknowledges neither.
        if network is None and not self.profile.functions_in_vpc:
            ack.lambda_inside_vpc(self.function)
        if reserved_concurrent_executions is None and self.profile.reserved_concurrency is None:
            ack.lambda_concurrency(self.function)

    @property
    def timeout(self) -> Duration:
        return self.function.timeout or Duration.seconds(3)

    # --- grants and metrics ---------------------------------------------------

    @property
    def grant_principal(self) -> iam.IPrincipal:
        return self.function.grant_principal

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """A metric the handler emits with Powertools (EMF): its namespace and ``service`` dimension. Default: sum over 5 minutes."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=metric_name,
            dimensions_map={"service": self.service_name},
            **{"statistic": "Sum", "period": Duration.minutes(5), **options},
        )

    def metric_errors(self, **options) -> cloudwatch.Metric:
        """Errors. Default: sum over 5 minutes."""
        return lambda_monitoring.errors(self.function, **options)

    def metric_throttles(self, **options) -> cloudwatch.Metric:
        """Throttles. Default: sum over 5 minutes."""
        return lambda_monitoring.throttles(self.function, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """Widgets for a dashboard section: invocations, errors, throttles, duration (see :meth:`MonitoringDashboard.monitor`)."""
        return lambda_monitoring.widgets(title, self.function)
