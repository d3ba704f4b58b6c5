"""MessagingChecks: a cdk-nag pack for what this library promises of a messaging app, checked on any CDK app.

Add it beside the other packs::

    from aws_cdk import Validations
    from messaging_constructs.messaging_checks import MessagingChecks

    Validations.of(app).add_plugins(MessagingChecks(app))

Each rule reads the synthesized template of the resource's stack (what
CloudFormation will get, overrides included), so it finds a queue's alarm or a dead-letter queue's users wherever in the
stack they are, whoever wrote them. A finding is acknowledged like any other
cdk-nag finding (``MessagingChecks-<rule>``). cdk-nag is an optional extra of
the library: importing this module needs it, nothing else does.

Rules (docs/messaging-checks.md gives the reason for each):

- ``DeadLetterQueueAlarm``: a queue that is a dead-letter destination (of a
  queue, an SNS subscription, a rule target, a pipe, a schedule, an event
  source mapping, a function) has an alarm on its visible messages.
- ``SubscriptionRedrive``: an SNS subscription to a queue or a function has a
  redrive policy (its dead-letter queue).
- ``TargetDeadLetter``: every EventBridge rule target and every schedule has
  a dead-letter queue and a retry policy; a pipe from a stream has one.
- ``EventSourceFailures``: an event source mapping reports batch item
  failures where its source allows (SQS, Kinesis, DynamoDB streams, Kafka),
  and a stream or Kafka mapping has an on-failure destination, an SQS one a
  source queue with a redrive policy.
- ``ServiceKeyAccess``: a CMK-encrypted queue or topic that a service delivers
  to (SNS, EventBridge, CloudWatch alarms, S3 notifications) has a key policy
  that lets that service principal use the key, with a source condition
  (CloudWatch's, as AWS documents it, without).
- ``BrokerPrivate``: an Amazon MQ broker is not publicly accessible, runs in
  subnets given, logs (general; and audit for ActiveMQ), and an ActiveMQ
  broker is encrypted with a customer-managed key.
- ``KafkaClientAuth``: an MSK cluster takes IAM or TLS client authentication
  only (no unauthenticated access), encrypts in transit with TLS only and at
  rest with a customer-managed key; a serverless cluster uses IAM.
- ``AlarmMetrics``: every metric an alarm watches (its own, or each
  ``MetricStat`` of its ``Metrics``) in an AWS namespace that
  ``metric_dimensions`` documents uses a set of dimension names AWS publishes
  that metric under, and no dimension value is the ``Ref`` of a resource whose
  ``Ref`` is not what the dimension holds (a queue's URL, a topic's ARN, a
  broker's id), nor an ARN where the dimension holds a name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import CfnResource, Stack, Stage
from cdk_nag import IApplyRule, NagMessageLevel, NagPack, NagRuleCompliance
from constructs import IConstruct

from ._templates import referenced
from .metric_dimensions import NAMESPACES, dimension_problem

PACK_NAME = "MessagingChecks"


class StackView:
    """One stack's resources as its synthesized template has them: logical id to ``(type, properties)``.

    cdk-nag runs its packs once the app is synthesized, so the template on disk is the one CloudFormation will get,
    every override included. (To run the pack on a scope yourself, synthesize its app first: ``app.synth()``.)
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        path = Path(Stage.of(stack).outdir) / stack.template_file
        if not path.is_file():
            raise RuntimeError(f"{PACK_NAME} reads the synthesized template of {stack.node.path}; synthesize the app first ({path} is missing)")
        template = json.loads(path.read_text())
        self.resources: dict[str, tuple[str, dict[str, Any]]] = {
            logical_id: (resource["Type"], resource.get("Properties") or {}) for logical_id, resource in template.get("Resources", {}).items()
        }

    def of_type(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, (kind, properties) in self.resources.items():
            if kind in types:
                yield logical_id, properties

    def type_of(self, value: Any) -> str | None:
        """The type of the resource a ``Ref`` or ``Fn::GetAtt`` names, or None."""
        logical_id = referenced(value)
        return self.resources[logical_id][0] if logical_id in self.resources else None


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# --- rules ----------------------------------------------------------------------------------------------------------


def dead_letter_destinations(view: StackView) -> set[str]:
    """Every queue (logical id) the stack names as a dead-letter or on-failure destination."""
    found: list[Any] = []
    for _, queue in view.of_type("AWS::SQS::Queue"):
        found.append(_dig(queue, "RedrivePolicy", "deadLetterTargetArn"))
    for _, subscription in view.of_type("AWS::SNS::Subscription"):
        found.append(_dig(subscription, "RedrivePolicy", "deadLetterTargetArn"))
    for _, rule in view.of_type("AWS::Events::Rule"):
        found.extend(_dig(target, "DeadLetterConfig", "Arn") for target in rule.get("Targets") or [])
    for _, schedule in view.of_type("AWS::Scheduler::Schedule"):
        found.append(_dig(schedule, "Target", "DeadLetterConfig", "Arn"))
    for _, pipe in view.of_type("AWS::Pipes::Pipe"):
        for parameters in (_dig(pipe, "SourceParameters") or {}).values():
            found.append(_dig(parameters, "DeadLetterConfig", "Arn"))
    for _, mapping in view.of_type("AWS::Lambda::EventSourceMapping"):
        found.append(_dig(mapping, "DestinationConfig", "OnFailure", "Destination"))
    for _, function in view.of_type("AWS::Lambda::Function"):
        found.append(_dig(function, "DeadLetterConfig", "TargetArn"))
    for _, config in view.of_type("AWS::Lambda::EventInvokeConfig"):
        found.append(_dig(config, "DestinationConfig", "OnFailure", "Destination"))
    return {logical_id for value in found if (logical_id := referenced(value)) and view.type_of(value) == "AWS::SQS::Queue"}


def _alarm_metrics(alarm: Mapping[str, Any]) -> Iterator[tuple[Any, Any, Any]]:
    """``(namespace, metric name, dimensions)`` of the metric an alarm watches, or of each ``MetricStat`` of its ``Metrics``.

    Math expressions and Metrics Insights queries name no metric of their own; the metrics they use are ``MetricStat`` entries.
    """
    if "MetricName" in alarm:
        yield alarm.get("Namespace"), alarm.get("MetricName"), alarm.get("Dimensions")
    for query in alarm.get("Metrics") or []:
        metric = _dig(query, "MetricStat", "Metric")
        if isinstance(metric, Mapping):
            yield metric.get("Namespace"), metric.get("MetricName"), metric.get("Dimensions")


def _watches_visible_messages(alarm: Mapping[str, Any], queue: str) -> bool:
    def is_the_metric(namespace: Any, name: Any, dimensions: Any) -> bool:
        names = {d.get("Name"): d.get("Value") for d in dimensions or []}
        return (
            namespace == "AWS/SQS" and name == "ApproximateNumberOfMessagesVisible" and set(names) == {"QueueName"} and referenced(names["QueueName"]) == queue
        )

    return any(is_the_metric(*metric) for metric in _alarm_metrics(alarm))


def dead_letter_queue_alarm(node: CfnResource, view: StackView) -> bool:
    queue = view.stack.get_logical_id(node)
    if queue not in dead_letter_destinations(view):
        return True
    return any(_watches_visible_messages(alarm, queue) for _, alarm in view.of_type("AWS::CloudWatch::Alarm"))


def subscription_redrive(node: CfnResource, view: StackView) -> bool:
    _, subscription = view.resources[view.stack.get_logical_id(node)]
    if subscription.get("Protocol") not in ("sqs", "lambda"):
        return True
    return bool(_dig(subscription, "RedrivePolicy", "deadLetterTargetArn"))


def target_dead_letter(node: CfnResource, view: StackView) -> bool:
    kind, resource = view.resources[view.stack.get_logical_id(node)]
    if kind == "AWS::Events::Rule":
        return all(_dig(t, "DeadLetterConfig", "Arn") and t.get("RetryPolicy") for t in resource.get("Targets") or [])
    if kind == "AWS::Scheduler::Schedule":
        return bool(_dig(resource, "Target", "DeadLetterConfig", "Arn") and _dig(resource, "Target", "RetryPolicy"))
    # A pipe: a stream source takes a dead-letter config; a queue source dead-letters through the queue's redrive.
    sources = _dig(resource, "SourceParameters") or {}
    for name in ("KinesisStreamParameters", "DynamoDBStreamParameters", "ManagedStreamingKafkaParameters", "SelfManagedKafkaParameters"):
        if name in sources and not _dig(sources, name, "DeadLetterConfig", "Arn"):
            return False
    if "SqsQueueParameters" in sources or view.type_of(resource.get("Source")) == "AWS::SQS::Queue":
        return _queue_redrives(resource.get("Source"), view)
    return True


def _queue_redrives(arn: Any, view: StackView) -> bool:
    logical_id = referenced(arn)
    if logical_id not in view.resources:
        return True  # a queue of another stack: its own stack is checked
    return bool(_dig(view.resources[logical_id][1], "RedrivePolicy", "deadLetterTargetArn"))


_BATCH_ITEM_SOURCES = {"AWS::SQS::Queue": "sqs", "AWS::Kinesis::Stream": "stream", "AWS::DynamoDB::Table": "stream", "AWS::MSK::Cluster": "kafka"}


def event_source_failures(node: CfnResource, view: StackView) -> bool:
    _, mapping = view.resources[view.stack.get_logical_id(node)]
    if mapping.get("Queues"):
        return True  # Amazon MQ: no partial batch response; the broker dead-letters, and alarms there
    source = _BATCH_ITEM_SOURCES.get(view.type_of(mapping.get("EventSourceArn")) or "")
    if source is None and (mapping.get("Topics") or mapping.get("SelfManagedEventSource")):
        source = "kafka"
    if source is None:
        return True  # a source of another stack or one this rule does not know
    reports = "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or [])
    if source == "sqs":
        return reports and _queue_redrives(mapping.get("EventSourceArn"), view)
    return reports and bool(_dig(mapping, "DestinationConfig", "OnFailure", "Destination"))


def broker_private(node: CfnResource, view: StackView) -> bool:
    _, broker = view.resources[view.stack.get_logical_id(node)]
    active_mq = str(broker.get("EngineType", "")).upper() == "ACTIVEMQ"
    logs = broker.get("Logs") or {}
    encrypted = not active_mq or (_dig(broker, "EncryptionOptions", "UseAwsOwnedKey") is False and _dig(broker, "EncryptionOptions", "KmsKeyId"))
    return bool(
        broker.get("PubliclyAccessible") is False and broker.get("SubnetIds") and logs.get("General") and (logs.get("Audit") or not active_mq) and encrypted
    )


def kafka_client_auth(node: CfnResource, view: StackView) -> bool:
    kind, cluster = view.resources[view.stack.get_logical_id(node)]
    authentication = cluster.get("ClientAuthentication") or {}
    if kind == "AWS::MSK::ServerlessCluster":
        return _dig(authentication, "Sasl", "Iam", "Enabled") is True
    if _dig(authentication, "Unauthenticated", "Enabled") is True:
        return False
    iam_or_tls = _dig(authentication, "Sasl", "Iam", "Enabled") is True or _dig(authentication, "Tls", "Enabled") is True
    transit = _dig(cluster, "EncryptionInfo", "EncryptionInTransit") or {}
    tls_only = transit.get("ClientBroker", "TLS") == "TLS" and transit.get("InCluster", True) is not False
    at_rest = bool(_dig(cluster, "EncryptionInfo", "EncryptionAtRest", "DataVolumeKMSKeyId"))
    return iam_or_tls and tls_only and at_rest


def _services_delivering(view: StackView, target: str) -> set[str]:
    """The AWS services the stack has deliver to the queue or topic ``target`` (a logical id)."""
    services: set[str] = set()
    for _, subscription in view.of_type("AWS::SNS::Subscription"):
        for value in (subscription.get("Endpoint"), _dig(subscription, "RedrivePolicy", "deadLetterTargetArn")):
            if referenced(value) == target:
                services.add("sns.amazonaws.com")
    for _, rule in view.of_type("AWS::Events::Rule"):
        for rule_target in rule.get("Targets") or []:
            if target in (referenced(rule_target.get("Arn")), referenced(_dig(rule_target, "DeadLetterConfig", "Arn"))):
                services.add("events.amazonaws.com")
    for _, alarm in view.of_type("AWS::CloudWatch::Alarm"):
        actions = [*(alarm.get("AlarmActions") or []), *(alarm.get("OKActions") or []), *(alarm.get("InsufficientDataActions") or [])]
        if any(referenced(action) == target for action in actions):
            services.add("cloudwatch.amazonaws.com")
    for _, bucket in view.of_type("AWS::S3::Bucket"):
        notifications = bucket.get("NotificationConfiguration") or {}
        for configuration in [*(notifications.get("QueueConfigurations") or []), *(notifications.get("TopicConfigurations") or [])]:
            if target in (referenced(configuration.get("Queue")), referenced(configuration.get("Topic"))):
                services.add("s3.amazonaws.com")
    return services


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_is(principal: Any, service: str) -> bool:
    """``sns.amazonaws.com``, or a join of it with tokens (``sns.`` and the partition's URL suffix) names the service."""
    if isinstance(principal, Mapping) and isinstance(principal.get("Fn::Join"), list):
        principal = "".join(part for part in principal["Fn::Join"][1] if isinstance(part, str))
    return isinstance(principal, str) and principal.startswith(service.split(".amazonaws.com")[0] + ".")


def _grants_service(statement: Mapping[str, Any], service: str) -> bool:
    """An Allow statement for the service principal, with kms:GenerateDataKey and a source condition."""
    if statement.get("Effect") != "Allow":
        return False
    named = any(_principal_is(principal, service) for principal in _as_list(_dig(statement, "Principal", "Service")))
    actions = {str(action) for action in _as_list(statement.get("Action"))}
    generates = bool(actions & {"kms:GenerateDataKey", "kms:GenerateDataKey*", "kms:*"})
    conditions = statement.get("Condition") or {}
    limited = any(key in ("aws:SourceAccount", "aws:SourceArn") for operator in conditions.values() if isinstance(operator, Mapping) for key in operator)
    # CloudWatch's alarm-topic key policy is documented without conditions (AlarmThatSendsEmail.html): a condition key
    # CloudWatch might not send to KMS would lose notifications; the topic's own policy limits who publishes.
    return named and generates and (limited or service == "cloudwatch.amazonaws.com")


def service_key_access(node: CfnResource, view: StackView) -> bool:
    target = view.stack.get_logical_id(node)
    _, resource = view.resources[target]
    key = referenced(resource.get("KmsMasterKeyId"))
    if key is None or view.type_of(resource.get("KmsMasterKeyId")) != "AWS::KMS::Key":
        return True  # no CMK, or one this stack does not hold (its own stack is checked)
    statements = _as_list(_dig(view.resources[key][1], "KeyPolicy", "Statement") or [])
    return all(any(_grants_service(statement, service) for statement in statements) for service in _services_delivering(view, target))


#: Resource types whose ``Ref`` is not the name CloudWatch puts in a dimension, and what it is instead (the "Return
#: values" of each type in the CloudFormation reference). An ARN is right where the dimension holds one
#: (``StateMachineArn``, ``ActivityArn``, ...: every such dimension name ends in ``Arn``).
REF_IS_NOT_A_NAME: Mapping[str, str] = {
    "AWS::SQS::Queue": "the queue URL",
    "AWS::SNS::Topic": "the topic ARN",
    "AWS::MSK::Cluster": "the cluster ARN",
    "AWS::MSK::ServerlessCluster": "the cluster ARN",
    "AWS::AmazonMQ::Broker": "the broker ID",
    "AWS::ApiGateway::RestApi": "the API ID",
    "AWS::StepFunctions::StateMachine": "the state machine ARN",
    "AWS::StepFunctions::Activity": "the activity ARN",
    "AWS::Lambda::Alias": "the alias ARN",
    "AWS::Lambda::Version": "the version ARN",
}


def _on_custom_bus(rule: Mapping[str, Any], view: StackView) -> bool:
    """The rule is on a custom event bus (its ``Ref`` is then ``<bus>|<rule>``); a bus named by a token this stack cannot read is not known to be."""
    bus = rule.get("EventBusName")
    if isinstance(bus, str):
        return bus != "default" and not bus.endswith(":event-bus/default")
    return view.type_of(bus) == "AWS::Events::EventBus"


def _value_problem(dimension: str, value: Any, view: StackView) -> str | None:
    """Why ``value`` is not what CloudWatch puts in ``dimension``, when it names a resource of the stack by its ``Ref`` or an ARN."""
    logical_id = referenced(value)
    if logical_id not in view.resources:
        return None  # a literal, a parameter, or a resource of another stack
    kind, properties = view.resources[logical_id]
    holds_arn = dimension.endswith("Arn")
    if "Ref" in value:
        returns = REF_IS_NOT_A_NAME.get(kind)
        if kind == "AWS::Events::Rule" and _on_custom_bus(properties, view):
            returns = "<bus name>|<rule name> (a rule on a custom event bus)"
        if returns and not (holds_arn and returns.endswith("ARN")):
            return f"{dimension} is the Ref of {logical_id} ({kind}), which is {returns}"
        return None
    attribute = value["Fn::GetAtt"][1] if len(value["Fn::GetAtt"]) > 1 else None
    if isinstance(attribute, str) and attribute.endswith("Arn") and not holds_arn:
        return f"{dimension} is the {attribute} of {logical_id} ({kind}), an ARN"
    return None


def alarm_metric_problems(alarm: Mapping[str, Any], view: StackView) -> list[str]:
    """What is wrong with the metrics the alarm watches: dimension names AWS does not publish a metric under, or a value that is not a name.

    Only namespaces ``metric_dimensions`` documents are judged; in a custom namespace the publisher chooses the dimensions.
    """
    problems: list[str] = []
    for namespace, name, dimensions in _alarm_metrics(alarm):
        if not isinstance(namespace, str) or namespace not in NAMESPACES or not isinstance(dimensions, list | None):
            continue  # a namespace the data does not hold, or dimensions chosen at deploy time
        entries = [d for d in dimensions or [] if isinstance(d, Mapping)]
        names = [d.get("Name") for d in entries]
        if len(entries) == len(dimensions or []) and all(isinstance(n, str) for n in names):
            problem = dimension_problem(namespace, name if isinstance(name, str) else None, names)
            if problem:
                problems.append(problem)
        problems.extend(problem for d in entries if isinstance(d.get("Name"), str) and (problem := _value_problem(d["Name"], d.get("Value"), view)))
    return problems


def alarm_metrics(node: CfnResource, view: StackView) -> bool:
    _, alarm = view.resources[view.stack.get_logical_id(node)]
    return not alarm_metric_problems(alarm, view)


@dataclass(frozen=True)
class Rule:
    """One rule: the resource types it checks, what it says when they fail it, and the check."""

    suffix: str
    types: tuple[str, ...]
    info: str
    explanation: str
    check: Callable[[CfnResource, StackView], bool]


RULES: tuple[Rule, ...] = (
    Rule(
        "DeadLetterQueueAlarm",
        ("AWS::SQS::Queue",),
        "The queue is a dead-letter destination and no alarm watches its visible messages.",
        "A message that failed lands in a dead-letter queue and waits there in silence: an alarm on ApproximateNumberOfMessagesVisible "
        "(dimension QueueName) is what makes a failure visible.",
        dead_letter_queue_alarm,
    ),
    Rule(
        "SubscriptionRedrive",
        ("AWS::SNS::Subscription",),
        "The SNS subscription to a queue or function has no redrive policy.",
        "SNS drops a message it could not deliver after its retries unless the subscription has a dead-letter queue.",
        subscription_redrive,
    ),
    Rule(
        "TargetDeadLetter",
        ("AWS::Events::Rule", "AWS::Scheduler::Schedule", "AWS::Pipes::Pipe"),
        "A rule target, schedule or pipe has no dead-letter queue (or, for a rule target or schedule, no retry policy).",
        "EventBridge retries a failed delivery for up to 24 hours by default and then drops the event; with a dead-letter queue and a "
        "stated retry policy the event is kept and the failure is seen.",
        target_dead_letter,
    ),
    Rule(
        "EventSourceFailures",
        ("AWS::Lambda::EventSourceMapping",),
        "The event source mapping does not report batch item failures, or has no failure destination.",
        "Without partial batch responses one bad record fails and retries its whole batch; without an on-failure destination (or, for SQS, "
        "the source queue's redrive policy) records that keep failing are dropped or block their shard.",
        event_source_failures,
    ),
    Rule(
        "ServiceKeyAccess",
        ("AWS::SQS::Queue", "AWS::SNS::Topic"),
        "A service delivers to this CMK-encrypted queue or topic, and the key policy does not let that service use the key "
        "(kms:GenerateDataKey, limited by aws:SourceAccount or aws:SourceArn).",
        "SNS, EventBridge, CloudWatch alarms and S3 encrypt what they deliver with the target's key; if the key policy does not allow "
        "their service principal, every delivery fails (to a DLQ at best, silently for an alarm's notification).",
        service_key_access,
    ),
    Rule(
        "BrokerPrivate",
        ("AWS::AmazonMQ::Broker",),
        "The Amazon MQ broker is public, has no subnets, does not log, or (ActiveMQ) is not encrypted with a customer-managed key.",
        "A broker holds the messages themselves: it belongs in private subnets, with its general (and ActiveMQ audit) logs on, "
        "and under a key the account controls.",
        broker_private,
    ),
    Rule(
        "KafkaClientAuth",
        ("AWS::MSK::Cluster", "AWS::MSK::ServerlessCluster"),
        "The MSK cluster allows unauthenticated clients, plaintext traffic, or has no customer-managed key at rest.",
        "Kafka clients should authenticate with IAM or TLS and talk TLS only; a provisioned cluster's data should be under a key the account controls.",
        kafka_client_auth,
    ),
    Rule(
        "AlarmMetrics",
        ("AWS::CloudWatch::Alarm",),
        "The alarm watches a metric AWS does not publish: its dimension names are not a set AWS documents for that namespace and metric, "
        "or a dimension value names a resource by something other than what the dimension holds (a queue's Ref is its URL, a topic's its ARN).",
        "A metric is its namespace, name and dimensions; under any other dimensions it never receives data, and an alarm that treats "
        "missing data as not breaching stays OK for ever. Synth, cdk-nag and cfn-lint accept such an alarm.",
        alarm_metrics,
    ),
)


@jsii.implements(IApplyRule)
class _Application:
    """One rule applied to one resource, in the shape cdk-nag's ``applyRule`` takes."""

    def __init__(self, node: CfnResource, rule: Rule, view: Callable[[], StackView]) -> None:
        self._node, self._rule, self._view = node, rule, view

    @property
    def node(self) -> CfnResource:
        return self._node

    @node.setter
    def node(self, value: CfnResource) -> None:
        self._node = value

    @property
    def info(self) -> str:
        return self._rule.info

    @info.setter
    def info(self, value: str) -> None:
        pass

    @property
    def explanation(self) -> str:
        return self._rule.explanation

    @explanation.setter
    def explanation(self, value: str) -> None:
        pass

    @property
    def level(self) -> NagMessageLevel:
        return NagMessageLevel.ERROR

    @level.setter
    def level(self, value: NagMessageLevel) -> None:
        pass

    @property
    def rule_suffix_override(self) -> str:
        return self._rule.suffix

    @rule_suffix_override.setter
    def rule_suffix_override(self, value: str) -> None:
        pass

    def rule(self, node: CfnResource) -> NagRuleCompliance:
        return NagRuleCompliance.COMPLIANT if self._rule.check(node, self._view()) else NagRuleCompliance.NON_COMPLIANT


class MessagingChecks(NagPack):
    """The library's messaging rules (``RULES``) as a cdk-nag pack; every finding is an error."""

    def __init__(self, scope: IConstruct | None = None, *, verbose: bool = False) -> None:
        super().__init__(scope, verbose=verbose)
        self._pack_name = PACK_NAME
        self._views: dict[str, StackView] = {}

    @property
    def name(self) -> str:
        return PACK_NAME

    def _check_resource(self, node: CfnResource) -> None:
        for rule in RULES:
            if node.cfn_resource_type in rule.types:
                self._apply_rule(_Application(node, rule, lambda node=node: self._view(node)))

    def _view(self, node: CfnResource) -> StackView:
        stack = Stack.of(node)
        key = stack.node.path
        if key not in self._views:
            self._views[key] = StackView(stack)
        return self._views[key]
