"""Record the warehouse's shipment updates (RabbitMQ); put each delay on the event bus once.

Parse: the RabbitMQ event source mapping's batch (``decode_rabbitmq_event``); each body is a
``ShipmentUpdate`` (``contracts.shipments``) in UTF-8 JSON, and a content type or encoding, when
set, must say JSON or text in UTF-8.

Effect, over the whole batch:

1. each update is written if it is its shipment's latest, in one conditional UpdateItem that also
   keeps a written delay in the item's ``unbridged_delays`` (``shipment_table``: the order of
   updates, duplicates skipped, same-second updates superseded visibly);
2. every delay of the batch in that set goes on the bus as ``ShipmentDelayed``, with PutEvents,
   10 per call (``EventBridgePublisher``, which retries only the entries that failed);
3. each delay PutEvents took leaves the set. A delay it did not take fails its message; the
   redelivery finds it still in the set and bridges it, once. Left: the event taken and the set
   not updated; the redelivery puts it again (EventBridge delivers at least once anyway, so rule
   targets should be idempotent on shipment id and time).

AWS calls per 1,000 updates, one in five delayed: 1,000 conditional UpdateItem, one per update on
purpose (the condition orders a shipment's updates, which BatchWriteItem cannot), 20 PutEvents
(the floor: 10 entries per call) and 200 UpdateItem that take the delays out of the set.

Report: ``process_batch`` names every failed message (bad input, a DynamoDB or EventBridge error)
in one BatchFailed. Amazon MQ has no partial batch response: the broker redelivers the batch (the
good updates are then skipped) and dead-letters it after the queue's delivery limit. Logs: one line
per batch with the counts, one per failed message, a warning per superseded update. Metrics, per
batch: ShipmentsRecorded, DuplicateShipmentsSkipped, ShipmentUpdatesSuperseded, ShipmentsBridged.

Environment: SHIPMENTS_TABLE (key shipment_id), EVENT_BUS_NAME (required); EVENT_SOURCE (default
legacy.warehouse); PUT_MAX_ATTEMPTS (default 3), PUT_RETRY_BASE_DELAY_SECONDS (default 0.2).
"""

import json
import os
from collections import Counter
from typing import Any

import boto3
import shipment_table
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime.amazon_mq import MQMessage, decode_rabbitmq_event, environment_number, process_batch
from messaging_runtime.contracts.shipments import SHIPMENT_DELAYED, SHIPMENT_UPDATE, SOURCE, ShipmentUpdateV1
from messaging_runtime.publishers import EventBridgePublisher, Retry
from messaging_runtime.rejection import Rejected, parse_json

TABLE, EVENT_SOURCE = os.environ["SHIPMENTS_TABLE"], os.environ.get("EVENT_SOURCE", SOURCE)

logger, tracer, metrics = Logger(), Tracer(), Metrics()
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))
retry = Retry(environment_number("PUT_MAX_ATTEMPTS", 3, low=1, high=10), environment_number("PUT_RETRY_BASE_DELAY_SECONDS", 0.2, low=0, high=5))
bus = EventBridgePublisher(eventbridge, event_bus_name=os.environ["EVENT_BUS_NAME"], retry=retry)


class BridgeFailed(RuntimeError):
    """PutEvents did not take a ShipmentDelayed event: its message fails, and the redelivery bridges it."""


def read(message: MQMessage) -> ShipmentUpdateV1:
    media_type = (message.content_type or "text/plain").split(";", 1)[0].strip().lower()
    if media_type not in ("application/json", "text/plain", "text/json") and not media_type.endswith("+json"):
        raise Rejected(f"content type {message.content_type!r} is not JSON or text")
    if (message.content_encoding or "utf-8").lower() not in ("utf-8", "utf8", "identity"):
        raise Rejected(f"content encoding {message.content_encoding!r} is not supported (only UTF-8 text)")
    return parse_json(SHIPMENT_UPDATE, message.text())


def bridge(delays: dict[str, ShipmentUpdateV1], outcomes: dict[str, Any], counts: Counter, seconds: float) -> None:
    """Put the delays on the bus, 10 per call; take each one PutEvents took out of its set; fail the message of each it did not."""
    places, updates = list(delays), list(delays.values())
    detail_type = SHIPMENT_DELAYED.detail_type
    details = [json.dumps(shipment_table.detail(update), separators=(",", ":")) for update in updates]
    entries = [{"Source": EVENT_SOURCE, "DetailType": detail_type, "Detail": text, "Time": u.occurred_at} for text, u in zip(details, updates, strict=True)]
    result = bus.publish(entries, time_budget_seconds=seconds)
    for failed in result.failed:
        reason = f"PutEvents did not take the {detail_type} event after {failed.attempts} attempt(s): {failed.code}: {failed.message}"
        outcomes[places[failed.index]] = BridgeFailed(reason)
    for sent in result.sent:
        try:
            shipment_table.mark_bridged(TABLE, updates[sent.index])
            counts["ShipmentsBridged"] += 1
        except Exception as error:  # on the bus, still in the set: the redelivery puts it again
            outcomes[places[sent.index]] = error


def settle(outcome: Any) -> Any:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = decode_rabbitmq_event(event)
    outcomes: dict[str, Any] = {}  # message place -> what happened, or the exception it failed with
    counts: Counter = Counter()
    delays: dict[str, ShipmentUpdateV1] = {}  # message place -> the update whose delay goes on the bus
    bridging: set[tuple[str, str]] = set()
    for message in batch.messages:
        try:
            update = read(message)
            outcomes[message.place], to_bridge = shipment_table.record(TABLE, update, message.id, bridging, counts)
            if to_bridge:
                delays[message.place] = update
        except Exception as error:  # that message's failure, reported with the batch's others
            outcomes[message.place] = error
    if delays:
        bridge(delays, outcomes, counts, context.get_remaining_time_in_millis() / 1000 - 2)
    for name, value in sorted(counts.items()):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    done = Counter(outcome for outcome in outcomes.values() if isinstance(outcome, str))
    logger.info("Batch processed", extra={"messages": len(batch), "failed": len(batch) - done.total(), **done})
    return {"messages": len(batch), **Counter(process_batch(batch, lambda message: settle(outcomes[message.place]), logger=logger, metrics=metrics))}
