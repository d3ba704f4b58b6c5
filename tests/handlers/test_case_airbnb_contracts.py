"""CaseAirbnb's event contracts: the two views, BookingRequested's schema history, and compatibility, the way
tests/runtime/test_contracts.py checks the others.

Events each producer may send are generated with hypothesis from the producer model's schema; each consumer reads them
with its tolerant view: the event store's items (every schema version, through DynamoDB's types, as the ledger and its
rebuild read them), and the bus event (as the saga starter reads it), with and without fields a later release adds.
"""

from __future__ import annotations

import json
from decimal import Decimal

import jsonschema
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from messaging_runtime.contracts import bookings
from messaging_runtime.contracts.schemas import registry_schema
from messaging_runtime.event_sourcing import whole_numbers
from tests.runtime.test_contracts import SETTINGS, producer_events, with_unknown_fields

MODELS = [(kind, model) for kind in bookings.KINDS for model in kind.models]
STORE_VERSIONS = [(kind, version) for kind in bookings.STORE_KINDS for version in kind.versions]
serializer, deserializer = TypeSerializer(), TypeDeserializer()

V1 = {
    "aggregate_id": "b-1",
    "version": 1,
    "kind": "event",
    "type": "BookingRequested",
    "schema_version": 1,
    "data": {"listing_id": "l-1", "guest_id": "g-1", "nights": 3, "total": 360.5, "currency": "EUR"},
    "status": "REQUESTED",
    "guest_id": "g-1",
    "amount_minor": 36050,
    "currency": "EUR",
    "charged_minor": 0,
    "refunded_minor": 0,
    "occurred_at": "2025-11-02T10:00:00.000+00:00",
    "command_id": "k-1",
}


def through_dynamodb(data: dict) -> dict:
    """What the ledger reads of an item written with ``data``: DynamoDB's types and back, whole numbers as ints."""
    as_text = json.loads(json.dumps(data), parse_float=Decimal)
    return whole_numbers({name: deserializer.deserialize(serializer.serialize(value)) for name, value in as_text.items()})


@pytest.mark.parametrize(("kind", "model"), MODELS, ids=[f"{k.name}-{m.__name__}" for k, m in MODELS])
def test_every_model_has_a_strict_producer_view_and_a_tolerant_consumer_view_with_the_same_rules(kind, model):
    assert model.model_config["extra"] == "forbid" and model.Consumer.model_config["extra"] == "ignore"
    assert list(model.Consumer.model_fields) == list(model.model_fields)
    for name, info in model.model_fields.items():
        assert model.Consumer.model_fields[name].metadata == info.metadata, name


def test_a_version_1_request_is_upcast_to_version_2_with_its_price_in_minor_units():
    event = bookings.BOOKING_EVENTS.parse(V1)
    assert isinstance(event, bookings.BookingRequestedV2) and event.schema_version == 2 and event.received_version == 1
    assert event.data.price.amount_minor == 36050 and event.data.price.currency == "EUR"
    assert event.model_dump(exclude={"schema_version", "data"}) == bookings.BookingRequestedV1.model_validate(V1).model_dump(exclude={"schema_version", "data"})
    yen = {**V1, "data": {**V1["data"], "total": 12000, "currency": "JPY"}, "currency": "JPY", "amount_minor": 12000}
    assert bookings.BOOKING_EVENTS.parse(yen).data.price.amount_minor == 12000  # no minor unit below the yen


def test_an_unknown_schema_version_is_refused_naming_the_versions_read():
    with pytest.raises(ValidationError, match="Input should be 1 or 2"):
        bookings.BOOKING_EVENTS.parse({**V1, "schema_version": 3})
    for version in (True, 1.0, "1", None):
        with pytest.raises(ValidationError):
            bookings.BOOKING_EVENTS.parse({**V1, "schema_version": version})


def test_money_is_never_a_float_or_a_string_in_minor_units():
    for amount in (1.5, "100", True, -1):
        with pytest.raises(ValidationError):
            bookings.Price.model_validate({"amount_minor": amount, "currency": "EUR"})
    with pytest.raises(ValidationError):  # version 1 totals had at most two decimals
        bookings.BookingRequestedV1.model_validate({**V1, "data": {**V1["data"], "total": 1.005}})


@pytest.mark.parametrize(("kind", "version"), STORE_VERSIONS, ids=[f"{k.name}.v{v}" for k, v in STORE_VERSIONS])
@SETTINGS
@given(data=st.data())
def test_the_ledger_reads_every_item_the_command_function_ever_wrote_through_dynamodb_and_from_a_later_release(kind, version, data):
    event = data.draw(producer_events(kind.model(version)))
    written = json.loads(event.model_dump_json())
    read = bookings.BOOKING_EVENTS.parse(through_dynamodb(written))
    assert isinstance(read, kind.current) and (read.aggregate_id, read.version, read.status) == (event.aggregate_id, event.version, event.status)
    assert (read.charged_minor, read.refunded_minor, read.balance_minor) == (
        event.charged_minor,
        event.refunded_minor,
        event.charged_minor - event.refunded_minor,
    )
    assert bookings.BOOKING_EVENTS.parse(through_dynamodb(with_unknown_fields(written))) == read
    if version == 1 and kind is bookings.BOOKING_REQUESTED:
        assert read.data.price.amount_minor == bookings.minor_units(event.data.total, event.data.currency)


def test_the_bus_event_has_a_valid_draft_4_registry_schema():
    schema = json.loads(registry_schema(bookings.BOOKING_CHANGED, 1))
    jsonschema.Draft4Validator.check_schema(schema)
    assert schema["properties"]["source"]["enum"] == ["blueprints.stays"] and schema["properties"]["detail-type"]["enum"] == ["BookingChanged"]


@SETTINGS
@given(data=st.data())
def test_the_saga_starter_reads_every_bus_event_the_outbox_may_put_and_the_registry_schema_describes_it(data):
    event = data.draw(producer_events(bookings.BookingChangedV1))
    detail = json.loads(event.model_dump_json())
    validator = jsonschema.Draft4Validator(json.loads(registry_schema(bookings.BOOKING_CHANGED, 1)))
    envelope = {"detail-type": "BookingChanged", "source": "blueprints.stays", "detail": detail}
    validator.validate(envelope)
    validator.validate({**envelope, "detail": with_unknown_fields(detail)})
    assert bookings.BOOKING_CHANGED.parse(json.dumps(with_unknown_fields(detail))) == bookings.BOOKING_CHANGED.parse(detail)
    assert bookings.BOOKING_CHANGED.parse(detail).model_dump() == event.model_dump()
    assert not validator.is_valid({**envelope, "detail": {**detail, "version": 99}})
