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

from messaging_runtime.cloudformation import serve

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


def _act(event: dict, physical_id: str) -> str:
    properties = event.get("ResourceProperties", {})
    name = properties.get("LogGroupName", "")
    if event["RequestType"] in ("Create", "Update"):
        _keep(name, int(properties["RetentionInDays"]), properties["KmsKeyArn"])
        return name
    if properties.get("RemovalPolicy") == "destroy" and physical_id == name:  # not a create that failed
        _delete(physical_id)
    return physical_id


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> None:
    name = event.get("ResourceProperties", {}).get("LogGroupName", "")
    serve(event, context, _act, logger=logger, kind="ServiceLogGroup", data_key="LogGroupName", describe={"log_group": name})
