"""The one way this library lets a principal or a service send to a queue.

Sending to an SQS queue encrypted with a customer-managed key (SSE-KMS) takes
``sqs:SendMessage`` (which also authorises ``SendMessageBatch``) on the queue
and ``kms:GenerateDataKey`` and ``kms:Decrypt`` on its key: SQS asks KMS for a
new data key when the reuse period ends and decrypts it to check it before
use. That is what AWS documents for producers ("Configure KMS permissions for
producers",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html#send-to-encrypted-queue)
and for AWS services that send to an encrypted queue (same page, "Configure
KMS permissions for AWS services"). aws-cdk-lib's ``Queue.grantSendMessages``
grants ``kms:Encrypt``, ``kms:ReEncrypt*`` and ``kms:GenerateDataKey*`` besides,
and ``sqs:GetQueueAttributes`` and ``sqs:GetQueueUrl``, which sending does not
need; every send grant of this library goes through here instead:
``SecureQueue.grant_send_messages``, a function's asynchronous DLQ, a schedule
group's targets and DLQ, a pipe's queue target and DLQ, the on-failure
destination of an event source mapping, and (as a queue-policy statement and a
key-policy statement for the service) rule targets, subscriptions and the bus DLQ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler_targets as scheduler_targets

from ._interfaces import queue_key_of, queue_of
from .encryption import SEND_KEY_ACTIONS, KeyUser, allow_service

if TYPE_CHECKING:
    from ._interfaces import QueueLike

#: The SQS action a producer needs.
SEND_ACTIONS = ("sqs:SendMessage",)
#: The key actions a producer needs on an SSE-KMS queue's key: ``SEND_KEY_ACTIONS`` (defined beside the key policies, which use it too).
__all__ = ["SEND_ACTIONS", "SEND_KEY_ACTIONS", "QueueDestination", "SendMessageTarget", "allow_service_to_send", "grant_send_messages"]


def grant_send_messages(grantee: iam.IGrantable, queue: QueueLike) -> iam.Grant:
    """``sqs:SendMessage`` on the queue; ``kms:GenerateDataKey`` and ``kms:Decrypt`` on its key, when it has one we know.

    An imported queue's key is known when it was imported with it
    (``sqs.Queue.from_queue_attributes(..., key_arn=...)``).
    """
    target = queue_of(queue)
    grant = iam.Grant.add_to_principal(grantee=grantee, actions=list(SEND_ACTIONS), resource_arns=[target.queue_arn])
    key = queue_key_of(queue)
    if key is not None:
        grant = grant.combine(key.grant(grantee, *SEND_KEY_ACTIONS))
    return grant


def allow_service_to_send(queue: QueueLike, user: KeyUser, *, source_arn: str) -> iam.AddToResourcePolicyResult:
    """Let an AWS service send to ``queue`` on behalf of one resource only (``aws:SourceArn``).

    The queue policy admits ``sqs:SendMessage`` from the service principal for
    ``source_arn``; the key policy lets the service use the key for this
    account only (:func:`allow_service`). Imported queues and keys have no
    policy here to change: grant those where they are defined.
    """
    target = queue_of(queue)
    result = target.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"{user.value}.amazonaws.com")],
            actions=list(SEND_ACTIONS),
            resources=[target.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": source_arn}},
        )
    )
    key = queue_key_of(queue)
    if key is not None:
        allow_service(key, user)
    return result


@jsii.implements(lambda_.IEventSourceDlq)
class QueueDestination:
    """An event source mapping's on-failure destination on a queue, granted with :func:`grant_send_messages`.

    In place of ``lambda_event_sources.SqsDlq``, which grants the queue's
    ``grantSendMessages`` (wildcard key actions and two SQS actions Lambda
    does not need) to the function's role.
    """

    def __init__(self, queue: QueueLike) -> None:
        self._queue = queue

    def bind(self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction) -> lambda_.DlqDestinationConfig:
        grant_send_messages(target_handler, self._queue)
        return lambda_.DlqDestinationConfig(destination=queue_of(self._queue).queue_arn)


class SendMessageTarget(scheduler_targets.SqsSendMessage):
    """A schedule target that sends to a queue, granted with :func:`grant_send_messages` (not the L2 grant)."""

    def __init__(self, queue: QueueLike, **props) -> None:
        super().__init__(queue_of(queue), **props)
        self._send_to = queue

    def _add_target_action_to_role(self, role: iam.IRole) -> None:
        grant_send_messages(role, self._send_to)
