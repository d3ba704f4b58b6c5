"""EventBus: a custom EventBridge bus with a CMK, an archive, a narrow bus policy and rules whose targets all have DLQs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._grants import allow_service_to_send
from ._interfaces import bus_of, fifo_of, function_of, is_queue, queue_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .encryption import KeyUser, allow_service, key_or_new
from .function import HandlerFunction
from .monitoring import eventbridge as eventbridge_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for, keyless_view

RuleTarget = SecureQueue | sqs.IQueue | HandlerFunction | lambda_.IFunction

#: Default retry policy of every rule target: give up after 2 hours or 10
#: attempts (EventBridge's own default is 24 hours and 185 attempts), then
#: the event goes to the target's DLQ, which alarms.
DEFAULT_MAX_EVENT_AGE = Duration.hours(2)
DEFAULT_RETRY_ATTEMPTS = 10


class EventBus(Construct):
    """A custom EventBridge bus that is encrypted, archived and failure-aware.

    - events, rules and targets encrypted with a customer-managed key;
      events that cannot be encrypted or decrypted go to a bus DLQ, which is
      encrypted with SQS-managed keys so that it stays writable when the CMK
      is not;
    - a bus policy admitting ``events:PutEvents`` only from the accounts and
      principals named (same-account callers need only an IAM grant);
    - an archive of every event (or of ``archive_event_pattern``), encrypted
      with the same key, kept for the profile's ``archive_retention``, for replay;
    - optional schema registry for versioned event schemas (:meth:`add_schema`);
    - :meth:`add_rule` gives every target its own DLQ (a terminal
      :class:`SecureQueue` that alarms on any message, or yours) and an
      explicit retry policy, and alarms on failed invocations and
      dead-lettered events.

    :param event_bus_name: Default: generated from the construct path.
    :param encryption_key: Default: a new key with rotation.
    :param allowed_accounts: other accounts whose principals may put events. Default: none.
    :param allowed_principals: other principals (e.g. roles) that may put events. Default: none.
    :param archive: keep an archive. Default: True.
    :param archive_retention: Default: the profile's ``archive_retention`` (sandbox 7 days, production 365 days).
    :param archive_event_pattern: archive only matching events. Default: every event of the bus.
    :param schema_discovery: let EventBridge infer schemas. EventBridge does not
        support discovery on a bus encrypted with a customer-managed key, so
        this raises ``ValueError``; register schemas with :meth:`add_schema`.
        Default: False.
    :param dead_letter_queue: the bus's DLQ, used as it is; it must stay writable
        when the bus's key is not (SQS-managed encryption, or another key).
        Default: a new terminal ``SecureQueue`` with SQS-managed encryption.
    :param alarm_topic: where alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``bus``, ``key``, ``dead_letter_queue`` (an ``sqs.IQueue``), ``archive`` and
    ``archive_retention`` (or None), ``registry`` (or None), ``rules``,
    ``rule_dead_letter_queues`` (``sqs.IQueue``, one per rule), ``alarms``.
    """

    monitoring_label = "rules"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_bus_name: str | None = None,
        encryption_key: kms.IKey | None = None,
        allowed_accounts: Sequence[str] = (),
        allowed_principals: Sequence[iam.IPrincipal] = (),
        archive: bool = True,
        archive_retention: Duration | None = None,
        archive_event_pattern: events.EventPattern | None = None,
        schema_discovery: bool = False,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        require(
            not schema_discovery,
            "schema_discovery is not supported by EventBridge on a bus encrypted with a customer-managed key; register schemas with add_schema() instead",
        )
        self._alarm_topic = alarm_topic
        self.key = key_or_new(self, encryption_key, self.profile)
        # EventBridge may use the key for this account only. The L2s get a
        # reference to the key instead of the key itself, because each would
        # add its own statement: one naming the bus (a dependency cycle when
        # the bus's DLQ shares the key) and one with no condition at all.
        allow_service(self.key, KeyUser.EVENTBRIDGE)
        key_reference = kms.Key.from_key_arn(self, "KeyReference", self.key.key_arn)
        # The bus's DLQ receives the events the bus could not encrypt or decrypt,
        # for example because the key is disabled: it must not depend on that key.
        self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
            self,
            "DeadLetterQueue",
            dead_letter_queue,
            role="dead-letter queue of an EventBridge bus",
            sqs_managed_encryption=True,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )
        self.bus = events.EventBus(
            self,
            "Resource",
            event_bus_name=event_bus_name,
            kms_key=key_reference,
            dead_letter_queue=self.dead_letter_queue,
            description="Messaging blueprints event bus",
        )
        # Events the bus cannot encrypt or decrypt go to its DLQ.
        allow_service_to_send(self.dead_letter_queue, KeyUser.EVENTBRIDGE, source_arn=self.bus.event_bus_arn)
        for index, account in enumerate(allowed_accounts):
            self._allow(f"AllowAccount{index}", iam.AccountPrincipal(account))
        for index, principal in enumerate(allowed_principals):
            self._allow(f"AllowPrincipal{index}", principal)

        self.archive: events.Archive | None = None
        self.archive_retention: Duration | None = None
        if archive:
            retention = archive_retention or self.profile.archive_retention
            check_duration_range("archive retention", retention, Duration.days(1), Duration.days(3650))
            self.archive = events.Archive(
                self,
                "Archive",
                source_event_bus=self.bus,
                event_pattern=archive_event_pattern or events.EventPattern(account=[self.bus.stack.account]),
                retention=retention,
                kms_key=key_reference,
                description="Every event of the bus, for replay",
            )
            self.archive_retention = retention
        self.registry: eventschemas.CfnRegistry | None = None
        self.rules: list[events.Rule] = []
        self.rule_dead_letter_queues: list[sqs.IQueue] = []
        self.alarms: list[cloudwatch.Alarm] = list(dead_letter_alarms)

    def _allow(self, sid: str, principal: iam.IPrincipal) -> None:
        self.bus.add_to_resource_policy(iam.PolicyStatement(sid=sid, principals=[principal], actions=["events:PutEvents"], resources=[self.bus.event_bus_arn]))

    def add_rule(
        self,
        construct_id: str,
        *,
        event_pattern: events.EventPattern,
        target: RuleTarget,
        description: str | None = None,
        max_event_age: Duration = DEFAULT_MAX_EVENT_AGE,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        message_group_id: str | None = None,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        failed_invocations_alarm_threshold: int = 1,
        dead_lettered_alarm_threshold: int = 1,
        dead_letter_failures_alarm_threshold: int = 1,
    ) -> events.Rule:
        """A rule on this bus with one target, its DLQ, its retry policy and its alarms.

        A queue target's policy admits ``sqs:SendMessage`` from EventBridge for
        this rule only, and its key lets EventBridge use it for this account only;
        an imported queue or key has no policy here to change: grant those where
        it is defined. A function target gets a resource-based permission for
        the rule (its role is not needed: an imported function works too).

        :param event_pattern: what the rule matches (EventBridge content filtering:
            prefix, numeric, anything-but, exists, ...). Required.
        :param target: a queue (``SecureQueue`` or any ``sqs.IQueue``) or a function
            (``HandlerFunction`` or any ``lambda_.IFunction``), imported ones too. Required.
        :param max_event_age: 1 minute to 24 hours. Default: 2 hours.
        :param retry_attempts: 0 to 185. Default: 10.
        :param message_group_id: required for a FIFO queue target. Default: none.
        :param dead_letter_queue: the target's DLQ, used as it is. Default: a new
            terminal ``SecureQueue`` encrypted with the bus's key, alarmed on any message.
        :param failed_invocations_alarm_threshold: ``FailedInvocations`` in 5 minutes that raise the alarm. Default: 1 (any).
        :param dead_lettered_alarm_threshold: ``InvocationsSentToDlq`` in 5 minutes that raise the alarm. Default: 1 (any).
        :param dead_letter_failures_alarm_threshold: ``InvocationsFailedToBeSentToDlq`` (lost events) in 5 minutes
            that raise the alarm. Default: 1 (any).
        """
        check_duration_range("max_event_age", max_event_age, Duration.minutes(1), Duration.hours(24))
        check_range("retry_attempts", retry_attempts, 0, 185)
        thresholds = {
            "FailedInvocations": failed_invocations_alarm_threshold,
            "InvocationsSentToDlq": dead_lettered_alarm_threshold,
            "InvocationsFailedToBeSentToDlq": dead_letter_failures_alarm_threshold,
        }
        for name, value in thresholds.items():
            check_threshold(f"{name} alarm threshold", value, 1)
        dead_letter, dead_letter_alarms = dead_letter_queue_for(
            self,
            f"{construct_id}DeadLetterQueue",
            dead_letter_queue,
            role="dead-letter queue of an EventBridge rule target",
            encryption_key=self.key,
            alarm_topic=self._alarm_topic,
            profile=self.profile,
        )
        self.rule_dead_letter_queues.append(dead_letter)
        options = dict(dead_letter_queue=dead_letter, max_event_age=max_event_age, retry_attempts=retry_attempts)
        queue_target = is_queue(target)
        if queue_target:
            fifo = fifo_of(target)
            require(not fifo or message_group_id is not None, "a FIFO queue target needs a message_group_id")
            # The queue's policy and key policy are added below (allow_service_to_send), not by the L2 target.
            view = keyless_view(self, f"{construct_id}Target", queue_of(target), fifo=fifo)
            rule_target: events.IRuleTarget = targets.SqsQueue(view, message_group_id=message_group_id, **options)
        else:
            rule_target = targets.LambdaFunction(function_of(target), **options)
        rule = events.Rule(
            self,
            construct_id,
            event_bus=self.bus,
            event_pattern=event_pattern,
            description=description,
            targets=[rule_target],
        )
        if queue_target:
            allow_service_to_send(target, KeyUser.EVENTBRIDGE, source_arn=rule.rule_arn)
        alarms = eventbridge_monitoring.rule_alarms(rule, self.bus.event_bus_name, eventbridge_monitoring.rule_name_of(rule), self._alarm_topic, thresholds)
        self.rules.append(rule)
        self.alarms.extend(alarms + dead_letter_alarms)
        return rule

    def add_schema(self, schema_name: str, content: str, *, description: str | None = None) -> eventschemas.CfnSchema:
        """Register a JSON Schema (draft 4) for one event type and version in the bus's registry."""
        if self.registry is None:
            self.registry = eventschemas.CfnRegistry(self, "Registry", description="Event schemas of the bus, one per type and version")
        schema = eventschemas.CfnSchema(
            self,
            "Schema" + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", schema_name)),
            registry_name=self.registry.attr_registry_name,
            type="JSONSchemaDraft4",
            content=content,
            schema_name=schema_name,
            description=description,
        )
        return schema

    def grant_put_events(self, grantee: iam.IGrantable, *, sources: Sequence[str] = ()) -> iam.Grant:
        """events:PutEvents on this bus, for events of ``sources`` only when given.

        Callers need no key permission: EventBridge encrypts with its own access to the key.

        :param sources: the ``source`` values the grantee may publish (condition
            ``events:source``). Default: any source.
        """
        return grant_put_events(grantee, self, sources=sources)

    def metric_rule(self, rule: events.IRule, metric_name: str, **options) -> cloudwatch.Metric:
        """A metric of a rule on this bus (``MatchedEvents``, ``FailedInvocations``, ``InvocationsSentToDlq``...), under the
        ``EventBusName`` and ``RuleName`` dimensions EventBridge gives rules of a custom bus. Default: sum over 5 minutes."""
        return eventbridge_monitoring.rule_metric(self.bus.event_bus_name, eventbridge_monitoring.rule_name_of(rule), metric_name, **options)

    def dashboard_widgets(self, title: str, rules: Sequence[events.IRule] | None = None) -> list[cloudwatch.IWidget]:
        """A dashboard section (see :meth:`MonitoringDashboard.monitor`): matched, failed and dead-lettered events per rule.

        :param rules: Default: every rule made with :meth:`add_rule`.
        """
        widgets: list[cloudwatch.IWidget] = []
        for rule in self.rules if rules is None else rules:
            widgets += eventbridge_monitoring.rule_widgets(f"{title} {rule.node.id}", self.bus.event_bus_name, eventbridge_monitoring.rule_name_of(rule))
        return widgets


def grant_put_events(grantee: iam.IGrantable, bus: EventBus | events.IEventBus, *, sources: Sequence[str] = ()) -> iam.Grant:
    """``events:PutEvents`` on ``bus`` (an :class:`EventBus` or any ``events.IEventBus``), for events of ``sources`` only when given.

    :param sources: the ``source`` values the grantee may publish (condition ``events:source``). Default: any source.
    """
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["events:PutEvents"],
        resource_arns=[bus_of(bus).event_bus_arn],
        conditions={"StringEquals": {"events:source": list(sources)}} if sources else None,
    )
