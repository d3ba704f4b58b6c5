"""CaseUber's local world: the stack's handlers on moto, its dispatch run by moto's Step Functions, drivers over a real
Mosquitto, riders and drivers on a WebSocket stand-in. Used by tests/handlers/test_case_uber.py and the experiment.

- ``synth_template``: the CaseUber template (sandbox), synthesized once per process;
- ``World``: moto's DynamoDB, KMS and Step Functions with the stack's tables, token key and dispatch definition (read
  from the template; its Lambda tasks call the real handlers in this process), and the four handlers loaded;
- ``Broker``: Mosquitto on 127.0.0.1, with an ACL that stands for the drivers' IoT policy (a client publishes only on
  ``rides/drivers/<its client id>/events``);
- ``WebSocketStandIn``: API Gateway's WebSocket API in front of the real connection handler (``websockets`` server),
  whose ``post_to_connection`` the offer handler's management client is pointed at;
- ``drive``: simulated drivers (parked or moving) and their apps' ``DistanceFilter``.

Not reproduced: X.509 and the IoT policy engine (the ACL stands for the publish statement), the rules engine (its SQL
is read by tests/handlers/iot_rule.py), Kinesis (records are built in the shape Lambda receives), Lambda itself (the
handlers are called in this process), API Gateway's WebSocket service (the stand-in).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import math
import os
import pwd
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest.mock import patch

import boto3

from messaging_runtime.driver_index import DistanceFilter, DriverPosition

ROOT = Path(__file__).resolve().parent.parent
REGION, ACCOUNT = "us-east-1", "123456789012"
HOST = "127.0.0.1"
MOSQUITTO = Path("/usr/sbin/mosquitto")
INDEX_TABLE, RIDES_TABLE, CONNECTIONS_TABLE = "driver-index", "rides", "ride-channels"
WEBSOCKET_ENDPOINT = "https://wsapi12345.execute-api.us-east-1.amazonaws.com/v1"
METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:wsapi12345/v1/$connect"
HANDLERS = ("case_uber_positions", "case_uber_rides", "case_uber_offers", "case_uber_connections")
#: A city centre (Lisbon), around which drivers are placed.
CENTRE = (38.7223, -9.1393)
CONTEXT = SimpleNamespace(
    function_name="case-uber",
    function_version="$LATEST",
    invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:case-uber",
    memory_limit_in_mb=256,
    aws_request_id="req-1",
    log_group_name="/aws/lambda/case-uber",
    log_stream_name="s",
    get_remaining_time_in_millis=lambda: 30_000,
)


@lru_cache(maxsize=2)
def synth_template(profile: str = "sandbox") -> dict[str, Any]:
    """The CaseUber template, synthesized without the compliance packs (they run in tests/compliance)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from messaging_constructs import Profile
    from stacks.case_uber import CaseUberStack

    app = App(context={"profile": profile})
    return Template.from_stack(CaseUberStack(app, "CaseUber", profile=Profile.of(app))).to_json()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def function_folders(template: dict[str, Any]) -> dict[str, str]:
    """{function logical id: its folder under lambdas/}."""
    return {
        k: r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for k, r in resources_of(template, "AWS::Lambda::Function").items()
        if "POWERTOOLS_SERVICE_NAME" in r["Properties"].get("Environment", {}).get("Variables", {})
    }


def dispatch_definition(template: dict[str, Any], *, offer_timeout: int | None = None, heartbeat: int | None = None) -> str:
    """The dispatch's definition with its references resolved for moto (functions by logical id); timeouts may be cut
    (``heartbeat=0`` removes the heartbeat)."""
    (machine,) = resources_of(template, "AWS::StepFunctions::StateMachine").values()
    parts = []
    for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, str):
            parts.append(part)
        elif "Fn::GetAtt" in part:
            parts.append(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{part['Fn::GetAtt'][0]}")
        elif part.get("Ref") == "AWS::Partition":
            parts.append("aws")
        else:
            raise AssertionError(f"unexpected reference in the definition: {part}")
    definition = json.loads("".join(parts))
    offer = definition["States"]["Offer"]
    if offer_timeout is not None:
        offer["TimeoutSeconds"] = offer_timeout
    if heartbeat == 0:
        offer.pop("HeartbeatSeconds", None)
    elif heartbeat is not None:
        offer["HeartbeatSeconds"] = heartbeat
    return json.dumps(definition)


def load_handler(folder: str) -> ModuleType:
    path = ROOT / "lambdas" / folder / "handler.py"
    spec = importlib.util.spec_from_file_location(f"case_uber_handler_{folder}_{uuid.uuid4().hex[:8]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _table(dynamodb: Any, name: str, keys: list[str]) -> None:
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in zip(keys, ("HASH", "RANGE"), strict=False)],
        BillingMode="PAY_PER_REQUEST",
    )


@dataclass
class World:
    """The stack's handlers on moto (call inside ``mock_aws`` and a handler environment); see ``World.create``."""

    handlers: dict[str, ModuleType]
    sfn: Any
    machine_arn: str
    dynamodb: Any
    folders: dict[str, str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def create(cls, env: Any, template: dict[str, Any], *, offer_timeout: int | None = None, heartbeat: int | None = None) -> World:
        """Tables, the HMAC key, the dispatch state machine and the handlers; ``env`` is a MonkeyPatch for the variables."""
        dynamodb = boto3.client("dynamodb")
        _table(dynamodb, INDEX_TABLE, ["pk", "sk"])
        _table(dynamodb, RIDES_TABLE, ["ride_id"])
        _table(dynamodb, CONNECTIONS_TABLE, ["channel", "connection_id"])
        key_id = boto3.client("kms").create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
        sfn = boto3.client("stepfunctions")
        definition = dispatch_definition(template, offer_timeout=offer_timeout, heartbeat=heartbeat)
        arn = sfn.create_state_machine(name="dispatch", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/dispatch")["stateMachineArn"]
        for name, value in {
            "INDEX_TABLE_NAME": INDEX_TABLE,
            "RIDES_TABLE_NAME": RIDES_TABLE,
            "CONNECTIONS_TABLE_NAME": CONNECTIONS_TABLE,
            "STATUS_TOKEN_KEY_ID": key_id,
            "STATE_MACHINE_ARN": arn,
            "WEBSOCKET_ENDPOINT": WEBSOCKET_ENDPOINT,
            "POWERTOOLS_METRICS_NAMESPACE": "CaseUber",
        }.items():
            env.setenv(name, value)
        handlers = {}
        for folder in HANDLERS:
            env.setenv("POWERTOOLS_SERVICE_NAME", folder)
            handlers[folder] = load_handler(folder)
        return cls(handlers=handlers, sfn=sfn, machine_arn=arn, dynamodb=dynamodb, folders=function_folders(template))

    def lambda_invoke(self) -> Any:
        """A context manager: moto's Lambda invocations (from Step Functions) call the handlers in this process."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        world = self

        def invoke(backend, function_name, qualifier, body, headers, response_headers):
            folder = world.folders[function_name.rsplit(":", 1)[-1]]
            payload = json.loads(body or "{}")
            world.calls.append((folder, payload))
            try:
                result = world.handlers[folder].lambda_handler(payload, CONTEXT)
            except Exception as error:  # what Lambda reports: the exception's class name is the error
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
            return json.dumps(result, default=str).encode()

        return patch.object(LambdaSimpleBackend, "invoke", invoke)

    def ride(self, ride_id: str) -> dict[str, Any]:
        return self.dynamodb.get_item(TableName=RIDES_TABLE, Key={"ride_id": {"S": ride_id}}, ConsistentRead=True).get("Item", {})

    def finish(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (described := self.sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise AssertionError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.02)
        return described

    def request_ride(self, lat: float, lng: float, key: str, principal: str = "arn:aws:iam::123456789012:user/rider") -> dict[str, Any]:
        """``POST /rides`` as API Gateway's Lambda proxy integration sends it; the parsed 202 (or error) body with ``status_code``."""
        event = {
            "resource": "/rides",
            "path": "/rides",
            "httpMethod": "POST",
            "headers": {"Idempotency-Key": key, "Content-Type": "application/json"},
            "multiValueHeaders": {"Idempotency-Key": [key], "Content-Type": ["application/json"]},
            "queryStringParameters": None,
            "pathParameters": None,
            "body": json.dumps({"lat": lat, "lng": lng}),
            "isBase64Encoded": False,
            "requestContext": {"requestId": uuid.uuid4().hex, "resourcePath": "/rides", "httpMethod": "POST", "identity": {"userArn": principal}},
        }
        answer = self.handlers["case_uber_rides"].lambda_handler(event, CONTEXT)
        return {"status_code": answer["statusCode"], **json.loads(answer["body"])}


# --- positions ----------------------------------------------------------------------------------------------------


def kinesis_event(records: list[tuple[str, bytes]], *, first_sequence: int = 0) -> dict[str, Any]:
    """A Kinesis event as Lambda's event source mapping delivers it: (partition key, data) per record."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": f"{49590338271490256608559692538361571095921575989136588898 + first_sequence + i}",
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": time.time(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{first_sequence + i}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/positions",
                "awsRegion": REGION,
                "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/positions",
            }
            for i, (key, data) in enumerate(records)
        ]
    }


def offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` north and ``east_m`` east of (lat, lng) (flat-earth step, fine over a few km)."""
    return lat + north_m / 111_320.0, lng + east_m / (111_320.0 * math.cos(math.radians(lat)))


@dataclass
class SimulatedDriver:
    """A driver and its app: parked (speed 0) or moving at ``speed`` m/s on a heading that turns now and then."""

    driver_id: str
    lat: float
    lng: float
    speed: float
    heading: float
    app: DistanceFilter = field(default_factory=DistanceFilter)

    def tick(self, seconds: float, rng: random.Random) -> None:
        if self.speed:
            self.heading += rng.uniform(-0.3, 0.3)
            self.lat, self.lng = offset(self.lat, self.lng, self.speed * seconds * math.cos(self.heading), self.speed * seconds * math.sin(self.heading))


def fleet(count: int, parked_share: float, seed: int, radius_m: float = 3000) -> list[SimulatedDriver]:
    rng = random.Random(seed)
    drivers = []
    for i in range(count):
        lat, lng = offset(*CENTRE, rng.uniform(-radius_m, radius_m), rng.uniform(-radius_m, radius_m))
        parked = i < round(count * parked_share)
        drivers.append(SimulatedDriver(f"driver-{i:04d}", lat, lng, 0.0 if parked else rng.uniform(5, 14), rng.uniform(0, 2 * math.pi)))
    return drivers


def drive(
    drivers: list[SimulatedDriver], *, minutes: float, every_s: float, start_ms: int, seed: int
) -> Iterator[tuple[SimulatedDriver, DriverPosition, bool]]:
    """Every driver's position every ``every_s`` seconds for ``minutes``: (driver, position, whether its app sends it)."""
    rng = random.Random(seed)
    for step in range(int(minutes * 60 / every_s)):
        ts = start_ms + int(step * every_s * 1000)
        for driver in drivers:
            if step:
                driver.tick(every_s, rng)
            position = DriverPosition(driver_id=driver.driver_id, lat=driver.lat, lng=driver.lng, ts=ts)
            yield driver, position, driver.app.offer(position)


# --- the broker ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Broker:
    """Mosquitto on a free port of 127.0.0.1, persistence off; the ACL stands for the drivers' IoT policy."""

    RULES_ENGINE = "rules-engine"

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.process = folder, 0, None

    def __enter__(self) -> Broker:
        (self.folder / "acl").write_text(f"pattern write rides/drivers/%c/events\n\nuser {self.RULES_ENGINE}\ntopic read rides/drivers/+/events\n")
        self.port = _free_port()
        configuration = self.folder / "mosquitto.conf"
        configuration.write_text(
            f"listener {self.port} {HOST}\nuser {pwd.getpwuid(os.geteuid()).pw_name}\nallow_anonymous true\npersistence false\n"
            f"acl_file {self.folder / 'acl'}\nlog_dest stdout\nlog_type error\n"
            # Mosquitto queues at most 1,000 QoS 1 messages per client by default and drops the rest: the stand-in rules
            # engine takes a whole fleet's burst.
            "max_queued_messages 0\n"
        )
        self.log = self.folder / "mosquitto.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(configuration)], stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text(errors='replace')}") from None
                time.sleep(0.02)

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, client_id: str, *, user_name: str | None = None, on_message: Callable[[Any], None] | None = None) -> Any:
        """A connected paho MQTT 5 client on its own network thread."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user_name:
            client.username_pw_set(user_name)
        connected = threading.Event()
        client.on_connect = lambda c, userdata, flags, reason, properties: connected.set()
        if on_message is not None:
            client.on_message = lambda c, userdata, message: on_message(message)
        client.connect(HOST, self.port)
        client.loop_start()
        if not connected.wait(5):
            raise RuntimeError(f"{client_id} could not connect")
        return client


# --- the WebSocket stand-in ---------------------------------------------------------------------------------------


class WebSocketStandIn:
    """API Gateway's WebSocket API in front of the real connection handler, in a thread with its own event loop."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sockets: dict[str, Any] = {}  # connection id -> (connection, authorizer)
        self._opening: dict[Any, str] = {}
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="websocket-stand-in", daemon=True)

    def __enter__(self) -> WebSocketStandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket stand-in did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._serve, HOST, 0, process_request=self._handshake, ping_interval=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _event(self, route: str, connection_id: str, authorizer: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        context = {"routeKey": route, "connectionId": connection_id, "stage": "v1", "apiId": "wsapi12345", "requestId": uuid.uuid4().hex[:16]}
        if authorizer is not None:
            context["authorizer"] = authorizer
        return {"requestContext": context, **extra}

    async def _call(self, event: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self.world.handlers["case_uber_connections"].lambda_handler, event, CONTEXT)

    async def _handshake(self, connection: Any, request: Any) -> Any:
        from urllib.parse import parse_qs, urlsplit

        query = {name: values[-1] for name, values in parse_qs(urlsplit(request.path).query).items()}
        connection_id = base64.b64encode(uuid.uuid4().bytes[:11]).decode()
        allowed = await self._call(
            {"type": "REQUEST", "methodArn": METHOD_ARN, "queryStringParameters": query or None, **self._event("$connect", connection_id, None)}
        )
        if allowed["policyDocument"]["Statement"][0]["Effect"] != "Allow":
            return connection.respond(403, "Forbidden\n")
        authorizer = {"principalId": allowed["principalId"], **allowed.get("context", {})}
        answer = await self._call(self._event("$connect", connection_id, authorizer))
        if answer.get("statusCode") != 200:
            return connection.respond(answer.get("statusCode", 500), "refused\n")
        self.sockets[connection_id] = (connection, authorizer)
        self._opening[connection] = connection_id
        return None

    async def _serve(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        connection_id = self._opening.pop(connection)
        authorizer = self.sockets[connection_id][1]
        try:
            async for message in connection:  # $default, whose answer goes back to the client (return_response)
                answer = await self._call(self._event("$default", connection_id, authorizer, body=message))
                if answer.get("body"):
                    await connection.send(answer["body"])
        except ConnectionClosed:
            pass
        finally:
            self.sockets.pop(connection_id, None)
            await self._call(self._event("$disconnect", connection_id, authorizer))

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:  # noqa: N803 - boto3's names
        """The management API's PostToConnection, as the offer handler calls it."""
        if not asyncio.run_coroutine_threadsafe(self._post(ConnectionId, Data), self.loop).result(10):
            management = self.world.handlers["case_uber_offers"].pusher.management
            raise management.exceptions.GoneException({"Error": {"Code": "GoneException", "Message": ""}}, "PostToConnection")
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    async def _post(self, connection_id: str, data: bytes) -> bool:
        entry = self.sockets.get(connection_id)
        if entry is None:
            return False
        await entry[0].send(data.decode())
        return True

    def url(self, channel: str) -> str:
        token = self.world.handlers["case_uber_rides"].tokens.issue(channel)
        return f"ws://{HOST}:{self.port}/v1?channel={channel}&token={token}"


# --- the experiment -----------------------------------------------------------------------------------------------


@dataclass
class PositionRun:
    """What the drivers' apps produced and what the index took."""

    ticks: int  # positions each driver's phone had (one every ``every_s``)
    sent: dict[str, int]  # driver id -> messages its app published
    received: int  # messages the stand-in rules engine got on the rule's filter
    records: int  # stream records the rule's SQL made
    outcomes: dict[str, int]  # what DriverIndex.record did with each record: updated, moved, stale, unavailable
    handler_seconds: float  # wall time inside the positions handler
    last_sent: dict[str, DriverPosition]  # driver id -> the last position its app published
    cell_changes_unfiltered: int  # cell changes had every tick been sent
    cell_changes_filtered: int  # cell changes among the positions sent


def publish_positions(
    world: World, broker: Broker, rule: Any, drivers: list[SimulatedDriver], *, minutes: float, every_s: float, start_ms: int, seed: int, batch: int = 500
) -> PositionRun:
    """Drive the fleet; each app publishes what its filter lets through (QoS 1) as its own MQTT client; the stand-in rules
    engine applies the rule's SQL (``rule``, read from the template) and the positions handler takes the records in
    batches of ``batch``, in the order received (one shard's order)."""
    from messaging_runtime.driver_index import cell_of
    from tests.handlers.iot_rule import to_json

    received: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def on_message(message: Any) -> None:
        with lock:
            received.append((message.topic, bytes(message.payload)))

    engine = broker.client(Broker.RULES_ENGINE, user_name=Broker.RULES_ENGINE, on_message=on_message)
    engine.subscribe(rule.topic_filter, qos=1)
    time.sleep(0.2)
    clients = {d.driver_id: broker.client(d.driver_id) for d in drivers}
    sent = dict.fromkeys(clients, 0)
    last_sent: dict[str, DriverPosition] = {}
    all_cells: dict[str, list[str]] = {d.driver_id: [] for d in drivers}
    ticks = 0
    infos = []
    for driver, position, send in drive(drivers, minutes=minutes, every_s=every_s, start_ms=start_ms, seed=seed):
        ticks += driver is drivers[0]
        all_cells[driver.driver_id].append(cell_of(position.lat, position.lng))
        if send:
            infos.append(clients[driver.driver_id].publish(f"rides/drivers/{driver.driver_id}/events", position.model_dump_json(), qos=1))
            sent[driver.driver_id] += 1
            last_sent[driver.driver_id] = position
    for info in infos:
        info.wait_for_publish(10)
    deadline = time.monotonic() + 20
    while len(received) < sum(sent.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    for client in [*clients.values(), engine]:
        client.loop_stop()
        client.disconnect()

    records = []
    for topic, payload in received:
        document = rule.apply(topic, payload)
        if document is not None:
            records.append((rule.partition_key(payload), to_json(document)))
    handler = world.handlers["case_uber_positions"]
    outcomes: dict[str, int] = {}
    record = handler.index.record

    def counted(position: DriverPosition) -> str:
        outcome = record(position)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcome

    started = time.perf_counter()
    with patch.object(handler.index, "record", counted):
        for i in range(0, len(records), batch):
            answer = handler.lambda_handler(kinesis_event(records[i : i + batch], first_sequence=i), CONTEXT)
            if answer["batchItemFailures"]:
                raise AssertionError(f"records failed: {answer}")
    handler_seconds = time.perf_counter() - started

    def changes(cells: list[str]) -> int:
        return sum(1 for a, b in zip(cells, cells[1:], strict=False) if a != b)

    sent_cells: dict[str, list[str]] = {d: [] for d in all_cells}
    for topic, payload in received:
        position = json.loads(payload)
        sent_cells[topic.split("/")[2]].append(cell_of(position["lat"], position["lng"]))
    return PositionRun(
        ticks=ticks,
        sent=sent,
        received=len(received),
        records=len(records),
        outcomes=outcomes,
        handler_seconds=handler_seconds,
        last_sent=last_sent,
        cell_changes_unfiltered=sum(changes(c) for c in all_cells.values()),
        cell_changes_filtered=sum(changes(c) for c in sent_cells.values()),
    )


class Phone:
    """A rider's or driver's app on the WebSocket stand-in: every message received, with the time it arrived."""

    def __init__(self, url: str, *, driver_policy: Callable[[dict[str, Any]], str] | None = None) -> None:
        from websockets.sync.client import connect

        self.connection = connect(url, open_timeout=10)
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.answers: list[tuple[float, str]] = []  # (time sent, action)
        self.policy = driver_policy
        self._replies: list[dict[str, Any]] = []
        self._reply = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for text in self.connection:
                message = json.loads(text)
                if message.get("type") == "answer":
                    with self._reply:
                        self._replies.append(message)
                        self._reply.notify_all()
                    continue
                self.received.append((time.perf_counter(), message))
                if message.get("type") == "offer" and self.policy is not None:
                    threading.Thread(target=self._answer, args=(message,), daemon=True).start()
        except ConnectionClosed:
            pass

    def _ask(self, action: str, ride_id: str) -> str:
        with self._reply:
            before = len(self._replies)
            self.answers.append((time.perf_counter(), action))
            self.connection.send(json.dumps({"action": action, "ride_id": ride_id}))
            self._reply.wait_for(lambda: len(self._replies) > before, timeout=10)
            return self._replies[before]["result"] if len(self._replies) > before else "no reply"

    def _answer(self, offer: dict[str, Any]) -> None:
        # The app shows the offer and says so; moto arms the heartbeat only once the offer's invocation has returned.
        deadline = time.monotonic() + 3
        while self._ask("seen", offer["ride_id"]) != "alive" and time.monotonic() < deadline:
            time.sleep(0.02)
        self._ask(self.policy(offer), offer["ride_id"])

    def close(self) -> None:
        self.connection.close()


def position_cost_lines(template: dict[str, Any], *, cell_change_share: float, message_bytes: int, rate: float, records_per_batch: int = 100) -> list[Any]:
    """The cost lines of one million position messages through the stack: IoT message, rule and action, the stream,
    the positions handler (CPU per record unmeasured: the library's bound), the index writes (an update and a put per
    position, a delete per cell change)."""
    from messaging_constructs.costs import DeviceMessages, Function, Path, PriceTable, StreamRecords, TableWrites, Traffic
    from stacks.cost_paths import DYNAMODB_MS, UNMEASURED_US

    writes = 2 + cell_change_share
    path = Path(
        "a position update",
        [
            DeviceMessages("Drivers"),
            StreamRecords("Positions"),
            Function("PositionsHandler", cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=writes * DYNAMODB_MS, records=records_per_batch),
            TableWrites("DriverIndex", write_units=writes),
        ],
    )
    return path.cost(template, PriceTable.load(), Traffic(rate=rate, message_bytes=message_bytes))
