"""Amazon MQ events in the shapes Lambda's event source mappings pass to a function.

ActiveMQ (``"eventSource": "aws:mq"``): a ``messages`` list; each message has
its JMS headers (``messageID``, ``messageType``, ``deliveryMode``,
``correlationID``, ``replyTo``, ``type``, ``expiration``, ``priority``,
``redelivered``), its ``destination``, broker times in epoch milliseconds,
its JMS ``properties`` (string values; ``null`` when there are none) and the
body base64-encoded in ``data``.

RabbitMQ (``"eventSource": "aws:rmq"``): ``rmqMessagesByQueue`` maps
``"<queue>::<virtual host>"`` to that queue's messages; each has the AMQP
``basicProperties`` (``contentType``, ``contentEncoding``, ``headers``,
``deliveryMode``, ``priority``, ``correlationId``, ``replyTo``,
``expiration``, ``messageId``, ``timestamp`` as formatted text, ``type``,
``userId``, ``appId``, ``clusterId``, ``bodySize``), a ``redelivered`` flag
and the body base64-encoded in ``data``. String headers arrive as
``{"bytes": [...]}``, numbers as numbers.

Every builder returns plain dicts (JSON-ready), fresh ids each time.
"""

import base64
import copy
import itertools
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
# Pass as an override to leave a field out: ``new_shipment_update(carrier=OMIT)``.
OMIT = object()


def _epoch_ms() -> int:
    return int(time.time() * 1000)


def _body_bytes(body: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(body, dict):
        return json.dumps(body).encode()
    return body.encode() if isinstance(body, str) else body


def new_invoice(**overrides: Any) -> dict[str, Any]:
    """A valid ERP invoice event, fresh ids; keyword arguments override fields."""
    invoice = {
        "schema_version": 1,
        "invoice_id": f"inv-{uuid.uuid4().hex[:12]}",
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "amount": "123.45",
        "currency": "EUR",
        "status": "issued",
        "issued_at": "2025-03-14T09:26:53.589Z",
    }
    invoice.update(overrides)
    return {name: value for name, value in invoice.items() if value is not OMIT}


def new_shipment_update(**overrides: Any) -> dict[str, Any]:
    """A valid warehouse shipment update, fresh ids; keyword arguments override fields."""
    update = {
        "schema_version": 1,
        "shipment_id": f"s-{uuid.uuid4().hex[:12]}",
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "status": "picked",
        "occurred_at": "2025-03-14T09:00:00Z",
        "carrier": "DHL",
    }
    update.update(overrides)
    return {name: value for name, value in update.items() if value is not OMIT}


class ActiveMQEvents:
    """Builds ActiveMQ events for one broker and queue."""

    def __init__(self, queue: str = "erp.invoices", broker_name: str = "legacy-erp") -> None:
        self.queue = queue
        self.broker_id = f"b-{uuid.uuid4()}"
        self.broker_arn = f"arn:aws:mq:{REGION}:{ACCOUNT_ID}:broker:{broker_name}:{self.broker_id}"
        self._connection = f"{self.broker_id}-1.mq.{REGION}.amazonaws.com-37557-{_epoch_ms()}-4"
        self._sequence = itertools.count(1)

    def message(
        self,
        body: str | bytes | dict[str, Any] = b"",
        *,
        data: str | None = None,
        message_type: str = "jms/text-message",
        message_id: str | None = None,
        redelivered: bool = False,
        properties: dict[str, str] | None = None,
        correlation_id: str = "",
        **overrides: Any,
    ) -> dict[str, Any]:
        """One message; ``data`` replaces the base64 of ``body`` (to send what is not base64)."""
        now = _epoch_ms()
        message = {
            "messageID": message_id or f"ID:{self._connection}:1:1:1:{next(self._sequence)}",
            "messageType": message_type,
            "timestamp": now - 40,
            "deliveryMode": 2,
            "correlationID": correlation_id,
            "replyTo": "null",
            "destination": {"physicalName": self.queue},
            "redelivered": redelivered,
            "type": "",
            "expiration": 0,
            "priority": 4,
            "data": data if data is not None else base64.b64encode(_body_bytes(body)).decode(),
            "brokerInTime": now - 38,
            "brokerOutTime": now - 2,
            "properties": properties,
        }
        message.update(overrides)
        return message

    def invoice_message(self, invoice: dict[str, Any], **options: Any) -> dict[str, Any]:
        """A JMS text message carrying an invoice event, with the properties a STOMP client sets."""
        options.setdefault(
            "properties", {"content-type": "application/json;charset=UTF-8", "erp_system": "legacy-erp", "invoice_status": str(invoice.get("status"))}
        )
        return self.message(json.dumps(invoice), **options)

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"eventSource": "aws:mq", "eventSourceArn": self.broker_arn, "messages": messages}

    @staticmethod
    def redelivery(event: dict[str, Any]) -> dict[str, Any]:
        """The same batch as the broker delivers it again: same message ids, ``redelivered`` set, later out time."""
        again = copy.deepcopy(event)
        for message in again["messages"]:
            message["redelivered"] = True
            message["brokerOutTime"] = _epoch_ms()
        return again


class RabbitMQEvents:
    """Builds RabbitMQ events for one broker."""

    def __init__(self, broker_name: str = "legacy-warehouse") -> None:
        self.broker_arn = f"arn:aws:mq:{REGION}:{ACCOUNT_ID}:broker:{broker_name}:b-{uuid.uuid4()}"

    @staticmethod
    def headers(values: dict[str, Any]) -> dict[str, Any]:
        """AMQP headers as the event carries them: text as ``{"bytes": [...]}``, numbers and booleans as they are."""
        return {name: {"bytes": list(value.encode())} if isinstance(value, str) else value for name, value in values.items()}

    def message(
        self,
        body: str | bytes | dict[str, Any] = b"",
        *,
        data: str | None = None,
        content_type: str | None = "application/json",
        content_encoding: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = "",
        redelivered: bool = False,
        **properties: Any,
    ) -> dict[str, Any]:
        """One message; ``message_id=None`` leaves the AMQP message id unset (``""`` makes a fresh one)."""
        raw = _body_bytes(body)
        basic_properties = {
            "contentType": content_type,
            "contentEncoding": content_encoding,
            "headers": self.headers(headers if headers is not None else {"source": "wms-7", "attempt": 1}),
            "deliveryMode": 2,
            "priority": 0,
            "correlationId": None,
            "replyTo": None,
            "expiration": None,
            "messageId": str(uuid.uuid4()) if message_id == "" else message_id,
            "timestamp": datetime.now(timezone.utc).strftime("%b %-d, %Y, %-I:%M:%S %p"),
            "type": None,
            "userId": "warehouse",
            "appId": "wms",
            "clusterId": None,
            "bodySize": len(raw),
        }
        basic_properties.update(properties)
        return {
            "basicProperties": basic_properties,
            "redelivered": redelivered,
            "data": data if data is not None else base64.b64encode(raw).decode(),
        }

    def shipment_message(self, update: dict[str, Any], **options: Any) -> dict[str, Any]:
        options.setdefault("headers", {"source": "wms-7", "event": str(update.get("status")), "attempt": 1})
        return self.message(json.dumps(update), **options)

    def event(self, by_queue: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """``by_queue`` maps ``"<queue>::<vhost>"`` to the messages read from that queue."""
        return {"eventSource": "aws:rmq", "eventSourceArn": self.broker_arn, "rmqMessagesByQueue": by_queue}

    @staticmethod
    def redelivery(event: dict[str, Any]) -> dict[str, Any]:
        """The same batch as the broker delivers it again, ``redelivered`` set on every message."""
        again = copy.deepcopy(event)
        for messages in again["rmqMessagesByQueue"].values():
            for message in messages:
                message["redelivered"] = True
        return again

    @staticmethod
    def message_ids(event: dict[str, Any]) -> list[str]:
        return [message["basicProperties"]["messageId"] for messages in event["rmqMessagesByQueue"].values() for message in messages]
