"""Field types the contracts share: each rule written once, used by every event that carries the field.

Every type reads the same value from JSON text and from the Python values
``json.loads`` (or DynamoDB's ``TypeDeserializer``) gives, and refuses what a
lax reader would turn into something else: ``true`` is not the number 1,
``"12.5"`` is not an amount, ``1700000000`` is not a time. The rules are the
strictest that every current producer of the blueprints satisfies;
``docs/schema-evolution.md`` lists where the handlers disagreed and which rule won.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, PlainSerializer, StringConstraints, WithJsonSchema


def _whole_number(value: Any) -> Any:
    # pydantic matches literals by hash, so without this check true and 1.0 would pass as version 1.
    if type(value) is not int:
        raise ValueError("must be a whole number")
    return value


#: Put on a ``Literal`` version field: ``version: Annotated[Literal[2], WholeNumber]``.
WholeNumber = BeforeValidator(_whole_number)


def _identifier(prefix: str) -> Any:
    return Annotated[str, StringConstraints(strict=True, pattern=rf"^{prefix}[A-Za-z0-9_-]{{1,64}}$")]


#: ``o-`` and 1 to 64 letters, digits, ``_`` or ``-``.
OrderId = _identifier("o-")
#: ``c-`` and 1 to 64 letters, digits, ``_`` or ``-``. It is the FIFO message group id, so it keeps to safe characters.
CustomerId = _identifier("c-")
#: ``SKU-`` and 1 to 64 letters, digits, ``_`` or ``-``.
Sku = _identifier("SKU-")
#: ``s-`` and 1 to 64 letters, digits, ``_`` or ``-``.
ShipmentId = _identifier("s-")
#: ``inv-`` and 1 to 64 letters, digits, ``_`` or ``-``.
InvoiceId = _identifier("inv-")
#: An ISO 4217 code: three capital letters.
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
#: How many units of one SKU: a whole number, at least 1.
Quantity = Annotated[int, Field(strict=True, ge=1)]


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    # repr gives the shortest text that reads back as the same float: 0.1, not 0.1000000000000000055...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


#: A number, finite, read as a Decimal (from a JSON number, a float, an int or a Decimal) and written as a JSON number.
Number = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    Field(allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
#: A non-negative amount. At most 15 significant digits: that many survive the trip through a binary floating-point number.
Amount = Annotated[Number, Field(ge=0, max_digits=15), WithJsonSchema({"type": "number", "minimum": 0})]


def _decimal_text(pattern: str, example: str) -> tuple[Any, ...]:
    """A non-negative Decimal written as JSON text that matches ``pattern``; the text is kept ("1.50" stays "1.50")."""
    compiled = re.compile(pattern)

    def read(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            value = format(value, "f")
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f"must be a decimal written as text, such as {example}")
        return Decimal(value)

    return (
        BeforeValidator(read),
        PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
        WithJsonSchema({"type": "string", "pattern": pattern}),
    )


#: An invoice amount: at most 14 digits before the point and 4 after, as text ("123.45") so that no reader makes it a float.
InvoiceAmount = Annotated[Decimal, *_decimal_text(r"^(0|[1-9][0-9]{0,13})(\.[0-9]{1,4})?$", "123.45")]
#: Money in a quote: exactly 2 decimal places, as text ("12.30").
Money = Annotated[Decimal, *_decimal_text(r"^(0|[1-9][0-9]*)\.[0-9]{2}$", "12.30")]


def _text_or_datetime(value: Any) -> Any:
    # A lax reader would take a number as seconds since 1970; a time on the wire is always text.
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


def _in_utc(value: datetime) -> datetime:
    if value.utcoffset():
        raise ValueError(f"must be a UTC time (Z or +00:00), got offset {value.isoformat()[-6:]}")
    return value


#: The JSON Schema of a UTC time: draft 4's date-time format, and a pattern for the zone.
_UTC_SCHEMA = {"type": "string", "format": "date-time", "pattern": "(Z|[+-]00:?00)$"}

#: An ISO 8601 time with a time zone, any offset.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_or_datetime)]
#: An ISO 8601 time in UTC (``Z`` or ``+00:00``).
UtcTimestamp = Annotated[AwareDatetime, BeforeValidator(_text_or_datetime), AfterValidator(_in_utc), WithJsonSchema(_UTC_SCHEMA)]


def _utc_text(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError("must carry a time zone")
    _in_utc(moment)
    return value


#: A UTC time kept as the text it was written as (``2025-03-14T09:26:53.589+00:00``), for a store that copies it unchanged.
UtcTimestampText = Annotated[str, StringConstraints(strict=True), AfterValidator(_utc_text), WithJsonSchema(_UTC_SCHEMA)]
