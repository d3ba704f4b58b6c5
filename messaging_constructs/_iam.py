"""A role whose grants land in a customer-managed policy, not an inline one."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct, IDependable


class ManagedPolicyRole(iam.Role):
    """An ``iam.Role`` whose ``grant_*`` statements go to one customer-managed policy.

    The compliance packs reject inline policies (``AWS::IAM::Policy``) where a
    managed one can be used; every ``grant_*`` call and ``add_to_principal_policy``
    on this role adds to ``self.policy`` instead.
    """

    def __init__(self, scope: Construct, construct_id: str, *, assumed_by: iam.IPrincipal, description: str | None = None) -> None:
        super().__init__(scope, construct_id, assumed_by=assumed_by, description=description)
        self.policy = iam.ManagedPolicy(self, "Policy", roles=[self])

    def add_to_principal_policy(self, statement: iam.PolicyStatement) -> iam.AddToPrincipalPolicyResult:
        self.policy.add_statements(statement)
        return iam.AddToPrincipalPolicyResult(statement_added=True, policy_dependable=self.policy)

    def add_to_policy(self, statement: iam.PolicyStatement) -> bool:
        self.policy.add_statements(statement)
        return True


def policy_of(role: iam.IRole) -> IDependable:
    """What to wait for before a resource that checks the role's permissions when it is created:
    a :class:`ManagedPolicyRole`'s policy, or the role itself."""
    return role.policy if isinstance(role, ManagedPolicyRole) else role


def grant_event_source_network_interfaces(grantee: iam.IGrantable) -> iam.Grant:
    """What Lambda needs, with the function's role, to place an event source mapping's network interfaces
    in a VPC (Amazon MSK, Amazon MQ): ``ec2:CreateNetworkInterface``, ``DeleteNetworkInterface``,
    ``DescribeNetworkInterfaces``, ``DescribeSecurityGroups``, ``DescribeSubnets``, ``DescribeVpcs``.
    None of these actions takes a resource ARN.

    The IAM half of reaching a broker; the network half is ``allow_event_source_mappings()`` on the
    broker or cluster. The consumer constructs call both.
    """
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=[
            "ec2:CreateNetworkInterface",
            "ec2:DeleteNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSubnets",
            "ec2:DescribeVpcs",
        ],
        resource_arns=["*"],
    )
