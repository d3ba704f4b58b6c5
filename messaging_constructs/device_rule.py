"""DeviceRule: MQTT device messages into an EventStream through an AWS IoT Core topic rule, failures to a queue."""

from __future__ import annotations

import re

from aws_cdk import Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._grants import grant_send_messages
from ._iam import ManagedPolicyRole
from ._interfaces import queue_of
from ._validation import require
from .encryption import key_or_new
from .event_stream import EventStream
from .monitoring._alarms import alarm_topic_for, make_alarm
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_PERIOD = Duration.minutes(5)


class DeviceRule(Construct):
    """Device messages published over MQTT to ``<topic_prefix>/<thing name>/events``, put on ``stream``.

    - an AWS IoT Core topic rule (SQL version 2016-03-23)::

          SELECT *, topic(N) AS <device_field>, '<platform>' AS platform FROM '<topic_prefix>/+/events'

      which adds the thing name from the topic (a device cannot claim
      another's: the policy below lets it publish on its own topic only) and
      the platform, and puts each message on the stream with
      ``partition_key`` (a substitution template; default the message's
      ``user_id``, so that one user's events stay on one shard);
    - an error action: when the Kinesis action fails (throttling, a missing
      partition key, the key), IoT sends a message with the rule, topic,
      client id, the payload in base64 and the reason to the error queue,
      which alarms as soon as it holds one;
    - an IoT policy (``device_policy``) to attach to device certificates:
      connect with the client id of the thing the certificate is attached
      to, publish on that thing's topic only.

    IoT Core has no customer-managed key for messages in flight (MQTT over
    TLS); the stream and the error queue are encrypted with their CMKs, which
    the rule's role may use for exactly those (``kms:GenerateDataKey``).

    :param stream: where messages go. Required.
    :param topic_prefix: the topics' first levels, e.g. ``analytics/devices``. Required.
    :param partition_key: Default: ``${user_id}``.
    :param device_field: the field the thing name goes in. Default: ``device_id``.
    :param platform: the value of the ``platform`` field added to every message. Default: ``device``.
    :param rule_name: letters, digits and ``_`` only (IoT's rule; CloudFormation's generated names may hold ``-``).
        Default: the construct's unique id (its path and a hash, letters and digits).
    :param error_queue: Default: a new terminal :class:`SecureQueue` encrypted with ``encryption_key``.
    :param encryption_key: of the new error queue. Default: the stream's key.
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``rule`` (``iot.CfnTopicRule``), ``sql``, ``topic_filter``, ``role``, ``error_queue``,
    ``device_policy`` (``iot.CfnPolicy``), ``alarms``.
    """

    monitoring_label = "device rule"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: EventStream,
        topic_prefix: str,
        partition_key: str = "${user_id}",
        device_field: str = "device_id",
        platform: str = "device",
        rule_name: str | None = None,
        error_queue: SecureQueue | sqs.IQueue | None = None,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        require(bool(_TOPIC_PREFIX.fullmatch(topic_prefix)), f"topic_prefix must be topic levels of letters, digits, _ and -, got {topic_prefix!r}")
        require(bool(_FIELD.fullmatch(device_field)), f"device_field must be a lower-case field name, got {device_field!r}")
        require(bool(re.fullmatch(r"[a-z0-9_]{1,32}", platform)), f"platform must be lower-case letters, digits or _, got {platform!r}")
        require(rule_name is None or bool(re.fullmatch(r"[A-Za-z0-9_]{1,128}", rule_name)), f"rule_name must be letters, digits and _ (IoT), got {rule_name!r}")
        require(partition_key.strip() != "", "partition_key must not be empty: Kinesis refuses an empty key")
        key = key_or_new(self, encryption_key, self.profile) if encryption_key is not None else stream.key
        queue, queue_alarms = dead_letter_queue_for(
            self, "ErrorQueue", error_queue, role="error action of an AWS IoT topic rule", encryption_key=key, alarm_topic=alarm_topic, profile=self.profile
        )
        self.error_queue: sqs.IQueue = queue_of(queue)
        self.role = ManagedPolicyRole(self, "Role", assumed_by=iam.ServicePrincipal("iot.amazonaws.com"), description=f"IoT rule {self.node.path}")
        stream.grant_write(self.role)
        grant_send_messages(self.role, queue)

        level = topic_prefix.count("/") + 2  # topic(N): the thing name's level, 1-based
        self.topic_filter = f"{topic_prefix}/+/events"
        self.sql = f"SELECT *, topic({level}) AS {device_field}, '{platform}' AS platform FROM '{self.topic_filter}'"
        self.rule = iot.CfnTopicRule(
            self,
            "Resource",
            rule_name=rule_name or Names.unique_id(self)[-128:],
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=self.sql,
                aws_iot_sql_version="2016-03-23",
                rule_disabled=False,
                description=f"Device messages on {self.topic_filter} to the stream",
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        kinesis=iot.CfnTopicRule.KinesisActionProperty(stream_name=stream.stream_name, partition_key=partition_key, role_arn=self.role.role_arn)
                    )
                ],
                error_action=iot.CfnTopicRule.ActionProperty(
                    sqs=iot.CfnTopicRule.SqsActionProperty(queue_url=self.error_queue.queue_url, role_arn=self.role.role_arn, use_base64=False)
                ),
            ),
        )
        # IoT checks that it may assume the role when the rule is created: the policy must be there first.
        self.rule.node.add_dependency(self.role.policy)

        stack = Stack.of(self)
        thing = "${iot:Connection.Thing.ThingName}"
        self.device_policy = iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": f"arn:{stack.partition}:iot:{stack.region}:{stack.account}:client/{thing}",
                        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                    },
                    {
                        "Effect": "Allow",
                        "Action": "iot:Publish",
                        "Resource": f"arn:{stack.partition}:iot:{stack.region}:{stack.account}:topic/{topic_prefix}/{thing}/events",
                    },
                ],
            },
        )
        # AWS/IoT rule metrics have the one dimension RuleName (TopicMatch, ParseError, RuleMessageThrottled, RuleNotFound);
        # a failed action has no per-rule metric there, so the error queue's alarm is the one for action failures.
        self.alarms: list[cloudwatch.Alarm] = [
            *queue_alarms,
            make_alarm(
                self,
                "ParseErrorsAlarm",
                metric=self.metric("ParseError"),
                threshold=1,
                alarm_topic=alarm_topic,
                description=f"IoT rule {self.node.path}: messages that are not JSON; the rule cannot read them and no action runs (fix the device).",
            ),
            make_alarm(
                self,
                "ThrottledAlarm",
                metric=self.metric("RuleMessageThrottled"),
                threshold=1,
                alarm_topic=alarm_topic,
                description=f"IoT rule {self.node.path}: messages throttled by the rules engine's quota; raise it or spread the load.",
            ),
        ]

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """A rule metric of ``AWS/IoT`` (dimension ``RuleName``). Default: sum over 5 minutes."""
        return cloudwatch.Metric(
            namespace="AWS/IoT", metric_name=metric_name, dimensions_map={"RuleName": self.rule.ref}, **{"statistic": "Sum", "period": _PERIOD, **options}
        )

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.GraphWidget(
                title=f"{title}: messages matched, not JSON, throttled",
                left=[self.metric(n) for n in ("TopicMatch", "ParseError", "RuleMessageThrottled")],
                width=12,
            )
        ]
