"""MqEventSource: a Lambda function consuming one queue of a :class:`MessageBroker`."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from . import acknowledgements as ack
from ._iam import grant_event_source_network_interfaces, policy_of
from ._interfaces import function_of, role_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .function import HandlerFunction
from .message_broker import BrokerEngine, MessageBroker


class MqEventSource(Construct):
    """A Lambda event source mapping on one queue of an Amazon MQ broker.

    One of the three consumers of this library, which all take the same shape,
    ``(scope, id, *, consumer=<function>, <source>=..., batch_size=..., ...)``:
    :class:`QueueEventSource`, :class:`KafkaEventSource`, :class:`MqEventSource`.

    aws-cdk-lib has no L2 for Amazon MQ event sources; this is the small
    piece needed, on ``CfnEventSourceMapping``, so that every permission is
    exact and the broker-side dead-lettering is part of the same construct.

    - the application user's credentials (``BASIC_AUTH``, the secret's ARN)
      and, on RabbitMQ, the virtual host (``VIRTUAL_HOST``);
    - batches of ``batch_size`` messages, waiting at most ``max_batching_window``;
    - Amazon MQ sources have no partial batch response: when the function
      fails, the whole batch goes back to the broker, which redelivers it and,
      after its limit, moves the messages to the broker queue named by
      ``dead_letter_queue_name`` (RabbitMQ: a dead-letter exchange policy with a
      delivery limit on a quorum queue; ActiveMQ: the broker's per-queue
      ``DLQ.<queue>``), so poison messages are kept, not lost. That queue
      alarms at ``dead_letter_alarm_threshold`` messages and the source queue at
      ``max_queue_depth`` (both notify the broker's alarm topic);
    - the function's role: ``mq:DescribeBroker`` on the broker, read on the
      application secret (and decrypt with its key), and the network
      interface and VPC describe actions, which take no resource ARNs;
    - the broker's security group and the network's endpoints for Lambda,
      STS and Secrets Manager (see :meth:`MessageBroker.allow_event_source_mappings`).

    :param consumer: the function to invoke: a ``HandlerFunction``, or a
        ``lambda_.IFunction`` whose role is known (a new function, or one imported
        with ``Function.from_function_attributes(role=...)``). Required.
    :param broker: Required.
    :param queue: the broker queue to consume. Required.
    :param virtual_host: RabbitMQ only. Default: ``/``.
    :param dead_letter_queue_name: the broker queue where the broker dead-letters
        ``queue``'s poison messages (a name on the broker, not an SQS queue).
        Default: ``<queue>.dead-letter`` on RabbitMQ, ``DLQ.<queue>`` on ActiveMQ.
    :param batch_size: 1 to 10,000. Default: 10.
    :param max_batching_window: up to 5 minutes. Default: 1 second.
    :param max_queue_depth: messages in ``queue`` that raise its depth alarm (for 15 minutes). Default: 1,000.
    :param dead_letter_alarm_threshold: messages in the dead-letter queue that raise its alarm. Default: 1 (any).
    :param enabled: Default: True.

    Attributes: ``mapping`` (the ``CfnEventSourceMapping``), ``dead_letter_queue_name``, ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        consumer: HandlerFunction | lambda_.IFunction,
        broker: MessageBroker,
        queue: str,
        virtual_host: str = "/",
        dead_letter_queue_name: str | None = None,
        batch_size: int = 10,
        max_batching_window: Duration | None = None,
        max_queue_depth: int = 1000,
        dead_letter_alarm_threshold: int = 1,
        enabled: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        function, role = function_of(consumer), role_of(consumer, "MqEventSource")
        check_threshold("dead_letter_alarm_threshold", dead_letter_alarm_threshold, 1)
        max_batching_window = max_batching_window or Duration.seconds(1)
        check_range("batch_size", batch_size, 1, 10000)
        check_duration_range("max_batching_window", max_batching_window, Duration.seconds(0), Duration.minutes(5))
        require(1 <= len(queue) <= 1000 and not queue.isspace(), f"queue must be 1 to 1,000 characters, got {queue!r}")
        rabbit = broker.engine is BrokerEngine.RABBITMQ
        if rabbit:
            # Amazon MQ publishes no queue or virtual-host metrics for names with spaces, tabs or
            # non-ASCII characters, so the depth and dead-letter alarms would never fire
            # (https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/rabbitmq-logging-monitoring.html).
            for label, name in (("queue", queue), ("virtual_host", virtual_host), ("dead_letter_queue_name", dead_letter_queue_name or "")):
                require(
                    name.isascii() and not any(c.isspace() for c in name),
                    f"{label} must be ASCII without spaces or tabs (Amazon MQ publishes no RabbitMQ metrics for other names), got {name!r}",
                )
        require(rabbit or virtual_host == "/", "virtual_host applies to RabbitMQ brokers only")
        self.dead_letter_queue_name = dead_letter_queue_name or (f"{queue}.dead-letter" if rabbit else f"DLQ.{queue}")
        require(self.dead_letter_queue_name != queue, "dead_letter_queue_name must differ from queue")

        broker.allow_event_source_mappings()
        if not rabbit:
            # The mapping connects as the application user, which the authorization map must admit to the queue.
            broker.allow_application(queue, read=True)
        role.add_to_principal_policy(iam.PolicyStatement(actions=["mq:DescribeBroker"], resources=[broker.broker_arn]))
        # Lambda creates the mapping's network interfaces in the broker's subnets with the function's role.
        grant_event_source_network_interfaces(role)
        broker.grant_read_credentials(role)

        access = [lambda_.CfnEventSourceMapping.SourceAccessConfigurationProperty(type="BASIC_AUTH", uri=broker.application.secret.secret_arn)]
        if rabbit:
            access.append(lambda_.CfnEventSourceMapping.SourceAccessConfigurationProperty(type="VIRTUAL_HOST", uri=virtual_host))
        self.mapping = lambda_.CfnEventSourceMapping(
            self,
            "Resource",
            function_name=function.function_name,
            event_source_arn=broker.broker_arn,
            queues=[queue],
            batch_size=batch_size,
            maximum_batching_window_in_seconds=int(max_batching_window.to_seconds()),
            source_access_configurations=access,
            enabled=enabled,
        )
        ack.serverless_lambda_event_source_mapping_destination_mq(self.mapping)
        # Lambda checks the role's permissions when the mapping is created.
        self.mapping.node.add_dependency(policy_of(role))
        self.alarms: list[cloudwatch.Alarm] = [
            broker.add_queue_alarm(f"{construct_id}QueueDepthAlarm", queue, threshold=max_queue_depth, virtual_host=virtual_host),
            broker.add_queue_alarm(
                f"{construct_id}DeadLetterAlarm", self.dead_letter_queue_name, threshold=dead_letter_alarm_threshold, virtual_host=virtual_host
            ),
        ]
