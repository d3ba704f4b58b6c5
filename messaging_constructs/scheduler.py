"""ScheduleGroup: EventBridge Scheduler schedules, encrypted, each with a DLQ and a retry policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._grants import SendMessageTarget, grant_send_messages
from ._iam import ManagedPolicyRole
from ._interfaces import bus_of, fifo_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .encryption import KeyUser, allow_service, key_or_new
from .event_bus import EventBus
from .monitoring import eventbridge as eventbridge_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

#: Default retry policy of a schedule's target: 1 hour, 5 attempts.
DEFAULT_MAX_EVENT_AGE = Duration.hours(1)
DEFAULT_RETRY_ATTEMPTS = 5


class ScheduleGroup(Construct):
    """A schedule group whose schedules put events on a bus or messages on a queue.

    Every schedule is encrypted with the CMK, has an explicit retry policy and
    sends what its target refuses to the group's dead-letter queue (a terminal
    :class:`SecureQueue` that alarms on any message, or yours). Schedules run
    as one role per group whose customer-managed policy names exactly the
    buses and queues the group's schedules target: ``events:PutEvents`` on a
    bus; ``sqs:SendMessage`` on a queue (and the DLQ) with its key's
    ``kms:GenerateDataKey`` and ``kms:Decrypt``. Alarms on target errors,
    dropped invocations and invocations lost on the way to the DLQ.

    Expressions: ``scheduler.ScheduleExpression.rate(...)``, ``.cron(...)`` or
    ``.at(datetime)`` for a one-time schedule.

    :param schedule_group_name: Default: generated.
    :param encryption_key: Default: a new key with rotation.
    :param dead_letter_queue: the group's DLQ, used as it is. Default: a new terminal
        ``SecureQueue`` encrypted with ``encryption_key``.
    :param target_errors_alarm_threshold: ``TargetErrorCount`` in 5 minutes that raises the alarm. Default: 1 (any).
    :param dropped_alarm_threshold: ``InvocationDroppedCount`` in 5 minutes that raises the alarm. Default: 1 (any).
    :param dead_letter_failures_alarm_threshold: ``InvocationsFailedToBeSentToDeadLetterCount`` (lost invocations)
        in 5 minutes that raises the alarm. Default: 1 (any).
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: decides the key's removal policy and the DLQ's. Default: from context.

    Attributes: ``group``, ``key``, ``role``, ``dead_letter_queue`` (an ``sqs.IQueue``), ``schedules``, ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule_group_name: str | None = None,
        encryption_key: kms.IKey | None = None,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        target_errors_alarm_threshold: int = 1,
        dropped_alarm_threshold: int = 1,
        dead_letter_failures_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        thresholds = {
            "TargetErrorCount": target_errors_alarm_threshold,
            "InvocationDroppedCount": dropped_alarm_threshold,
            "InvocationsFailedToBeSentToDeadLetterCount": dead_letter_failures_alarm_threshold,
        }
        for name, value in thresholds.items():
            check_threshold(f"{name} alarm threshold", value, 1)
        self.key = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.SCHEDULER)
        # A group holds schedules, which go with the stack, and no data: it goes too, in both profiles. Its name is
        # fixed at synth, so a retained group would refuse the next deployment of the same stack.
        self.group = scheduler.ScheduleGroup(self, "Resource", schedule_group_name=schedule_group_name, removal_policy=RemovalPolicy.DESTROY)
        self.role = ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": self.group.stack.account}}),
            description="Runs the schedules of one group",
        )
        self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
            self,
            "DeadLetterQueue",
            dead_letter_queue,
            role="dead-letter queue of an EventBridge schedule group",
            encryption_key=self.key,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )
        grant_send_messages(self.role, self.dead_letter_queue)
        self.schedules: list[scheduler.Schedule] = []
        self.alarms: list[cloudwatch.Alarm] = eventbridge_monitoring.schedule_group_alarms(
            self, self.group.schedule_group_name, alarm_topic, thresholds
        ) + list(dead_letter_alarms)

    def _options(self, max_event_age: Duration, retry_attempts: int) -> dict[str, Any]:
        check_duration_range("max_event_age", max_event_age, Duration.minutes(1), Duration.hours(24))
        check_range("retry_attempts", retry_attempts, 0, 185)
        return dict(dead_letter_queue=self.dead_letter_queue, max_event_age=max_event_age, retry_attempts=retry_attempts, role=self.role)

    def _schedule(
        self, construct_id: str, expression: scheduler.ScheduleExpression, target: scheduler.IScheduleTarget, description: str | None
    ) -> scheduler.Schedule:
        schedule = scheduler.Schedule(
            self,
            construct_id,
            schedule=expression,
            target=target,
            schedule_group=self.group,
            key=self.key,
            description=description,
        )
        # The schedule names its group by a plain string: make the order explicit.
        schedule.node.add_dependency(self.group)
        self.schedules.append(schedule)
        return schedule

    def put_event(
        self,
        construct_id: str,
        *,
        schedule: scheduler.ScheduleExpression,
        bus: EventBus | events.IEventBus,
        source: str,
        detail_type: str,
        detail: Mapping[str, Any],
        description: str | None = None,
        max_event_age: Duration = DEFAULT_MAX_EVENT_AGE,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
    ) -> scheduler.Schedule:
        """A schedule that puts one event (``source``, ``detail_type``, ``detail``) on ``bus`` (an ``EventBus`` or any
        ``events.IEventBus``, imported too); the group's role gets ``events:PutEvents`` on it.

        :param max_event_age: 1 minute to 24 hours. Default: 1 hour.
        :param retry_attempts: 0 to 185. Default: 5.
        """
        require(not source.startswith("aws."), f"source must not start with 'aws.' (reserved for AWS services), got {source!r}")
        target = scheduler_targets.EventBridgePutEvents(
            scheduler_targets.EventBridgePutEventsEntry(
                event_bus=bus_of(bus),
                source=source,
                detail_type=detail_type,
                detail=scheduler.ScheduleTargetInput.from_object(dict(detail)),
            ),
            **self._options(max_event_age, retry_attempts),
        )
        return self._schedule(construct_id, schedule, target, description)

    def send_message(
        self,
        construct_id: str,
        *,
        schedule: scheduler.ScheduleExpression,
        queue: SecureQueue | sqs.IQueue,
        message: Mapping[str, Any],
        message_group_id: str | None = None,
        description: str | None = None,
        max_event_age: Duration = DEFAULT_MAX_EVENT_AGE,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
    ) -> scheduler.Schedule:
        """A schedule that sends ``message`` (as JSON) to ``queue`` (a ``SecureQueue`` or any ``sqs.IQueue``, imported
        too); a FIFO queue needs ``message_group_id``. The group's role gets ``sqs:SendMessage`` on the queue and
        ``kms:GenerateDataKey`` and ``kms:Decrypt`` on its key (when known).

        :param max_event_age: 1 minute to 24 hours. Default: 1 hour.
        :param retry_attempts: 0 to 185. Default: 5.
        """
        require(not fifo_of(queue) or message_group_id is not None, "a FIFO queue target needs a message_group_id")
        target = SendMessageTarget(
            queue,
            input=scheduler.ScheduleTargetInput.from_object(dict(message)),
            message_group_id=message_group_id,
            **self._options(max_event_age, retry_attempts),
        )
        return self._schedule(construct_id, schedule, target, description)
