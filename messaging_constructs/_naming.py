"""Physical names for the resources that need one.

Two traps come with a fixed physical name, and each helper here avoids one:

- CloudFormation refuses to replace a resource that has a custom name (it
  would have to create the new one under a name that is still taken). A name
  from :func:`replaceable_name` carries a short hash of the resource's
  create-only properties, so a change that forces a replacement also changes
  the name, and the replacement goes through.
- Some services keep a deleted name for a while: SQS refuses a deleted
  queue's name for 60 seconds
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sqs-queue.html),
  so ``cdk destroy`` then ``cdk deploy`` fails. A name from
  :func:`per_stack_creation` ends in a part of the stack's id, which
  CloudFormation makes anew each time a stack is created and keeps for the
  stack's life: stable across updates, different after destroy and deploy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, Fn, Names, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import IConstruct

#: Length of :func:`stack_creation_id`: the last group of the stack id's UUID.
STACK_CREATION_ID_LENGTH = 12
#: Length of the hash :func:`replaceable_name` appends.
HASH_LENGTH = 8


def stack_creation_id() -> str:
    """Twelve hex digits that differ for every creation of a stack, at deploy time.

    ``AWS::StackId`` is ``arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>``;
    this is the UUID's last group.
    """
    return Fn.select(4, Fn.split("-", Fn.select(2, Fn.split("/", Aws.STACK_ID))))


def per_stack_creation(scope: IConstruct, *, max_length: int, suffix: str = "") -> str:
    """``<name from the construct path>-<stack creation id><suffix>``, at most ``max_length`` characters."""
    room = max_length - 1 - STACK_CREATION_ID_LENGTH - len(suffix)
    return f"{Names.unique_resource_name(scope, max_length=room, separator='-')}-{stack_creation_id()}{suffix}"


def replaceable_name(scope: IConstruct, *, max_length: int, create_only: dict[str, Any], suffix: str = "") -> str:
    """``<name from the construct path>-<hash of create_only><suffix>``, at most ``max_length`` characters.

    :param create_only: the values of the resource's create-only properties
        (those whose change means replacement), as they will be synthesized.
        Tokens are hashed as the CloudFormation expressions they resolve to,
        so pass what those expressions stand for too when it can change under
        the same expression (a subnet's CIDR block, a security group's description).
    """
    base = Names.unique_resource_name(scope, max_length=max_length - 1 - HASH_LENGTH - len(suffix), separator="-")
    resolved = Stack.of(scope).resolve(create_only)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:HASH_LENGTH]
    return f"{base}-{digest}{suffix}"


def subnet_identity(subnets: Sequence[ec2.ISubnet]) -> list[dict[str, Any]]:
    """What replaces a subnet under the same logical id (its CIDR block and zone), beside its id, for :func:`replaceable_name`."""
    identity = []
    for subnet in subnets:
        try:
            cidr = subnet.ipv4_cidr_block
        except Exception:  # an imported subnet without a CIDR block: its literal id says it all
            cidr = None
        identity.append({"id": subnet.subnet_id, "cidr": cidr, "zone": subnet.availability_zone})
    return identity
