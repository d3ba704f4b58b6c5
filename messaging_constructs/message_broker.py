"""MessageBroker: an Amazon MQ broker (RabbitMQ or ActiveMQ) in private subnets, reached over TLS by named peers only."""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import jsii
from aws_cdk import Fn, IStableStringProducer, Lazy, RemovalPolicy, Stack, Token
from aws_cdk import aws_amazonmq as amazonmq
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import acknowledgements as ack
from ._naming import replaceable_name, subnet_identity
from ._validation import check_range, check_threshold, require
from .encryption import key_or_new
from .monitoring import mq as mq_monitoring
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork
from .profile import Profile
from .service_log_groups import ServiceLogGroups


class BrokerEngine(enum.Enum):
    """The broker engine, with its current default version and the TLS ports it listens on."""

    RABBITMQ = "RABBITMQ"
    ACTIVEMQ = "ACTIVEMQ"

    @property
    def default_version(self) -> str:
        return {"RABBITMQ": "3.13", "ACTIVEMQ": "5.18"}[self.value]

    @property
    def ports(self) -> dict[str, int]:
        """Protocol name to TLS port, as Amazon MQ exposes them."""
        if self is BrokerEngine.RABBITMQ:
            return {"amqps": 5671, "console": 443}
        return {"openwire": 61617, "amqps": 5671, "stomp": 61614, "mqtt": 8883, "wss": 61619, "console": 8162}

    @property
    def event_source_port(self) -> int:
        """The port Lambda's event source mapping consumes on: AMQPS for RabbitMQ, OpenWire for ActiveMQ."""
        return 5671 if self is BrokerEngine.RABBITMQ else 61617


#: Memory of each instance type, for the RabbitMQ memory alarm (RabbitMQ's high watermark is 40% of it by default).
INSTANCE_MEMORY_GIB = {"mq.t3.micro": 1, "mq.m5.large": 8, "mq.m5.xlarge": 16, "mq.m5.2xlarge": 32, "mq.m5.4xlarge": 64}
_NAME = re.compile(r"[A-Za-z0-9_-]{1,50}")
_USERNAME = re.compile(r"[A-Za-z0-9_.~-]{2,100}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True)
class BrokerUser:
    """A broker user and the secret holding its generated password (``{"username", "password"}``)."""

    username: str
    secret: secretsmanager.Secret


class MessageBroker(Construct):
    """An Amazon MQ broker that is never public, with generated credentials, logs, alarms and a maintenance window.

    - in the network's isolated subnets: one subnet for a single instance,
      two for an ActiveMQ active/standby pair, every subnet for a RabbitMQ
      cluster; ``publicly_accessible`` is always false;
    - a security group with no rules but those that :meth:`allow_client`
      adds (named peers, the engine's TLS ports only) and those the event
      source mappings need (itself, and HTTPS to the interface endpoints);
    - an administrator (console access) and an application user, each with a
      32-character generated password in a Secrets Manager secret encrypted
      with the CMK. CloudFormation creates both users on ActiveMQ; on
      RabbitMQ it accepts only the administrator, so the application user's
      secret is created here and the user itself inside RabbitMQ (see
      Exercise05's topology function). Amazon MQ offers no managed rotation:
      rotate by setting a new password on the broker (the MQ ``UpdateUser``
      API for ActiveMQ, applied at the next reboot; the RabbitMQ management
      API for RabbitMQ) and then in the secret;
    - encryption at rest with the CMK on ActiveMQ; RabbitMQ brokers accept
      only a key AWS owns, which Amazon MQ then uses;
    - general logs (and audit logs on ActiveMQ) to CloudWatch Logs, in the
      groups Amazon MQ creates under ``/aws/amazonmq/broker/<broker id>/``;
      :class:`ServiceLogGroups` gives them the profile's retention and the
      CMK and, in sandbox, deletes them with the stack;
    - automatic minor version upgrades in a weekly maintenance window
      (Sunday 03:00 UTC by default);
    - the profile's ``mq_instance_type`` and ``mq_multi_az``: sandbox a single
      ``mq.t3.micro`` instance; production ``mq.m5.large`` as a 3-node RabbitMQ
      cluster or an ActiveMQ active/standby pair across AZs;
    - ActiveMQ: a configuration that gives every queue its own dead-letter
      queue ``DLQ.<queue>``, so poison messages are kept per queue;
    - alarms, each for 15 minutes, on CPU (``cpu_alarm_percent``), memory
      (``memory_alarm_percent``: RabbitMQ node memory as a share of its high
      watermark, ActiveMQ JVM heap), storage (RabbitMQ free disk below
      ``disk_free_alarm_gib``, ActiveMQ store use at ``storage_alarm_percent``)
      and connections (``max_connections``); :meth:`add_queue_alarm` adds
      queue-depth alarms.

    Teardown: the broker, its configuration and its users' secrets are
    deleted with the stack in both profiles; the key follows the profile. A
    retained broker would need its subnets, security group, configuration and
    secrets retained too, or ``cdk destroy`` ends in DELETE_FAILED, and would
    go on costing what it costs running. Before destroying a production stack
    (whose termination protection must first be turned off), stop the
    publishers and let the queues drain, dead-letter queues included
    (docs/exercise-05.md, "Teardown").

    :param engine: ``RABBITMQ`` or ``ACTIVEMQ``. Required.
    :param network: Required.
    :param engine_version: Default: ``3.13`` for RabbitMQ, ``5.18`` for ActiveMQ.
    :param instance_type: Default: the profile's ``mq_instance_type`` (sandbox ``mq.t3.micro``, production ``mq.m5.large``).
    :param multi_az: across availability zones (a RabbitMQ cluster on every
        subnet, an ActiveMQ active/standby pair) rather than a single instance.
        Default: the profile's ``mq_multi_az`` (sandbox no, production yes).
    :param broker_name: a fixed name (at most 50 characters). CloudFormation
        cannot replace a broker whose name stays the same, so a change to a
        create-only property (deployment mode, subnets, encryption) then fails.
        Default: a name from the construct path and a hash of the create-only
        properties, which changes when they do, so that the replacement goes through.
    :param admin_username: Default: ``admin``.
    :param application_username: Default: ``app``.
    :param maintenance_day: Default: ``SUNDAY``.
    :param maintenance_time: ``HH:MM`` UTC. Default: ``03:00``.
    :param max_connections: connections that raise the connection alarm. Default: 100.
    :param cpu_alarm_percent: CPU use (RabbitMQ: of the busiest node) that raises its alarm. Default: 80.
    :param memory_alarm_percent: RabbitMQ: a node's memory as a percentage of its
        high watermark (40% of the instance's memory), at which RabbitMQ blocks
        publishers; ActiveMQ: JVM heap use. Default: 80.
    :param storage_alarm_percent: ActiveMQ: message store use (at 100% the broker refuses messages). Default: 80.
    :param disk_free_alarm_gib: RabbitMQ: free disk of the fullest node below which its alarm fires. Default: 4 GiB.
    :param encryption_key: the secrets, and data at rest on ActiveMQ. Default: a new key with rotation.
    :param alarm_topic: where alarms notify (the queue alarms of :meth:`add_queue_alarm` and
        :class:`MqEventSource` too). Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``broker`` (the ``CfnBroker``), ``broker_arn``,
    ``broker_name``, ``engine``, ``security_group``, ``connections``,
    ``admin``, ``application`` (:class:`BrokerUser`), ``log_groups`` (:class:`ServiceLogGroups`),
    ``deployment_mode``, ``instances``, ``network``, ``key``, ``alarms``.
    """

    @property
    def monitoring_label(self) -> str:
        """``broker (RabbitMQ)`` or ``broker (ActiveMQ)``, for :meth:`MonitoringDashboard.monitor`."""
        return f"broker ({'RabbitMQ' if self.engine is BrokerEngine.RABBITMQ else 'ActiveMQ'})"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        engine: BrokerEngine,
        network: PrivateNetwork,
        engine_version: str | None = None,
        instance_type: str | None = None,
        multi_az: bool | None = None,
        broker_name: str | None = None,
        admin_username: str = "admin",
        application_username: str = "app",
        maintenance_day: str = "SUNDAY",
        maintenance_time: str = "03:00",
        max_connections: int = 100,
        cpu_alarm_percent: float = 80,
        memory_alarm_percent: float = 80,
        storage_alarm_percent: float = 80,
        disk_free_alarm_gib: float = 4,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        self.engine = engine
        self.network = network
        self._alarm_topic = alarm_topic
        if broker_name is not None and not Token.is_unresolved(broker_name):
            require(bool(_NAME.fullmatch(broker_name)), f"broker_name must be 1 to 50 letters, digits, '-' or '_', got {broker_name!r}")
        for label, name in (("admin_username", admin_username), ("application_username", application_username)):
            require(bool(_USERNAME.fullmatch(name)), f"{label} must be 2 to 100 of letters, digits and '_.~-', got {name!r}")
        require(admin_username != application_username, "admin_username and application_username must differ")
        if engine is BrokerEngine.RABBITMQ:
            for label, name in (("admin_username", admin_username), ("application_username", application_username)):
                require("~" not in name and name != "guest", f"RabbitMQ brokers refuse '~' in user names and the name 'guest', got {label} {name!r}")
        require(
            maintenance_day in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"),
            f"maintenance_day must be a day of the week in capitals, got {maintenance_day!r}",
        )
        require(bool(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", maintenance_time)), f"maintenance_time must be HH:MM, got {maintenance_time!r}")
        check_range("max_connections", max_connections, 1, 100000)
        for label, percent in (
            ("cpu_alarm_percent", cpu_alarm_percent),
            ("memory_alarm_percent", memory_alarm_percent),
            ("storage_alarm_percent", storage_alarm_percent),
        ):
            check_threshold(label, percent, 1, 100, "%")
        check_threshold("disk_free_alarm_gib", disk_free_alarm_gib, 0.1, 16384, "GiB")
        instance_type = instance_type or self.profile.mq_instance_type
        require(instance_type.startswith("mq."), f"instance_type must be an Amazon MQ type such as mq.m5.large, got {instance_type!r}")
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)

        if self.profile.mq_multi_az if multi_az is None else multi_az:
            deployment_mode = "CLUSTER_MULTI_AZ" if engine is BrokerEngine.RABBITMQ else "ACTIVE_STANDBY_MULTI_AZ"
        else:
            deployment_mode = "SINGLE_INSTANCE"
        require(
            not (instance_type == "mq.t3.micro" and deployment_mode != "SINGLE_INSTANCE"),
            "mq.t3.micro brokers can only be single instances; choose a larger instance_type",
        )
        self.deployment_mode = deployment_mode
        subnets = network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnets
        count = {"SINGLE_INSTANCE": 1, "ACTIVE_STANDBY_MULTI_AZ": 2, "CLUSTER_MULTI_AZ": len(subnets)}[deployment_mode]
        require(len(subnets) >= count, f"a {deployment_mode} broker needs {count} subnets in different AZs, the network has {len(subnets)}")
        subnets = subnets[:count]
        # What forces a new broker (AWS::AmazonMQ::Broker "Update requires: Replacement"): engine, deployment mode,
        # subnets, encryption options, authentication strategy, storage type (not set: the engine's default), public accessibility.
        self.broker_name = broker_name or replaceable_name(
            self,
            max_length=50,
            create_only={
                "engine": engine.value,
                "deployment_mode": deployment_mode,
                "subnets": subnet_identity(subnets),
                "encryption": self.key.key_arn if engine is BrokerEngine.ACTIVEMQ else "AWS_OWNED",
                "authentication": "SIMPLE",
                "public": False,
            },
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description=f"Amazon MQ {engine.value} broker: TLS ports from named peers only",
        )
        self.connections = ec2.Connections(security_groups=[self.security_group], default_port=ec2.Port.tcp(engine.event_source_port))

        self.admin = self._user("Admin", admin_username, "administrator")
        self.application = self._user("Application", application_username, "application")
        if engine is BrokerEngine.ACTIVEMQ:
            users = [
                _cfn_user(self.admin, console_access=True, groups=[ADMIN_GROUP]),
                _cfn_user(self.application, console_access=False, groups=[APPLICATION_GROUP]),
            ]
        else:
            # RabbitMQ takes only the administrator, and neither console access nor groups apply to it.
            users = [_cfn_user(self.admin)]

        self._application_queues: dict[str, set[str]] = {}
        logs_policy = _allow_amazonmq_logs(self)
        configuration = None
        if engine is BrokerEngine.ACTIVEMQ:
            version = engine_version or engine.default_version
            config = amazonmq.CfnConfiguration(
                self,
                "Configuration",
                # Name, engine type and version, and authentication strategy are create-only; the name changes with them.
                name=replaceable_name(
                    self, max_length=150, create_only={"engine": engine.value, "version": version, "authentication": "SIMPLE"}, suffix="-config"
                ),
                engine_type=engine.value,
                engine_version=version,
                description="Every queue dead-letters to its own DLQ.<queue>; the application user may use only the queues it is given",
                # Rendered at synth, once every queue the application may use is known.
                data=Lazy.string(_ConfigurationData(self._application_queues)),
            )
            configuration = amazonmq.CfnBroker.ConfigurationIdProperty(id=config.attr_id, revision=config.attr_revision)

        self.broker = amazonmq.CfnBroker(
            self,
            "Resource",
            broker_name=self.broker_name,
            engine_type=engine.value,
            engine_version=engine_version or engine.default_version,
            host_instance_type=instance_type,
            deployment_mode=deployment_mode,
            publicly_accessible=False,
            subnet_ids=[subnet.subnet_id for subnet in subnets],
            security_groups=[self.security_group.security_group_id],
            users=users,
            auto_minor_version_upgrade=True,
            maintenance_window_start_time=amazonmq.CfnBroker.MaintenanceWindowProperty(
                day_of_week=maintenance_day, time_of_day=maintenance_time, time_zone="UTC"
            ),
            logs=amazonmq.CfnBroker.LogListProperty(general=True, audit=True if engine is BrokerEngine.ACTIVEMQ else None),
            encryption_options=(
                amazonmq.CfnBroker.EncryptionOptionsProperty(use_aws_owned_key=False, kms_key_id=self.key.key_arn)
                if engine is BrokerEngine.ACTIVEMQ
                else amazonmq.CfnBroker.EncryptionOptionsProperty(use_aws_owned_key=True)
            ),
            configuration=configuration,
        )
        # Deleted with the stack in both profiles: see the class docstring ("Teardown").
        self.broker.apply_removal_policy(RemovalPolicy.DESTROY)
        self.broker.node.add_dependency(logs_policy)
        self.broker_arn: str = self.broker.attr_arn
        self.log_groups = ServiceLogGroups(
            self,
            "LogGroups",
            log_group_names=[f"/aws/amazonmq/broker/{self.broker.ref}/{kind}" for kind in ("general", "audit")[: 2 if engine is BrokerEngine.ACTIVEMQ else 1]],
            network=network,
            encryption_key=self.key,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )

        self.instances = [f"{self.broker_name}-1", f"{self.broker_name}-2"] if deployment_mode == "ACTIVE_STANDBY_MULTI_AZ" else [f"{self.broker_name}-1"]
        if engine is BrokerEngine.ACTIVEMQ:
            self.alarms: list[cloudwatch.Alarm] = mq_monitoring.activemq_alarms(
                self,
                self.broker_name,
                self.instances,
                cpu_percent=cpu_alarm_percent,
                heap_percent=memory_alarm_percent,
                store_percent=storage_alarm_percent,
                max_connections=max_connections,
                alarm_topic=alarm_topic,
            )
        else:
            memory = INSTANCE_MEMORY_GIB.get(instance_type)
            require(memory is not None, f"no memory figure for {instance_type}; use one of {', '.join(sorted(INSTANCE_MEMORY_GIB))}")
            self.alarms = mq_monitoring.rabbitmq_alarms(
                self,
                self.broker_name,
                cpu_percent=cpu_alarm_percent,
                # RabbitMQ's memory high watermark is 40% of the instance's memory.
                memory_bytes=memory_alarm_percent / 100 * 0.4 * memory * 2**30,
                disk_free_bytes=disk_free_alarm_gib * 2**30,
                max_connections=max_connections,
                alarm_topic=alarm_topic,
            )
        self._queues: list[str] = []
        ack.secrets_manager_rotation_enabled([self.admin.secret, self.application.secret])

    def _user(self, construct_id: str, username: str, role: str) -> BrokerUser:
        secret = secretsmanager.Secret(
            self,
            f"{construct_id}Secret",
            description=f"Amazon MQ {self.engine.value} broker {self.broker_name}: the {role} user",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"username": "{username}"}}',
                generate_string_key="password",
                password_length=32,
                # Amazon MQ refuses commas, colons and equals signs; the rest of punctuation only complicates URLs.
                exclude_punctuation=True,
            ),
            # The passwords of a broker that no longer exists: deleted with it.
            removal_policy=RemovalPolicy.DESTROY,
        )
        return BrokerUser(username=username, secret=secret)

    # --- endpoints -----------------------------------------------------------

    @property
    def amqps_endpoint(self) -> str:
        """``amqps://<host>:5671`` of the (first) broker instance."""
        return Fn.select(0, self.broker.attr_amqp_endpoints)

    @property
    def stomp_endpoint(self) -> str:
        """``stomp+ssl://<host>:61614`` of the first ActiveMQ instance."""
        require(self.engine is BrokerEngine.ACTIVEMQ, "only ActiveMQ brokers speak STOMP")
        return Fn.select(0, self.broker.attr_stomp_endpoints)

    @property
    def console_url(self) -> str:
        """The web console; for RabbitMQ also the management HTTP API (port 443)."""
        return Fn.select(0, self.broker.attr_console_ur_ls)

    @property
    def host(self) -> str:
        """The first instance's host name, from its AMQPS endpoint."""
        return _host_of(self.amqps_endpoint)

    @property
    def hosts(self) -> str:
        """Every instance's host name, comma-separated: the active and the standby of an ActiveMQ pair, in order."""
        return Fn.join(",", [_host_of(Fn.select(i, self.broker.attr_amqp_endpoints)) for i in range(len(self.instances))])

    # --- access --------------------------------------------------------------

    def allow_client(self, peer: ec2.IConnectable, *protocols: str, description: str = "client") -> None:
        """Let ``peer`` reach the broker on the named protocols' TLS ports (default: AMQPS for RabbitMQ, OpenWire for ActiveMQ).

        Protocols: RabbitMQ ``amqps``, ``console``; ActiveMQ ``openwire``,
        ``amqps``, ``stomp``, ``mqtt``, ``wss``, ``console``.
        """
        ports = self.engine.ports
        for protocol in protocols or ("amqps" if self.engine is BrokerEngine.RABBITMQ else "openwire",):
            require(protocol in ports, f"{self.engine.value} brokers have no {protocol!r} port; choose from {', '.join(ports)}")
            self.connections.allow_from(peer, ec2.Port.tcp(ports[protocol]), f"{description}: {protocol} over TLS")

    def allow_event_source_mappings(self) -> None:
        """Let Lambda's event source mappings reach the broker. Idempotent; :class:`MqEventSource` calls it.

        Their network interfaces share the broker's security group: they reach the
        broker through it, and Lambda, STS and Secrets Manager through the network's
        interface endpoints, which this adds when missing (see
        :meth:`PrivateNetwork.allow_event_source_mappings`).
        """
        self.network.allow_event_source_mappings(
            self.security_group,
            ec2.Port.tcp(self.engine.event_source_port),
            "Event source mappings within the broker group",
            services=(
                ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
                ec2.InterfaceVpcEndpointAwsService.STS,
                ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            ),
        )

    def allow_application(self, queue: str, *, read: bool = False, write: bool = False) -> None:
        """ActiveMQ: let the application user read (consume) and/or write (produce to) ``queue``, and create it on first use.

        The broker's authorization map admits the application user to these
        queues only (and to the advisory topics clients need); the administrator
        and the web console may use every destination. An :class:`MqEventSource`
        allows ``read`` on its queue itself. RabbitMQ users' permissions are set
        inside RabbitMQ (see Exercise05's topology function), so this refuses
        RabbitMQ brokers.
        """
        require(self.engine is BrokerEngine.ACTIVEMQ, "allow_application applies to ActiveMQ; RabbitMQ permissions are set inside RabbitMQ")
        require(read or write, f"allow_application needs read=True and/or write=True for {queue!r}")
        require(
            bool(_QUEUE_NAME.fullmatch(queue)) and not queue.startswith("DLQ."),
            f"queue must be a plain ActiveMQ queue name (letters, digits, '.', '_', '-'; no wildcards; not a DLQ.<queue>), got {queue!r}",
        )
        self._application_queues.setdefault(queue, set()).update({"read"} if read else set(), {"write"} if write else set())

    def grant_read_credentials(self, grantee: iam.IGrantable, user: str = "application") -> iam.Grant:
        """Read the secret of the ``application`` (default) or ``admin`` user, and decrypt it with the key."""
        require(user in ("application", "admin"), f"user must be 'application' or 'admin', got {user!r}")
        return (self.application if user == "application" else self.admin).secret.grant_read(grantee)

    # --- monitoring ----------------------------------------------------------

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """A broker-level metric (RabbitMQ: ``MessageCount``, ``ConnectionCount``...; ActiveMQ: of the first instance). Default: average over 5 minutes."""
        broker = self.broker_name if self.engine is BrokerEngine.RABBITMQ else self.instances[0]
        return mq_monitoring.metric({"Broker": broker}, metric_name, **options)

    def metric_queue_depth(self, queue: str, *, virtual_host: str = "/", **options) -> cloudwatch.IMetric:
        """Messages in ``queue``. Default: maximum over 5 minutes."""
        return mq_monitoring.queue_depth(self.engine.value, self.broker_name, queue, virtual_host=virtual_host, instances=self.instances, **options)

    def add_queue_alarm(self, construct_id: str, queue: str, *, threshold: int, virtual_host: str = "/") -> cloudwatch.Alarm:
        """Alarm when ``queue`` holds ``threshold`` messages or more (use 1 for a dead-letter queue)."""
        check_range("threshold", threshold, 1, 1e9)
        alarm = mq_monitoring.queue_depth_alarm(
            self,
            construct_id,
            self.engine.value,
            self.broker_name,
            queue,
            threshold=threshold,
            virtual_host=virtual_host,
            instances=self.instances,
            alarm_topic=self._alarm_topic,
        )
        self._queues.append(queue)
        self.alarms.append(alarm)
        return alarm

    def dashboard_widgets(self, title: str, virtual_host: str = "/") -> list[cloudwatch.IWidget]:
        """A dashboard section (see :meth:`MonitoringDashboard.monitor`): CPU and heap, connections, depth of the alarmed queues."""
        return mq_monitoring.widgets(title, self.engine.value, self.broker_name, self.instances, self._queues, virtual_host)


def _host_of(endpoint: str) -> str:
    """``amqps://<host>:5671`` -> ``<host>``, at deploy time."""
    return Fn.select(0, Fn.split(":", Fn.select(1, Fn.split("//", endpoint))))


#: ActiveMQ groups: the administrator's, the application user's, and the one Amazon MQ's web console acts as.
ADMIN_GROUP = "admin"
APPLICATION_GROUP = "application"
WEB_CONSOLE_GROUP = "activemq-webconsole"
#: What each kind of access lets the application group do on one of its queues. Not ``admin`` (create): with it, a
#: name with a wildcard (``queue://*``) would match the queue's entry and let the group create and feed a queue
#: whose messages reach every consumer the wildcard matches. The broker creates the queues at start instead.
_ACCESS = {"read": ("read",), "write": ("write",)}


def activemq_configuration(application_queues: Mapping[str, Collection[str]] | None = None) -> str:
    """The ActiveMQ broker configuration: per-queue dead-letter queues and an authorization map.

    - every queue dead-letters to its own ``DLQ.<queue>``; expired messages are not dead-lettered;
    - without an authorization map every authenticated user may do anything on every
      destination (https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/using-amazon-mq-securely.html).
      With this one, the ``admin`` group and the web console's group may use every
      queue and topic; the ``application`` group may only read or write the queues
      named in ``application_queues`` (queue -> ``{"read", "write"}``), which the
      broker creates when it starts, and read (and create) the advisory topics that
      ActiveMQ clients follow; it may create no destination of its own, so no
      wildcard name gets it more than it was given. Dead-letter queues are not
      the application's: an operator inspects and moves their messages.

    :param application_queues: Default: none (the application group may use no queue).
    """
    application_queues = application_queues or {}
    everyone = (ADMIN_GROUP, WEB_CONSOLE_GROUP)

    def entry(kind: str, name: str, rights: Mapping[str, Collection[str]]) -> str:
        groups = " ".join(f"{right}={quoteattr(','.join(rights[right]))}" for right in ("read", "write", "admin") if rights.get(right))
        return f"          <authorizationEntry {kind}={quoteattr(name)} {groups}/>\n"

    full = {"read": everyone, "write": everyone, "admin": everyone}
    entries = entry("queue", ">", full) + entry("topic", ">", full)
    # Clients create and read advisory topics; the broker writes them below the authorization check.
    entries += entry("topic", "ActiveMQ.Advisory.>", {"read": (*everyone, APPLICATION_GROUP), "write": everyone, "admin": (*everyone, APPLICATION_GROUP)})
    for queue in sorted(application_queues):
        unknown = set(application_queues[queue]) - set(_ACCESS)
        require(not unknown and application_queues[queue], f"queue access must be 'read' and/or 'write', got {sorted(application_queues[queue])} for {queue!r}")
        rights = {right for access in application_queues[queue] for right in _ACCESS[access]}
        entries += entry("queue", queue, {right: (APPLICATION_GROUP,) for right in rights})
    strategy = '<individualDeadLetterStrategy queuePrefix={} useQueueForQueueMessages="true" processExpired="false"/>'.format(quoteattr("DLQ."))
    destinations = ""
    if application_queues:
        queues = "".join(f"    <queue physicalName={quoteattr(queue)}/>\n" for queue in sorted(application_queues))
        destinations = f"  <destinations>\n{queues}  </destinations>\n"
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<broker schedulePeriodForDestinationPurge="10000" xmlns="http://activemq.apache.org/schema/core">\n'
        "  <destinationPolicy>\n"
        "    <policyMap>\n"
        "      <policyEntries>\n"
        '        <policyEntry queue="&gt;">\n'
        f"          <deadLetterStrategy>{strategy}</deadLetterStrategy>\n"
        "        </policyEntry>\n"
        "      </policyEntries>\n"
        "    </policyMap>\n"
        "  </destinationPolicy>\n"
        f"{destinations}"
        "  <plugins>\n"
        "    <authorizationPlugin>\n"
        "      <map>\n"
        "        <authorizationMap>\n"
        "          <authorizationEntries>\n"
        f"{entries.replace('          <authorizationEntry', '            <authorizationEntry')}"
        "          </authorizationEntries>\n"
        "          <tempDestinationAuthorizationEntry>\n"
        f"            <tempDestinationAuthorizationEntry read={quoteattr(','.join(everyone))} write={quoteattr(','.join(everyone))} "
        f"admin={quoteattr(','.join(everyone))}/>\n"
        "          </tempDestinationAuthorizationEntry>\n"
        "        </authorizationMap>\n"
        "      </map>\n"
        "    </authorizationPlugin>\n"
        "  </plugins>\n"
        "</broker>\n"
    )


@jsii.implements(IStableStringProducer)
class _ConfigurationData:
    """The ActiveMQ configuration, base64-encoded, with the application's queues as they stand at synth."""

    def __init__(self, application_queues: Mapping[str, Collection[str]]) -> None:
        self._queues = application_queues

    def produce(self) -> str:
        return base64.b64encode(activemq_configuration(self._queues).encode()).decode()


def _cfn_user(user: BrokerUser, *, console_access: bool | None = None, groups: Sequence[str] = ()) -> amazonmq.CfnBroker.UserProperty:
    return amazonmq.CfnBroker.UserProperty(
        username=user.username,
        password=user.secret.secret_value_from_json("password").unsafe_unwrap(),
        console_access=console_access,
        groups=list(groups) or None,
    )


def _allow_amazonmq_logs(scope: Construct) -> logs.ResourcePolicy:
    """Amazon MQ writes broker logs only where a CloudWatch Logs resource policy lets it; one per stack."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("AmazonMqLogsPolicy")
    if isinstance(existing, logs.ResourcePolicy):
        return existing
    return logs.ResourcePolicy(
        stack,
        "AmazonMqLogsPolicy",
        resource_policy_name=f"{stack.stack_name}-amazonmq-logs",
        policy_statements=[
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("mq.amazonaws.com")],
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/amazonmq/*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        ],
    )
