"""A role whose grants land in a customer-managed policy, not an inline one."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct


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


def allow_event_source_network_interfaces(role: iam.IRole) -> None:
    """What Lambda needs, with the function's role, to place an event source mapping's network interfaces
    in a VPC (Amazon MSK, Amazon MQ). None of these actions takes a resource ARN."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=[
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
            ],
            resources=["*"],
        )
    )
