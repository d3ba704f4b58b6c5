"""Outbox: a transactional outbox table and the pipe that puts each event written there on a bus."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._tables import grant_key_for_items, secure_table
from ._validation import check_range, require
from .encryption import key_or_new
from .event_bus import EventBus
from .function import HandlerFunction
from .monitoring import dynamodb as dynamodb_monitoring
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork
from .pipe import EventPipe
from .profile import Profile

RELAY_CODE = str(Path(__file__).resolve().parent / "handlers" / "outbox_relay")
#: The attributes of ``messaging_runtime.outbox`` the pipe's filter and the relay read.
KEY_ATTRIBUTE, TTL_ATTRIBUTE = "aggregate_id", "expires_at"
#: Outbox writes only: new or overwritten slots that hold an event (TTL deletions are REMOVE records and stay out).
#: Records older than this go to the dead-letter queue: the stream keeps 24 hours.
DEFAULT_MAXIMUM_RECORD_AGE = Duration.days(1)
OUTBOX_FILTER = {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"NewImage": {"detail_type": {"S": [{"exists": True}]}}}}


class Outbox(Construct):
    """A transactional outbox: write an aggregate's change and its event in one transaction; the event reaches the bus.

    - ``table``: one slot per aggregate (partition key ``aggregate_id``),
      overwritten by each event, written with ``messaging_runtime.outbox.Outbox``
      inside the caller's ``TransactWriteItems``; stream of new images; TTL on
      ``expires_at``; CMK, point-in-time recovery, the profile's protection and backups;
    - an :class:`EventPipe` from the stream (outbox writes only) through the
      relay function (the image as an event: detail-type and detail) to ``bus``,
      with source ``event_source``. Stream records of one slot keep their order,
      so an aggregate's events reach the bus in the order written. A failing
      batch is retried, bisected, then sent to the pipe's dead-letter queue (alarm);
    - alarms on the table's throttles and system errors, the pipe's failed
      executions, its dead-letter queue and the relay's errors.

    Delivery is at least once: consumers drop an event whose ``seq`` is not above the last they applied.

    :param bus: where events go (an :class:`EventBus` or any ``events.IEventBus``). Required.
    :param event_source: the ``source`` of every event of this outbox (the pipe may put no other). Required.
    :param batch_size: stream records per pipe batch (1 to 100). Default: 10.
    :param maximum_retry_attempts: retries of a failed batch before it is bisected down and dead-lettered. Default: 10.
    :param maximum_record_age: older records go to the dead-letter queue. Default: 1 day (the stream keeps 24 hours).
    :param encryption_key: encrypts the table, the logs and the queues. Default: a new key with rotation.
    :param network: the relay runs in it when the profile puts functions in a VPC. Default: none.
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``table``, ``relay`` (:class:`HandlerFunction`), ``pipe`` (:class:`EventPipe`),
    ``dead_letter_queue``, ``key``, ``event_source``, ``alarms``.
    """

    monitoring_label = "outbox"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bus: EventBus | events.IEventBus,
        event_source: str,
        batch_size: int = 10,
        maximum_retry_attempts: int = 10,
        maximum_record_age: Duration = DEFAULT_MAXIMUM_RECORD_AGE,
        encryption_key: kms.IKey | None = None,
        network: PrivateNetwork | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        require(bool(event_source) and not event_source.startswith("aws."), "event_source must be set and may not start with 'aws.'")
        check_range("batch_size", batch_size, 1, 100)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.event_source = event_source
        self.table, self.backup_plan = secure_table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=KEY_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
            stream=dynamodb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute=TTL_ATTRIBUTE,
            key=self.key,
            profile=self.profile,
        )
        self.relay = HandlerFunction(
            self,
            "Relay",
            code_path=RELAY_CODE,
            service_name="outbox_relay",
            description=f"Turns outbox writes into {event_source} events for the pipe",
            environment={"EVENT_SOURCE": event_source},
            encryption_key=self.key,
            network=network if self.profile.functions_in_vpc else None,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )
        self.pipe = EventPipe(
            self,
            "Pipe",
            source=self.table,
            target=bus,
            filter_patterns=[OUTBOX_FILTER],
            enrichment=self.relay,
            batch_size=batch_size,
            event_source=event_source,
            # A dynamic path into what the relay returned: each event keeps its own detail-type.
            detail_type="$.detail_type",
            input_template="<$.detail>",
            maximum_retry_attempts=maximum_retry_attempts,
            maximum_record_age=maximum_record_age,
            encryption_key=self.key,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )
        self.dead_letter_queue = self.pipe.dead_letter_queue
        self.alarms: list[cloudwatch.Alarm] = [
            *dynamodb_monitoring.alarms(self, self.table, alarm_topic, throttles_threshold=1, system_errors_threshold=1),
            *self.pipe.alarms,
            *self.relay.alarms,
        ]

    def grant_write(self, grantee: iam.IGrantable) -> iam.Grant:
        """What writing an event into the outbox in a transaction needs: ``dynamodb:PutItem`` on the table and the key's item actions."""
        return self.table.grant(grantee, "dynamodb:PutItem").combine(grant_key_for_items(self.key, grantee))

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return [
            *dynamodb_monitoring.widgets(f"{title} table", self.table),
            *self.relay.dashboard_widgets(f"{title} relay"),
        ]
