"""EventPipe: an EventBridge pipe from a queue or a table stream to a bus, a queue or a state machine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from . import acknowledgements as ack
from ._grants import grant_send_messages
from ._iam import ManagedPolicyRole
from ._interfaces import bus_of, fifo_of, function_of, is_bus, is_queue, queue_of, state_machine_of, table_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .encryption import KeyUser, allow_service, key_or_new
from .event_bus import EventBus, grant_put_events
from .function import HandlerFunction
from .monitoring import eventbridge as eventbridge_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

#: Stream sources: records older than this go to the DLQ.
DEFAULT_MAXIMUM_RECORD_AGE = Duration.hours(1)

PipeSource = SecureQueue | sqs.IQueue | dynamodb.ITable
PipeTarget = EventBus | events.IEventBus | SecureQueue | sqs.IQueue | sfn.IStateMachine


class EventPipe(Construct):
    """An EventBridge pipe: source, filter, optional enrichment, target.

    Built on the ``AWS::Pipes::Pipe`` L1 (aws-cdk-lib has no stable L2 for
    Pipes; the experimental alpha modules change between releases), wrapped
    so that its role holds exactly the source's and the target's actions:

    - SQS source: the consume actions (``sqs:ReceiveMessage``,
      ``ChangeMessageVisibility``, ``GetQueueUrl``, ``DeleteMessage``,
      ``GetQueueAttributes``) and ``kms:Decrypt``; a failed message returns
      to the queue and, after its receives, goes to the queue's own DLQ;
    - DynamoDB stream source: the four stream read actions; failed batches
      are bisected, retried ``maximum_retry_attempts`` times, then sent to
      ``dead_letter_queue`` (by default a terminal :class:`SecureQueue` this
      construct creates, which alarms);
    - bus target ``events:PutEvents``; queue target (and the stream DLQ)
      ``sqs:SendMessage`` and the key's ``kms:GenerateDataKey`` and
      ``kms:Decrypt``; state machine ``states:StartExecution``; enrichment
      ``lambda:InvokeFunction``.

    Messages that do not match ``filter_patterns`` are dropped by the pipe
    (for SQS they are deleted from the queue), so filter only what you mean
    to discard. Execution logs (level ``ERROR`` by default) go to an
    encrypted log group with the profile's retention; an alarm fires on
    failed executions.

    :param source: a queue (``SecureQueue`` or any ``sqs.IQueue``) or a
        ``dynamodb.ITable`` with a stream, imported ones too. Required.
    :param target: a bus (``EventBus`` or any ``events.IEventBus``), a queue
        (``SecureQueue`` or any ``sqs.IQueue``) or an ``sfn.IStateMachine``. Required.
    :param filter_patterns: EventBridge patterns over the source record (for
        SQS, e.g. ``{"body": {"kind": ["restock"]}}``). Default: no filter.
    :param enrichment: a function called with each batch before the target
        (``HandlerFunction`` or any ``lambda_.IFunction``, imported too). Default: none.
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
    :param dead_letter_queue: stream sources: where failed batches go, used as it is.
        Default: a new terminal ``SecureQueue`` encrypted with ``encryption_key``.
    :param failed_executions_alarm_threshold: ``ExecutionFailed`` in 5 minutes that raises the alarm. Default: 1 (any).
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``pipe`` (the ``CfnPipe``), ``role``, ``log_group``,
    ``dead_letter_queue`` (an ``sqs.IQueue``; stream sources only, else None), ``alarms``.
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
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        failed_executions_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_threshold("failed_executions_alarm_threshold", failed_executions_alarm_threshold, 1)
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
        self.dead_letter_queue: sqs.IQueue | None = None
        dead_letter_alarms: list[cloudwatch.Alarm] = []
        if is_queue(source):
            require(dead_letter_queue is None, "an SQS source relies on its own queue's dead-letter queue: dead_letter_queue is for stream sources")
            source_arn, source_parameters = self._queue_source(source, batch_size)
        else:
            source_arn, source_parameters = self._stream_source(table_of(source), batch_size, maximum_retry_attempts, maximum_record_age)
            self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
                self,
                "DeadLetterQueue",
                dead_letter_queue,
                role="dead-letter queue of an EventBridge pipe",
                encryption_key=self.key,
                alarm_topic=alarm_topic,
                profile=self.profile,
            )
            grant_send_messages(self.role, self.dead_letter_queue)
            source_parameters["dynamo_db_stream_parameters"] = pipes.CfnPipe.PipeSourceDynamoDBStreamParametersProperty(
                **source_parameters["dynamo_db_stream_parameters"],
                dead_letter_config=pipes.CfnPipe.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            )
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
            function = function_of(enrichment)
            # The function itself; grant_invoke would add every version and alias (``<arn>:*``).
            self.role.add_to_principal_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn]))
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
        self.alarms: list[cloudwatch.Alarm] = eventbridge_monitoring.pipe_alarms(
            self, name, alarm_topic, {"ExecutionFailed": failed_executions_alarm_threshold}
        ) + list(dead_letter_alarms)

    def _queue_source(self, source: SecureQueue | sqs.IQueue, batch_size: int):
        check_range("batch_size", batch_size, 1, 10)
        queue = queue_of(source)
        queue.grant_consume_messages(self.role)
        return queue.queue_arn, {"sqs_queue_parameters": pipes.CfnPipe.PipeSourceSqsQueueParametersProperty(batch_size=batch_size)}

    def _stream_source(self, source: dynamodb.ITable, batch_size: int, retries: int, age: Duration):
        require(source.table_stream_arn is not None, "a table source needs a stream (set `stream` on the table)")
        check_range("batch_size", batch_size, 1, 10000)
        check_range("maximum_retry_attempts", retries, 0, 185)
        check_duration_range("maximum_record_age", age, Duration.minutes(1), Duration.days(7))
        source.grant_stream_read(self.role)
        ack.aws_solutions_iam5_list_streams(self.role.policy)
        return source.table_stream_arn, {
            "dynamo_db_stream_parameters": dict(
                starting_position="LATEST",
                batch_size=batch_size,
                maximum_retry_attempts=retries,
                maximum_record_age_in_seconds=int(age.to_seconds()),
                on_partial_batch_item_failure="AUTOMATIC_BISECT",
            )
        }

    def _target(self, target: PipeTarget, event_source: str, detail_type: str, message_group_id: str | None):
        if is_bus(target):
            grant_put_events(self.role, target, sources=[event_source])
            return bus_of(target).event_bus_arn, pipes.CfnPipe.PipeTargetParametersProperty(
                event_bridge_event_bus_parameters=pipes.CfnPipe.PipeTargetEventBridgeEventBusParametersProperty(source=event_source, detail_type=detail_type)
            )
        if is_queue(target):
            require(not fifo_of(target) or message_group_id is not None, "a FIFO queue target needs a message_group_id")
            grant_send_messages(self.role, target)
            return queue_of(target).queue_arn, pipes.CfnPipe.PipeTargetParametersProperty(
                sqs_queue_parameters=pipes.CfnPipe.PipeTargetSqsQueueParametersProperty(message_group_id=message_group_id) if message_group_id else None
            )
        state_machine = state_machine_of(target)
        state_machine.grant_start_execution(self.role)
        return state_machine.state_machine_arn, pipes.CfnPipe.PipeTargetParametersProperty(
            step_function_state_machine_parameters=pipes.CfnPipe.PipeTargetStateMachineParametersProperty(invocation_type="FIRE_AND_FORGET")
        )

    def metric_execution_failed(self, **options) -> cloudwatch.Metric:
        """Failed executions. Default: sum over 5 minutes."""
        return eventbridge_monitoring.pipe_metric(self.pipe.name or "", "ExecutionFailed", **options)
