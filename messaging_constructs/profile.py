"""Deployment profiles: what differs between a sandbox and production."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import IConstruct

PROFILE_CONTEXT_KEY = "profile"


@dataclass(frozen=True)
class Profile:
    """Decides removal policies, retention, sizes and redundancy for a stack.

    Chosen with CDK context: ``cdk synth -c profile=production``. Sandbox is
    the default.

    - ``sandbox``: cheap when idle; ``cdk destroy`` deletes every resource,
      including keys (after the shortest pending window), tables and logs;
      functions run outside a VPC; no reserved concurrency (a new account's
      quota would refuse it); no backup plans.
    - ``production``: blueprint stacks have termination protection; data that
      stands alone is retained on delete (tables, queues, keys, logs), tables
      have deletion protection and a backup plan, logs are kept for a year,
      functions run in private subnets across three availability zones, and
      every function has reserved concurrency. Brokers and Kafka clusters are
      deleted with the stack, after a drain (see their constructs).
    """

    name: str
    removal_policy: RemovalPolicy
    log_retention: logs.RetentionDays
    key_pending_window: Duration
    max_azs: int
    functions_in_vpc: bool
    reserved_concurrency: int | None
    deletion_protection: bool
    backup: bool
    termination_protection: bool

    @property
    def is_production(self) -> bool:
        return self.name == "production"

    @staticmethod
    def named(name: str) -> "Profile":
        """The profile called ``name`` (``sandbox`` or ``production``)."""
        try:
            return _PROFILES[name]
        except KeyError:
            raise ValueError(f"profile must be one of {sorted(_PROFILES)}, got {name!r}") from None

    @staticmethod
    def of(scope: IConstruct) -> "Profile":
        """The profile named by the ``profile`` context value; default ``sandbox``."""
        name = scope.node.try_get_context(PROFILE_CONTEXT_KEY) or "sandbox"
        return Profile.named(str(name))


SANDBOX = Profile(
    name="sandbox",
    removal_policy=RemovalPolicy.DESTROY,
    log_retention=logs.RetentionDays.ONE_WEEK,
    key_pending_window=Duration.days(7),
    max_azs=2,
    functions_in_vpc=False,
    reserved_concurrency=None,
    deletion_protection=False,
    backup=False,
    termination_protection=False,
)

PRODUCTION = Profile(
    name="production",
    removal_policy=RemovalPolicy.RETAIN,
    log_retention=logs.RetentionDays.ONE_YEAR,
    key_pending_window=Duration.days(30),
    max_azs=3,
    functions_in_vpc=True,
    reserved_concurrency=10,
    deletion_protection=True,
    backup=True,
    termination_protection=True,
)

_PROFILES = {p.name: p for p in (SANDBOX, PRODUCTION)}
