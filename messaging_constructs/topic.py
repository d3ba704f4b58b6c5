"""SecureTopic: an SNS topic with a CMK, TLS only, delivery logging and a DLQ per subscription."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import acknowledgements as ack
from ._grants import allow_service_to_send
from ._iam import ManagedPolicyRole
from ._interfaces import fifo_of, queue_of
from ._validation import check_range, check_threshold, require
from .encryption import KeyUser, allow_service, key_or_new
from .monitoring import sns as sns_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

#: Protocols for which SNS writes delivery-status logs.
DELIVERY_LOGGING_PROTOCOLS = (
    sns.LoggingProtocol.SQS,
    sns.LoggingProtocol.LAMBDA,
    sns.LoggingProtocol.HTTP,
    sns.LoggingProtocol.FIREHOSE,
    sns.LoggingProtocol.APPLICATION,
)

FilterPolicy = Mapping[str, "sns.SubscriptionFilter | sns.FilterOrPolicy"]


class SecureTopic(Construct):
    """An SNS topic (standard or FIFO) that is encrypted, TLS-only and failure-aware.

    Every subscription made with :meth:`subscribe_queue` gets its own
    dead-letter queue (a terminal :class:`SecureQueue` of the topic's type that
    alarms on any message), unless you pass one. Delivery status for every protocol that supports it is
    logged to two log groups that this construct owns (encrypted, with
    retention): ``sns/<region>/<account>/<topic>`` for successes (sampled) and
    ``.../Failure`` for failures. An alarm fires on any failed notification.

    :param fifo: a FIFO topic. Default: False (standard).
    :param content_based_deduplication: FIFO only. Default: False.
    :param high_throughput: FIFO only: throughput limits apply per message
        group rather than per topic (``FifoThroughputScope: MessageGroup``). Default: False.
    :param encryption_key: the CMK for the topic, its subscription DLQs and its
        delivery logs. Default: a new key with rotation.
    :param topic_name: the topic's name. Default: generated.
    :param display_name: Default: none.
    :param delivery_logging: log delivery status. Default: True.
    :param success_sample_rate: percentage of successful deliveries logged (0
        to 100). Default: 0 (failures only).
    :param failed_notifications_alarm_threshold: failed deliveries
        (``NumberOfNotificationsFailed``, sum over 5 minutes) that raise the alarm. Default: 1 (any).
    :param alarm_topic: where alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: decides removal policies and log retention. Default: from context.

    Attributes: ``topic``, ``key``, ``fifo``, ``delivery_log_groups``,
    ``subscription_dead_letter_queues`` (``sqs.IQueue``, one per subscription), ``alarms``.
    """

    monitoring_label = "topic"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        fifo: bool = False,
        content_based_deduplication: bool = False,
        high_throughput: bool = False,
        encryption_key: kms.IKey | None = None,
        topic_name: str | None = None,
        display_name: str | None = None,
        delivery_logging: bool = True,
        success_sample_rate: int = 0,
        failed_notifications_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_threshold("failed_notifications_alarm_threshold", failed_notifications_alarm_threshold, 1)
        require(fifo or not content_based_deduplication, "content_based_deduplication needs fifo=True")
        require(fifo or not high_throughput, "high_throughput needs fifo=True")
        check_range("success_sample_rate", success_sample_rate, 0, 100, "%")
        self._alarm_topic = alarm_topic
        self.fifo = fifo
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.topic = sns.Topic(
            self,
            "Resource",
            fifo=fifo or None,
            content_based_deduplication=content_based_deduplication or None,
            fifo_throughput_scope=sns.FifoThroughputScope.MESSAGE_GROUP if high_throughput else None,
            master_key=self.key,
            enforce_ssl=True,
            topic_name=topic_name,
            display_name=display_name,
        )
        # SNS encrypts with this key when it delivers to the subscription DLQs.
        # (Limited to the account: naming the topic's ARN would make the key
        # and the topic depend on each other.)
        allow_service(self.key, KeyUser.SNS)
        self.delivery_log_groups: list[logs.LogGroup] = []
        if delivery_logging:
            self._log_delivery_status(success_sample_rate)
        self.subscription_dead_letter_queues: list[sqs.IQueue] = []
        self.alarms: list[cloudwatch.Alarm] = [sns_monitoring.failed_notifications_alarm(self, self.topic, alarm_topic, failed_notifications_alarm_threshold)]

    def _log_delivery_status(self, success_sample_rate: int) -> None:
        stack = Stack.of(self)
        allow_service(self.key, KeyUser.LOGS)
        base = Fn.join("/", ["sns", stack.region, stack.account, self.topic.topic_name])
        success = logs.LogGroup(
            self,
            "DeliveryLog",
            log_group_name=base,
            encryption_key=self.key,
            retention=self.profile.log_retention,
            removal_policy=self.profile.removal_policy,
        )
        failure = logs.LogGroup(
            self,
            "DeliveryFailureLog",
            log_group_name=Fn.join("", [base, "/Failure"]),
            encryption_key=self.key,
            retention=self.profile.log_retention,
            removal_policy=self.profile.removal_policy,
        )
        self.delivery_log_groups = [success, failure]
        role = ManagedPolicyRole(
            self,
            "DeliveryLogRole",
            assumed_by=iam.ServicePrincipal("sns.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description="Lets SNS write delivery-status logs of one topic",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:PutMetricFilter", "logs:PutRetentionPolicy"],
                resources=[
                    stack.format_arn(service="logs", resource="log-group", resource_name=Fn.join("", [name, ":*"]), arn_format=ArnFormat.COLON_RESOURCE_NAME)
                    for name in (base, Fn.join("", [base, "/Failure"]))
                ],
            )
        )
        ack.aws_solutions_iam5_sns_delivery_log_streams(role.policy, self.topic)
        for protocol in DELIVERY_LOGGING_PROTOCOLS:
            self.topic.add_logging_config(
                protocol=protocol,
                failure_feedback_role=role,
                success_feedback_role=role,
                success_feedback_sample_rate=success_sample_rate,
            )

    def subscribe_queue(
        self,
        queue: SecureQueue | sqs.IQueue,
        *,
        filter_policy: FilterPolicy | None = None,
        filter_on_body: bool = False,
        raw_message_delivery: bool = True,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        construct_id: str | None = None,
    ) -> sqs.IQueue:
        """Subscribe ``queue`` (a :class:`SecureQueue` or any ``sqs.IQueue``, imported too) with its own subscription dead-letter queue.

        The queue's policy admits ``sqs:SendMessage`` from SNS for this topic
        only, and its key lets SNS use it for this account only
        (``kms:GenerateDataKey``, ``kms:Decrypt``); an imported queue or key has
        no policy here to change: grant those where it is defined.

        :param filter_policy: the subscription's filter policy. Values are
            ``sns.SubscriptionFilter`` (attribute filters) or, with
            ``filter_on_body``, ``sns.FilterOrPolicy`` (a ``SubscriptionFilter``
            is wrapped for you). Default: every message.
        :param filter_on_body: apply ``filter_policy`` to the message body
            (``FilterPolicyScope: MessageBody``) instead of its attributes. Default: False.
        :param raw_message_delivery: deliver the message body as is, without
            the SNS envelope. Default: True.
        :param dead_letter_queue: the subscription's DLQ, of the topic's type, used
            as it is. Default: a new terminal ``SecureQueue`` encrypted with the
            topic's key, alarmed on any message.
        :param construct_id: id of the subscription's DLQ construct. Default:
            the queue's construct id followed by ``SubscriptionDlq``.
        :returns: the subscription's dead-letter queue.
        """
        target = queue_of(queue)
        require(filter_policy is not None or not filter_on_body, "filter_on_body needs a filter_policy")
        kind = "FIFO" if self.fifo else "standard"
        require(fifo_of(queue) == self.fifo, f"a {kind} topic needs a {kind} queue")
        dead_letter, alarms = dead_letter_queue_for(
            self,
            construct_id or f"{queue.node.id}SubscriptionDlq",
            dead_letter_queue,
            role="dead-letter queue of an SNS subscription",
            fifo=self.fifo,
            encryption_key=self.key,
            alarm_topic=self._alarm_topic,
            profile=self.profile,
        )
        self.subscription_dead_letter_queues.append(dead_letter)
        self.alarms.extend(alarms)
        options: dict = {}
        if filter_policy is not None and filter_on_body:
            options["filter_policy_with_message_body"] = {
                k: sns.FilterOrPolicy.filter(v) if isinstance(v, sns.SubscriptionFilter) else v for k, v in filter_policy.items()
            }
        elif filter_policy is not None:
            options["filter_policy"] = dict(filter_policy)
        # Built by hand rather than with SqsSubscription, whose key-policy
        # statement for SNS has no condition at all; allow_service limits it
        # to this account (naming the topic would make key and topic depend
        # on each other when they share a key).
        policy = allow_service_to_send(queue, KeyUser.SNS, source_arn=self.topic.topic_arn)
        subscription = sns.Subscription(
            self,
            f"{queue.node.id}Subscription",
            topic=self.topic,
            protocol=sns.SubscriptionProtocol.SQS,
            endpoint=target.queue_arn,
            raw_message_delivery=raw_message_delivery,
            dead_letter_queue=dead_letter,
            **options,
        )
        if policy.policy_dependable is not None:
            # SNS confirms the subscription only once the queue admits it.
            subscription.node.add_dependency(policy.policy_dependable)
        return dead_letter

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """sns:Publish on the topic (it also authorises PublishBatch); kms:GenerateDataKey and kms:Decrypt on the key."""
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=["sns:Publish"], resource_arns=[self.topic.topic_arn])
        return grant.combine(self.key.grant(grantee, "kms:GenerateDataKey", "kms:Decrypt"))

    def metric_number_of_notifications_failed(self, **options) -> cloudwatch.Metric:
        """Failed deliveries. Default: sum over 5 minutes."""
        return sns_monitoring.notifications_failed(self.topic, **options)

    def metric_number_of_messages_published(self, **options) -> cloudwatch.Metric:
        """Messages published. Default: sum over 5 minutes."""
        return self.topic.metric_number_of_messages_published(**{"period": sns_monitoring.PERIOD, **options})

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """Widgets for a dashboard section: published, delivered, failed, filtered out (see :meth:`MonitoringDashboard.monitor`)."""
        return sns_monitoring.widgets(title, self.topic)
