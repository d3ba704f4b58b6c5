"""Projection: a stream consumer that keeps a read model of an EventStore."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._grants import QueueDestination
from ._tables import grant_key_for_items, secure_table
from ._validation import check_duration_range, check_range, check_threshold
from .encryption import key_or_new
from .event_store import EventStore
from .function import DEFAULT_TIMEOUT, HandlerFunction
from .monitoring import lambda_function as lambda_monitoring
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

#: Only new events reach the handler: inserts whose item has ``kind = event`` (not snapshots).
NEW_EVENTS = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}}
DEFAULT_MAX_RECORD_AGE = Duration.hours(1)
DEFAULT_ITERATOR_AGE_THRESHOLD = Duration.minutes(1)
REBUILD_TIMEOUT = Duration.minutes(15)
DEFAULT_READ_MODEL_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


class Projection(Construct):
    """A read model kept by a Lambda function from an :class:`EventStore`'s stream.

    Not one of the consumer constructs (:class:`QueueEventSource`,
    :class:`KafkaEventSource`, :class:`MqEventSource`, which take a
    ``consumer`` function you made): a projection is a read model, and it owns
    its function, its table and its stream mapping, so that what the function
    may touch (its own read model, nothing else) is decided here.

    - the read-model table (partition key ``read_model_key``), on demand,
      CMK, point-in-time recovery, backed up and protected in production;
    - a :class:`HandlerFunction` (``READ_MODEL_TABLE`` in its environment)
      that may read and write items of the read model only;
    - an event source mapping on the store's stream that delivers only new
      events (``filters``), reports partial batch failures, bisects a failing
      batch, retries ``retry_attempts`` times, gives up on records older than
      ``max_record_age``, and then sends a description of the failed batch to
      a dead-letter queue (``sqs:SendMessage`` and the key's
      ``kms:GenerateDataKey`` and ``kms:Decrypt``; the events themselves stay
      in the store and can be re-projected by a rebuild);
    - alarms on the function's errors and throttles, on the DLQ, and on the
      iterator age (how far behind the stream the projection is).

    :param event_store: the store to project. Required.
    :param code_path: folder with the handler code. Required.
    :param service_name: Powertools service name. Required.
    :param handler: Default: ``handler.lambda_handler``.
    :param read_model_key: the read model's partition key (string). Default: ``id``.
    :param read_model_actions: what the handler (and the rebuild) may do to
        read-model items. Default: ``dynamodb:GetItem``, ``PutItem``, ``UpdateItem``.
    :param filters: the event source mapping's filter pattern. Default: inserts of ``kind = event`` items.
    :param batch_size: 1 to 10,000. Default: 100.
    :param parallelization_factor: concurrent batches per shard, 1 to 10; records
        of one aggregate stay in order at any factor (same partition key). Default: 1.
    :param retry_attempts: 0 to 10,000. Default: 3.
    :param max_record_age: 1 minute to 7 days. Default: 1 hour.
    :param starting_position: Default: ``TRIM_HORIZON`` (project what the stream still holds).
    :param iterator_age_threshold: Default: 1 minute, for 3 minutes in a row.
    :param destination_failures_alarm_threshold: ``DestinationDeliveryFailures`` (failure
        records that could not reach the DLQ) in 5 minutes that raise the alarm. Default: 1 (any).
    :param errors_alarm_threshold: the function's (and the rebuild's) ``Errors`` in 5 minutes. Default: 1 (any).
    :param throttles_alarm_threshold: the function's (and the rebuild's) ``Throttles`` in 5 minutes. Default: 1 (any).
    :param timeout: Default: 30 seconds.
    :param environment: extra environment variables. Default: none.
    :param network: Default: none (outside a VPC).
    :param encryption_key: Default: a new key with rotation.
    :param dead_letter_queue: the on-failure destination, used as it is. Default: a new
        terminal ``SecureQueue`` encrypted with ``encryption_key``.
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``read_model``, ``handler`` (the HandlerFunction), ``dead_letter_queue`` (an ``sqs.IQueue``), ``event_source``,
    ``rebuild_table`` (after :meth:`add_rebuild`), ``alarms``.
    """

    monitoring_label = "projection"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_store: EventStore,
        code_path: str,
        service_name: str,
        handler: str = "handler.lambda_handler",
        read_model_key: str = "id",
        read_model_actions: Sequence[str] = DEFAULT_READ_MODEL_ACTIONS,
        filters: Mapping[str, Any] = NEW_EVENTS,
        batch_size: int = 100,
        parallelization_factor: int = 1,
        retry_attempts: int = 3,
        max_record_age: Duration = DEFAULT_MAX_RECORD_AGE,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        iterator_age_threshold: Duration = DEFAULT_ITERATOR_AGE_THRESHOLD,
        destination_failures_alarm_threshold: int = 1,
        errors_alarm_threshold: int = 1,
        throttles_alarm_threshold: int = 1,
        timeout: Duration = DEFAULT_TIMEOUT,
        environment: Mapping[str, str] | None = None,
        network: PrivateNetwork | None = None,
        encryption_key: kms.IKey | None = None,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_threshold("destination_failures_alarm_threshold", destination_failures_alarm_threshold, 1)
        check_range("batch_size", batch_size, 1, 10000)
        check_range("parallelization_factor", parallelization_factor, 1, 10)
        check_range("retry_attempts", retry_attempts, 0, 10000)
        check_duration_range("max_record_age", max_record_age, Duration.minutes(1), Duration.days(7))
        key = key_or_new(self, encryption_key, self.profile)
        common = dict(encryption_key=key, alarm_topic=alarm_topic, profile=self.profile)
        self._key, self._alarm_topic, self._network = key, alarm_topic, network
        self._event_store, self._code_path, self._service_name = event_store, code_path, service_name
        self._read_model_key, self._read_model_actions = read_model_key, tuple(read_model_actions)
        self._function_thresholds = dict(errors_alarm_threshold=errors_alarm_threshold, throttles_alarm_threshold=throttles_alarm_threshold)
        self.rebuild_table: dynamodb.Table | None = None

        self.read_model, _ = secure_table(
            self,
            "ReadModel",
            partition_key=dynamodb.Attribute(name=read_model_key, type=dynamodb.AttributeType.STRING),
            key=key,
            profile=self.profile,
        )
        self.handler = HandlerFunction(
            self,
            "Handler",
            code_path=code_path,
            service_name=service_name,
            handler=handler,
            timeout=timeout,
            environment={"READ_MODEL_TABLE": self.read_model.table_name, **(environment or {})},
            network=network,
            **self._function_thresholds,
            **common,
        )
        self.read_model.grant(self.handler, *read_model_actions)
        grant_key_for_items(key, self.handler)

        self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
            self, "DeadLetterQueue", dead_letter_queue, role="on-failure destination of a DynamoDB stream event source mapping", **common
        )

        self.event_source = event_sources.DynamoEventSource(
            event_store.table,
            starting_position=starting_position,
            batch_size=batch_size,
            bisect_batch_on_error=True,
            retry_attempts=retry_attempts,
            max_record_age=max_record_age,
            parallelization_factor=parallelization_factor,
            report_batch_item_failures=True,
            on_failure=QueueDestination(self.dead_letter_queue),
            filters=[lambda_.FilterCriteria.filter(dict(filters))],
        )
        self.handler.function.add_event_source(self.event_source)
        self.alarms: list[cloudwatch.Alarm] = (
            self.handler.alarms
            + dead_letter_alarms
            + [
                lambda_monitoring.iterator_age_alarm(self, self.handler.function, iterator_age_threshold, alarm_topic),
                lambda_monitoring.destination_delivery_failures_alarm(self, self.handler.function, alarm_topic, destination_failures_alarm_threshold),
            ]
        )

    def add_rebuild(self, *, handler: str = "rebuild.lambda_handler", timeout: Duration = REBUILD_TIMEOUT) -> HandlerFunction:
        """A function that replays the whole store into a fresh read model.

        It runs ``handler`` from the projection's code folder, may scan the
        store (``dynamodb:Scan``) and write a second table of the read
        model's shape (``REBUILD_TABLE``, also in ``self.rebuild_table``), so a
        rebuilt model can be compared with the live one before switching. It
        may also write the live read model, to repair it after the stream
        gave up on a batch (the DLQ alarm): the handler's writes must then be
        conditional upserts that never replace newer state. Reads the table,
        not the stream, so it sees every event, however old.

        :param handler: Default: ``rebuild.lambda_handler``.
        :param timeout: Default: 15 minutes.
        """
        self.rebuild_table, _ = secure_table(
            self,
            "RebuildTarget",
            partition_key=dynamodb.Attribute(name=self._read_model_key, type=dynamodb.AttributeType.STRING),
            key=self._key,
            profile=self.profile,
        )
        rebuild = HandlerFunction(
            self,
            "Rebuild",
            code_path=self._code_path,
            service_name=f"{self._service_name}-rebuild",
            handler=handler,
            timeout=timeout,
            environment={"EVENT_STORE_TABLE": self._event_store.table.table_name, "REBUILD_TABLE": self.rebuild_table.table_name},
            network=self._network,
            encryption_key=self._key,
            alarm_topic=self._alarm_topic,
            profile=self.profile,
            **self._function_thresholds,
        )
        self._event_store.grant_scan(rebuild)
        self.rebuild_table.grant(rebuild, *self._read_model_actions)
        # Rebuilding into the live read model repairs it after the stream
        # dropped a batch: the upserts only ever replace older state.
        self.read_model.grant(rebuild, *self._read_model_actions)
        grant_key_for_items(self._key, rebuild)
        self.alarms += rebuild.alarms
        return rebuild

    def metric_iterator_age(self, **options) -> cloudwatch.Metric:
        """How far behind the stream the projection is. Default: maximum over 1 minute, milliseconds."""
        return lambda_monitoring.iterator_age(self.handler.function, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """A dashboard section (see :meth:`MonitoringDashboard.monitor`): the function's widgets and the iterator age."""
        return self.handler.dashboard_widgets(title) + [
            cloudwatch.GraphWidget(title=f"{title}: iterator age (ms)", left=[self.metric_iterator_age()], width=24)
        ]
