"""MessagingChecks: each rule against a template that keeps it and one that breaks it, written with plain aws-cdk-lib.

The pack runs as cdk-nag runs it (``validate_scope``); a finding is the rule's id on the resource that breaks it.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import App, Duration, Stack
from aws_cdk import aws_amazonmq as mq
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_msk as msk
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs

from messaging_constructs.messaging_checks import PACK_NAME, RULES, MessagingChecks
from messaging_constructs.metric_dimensions import NAMESPACES, dimension_problem

ROOT = Path(__file__).resolve().parents[2]


def _report(stack: Stack):
    app = stack.node.root
    app.synth(force=True)  # the pack reads the synthesized templates, as it does when cdk-nag runs it
    return MessagingChecks().validate_scope(app)


def findings(stack: Stack) -> list[tuple[str, str]]:
    """(rule, construct path) of every finding of the pack on ``stack``'s app."""
    report = _report(stack)
    return sorted(
        (violation.rule_name.removeprefix(f"{PACK_NAME}-"), resource.construct_path)
        for violation in report.violations
        for resource in violation.violating_resources
    )


def rules_broken(stack: Stack) -> set[str]:
    report = _report(stack)
    return {violation.rule_name.removeprefix(f"{PACK_NAME}-") for violation in report.violations}


def new_stack() -> Stack:
    return Stack(App(), "Test")


def function(stack: Stack, construct_id: str = "Fn") -> lambda_.Function:
    return lambda_.Function(
        stack, construct_id, runtime=lambda_.Runtime.PYTHON_3_13, handler="index.handler", code=lambda_.Code.from_inline("def handler(e, c): pass")
    )


def queue_depth(queue_name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions_map={"QueueName": queue_name})


def visible_alarm(stack: Stack, queue: sqs.Queue, construct_id: str = "Alarm") -> cloudwatch.Alarm:
    return cloudwatch.Alarm(stack, construct_id, metric=queue.metric_approximate_number_of_messages_visible(), threshold=1, evaluation_periods=1)


def test_every_rule_is_named_and_explained():
    assert [rule.suffix for rule in RULES] == [
        "DeadLetterQueueAlarm",
        "SubscriptionRedrive",
        "TargetDeadLetter",
        "EventSourceFailures",
        "ServiceKeyAccess",
        "BrokerPrivate",
        "KafkaClientAuth",
        "AlarmMetrics",
    ]
    assert all(len(rule.info) > 30 and len(rule.explanation) > 60 for rule in RULES)


# --- DeadLetterQueueAlarm ------------------------------------------------------------------------------------------


def test_a_dead_letter_queue_without_an_alarm_on_its_visible_messages_is_a_finding():
    stack = new_stack()
    dlq = sqs.Queue(stack, "Dlq")
    sqs.Queue(stack, "Source", dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3))
    assert rules_broken(stack) == {"DeadLetterQueueAlarm"}
    visible_alarm(stack, dlq)
    assert rules_broken(stack) == set()


def test_an_alarm_on_another_metric_or_another_queue_does_not_count():
    stack = new_stack()
    dlq, other = sqs.Queue(stack, "Dlq"), sqs.Queue(stack, "Other")
    sqs.Queue(stack, "Source", dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3))
    cloudwatch.Alarm(stack, "Age", metric=dlq.metric_approximate_age_of_oldest_message(), threshold=60, evaluation_periods=1)
    visible_alarm(stack, other)
    assert rules_broken(stack) == {"DeadLetterQueueAlarm"}


def test_dead_letter_destinations_of_rules_functions_and_mappings_need_an_alarm_too():
    stack = new_stack()
    rule_dlq, function_dlq, mapping_dlq = sqs.Queue(stack, "RuleDlq"), sqs.Queue(stack, "FnDlq"), sqs.Queue(stack, "MapDlq")
    events.Rule(
        stack,
        "Rule",
        event_pattern=events.EventPattern(source=["a"]),
        targets=[targets.SqsQueue(sqs.Queue(stack, "Target"), dead_letter_queue=rule_dlq, retry_attempts=2)],
    )
    lambda_.Function(
        stack, "WithDlq", runtime=lambda_.Runtime.PYTHON_3_13, handler="index.handler", code=lambda_.Code.from_inline("x"), dead_letter_queue=function_dlq
    )
    stream = kinesis.Stream(stack, "Stream")
    function(stack).add_event_source(
        sources.KinesisEventSource(
            stream, starting_position=lambda_.StartingPosition.LATEST, report_batch_item_failures=True, on_failure=sources.SqsDlq(mapping_dlq)
        )
    )
    assert {path for rule, path in findings(stack) if rule == "DeadLetterQueueAlarm"} == {
        q.node.default_child.node.path for q in (rule_dlq, function_dlq, mapping_dlq)
    }
    for n, queue in enumerate((rule_dlq, function_dlq, mapping_dlq)):
        visible_alarm(stack, queue, f"Alarm{n}")
    assert "DeadLetterQueueAlarm" not in rules_broken(stack)


# --- SubscriptionRedrive --------------------------------------------------------------------------------------------


def test_a_queue_subscription_without_a_dead_letter_queue_is_a_finding():
    stack = new_stack()
    topic = sns.Topic(stack, "Topic")
    topic.add_subscription(subscriptions.SqsSubscription(sqs.Queue(stack, "Plain")))
    assert rules_broken(stack) == {"SubscriptionRedrive"}

    stack = new_stack()
    topic = sns.Topic(stack, "Topic")
    dlq = sqs.Queue(stack, "Dlq")
    topic.add_subscription(subscriptions.SqsSubscription(sqs.Queue(stack, "Kept"), dead_letter_queue=dlq))
    visible_alarm(stack, dlq)
    assert rules_broken(stack) == set()


# --- TargetDeadLetter -----------------------------------------------------------------------------------------------


def test_a_rule_target_needs_a_dead_letter_queue_and_a_retry_policy():
    stack = new_stack()
    queue = sqs.Queue(stack, "Target")
    events.Rule(stack, "Bare", event_pattern=events.EventPattern(source=["a"]), targets=[targets.SqsQueue(queue)])
    assert rules_broken(stack) == {"TargetDeadLetter"}

    stack = new_stack()
    queue, dlq = sqs.Queue(stack, "Target"), sqs.Queue(stack, "Dlq")
    target = targets.SqsQueue(queue, dead_letter_queue=dlq, retry_attempts=3, max_event_age=Duration.hours(2))
    events.Rule(stack, "Kept", event_pattern=events.EventPattern(source=["a"]), targets=[target])
    visible_alarm(stack, dlq)
    assert rules_broken(stack) == set()


# --- EventSourceFailures --------------------------------------------------------------------------------------------


def test_a_stream_mapping_needs_batch_item_failures_and_an_on_failure_destination():
    stack = new_stack()
    stream = kinesis.Stream(stack, "Stream")
    function(stack).add_event_source(sources.KinesisEventSource(stream, starting_position=lambda_.StartingPosition.LATEST))
    assert rules_broken(stack) == {"EventSourceFailures"}

    stack = new_stack()
    stream, dlq = kinesis.Stream(stack, "Stream"), sqs.Queue(stack, "Dlq")
    source = sources.KinesisEventSource(
        stream, starting_position=lambda_.StartingPosition.LATEST, report_batch_item_failures=True, on_failure=sources.SqsDlq(dlq)
    )
    function(stack).add_event_source(source)
    visible_alarm(stack, dlq)
    assert rules_broken(stack) == set()


def test_a_queue_mapping_needs_batch_item_failures_and_a_source_queue_that_redrives():
    stack = new_stack()
    function(stack).add_event_source(sources.SqsEventSource(sqs.Queue(stack, "NoRedrive"), report_batch_item_failures=True))
    assert rules_broken(stack) == {"EventSourceFailures"}

    stack = new_stack()
    dlq = sqs.Queue(stack, "Dlq")
    queue = sqs.Queue(stack, "Source", dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=5))
    function(stack).add_event_source(sources.SqsEventSource(queue))  # no partial batch responses
    visible_alarm(stack, dlq)
    assert rules_broken(stack) == {"EventSourceFailures"}
    function(stack, "Reports").add_event_source(sources.SqsEventSource(queue, report_batch_item_failures=True))
    assert [rule for rule, _ in findings(stack)] == ["EventSourceFailures"]  # the first mapping only


# --- BrokerPrivate --------------------------------------------------------------------------------------------------


def _broker(stack: Stack, construct_id: str, **overrides) -> mq.CfnBroker:
    properties = dict(
        broker_name=construct_id,
        engine_type="ACTIVEMQ",
        engine_version="5.18",
        host_instance_type="mq.t3.micro",
        deployment_mode="SINGLE_INSTANCE",
        publicly_accessible=False,
        auto_minor_version_upgrade=True,
        subnet_ids=["subnet-1"],
        users=[mq.CfnBroker.UserProperty(username="admin", password="a-password-long-enough")],
        logs=mq.CfnBroker.LogListProperty(general=True, audit=True),
        encryption_options=mq.CfnBroker.EncryptionOptionsProperty(use_aws_owned_key=False, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/k"),
    )
    properties.update(overrides)
    return mq.CfnBroker(stack, construct_id, **properties)


def test_a_broker_must_be_private_logged_and_activemq_encrypted_with_a_cmk():
    stack = new_stack()
    _broker(stack, "Good")
    assert rules_broken(stack) == set()
    for n, overrides in enumerate(
        (
            {"publicly_accessible": True},
            {"subnet_ids": None},
            {"logs": mq.CfnBroker.LogListProperty(general=True, audit=False)},
            {"encryption_options": mq.CfnBroker.EncryptionOptionsProperty(use_aws_owned_key=True)},
        )
    ):
        stack = new_stack()
        _broker(stack, f"Bad{n}", **overrides)
        assert rules_broken(stack) == {"BrokerPrivate"}, overrides


def test_a_rabbitmq_broker_needs_no_audit_log_or_cmk():
    stack = new_stack()
    _broker(stack, "Rabbit", engine_type="RABBITMQ", engine_version="3.13", logs=mq.CfnBroker.LogListProperty(general=True), encryption_options=None)
    assert rules_broken(stack) == set()


# --- KafkaClientAuth ------------------------------------------------------------------------------------------------


def _cluster(stack: Stack, construct_id: str, *, authentication=None, transit=None, key="arn:aws:kms:us-east-1:123456789012:key/k") -> msk.CfnCluster:
    return msk.CfnCluster(
        stack,
        construct_id,
        cluster_name=construct_id,
        kafka_version="3.6.0",
        number_of_broker_nodes=2,
        broker_node_group_info=msk.CfnCluster.BrokerNodeGroupInfoProperty(client_subnets=["subnet-1", "subnet-2"], instance_type="kafka.t3.small"),
        client_authentication=authentication
        or msk.CfnCluster.ClientAuthenticationProperty(sasl=msk.CfnCluster.SaslProperty(iam=msk.CfnCluster.IamProperty(enabled=True))),
        encryption_info=msk.CfnCluster.EncryptionInfoProperty(
            encryption_at_rest=msk.CfnCluster.EncryptionAtRestProperty(data_volume_kms_key_id=key) if key else None,
            encryption_in_transit=transit or msk.CfnCluster.EncryptionInTransitProperty(client_broker="TLS", in_cluster=True),
        ),
    )


def test_a_kafka_cluster_must_authenticate_clients_and_encrypt_with_tls_and_a_cmk():
    stack = new_stack()
    _cluster(stack, "Good")
    assert rules_broken(stack) == set()
    for n, options in enumerate(
        (
            {"authentication": msk.CfnCluster.ClientAuthenticationProperty(unauthenticated=msk.CfnCluster.UnauthenticatedProperty(enabled=True))},
            {"transit": msk.CfnCluster.EncryptionInTransitProperty(client_broker="TLS_PLAINTEXT")},
            {"key": None},
        )
    ):
        stack = new_stack()
        _cluster(stack, f"Bad{n}", **options)
        assert rules_broken(stack) == {"KafkaClientAuth"}, options


def test_a_serverless_cluster_must_use_iam():
    stack = new_stack()
    msk.CfnServerlessCluster(
        stack,
        "Serverless",
        cluster_name="s",
        client_authentication=msk.CfnServerlessCluster.ClientAuthenticationProperty(
            sasl=msk.CfnServerlessCluster.SaslProperty(iam=msk.CfnServerlessCluster.IamProperty(enabled=True))
        ),
        vpc_configs=[msk.CfnServerlessCluster.VpcConfigProperty(subnet_ids=["subnet-1"])],
    )
    assert rules_broken(stack) == set()


# --- ServiceKeyAccess -----------------------------------------------------------------------------------------------


def _encrypted_queue_subscribed(stack: Stack, key) -> sqs.Queue:
    queue = sqs.Queue(stack, "Queue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key)
    dlq = sqs.Queue(stack, "Dlq")
    sns.Topic(stack, "Topic").add_subscription(subscriptions.SqsSubscription(queue, dead_letter_queue=dlq))
    visible_alarm(stack, dlq)
    return queue


def test_a_cmk_queue_sns_delivers_to_needs_a_key_policy_for_sns_with_a_source_condition():
    stack = new_stack()
    _encrypted_queue_subscribed(stack, kms.Key(stack, "Key"))
    assert rules_broken(stack) == {"ServiceKeyAccess"}

    stack = new_stack()
    key = kms.Key(stack, "Key")
    key.add_to_resource_policy(
        iam.PolicyStatement(principals=[iam.ServicePrincipal("sns.amazonaws.com")], actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=["*"])
    )
    _encrypted_queue_subscribed(stack, key)
    assert rules_broken(stack) == {"ServiceKeyAccess"}  # no source condition: any account's SNS could use it

    stack = new_stack()
    key = kms.Key(stack, "Key")
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal("sns.amazonaws.com")],
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )
    _encrypted_queue_subscribed(stack, key)
    assert rules_broken(stack) == set()


def test_a_cmk_topic_an_alarm_notifies_needs_cloudwatch_in_its_key_policy():
    stack = new_stack()
    topic = sns.Topic(stack, "Alarms", master_key=kms.Key(stack, "Key"))
    alarm = cloudwatch.Alarm(stack, "Alarm", metric=queue_depth("q"), threshold=1, evaluation_periods=1)
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    assert rules_broken(stack) == {"ServiceKeyAccess"}


def test_the_librarys_own_key_and_topic_pass():
    from messaging_constructs import AlarmTopic, EncryptionKey, KeyUser

    stack = new_stack()
    key = EncryptionKey(stack, "Key", users=[KeyUser.CLOUDWATCH]).key
    topic = AlarmTopic(stack, "Alarms", encryption_key=key).topic
    alarm = cloudwatch.Alarm(stack, "Alarm", metric=queue_depth("q"), threshold=1, evaluation_periods=1)
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    assert rules_broken(stack) == set()


# --- AlarmMetrics ---------------------------------------------------------------------------------------------------


def alarm_on(stack: Stack, metric: cloudwatch.IMetric, construct_id: str = "Alarm") -> cloudwatch.Alarm:
    return cloudwatch.Alarm(stack, construct_id, metric=metric, threshold=1, evaluation_periods=1)


def alarm_findings(stack: Stack) -> list[str]:
    return [path for rule, path in findings(stack) if rule == "AlarmMetrics"]


def test_alarms_on_metrics_aws_publishes_pass():
    stack = new_stack()
    queue, fn = sqs.Queue(stack, "Queue"), function(stack)
    table = dynamodb.Table(stack, "Table", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING))
    alarm_on(stack, queue.metric_approximate_age_of_oldest_message(), "Age")
    alarm_on(stack, fn.metric_errors(), "Errors")
    alarm_on(stack, table.metric_system_errors_for_operations(operations=[dynamodb.Operation.PUT_ITEM, dynamodb.Operation.QUERY]), "SystemErrors")
    alarm_on(stack, cloudwatch.Metric(namespace="AWS/Kafka", metric_name="CpuUser", dimensions_map={"Cluster Name": "c", "Broker ID": "1"}), "Cpu")
    alarm_on(stack, cloudwatch.Metric(namespace="AWS/Lambda", metric_name="ConcurrentExecutions"), "AccountConcurrency")
    assert rules_broken(stack) == set()


def test_a_dimension_name_aws_does_not_publish_the_metric_under_is_a_finding():
    stack = new_stack()
    queue = sqs.Queue(stack, "Queue")
    metric = cloudwatch.Metric(namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions_map={"Queue": queue.queue_name})
    wrong = alarm_on(stack, metric)
    assert findings(stack) == [("AlarmMetrics", wrong.node.default_child.node.path)]


def test_a_metric_published_per_operation_needs_its_operation():
    stack = new_stack()
    table = dynamodb.Table(stack, "Table", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING))
    alarm_on(stack, cloudwatch.Metric(namespace="AWS/DynamoDB", metric_name="SystemErrors", dimensions_map={"TableName": table.table_name}))
    assert rules_broken(stack) == {"AlarmMetrics"}


def test_a_queue_named_by_its_ref_or_its_arn_is_a_finding():
    """A queue's Ref is its URL: the metric of that "queue name" never exists, nor that of its ARN."""
    stack = new_stack()
    queue = sqs.Queue(stack, "Queue")
    by_url = alarm_on(stack, queue_depth(queue.queue_url))
    assert findings(stack) == [("AlarmMetrics", by_url.node.default_child.node.path)]

    stack = new_stack()
    queue = sqs.Queue(stack, "Queue")
    by_arn = alarm_on(stack, queue_depth(queue.queue_arn))
    assert findings(stack) == [("AlarmMetrics", by_arn.node.default_child.node.path)]


def test_a_rule_named_alone_passes_on_the_default_bus_and_not_by_its_ref_on_a_custom_bus():
    stack = new_stack()
    rule = events.Rule(stack, "Rule", event_pattern=events.EventPattern(source=["a"]))
    alarm_on(stack, cloudwatch.Metric(namespace="AWS/Events", metric_name="FailedInvocations", dimensions_map={"RuleName": rule.rule_name}))
    assert rules_broken(stack) == set()  # a rule on the default bus: its Ref is its name, RuleName alone is its metric

    stack = new_stack()
    bus = events.EventBus(stack, "Bus")
    rule = events.Rule(stack, "Rule", event_bus=bus, event_pattern=events.EventPattern(source=["a"]))
    dimensions = {"EventBusName": bus.event_bus_name, "RuleName": rule.rule_name}
    alarm_on(stack, cloudwatch.Metric(namespace="AWS/Events", metric_name="FailedInvocations", dimensions_map=dimensions))
    assert rules_broken(stack) == {"AlarmMetrics"}  # the Ref of a rule on a custom bus is <bus>|<rule>


def test_a_bad_metric_stat_in_a_metrics_list_is_a_finding():
    stack = new_stack()
    queue = sqs.Queue(stack, "Queue")
    good = queue.metric_approximate_number_of_messages_visible()
    bad = cloudwatch.Metric(namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesNotVisible", dimensions_map={"QueueUrl": queue.queue_url})
    alarm = alarm_on(stack, cloudwatch.MathExpression(expression="visible + inflight", using_metrics={"visible": good, "inflight": bad}))
    assert alarm.node.default_child.metrics  # the Metrics list form, one MetricStat per metric
    assert alarm_findings(stack) == [alarm.node.default_child.node.path]


def test_a_custom_namespace_passes_whatever_its_dimensions():
    stack = new_stack()
    alarm_on(stack, cloudwatch.Metric(namespace="MyApp", metric_name="OrdersAccepted", dimensions_map={"service": "orders", "QueueName": "x"}))
    assert rules_broken(stack) == set()


def test_a_metric_the_table_does_not_list_is_judged_by_the_namespace_dimension_names_only():
    assert dimension_problem("AWS/Lambda", "PolledEventCount", ["EventSourceMappingUUID"]) is None
    assert dimension_problem("AWS/Lambda", "PolledEventCount", ["MappingId"]) == "AWS/Lambda has no dimension MappingId"
    assert dimension_problem("AWS/SQS", "SomeFutureMetric", ["QueueName"]) is None  # SQS: QueueName for every metric
    assert dimension_problem("AWS/SQS", "SomeFutureMetric", []) is not None


def test_the_documented_dimension_sets_of_several_shapes():
    assert dimension_problem("AWS/Lambda", "Errors", []) is None
    assert dimension_problem("AWS/Lambda", "Errors", ["FunctionName", "Resource", "ExecutedVersion"]) is None
    assert dimension_problem("AWS/Lambda", "Errors", ["FunctionName", "ExecutedVersion"]) is not None
    assert dimension_problem("AWS/Events", "FailedInvocations", ["RuleName"]) is None
    assert dimension_problem("AWS/Events", "FailedInvocations", ["EventBusName"]) is not None
    assert dimension_problem("AWS/AmazonMQ", "MessageCount", ["Broker", "VirtualHost", "Queue"]) is None
    assert dimension_problem("AWS/Kafka", "BytesInPerSec", ["Cluster Name", "Topic"]) is None
    assert dimension_problem("AWS/Kafka", "BytesInPerSec", ["ClusterName", "Topic"]) is not None
    assert dimension_problem("AWS/Scheduler", "InvocationsFailedToBeSentToDeadLetterCount_AWS.SimpleQueueService.NonExistentQueue", []) is None


def test_every_namespace_cites_its_aws_documentation():
    assert {"AWS/SQS", "AWS/SNS", "AWS/Events", "AWS/EventBridge/Pipes", "AWS/Scheduler", "AWS/Lambda", "AWS/DynamoDB", "AWS/States"} <= set(NAMESPACES)
    assert {"AWS/Kinesis", "AWS/Firehose", "AWS/Kafka", "AWS/AmazonMQ", "AWS/ApiGateway", "AWS/IoT"} <= set(NAMESPACES)
    for namespace in NAMESPACES.values():
        assert namespace.sources and all(url.startswith("https://docs.aws.amazon.com/") for url in namespace.sources), namespace.name
        assert namespace.metrics or namespace.every_metric, namespace.name


def _monitoring_table() -> list[tuple[str, str, list[str]]]:
    """(namespace, metric, dimension names) of each row of the table in docs/monitoring.md."""
    rows = []
    for line in (ROOT / "docs" / "monitoring.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[0] not in ("namespace", "---") and not re.fullmatch(r"-+", cells[0]):
            rows.append((cells[0], cells[1], [name.strip() for name in cells[2].split(",")]))
    return rows


def test_every_metric_the_library_alarms_on_or_draws_is_in_the_shipped_data():
    """docs/monitoring.md lists what the library uses; the data the rule ships must allow each row, so the two cannot drift."""
    rows = _monitoring_table()
    assert len(rows) > 50
    aws_rows = [row for row in rows if row[0].startswith("AWS/")]
    assert {namespace for namespace, _, _ in aws_rows} <= set(NAMESPACES)
    assert [(ns, metric, names, problem) for ns, metric, names in aws_rows if (problem := dimension_problem(ns, metric, names))] == []
    for namespace, metric, _ in aws_rows:
        assert metric in NAMESPACES[namespace].metrics or NAMESPACES[namespace].every_metric is not None, (namespace, metric)
