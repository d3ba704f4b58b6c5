"""lambdas/rabbitmq_setup against the real RabbitMQ management API on 127.0.0.1.

The module works in a virtual host of its own, which the function creates (its
name holds a ``/``, so every request depends on the percent-encoding), as an
administrator of its own, and declares an application user of its own; all
three are deleted afterwards. What the function did is checked through the
API as ``guest`` and, for what a user may do, over AMQP with pika. Secrets
are in moto.

When the management API (15672) or AMQP (5672) does not answer, the tests fail
if ``CI`` is set and are skipped, with the reason, otherwise. The management
plugin must be enabled: ``rabbitmq-plugins enable rabbitmq_management``.
"""

import http.server
import json
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pytest

from tests.handlers.record_shapes import DEEPLY_NESTED

HOST = "127.0.0.1"
MANAGEMENT_URL = f"http://{HOST}:15672"
AMQP_PORT = 5672
DELIVERY_LIMIT = 2
# How long the management API may take to show a policy in a queue's details (its statistics are refreshed every 5 s).
POLICY_VISIBLE_WITHIN_SECONDS = 20


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def encoded(*segments: str) -> str:
    return "/api/" + "/".join(urllib.parse.quote(segment, safe="") for segment in segments)


class Api:
    """The test's own client for the management API (independent of the function's)."""

    def __init__(self, user: str = "guest", password: str = "guest") -> None:
        self.authorization = "Basic " + b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            MANAGEMENT_URL + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": self.authorization, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
                return response.status, json.loads(payload) if payload.strip() else None
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            return exc.code, json.loads(payload) if payload.strip() else None

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def write(self, method: str, path: str, body: Any = None) -> None:
        status, answer = self.call(method, path, body if body is not None else {})
        assert status in (200, 201, 204), (method, path, status, answer)


def _problem() -> str | None:
    try:
        status, _ = Api().call("GET", "/api/overview")
    except OSError as exc:
        return f"the management API does not answer on {MANAGEMENT_URL} ({exc}); enable it with rabbitmq-plugins enable rabbitmq_management"
    if status != 200:
        return f"the management API on {MANAGEMENT_URL} answers HTTP {status} to guest/guest"
    try:
        with socket.create_connection((HOST, AMQP_PORT), timeout=2):
            pass
    except OSError as exc:
        return f"nothing listens for AMQP on {HOST}:{AMQP_PORT} ({exc})"
    return None


@dataclass
class Broker:
    vhost: str
    admin: str
    admin_password: str
    app_user: str
    app_password: str
    version: tuple[int, int]

    def connect(self, user: str, password: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(HOST, AMQP_PORT, self.vhost, pika.PlainCredentials(user, password), connection_attempts=1, blocked_connection_timeout=10)
        )

    def as_app(self) -> pika.BlockingConnection:
        return self.connect(self.app_user, self.app_password)

    def as_admin(self) -> pika.BlockingConnection:
        return self.connect(self.admin, self.admin_password)


@pytest.fixture(scope="module")
def api() -> Api:
    problem = _problem()
    if problem is not None:
        if _ci():
            pytest.fail(f"RabbitMQ's management API is required when CI is set: {problem}", pytrace=False)
        pytest.skip(f"no usable RabbitMQ management API: {problem}")
    return Api()


@pytest.fixture(scope="module")
def broker(api: Api) -> Broker:
    """An administrator of the module's own; the virtual host and application user names the function is to create."""
    suffix = uuid.uuid4().hex[:8]
    overview = api.get("/api/overview")
    major, minor = (int(part) for part in overview["rabbitmq_version"].split(".")[:2])
    found = Broker(
        vhost=f"rabbitmq-setup/{suffix}",
        admin=f"setup-admin-{suffix}",
        admin_password=secrets.token_hex(16),
        app_user=f"setup-app-{suffix}",
        app_password=secrets.token_hex(16),
        version=(major, minor),
    )
    api.write("PUT", encoded("users", found.admin), {"password": found.admin_password, "tags": "administrator"})
    try:
        yield found
    finally:
        api.call("DELETE", encoded("vhosts", found.vhost))
        api.call("DELETE", encoded("users", found.app_user))
        api.call("DELETE", encoded("users", found.admin))


@pytest.fixture(scope="module")
def admin_api(broker: Broker) -> Api:
    """The API as the module's administrator, who has permissions in the virtual host once the function made it."""
    return Api(broker.admin, broker.admin_password)


def _topology(**overrides: Any) -> dict[str, Any]:
    topology = {
        "application_user": {
            "secret_arn_env": "APP_SECRET_ARN",
            "publish_to": ["shipments"],
            "consume_from": ["shipment-updates", "shipment-audit"],
            "default_exchange": True,
            "direct_reply_to": True,
        },
        "exchanges": [{"name": "shipments", "type": "topic"}, {"name": "shipments.dead-letter", "type": "fanout"}],
        "queues": [
            {"name": "shipment-updates", "type": "quorum", "dead_letter_exchange": "shipments.dead-letter", "delivery_limit": DELIVERY_LIMIT},
            {"name": "shipment-updates.dead-letter"},
            {"name": "shipment-audit", "type": "classic", "dead_letter_exchange": "shipments.dead-letter", "dead_letter_routing_key": "audit"},
        ],
        "bindings": [
            {"exchange": "shipments", "queue": "shipment-updates", "routing_key": "shipment.#"},
            {"exchange": "shipments", "queue": "shipment-audit", "routing_key": "audit.#"},
            {"exchange": "shipments.dead-letter", "queue": "shipment-updates.dead-letter"},
        ],
    }
    topology.update(overrides)
    return topology


def _secret(name: str, value: dict[str, Any]) -> str:
    import boto3

    return boto3.client("secretsmanager").create_secret(Name=f"rabbitmq-setup-test/{name}/{uuid.uuid4().hex[:8]}", SecretString=json.dumps(value))["ARN"]


@pytest.fixture(scope="module")
def setup_env(moto_module, broker: Broker) -> pytest.MonkeyPatch:
    moto_module.setenv("POWERTOOLS_SERVICE_NAME", "rabbitmq_setup")
    moto_module.setenv("MANAGEMENT_URL", MANAGEMENT_URL)
    moto_module.setenv("BROKER_ADMIN_SECRET_ARN", _secret("admin", {"username": broker.admin, "password": broker.admin_password}))
    moto_module.setenv("APP_SECRET_ARN", _secret("app", {"username": broker.app_user, "password": broker.app_password}))
    moto_module.setenv("TOPOLOGY", json.dumps(_topology(vhost=broker.vhost)))
    return moto_module


@pytest.fixture(scope="module")
def handler(setup_env, load_handler):
    return load_handler("rabbitmq_setup")


@pytest.fixture(scope="module")
def first_run(handler, broker: Broker, api: Api, lambda_context) -> dict[str, Any]:
    admin_before = api.get(encoded("users", broker.admin))
    assert api.call("GET", encoded("vhosts", broker.vhost))[0] == 404, "the virtual host must not exist before the function runs"
    summary = handler.lambda_handler({}, lambda_context)
    return {"summary": summary, "admin_before": admin_before}


def _queue_with_policy(api: Api, broker: Broker, queue: str) -> dict[str, Any]:
    deadline = time.monotonic() + POLICY_VISIBLE_WITHIN_SECONDS
    while True:
        details = api.get(encoded("queues", broker.vhost, queue))
        if details.get("effective_policy_definition") or time.monotonic() > deadline:
            return details
        time.sleep(0.5)


def _get(channel, queue: str, *, auto_ack: bool, within: float = 10) -> tuple[Any, Any, bytes | None]:
    """basic_get until a message comes or ``within`` seconds pass: (method or None, properties, body)."""
    deadline = time.monotonic() + within
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is not None or time.monotonic() > deadline:
            return method, properties, body
        time.sleep(0.1)


def _closed_by_broker(action) -> pika.exceptions.ChannelClosedByBroker:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        action()
    return raised.value


# --- what the first run declares ------------------------------------------------------


def test_the_first_run_creates_every_item_and_says_so(first_run, broker: Broker):
    summary = first_run["summary"]
    assert summary["vhost"] == {"name": broker.vhost, "action": "created"}
    assert summary["exchanges"] == {"shipments": "created", "shipments.dead-letter": "created"}
    assert summary["queues"] == {"shipment-updates": "created", "shipment-updates.dead-letter": "created", "shipment-audit": "created"}
    assert summary["policies"] == {"dead-letter.shipment-updates": "created", "dead-letter.shipment-audit": "created"}
    assert [b["action"] for b in summary["bindings"]] == ["created"] * 3
    assert summary["user"] == {"name": broker.app_user, "action": "created"}
    assert summary["permissions"]["action"] == "created"
    assert summary["changed"] is True
    assert broker.app_password not in json.dumps(summary)


def test_the_exchanges_are_durable_with_their_types(first_run, api: Api, broker: Broker):
    for name, kind in (("shipments", "topic"), ("shipments.dead-letter", "fanout")):
        exchange = api.get(encoded("exchanges", broker.vhost, name))
        assert (exchange["type"], exchange["durable"], exchange["auto_delete"], exchange["internal"], exchange["arguments"]) == (kind, True, False, False, {})


def test_the_source_queue_is_a_durable_quorum_queue_with_the_dead_letter_policy_in_effect(first_run, api: Api, broker: Broker):
    queue = _queue_with_policy(api, broker, "shipment-updates")
    assert (queue["type"], queue["durable"], queue["arguments"]) == ("quorum", True, {"x-queue-type": "quorum"})
    assert queue["policy"] == "dead-letter.shipment-updates"
    assert queue["effective_policy_definition"] == {"dead-letter-exchange": "shipments.dead-letter", "delivery-limit": DELIVERY_LIMIT}


def test_the_dead_letter_queue_is_quorum_by_default_and_has_no_policy(first_run, api: Api, broker: Broker):
    queue = api.get(encoded("queues", broker.vhost, "shipment-updates.dead-letter"))
    assert (queue["type"], queue["durable"]) == ("quorum", True)
    assert not queue.get("policy")


def test_a_policy_matches_exactly_its_queue_and_the_queue_type_the_broker_can_target(first_run, api: Api, broker: Broker):
    policy = api.get(encoded("policies", broker.vhost, "dead-letter.shipment-updates"))
    assert policy["pattern"] == "^shipment-updates$"
    assert policy["apply-to"] == ("quorum_queues" if broker.version >= (3, 12) else "queues")
    assert policy["priority"] == 10
    classic = api.get(encoded("policies", broker.vhost, "dead-letter.shipment-audit"))
    assert classic["definition"] == {"dead-letter-exchange": "shipments.dead-letter", "dead-letter-routing-key": "audit"}
    assert classic["apply-to"] == ("classic_queues" if broker.version >= (3, 12) else "queues")


def test_the_bindings_are_there(first_run, api: Api, broker: Broker):
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in api.get(encoded("bindings", broker.vhost))}
    assert {
        ("shipments", "shipment-updates", "shipment.#"),
        ("shipments", "shipment-audit", "audit.#"),
        ("shipments.dead-letter", "shipment-updates.dead-letter", ""),
    } <= bindings


def test_the_application_user_has_no_tags_and_only_the_named_permissions_in_its_virtual_host(first_run, api: Api, broker: Broker):
    assert api.get(encoded("users", broker.app_user))["tags"] in ([], "")
    permissions = api.get(encoded("users", broker.app_user, "permissions"))
    assert [(p["vhost"], p["configure"], p["write"], p["read"]) for p in permissions] == [
        (broker.vhost, "^$", r"^(amq\.default|shipments)$", r"^(shipment-updates|shipment-audit|amq\.rabbitmq\.reply-to.*)$")
    ]


def test_the_administrator_is_not_changed(first_run, api: Api, broker: Broker):
    before, after = first_run["admin_before"], api.get(encoded("users", broker.admin))
    assert (after["password_hash"], after["tags"]) == (before["password_hash"], before["tags"])


# --- what the application user may do ------------------------------------------------


def test_the_application_user_publishes_to_its_exchange_and_consumes_from_its_queue(first_run, broker: Broker):
    with broker.as_app() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        # Passive declare (a check that the queue exists) needs no configure permission.
        assert channel.queue_declare("shipment-updates", passive=True).method.message_count == 0
        body = json.dumps({"shipment_id": "s-1", "status": "dispatched"}).encode()
        channel.basic_publish("shipments", "shipment.dispatched", body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        method, _, received = _get(channel, "shipment-updates", auto_ack=False)
        assert received == body
        channel.basic_ack(method.delivery_tag)


def test_the_application_user_cannot_declare_a_queue(first_run, broker: Broker):
    with broker.as_app() as connection:
        closed = _closed_by_broker(lambda: connection.channel().queue_declare("not-in-the-topology", durable=True))
    assert (closed.reply_code, closed.reply_text.split(" ")[0]) == (403, "ACCESS_REFUSED")


def test_the_application_user_cannot_read_a_queue_it_was_not_given(first_run, broker: Broker):
    with broker.as_app() as connection:
        closed = _closed_by_broker(lambda: connection.channel().basic_get("shipment-updates.dead-letter"))
    assert (closed.reply_code, closed.reply_text.split(" ")[0]) == (403, "ACCESS_REFUSED")


def test_the_application_user_cannot_publish_to_an_exchange_it_was_not_given(first_run, broker: Broker):
    with broker.as_app() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        closed = _closed_by_broker(lambda: channel.basic_publish("shipments.dead-letter", "", b"{}"))
    assert (closed.reply_code, closed.reply_text.split(" ")[0]) == (403, "ACCESS_REFUSED")


def test_the_application_user_can_request_and_reply_through_direct_reply_to(first_run, broker: Broker):
    with broker.as_app() as requester_connection, broker.as_app() as responder_connection:
        requester, responder = requester_connection.channel(), responder_connection.channel()
        replies = []
        requester.basic_consume("amq.rabbitmq.reply-to", lambda _ch, _m, _p, body: replies.append(body), auto_ack=True)
        # The request goes to a queue by name, through the default exchange.
        requester.basic_publish("", "shipment-updates", b"where is s-1?", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="r-1"))
        method, properties, _ = _get(responder, "shipment-updates", auto_ack=True)
        assert method is not None and properties.reply_to.startswith("amq.rabbitmq.reply-to.")
        responder.basic_publish("", properties.reply_to, b"in transit", pika.BasicProperties(correlation_id=properties.correlation_id))
        deadline = time.monotonic() + 10
        while not replies and time.monotonic() < deadline:
            requester_connection.process_data_events(time_limit=0.2)
    assert replies == [b"in transit"]


def test_a_poison_message_ends_in_the_dead_letter_queue_after_the_delivery_limit(first_run, api: Api, broker: Broker):
    assert _queue_with_policy(api, broker, "shipment-updates")["effective_policy_definition"], "the policy never took effect"
    body = f"poison {uuid.uuid4()}".encode()
    deliveries = 0
    with broker.as_app() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("shipments", "shipment.poison", body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        # Until the queue has stayed empty for a while: a requeue takes a moment to show.
        deadline, last_seen = time.monotonic() + 30, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_seen < 2:
            method, _, received = channel.basic_get("shipment-updates", auto_ack=False)
            if method is None:
                time.sleep(0.1)
                continue
            assert received == body
            deliveries, last_seen = deliveries + 1, time.monotonic()
            assert deliveries <= DELIVERY_LIMIT + 1, "the message came back more often than the delivery limit allows"
            channel.basic_nack(method.delivery_tag, requeue=True)
    # Returned DELIVERY_LIMIT times, dead-lettered at the next return.
    assert deliveries == DELIVERY_LIMIT + 1
    with broker.as_admin() as connection:
        method, properties, dead = _get(connection.channel(), "shipment-updates.dead-letter", auto_ack=True)
    assert method is not None, "the poison message did not reach the dead-letter queue"
    assert dead == body
    death = properties.headers["x-death"][0]
    assert (death["queue"], death["reason"], death["exchange"]) == ("shipment-updates", "delivery_limit", "shipments")


def test_a_rejected_message_of_the_classic_queue_is_dead_lettered_with_the_policy_routing_key(first_run, broker: Broker):
    body = f"rejected {uuid.uuid4()}".encode()
    with broker.as_app() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("shipments", "audit.shipment", body, mandatory=True)
        method, _, _ = _get(channel, "shipment-audit", auto_ack=False)
        channel.basic_reject(method.delivery_tag, requeue=False)
    with broker.as_admin() as connection:
        method, _, dead = _get(connection.channel(), "shipment-updates.dead-letter", auto_ack=True)
    assert method is not None, "the rejected message did not reach the dead-letter queue"
    assert (dead, method.routing_key) == (body, "audit")


# --- running again ---------------------------------------------------------------------


def _state(api: Api, broker: Broker) -> dict[str, Any]:
    definitions = api.get(encoded("definitions", broker.vhost))
    return {
        "definitions": {kind: sorted(definitions[kind], key=json.dumps) for kind in ("queues", "exchanges", "bindings", "policies")},
        "user": api.get(encoded("users", broker.app_user)),
        "permissions": api.get(encoded("users", broker.app_user, "permissions")),
        "admin": api.get(encoded("users", broker.admin)),
    }


def test_a_second_run_changes_nothing_and_says_so(first_run, handler, api: Api, broker: Broker, lambda_context):
    before = _state(api, broker)
    summary = handler.lambda_handler({}, lambda_context)
    assert _state(api, broker) == before
    assert summary["changed"] is False
    assert summary["vhost"]["action"] == summary["user"]["action"] == summary["permissions"]["action"] == "unchanged"
    assert set(summary["exchanges"].values()) == set(summary["queues"].values()) == set(summary["policies"].values()) == {"unchanged"}
    assert {b["action"] for b in summary["bindings"]} == {"unchanged"}


def test_a_run_keeps_what_it_did_not_declare_and_restores_what_drifted(first_run, handler, api: Api, admin_api: Api, broker: Broker, lambda_context):
    admin_api.write("PUT", encoded("queues", broker.vhost, "operator-queue"), {"durable": True, "arguments": {"x-queue-type": "quorum"}})
    admin_api.write("POST", encoded("bindings", broker.vhost, "e", "shipments", "q", "operator-queue"), {"routing_key": "#"})
    admin_api.write(
        "PUT", encoded("policies", broker.vhost, "operator-policy"), {"pattern": "^operator-queue$", "apply-to": "queues", "definition": {"max-length": 10}}
    )
    # Someone changed the dead-letter policy and the user's permissions by hand.
    admin_api.write(
        "PUT",
        encoded("policies", broker.vhost, "dead-letter.shipment-updates"),
        {
            "pattern": "^shipment-updates$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {"dead-letter-exchange": "shipments.dead-letter", "delivery-limit": 50},
        },
    )
    admin_api.write("PUT", encoded("permissions", broker.vhost, broker.app_user), {"configure": ".*", "write": ".*", "read": ".*"})

    summary = handler.lambda_handler({}, lambda_context)

    assert summary["policies"]["dead-letter.shipment-updates"] == "updated"
    assert summary["permissions"]["action"] == "updated"
    assert summary["changed"] is True
    assert api.get(encoded("policies", broker.vhost, "dead-letter.shipment-updates"))["definition"]["delivery-limit"] == DELIVERY_LIMIT
    permissions = api.get(encoded("permissions", broker.vhost, broker.app_user))
    assert (permissions["configure"], permissions["write"]) == ("^$", r"^(amq\.default|shipments)$")
    assert api.get(encoded("queues", broker.vhost, "operator-queue"))["name"] == "operator-queue"
    assert api.get(encoded("bindings", broker.vhost, "e", "shipments", "q", "operator-queue"))
    assert api.get(encoded("policies", broker.vhost, "operator-policy"))["definition"] == {"max-length": 10}


def test_a_changed_password_in_the_secret_is_applied(first_run, handler, api: Api, broker: Broker, lambda_context):
    import boto3

    new_password = secrets.token_hex(16)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=os.environ["APP_SECRET_ARN"], SecretString=json.dumps({"username": broker.app_user, "password": new_password})
    )
    try:
        summary = handler.lambda_handler({}, lambda_context)
        assert summary["user"]["action"] == "updated"
        with broker.connect(broker.app_user, new_password) as connection:
            assert connection.channel().queue_declare("shipment-updates", passive=True)
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            broker.as_app()
    finally:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=os.environ["APP_SECRET_ARN"], SecretString=json.dumps({"username": broker.app_user, "password": broker.app_password})
        )
        assert handler.lambda_handler({}, lambda_context)["user"]["action"] == "updated"


# --- what it refuses -------------------------------------------------------------------


def test_a_queue_that_exists_with_another_type_is_a_conflict_and_nothing_is_written(
    first_run, handler, api: Api, admin_api: Api, broker: Broker, monkeypatch, lambda_context
):
    admin_api.write("PUT", encoded("queues", broker.vhost, "legacy-classic"), {"durable": True, "arguments": {"x-queue-type": "classic"}})
    topology = _topology(vhost=broker.vhost)
    topology["exchanges"].append({"name": "not-yet-there", "type": "direct"})
    topology["queues"].append({"name": "legacy-classic", "type": "quorum"})
    monkeypatch.setenv("TOPOLOGY", json.dumps(topology))

    with pytest.raises(handler.TopologyConflict) as raised:
        handler.lambda_handler({}, lambda_context)

    message = str(raised.value)
    assert "queue 'legacy-classic'" in message and "x-queue-type cannot change" in message and "nothing was changed" in message
    assert api.call("GET", encoded("exchanges", broker.vhost, "not-yet-there"))[0] == 404
    assert api.get(encoded("queues", broker.vhost, "legacy-classic"))["type"] == "classic"


def test_an_application_user_that_is_the_administrator_is_refused(first_run, handler, broker: Broker, monkeypatch, lambda_context):
    monkeypatch.setenv("APP_SECRET_ARN", _secret("app-as-admin", {"username": broker.admin, "password": "anything-else"}))
    with pytest.raises(handler.TopologyConflict, match="names the administrator"):
        handler.lambda_handler({}, lambda_context)


def test_an_existing_administrator_is_not_taken_over_as_the_application_user(first_run, handler, api: Api, broker: Broker, monkeypatch, lambda_context):
    other = f"other-admin-{uuid.uuid4().hex[:8]}"
    api.write("PUT", encoded("users", other), {"password": secrets.token_hex(8), "tags": "administrator"})
    try:
        before = api.get(encoded("users", other))
        monkeypatch.setenv("APP_SECRET_ARN", _secret("other-admin", {"username": other, "password": "another-password"}))
        with pytest.raises(handler.TopologyConflict, match="has the administrator tag"):
            handler.lambda_handler({}, lambda_context)
        assert api.get(encoded("users", other)) == before
    finally:
        api.call("DELETE", encoded("users", other))


BAD_TOPOLOGIES = {
    "not JSON": ("{vhost: /}", "TOPOLOGY is not valid: top level: Invalid JSON"),
    "no application user": (json.dumps({"queues": []}), "application_user: Field required"),
    "delivery limit on a classic queue": (
        json.dumps(_topology(queues=[{"name": "q", "type": "classic", "dead_letter_exchange": "shipments", "delivery_limit": 3}])),
        "delivery_limit needs type quorum",
    ),
    "delivery limit without a dead-letter exchange": (
        json.dumps(_topology(queues=[{"name": "q", "delivery_limit": 3}])),
        "delivery_limit needs a dead_letter_exchange",
    ),
    "undeclared dead-letter exchange": (
        json.dumps(_topology(queues=[{"name": "q", "dead_letter_exchange": "nowhere"}], bindings=[], application_user={"secret_arn_env": "APP_SECRET_ARN"})),
        "queue 'q': dead_letter_exchange 'nowhere' is not a declared exchange",
    ),
    "binding to an undeclared queue": (
        json.dumps(_topology(bindings=[{"exchange": "shipments", "queue": "ghost"}])),
        "binding from exchange 'shipments': queue 'ghost' is not declared",
    ),
    "consuming an undeclared queue": (
        json.dumps(_topology(application_user={"secret_arn_env": "APP_SECRET_ARN", "consume_from": ["ghost"]})),
        "application_user.consume_from: 'ghost' is not a declared queue",
    ),
    "reserved name": (json.dumps(_topology(exchanges=[{"name": "amq.custom", "type": "topic"}])), "names starting with 'amq.' are reserved"),
    "unknown queue type": (json.dumps(_topology(queues=[{"name": "q", "type": "stream"}])), "queues.0.type: Input should be 'quorum' or 'classic'"),
    "unknown key": (json.dumps(_topology(queues=[{"name": "q", "durable": False}])), "queues.0.durable: Extra inputs are not permitted"),
    "queue declared twice": (json.dumps(_topology(queues=[{"name": "q"}, {"name": "q"}], bindings=[])), "queue 'q' is declared more than once"),
    "deeply nested": (DEEPLY_NESTED, "TOPOLOGY is not valid: top level: Invalid JSON: recursion limit exceeded"),
    "deeply nested field": ('{"vhost": ' + DEEPLY_NESTED + "}", "TOPOLOGY is not valid: top level: Invalid JSON: recursion limit exceeded"),
    "a list": ("[1, 2]", "TOPOLOGY is not valid: top level: Input should be an object"),
    "null": ("null", "TOPOLOGY is not valid: top level: Input should be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOPOLOGIES))
def test_a_bad_topology_is_a_clear_error_before_anything_is_declared(case, first_run, handler, api: Api, broker: Broker, monkeypatch, lambda_context):
    text, expected = BAD_TOPOLOGIES[case]
    monkeypatch.setenv("TOPOLOGY", text)
    before = _state(api, broker)
    with pytest.raises(handler.TopologyError) as raised:
        handler.lambda_handler({}, lambda_context)
    assert expected in str(raised.value)
    assert _state(api, broker) == before


def test_a_missing_topology_is_a_clear_error(handler, monkeypatch, lambda_context):
    monkeypatch.delenv("TOPOLOGY")
    with pytest.raises(handler.TopologyError, match="TOPOLOGY is not set"):
        handler.lambda_handler({}, lambda_context)


def test_a_wrong_administrator_password_is_a_clear_401(first_run, handler, broker: Broker, monkeypatch, lambda_context):
    wrong = f"wrong-{secrets.token_hex(8)}"
    monkeypatch.setenv("BROKER_ADMIN_SECRET_ARN", _secret("wrong-admin", {"username": broker.admin, "password": wrong}))
    with pytest.raises(handler.ManagementApiError) as raised:
        handler.lambda_handler({}, lambda_context)
    assert (raised.value.method, raised.value.path, raised.value.status) == ("GET", "/api/overview", 401)
    assert str(raised.value).startswith("GET /api/overview failed: HTTP 401: ")
    assert "username and password" in str(raised.value)
    assert wrong not in str(raised.value)


def test_a_secret_without_a_password_is_a_clear_error(first_run, handler, broker: Broker, monkeypatch, lambda_context):
    monkeypatch.setenv("APP_SECRET_ARN", _secret("no-password", {"username": broker.app_user}))
    with pytest.raises(handler.SecretError, match=r"from APP_SECRET_ARN\) must be a JSON object with a username and a password: password: Field required"):
        handler.lambda_handler({}, lambda_context)


def test_a_secret_arn_variable_that_is_not_set_is_a_clear_error(first_run, handler, monkeypatch, lambda_context):
    monkeypatch.delenv("APP_SECRET_ARN")
    with pytest.raises(handler.TopologyError, match="APP_SECRET_ARN is not set"):
        handler.lambda_handler({}, lambda_context)


def test_an_unreachable_management_api_is_a_clear_error(first_run, handler, monkeypatch, lambda_context):
    with socket.socket() as unused:
        unused.bind((HOST, 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("MANAGEMENT_URL", f"http://{HOST}:{port}")
    monkeypatch.setenv("MANAGEMENT_TIMEOUT_SECONDS", "2")
    with pytest.raises(handler.ManagementApiError) as raised:
        handler.lambda_handler({}, lambda_context)
    assert raised.value.status is None
    assert str(raised.value).startswith(f"GET /api/overview failed: no response: cannot reach http://{HOST}:{port} within 2 s: ")


class _DeeplyNestedApi(http.server.BaseHTTPRequestHandler):
    """A management API whose every answer is 1,000 nested arrays, with the status the test sets."""

    status = 200

    def do_GET(self):  # noqa: N802 - the http.server hook
        payload = DEEPLY_NESTED.encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def deeply_nested_api():
    server = http.server.ThreadingHTTPServer((HOST, 0), _DeeplyNestedApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "reason"), [(200, "the answer is not JSON: RecursionError: "), (500, "[[[[")], ids=["answer", "error"])
def test_a_management_answer_nested_too_deeply_is_a_clear_error(handler, deeply_nested_api, monkeypatch, lambda_context, status, reason):
    monkeypatch.setattr(_DeeplyNestedApi, "status", status)
    monkeypatch.setenv("MANAGEMENT_URL", deeply_nested_api)

    with pytest.raises(handler.ManagementApiError) as raised:
        handler.lambda_handler({}, lambda_context)

    assert (raised.value.method, raised.value.path, raised.value.status) == ("GET", "/api/overview", status)
    assert raised.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://b-0f5c1d5e.mq.us-east-1.amazonaws.com", "must use https for b-0f5c1d5e.mq.us-east-1.amazonaws.com"),
        ("b-0f5c1d5e.mq.us-east-1.amazonaws.com", "must be an http(s) URL"),
        ("https://admin:secret@b-0f5c1d5e.mq.us-east-1.amazonaws.com", "must hold no credentials"),
    ],
)
def test_a_management_url_that_would_expose_the_credentials_is_refused(url, expected, first_run, handler, monkeypatch, lambda_context):
    monkeypatch.setenv("MANAGEMENT_URL", url)
    with pytest.raises(handler.TopologyError) as raised:
        handler.lambda_handler({}, lambda_context)
    assert expected in str(raised.value)
