"""EventPipe: an EventBridge pipe from a queue or a table stream to a bus, a queue or a state machine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from . import _acknowledgements as ack
from ._iam import ManagedPolicyRole
from ._validation import check_duration_range, check_range, require
from .encryption import KeyUser, allow_service, key_or_new
from .event_bus import EventBus
from .function import HandlerFunction
from .monitoring import eventbridge as eventbridge_monitoring
from .profile import Profile
from .queue import SecureQueue

#: Stream sources: records older than this go to the DLQ.
DEFAULT_MAXIMUM_RECORD_AGE = Duration.hours(1)

PipeSource = SecureQueue | dynamodb.ITable
PipeTarget = EventBus | SecureQueue | sfn.IStateMachine


class EventPipe(Construct):
    """An EventBridge pipe: source, filter, optional enrichment, target.

    Built on the ``AWS::Pipes::Pipe`` L1 (aws-cdk-lib has no stable L2 for
    Pipes; the experimental alpha modules change between releases), wrapped
    so that its role holds exactly the source's and the target's actions:

    - SQS source: ``sqs:ReceiveMessage``, ``DeleteMessage``,
      ``GetQueueAttributes`` and ``kms:Decrypt``; a failed message returns
      to the queue and, after its receives, goes to the queue's own DLQ;
    - DynamoDB stream source: the four stream read actions; failed batches
      are bisected, retried ``maximum_retry_attempts`` times, then sent to a
      DLQ this construct creates (a :class:`SecureQueue` that alarms);
    - bus target ``events:PutEvents``; queue target ``sqs:SendMessage`` and the
      key's ``kms:GenerateDataKey``/``Decrypt``; state machine
      ``states:StartExecution``; enrichment ``lambda:InvokeFunction``.

    Messages that do not match ``filter_patterns`` are dropped by the pipe
    (for SQS they are deleted from the queue), so filter only what you mean
    to discard. Execution logs (level ``ERROR`` by default) go to an
    encrypted log group with the profile's retention; an alarm fires on
    failed executions.

    :param source: a ``SecureQueue`` or a ``dynamodb.ITable`` with a stream. Required.
    :param target: an ``EventBus``, a ``SecureQueue`` or an ``sfn.IStateMachine``. Required.
    :param filter_patterns: EventBridge patterns over the source record (for
        SQS, e.g. ``{"body": {"kind": ["restock"]}}``). Default: no filter.
    :param enrichment: a function called with each batch before the target. Default: none.
    :param batch_size: 1 to 10 for SQS, 1 to 10,000 for a stream. Default: 10.
    :param event_source: ``source`` of the events put on a bus target. Default: ``blueprints.pipe``.
    :param detail_type: ``detail-type`` of the events put on a bus target. Default: the pipe's construct id.
    :param message_group_id: for a FIFO queue target. Default: none.
    :param input_template: reshape what reaches the target, e.g.
        ``'{"sku": "<$.body.sku>", "quantity": <$.body.quantity>}'`` to put
        fields of an SQS message's JSON body on a bus as the event detail (a
        bare ``"<$.body>"`` loses the body's quotes). Default: the source record as it is.
    :param maximum_retry_attempts: stream sources, 0 to 185. Default: 3.
    :param maximum_record_age: stream sources, 1 minute to 7 days. Default: 1 hour.
    :param log_level: ``ERROR``, ``INFO`` or ``TRACE``. Default: ``ERROR``.
    :param encryption_key: encrypts the log group and the stream DLQ. Default: a new key with rotation.
    :param alarm_topic: Default: no action.
    :param profile: Default: from context.

    Attributes: ``pipe`` (the ``CfnPipe``), ``role``, ``log_group``,
    ``dead_letter_queue`` (stream sources only, else None), ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: PipeSource,
        target: PipeTarget,
        filter_patterns: Sequence[Mapping[str, Any]] = (),
        enrichment: HandlerFunction | lambda_.IFunction | None = None,
        batch_size: int = 10,
        event_source: str = "blueprints.pipe",
        detail_type: str | None = None,
        message_group_id: str | None = None,
        input_template: str | None = None,
        maximum_retry_attempts: int = 3,
        maximum_record_age: Duration = DEFAULT_MAXIMUM_RECORD_AGE,
        log_level: str = "ERROR",
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile or Profile.of(self)
        require(log_level in ("ERROR", "INFO", "TRACE"), f"log_level must be ERROR, INFO or TRACE, got {log_level!r}")
        self.key = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.LOGS)
        stack = Stack.of(self)
        name = Names.unique_resource_name(self, max_length=64, separator="-")
        self.role = ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("pipes.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description=f"Runs the {construct_id} pipe",
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", encryption_key=self.key, retention=self.profile.log_retention, removal_policy=self.profile.removal_policy
        )
        self.log_group.grant_write(self.role)
        self.dead_letter_queue: SecureQueue | None = None

        source_arn, source_parameters = self._source(source, batch_size, maximum_retry_attempts, maximum_record_age, alarm_topic)
        if filter_patterns:
            source_parameters["filter_criteria"] = pipes.CfnPipe.FilterCriteriaProperty(
                filters=[pipes.CfnPipe.FilterProperty(pattern=json.dumps(pattern)) for pattern in filter_patterns]
            )
        target_arn, target_parameters = self._target(target, event_source, detail_type or construct_id, message_group_id)
        if input_template is not None:
            target_parameters = pipes.CfnPipe.PipeTargetParametersProperty(
                input_template=input_template,
                event_bridge_event_bus_parameters=target_parameters.event_bridge_event_bus_parameters,
                sqs_queue_parameters=target_parameters.sqs_queue_parameters,
                step_function_state_machine_parameters=target_parameters.step_function_state_machine_parameters,
            )
        enrichment_arn = None
        if enrichment is not None:
            function = enrichment.function if isinstance(enrichment, HandlerFunction) else enrichment
            function.grant_invoke(self.role)
            enrichment_arn = function.function_arn

        self.pipe = pipes.CfnPipe(
            self,
            "Resource",
            name=name,
            role_arn=self.role.role_arn,
            source=source_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(**source_parameters),
            enrichment=enrichment_arn,
            target=target_arn,
            target_parameters=target_parameters,
            log_configuration=pipes.CfnPipe.PipeLogConfigurationProperty(
                cloudwatch_logs_log_destination=pipes.CfnPipe.CloudwatchLogsLogDestinationProperty(log_group_arn=self.log_group.log_group_arn),
                level=log_level,
            ),
            desired_state="RUNNING",
        )
        # The pipe checks its role's access when it is created: wait for the policy.
        self.pipe.node.add_dependency(self.role.policy)
        self.alarms: list[cloudwatch.Alarm] = eventbridge_monitoring.pipe_alarms(self, name, alarm_topic)
        if self.dead_letter_queue is not None:
            self.alarms += self.dead_letter_queue.alarms

    def _source(self, source: PipeSource, batch_size: int, retries: int, age: Duration, alarm_topic: sns.ITopic | None):
        if isinstance(source, SecureQueue):
            check_range("batch_size", batch_size, 1, 10)
            source.grant_consume_messages(self.role)
            return source.queue.queue_arn, {"sqs_queue_parameters": pipes.CfnPipe.PipeSourceSqsQueueParametersProperty(batch_size=batch_size)}
        require(source.table_stream_arn is not None, "a table source needs a stream (set `stream` on the table)")
        check_range("batch_size", batch_size, 1, 10000)
        check_range("maximum_retry_attempts", retries, 0, 185)
        check_duration_range("maximum_record_age", age, Duration.minutes(1), Duration.days(7))
        source.grant_stream_read(self.role)
        self.dead_letter_queue = SecureQueue(
            self, "DeadLetterQueue", dead_letter_queue=False, encryption_key=self.key, alarm_topic=alarm_topic, profile=self.profile
        )
        ack.dead_letter_destination(self.dead_letter_queue.queue, "dead-letter queue of an EventBridge pipe")
        self.dead_letter_queue.grant_send_messages(self.role)
        return source.table_stream_arn, {
            "dynamo_db_stream_parameters": pipes.CfnPipe.PipeSourceDynamoDBStreamParametersProperty(
                starting_position="LATEST",
                batch_size=batch_size,
                maximum_retry_attempts=retries,
                maximum_record_age_in_seconds=int(age.to_seconds()),
                on_partial_batch_item_failure="AUTOMATIC_BISECT",
                dead_letter_config=pipes.CfnPipe.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue.queue_arn),
            )
        }

    def _target(self, target: PipeTarget, event_source: str, detail_type: str, message_group_id: str | None):
        if isinstance(target, EventBus):
            target.grant_put_events(self.role, sources=[event_source])
            return target.bus.event_bus_arn, pipes.CfnPipe.PipeTargetParametersProperty(
                event_bridge_event_bus_parameters=pipes.CfnPipe.PipeTargetEventBridgeEventBusParametersProperty(source=event_source, detail_type=detail_type)
            )
        if isinstance(target, SecureQueue):
            require(not target.fifo or message_group_id is not None, "a FIFO queue target needs a message_group_id")
            target.grant_send_messages(self.role)
            return target.queue.queue_arn, pipes.CfnPipe.PipeTargetParametersProperty(
                sqs_queue_parameters=pipes.CfnPipe.PipeTargetSqsQueueParametersProperty(message_group_id=message_group_id) if message_group_id else None
            )
        target.grant_start_execution(self.role)
        return target.state_machine_arn, pipes.CfnPipe.PipeTargetParametersProperty(
            step_function_state_machine_parameters=pipes.CfnPipe.PipeTargetStateMachineParametersProperty(invocation_type="FIRE_AND_FORGET")
        )

    def metric_execution_failed(self, **options) -> cloudwatch.Metric:
        """Failed executions. Default: sum over 5 minutes."""
        return eventbridge_monitoring.pipe_metric(self.pipe.name or "", "ExecutionFailed", **options)
