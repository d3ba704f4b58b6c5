"""MqEventSource: a Lambda function consuming one queue of a :class:`MessageBroker`."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from . import _acknowledgements as ack
from ._iam import allow_event_source_network_interfaces
from ._validation import check_duration_range, check_range, require
from .function import HandlerFunction
from .message_broker import BrokerEngine, MessageBroker


class MqEventSource(Construct):
    """A Lambda event source mapping on one queue of an Amazon MQ broker.

    aws-cdk-lib has no L2 for Amazon MQ event sources; this is the small
    piece needed, on ``CfnEventSourceMapping``, so that every permission is
    exact and the broker-side dead-lettering is part of the same construct.

    - the application user's credentials (``BASIC_AUTH``, the secret's ARN)
      and, on RabbitMQ, the virtual host (``VIRTUAL_HOST``);
    - batches of ``batch_size`` messages, waiting at most ``max_batching_window``;
    - Amazon MQ sources have no partial batch response: when the function
      fails, the whole batch goes back to the broker, which redelivers it and,
      after its limit, moves the messages to the dead-letter queue named by
      ``dead_letter_queue`` (RabbitMQ: a dead-letter exchange policy with a
      delivery limit on a quorum queue; ActiveMQ: the broker's per-queue
      ``DLQ.<queue>``), so poison messages are kept, not lost. That queue
      alarms on any message and the source queue on depth;
    - the function's role: ``mq:DescribeBroker`` on the broker, read on the
      application secret (and decrypt with its key), and the network
      interface and VPC describe actions, which take no resource ARNs;
    - the broker's security group and the network's endpoints for Lambda,
      STS and Secrets Manager (see :meth:`MessageBroker.allow_event_source_mappings`).

    :param broker: Required.
    :param consumer: the function to invoke. Required.
    :param queue: the queue to consume. Required.
    :param virtual_host: RabbitMQ only. Default: ``/``.
    :param dead_letter_queue: where the broker dead-letters ``queue``'s poison
        messages. Default: ``<queue>.dead-letter`` on RabbitMQ, ``DLQ.<queue>`` on ActiveMQ.
    :param batch_size: 1 to 10,000. Default: 10.
    :param max_batching_window: up to 5 minutes. Default: 1 second.
    :param max_queue_depth: the source queue's depth alarm. Default: 1,000.
    :param enabled: Default: True.

    Attributes: ``mapping``, ``dead_letter_queue``, ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        broker: MessageBroker,
        consumer: HandlerFunction,
        queue: str,
        virtual_host: str = "/",
        dead_letter_queue: str | None = None,
        batch_size: int = 10,
        max_batching_window: Duration | None = None,
        max_queue_depth: int = 1000,
        enabled: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        max_batching_window = max_batching_window or Duration.seconds(1)
        check_range("batch_size", batch_size, 1, 10000)
        check_duration_range("max_batching_window", max_batching_window, Duration.seconds(0), Duration.minutes(5))
        require(1 <= len(queue) <= 1000 and not queue.isspace(), f"queue must be 1 to 1,000 characters, got {queue!r}")
        rabbit = broker.engine is BrokerEngine.RABBITMQ
        if rabbit:
            # Amazon MQ publishes no queue or virtual-host metrics for names with spaces, tabs or
            # non-ASCII characters, so the depth and dead-letter alarms would never fire
            # (https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/rabbitmq-logging-monitoring.html).
            for label, name in (("queue", queue), ("virtual_host", virtual_host), ("dead_letter_queue", dead_letter_queue or "")):
                require(
                    name.isascii() and not any(c.isspace() for c in name),
                    f"{label} must be ASCII without spaces or tabs (Amazon MQ publishes no RabbitMQ metrics for other names), got {name!r}",
                )
        require(rabbit or virtual_host == "/", "virtual_host applies to RabbitMQ brokers only")
        self.dead_letter_queue = dead_letter_queue or (f"{queue}.dead-letter" if rabbit else f"DLQ.{queue}")
        require(self.dead_letter_queue != queue, "dead_letter_queue must differ from queue")

        broker.allow_event_source_mappings()
        if not rabbit:
            # The mapping connects as the application user, which the authorization map must admit to the queue.
            broker.allow_application(queue, read=True)
        role = consumer.role
        role.add_to_principal_policy(iam.PolicyStatement(actions=["mq:DescribeBroker"], resources=[broker.broker_arn]))
        # Lambda creates the mapping's network interfaces in the broker's subnets with the function's role.
        allow_event_source_network_interfaces(role)
        broker.grant_read_credentials(role)

        access = [lambda_.CfnEventSourceMapping.SourceAccessConfigurationProperty(type="BASIC_AUTH", uri=broker.application.secret.secret_arn)]
        if rabbit:
            access.append(lambda_.CfnEventSourceMapping.SourceAccessConfigurationProperty(type="VIRTUAL_HOST", uri=virtual_host))
        self.mapping = lambda_.CfnEventSourceMapping(
            self,
            "Resource",
            function_name=consumer.function.function_name,
            event_source_arn=broker.broker_arn,
            queues=[queue],
            batch_size=batch_size,
            maximum_batching_window_in_seconds=int(max_batching_window.to_seconds()),
            source_access_configurations=access,
            enabled=enabled,
        )
        ack.mq_event_source_destination(self.mapping)
        # Lambda checks the role's permissions when the mapping is created.
        self.mapping.node.add_dependency(role.policy)
        self.alarms: list[cloudwatch.Alarm] = [
            broker.add_queue_alarm(f"{construct_id}QueueDepthAlarm", queue, threshold=max_queue_depth, virtual_host=virtual_host),
            broker.add_queue_alarm(f"{construct_id}DeadLetterAlarm", self.dead_letter_queue, threshold=1, virtual_host=virtual_host),
        ]
