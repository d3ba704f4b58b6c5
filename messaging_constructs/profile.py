"""Deployment profiles: what differs between a sandbox and production."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import IConstruct

PROFILE_CONTEXT_KEY = "profile"

T = TypeVar("T")


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

    Every value that differs between the two is a field here, and the
    constructs read the field (``KafkaCluster`` its instance type, volume and
    monitoring level; ``MessageBroker`` its instance type and deployment;
    ``EventBus`` its archive retention...). A value that only one blueprint
    needs (the partitions of its topic) is not a field: the blueprint chooses
    it with :meth:`pick`.

    :param name: ``sandbox`` or ``production``.
    :param removal_policy: of data that stands alone. Sandbox ``DESTROY``, production ``RETAIN``.
    :param log_retention: of every log group. Sandbox 1 week, production 1 year.
    :param key_pending_window: before a deleted key goes. Sandbox 7 days, production 30 days.
    :param max_azs: availability zones of a network. Sandbox 2, production 3.
    :param functions_in_vpc: blueprint functions run in the network's isolated subnets. Sandbox no, production yes.
    :param reserved_concurrency: of every function. Sandbox none, production 10.
    :param deletion_protection: of tables. Sandbox no, production yes.
    :param backup: a daily backup plan for tables (35 days). Sandbox no, production yes.
    :param termination_protection: of blueprint stacks. Sandbox no, production yes.
    :param kafka_instance_type: MSK broker type. Sandbox ``kafka.t3.small``, production ``kafka.m7g.large``.
    :param kafka_volume_size: GiB of EBS per MSK broker. Sandbox 10, production 100.
    :param kafka_enhanced_monitoring: MSK monitoring level. Sandbox ``DEFAULT``, production ``PER_BROKER``.
    :param mq_instance_type: Amazon MQ broker type. Sandbox ``mq.t3.micro``, production ``mq.m5.large``.
    :param mq_multi_az: Amazon MQ brokers across availability zones (a RabbitMQ
        cluster, an ActiveMQ active/standby pair) instead of a single instance.
        Sandbox no, production yes.
    :param archive_retention: of an event bus's archive. Sandbox 7 days, production 365 days.
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
    kafka_instance_type: str
    kafka_volume_size: int
    kafka_enhanced_monitoring: str
    mq_instance_type: str
    mq_multi_az: bool
    archive_retention: Duration

    @property
    def is_production(self) -> bool:
        """Whether this is the production profile. Constructs and blueprints read a field or :meth:`pick` instead."""
        return self.name == "production"

    def pick(self, *, sandbox: T, production: T) -> T:
        """The value for this profile: for a blueprint's own sizes, which are no field of the profile.

        ``profile.pick(sandbox=6, production=24)``; raises ``ValueError`` for a profile that is neither.
        """
        choices = {"sandbox": sandbox, "production": production}
        if self.name not in choices:
            raise ValueError(f"pick knows the sandbox and production profiles, got {self.name!r}")
        return choices[self.name]

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
    kafka_instance_type="kafka.t3.small",
    kafka_volume_size=10,
    kafka_enhanced_monitoring="DEFAULT",
    mq_instance_type="mq.t3.micro",
    mq_multi_az=False,
    archive_retention=Duration.days(7),
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
    kafka_instance_type="kafka.m7g.large",
    kafka_volume_size=100,
    kafka_enhanced_monitoring="PER_BROKER",
    mq_instance_type="mq.m5.large",
    mq_multi_az=True,
    archive_retention=Duration.days(365),
)

_PROFILES = {p.name: p for p in (SANDBOX, PRODUCTION)}
