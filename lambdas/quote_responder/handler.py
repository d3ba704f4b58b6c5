"""Answer the price-quote requests on the warehouse's request queue.

Parse: the RabbitMQ event source mapping's batch (``decode_rabbitmq_event``); each body is a
``QuoteRequest`` (``contracts.quotes``) in UTF-8 JSON, with an AMQP ``correlationId`` and ``replyTo``.

Effect: each request gets one reply on its ``replyTo`` with its ``correlationId``, through the
default exchange of the virtual host it came from: a ``QuoteReply``, or a ``QuoteError`` with the
reason when the request cannot be priced (a body that cannot be read or breaks the contract, no
correlationId). The price rule: the unit price of a SKU is 5.00 EUR plus the CRC-32 of its UTF-8
bytes modulo 9,501 in cents (5.00 to 100.00, the same every time); a line of 10 units or more gets
10 % off, rounded half up to the cent; the total is the sum of the lines. So a request answered
twice (a redelivery) gets the same quote twice; requesters drop replies they are not waiting for.
``messaging_runtime.amqp`` keeps one connection per virtual host and execution environment and
returns once the broker confirmed the reply. Replies to direct reply-to addresses
(``amq.rabbitmq.reply-to.*``) go without ``mandatory``: RabbitMQ 3.x reports them unroutable even
when it delivered them, and drops a reply whose requester has gone without telling the publisher
(the requester's own timeout covers that). Replies to named queues are mandatory: no such queue
is an error.

Report: a request without ``replyTo`` cannot be answered, nor can a message in a shape Lambda
never sends (UnanswerableRequests); they, and every reply the broker did not confirm, fail the
batch in one BatchFailed (``process_batch``), so that the broker keeps the requests: it redelivers
the batch and dead-letters it after the queue's delivery limit, where it alarms. A virtual host
that cannot be reached is tried once per batch. Logs: one line per batch, a warning per request
answered with an error, one line per failed message. Metrics, per batch: QuotesSent, ErrorRepliesSent.

Environment: the broker's (``AmqpSettings.from_environment``): BROKER_HOST, BROKER_SECRET_ARN
(required), BROKER_PORT (default 5671), BROKER_TLS (default true), SECRET_MAX_AGE_SECONDS (default
300), VIRTUAL_HOST (for a queue the event names without one; default /).
"""

import time
import zlib
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pika
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.amazon_mq import MQMessage, decode_rabbitmq_event, process_batch
from messaging_runtime.amqp import AmqpClients, AmqpSettings, BrokerError, PublishNotConfirmed, is_direct_reply_to
from messaging_runtime.contracts.quotes import QUOTE_REQUEST, Quote, QuoteErrorV1, QuoteLine, QuoteReplyV1, QuoteRequestV1
from messaging_runtime.rejection import Rejected, parse_json

CENT = Decimal("0.01")

logger, tracer, metrics = Logger(), Tracer(), Metrics()
clients = AmqpClients(AmqpSettings.from_environment(), logger=logger)


class ReplyNotSent(Exception):
    """The broker did not confirm a reply, or its virtual host could not be reached."""


def unit_price(sku: str) -> Decimal:
    """The same price for a SKU every time: 5.00 to 100.00."""
    return Decimal(500 + zlib.crc32(sku.encode()) % 9_501).scaleb(-2)


def price(request: QuoteRequestV1) -> Quote:
    lines = []
    for item in request.items:
        gross = unit_price(item.sku) * item.quantity
        discount = (gross / 10).quantize(CENT, rounding=ROUND_HALF_UP) if item.quantity >= 10 else Decimal("0.00")
        lines.append(QuoteLine(sku=item.sku, quantity=item.quantity, unit_price=unit_price(item.sku), discount=discount, amount=gross - discount))
    return Quote(customer_id=request.customer_id, currency="EUR", lines=lines, total=sum((line.amount for line in lines), Decimal("0.00")))


def reply_to(message: MQMessage) -> QuoteReplyV1 | QuoteErrorV1:
    try:
        request = parse_json(QUOTE_REQUEST, message.text())
    except Rejected as rejected:
        return QuoteErrorV1(status="error", error=f"not a valid quote request: {rejected.reason}")
    if message.correlation_id is None:
        return QuoteErrorV1(status="error", error="no correlationId: the requester could not match a reply to its request")
    return QuoteReplyV1(status="ok", quote=price(request))


def answer(message: MQMessage, unreachable: dict[str, str], counts: Counter) -> None:
    """Publish the request's reply; fail the message when it cannot be answered or the broker did not confirm the reply."""
    reply = reply_to(message)
    if message.reply_to is None:
        counts["UnanswerableRequests"] += 1
        raise Rejected(f"a request without replyTo ({getattr(reply, 'error', 'no replyTo')})")
    if reply.status == "error":
        logger.warning("Bad request, answering with an error", extra={"correlation_id": message.correlation_id, "reason": reply.error})
    label, vhost = f"correlationId {message.correlation_id}", message.virtual_host or "/"
    if vhost in unreachable:
        raise ReplyNotSent(f"{label}: {unreachable[vhost]}")
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, correlation_id=message.correlation_id, timestamp=int(time.time()))
    try:
        clients.for_virtual_host(vhost).publish(
            "", message.reply_to, reply.model_dump_json().encode(), properties, mandatory=not is_direct_reply_to(message.reply_to)
        )
    except BrokerError as exc:
        unreachable[vhost] = str(exc)
        raise ReplyNotSent(f"{label}: {exc}") from exc
    except PublishNotConfirmed as exc:
        raise ReplyNotSent(f"{label}: {exc.reason}") from exc
    counts["QuotesSent" if reply.status == "ok" else "ErrorRepliesSent"] += 1


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    batch = decode_rabbitmq_event(event, default_virtual_host=clients.settings.virtual_host)
    counts: Counter = Counter({"UnanswerableRequests": len(batch.malformed)})
    unreachable: dict[str, str] = {}  # virtual host -> why it could not be reached, in this invocation
    try:
        answered = process_batch(batch, lambda message: answer(message, unreachable, counts), logger=logger, metrics=metrics)
    finally:
        for name, value in sorted(counts.items()):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        logger.info("Batch processed", extra={"requests": len(batch), **counts})
    return {"requests": len(batch), "answered": len(answered)}
