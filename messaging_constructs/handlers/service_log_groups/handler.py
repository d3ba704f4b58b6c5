"""Custom resource ``Custom::ServiceLogGroup``: a log group that an AWS service creates by name, kept by the stack.

Create and Update make the group if the service has not yet (it may have:
both orders are fine), set its retention and encrypt it with the stack's key.
Delete removes the group when ``RemovalPolicy`` is ``destroy`` and leaves it
otherwise. Every request is answered, SUCCESS or FAILED with the reason, so a
deployment never waits for a custom resource's timeout.

Properties: ``LogGroupName``, ``RetentionInDays``, ``KmsKeyArn``, ``RemovalPolicy``
(``destroy`` or ``retain``).
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger

from messaging_runtime.cloudformation import answer

logger = Logger()
logs = boto3.client("logs")


def _keep(name: str, retention_days: int, key_arn: str) -> None:
    try:
        logs.create_log_group(logGroupName=name, kmsKeyId=key_arn)
    except logs.exceptions.ResourceAlreadyExistsException:
        logs.associate_kms_key(logGroupName=name, kmsKeyId=key_arn)
    logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)


def _delete(name: str) -> None:
    try:
        logs.delete_log_group(logGroupName=name)
    except logs.exceptions.ResourceNotFoundException:
        logger.info("Log group already gone", extra={"log_group": name})


def _respond(event: dict, status: str, physical_id: str, reason: str = "") -> None:
    http_status = answer(event, status, physical_id, reason=reason, data={"LogGroupName": physical_id})
    logger.info("Answered CloudFormation", extra={"status": status, "http_status": http_status})


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> None:
    properties = event.get("ResourceProperties", {})
    name = properties.get("LogGroupName", "")
    # Until a create succeeds, the resource's id is not the group's name, so that its delete never removes the group.
    physical_id = event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'ServiceLogGroup')}-not-created"
    try:
        if event["RequestType"] in ("Create", "Update"):
            _keep(name, int(properties["RetentionInDays"]), properties["KmsKeyArn"])
            physical_id = name
        elif properties.get("RemovalPolicy") == "destroy" and physical_id == name:  # not a create that failed
            _delete(physical_id)
    except Exception as error:  # answer FAILED with the reason instead of leaving CloudFormation waiting
        logger.exception("Request failed", extra={"request_type": event.get("RequestType"), "log_group": name})
        _respond(event, "FAILED", physical_id, f"{type(error).__name__}: {error} (log stream {context.log_stream_name})")
        return
    _respond(event, "SUCCESS", physical_id)
