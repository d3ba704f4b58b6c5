"""SecureQueue: an SQS queue with a CMK, TLS only, a dead-letter queue and alarms."""

from __future__ import annotations

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import acknowledgements as ack
from ._grants import grant_send_messages
from ._interfaces import fifo_of, queue_of
from ._naming import per_stack_creation
from ._validation import check_duration_range, check_length, check_not_flag, check_range, check_threshold, check_visibility_timeout, require
from .encryption import key_or_new
from .monitoring import sqs as sqs_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile

MAX_RETENTION = Duration.days(14)
MAX_NAME_LENGTH = 80
_DLQ_SUFFIX = "-dlq"


class SecureQueue(Construct):
    """An SQS queue (standard or FIFO) that is encrypted, TLS-only and failure-aware.

    By default it gets a dead-letter queue of the same type that receives a
    message after ``max_receive_count`` failed receives, keeps it for 14 days
    (longer than the source keeps messages), and accepts redrives from this
    queue only. Alarms fire when the DLQ holds ``dead_letter_alarm_threshold``
    messages and when the oldest message in the source has waited
    ``age_alarm_threshold``.

    With ``terminal=True`` the queue is itself a dead-letter destination (of a
    queue, an SNS subscription, an EventBridge target or a function's
    asynchronous invocations): it has no DLQ of its own, keeps messages 14
    days and alarms when it holds ``dead_letter_alarm_threshold`` messages.

    :param fifo: a FIFO queue. Default: False (standard).
    :param content_based_deduplication: FIFO only: deduplicate on a SHA-256 of
        the body. Default: False.
    :param high_throughput: FIFO only: deduplicate and limit throughput per
        message group (high-throughput mode). Default: False.
    :param encryption_key: the CMK for the queue and its DLQ. Default: a new key with rotation.
    :param sqs_managed_encryption: encrypt with SQS-managed keys instead of a
        CMK. Only for a dead-letter destination that must stay writable when
        the CMK is disabled or its policy is wrong, such as the DLQ of an
        encrypted EventBridge bus. Default: False.
    :param visibility_timeout: Default: 6 times ``consumer_timeout`` when that
        is given, else 30 seconds.
    :param consumer_timeout: the timeout of the function (or worker) that
        consumes the queue; the visibility timeout must be at least 6 times it.
        Default: not checked.
    :param retention_period: how long the source keeps messages. Default: 4
        days (a terminal queue: 14 days).
    :param delivery_delay: how long each message stays invisible after it is
        sent, 0 to 15 minutes (its age counts the delay: raise
        ``age_alarm_threshold`` with it). Default: none.
    :param terminal: the queue is itself a dead-letter destination and has no
        DLQ. Default: False.
    :param dead_letter_queue: the DLQ to use instead of a new one: a terminal
        ``SecureQueue`` or any ``sqs.IQueue`` of the same type (standard or
        FIFO). It is used as it is: no redrive-allow policy is set on it and no
        alarm is added here (a terminal ``SecureQueue`` alarms on its own).
        Default: a new DLQ, as described above.
    :param max_receive_count: receives before a message moves to the DLQ (1 to 1,000). Default: 5.
    :param age_alarm_threshold: age of the oldest message that raises the alarm. Default: 15 minutes.
    :param dead_letter_alarm_threshold: messages in the DLQ (in a terminal
        queue: in the queue) that raise its alarm. Default: 1 (any message).
    :param alarm_topic: where alarms notify. Default: no action (alarms still
        show in CloudWatch; synth warns that nobody is notified).
    :param queue_name: the queue's name (``.fifo`` is added for FIFO). A fixed
        name cannot be taken again for 60 seconds after the queue is deleted, so
        ``cdk destroy`` then ``cdk deploy`` fails within that minute. Default: a
        name from the construct path and the stack's creation (see below).

    Naming: the queue and its DLQ are named ``<construct path>-<12 hex digits
    of the stack's id>`` (the DLQ with ``-dlq``, FIFO queues with ``.fifo``), at
    most 80 characters. The source needs a name that the DLQ's redrive-allow
    policy can name without a circular reference; the stack id's part makes it
    new for every creation of the stack, so a stack destroyed and deployed
    again never asks for a name SQS still holds; and a name the construct
    chooses is never left to CloudFormation, whose generated FIFO names can
    exceed SQS's 80 characters.
    :param profile: decides the removal policy. Default: from context.

    Attributes: ``queue`` (the ``sqs.Queue``), ``dead_letter_queue`` (an
    ``sqs.IQueue``, or None for a terminal queue), ``key`` (or None with
    SQS-managed encryption), ``terminal``, ``fifo``, ``visibility_timeout``, ``alarms``.
    """

    monitoring_label = "queue"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        fifo: bool = False,
        content_based_deduplication: bool = False,
        high_throughput: bool = False,
        encryption_key: kms.IKey | None = None,
        sqs_managed_encryption: bool = False,
        visibility_timeout: Duration | None = None,
        consumer_timeout: Duration | None = None,
        retention_period: Duration | None = None,
        delivery_delay: Duration | None = None,
        terminal: bool = False,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        max_receive_count: int = 5,
        age_alarm_threshold: Duration | None = None,
        dead_letter_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        queue_name: str | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_not_flag("dead_letter_queue", dead_letter_queue, "a queue that is itself a dead-letter destination takes terminal=True")
        require(not (terminal and dead_letter_queue is not None), "a terminal queue has no dead-letter queue of its own")
        require(
            dead_letter_queue is None or fifo_of(dead_letter_queue) == fifo,
            f"a {'FIFO' if fifo else 'standard'} queue needs a {'FIFO' if fifo else 'standard'} dead-letter queue",
        )
        require(fifo or not content_based_deduplication, "content_based_deduplication needs fifo=True")
        require(fifo or not high_throughput, "high_throughput needs fifo=True")
        check_range("max_receive_count", max_receive_count, 1, 1000)
        check_threshold("dead_letter_alarm_threshold", dead_letter_alarm_threshold, 1)
        if visibility_timeout is None:
            visibility_timeout = (
                Duration.seconds(6 * consumer_timeout.to_seconds())
                if consumer_timeout is not None and not consumer_timeout.is_unresolved()
                else Duration.seconds(30)
            )
        check_duration_range("visibility timeout", visibility_timeout, Duration.seconds(0), Duration.hours(12))
        if consumer_timeout is not None:
            check_visibility_timeout(visibility_timeout, consumer_timeout)
        if not terminal:
            retention_period = retention_period or Duration.days(4)
            check_duration_range("retention period", retention_period, Duration.minutes(1), Duration.days(13))
        else:
            retention_period = retention_period or MAX_RETENTION
            check_duration_range("retention period", retention_period, Duration.minutes(1), MAX_RETENTION)
        age_alarm_threshold = age_alarm_threshold or Duration.minutes(15)
        check_duration_range("delivery delay", delivery_delay, Duration.seconds(0), Duration.minutes(15))

        require(not (sqs_managed_encryption and encryption_key is not None), "sqs_managed_encryption and encryption_key exclude each other")
        self.key: kms.IKey | None = None if sqs_managed_encryption else key_or_new(self, encryption_key, self.profile)
        self.fifo = fifo
        self.terminal = terminal
        self.visibility_timeout = visibility_timeout
        self.dead_letter_queue: sqs.IQueue | None = None
        self.alarms: list[cloudwatch.Alarm] = []

        common = dict(
            encryption=sqs.QueueEncryption.SQS_MANAGED if sqs_managed_encryption else sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            fifo=fifo or None,
            removal_policy=self.profile.removal_policy,
        )
        dead_letter = None
        queue_name = _fifo_name(queue_name or per_stack_creation(self, max_length=MAX_NAME_LENGTH - len(_DLQ_SUFFIX) - len(".fifo")), fifo)
        check_length("queue name", queue_name, MAX_NAME_LENGTH)
        created_dead_letter_queue: sqs.Queue | None = None
        if dead_letter_queue is not None:
            self.dead_letter_queue = queue_of(dead_letter_queue)
            dead_letter = sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receive_count)
        elif not terminal:
            source_arn = Stack.of(self).format_arn(service="sqs", resource=queue_name)
            self.dead_letter_queue = created_dead_letter_queue = sqs.Queue(
                self,
                "DeadLetterQueue",
                queue_name=_dead_letter_name(queue_name, fifo),
                retention_period=MAX_RETENTION,
                redrive_allow_policy=sqs.RedriveAllowPolicy(
                    redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                    source_queues=[sqs.Queue.from_queue_arn(self, "Source", source_arn)],
                ),
                **common,
            )
            dead_letter = sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receive_count)

        self.queue = sqs.Queue(
            self,
            "Resource",
            queue_name=queue_name,
            visibility_timeout=visibility_timeout,
            retention_period=retention_period,
            delivery_delay=delivery_delay,
            dead_letter_queue=dead_letter,
            content_based_deduplication=content_based_deduplication or None,
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP if high_throughput else None,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID if high_throughput else None,
            **common,
        )

        if terminal:
            self.alarms.append(sqs_monitoring.not_empty_alarm(self, "NotEmptyAlarm", self.queue, alarm_topic, dead_letter_alarm_threshold))
            ack.serverless_sqs_redrive_policy(self.queue)
        else:
            self.alarms.append(sqs_monitoring.age_alarm(self, self.queue, age_alarm_threshold, alarm_topic))
        if created_dead_letter_queue is not None:
            self.alarms.append(
                sqs_monitoring.not_empty_alarm(self, "DeadLetterQueueNotEmptyAlarm", created_dead_letter_queue, alarm_topic, dead_letter_alarm_threshold)
            )
            ack.serverless_sqs_redrive_policy(created_dead_letter_queue)

    # --- grants -------------------------------------------------------------

    def grant_send_messages(self, grantee: iam.IGrantable) -> iam.Grant:
        """Send messages: ``sqs:SendMessage`` (which also authorises ``SendMessageBatch``); ``kms:GenerateDataKey`` and
        ``kms:Decrypt`` on the key.

        Exactly what AWS documents a producer needs for a queue encrypted with a
        customer-managed key ("Configure KMS permissions for producers",
        https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html#send-to-encrypted-queue);
        not the ``kms:Encrypt``, ``kms:ReEncrypt*``, ``kms:GenerateDataKey*``,
        ``sqs:GetQueueAttributes`` and ``sqs:GetQueueUrl`` that aws-cdk-lib's
        ``Queue.grant_send_messages`` adds. Every construct of this library that
        sends to a queue is granted the same way.
        """
        return grant_send_messages(grantee, self)

    def grant_consume_messages(self, grantee: iam.IGrantable) -> iam.Grant:
        """sqs:ReceiveMessage, ChangeMessageVisibility, GetQueueUrl, DeleteMessage, GetQueueAttributes; kms:Decrypt."""
        return self.queue.grant_consume_messages(grantee)

    def grant_redrive(self, grantee: iam.IGrantable) -> iam.Grant:
        """Start, list and cancel message move tasks from the DLQ back to this queue.

        sqs:StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask,
        ReceiveMessage, DeleteMessage, GetQueueAttributes on the DLQ,
        sqs:SendMessage on the source; kms:Decrypt and GenerateDataKey on the key.
        """
        require(self.dead_letter_queue is not None, "grant_redrive needs a queue with a dead-letter queue")
        assert self.dead_letter_queue is not None
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "sqs:StartMessageMoveTask",
                "sqs:ListMessageMoveTasks",
                "sqs:CancelMessageMoveTask",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ],
            resource_arns=[self.dead_letter_queue.queue_arn],
        )
        grant = grant.combine(iam.Grant.add_to_principal(grantee=grantee, actions=["sqs:SendMessage"], resource_arns=[self.queue.queue_arn]))
        if self.key is None:
            return grant
        return grant.combine(self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey"))

    # --- metrics -----------------------------------------------------------

    def metric_approximate_age_of_oldest_message(self, **options) -> cloudwatch.Metric:
        """Age of the oldest message in the source. Default: maximum over 1 minute."""
        return sqs_monitoring.age_of_oldest_message(self.queue, **options)

    def metric_approximate_number_of_messages_visible(self, **options) -> cloudwatch.Metric:
        """Messages ready in the source. Default: maximum over 1 minute."""
        return sqs_monitoring.messages_visible(self.queue, **options)

    def metric_dead_letter_messages_visible(self, **options) -> cloudwatch.Metric:
        """Messages in the DLQ. Default: maximum over 1 minute."""
        require(self.dead_letter_queue is not None, "this queue has no dead-letter queue")
        assert self.dead_letter_queue is not None
        return sqs_monitoring.messages_visible(self.dead_letter_queue, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """Widgets for a dashboard section: depth, in flight, dead-lettered, age (see :meth:`MonitoringDashboard.monitor`)."""
        return sqs_monitoring.widgets(title, self.queue, self.dead_letter_queue)


def _fifo_name(name: str, fifo: bool) -> str:
    if fifo and not name.endswith(".fifo"):
        return f"{name}.fifo"
    return name


def _dead_letter_name(queue_name: str, fifo: bool) -> str:
    """``<queue>-dlq`` (``<queue>-dlq.fifo``), cut at the front when a chosen name leaves no room."""
    base = queue_name.removesuffix(".fifo") if fifo else queue_name
    room = MAX_NAME_LENGTH - len(_DLQ_SUFFIX) - (len(".fifo") if fifo else 0)
    if not Token.is_unresolved(base) and len(base) > room:
        base = base[-room:].lstrip("-_") or "queue"
    return _fifo_name(f"{base}{_DLQ_SUFFIX}", fifo)


def keyless_view(scope: Construct, construct_id: str, queue: sqs.IQueue, *, fifo: bool = False) -> sqs.IQueue:
    """A reference to ``queue`` that does not know its key.

    L2 targets and destinations grant "send" on the queue they are given,
    and for a queue with a key that grant includes the key's wildcard actions
    (``kms:GenerateDataKey*``, ``kms:ReEncrypt*``) or a key-policy statement
    without conditions. Given this view, they grant only the SQS actions;
    the caller grants the key's exact actions (or its service statement) itself.
    """
    return sqs.Queue.from_queue_attributes(scope, construct_id, queue_arn=queue.queue_arn, queue_url=queue.queue_url, fifo=fifo)


def dead_letter_queue_for(
    scope: Construct,
    construct_id: str,
    given: SecureQueue | sqs.IQueue | None,
    *,
    role: str | None,
    fifo: bool = False,
    encryption_key: kms.IKey | None = None,
    sqs_managed_encryption: bool = False,
    alarm_topic: sns.ITopic | None = None,
    profile: Profile | None = None,
) -> tuple[sqs.IQueue, list[cloudwatch.Alarm]]:
    """A construct's dead-letter queue: the one the caller gave, or a new terminal :class:`SecureQueue`.

    :param given: the caller's ``dead_letter_queue`` prop: used as it is (no alarm is added for it).
    :param role: what the new queue is, e.g. "dead-letter queue of an SNS subscription", for the
        ``AwsSolutions-SQS3`` acknowledgement; None when the rule recognises it (a function's DLQ).
    :returns: the queue and the alarms of a new one (none for a given queue).
    """
    check_not_flag("dead_letter_queue", given, "pass a queue, or leave it out for a new one")
    if given is not None:
        require(fifo_of(given) == fifo, f"the dead-letter queue must be a {'FIFO' if fifo else 'standard'} queue")
        return queue_of(given), []
    queue = SecureQueue(
        scope,
        construct_id,
        terminal=True,
        fifo=fifo,
        encryption_key=encryption_key,
        sqs_managed_encryption=sqs_managed_encryption,
        alarm_topic=alarm_topic,
        profile=profile,
    )
    if role is not None:
        ack.aws_solutions_sqs3(queue.queue, role)
    return queue.queue, queue.alarms
