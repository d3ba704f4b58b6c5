"""Price quotes, request and reply over AMQP (Exercise 05).

The requester sends a ``QuoteRequest`` to the queue ``quote-requests`` through
RabbitMQ's default exchange, with a ``correlation_id`` and ``reply_to`` (direct
reply-to); the responder answers on ``reply_to`` with the same correlation id:
a ``QuoteReply`` (``status`` ``ok``) or a ``QuoteError`` (``status`` ``error``).
The replies have no version field yet: they are version 1, and the first
breaking change adds ``schema_version``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._base import Contract, EventKind, OneOf
from .fields import Currency, CustomerId, Money, Sku, WholeNumber

MAX_ITEMS = 50
_CHANNEL = "RabbitMQ queue quote-requests; replies by direct reply-to (Exercise05EnterpriseMessaging)"


class QuoteItem(Contract):
    """A SKU and how many of it to price."""

    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=10_000)]


class QuoteRequestV1(Contract):
    """What a customer asks a price for."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    customer_id: CustomerId
    items: Annotated[list[QuoteItem], Field(min_length=1, max_length=MAX_ITEMS)]


class QuoteLine(Contract):
    """One priced line: ``amount`` is ``unit_price`` times ``quantity`` less ``discount``."""

    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    unit_price: Money
    discount: Money
    amount: Money


class Quote(Contract):
    """The price of a request, line by line; ``total`` is the sum of the lines' amounts."""

    customer_id: CustomerId
    currency: Currency
    lines: Annotated[list[QuoteLine], Field(min_length=1, max_length=MAX_ITEMS)]
    total: Money


class QuoteReplyV1(Contract):
    """The answer to a quote request that could be priced."""

    VERSION_FIELD = None

    status: Literal["ok"]
    quote: Quote


class QuoteErrorV1(Contract):
    """The answer to a request that could not be priced, and why."""

    VERSION_FIELD = None

    status: Literal["error"]
    error: Annotated[str, StringConstraints(strict=True, min_length=1)]


QUOTE_REQUEST = EventKind("QuoteRequest", QuoteRequestV1, channel=_CHANNEL)
QUOTE_REPLY = EventKind("QuoteReply", QuoteReplyV1, channel=_CHANNEL)
QUOTE_ERROR = EventKind("QuoteError", QuoteErrorV1, channel=_CHANNEL)
#: Either answer, by its ``status``.
QUOTE_ANSWERS = OneOf("status", {"ok": QUOTE_REPLY, "error": QUOTE_ERROR})

KINDS = (QUOTE_REQUEST, QUOTE_REPLY, QUOTE_ERROR)
