"""Compliance acknowledgements: every accepted cdk-nag finding, in one place.

Each function is named after the rule it acknowledges (``serverless_sqs_redrive_policy``
for ``Serverless-SQSRedrivePolicy``, ``aws_solutions_sqs3`` for ``AwsSolutions-SQS3``;
a rule that several packs share, such as ``LambdaInsideVPC``, by the rule alone), is
applied by the construct that needs it, and names one exact finding id (rule and, for
multi-finding rules, the action or resource), the construct it applies to, and the
reason. They fall in five kinds only:

- ``RULE_DEFECT``: the rule misjudges a correct configuration;
- ``AWS_REQUIRED``: a wildcard that AWS itself requires;
- ``SANDBOX_COST``: a cost or teardown choice of the sandbox profile only;
- ``NOT_OFFERED``: the control the rule asks for does not exist for the service;
- ``OPERATOR_CHOICE``: the control needs a resource one regional stack cannot own
  (a bucket in another region); the docs say how to add it.

Each acknowledgement is also recorded as construct metadata
(``ACKNOWLEDGEMENT_METADATA``) so that the compliance report can list it with
its reason. With the context value ``messaging-blueprints:acknowledge`` set to
``false`` they are recorded but not applied, which shows what each one hides.

Use them in your own constructs when the same reason holds, e.g.
``acknowledgements.aws_solutions_sqs3(queue, "dead-letter queue of my pipe")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from aws_cdk import aws_sns as sns

ACKNOWLEDGEMENT_METADATA = "messaging-blueprints:acknowledgement"
#: Context key; ``false`` records acknowledgements without applying them, to
#: show what each one hides (used by the tests).
ACKNOWLEDGE_CONTEXT_KEY = "messaging-blueprints:acknowledge"

__all__ = [
    "ACKNOWLEDGEMENT_METADATA",
    "ACKNOWLEDGE_CONTEXT_KEY",
    "AWS_REQUIRED",
    "NOT_OFFERED",
    "OPERATOR_CHOICE",
    "RULE_DEFECT",
    "SANDBOX_COST",
    "acknowledge",
    "apigw_cache_enabled_and_encrypted",
    "aws_solutions_apig3",
    "aws_solutions_apig4_websocket_routes",
    "aws_solutions_apig6",
    "aws_solutions_cog4",
    "aws_solutions_cog8",
    "aws_solutions_iam4_backup_service_role",
    "aws_solutions_iam5_any_resource",
    "aws_solutions_iam5_api_gateway_logging",
    "aws_solutions_iam5_execution_arns",
    "aws_solutions_iam5_list_streams",
    "aws_solutions_iam5_log_group_arn_suffix",
    "aws_solutions_iam5_sns_delivery_log_streams",
    "aws_solutions_iam5_state_machine_delivery",
    "aws_solutions_iam5_object_keys",
    "aws_solutions_iam5_websocket_connections",
    "aws_solutions_kdf1",
    "aws_solutions_kds3",
    "aws_solutions_sqs3",
    "dynamodb_in_backup_plan",
    "lambda_concurrency",
    "lambda_inside_vpc",
    "lambda_inside_vpc_websocket_pusher",
    "s3_bucket_replication_enabled",
    "s3_default_encryption_kms",
    "secrets_manager_rotation_enabled",
    "serverless_lambda_async_failure_destination",
    "serverless_lambda_event_source_mapping_destination_mq",
    "serverless_lambda_event_source_mapping_destination_sqs",
    "serverless_sqs_redrive_policy",
]

RULE_DEFECT = "rule defect"
AWS_REQUIRED = "wildcard AWS requires"
SANDBOX_COST = "sandbox cost choice"
NOT_OFFERED = "not offered by AWS"
OPERATOR_CHOICE = "left to the operator"


def acknowledge(scope: IConstruct, finding_id: str, kind: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and its children) with a reason."""
    if scope.node.try_get_context(ACKNOWLEDGE_CONTEXT_KEY) is not False:
        Validations.of(scope).acknowledge(Acknowledgment(id=finding_id, reason=f"{kind}: {reason}"))
    scope.node.add_metadata(ACKNOWLEDGEMENT_METADATA, {"id": finding_id, "kind": kind, "reason": reason})


# --- SQS -----------------------------------------------------------------


def serverless_sqs_redrive_policy(queue: IConstruct) -> None:
    """``Serverless-SQSRedrivePolicy`` (rule defect): a dead-letter destination has no dead-letter queue of its own."""
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        RULE_DEFECT,
        "this queue is itself a dead-letter destination; giving it a redrive policy would only move failures one queue further. It alarms on any message.",
    )


def aws_solutions_sqs3(queue: IConstruct, role: str) -> None:
    """``AwsSolutions-SQS3`` (rule defect): a DLQ that no queue's redrive policy names is not seen as a DLQ by the rule.

    :param role: what the queue is, e.g. "dead-letter queue of an SNS subscription".
    """
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        RULE_DEFECT,
        f"this queue is the {role}; the rule recognises only DLQs named by a queue's redrive policy or a function's dead-letter config.",
    )


# --- Lambda ----------------------------------------------------------------


def aws_solutions_iam5_any_resource(policy: IConstruct) -> None:
    """``AwsSolutions-IAM5[Resource::*]`` (wildcard AWS requires): X-Ray and network-interface actions take no resource ARN."""
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        AWS_REQUIRED,
        "xray:PutTraceSegments and xray:PutTelemetryRecords (and, in a VPC or for a Kafka event source mapping, the ec2 network-interface "
        "and VPC describe actions) support no resource-level permissions.",
    )


def aws_solutions_iam5_state_machine_delivery(policy: IConstruct) -> None:
    """``AwsSolutions-IAM5[Resource::*]`` (wildcard AWS requires): a state machine's log delivery and X-Ray actions take no resource ARN."""
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        AWS_REQUIRED,
        "Step Functions logging needs logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, "
        "PutResourcePolicy and DescribeResourcePolicies, and tracing xray:PutTraceSegments, PutTelemetryRecords and GetSampling*; "
        "none supports resource-level permissions.",
    )


def aws_solutions_iam5_list_streams(policy: IConstruct) -> None:
    """``AwsSolutions-IAM5[Resource::*]`` (wildcard AWS requires): ``dynamodb:ListStreams``, which a pipe from a table's stream needs, takes no resource ARN."""
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        AWS_REQUIRED,
        "EventBridge Pipes needs dynamodb:ListStreams to read a table's stream (eb-pipes-permissions), and ListStreams supports no "
        "resource-level permissions; the stream's read actions are granted on the stream's ARN.",
    )


def serverless_lambda_event_source_mapping_destination_sqs(function: IConstruct) -> None:
    """``Serverless-LambdaEventSourceMappingDestination`` (rule defect) for SQS sources, which take no on-failure destination."""
    acknowledge(
        function,
        "Serverless-LambdaEventSourceMappingDestination",
        RULE_DEFECT,
        "SQS event source mappings accept no on-failure destination; failed messages reach the source queue's dead-letter queue through its redrive policy.",
    )


def serverless_lambda_event_source_mapping_destination_mq(mapping: IConstruct) -> None:
    """``Serverless-LambdaEventSourceMappingDestination`` (rule defect) for Amazon MQ sources, which take no on-failure destination."""
    acknowledge(
        mapping,
        "Serverless-LambdaEventSourceMappingDestination",
        RULE_DEFECT,
        "Amazon MQ event source mappings accept no on-failure destination; the broker redelivers a failed batch and then "
        "dead-letters it to a queue on the broker, which alarms.",
    )


def lambda_inside_vpc(function: IConstruct) -> None:
    """``LambdaInsideVPC`` of the HIPAA, NIST and PCI packs (sandbox cost): sandbox functions run outside a VPC."""
    for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321"):
        acknowledge(
            function,
            f"{pack}-LambdaInsideVPC",
            SANDBOX_COST,
            "sandbox functions run outside a VPC so that an idle sandbox pays for no interface endpoints; the production profile runs them in private subnets.",
        )


def lambda_concurrency(function: IConstruct) -> None:
    """``LambdaConcurrency`` of the HIPAA and NIST packs (sandbox cost): sandbox functions reserve no concurrency."""
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(
            function,
            f"{pack}-LambdaConcurrency",
            SANDBOX_COST,
            "new accounts have a concurrency quota of 10, below which no concurrency can be reserved, so the sandbox reserves none; production reserves it.",
        )


# --- DynamoDB ----------------------------------------------------------------


def dynamodb_in_backup_plan(table: IConstruct) -> None:
    """``DynamoDBInBackupPlan`` of the HIPAA and NIST packs (sandbox cost): sandbox tables rely on point-in-time recovery."""
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(
            table,
            f"{pack}-DynamoDBInBackupPlan",
            SANDBOX_COST,
            "a backup vault holding recovery points cannot be deleted, so "
            "`cdk destroy` would leave it behind; the sandbox relies on point-in-time "
            "recovery, production adds a daily backup plan.",
        )


def serverless_lambda_async_failure_destination(function: IConstruct) -> None:
    """``Serverless-LambdaAsyncFailureDestination`` (rule defect): failed asynchronous events go to a dead-letter queue instead."""
    acknowledge(
        function,
        "Serverless-LambdaAsyncFailureDestination",
        RULE_DEFECT,
        "failed asynchronous events go to a dead-letter queue, which the HIPAA "
        "and NIST packs require; an on-failure destination on the same queue "
        "would deliver every failure twice. The packs conflict; the DLQ is kept.",
    )


# --- SNS -------------------------------------------------------------------


def aws_solutions_iam5_sns_delivery_log_streams(policy: IConstruct, topic: "sns.Topic") -> None:
    """``AwsSolutions-IAM5[Resource::<log group>:*]`` (wildcard AWS requires): the delivery-status role writes log streams it cannot name in advance."""
    logical_id = Stack.of(topic).get_logical_id(topic.node.default_child)
    base = f"arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:sns/<AWS::Region>/<AWS::AccountId>/<{logical_id}.TopicName>"
    for group in (base, f"{base}/Failure"):
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{group}:*]",
            AWS_REQUIRED,
            "SNS names the log streams of its delivery-status log group itself; the policy is limited to this topic's two log groups.",
        )


def aws_solutions_iam5_log_group_arn_suffix(policy: IConstruct, log_group_arns: "list[str]") -> None:
    """``AwsSolutions-IAM5[Resource::<log group ARN>:*]`` (wildcard AWS requires): a log group's ``:*`` ARN, which CloudWatch
    Logs checks some log-group actions against, names one group only."""
    stack = Stack.of(policy)
    for arn in log_group_arns:
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{_as_nag_renders(stack, arn)}:*]",
            AWS_REQUIRED,
            "CloudWatch Logs checks some log-group actions against the group's ARN with ':*' appended; the wildcard stands for that "
            "suffix only, on log groups named one by one.",
        )


def aws_solutions_iam5_execution_arns(policy: IConstruct, executions_arn: str) -> None:
    """``AwsSolutions-IAM5[Resource::<state machine's executions>:*]`` (wildcard AWS requires): executions are named at run time;
    the wildcard stands for the execution's name, under one state machine."""
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::{_as_nag_renders(Stack.of(policy), executions_arn)}]",
        AWS_REQUIRED,
        "An execution's ARN ends in its name, which is chosen when it starts; the wildcard stands for that name only, under one "
        "state machine (DescribeExecution and StopExecution take execution ARNs).",
    )


def aws_solutions_iam5_api_gateway_logging(policy: IConstruct) -> None:
    """``AwsSolutions-IAM5[Resource::*]`` (wildcard AWS requires): the account's API Gateway logging role writes log groups it cannot name."""
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        AWS_REQUIRED,
        "the account-wide API Gateway CloudWatch Logs role serves every REST and WebSocket stage of the account and region: API "
        "Gateway creates each stage's execution log group under a name it chooses and writes access logs to groups each API names; "
        "the actions are the log actions of AWS's AmazonAPIGatewayPushToCloudWatchLogs policy, in a customer-managed policy.",
    )


def _as_nag_renders(stack: Stack, value: str) -> str:
    """A string with tokens as cdk-nag writes it in a finding id: ``<LogicalId>`` for a Ref, ``<LogicalId.Attribute>`` for a GetAtt."""
    resolved = stack.resolve(value)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
    rendered = []
    for part in parts:
        if isinstance(part, str):
            rendered.append(part)
        elif "Ref" in part:
            rendered.append(f"<{part['Ref']}>")
        else:
            logical_id, attribute = part["Fn::GetAtt"]
            rendered.append(f"<{logical_id}.{attribute}>")
    return "".join(rendered)


def aws_solutions_iam4_backup_service_role(selection: IConstruct) -> None:
    """``AwsSolutions-IAM4[Policy::...AWSBackupServiceRolePolicyForBackup]`` (wildcard AWS requires): AWS Backup's own service-role policy."""
    acknowledge(
        selection,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
        AWS_REQUIRED,
        "AWS Backup's own service-role policy, which AWS maintains as the services it backs up change; the role can be assumed by AWS Backup only.",
    )


# --- Amazon MQ --------------------------------------------------------------


def secrets_manager_rotation_enabled(secrets) -> None:
    """``AwsSolutions-SMG4`` and the HIPAA and NIST ``SecretsManagerRotationEnabled`` (not offered): Amazon MQ has no rotation
    integration with Secrets Manager."""
    for secret in secrets:
        for finding_id in ("AwsSolutions-SMG4", "HIPAA.Security-SecretsManagerRotationEnabled", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            acknowledge(
                secret,
                finding_id,
                NOT_OFFERED,
                "Amazon MQ offers no rotation for broker users; a password changes on the broker (MQ UpdateUser for ActiveMQ, applied at the "
                "next reboot; the management API for RabbitMQ) and then in this secret, as docs/exercise-05.md describes.",
            )


# --- API Gateway ---------------------------------------------------------

_PACKS_WITH_API_RULES = ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")


def aws_solutions_cog4(api: IConstruct) -> None:
    """``AwsSolutions-COG4`` (rule defect): methods authorized with IAM are authorized."""
    acknowledge(
        api,
        "AwsSolutions-COG4",
        RULE_DEFECT,
        "every method requires AWS_IAM authorization: callers sign requests with SigV4 and need execute-api:Invoke on the exact "
        "method and path; the rule accepts only a Cognito user pool authorizer, which suits end users, not service callers.",
    )


def aws_solutions_apig6(stage: IConstruct) -> None:
    """``AwsSolutions-APIG6`` and ``APIGWExecutionLoggingEnabled`` (sandbox): no execution logs in the sandbox."""
    reason = (
        "sandbox stages write every request to the encrypted access log (status, error message and type, integration status and "
        "latency), which is what a sandbox needs; execution logs would add a second, more verbose log group per stage. "
        "Production stages also write execution logs at ERROR."
    )
    acknowledge(stage, "AwsSolutions-APIG6", SANDBOX_COST, reason)
    for pack in _PACKS_WITH_API_RULES:
        acknowledge(stage, f"{pack}-APIGWExecutionLoggingEnabled", SANDBOX_COST, reason)


def aws_solutions_apig3(stage: IConstruct) -> None:
    """``AwsSolutions-APIG3`` and the NIST and PCI ``APIGWAssociatedWithWAF`` (sandbox cost): no web ACL in the sandbox."""
    reason = (
        "a WAFv2 web ACL costs about $5 a month plus $1 per rule even when idle, so sandbox stages go without one; "
        "methods still require authorization and are throttled. Production associates a web ACL with managed rules and a rate limit."
    )
    acknowledge(stage, "AwsSolutions-APIG3", SANDBOX_COST, reason)
    for pack in ("NIST.800.53.R5", "PCI.DSS.321"):
        acknowledge(stage, f"{pack}-APIGWAssociatedWithWAF", SANDBOX_COST, reason)


def apigw_cache_enabled_and_encrypted(stage: IConstruct) -> None:
    """``APIGWCacheEnabledAndEncrypted`` (rule defect) and ``APIGWSSLEnabled`` (not offered) of the HIPAA, NIST and PCI packs."""
    for pack in _PACKS_WITH_API_RULES:
        acknowledge(
            stage,
            f"{pack}-APIGWCacheEnabledAndEncrypted",
            RULE_DEFECT,
            "the stage has no cache, so no response is stored to encrypt; a cache would serve stale answers (an order's status) "
            "that must always come from the function. The rule asks for a cache where it means: whatever is cached is encrypted.",
        )
        acknowledge(
            stage,
            f"{pack}-APIGWSSLEnabled",
            NOT_OFFERED,
            "a stage's client certificate authenticates API Gateway to HTTP backends; Lambda proxy integrations call the Lambda API "
            "over TLS signed with SigV4 and offer no client certificate. Callers reach the stage over TLS only.",
        )


def aws_solutions_cog8(pool: IConstruct) -> None:
    """``AwsSolutions-COG8`` (sandbox cost): sandbox user pools are on the Essentials plan."""
    acknowledge(
        pool,
        "AwsSolutions-COG8",
        SANDBOX_COST,
        "the Plus feature plan (threat protection) is billed per monthly active user with no free tier, so sandbox user pools use "
        "Essentials with MFA required; the production profile uses Plus with threat protection enforced.",
    )


# --- API Gateway WebSocket APIs ---------------------------------------------


def aws_solutions_apig4_websocket_routes(api: IConstruct) -> None:
    """``AwsSolutions-APIG4`` on ``$disconnect`` and ``$default`` (not offered): WebSocket APIs authorize on ``$connect`` only."""
    for route in ("$disconnect", "$default"):
        node = api.node.try_find_child(f"{route}-Route")
        if node is not None:
            acknowledge(
                node,
                "AwsSolutions-APIG4",
                NOT_OFFERED,
                f"API Gateway takes an authorizer on the $connect route of a WebSocket API only; {route} runs on a connection "
                "that $connect's Lambda authorizer has already allowed.",
            )


def aws_solutions_iam5_websocket_connections(grantee: object, connections_arn: str) -> None:
    """``AwsSolutions-IAM5[Resource::<api>/<stage>/POST/@connections/*]`` (wildcard AWS requires): the connection id is in the path."""
    target = grantee if hasattr(grantee, "node") else getattr(grantee, "grant_principal", None)
    if not hasattr(target, "node"):
        return
    acknowledge(
        target,
        f"AwsSolutions-IAM5[Resource::{_as_nag_renders(Stack.of(target), connections_arn)}]",
        AWS_REQUIRED,
        "execute-api:ManageConnections is authorized on the @connections/{connection id} path of the management API, and connection ids "
        "are made by API Gateway as clients connect; the '*' stands for that id only, on POST of this one API's one stage.",
    )


def lambda_inside_vpc_websocket_pusher(function: IConstruct) -> None:
    """``LambdaInsideVPC`` of the HIPAA, NIST and PCI packs (not offered), for a function that posts to WebSocket connections.

    API Gateway serves the management API (``@connections``) of a WebSocket API on its public endpoint only: a
    WebSocket API cannot be private, and calls through an ``execute-api`` VPC endpoint reach private APIs only. A
    function in an isolated network (no NAT) cannot post, so the pusher runs outside it, in production too.
    """
    for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321"):
        acknowledge(
            function,
            f"{pack}-LambdaInsideVPC",
            NOT_OFFERED,
            "this function posts to WebSocket connections through the API Gateway management API, which is served on the public "
            "endpoint only (a WebSocket API cannot be private and an execute-api VPC endpoint reaches private APIs only); the "
            "isolated network has no NAT, so the function runs outside it. It calls AWS APIs only, signed with its role.",
        )


# --- S3, Kinesis, Firehose ---------------------------------------------------

#: The packs with the S3 rules acknowledged below (AwsSolutions has neither).
_S3_PACKS = ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")


def s3_bucket_replication_enabled(bucket: IConstruct) -> None:
    """``S3BucketReplicationEnabled`` of HIPAA, NIST and PCI (left to the operator): replication needs a bucket in another
    region, which a regional stack cannot own (and that bucket would be flagged for not replicating in turn)."""
    for pack in _S3_PACKS:
        acknowledge(
            bucket,
            f"{pack}-S3BucketReplicationEnabled",
            OPERATOR_CHOICE,
            "cross-region replication needs a destination bucket in another region, which this regional stack cannot own; the bucket is "
            "versioned, so an operator can add a replication rule to a bucket of their choosing (docs/capstone-analytics.md).",
        )


def s3_default_encryption_kms(bucket: IConstruct) -> None:
    """``S3DefaultEncryptionKMS`` of HIPAA, NIST and PCI (not offered): S3 delivers server access logs only to a bucket
    encrypted with S3-managed keys."""
    for pack in _S3_PACKS:
        acknowledge(
            bucket,
            f"{pack}-S3DefaultEncryptionKMS",
            NOT_OFFERED,
            "this bucket receives S3 server access logs, and S3 log delivery supports only SSE-S3 (AES-256) default encryption on the "
            "target bucket, not SSE-KMS; the logs hold request metadata, no object data.",
        )


def aws_solutions_iam5_object_keys(policy: IConstruct, object_arns: "list[str]") -> None:
    """``AwsSolutions-IAM5[Resource::<bucket>/<prefix>*]`` (wildcard AWS requires): objects written at run time (Iceberg
    data and metadata files, query results, reports) have keys nobody knows in advance; each grant is scoped to its prefix."""
    stack = Stack.of(policy)
    for arn in object_arns:
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{_as_nag_renders(stack, arn)}]",
            AWS_REQUIRED,
            "S3 object permissions name object ARNs, and these objects (Iceberg data and metadata files, Athena results, erasure reports, "
            "Firehose error records) get keys at run time; the grant is limited to one prefix of one bucket.",
        )


def aws_solutions_kds3(stream: IConstruct) -> None:
    """``AwsSolutions-KDS3`` (rule defect): the rule asks for the AWS managed key ``aws/kinesis``; this library encrypts
    with a customer-managed key, which the rule's own intent (encryption at rest) is better served by."""
    acknowledge(
        stream,
        "AwsSolutions-KDS3",
        RULE_DEFECT,
        "the stream is encrypted with a customer-managed KMS key (rotation on, key policy under the stack's control); the rule only "
        "accepts the AWS managed aws/kinesis key, which cannot be scoped or audited the same way.",
    )


def aws_solutions_kdf1(delivery_stream: IConstruct) -> None:
    """``AwsSolutions-KDF1`` (not offered): Firehose server-side encryption exists for Direct PUT sources only."""
    acknowledge(
        delivery_stream,
        "AwsSolutions-KDF1",
        NOT_OFFERED,
        "Firehose accepts server-side encryption only for Direct PUT delivery streams; with a Kinesis stream as the source the records "
        "are encrypted at rest by the stream's customer-managed key and land in a bucket encrypted with one.",
    )
