"""The event contracts: field rules, the two views, versions and upcasting, registry schemas, and compatibility.

The compatibility tests wire producers to consumers the way the synthesized
blueprints do (SNS filter policies, EventBridge rules, event source mappings,
the RabbitMQ topology, the schedule and the pipe), generate events each
producer may send from its strict model's schema with hypothesis, and check
that every consumer the routing delivers them to reads them with its tolerant
model: the current version, an older one (upcast), and a newer producer's
event with fields the consumer does not know.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from messaging_runtime import contracts
from messaging_runtime.contracts import (
    Contract,
    EventKind,
    OneOf,
    accounts,
    analytics,
    bookings,
    checkout,
    clicks,
    inventory,
    invoices,
    listening,
    orders,
    quotes,
    reports,
    shipments,
    viewing,
)
from messaging_runtime.contracts.fields import WholeNumber
from messaging_runtime.contracts.schemas import json_schema, registry_schema, registry_schemas
from messaging_runtime.event_sourcing import whole_numbers
from messaging_runtime.rejection import reason_of
from stacks.exercise_02_schemas import EVENT_KINDS, event_schemas

SETTINGS = settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ALL_KINDS = list(contracts.kinds().values())
ALL_MODELS = [(kind, model) for kind in ALL_KINDS for model in kind.models]


def _id(value: Any) -> str:
    if isinstance(value, EventKind):
        return value.name
    if isinstance(value, type):
        return value.__name__
    return str(value)


# --- strategies: producer-valid events from the strict models' JSON Schema ----------------------------------


def from_schema(schema: dict[str, Any], definitions: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for the subset of draft 4 the contracts' schemas use; the caller keeps those the producer's model accepts."""
    if "$ref" in schema:
        return from_schema(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions)
    if "allOf" in schema:
        (only,) = schema["allOf"]
        return from_schema(only, definitions)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, definitions) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "null":
        return st.none()
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_schema(body, definitions) for name, body in properties.items() if name in required},
            optional={name: from_schema(body, definitions) for name, body in properties.items() if name not in required},
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(from_schema(schema["items"], definitions), min_size=low, max_size=min(schema.get("maxItems", low + 4), low + 4))
    if kind == "integer":
        low = schema.get("minimum", -(10**6)) + (1 if schema.get("exclusiveMinimum") else 0)
        return st.integers(low, min(schema.get("maximum", 10**6), low + 10**6))
    if kind == "number":
        cents = 1 if schema.get("exclusiveMinimum") else 0
        low = int(Decimal(str(schema.get("minimum", -(10**9)))) * 100) + cents
        return st.integers(low, low + 10**11).map(lambda value: float(Decimal(value) / 100))
    assert kind == "string", schema
    if schema.get("format") == "date-time":
        utc_only = "pattern" in schema
        zones = st.just(timezone.utc) if utc_only else st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
        moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones)
        return moments.map(lambda moment: moment.isoformat(timespec="milliseconds"))
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda text: low <= len(text) <= high)
    return st.text(string.ascii_letters + string.digits + " -_.", min_size=low, max_size=min(high, low + 20))


def producer_events(model: type[Contract]) -> st.SearchStrategy[Contract]:
    """Events ``model`` (a producer's view) accepts, generated from its draft 4 schema."""
    schema = json_schema(model, consumer=False)
    definitions = schema.get("definitions", {})

    def valid(data: Any) -> bool:
        try:
            model.model_validate(data)
        except ValidationError:
            return False
        return True

    return from_schema(schema, definitions).filter(valid).map(model.model_validate)


#: Fields that are maps of the producer's own keys (an analytics event's ``properties``), not objects of the contract: a later
#: release adds fields beside them, never keys inside them (whose values the contract keeps to text, numbers and booleans).
OPEN_MAPS = frozenset({"properties"})


def with_unknown_fields(data: Any, name: str = "added_in_a_later_release") -> Any:
    """``data`` with one more field in every object: what a producer that added an optional field sends."""
    if isinstance(data, dict):
        fields = {key: value if key in OPEN_MAPS and isinstance(value, dict) else with_unknown_fields(value, name) for key, value in data.items()}
        return {**fields, name: {"any": ["json", 1, None]}}
    if isinstance(data, list):
        return [with_unknown_fields(value, name) for value in data]
    return data


# --- routing: which consumers the synthesized blueprints deliver an event to ---------------------------------


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """An EventBridge event pattern (or SNS filter policy, or event source mapping filter) against ``event``: the operators the blueprints use."""
    for key, rule in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event.get(key) if present else None
        if isinstance(rule, dict):
            if not (present and matches(rule, value)):
                return False
        elif not any(_condition(condition, present, value) for condition in rule):
            return False
    return True


def _condition(condition: Any, present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if not isinstance(condition, dict):
        return present and condition in values
    ((operator, argument),) = condition.items()
    if operator == "exists":
        return present is argument
    if not present:
        return False
    if operator == "prefix":
        return any(isinstance(item, str) and item.startswith(argument) for item in values)
    if operator == "anything-but":
        excluded = argument if isinstance(argument, list) else [argument]
        return all(item not in excluded for item in values)
    if operator == "numeric":
        checks = {"=": float.__eq__, ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
        pairs = list(zip(argument[::2], argument[1::2], strict=True))
        return any(
            isinstance(item, (int, float)) and not isinstance(item, bool) and all(checks[op](float(item), float(bound)) for op, bound in pairs)
            for item in values
        )
    raise NotImplementedError(f"pattern operator {operator!r}")


def topic_matches(binding: str, routing_key: str) -> bool:
    """An AMQP topic binding (``*`` one word, ``#`` zero or more) against a routing key."""
    expression = "^" + r"\.".join({"*": r"[^.]+", "#": r".*"}.get(word, re.escape(word)) for word in binding.split(".")) + "$"
    return re.match(expression.replace(r"\..*", r"(\..*)?"), routing_key) is not None


class Blueprint:
    """One synthesized stack, read for its messaging wiring."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.resources = template["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v["Properties"] for k, v in self.resources.items() if v["Type"] == resource_type}

    def function_name(self, logical_id: str) -> str | None:
        """The function's Powertools service name (its handler folder, ``-rebuild`` added for the rebuild); None for aws-cdk-lib's own functions."""
        return self.resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")

    def functions(self) -> dict[str, str]:
        """Handler name -> logical id, for the blueprint's own functions."""
        names = {logical_id: self.function_name(logical_id) for logical_id in self.of_type("AWS::Lambda::Function")}
        return {name: logical_id for logical_id, name in names.items() if name is not None}

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        logical_id = self.functions()[name]
        return logical_id, self.resources[logical_id]["Properties"]

    def environment(self, name: str) -> dict[str, Any]:
        return self.function(name)[1]["Environment"]["Variables"]

    def readers(self, logical_id: str, attribute: str = "Arn") -> list[tuple[str, list[dict]]]:
        """The functions event source mappings feed from the resource, each with its mapping's filters."""
        found = []
        for mapping in self.of_type("AWS::Lambda::EventSourceMapping").values():
            if mapping["EventSourceArn"] != {"Fn::GetAtt": [logical_id, attribute]}:
                continue
            filters = [json.loads(f["Pattern"]) for f in mapping.get("FilterCriteria", {}).get("Filters", [])]
            found.append((self.function_name(mapping["FunctionName"]["Ref"]), filters))
        return found

    def queue_consumers(self, queue_id: str) -> list[str]:
        """Who reads an SQS queue: the functions mapped to it, or the queue itself (named by its construct id) when none is."""
        return [name for name, _ in self.readers(queue_id)] or [f"queue {queue_id[:-8]}"]

    def put_sources(self, producer: str) -> list[str]:
        """The ``source`` values a producer may put on the bus: a function's PutEvents condition, the schedule's or the pipe's
        target, and for an archive replay, whatever the functions put."""
        if producer == "schedule":
            return [s["Target"]["EventBridgeParameters"]["Source"] for s in self.of_type("AWS::Scheduler::Schedule").values()]
        if producer == "pipe":
            return [p["TargetParameters"]["EventBridgeEventBusParameters"]["Source"] for p in self.of_type("AWS::Pipes::Pipe").values()]
        if producer in OUTSIDE_PRODUCERS:
            return OUTSIDE_PRODUCERS[producer]
        producer = producer.removesuffix(" (outbox)")
        if producer == "archive replay":
            assert self.of_type("AWS::Events::Archive"), "no archive to replay from"
            return [source for name in self.functions() for source in self.put_sources(name)]
        role = self.function(producer)[1]["Role"]["Fn::GetAtt"][0]
        sources = []
        for policy in self.of_type("AWS::IAM::ManagedPolicy").values():
            if {"Ref": role} in policy.get("Roles", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    if statement["Action"] == "events:PutEvents":
                        sources += statement["Condition"]["StringEquals"]["events:source"]
                    elif statement["Action"] == "dynamodb:PutItem":  # writing to an outbox: its pipe puts the events
                        sources += self.outbox_sources(statement["Resource"])
        return sources

    def outbox_sources(self, table: Any) -> list[str]:
        """The sources the pipes reading ``table``'s stream put on the bus."""
        tables = table if isinstance(table, list) else [table]
        return [
            p["TargetParameters"]["EventBridgeEventBusParameters"]["Source"]
            for p in self.of_type("AWS::Pipes::Pipe").values()
            if any(t.get("Fn::GetAtt", [None])[0] == p["Source"]["Fn::GetAtt"][0] for t in tables if isinstance(t, dict))
        ]


@dataclass(frozen=True)
class Sent:
    """One event as a producer sends it."""

    kind: EventKind[Any]
    event: Contract

    @property
    def wire(self) -> str:
        return self.event.model_dump_json()

    def bus_event(self) -> dict[str, Any]:
        return {"version": "0", "id": "1", "detail-type": self.kind.detail_type, "source": self.kind.source, "detail": json.loads(self.wire)}


def deliveries(blueprints: dict[str, Blueprint], producer: str, sent: Sent) -> set[str]:
    """The consumers the blueprints deliver ``sent`` from ``producer`` to, by their routing."""
    stack, via = PRODUCERS[producer][1], PRODUCERS[producer][2]
    blueprint = blueprints[stack]
    found: set[str] = set()
    if via == "sns":  # the topics in the producer's environment, their subscriptions' filter policies, the queues' functions
        attributes = {name: value["StringValue"] for name, value in orders.message_attributes(sent.event).items()}
        topics = [value["Ref"] for value in blueprint.environment(producer).values() if isinstance(value, dict) and "Ref" in value]
        for subscription in blueprint.of_type("AWS::SNS::Subscription").values():
            if subscription["TopicArn"]["Ref"] in topics:
                scope = json.loads(sent.wire) if subscription.get("FilterPolicyScope") == "MessageBody" else attributes
                if matches(subscription.get("FilterPolicy", {}), scope):
                    found.update(blueprint.queue_consumers(subscription["Endpoint"]["Fn::GetAtt"][0]))
    elif via == "bus":  # the producer may put the kind's source; the bus's rules route it to queues
        assert sent.kind.source in blueprint.put_sources(producer), f"{producer} may not put {sent.kind.source} events"
        for rule in blueprint.of_type("AWS::Events::Rule").values():
            if "EventPattern" in rule and matches(rule["EventPattern"], sent.bus_event()):
                for target in rule["Targets"]:
                    found.update(blueprint.queue_consumers(target["Arn"]["Fn::GetAtt"][0]))
    elif via == "kafka":
        topic = blueprint.environment(producer)["TOPIC_NAME"]
        for mapping in blueprint.of_type("AWS::Lambda::EventSourceMapping").values():
            if topic in mapping.get("Topics", ()):
                found.add(blueprint.function_name(mapping["FunctionName"]["Ref"]))
    elif via == "dynamodb":  # the stream's filtered mapping, and the rebuild's scan of event items
        table = blueprint.environment(producer)["EVENT_STORE_TABLE"]["Ref"]
        image = {name: SERIALIZER.serialize(value) for name, value in sent.event.model_dump().items() if value is not None}
        for name, filters in blueprint.readers(table, "StreamArn"):
            if any(matches(f, {"eventName": "INSERT", "dynamodb": {"NewImage": image}}) for f in filters):
                found.add(name)
        scanners = [name for name in blueprint.functions() if name != producer and blueprint.environment(name).get("EVENT_STORE_TABLE") == {"Ref": table}]
        found.update(name for name in scanners if image["kind"] == {"S": "event"})  # the rebuild scans with the filter kind = event
    elif via in ("rabbitmq", "activemq"):
        queues = broker_queues(blueprint, producer, sent)
        for mapping in blueprint.of_type("AWS::Lambda::EventSourceMapping").values():
            if set(queues) & set(mapping.get("Queues", ())):
                found.add(blueprint.function_name(mapping["FunctionName"]["Ref"]))
    elif via == "direct reply-to":  # the reply goes straight back to the channel of the requester that asked
        found.add("quote_requester")
    elif via.startswith("kinesis"):  # the stream's readers (the one stream, or the one named): its mappings, and Firehose's transformation function
        (stream,) = [k for k in blueprint.of_type("AWS::Kinesis::Stream") if k.startswith(via.removeprefix("kinesis").strip())]
        found.update(name for name, _ in blueprint.readers(stream))
        for delivery in blueprint.of_type("AWS::KinesisFirehose::DeliveryStream").values():
            if delivery["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {"Fn::GetAtt": [stream, "Arn"]}:
                for processor in delivery["IcebergDestinationConfiguration"]["ProcessingConfiguration"]["Processors"]:
                    arn = next(p["ParameterValue"] for p in processor["Parameters"] if p["ParameterName"] == "LambdaArn")
                    found.add(blueprint.function_name(arn["Fn::GetAtt"][0]))
    elif via.startswith("queue "):  # sent to a queue by name (an operator's request)
        (queue,) = [k for k in blueprint.of_type("AWS::SQS::Queue") if k.startswith(via.removeprefix("queue ")) and "DeadLetter" not in k]
        found.update(blueprint.queue_consumers(queue))
    return found


def broker_queues(blueprint: Blueprint, producer: str, sent: Sent) -> list[str]:
    """The broker queues a message reaches: through the shipments exchange's bindings, or by name through the default exchange."""
    environment = blueprint.environment(producer)
    if "EXCHANGE_NAME" in environment:
        topology = json.loads(blueprint.environment("rabbitmq_setup")["TOPOLOGY"])
        return [
            b["queue"]
            for b in topology["bindings"]
            if b["exchange"] == environment["EXCHANGE_NAME"] and topic_matches(b.get("routing_key", ""), sent.event.routing_key)
        ]
    return [environment.get("REQUEST_QUEUE") or environment["QUEUE_NAME"]]


SERIALIZER, DESERIALIZER = TypeSerializer(), TypeDeserializer()

#: Who sends what, where: producer -> (kinds and the versions it sends, stack, channel). Versions a producer no longer sends
#: but an archive replays are under "archive replay".
PRODUCERS: dict[str, tuple[tuple[tuple[EventKind[Any], int], ...], str, str]] = {
    "order_producer": (((orders.ORDER_PLACED_MESSAGE, 1), (orders.ORDER_CANCELLED_MESSAGE, 1)), "Exercise01Queues", "sns"),
    "orders_publisher": (((orders.ORDER_PLACED, 2), (orders.ORDER_CANCELLED, 2)), "Exercise02EventBridge", "bus"),
    "archive replay": (((orders.ORDER_PLACED, 1), (orders.ORDER_CANCELLED, 1)), "Exercise02EventBridge", "bus"),
    "inventory_service": (((inventory.STOCK_RESERVED, 1), (inventory.STOCK_RELEASED, 1), (inventory.STOCK_SHORTAGE, 1)), "Exercise02EventBridge", "bus"),
    "schedule": (((reports.DAILY_REPORT_REQUESTED, 1),), "Exercise02EventBridge", "bus"),
    "pipe": (((inventory.RESTOCK_REQUESTED, 1),), "Exercise02EventBridge", "bus"),
    "clickstream_producer": (((clicks.CLICK, 1),), "Exercise03Streaming", "kafka"),
    "account_commands": (tuple((k, 1) for k in accounts.KINDS), "Exercise04EventSourcing", "dynamodb"),
    "shipment_publisher": (((shipments.SHIPMENT_UPDATE, 1),), "Exercise05EnterpriseMessaging", "rabbitmq"),
    "shipment_consumer": (((shipments.SHIPMENT_DELAYED, 1),), "Exercise05EnterpriseMessaging", "bus"),
    "quote_requester": (((quotes.QUOTE_REQUEST, 1),), "Exercise05EnterpriseMessaging", "rabbitmq"),
    "quote_responder": (((quotes.QUOTE_REPLY, 1), (quotes.QUOTE_ERROR, 1)), "Exercise05EnterpriseMessaging", "direct reply-to"),
    "invoice_publisher": (((invoices.INVOICE, 1),), "Exercise05EnterpriseMessaging", "activemq"),
    "invoice_consumer": (((invoices.INVOICE_ISSUED, 1), (invoices.INVOICE_PAID, 1), (invoices.INVOICE_VOIDED, 1)), "Exercise05EnterpriseMessaging", "bus"),
    # Through the outbox: the pipe puts what they wrote on the bus.
    "order_api": (((checkout.ORDER_ACCEPTED, 1),), "CapstoneOrders", "bus"),
    "order_status": (((checkout.ORDER_STATUS_CHANGED, 1),), "CapstoneOrders", "bus"),
    # Straight onto the stream: API Gateway's PutRecords integration and the IoT rule's Kinesis action, no function.
    "ingest": (((analytics.ANALYTICS_EVENT, 1),), "CapstoneAnalytics", "kinesis"),
    "operator": (((analytics.ERASURE_REQUEST, 1),), "CapstoneAnalytics", "queue ErasureRequests"),
    # CaseNetflix: the playback services and the content pipeline are outside the stack; the workflow's last step publishes.
    "producers outside CaseNetflix": (((viewing.PLAYBACK_STARTED, 1), (viewing.PLAYBACK_STOPPED, 1), (viewing.TITLE_UPLOADED, 1)), "CaseNetflix", "bus"),
    "case_netflix_encoding": (((viewing.TITLE_PUBLISHED, 1),), "CaseNetflix", "bus"),
    # CaseSpotify: the listening clients write each family to its own stream.
    "playback clients": (((listening.PLAYBACK_EVENT, 1),), "CaseSpotify", "kinesis PlaybackEvents"),
    "interaction clients": (((listening.INTERACTION_EVENT, 1),), "CaseSpotify", "kinesis InteractionEvents"),
    # CaseAirbnb: the booking commands append to the store (BookingRequested at its current version) and write the
    # change to the outbox in the same transaction; the pipe puts it on the bus.
    "case_airbnb_bookings": (tuple((k, k.versions[-1]) for k in bookings.STORE_KINDS), "CaseAirbnb", "dynamodb"),
    "case_airbnb_bookings (outbox)": (((bookings.BOOKING_CHANGED, 1),), "CaseAirbnb", "bus"),
}

#: The consumers that read event store items (as TypeDeserializer gives them back), not JSON.
STORE_READERS = ("account_projection", "case_airbnb_ledger")

#: The sources producers outside a stack put on its bus (no role of the stack to read them from).
OUTSIDE_PRODUCERS = {"producers outside CaseNetflix": [viewing.PLAYBACK_SOURCE, viewing.STUDIO_SOURCE]}

#: What each consumer reads: an event kind, or several that share its channel. A queue no function reads yet holds the registry's kind.
CONSUMERS: dict[str, EventKind[Any] | OneOf | dict[str, EventKind[Any]]] = {
    "billing_consumer": orders.ORDER_PLACED_MESSAGE,
    "audit_consumer": orders.ORDER_MESSAGES,
    "fraud_review_consumer": orders.ORDER_MESSAGES,
    "ledger_consumer": orders.ORDER_MESSAGES,
    "inventory_service": {k.name: k for k in (orders.ORDER_PLACED, orders.ORDER_CANCELLED)},
    "notifications_service": {
        k.name: k
        for k in (
            orders.ORDER_PLACED,
            orders.ORDER_CANCELLED,
            inventory.STOCK_RESERVED,
            inventory.STOCK_SHORTAGE,
            reports.DAILY_REPORT_REQUESTED,
            inventory.RESTOCK_REQUESTED,
        )
    },
    "clickstream_aggregator": clicks.CLICK,
    "account_projection": accounts.ACCOUNT_EVENTS,
    "account_projection-rebuild": accounts.ACCOUNT_EVENTS,
    "shipment_consumer": shipments.SHIPMENT_UPDATE,
    "queue CustomerCareQueue": shipments.SHIPMENT_DELAYED,
    "quote_responder": quotes.QUOTE_REQUEST,
    "quote_requester": quotes.QUOTE_ANSWERS,
    "invoice_consumer": invoices.INVOICE,
    "saga_starter": checkout.ORDER_ACCEPTED,
    "status_pusher": checkout.ORDER_STATUS_CHANGED,
    "lake_transform": analytics.ANALYTICS_EVENT,
    "event_aggregator": analytics.ANALYTICS_EVENT,
    "lake_erasure": analytics.ERASURE_REQUEST,
    # Every team's function runs one handler (its team in TEAM_NAME) and reads what its rule lets through.
    "case_netflix_team_consumer": {k.name: k for k in viewing.KINDS},
    "case_netflix_encoding_starter": viewing.TITLE_UPLOADED,
    "case_spotify_transform": {k.name: k for k in listening.KINDS},
    "case_airbnb_ledger": bookings.BOOKING_EVENTS,
    "case_airbnb_ledger-rebuild": bookings.BOOKING_EVENTS,
    "case_airbnb_saga_starter": bookings.BOOKING_CHANGED,
}

#: The consumers each kind can reach: the routing the stacks build, spelled out (the tests check the derived routing against it).
EXPECTED_ROUTES = {
    "OrderPlacedMessage": {"billing_consumer", "fraud_review_consumer", "audit_consumer", "ledger_consumer"},
    "OrderCancelledMessage": {"fraud_review_consumer", "audit_consumer", "ledger_consumer"},
    "OrderPlaced": {"inventory_service", "notifications_service"},
    "OrderCancelled": {"inventory_service", "notifications_service"},
    "StockReserved": {"notifications_service"},
    "StockShortage": {"notifications_service"},
    "StockReleased": set(),
    "DailyReportRequested": {"notifications_service"},
    "RestockRequested": {"notifications_service"},
    "Click": {"clickstream_aggregator"},
    **{k.name: {"account_projection", "account_projection-rebuild"} for k in accounts.KINDS},
    "ShipmentUpdate": {"shipment_consumer"},
    "ShipmentDelayed": {"queue CustomerCareQueue"},
    "QuoteRequest": {"quote_responder"},
    "QuoteReply": {"quote_requester"},
    "QuoteError": {"quote_requester"},
    "Invoice": {"invoice_consumer"},
    # Forwarded to the Exercise 05 bus, where no rule reads them yet.
    "InvoiceIssued": set(),
    "InvoicePaid": set(),
    "InvoiceVoided": set(),
    "OrderAccepted": {"saga_starter"},
    "OrderStatusChanged": {"status_pusher"},
    "AnalyticsEvent": {"lake_transform", "event_aggregator"},
    "ErasureRequest": {"lake_erasure"},
    "PlaybackStarted": {"case_netflix_team_consumer"},
    "PlaybackStopped": {"case_netflix_team_consumer"},
    "TitleUploaded": {"case_netflix_team_consumer", "case_netflix_encoding_starter"},
    "TitlePublished": {"case_netflix_team_consumer"},
    "PlaybackEvent": {"case_spotify_transform"},
    "InteractionEvent": {"case_spotify_transform"},
    **{k.name: {"case_airbnb_ledger", "case_airbnb_ledger-rebuild"} for k in bookings.STORE_KINDS},
    "BookingChanged": {"case_airbnb_saga_starter"},
}

SENDS = [(producer, kind, version) for producer, (sent, _, _) in PRODUCERS.items() for kind, version in sent]


def consumer_reads(consumer: str, sent: Sent) -> Contract:
    """What the consumer makes of the event: its own kind's (or the matching kind's) parse of the wire form."""
    reader = CONSUMERS[consumer]
    if isinstance(reader, dict):
        assert sent.kind.name in reader, f"{consumer} is delivered {sent.kind.name} but does not read it"
        reader = reader[sent.kind.name]
    if consumer.startswith(STORE_READERS):  # DynamoDB: the item as TypeDeserializer gives it back
        image = {name: SERIALIZER.serialize(value) for name, value in sent.event.model_dump().items() if value is not None}
        item = {name: DESERIALIZER.deserialize(value) for name, value in image.items()}
        return reader.parse(whole_numbers(item) if consumer.startswith("case_airbnb_ledger") else item)  # as its handler reads it
    return reader.parse(sent.wire)


@pytest.fixture(scope="module")
def blueprints(template_json) -> dict[str, Blueprint]:
    return {stack: Blueprint(template_json("sandbox", stack)) for stack in {stack for _, stack, _ in PRODUCERS.values()}}


# --- the two views --------------------------------------------------------------------------------------------


def _nested_contracts(model: type[Contract]) -> Iterator[tuple[str, type[Contract]]]:
    for name, info in model.model_fields.items():
        for argument in _flatten(info.annotation):
            if isinstance(argument, type) and issubclass(argument, Contract):
                yield name, argument


def _flatten(annotation: Any) -> Iterator[Any]:
    yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from _flatten(argument)


@pytest.mark.parametrize(("kind", "model"), ALL_MODELS, ids=[f"{k.name}-{m.__name__}" for k, m in ALL_MODELS])
def test_every_model_has_a_strict_producer_view_and_a_tolerant_consumer_view_with_the_same_fields(kind, model):
    assert model.model_config["extra"] == "forbid" and model.Consumer.model_config["extra"] == "ignore"
    assert model.model_config["frozen"] and model.Consumer.model_config["frozen"]
    assert issubclass(model.Consumer, model) and model.Consumer.__name__ == model.__name__
    assert list(model.Consumer.model_fields) == list(model.model_fields)
    for name, info in model.model_fields.items():
        assert model.Consumer.model_fields[name].metadata == info.metadata, f"{name}: the consumer's rules differ"
    for name, nested in _nested_contracts(model.Consumer):
        assert nested.model_config["extra"] == "ignore", f"{model.__name__}.{name}: a nested model of the consumer view refuses unknown fields"
    for name, nested in _nested_contracts(model):
        assert nested.model_config["extra"] == "forbid", f"{model.__name__}.{name}: a nested model of the producer view accepts unknown fields"


def test_a_consumer_ignores_unknown_fields_at_every_level_and_a_producer_refuses_them():
    order = {"version": 2, "order_id": "o-1", "customer_id": "c-1", "total": 12.5, "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2}]}
    newer = with_unknown_fields(order)
    assert orders.ORDER_PLACED.parse(newer) == orders.ORDER_PLACED.parse(order)
    with pytest.raises(ValidationError) as refused:
        orders.OrderPlaced.model_validate(newer)
    assert {error["loc"] for error in refused.value.errors()} >= {("added_in_a_later_release",), ("items", 0, "added_in_a_later_release")}


# --- field rules: one rule per field, the strictest every producer meets ----------------------------------------

ORDER_V2 = {"version": 2, "order_id": "o-1", "customer_id": "c-1", "total": 12.5, "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2}]}
MESSAGE = {
    "event_id": "a8098c1a-f86e-41da-bd1a-00112444be1e",
    "event_type": "OrderPlaced",
    "version": 1,
    "order_id": "o-0001",
    "customer_id": "c-0042",
    "total": 123.45,
    "currency": "EUR",
    "occurred_at": "2025-03-14T09:26:53.589000+02:00",
}
SHIPMENT = {"schema_version": 1, "shipment_id": "s-1", "order_id": "o-1", "status": "delayed", "occurred_at": "2025-03-14T09:26:53Z", "carrier": "DHL"}
INVOICE = {
    "schema_version": 1,
    "invoice_id": "inv-1",
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount": "123.40",
    "currency": "EUR",
    "status": "paid",
    "issued_at": "2025-03-14T09:26:53Z",
}
CLICK = {
    "schema_version": 1,
    "event_id": "a8098c1a-f86e-41da-bd1a-00112444be1e",
    "user_id": "u-42",
    "session_id": "s-1",
    "page": "/cart",
    "action": "add_to_cart",
    "occurred_at": "2025-03-14T09:26:53Z",
}
DEPOSIT = {
    "aggregate_id": "acc-1",
    "version": Decimal("2"),
    "kind": "event",
    "type": "MoneyDeposited",
    "data": {"amount": Decimal("12.5")},
    "balance": Decimal("12.5"),
    "status": "open",
    "owner": "Ada",
    "occurred_at": "2025-03-14T09:26:53.589+00:00",
    "command_id": "cmd-1",
}
QUOTE = {"schema_version": 1, "customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": 10_000}]}
RULES = [
    # kind, valid example, field, values every producer may send, values none sends
    (orders.ORDER_PLACED, ORDER_V2, "order_id", ["o-1", "o-" + "x" * 64, "o-A_b-9"], ["order-11", "o-", "o 1", "o-" + "x" * 65, "o-é", 42, ""]),
    (orders.ORDER_PLACED, ORDER_V2, "customer_id", ["c-0042"], ["c 9", "0001", "c-", "c-a/b"]),
    (orders.ORDER_PLACED, ORDER_V2, "total", [0, 12.5, 99999999.99, 10**14], [-0.01, "12.5", True, None, float("inf"), 1.5 * 10**16]),
    (orders.ORDER_PLACED, ORDER_V2, "currency", ["EUR", "JPY"], ["eur", "EURO", ""]),
    (orders.ORDER_PLACED, ORDER_V2, "version", [2], [True, 2.0, "2", 3, 0]),
    (
        orders.ORDER_PLACED,
        ORDER_V2,
        "items",
        [[{"sku": "SKU-x", "quantity": 1}] * 50],
        [[], [{"sku": "SKU-x", "quantity": 1}] * 51, [{"sku": "sku-1", "quantity": 1}]],
    ),
    (
        orders.ORDER_PLACED,
        ORDER_V2,
        "items",
        [[{"sku": "SKU-1", "quantity": 10**6}]],
        [[{"sku": "SKU-1", "quantity": 0}], [{"sku": "SKU-1", "quantity": True}]],
    ),
    (orders.ORDER_PLACED_MESSAGE, MESSAGE, "occurred_at", ["2025-03-14T09:26:53Z", "2025-03-14T09:26:53-05:30"], ["2025-03-14T09:26:53", 1741944413, ""]),
    (orders.ORDER_PLACED_MESSAGE, MESSAGE, "event_id", [MESSAGE["event_id"]], ["not-a-uuid", 1]),
    (orders.ORDER_PLACED_MESSAGE, MESSAGE, "event_type", ["OrderPlaced"], ["OrderCancelled", "orderplaced"]),
    (shipments.SHIPMENT_UPDATE, SHIPMENT, "occurred_at", ["2025-03-14T09:26:53+00:00", "2025-03-14T09:26:53.5Z"], ["2025-03-14T11:26:53+02:00", 1741944413]),
    (shipments.SHIPMENT_UPDATE, SHIPMENT, "shipment_id", ["s-0001"], ["S-1", "s-a b"]),
    (shipments.SHIPMENT_UPDATE, SHIPMENT, "carrier", [None, "x" * 128], ["", "x" * 129, 7]),
    (shipments.SHIPMENT_DELAYED, SHIPMENT, "status", ["delayed"], ["shipped"]),
    (invoices.INVOICE, INVOICE, "amount", ["0", "0.5", "123.4567", "1" * 14, "1" * 14 + ".1234"], ["-0.0", "1e3", "01.5", "1.23456", "1" * 15, 12.5, ""]),
    (invoices.INVOICE, INVOICE, "issued_at", ["2025-03-14T09:26:53+00:00"], ["2025-03-14T09:26:53+01:00"]),
    (invoices.INVOICE, INVOICE, "invoice_id", ["inv-0000"], ["INV-1", "inv-"]),
    (clicks.CLICK, CLICK, "user_id", ["u-1", "u-" + "x" * 126], ["u-", "u 1", "u-a b", "u-" + "x" * 127]),
    (clicks.CLICK, CLICK, "page", ["/", "/products/1"], ["cart", "/a b"]),
    (clicks.CLICK, CLICK, "schema_version", [1], [True, 1.0, 2]),
    (quotes.QUOTE_REQUEST, QUOTE, "items", [[{"sku": "SKU-1", "quantity": 1}]], [[], [{"sku": "SKU-1", "quantity": 10_001}]]),
    (
        accounts.MONEY_DEPOSITED,
        DEPOSIT,
        "data",
        [{"amount": Decimal("0.01")}, {"amount": 3}],
        [{"amount": Decimal("0")}, {"amount": Decimal("1.001")}, {"amount": "1"}],
    ),
    (accounts.MONEY_DEPOSITED, DEPOSIT, "balance", [Decimal("0"), Decimal("69.5")], [Decimal("-1"), Decimal("0.001"), Decimal("NaN")]),
    (accounts.MONEY_DEPOSITED, DEPOSIT, "version", [Decimal("1"), 7], [Decimal("1.5"), 0, True]),
    (accounts.MONEY_DEPOSITED, DEPOSIT, "occurred_at", ["2025-03-14T09:26:53.589Z"], ["2025-03-14T09:26:53", "2025-03-14T10:26:53+01:00", "yesterday"]),
    (accounts.MONEY_DEPOSITED, DEPOSIT, "owner", ["Grace Hopper", "x" * 200, None], ["", "   ", "tab\there", "x" * 201]),
    (accounts.MONEY_DEPOSITED, DEPOSIT, "command_id", ["cmd-1", "a8098c1a-f86e-41da-bd1a-00112444be1e"], ["", "has space", "x" * 129]),
    (
        inventory.RESTOCK_REQUESTED,
        {"version": 1, "kind": "restock", "request_id": "r-1", "sku": "SKU-1", "quantity": 1},
        "request_id",
        ["r-1"],
        ['r"1', "r\\1", ""],
    ),
]


@pytest.mark.parametrize(("kind", "example", "field", "good", "bad"), RULES, ids=[f"{r[0].name}.{r[2]}" for r in RULES])
def test_each_field_keeps_one_rule_in_both_views(kind, example, field, good, bad):
    model = kind.current
    for value in good:
        for view in (model, model.Consumer):
            view.model_validate({**example, field: value})
    for value in bad:
        for view in (model, model.Consumer):
            with pytest.raises(ValidationError) as refused:
                view.model_validate({**example, field: value})
            assert refused.value.errors()[0]["loc"][0] == field, value


def test_json_text_and_decoded_values_read_the_same():
    for kind, example in ((orders.ORDER_PLACED_MESSAGE, MESSAGE), (shipments.SHIPMENT_UPDATE, SHIPMENT), (invoices.INVOICE, INVOICE), (clicks.CLICK, CLICK)):
        assert kind.parse(json.dumps(example)) == kind.parse(example) == kind.parse(json.dumps(example).encode())


def test_text_amounts_keep_their_text_and_numbers_stay_numbers():
    invoice = invoices.INVOICE.parse(INVOICE)
    assert invoice.amount == Decimal("123.40") and json.loads(invoice.model_dump_json())["amount"] == "123.40"
    order = orders.ORDER_PLACED.parse(ORDER_V2)
    assert order.total == Decimal("12.5") and json.loads(order.model_dump_json())["total"] == 12.5


def test_an_invalid_event_is_a_validation_error_with_the_field_s_place_for_the_record_s_reason():
    with pytest.raises(ValidationError) as refused:
        orders.ORDER_PLACED.parse(json.dumps({**ORDER_V2, "items": [{"sku": "SKU-1", "quantity": 0}]}))
    assert reason_of(refused.value) == "items.0.quantity: Input should be greater than or equal to 1"
    with pytest.raises(ValidationError) as not_json:
        orders.ORDER_PLACED.parse("{not json")
    assert not_json.value.errors()[0]["type"] == "json_invalid"


# --- versions and upcasting --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS, ids=_id)
def test_every_kind_reads_each_of_its_versions_and_upcasts_older_ones_to_the_current(kind):
    assert kind.versions == tuple(sorted(kind.versions)) and kind.current.version_number() == kind.versions[-1]
    assert set(kind.upcasters) == set(kind.versions[:-1])


def test_an_order_of_version_1_is_upcast_to_version_2_without_items():
    v1 = {key: value for key, value in ORDER_V2.items() if key != "items"} | {"version": 1}
    for kind, model in ((orders.ORDER_PLACED, orders.OrderPlacedV2), (orders.ORDER_CANCELLED, orders.OrderCancelledV2)):
        order = kind.parse(json.dumps(v1))
        assert isinstance(order, model) and order.version == 2 and order.items == []
        assert order.received_version == 1
        assert order.model_dump(exclude={"version", "items"}) == kind.model(1).model_validate(v1).model_dump(exclude={"version"})
    current = orders.ORDER_PLACED.parse(ORDER_V2)
    assert current.received_version is None and current.items[0].sku == "SKU-1"


def test_an_unknown_version_is_refused_naming_the_versions_read():
    for version in (0, 3, True, "2", None):
        with pytest.raises(ValidationError) as refused:
            orders.ORDER_PLACED.parse({**ORDER_V2, "version": version})
        assert refused.value.errors()[0]["loc"] == ("version",)
    with pytest.raises(ValidationError, match="Input should be 1 or 2"):
        orders.ORDER_PLACED.parse({**ORDER_V2, "version": 3})


def test_a_kind_without_an_upcaster_for_an_older_version_is_refused():
    with pytest.raises(ValueError, match="one upcaster per older version"):
        EventKind("OrderPlaced", orders.OrderPlacedV2, older=(orders.OrderPlacedV1,))
    with pytest.raises(ValueError, match="oldest first"):
        EventKind("OrderPlaced", orders.OrderPlacedV1, older=(orders.OrderPlacedV2,), upcasters={2: lambda event: event})


def test_an_upcaster_must_return_the_next_version():
    wrong = EventKind("OrderPlaced", orders.OrderPlacedV2, older=(orders.OrderPlacedV1,), upcasters={1: lambda event: event})
    with pytest.raises(TypeError, match="returned OrderPlacedV1, not OrderPlacedV2"):
        wrong.parse({**ORDER_V2, "version": 1})


def test_a_message_without_a_version_field_is_version_1():
    assert quotes.QUOTE_ERROR.versions == (1,) and quotes.QUOTE_ERROR.parse({"status": "error", "error": "no items"}).error == "no items"
    assert accounts.ACCOUNT_EVENTS.parse(DEPOSIT).version == 2  # the place in the history, not a schema version


def test_kinds_that_share_a_channel_are_told_apart_by_their_tag():
    assert isinstance(orders.ORDER_MESSAGES.parse(json.dumps({**MESSAGE, "event_type": "OrderCancelled"})), orders.OrderCancelledMessageV1)
    assert isinstance(quotes.QUOTE_ANSWERS.parse({"status": "error", "error": "x"}), quotes.QuoteErrorV1)
    assert isinstance(invoices.FORWARDED_INVOICES.parse(INVOICE), invoices.InvoicePaidV1)
    with pytest.raises(ValidationError, match="Input should be 'OrderPlaced' or 'OrderCancelled'"):
        orders.ORDER_MESSAGES.parse({**MESSAGE, "event_type": "OrderShipped"})


def test_the_registry_of_kinds_finds_kinds_by_name_and_by_source_and_detail_type():
    assert contracts.kind("OrderPlaced") is orders.ORDER_PLACED
    assert contracts.bus_kind("legacy.erp", "InvoicePaid") is invoices.INVOICE_PAID
    assert contracts.bus_kind("blueprints.orders", "OrderShipped") is None
    assert isinstance(contracts.parse("Click", CLICK), clicks.ClickV1)
    with pytest.raises(KeyError, match="the known ones are"):
        contracts.kind("OrderShipped")


# --- registry schemas ----------------------------------------------------------------------------------------

BUS_KINDS = [kind for kind in ALL_KINDS if kind.source]
BUS_VERSIONS = [(kind, version) for kind in BUS_KINDS for version in kind.versions]
_DRAFT_2020_ONLY = {"$defs", "const", "prefixItems", "unevaluatedProperties", "dependentRequired", "examples", "$anchor"}


def _keys(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


@pytest.mark.parametrize(("kind", "version"), BUS_VERSIONS, ids=[f"{k.name}.v{v}" for k, v in BUS_VERSIONS])
def test_every_registry_schema_is_valid_draft_4_in_the_eventbridge_envelope(kind, version):
    schema = json.loads(registry_schema(kind, version))
    jsonschema.Draft4Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["required"] == ["detail-type", "source", "detail"]
    assert schema["properties"]["detail-type"]["enum"] == [kind.detail_type] and schema["properties"]["source"]["enum"] == [kind.source]
    keys = dict(_keys(schema))
    assert not _DRAFT_2020_ONLY & set(keys)
    assert all(isinstance(value, bool) for key, value in _keys(schema) if key in ("exclusiveMinimum", "exclusiveMaximum"))
    assert all(value.startswith("#/definitions/") for key, value in _keys(schema) if key == "$ref")


@pytest.mark.parametrize(("kind", "version"), BUS_VERSIONS, ids=[f"{k.name}.v{v}" for k, v in BUS_VERSIONS])
@SETTINGS
@given(data=st.data())
def test_sample_events_match_their_registry_schema_and_broken_ones_do_not(kind, version, data):
    validator = jsonschema.Draft4Validator(json.loads(registry_schema(kind, version)))
    event = data.draw(producer_events(kind.model(version)))
    envelope = Sent(kind, event).bus_event()
    validator.validate(envelope)
    validator.validate({**envelope, "detail": with_unknown_fields(envelope["detail"])})  # the registry describes the tolerant view
    version_field = kind.current.VERSION_FIELD
    assert not validator.is_valid({**envelope, "detail": {**envelope["detail"], version_field: 99}})
    assert not validator.is_valid({**envelope, "source": "someone.else"})


def test_the_conversion_to_draft_4():
    class Money(Contract):
        """A wrapped amount."""

        amount: Annotated[Decimal, Field(gt=0, lt=10)]

    class Wrapper(Contract):
        """A model with a described reference and a constant."""

        version: Annotated[Literal[1], WholeNumber]
        money: Money
        """The money, described: a $ref with a sibling."""

    schema = json_schema(Wrapper)
    jsonschema.Draft4Validator.check_schema(schema)
    assert schema["properties"]["version"] == {"enum": [1], "type": "integer"}
    assert schema["properties"]["money"] == {"description": "The money, described: a $ref with a sibling.", "allOf": [{"$ref": "#/definitions/Money"}]}
    amount = schema["definitions"]["Money"]["properties"]["amount"]["anyOf"][0]
    assert (amount["minimum"], amount["exclusiveMinimum"], amount["maximum"], amount["exclusiveMaximum"]) == (0, True, 10, True)
    assert "additionalProperties" not in schema and json_schema(Wrapper, consumer=False)["additionalProperties"] is False


def test_a_keyword_draft_4_lacks_is_refused_rather_than_registered_half_understood():
    class Pair(Contract):
        """A fixed-length tuple: prefixItems in 2020-12."""

        pair: tuple[int, str]

    with pytest.raises(ValueError, match="'prefixItems' has no draft 4 equivalent"):
        json_schema(Pair)


def test_exercise_02_registers_a_generated_schema_for_each_version_of_each_event_on_its_bus():
    schemas = event_schemas()
    assert schemas == registry_schemas(EVENT_KINDS)
    assert sorted(schemas) == sorted(
        [
            "blueprints.orders@OrderPlaced.v1",
            "blueprints.orders@OrderPlaced.v2",
            "blueprints.orders@OrderCancelled.v1",
            "blueprints.orders@OrderCancelled.v2",
            "blueprints.inventory@StockReserved.v1",
            "blueprints.inventory@StockReleased.v1",
            "blueprints.inventory@StockShortage.v1",
            "blueprints.scheduler@DailyReportRequested.v1",
            "blueprints.warehouse@RestockRequested.v1",
        ]
    )
    on_the_bus = {kind for producer, (sent, stack, via) in PRODUCERS.items() if stack == "Exercise02EventBridge" for kind, _ in sent}
    assert on_the_bus == set(EVENT_KINDS)


# --- compatibility: every version a producer sends reaches consumers that read it -------------------------------


@pytest.mark.parametrize(("producer", "kind", "version"), SENDS, ids=[f"{p}-{k.name}.v{v}" for p, k, v in SENDS])
@SETTINGS
@given(data=st.data())
def test_every_consumer_the_routing_delivers_an_event_to_reads_it(blueprints, producer, kind, version, data):
    sent = Sent(kind, data.draw(producer_events(kind.model(version))))
    reached = deliveries(blueprints, producer, sent)
    assert reached <= EXPECTED_ROUTES[kind.name]
    for consumer in reached:
        read = consumer_reads(consumer, sent)
        assert isinstance(read, kind.current)
        if version == kind.versions[-1]:
            assert read.model_dump() == sent.event.model_dump() and read.received_version is None
        else:  # backward: an older version, upcast
            assert read.received_version == version
            assert read.model_dump(include=set(kind.model(version).model_fields) - {"version"}) == sent.event.model_dump(exclude={"version"})


@pytest.mark.parametrize(("producer", "kind", "version"), SENDS, ids=[f"{p}-{k.name}.v{v}" for p, k, v in SENDS])
@SETTINGS
@given(data=st.data())
def test_a_producer_that_adds_an_optional_field_breaks_no_consumer(blueprints, producer, kind, version, data):
    event = data.draw(producer_events(kind.model(version)))
    newer = with_unknown_fields(json.loads(event.model_dump_json()))
    with pytest.raises(ValidationError):
        kind.model(version).model_validate(newer)  # the field is not in this contract: no producer of it may send it yet
    for consumer in deliveries(blueprints, producer, Sent(kind, event)):
        reader = CONSUMERS[consumer]
        reader = reader[kind.name] if isinstance(reader, dict) else reader
        read = reader.parse(newer if consumer.startswith(STORE_READERS) else json.dumps(newer))
        assert read.model_dump() == kind.upcast(kind.model(version).Consumer.model_validate_json(event.model_dump_json())).model_dump()


ROUTE_EXAMPLES = [
    (
        "order_producer",
        orders.ORDER_PLACED_MESSAGE,
        {**MESSAGE, "total": 500},
        {"billing_consumer", "fraud_review_consumer", "audit_consumer", "ledger_consumer"},
    ),
    ("order_producer", orders.ORDER_PLACED_MESSAGE, {**MESSAGE, "total": 499.99}, {"billing_consumer", "audit_consumer", "ledger_consumer"}),
    ("order_producer", orders.ORDER_CANCELLED_MESSAGE, {**MESSAGE, "event_type": "OrderCancelled", "total": 10}, {"audit_consumer", "ledger_consumer"}),
    ("orders_publisher", orders.ORDER_PLACED, ORDER_V2, {"inventory_service", "notifications_service"}),
    ("inventory_service", inventory.STOCK_RELEASED, {"version": 1, "order_id": "o-1", "items": []}, set()),
    ("inventory_service", inventory.STOCK_SHORTAGE, {"version": 1, "order_id": "o-1", "missing": ["SKU-1"]}, {"notifications_service"}),
    ("shipment_publisher", shipments.SHIPMENT_UPDATE, {**SHIPMENT, "status": "picked"}, {"shipment_consumer"}),
    ("shipment_consumer", shipments.SHIPMENT_DELAYED, SHIPMENT, {"queue CustomerCareQueue"}),
    ("invoice_consumer", invoices.INVOICE_PAID, INVOICE, set()),
    ("account_commands", accounts.MONEY_DEPOSITED, DEPOSIT, {"account_projection", "account_projection-rebuild"}),
    ("clickstream_producer", clicks.CLICK, CLICK, {"clickstream_aggregator"}),
    ("quote_requester", quotes.QUOTE_REQUEST, QUOTE, {"quote_responder"}),
]


@pytest.mark.parametrize(("producer", "kind", "example", "expected"), ROUTE_EXAMPLES, ids=[f"{p}-{k.name}" for p, k, _, _ in ROUTE_EXAMPLES])
def test_the_routing_is_the_blueprints(blueprints, producer, kind, example, expected):
    assert deliveries(blueprints, producer, Sent(kind, kind.current.model_validate(example))) == expected


def test_every_declared_consumer_is_reached_and_every_kind_is_sent(blueprints):
    assert {kind.name for _, kind, _ in SENDS} == {kind.name for kind in ALL_KINDS}
    assert set().union(*EXPECTED_ROUTES.values()) == set(CONSUMERS)


def test_the_schedule_and_the_pipe_put_events_their_contracts_accept(blueprints):
    bus = blueprints["Exercise02EventBridge"]
    (schedule,) = bus.of_type("AWS::Scheduler::Schedule").values()
    parameters = schedule["Target"]["EventBridgeParameters"]
    assert contracts.bus_kind(parameters["Source"], parameters["DetailType"]) is reports.DAILY_REPORT_REQUESTED
    reports.DailyReportRequestedV1.model_validate_json(schedule["Target"]["Input"])

    (pipe,) = bus.of_type("AWS::Pipes::Pipe").values()
    target = pipe["TargetParameters"]
    assert (
        contracts.bus_kind(target["EventBridgeEventBusParameters"]["Source"], target["EventBridgeEventBusParameters"]["DetailType"])
        is inventory.RESTOCK_REQUESTED
    )
    (pattern,) = [json.loads(f["Pattern"]) for f in pipe["SourceParameters"]["FilterCriteria"]["Filters"]]

    @SETTINGS
    @given(producer_events(inventory.RestockRequestedV1))
    def through_the_pipe(work: inventory.RestockRequestedV1) -> None:
        body = json.loads(work.model_dump_json())
        assert matches(pattern, {"body": body})
        detail = re.sub(
            r"<\$\.body\.(\w+)>", lambda m: body[m.group(1)] if isinstance(body[m.group(1)], str) else json.dumps(body[m.group(1)]), target["InputTemplate"]
        )
        assert inventory.RESTOCK_REQUESTED.parse(detail).model_dump() == work.model_dump()

    through_the_pipe()


def test_a_sample_of_each_current_version_reads_back_unchanged_through_its_json():
    for kind, example in (
        (orders.ORDER_PLACED, ORDER_V2),
        (shipments.SHIPMENT_UPDATE, SHIPMENT),
        (invoices.INVOICE, INVOICE),
        (clicks.CLICK, CLICK),
        (quotes.QUOTE_REQUEST, QUOTE),
    ):
        event = kind.current.model_validate(example)
        assert kind.parse(event.model_dump_json()).model_dump() == event.model_dump()


def test_the_topic_binding_matcher():
    assert topic_matches("shipment.#", "shipment.delayed") and topic_matches("shipment.#", "shipment") and not topic_matches("shipment.#", "invoice.paid")
    assert topic_matches("a.*.c", "a.b.c") and not topic_matches("a.*.c", "a.b.b.c")


def test_the_pattern_matcher_knows_the_operators_the_blueprints_use():
    event = {"source": "blueprints.orders", "detail-type": "OrderPlaced", "detail": {"version": 2, "order_id": "o-1"}}
    assert matches({"source": [{"prefix": "blueprints."}], "detail-type": [{"anything-but": ["StockReleased"]}]}, event)
    assert matches({"detail": {"order_id": [{"exists": True}], "version": [{"numeric": [">=", 1]}]}}, event)
    assert not matches({"detail": {"items": [{"exists": True}]}}, event)
    assert not matches({"detail-type": [{"anything-but": "OrderPlaced"}]}, event)
    assert not matches({"detail": {"version": [{"numeric": [">=", 3]}]}}, event)
