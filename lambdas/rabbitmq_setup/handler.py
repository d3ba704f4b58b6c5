"""Declare a RabbitMQ broker's topology through its management HTTP API.

Amazon MQ for RabbitMQ takes one user, the administrator, from CloudFormation;
virtual hosts, exchanges, queues, bindings, policies and every other user live
only inside RabbitMQ. This function declares them from the ``TOPOLOGY``
variable, as the administrator, after the broker is created and whenever the
topology changes; an operator may invoke it by hand as well. Every step is
idempotent, so it can run any number of times:

1. the virtual host, when it does not exist yet (an existing one is left as it is);
2. the exchanges: durable, not auto-deleted, not internal, no arguments;
3. one policy per queue that dead-letters (see below), before the queues so
   that a queue has it from its first message;
4. the queues: durable, with ``x-queue-type`` (quorum unless declared classic)
   as their only argument;
5. the bindings, exchange to queue, with a routing key and no arguments;
6. the application user, with the password of its secret and no tags, so it
   cannot use the management UI or this API;
7. that user's permissions on the virtual host (and nowhere else).

Each item is read first and written only when it is missing or differs, so a
second run writes nothing and reports every item ``unchanged``. Nothing is
ever deleted: what the topology no longer names (a queue, a binding, a
policy) stays on the broker until someone removes it. The administrator is
never changed, and a user that has the ``administrator`` tag is never taken
over as the application user.

Exchanges and queues cannot change in place: their type, durability and
arguments are fixed when they are declared (``x-queue-type`` above all). When
one of them already exists with other properties the run stops with a
TopologyConflict that names each difference, before it has written anything,
rather than leaving the broker different from the topology.

Dead-lettering is a policy, not queue arguments, so that it can change later
without recreating the queue. For a queue with a ``dead_letter_exchange`` the
policy ``dead-letter.<queue>`` matches exactly that queue name and sets
``dead-letter-exchange`` (and ``dead-letter-routing-key`` when given) and, for a
quorum queue, ``delivery-limit``: a quorum queue counts how often each message
is returned (rejected or nacked with requeue, or left unacknowledged when its
consumer goes away) and dead-letters it once that count exceeds the limit.
Without a limit a message that always fails would be redelivered forever; with
it, the poison message is kept in the dead-letter queue. RabbitMQ applies one
policy per queue, the matching one with the highest priority (``policy_priority``,
default 10): Amazon MQ's default policies on ``/`` have priority 0 or 1, so
for the dead-lettering queues ours wins and theirs (lazy mode, maximum length)
no longer applies. On RabbitMQ 3.12 and later a policy applies to
``quorum_queues`` or ``classic_queues`` only, as Amazon MQ requires of policies
for quorum queues; older brokers only know ``queues``.

Permissions of the application user, as the three regular expressions
RabbitMQ matches against resource names:

- configure ``^$``: nothing. The user declares and deletes no exchange or queue;
  the topology is this function's job.
- write ``^(amq\\.default|<exchanges in publish_to>)$``: publishing needs write
  on the exchange it goes to. ``amq.default`` is the default exchange, granted
  only with ``default_exchange``: through it a message reaches any queue of the
  virtual host by name, which is how a responder replies to a direct reply-to
  address (``amq.rabbitmq.reply-to.<...>``) and how a requester sends to a
  request queue by name.
- read ``^(<queues in consume_from>|amq\\.rabbitmq\\.reply-to.*)$``: consuming or
  getting needs read on the queue. The reply-to pattern, added with
  ``direct_reply_to``, names the pseudo-queue a requester consumes replies
  from; RabbitMQ 3.x does not check it, and names starting ``amq.`` cannot be
  declared by clients, so it grants nothing else.

Queues not in ``consume_from`` (dead-letter queues, for instance) cannot be
read by the user, and exchanges not in ``publish_to`` cannot be published to.
Binding needs write on the queue and read on the exchange, which the user does
not have: bindings are the topology's too.

TOPOLOGY (JSON)::

    {
      "vhost": "/",                                  default "/"
      "policy_priority": 10,                         default 10
      "application_user": {
        "secret_arn_env": "APP_SECRET_ARN",          variable holding the user's secret ARN
        "publish_to": ["shipments"],                 declared exchanges, default none
        "consume_from": ["shipment-updates"],        declared queues, default none
        "default_exchange": true,                    default false
        "direct_reply_to": true                      default false
      },
      "exchanges": [{"name": "shipments", "type": "topic"},
                    {"name": "shipments.dead-letter", "type": "fanout"}],
      "queues": [{"name": "shipment-updates", "type": "quorum",
                  "dead_letter_exchange": "shipments.dead-letter", "delivery_limit": 5},
                 {"name": "shipment-updates.dead-letter"}],
      "bindings": [{"exchange": "shipments", "queue": "shipment-updates", "routing_key": "shipment.#"},
                   {"exchange": "shipments.dead-letter", "queue": "shipment-updates.dead-letter"}]
    }

Exchange types are ``direct``, ``fanout`` and ``topic``; queue types ``quorum``
(default) and ``classic``. A queue may have ``dead_letter_exchange``,
``dead_letter_routing_key`` and, when quorum, ``delivery_limit`` (which needs a
dead-letter exchange: otherwise the broker would drop the message). Every name
a queue, binding or the user refers to must be declared in the same topology.
Names of exchanges and queues may not start with ``amq.`` (reserved by
RabbitMQ). Unknown keys are errors.

The secrets hold ``{"username": ..., "password": ...}``; passwords are never
logged nor put in an error.

The result lists what was done to each item: ``created``, ``updated`` or
``unchanged``, and ``changed`` says whether anything was written.

Environment:
    TOPOLOGY                    the topology above (required)
    MANAGEMENT_URL              the management API's base URL (required): on Amazon MQ the
                                broker's web console URL, https://b-<id>.mq.<region>.amazonaws.com;
                                plain http only to a loopback address
    BROKER_ADMIN_SECRET_ARN     secret of the broker's administrator (required)
    <secret_arn_env>            secret of the application user (required), named by the topology
    MANAGEMENT_TIMEOUT_SECONDS  timeout of each HTTP request, default 10
"""

import base64
import hashlib
import hmac
import html
import ipaddress
import json
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_POLICY_PRIORITY = 10
# A reason the API gives can quote a whole definition; errors keep its start.
MAX_REASON_LENGTH = 500
# RabbitMQ's password hashes: base64 of a 4-byte salt followed by hash(salt + password).
PASSWORD_HASHES = {"rabbit_password_hashing_sha256": hashlib.sha256, "rabbit_password_hashing_sha512": hashlib.sha512}
# The pseudo-queue a direct reply-to requester consumes from, and the addresses replies go to.
DIRECT_REPLY_TO_PATTERN = r"amq\.rabbitmq\.reply-to.*"
DEFAULT_EXCHANGE_PATTERN = r"amq\.default"

logger = Logger()
tracer = Tracer()


class TopologyError(ValueError):
    """TOPOLOGY (or another setting) is missing or not valid; nothing was declared."""


class SecretError(ValueError):
    """A secret cannot be read or does not hold a username and a password."""


class TopologyConflict(RuntimeError):
    """Something on the broker differs from the topology in a way that cannot change in place; nothing was written."""


class ManagementApiError(RuntimeError):
    """The management API refused a request or could not be reached."""

    def __init__(self, method: str, path: str, status: int | None, reason: str) -> None:
        self.method, self.path, self.status, self.reason = method, path, status, reason
        outcome = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {path} failed: {outcome}: {reason}")


# --- the topology -------------------------------------------------------------


def _no_control_characters(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    if len(value.encode()) > 255:
        raise ValueError("must be at most 255 bytes long")
    return value


def _not_reserved(value: str) -> str:
    if value.startswith("amq."):
        raise ValueError("names starting with 'amq.' are reserved by RabbitMQ")
    return value


VhostName = Annotated[StrictStr, Field(min_length=1), AfterValidator(_no_control_characters)]
ResourceName = Annotated[StrictStr, Field(min_length=1), AfterValidator(_no_control_characters), AfterValidator(_not_reserved)]
RoutingKey = Annotated[StrictStr, AfterValidator(_no_control_characters)]
EnvName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class Exchange(_Model):
    name: ResourceName
    type: Literal["direct", "fanout", "topic"]


class Queue(_Model):
    name: ResourceName
    type: Literal["quorum", "classic"] = "quorum"
    dead_letter_exchange: ResourceName | None = None
    dead_letter_routing_key: RoutingKey | None = None
    delivery_limit: Annotated[StrictInt, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _dead_lettering(self) -> "Queue":
        if self.delivery_limit is not None and self.type != "quorum":
            raise ValueError("delivery_limit needs type quorum (classic queues do not count deliveries)")
        if self.delivery_limit is not None and self.dead_letter_exchange is None:
            raise ValueError("delivery_limit needs a dead_letter_exchange (without one the broker drops the message)")
        if self.dead_letter_routing_key is not None and self.dead_letter_exchange is None:
            raise ValueError("dead_letter_routing_key needs a dead_letter_exchange")
        return self


class Binding(_Model):
    exchange: ResourceName
    queue: ResourceName
    routing_key: RoutingKey = ""


class ApplicationUser(_Model):
    secret_arn_env: EnvName
    publish_to: list[ResourceName] = []
    consume_from: list[ResourceName] = []
    default_exchange: StrictBool = False
    direct_reply_to: StrictBool = False


class Topology(_Model):
    vhost: VhostName = "/"
    policy_priority: Annotated[StrictInt, Field(ge=0, le=999)] = DEFAULT_POLICY_PRIORITY
    application_user: ApplicationUser
    exchanges: list[Exchange] = []
    queues: list[Queue] = []
    bindings: list[Binding] = []

    @model_validator(mode="after")
    def _references(self) -> "Topology":
        problems = []
        exchanges = [e.name for e in self.exchanges]
        queues = [q.name for q in self.queues]
        for kind, names in (("exchange", exchanges), ("queue", queues)):
            for name in sorted({n for n in names if names.count(n) > 1}):
                problems.append(f"{kind} {name!r} is declared more than once")
        for queue in self.queues:
            if queue.dead_letter_exchange is not None and queue.dead_letter_exchange not in exchanges:
                problems.append(f"queue {queue.name!r}: dead_letter_exchange {queue.dead_letter_exchange!r} is not a declared exchange")
        seen = set()
        for binding in self.bindings:
            if binding.exchange not in exchanges:
                problems.append(f"binding to queue {binding.queue!r}: exchange {binding.exchange!r} is not declared")
            if binding.queue not in queues:
                problems.append(f"binding from exchange {binding.exchange!r}: queue {binding.queue!r} is not declared")
            key = (binding.exchange, binding.queue, binding.routing_key)
            if key in seen:
                problems.append(f"binding {binding.exchange!r} -> {binding.queue!r} with routing key {binding.routing_key!r} is declared more than once")
            seen.add(key)
        user = self.application_user
        problems += [f"application_user.publish_to: {name!r} is not a declared exchange" for name in user.publish_to if name not in exchanges]
        problems += [f"application_user.consume_from: {name!r} is not a declared queue" for name in user.consume_from if name not in queues]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _describe(exc: ValidationError) -> str:
    """Each error with where it is, never the value (which may be a password)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'top level'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


def load_topology(text: str | None) -> Topology:
    if text is None or not text.strip():
        raise TopologyError("TOPOLOGY is not set: it must hold the topology as JSON")
    try:
        return Topology.model_validate_json(text)
    except ValidationError as exc:
        raise TopologyError(f"TOPOLOGY is not valid: {_describe(exc)}") from exc


def literal(name: str) -> str:
    """A regular expression (Erlang's, PCRE-like) that matches ``name`` itself: its metacharacters escaped."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", name)


def user_permissions(topology: Topology) -> dict[str, str]:
    """The application user's configure, write and read patterns (see the module docstring)."""
    user = topology.application_user
    write = ([DEFAULT_EXCHANGE_PATTERN] if user.default_exchange else []) + [literal(name) for name in user.publish_to]
    read = [literal(name) for name in user.consume_from] + ([DIRECT_REPLY_TO_PATTERN] if user.direct_reply_to else [])

    def exactly(patterns: list[str]) -> str:
        return f"^({'|'.join(patterns)})$" if patterns else "^$"

    return {"configure": "^$", "write": exactly(write), "read": exactly(read)}


# --- credentials --------------------------------------------------------------


class Credentials(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    username: Annotated[StrictStr, Field(min_length=1), AfterValidator(_no_control_characters)]
    password: Annotated[SecretStr, Field(min_length=1)]


def read_credentials(env_name: str) -> Credentials:
    arn = os.environ.get(env_name, "").strip()
    if not arn:
        raise TopologyError(f"{env_name} is not set: it must hold the ARN of a Secrets Manager secret with a username and a password")
    try:
        # Always read afresh: the function runs rarely, and a changed password must take effect.
        value = parameters.get_secret(arn, transform="json", force_fetch=True)
    except parameters.exceptions.TransformParameterError as exc:
        raise SecretError(f"secret {arn} (from {env_name}) is not JSON") from exc
    except parameters.exceptions.GetParameterError as exc:
        raise SecretError(f"cannot read secret {arn} (from {env_name}): {exc}") from exc
    try:
        return Credentials.model_validate(value)
    except ValidationError as exc:
        raise SecretError(f"secret {arn} (from {env_name}) must be a JSON object with a username and a password: {_describe(exc)}") from exc


# --- the management API ---------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the administrator's credentials to wherever it points.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def management_base_url(url: str) -> str:
    """The API's base URL, checked: https, or http to a loopback address only; no credentials in it."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TopologyError(f"MANAGEMENT_URL must be an http(s) URL such as https://b-<id>.mq.<region>.amazonaws.com, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise TopologyError(f"MANAGEMENT_URL must use https for {parts.hostname}: plain http is accepted only for a loopback address")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise TopologyError("MANAGEMENT_URL must hold no credentials, query or fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def api_path(*segments: str) -> str:
    """``/api/<segment>/...`` with every segment percent-encoded (``/`` becomes ``%2F``)."""
    return "/api/" + "/".join(_segment(segment) for segment in segments)


class ManagementApi:
    """The RabbitMQ management HTTP API, as one user, with the standard library only."""

    def __init__(self, url: str, credentials: Credentials, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = management_base_url(url)
        self.timeout = timeout
        token = base64.b64encode(f"{credentials.username}:{credentials.password.get_secret_value()}".encode()).decode()
        self._authorization = f"Basic {token}"
        # Certificates are verified against the system's CA store, host names checked.
        self._opener = urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context()))

    def request(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        """Send one request; the decoded JSON answer, None for an empty one (or a 404 when ``missing_ok``)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise ManagementApiError(method, path, exc.code, self._reason(exc)) from None
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, ssl.SSLError) as exc:
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ManagementApiError(method, path, None, f"cannot reach {self.base_url} within {self.timeout:g} s: {cause}") from None
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except Exception as exc:  # not JSON, or nested too deeply to decode (RecursionError)
            raise ManagementApiError(method, path, response.status, f"the answer is not JSON: {type(exc).__name__}: {payload[:100]!r}") from None

    @staticmethod
    def _reason(exc: urllib.error.HTTPError) -> str:
        try:
            raw = exc.read()
        except OSError:
            raw = b""
        try:
            answer = json.loads(raw)
            reason = f"{answer.get('error', exc.reason)}: {answer.get('reason', '')}".rstrip(": ")
        except Exception:  # not a JSON object (or nested too deeply to decode): the text as it is
            reason = raw.decode(errors="replace").strip() or str(exc.reason)
        reason = " ".join(html.unescape(reason).split())
        if exc.code == 401:
            reason += " (check the administrator's username and password in its secret)"
        return reason[:MAX_REASON_LENGTH]

    def get(self, path: str) -> Any:
        return self.request("GET", path, missing_ok=True)

    def put(self, path: str, body: Any) -> None:
        self.request("PUT", path, body)

    def post(self, path: str, body: Any) -> None:
        self.request("POST", path, body)


# --- declaring ------------------------------------------------------------------


def _version(overview: dict[str, Any]) -> tuple[int, ...]:
    found = re.match(r"(\d+)\.(\d+)", str(overview.get("rabbitmq_version", "")))
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _tags(user: dict[str, Any]) -> list[str]:
    tags = user.get("tags") or []
    return [t for t in (tags.split(",") if isinstance(tags, str) else tags) if t]


def _password_matches(user: dict[str, Any], password: str) -> bool:
    """Whether the stored hash is of this password; False when it cannot be told."""
    digest = PASSWORD_HASHES.get(user.get("hashing_algorithm", ""))
    try:
        stored = base64.b64decode(user.get("password_hash") or "", validate=True)
    except ValueError:
        return False
    if digest is None or len(stored) <= 4:
        return False
    salt = stored[:4]
    return hmac.compare_digest(stored[4:], digest(salt + password.encode()).digest())


def _exchange_body(exchange: Exchange) -> dict[str, Any]:
    return {"type": exchange.type, "durable": True, "auto_delete": False, "internal": False, "arguments": {}}


def _queue_body(queue: Queue) -> dict[str, Any]:
    return {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": queue.type}}


def _exchange_differences(exchange: Exchange, current: dict[str, Any]) -> list[str]:
    wanted = _exchange_body(exchange)
    return [f"{field} is {current.get(field)!r}, declared {wanted[field]!r}" for field in wanted if current.get(field) != wanted[field]]


def _queue_differences(queue: Queue, current: dict[str, Any]) -> list[str]:
    differences = []
    current_type = current.get("type") or (current.get("arguments") or {}).get("x-queue-type") or "classic"
    if current_type != queue.type:
        differences.append(
            f"type is {current_type!r}, declared {queue.type!r} (x-queue-type cannot change: move the messages and delete the queue, or use a new name)"
        )
    for field, wanted in (("durable", True), ("auto_delete", False), ("exclusive", False)):
        if current.get(field, wanted) != wanted:
            differences.append(f"{field} is {current.get(field)!r}, declared {wanted!r}")
    extra = {name: value for name, value in (current.get("arguments") or {}).items() if name != "x-queue-type"}
    if extra:
        differences.append(f"it has arguments {extra} that the topology does not declare (queue arguments cannot change; use the policy instead)")
    return differences


def _policy(queue: Queue, topology: Topology, version: tuple[int, ...]) -> tuple[str, dict[str, Any]] | None:
    if queue.dead_letter_exchange is None:
        return None
    definition: dict[str, Any] = {"dead-letter-exchange": queue.dead_letter_exchange}
    if queue.dead_letter_routing_key is not None:
        definition["dead-letter-routing-key"] = queue.dead_letter_routing_key
    if queue.delivery_limit is not None:
        definition["delivery-limit"] = queue.delivery_limit
    apply_to = f"{queue.type}_queues" if version >= (3, 12) else "queues"
    body = {"pattern": f"^{literal(queue.name)}$", "apply-to": apply_to, "priority": topology.policy_priority, "definition": definition}
    return f"dead-letter.{queue.name}", body


def _same_policy(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    return current is not None and all(current.get(field) == value for field, value in wanted.items())


def _create_if_missing(api: ManagementApi, current: dict[str, Any] | None, path: str, body: dict[str, Any]) -> str:
    """Declare an exchange or a queue the broker does not have (one it has was checked against the topology before)."""
    if current is not None:
        return "unchanged"
    api.put(path, body)
    return "created"


@tracer.capture_method
def declare(api: ManagementApi, topology: Topology, admin: Credentials, application: Credentials) -> dict[str, Any]:
    """Bring the broker to the topology; return what was done to each item."""
    overview = api.get("/api/overview") or {}
    version = _version(overview)
    vhost = topology.vhost
    if application.username == admin.username:
        raise TopologyConflict(f"the application user's secret names the administrator {admin.username!r}; it must name a user of its own")

    # Read what exists and stop on conflicts before writing anything.
    vhost_exists = api.get(api_path("vhosts", vhost)) is not None
    current_exchanges = {e.name: api.get(api_path("exchanges", vhost, e.name)) if vhost_exists else None for e in topology.exchanges}
    current_queues = {q.name: api.get(api_path("queues", vhost, q.name)) if vhost_exists else None for q in topology.queues}
    current_user = api.get(api_path("users", application.username))
    conflicts = []
    for exchange in topology.exchanges:
        if current_exchanges[exchange.name] is not None:
            conflicts += [f"exchange {exchange.name!r}: {d}" for d in _exchange_differences(exchange, current_exchanges[exchange.name])]
    for queue in topology.queues:
        if current_queues[queue.name] is not None:
            conflicts += [f"queue {queue.name!r}: {d}" for d in _queue_differences(queue, current_queues[queue.name])]
    if current_user is not None and "administrator" in _tags(current_user):
        conflicts.append(f"user {application.username!r} has the administrator tag; it is not taken over as the application user")
    if conflicts:
        raise TopologyConflict(f"the broker's virtual host {vhost!r} differs from TOPOLOGY; nothing was changed: " + "; ".join(conflicts))

    summary: dict[str, Any] = {"vhost": {"name": vhost}, "broker_version": overview.get("rabbitmq_version")}

    if vhost_exists:
        summary["vhost"]["action"] = "unchanged"
    else:
        api.put(api_path("vhosts", vhost), {})
        summary["vhost"]["action"] = "created"

    summary["exchanges"] = {
        e.name: _create_if_missing(api, current_exchanges[e.name], api_path("exchanges", vhost, e.name), _exchange_body(e)) for e in topology.exchanges
    }

    summary["policies"] = {}
    for queue in topology.queues:
        policy = _policy(queue, topology, version)
        if policy is None:
            continue
        name, body = policy
        current = api.get(api_path("policies", vhost, name)) if vhost_exists else None
        if _same_policy(current, body):
            summary["policies"][name] = "unchanged"
        else:
            api.put(api_path("policies", vhost, name), body)
            summary["policies"][name] = "created" if current is None else "updated"

    summary["queues"] = {q.name: _create_if_missing(api, current_queues[q.name], api_path("queues", vhost, q.name), _queue_body(q)) for q in topology.queues}

    summary["bindings"] = []
    for binding in topology.bindings:
        path = api_path("bindings", vhost, "e", binding.exchange, "q", binding.queue)
        existing = api.get(path) or []
        present = any(b.get("routing_key") == binding.routing_key and not b.get("arguments") for b in existing)
        if not present:
            api.post(path, {"routing_key": binding.routing_key, "arguments": {}})
        summary["bindings"].append({**binding.model_dump(), "action": "unchanged" if present else "created"})

    password = application.password.get_secret_value()
    user_path = api_path("users", application.username)
    if current_user is not None and not _tags(current_user) and _password_matches(current_user, password):
        user_action = "unchanged"
    else:
        api.put(user_path, {"password": password, "tags": ""})
        user_action = "created" if current_user is None else "updated"
    summary["user"] = {"name": application.username, "action": user_action}

    permissions = user_permissions(topology)
    permissions_path = api_path("permissions", vhost, application.username)
    current = api.get(permissions_path)
    if current is not None and all(current.get(kind) == pattern for kind, pattern in permissions.items()):
        permissions_action = "unchanged"
    else:
        api.put(permissions_path, permissions)
        permissions_action = "created" if current is None else "updated"
    summary["permissions"] = {**permissions, "action": permissions_action}

    actions = [summary["vhost"]["action"], user_action, permissions_action, *summary["exchanges"].values(), *summary["policies"].values()]
    actions += [*summary["queues"].values(), *(b["action"] for b in summary["bindings"])]
    summary["changed"] = any(action != "unchanged" for action in actions)
    return summary


def _timeout() -> float:
    raw = os.environ.get("MANAGEMENT_TIMEOUT_SECONDS", str(DEFAULT_TIMEOUT_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 300:
        raise TopologyError(f"MANAGEMENT_TIMEOUT_SECONDS must be a number of seconds between 0 and 300, got {raw!r}")
    return value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    topology = load_topology(os.environ.get("TOPOLOGY"))
    url = management_base_url(os.environ.get("MANAGEMENT_URL", ""))
    timeout = _timeout()
    admin = read_credentials("BROKER_ADMIN_SECRET_ARN")
    application = read_credentials(topology.application_user.secret_arn_env)
    api = ManagementApi(url, admin, timeout=timeout)
    logger.info("Declaring the topology", extra={"management_url": api.base_url, "vhost": topology.vhost, "application_user": application.username})
    summary = declare(api, topology, admin, application)
    logger.info("Topology declared", extra={"summary": summary})
    return summary
