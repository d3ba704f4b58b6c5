"""Parse, effect, report for batch sources, on Powertools' batch processing.

A consumer handler names how to read one record and what to do with it; this
module does the rest, the same way for every handler::

    consumer = BatchConsumer(SQS, read=readers.sqs_json(PlacedOrder), logger=logger, metrics=metrics)

    def charge(order: PlacedOrder, record: SQSRecord) -> None:
        ...
        consumer.count("OrdersCharged")

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics(capture_cold_start_metric=True)
    def lambda_handler(event, context):
        return consumer.process(event, context, effect=charge)

- the event must be one whose every record the partial batch response can
  name (an SQS ``messageId``, a stream record's sequence number, a Kafka
  record's topic, partition and offset); otherwise the invocation fails with
  a ``ValueError`` that says what was expected: Lambda retries the batch and
  then sends it to the source's dead-letter destination;
- ``read`` turns one record into what the effect takes; whatever it raises is
  that record's failure (``Rejected`` with a reason), logged once with the
  record's id and counted as ``RejectedRecords``; ``Skipped`` marks a record
  handled on purpose without an effect (logged, counted, not failed);
- an exception from the effect fails the record (logged once, with the error);
- FIFO queues (``fifo=True``) stop a message group at its first failure, so
  that its later messages are retried after it, in order;
- per batch, not per record: one log line with the counts, one metric per
  count (``FailedRecords``, ``RejectedRecords`` and whatever the effect counted
  with ``count``). Per-record INFO lines, metrics and trace segments cost more
  than reading the record; a failed record is the only one logged.

``process(..., batch_effect=...)`` is for consumers that act on the batch as a
whole (grouped writes): it receives every readable record at once and returns
the records that failed, with the error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .rejection import Rejected, Skipped, reason_of

T = TypeVar("T")
Record = Any


@dataclass(frozen=True)
class Source:
    """What differs between batch sources: Powertools' event type, the shape every record needs, how a record is named in logs."""

    name: str
    event_type: EventType
    check: Callable[[Any], None]
    describe: Callable[[Record], dict[str, Any]]
    #: What a reason calls the part of a record that is read: "the body", "the value", "the image".
    what: str = "the body"


def _records(event: Any, key: str, source: str) -> list[Any]:
    records = event.get(key) if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ValueError(f'not {source}: expected "{key}", a list of records')
    return records


def _check_sqs(event: Any) -> None:
    for index, record in enumerate(_records(event, "Records", "an SQS event")):
        if not isinstance(record, dict):
            raise ValueError(f"not an SQS event: Records[{index}] is {type(record).__name__}, expected a record object")
        if not isinstance(record.get("messageId"), str) or not record["messageId"]:
            raise ValueError(f"not an SQS event: Records[{index}] has no messageId, which names a record in the partial batch response")


def _check_stream(event: Any, source: str, record_key: str) -> None:
    for index, record in enumerate(_records(event, "Records", source)):
        if not isinstance(record, dict):
            raise ValueError(f"not {source}: Records[{index}] is {type(record).__name__}, expected a record object")
        inner = record.get(record_key)
        sequence = inner.get("SequenceNumber" if record_key == "dynamodb" else "sequenceNumber") if isinstance(inner, dict) else None
        if not isinstance(sequence, str) or not sequence:
            field = "dynamodb.SequenceNumber" if record_key == "dynamodb" else "kinesis.sequenceNumber"
            raise ValueError(f"not {source}: Records[{index}] has no {field}, which names a record in the partial batch response")


#: What names a Kafka record in the partial batch response.
_KAFKA_ID_FIELDS = (("topic", str, "a string"), ("partition", int, "an integer"), ("offset", int, "an integer"))


def _check_kafka(event: Any) -> None:
    records = event.get("records") if isinstance(event, dict) else None
    if not isinstance(records, dict) or not records or not all(isinstance(batch, list) for batch in records.values()):
        raise ValueError("not a Kafka event: expected 'records' to map '<topic>-<partition>' to lists of records")
    for partition_key, batch in records.items():
        for index, record in enumerate(batch):
            where = f"records[{partition_key!r}][{index}]"
            if not isinstance(record, dict):
                raise ValueError(f"not a Kafka event: {where} is {type(record).__name__}, expected a record object")
            for name, kind, described in _KAFKA_ID_FIELDS:
                value = record.get(name)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise ValueError(f"not a Kafka event: {where} has no {name} ({described}), which every record needs to be reported as failed")


def _describe_sqs(record: Record) -> dict[str, Any]:
    count = (record.get("attributes") or {}).get("ApproximateReceiveCount")
    return {"message_id": record.message_id, "receive_count": int(count) if isinstance(count, str) and count.isdigit() else count}


def _describe_dynamodb(record: Record) -> dict[str, Any]:
    stream = record.get("dynamodb") or {}
    return {"event_id": record.get("eventID"), "sequence_number": stream.get("SequenceNumber"), "keys": stream.get("Keys")}


def _describe_kinesis(record: Record) -> dict[str, Any]:
    return {"event_id": record.get("eventID"), "sequence_number": (record.get("kinesis") or {}).get("sequenceNumber")}


def _describe_kafka(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


_DATA_CLASSES = {
    EventType.SQS: SQSRecord,
    EventType.DynamoDBStreams: DynamoDBRecord,
    EventType.KinesisDataStreams: KinesisStreamRecord,
    EventType.Kafka: KafkaEventRecord,
}

SQS = Source("SQS", EventType.SQS, _check_sqs, _describe_sqs)
DYNAMODB_STREAMS = Source(
    "DynamoDB stream", EventType.DynamoDBStreams, lambda e: _check_stream(e, "a DynamoDB stream event", "dynamodb"), _describe_dynamodb, "the image"
)
KINESIS = Source("Kinesis", EventType.KinesisDataStreams, lambda e: _check_stream(e, "a Kinesis event", "kinesis"), _describe_kinesis, "the data")
KAFKA = Source("Kafka", EventType.Kafka, _check_kafka, _describe_kafka, "the value")


class BatchConsumer(Generic[T]):
    """Reads, acts on and reports one batch of ``source`` records; see the module's docstring.

    :param source: ``SQS``, ``DYNAMODB_STREAMS``, ``KINESIS`` or ``KAFKA``. Required.
    :param read: one record (Powertools' data class) to what the effect takes. Required.
    :param logger: the handler's Powertools logger. Required.
    :param metrics: the handler's Powertools metrics. Required.
    :param fifo: SQS FIFO: stop a message group at its first failure. Default: False.
    """

    def __init__(self, source: Source, *, read: Callable[[Record], T], logger: Logger, metrics: Metrics, fifo: bool = False) -> None:
        if fifo and source is not SQS:
            raise ValueError("fifo applies to SQS sources only")
        self.source = source
        self._read = read
        self._logger = logger
        self._metrics = metrics
        if fifo:
            self._processor: BatchProcessor = SqsFifoPartialProcessor(skip_group_on_error=True)
            # Its default raises when every record fails: report them instead, like any other batch.
            self._processor.raise_on_entire_batch_failure = False
        else:
            self._processor = BatchProcessor(source.event_type, raise_on_entire_batch_failure=False)
        self._counts: Counter[str] = Counter()

    def count(self, name: str, value: int = 1) -> None:
        """Add to a count that is published once, as a metric, when the batch is done."""
        self._counts[name] += value

    def read(self, record: Record) -> T:
        """``read`` applied to one record: ``Rejected`` (logged and counted) whatever it raises, ``Skipped`` as it is."""
        try:
            return self._read(record)
        except Skipped:
            raise
        except Exception as error:
            reason = reason_of(error, what=self.source.what)
            self._logger.error("Rejected record", extra={**self.source.describe(record), "reason": reason})
            self.count("RejectedRecords")
            raise Rejected(reason) from error

    def _skipped(self, record: Record, skipped: Skipped) -> None:
        self._logger.warning(f"Record skipped: {skipped.reason}", extra=self.source.describe(record))
        self.count(skipped.metric)

    def _per_record(self, effect: Callable[[T, Record], Any]) -> Callable[[Record], Any]:
        def handle(record: Record) -> Any:
            try:
                item = self.read(record)
            except Skipped as skipped:
                self._skipped(record, skipped)
                return None
            try:
                return effect(item, record)
            except Exception:
                self._logger.exception("Record failed", extra=self.source.describe(record))
                raise

        return handle

    def _whole_batch(self, event: dict[str, Any], batch_effect: Callable[[list[tuple[Record, T]]], Mapping[int, Exception]]) -> Callable[[Record], Any]:
        """Read every record first, act on the readable ones at once, then report each record's outcome."""
        records = self._processor_records(event)
        outcomes: dict[int, Exception | None] = {}
        readable: list[tuple[Record, T]] = []
        for record in records:
            try:
                readable.append((record, self.read(record)))
                outcomes[id(record.raw_event)] = None
            except Skipped as skipped:
                self._skipped(record, skipped)
                outcomes[id(record.raw_event)] = None
            except Rejected as rejected:
                outcomes[id(record.raw_event)] = rejected
        try:
            failures = dict(batch_effect(readable))
        except Exception as error:  # the effect failed as a whole: every record it was given failed with it
            failures = {id(record.raw_event): error for record, _ in readable}
        for record, _ in readable:
            error = failures.get(id(record.raw_event))
            if error is not None:
                outcomes[id(record.raw_event)] = error
                self._logger.error("Record failed", extra={**self.source.describe(record), "reason": f"{type(error).__name__}: {error}"})

        def report(record: Record) -> None:
            outcome = outcomes.get(id(record.raw_event))
            if outcome is not None:
                raise outcome

        return report

    def _processor_records(self, event: dict[str, Any]) -> Iterable[Record]:
        """The event's records as Powertools' data classes, over the same raw dicts the processor hands the record handler."""
        raw = [r for batch in event["records"].values() for r in batch] if self.source is KAFKA else event["Records"]
        return [_DATA_CLASSES[self.source.event_type](record) for record in raw]

    def process(
        self,
        event: dict[str, Any],
        context: Any,
        *,
        effect: Callable[[T, Record], Any] | None = None,
        batch_effect: Callable[[list[tuple[Record, T]]], Mapping[int, Exception]] | None = None,
    ) -> dict[str, Any]:
        """Handle the batch; returns the partial batch response (``{"batchItemFailures": [...]}``).

        :param effect: what to do with one record once read (record by record).
        :param batch_effect: what to do with every readable record at once; returns
            ``id(record.raw_event)`` -> the exception for each record that failed.
        """
        if (effect is None) == (batch_effect is None):
            raise ValueError("give exactly one of effect and batch_effect")
        self.source.check(event)
        self._counts = Counter()
        handler = self._per_record(effect) if effect is not None else self._whole_batch(event, batch_effect)
        response = process_partial_response(event=event, record_handler=handler, processor=self._processor, context=context)
        failed = len(response["batchItemFailures"])
        total = sum(len(b) for b in event["records"].values()) if self.source is KAFKA else len(event["Records"])
        # Partial failures are not invocation errors, so they get a metric of their own.
        self._counts["FailedRecords"] += failed
        self._counts["RejectedRecords"] += 0
        for name, value in sorted(self._counts.items()):
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self._logger.info("Batch processed", extra={"records": total, **dict(sorted(self._counts.items()))})
        return response
