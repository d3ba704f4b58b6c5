"""The customer's order status page (web/orders/) in a real headless Chromium, against local stand-ins of its two APIs.

Both stand-ins listen on 127.0.0.1 and run the real handlers under moto (DynamoDB, and a KMS HMAC key for the
status tokens):

- an HTTP server serves the page (``/status/``) and turns ``/v1/orders...`` into the REST proxy events of the order
  API function, the Authorization value standing for the caller's Cognito ``sub`` (as ``tests/handlers/test_load_orders.py``
  does); it can drop the connection after the function answered, as a network failure loses an answer;
- a WebSocket server (the ``websockets`` package, in a thread) plays API Gateway for the status_connections
  function: its REQUEST authorizer on each handshake (a Deny is 403), then ``$connect``, and ``$disconnect`` when the
  socket closes; what the real status_pusher function posts (``PostToConnection``) goes to the browser socket of that
  connection id.

Each test moves its order the way the saga does: the real order_status function makes the change, and the
``OrderStatusChanged`` event it wrote to the outbox slot becomes, through ``bus_entry``, the SQS record the rule's
queue hands the pusher. The page must show what a customer needs to see.

Without Chromium, chromedriver, selenium or websockets the tests are skipped, with the reason, and fail when CI
is set (``scripts/install_chromium.sh`` installs the browser and its driver). CHROMIUM_BINARY and CHROMEDRIVER_BINARY
name others than Debian's /usr/bin/chromium and /usr/bin/chromedriver.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib import request as urlrequest
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from messaging_runtime.outbox import bus_entry
from tests.handlers.conftest import FakeLambdaContext, SqsEvents, _eventbridge_event, handler_environment
from tests.handlers.test_order_api_handler import api_event

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request as WebSocketRequest

    MISSING_PACKAGE = None
except ImportError as missing:  # the dev extra installs both
    MISSING_PACKAGE = f"the Python package {missing.name} is not installed (pip install -e '.[dev]')"

# A read or a refused request publishes no metric: Powertools warns, as it does in Lambda.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "web" / "orders"
LAMBDAS_DIR = ROOT / "lambdas"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
HOST = "127.0.0.1"
STAGE = "v1"
ORDERS_TABLE, OUTBOX_TABLE, CONNECTIONS_TABLE = "orders", "orders-outbox", "status-connections"
WEBSOCKET_ENDPOINT = f"https://wsapi12345.execute-api.us-east-1.amazonaws.com/{STAGE}"
METHOD_ARN = f"arn:aws:execute-api:us-east-1:123456789012:wsapi12345/{STAGE}/$connect"
STATUS_QUEUE = "capstone-orders-status-updates"
ORDER_BODY = {"items": [{"sku": "SKU-1", "quantity": 1}], "total": 12.5, "currency": "EUR"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
WAIT = 6.0  # seconds for anything the page does


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(problem: str) -> None:
    """No usable browser: fail when CI is set, skip otherwise (as the RabbitMQ and ActiveMQ tests do)."""
    if _ci():
        pytest.fail(f"Chromium is required when CI is set: {problem}; run scripts/install_chromium.sh first", pytrace=False)
    pytest.skip(f"no usable headless Chromium: {problem} (scripts/install_chromium.sh installs it)")


def _browser_problem() -> str | None:
    if MISSING_PACKAGE:
        return MISSING_PACKAGE
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            return f"{binary} is missing (Debian package {package})"
    return None


def eventually(condition: Callable[[], Any], what: str | Callable[[], str], timeout: float = WAIT) -> Any:
    """Poll ``condition`` until it is truthy; its value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(0.03)


# --- the world: moto, the real handlers, the two stand-ins ---------------------------------------------------


def _load(function: str) -> ModuleType:
    """``lambdas/<function>/handler.py`` under a fresh module name (handlers make their clients when imported)."""
    path = LAMBDAS_DIR / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"status_page_{function}_{uuid.uuid4().hex[:8]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


class World:
    """The handlers, one invocation at a time (as one Lambda instance takes them), and what the stand-ins saw."""

    def __init__(self, handlers: dict[str, ModuleType]) -> None:
        self.handlers = handlers
        self.context = FakeLambdaContext()
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # what the HTTP stand-in answered: method, path, key, status, body
        self.drop_answers = 0  # POST /orders answers to lose (the order is placed, the answer never arrives)
        self.sqs = SqsEvents()
        self.http_port = 0
        self.websocket: WebSocketStandIn | None = None

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        with self.lock:
            return self.handlers[function].lambda_handler(event, self.context)

    @property
    def page_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/status/index.html"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/{STAGE}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.websocket.port}/{STAGE}"

    def answered(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in list(self.requests) if r["method"] == method and r["path"] == path]

    # -- the saga's side ------------------------------------------------------------------------------

    def move(self, order_id: str, to: str, error: str | None = None) -> dict[str, Any]:
        """The saga's status step (the real order_status function); the SQS record of the event it published."""
        event: dict[str, Any] = {"order_id": order_id, "to": to}
        if error is not None:
            event["error"] = {"Error": error, "Cause": json.dumps({"errorMessage": error})}
        self.invoke("order_status", event)
        return self.published(order_id)

    def published(self, order_id: str) -> dict[str, Any]:
        """The order's last event, from its outbox slot as the pipe reads it, in the SQS record the rule's queue delivers."""
        image = boto3.client("dynamodb").get_item(TableName=OUTBOX_TABLE, Key={"aggregate_id": {"S": order_id}}, ConsistentRead=True)["Item"]
        entry = bus_entry({"eventID": uuid.uuid4().hex, "eventName": "MODIFY", "dynamodb": {"NewImage": image}})
        event = _eventbridge_event(entry["source"], entry["detail_type"], entry["detail"])
        return self.sqs.record(json.dumps(event), queue=STATUS_QUEUE)

    def deliver(self, *records: dict[str, Any]) -> None:
        """The queue hands the records to the real status pusher, which posts to every connection of the order."""
        assert self.invoke("status_pusher", {"Records": list(records)}) == {"batchItemFailures": []}


def connected(order_id: str) -> list[str]:
    """The connection ids the connections table holds for the order."""
    found = boto3.client("dynamodb").query(
        TableName=CONNECTIONS_TABLE,
        KeyConditionExpression="order_id = :o",
        ExpressionAttributeValues={":o": {"S": order_id}},
        ConsistentRead=True,
    )
    return [item["connection_id"]["S"] for item in found["Items"]]


def gateway(world: World) -> type[BaseHTTPRequestHandler]:
    """The HTTP stand-in: the page's files, and the order API as API Gateway's Lambda proxy integration calls it."""
    files = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # a connection per request: a dropped answer is never silently re-sent by the browser

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/status/"):
                name = path.removeprefix("/status/") or "index.html"
                if name in files:
                    return self._send(200, (PAGE_DIR / name).read_bytes(), files[name])
                return self._send(404, b"not found\n", "text/plain")
            self._api()

        def do_POST(self) -> None:
            self._api()

        def _api(self) -> None:
            path = urlsplit(self.path).path
            if not path.startswith(f"/{STAGE}/orders"):
                return self._send(404, b'{"message":"Missing Authentication Token"}', "application/json")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            path = path.removeprefix(f"/{STAGE}")
            key = self.headers.get("Idempotency-Key")
            authorization = self.headers.get("Authorization")
            if not authorization:  # the Cognito authorizer refuses before the function runs
                status, payload, headers = 401, b'{"message":"Unauthorized"}', {}
            else:
                headers_in = {"Idempotency-Key": key} if key is not None else {}
                event = api_event(self.command, path, caller={"cognito": authorization}, body=body, headers=headers_in)
                response = world.invoke("order_api", event)
                status, payload = response["statusCode"], response["body"].encode()
                headers = {
                    k: v[-1] if isinstance(v, list) else v for k, v in {**response.get("multiValueHeaders", {}), **(response.get("headers") or {})}.items()
                }
            if self.command == "POST" and path == "/orders" and world.drop_answers > 0:
                world.drop_answers -= 1
                world.requests.append({"method": self.command, "path": path, "key": key, "status": None, "body": body})
                self.close_connection = True  # the order is written; its answer is lost on the way
                return
            location = {"Location": headers["Location"]} if "Location" in headers else {}
            self._send(status, payload, "application/json", **location)
            world.requests.append({"method": self.command, "path": path, "key": key, "status": status, "body": body})

        def _send(self, status: int, payload: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Gateway


class Socket:
    """One browser connection the WebSocket stand-in holds."""

    def __init__(self, connection: ServerConnection, connection_id: str, order_id: str, authorizer: dict[str, Any]) -> None:
        self.connection, self.connection_id, self.order_id, self.authorizer = connection, connection_id, order_id, authorizer
        self.open = asyncio.Event()


class WebSocketStandIn:
    """API Gateway's WebSocket API in front of the real status_connections function, in a thread with its own event loop.

    Handler invocations run in worker threads (``asyncio.to_thread``), so the loop keeps sending while the pusher,
    in the test's thread, waits for its posts to go out.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.sockets: dict[str, Socket] = {}
        self._opening: dict[ServerConnection, str] = {}  # handshakes accepted, their handler not started yet
        self.posted: list[tuple[str, dict[str, Any]]] = []  # (order id, message) as sent to a browser
        self.connects: Counter[str] = Counter()  # connections opened, by order
        self.refused: list[tuple[str | None, int]] = []  # (order id asked for, HTTP status) of refused handshakes
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="websocket-stand-in", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket stand-in did not start")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._serve, HOST, 0, process_request=self._handshake, ping_interval=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _context(self, route: str, event_type: str, connection_id: str, authorizer: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        context = {
            "routeKey": route,
            "eventType": event_type,
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": now_ms,
            "requestTimeEpoch": now_ms,
            "identity": {"userAgent": "Chromium (headless)", "sourceIp": HOST},
            "requestId": uuid.uuid4().hex[:16],
            "domainName": urlsplit(WEBSOCKET_ENDPOINT).netloc,
            "connectionId": connection_id,
            "apiId": "wsapi12345",
            **extra,
        }
        if authorizer is not None:
            context["authorizer"] = authorizer
        return context

    async def _call(self, event: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self.world.invoke, "status_connections", event)

    async def _handshake(self, connection: ServerConnection, request: WebSocketRequest) -> Any:
        query = {name: values[-1] for name, values in parse_qs(urlsplit(request.path).query).items()}
        connection_id = base64.b64encode(uuid.uuid4().bytes[:11]).decode()  # API Gateway's are 16 base64 characters
        headers = {name: value for name, value in request.headers.raw_items()}
        allowed = await self._call(
            {
                "type": "REQUEST",
                "methodArn": METHOD_ARN,
                "headers": headers,
                "multiValueHeaders": {name: [value] for name, value in headers.items()},
                "queryStringParameters": query or None,
                "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} or None,
                "stageVariables": {},
                "requestContext": self._context("$connect", "CONNECT", connection_id, None),
            }
        )
        if allowed["policyDocument"]["Statement"][0]["Effect"] != "Allow":
            self.refused.append((query.get("order_id"), 403))
            return connection.respond(403, '{"message": "Forbidden"}\n')
        authorizer = {"principalId": allowed["principalId"], **allowed.get("context", {}), "integrationLatency": 12}
        answer = await self._call(
            {"headers": headers, "requestContext": self._context("$connect", "CONNECT", connection_id, authorizer), "isBase64Encoded": False}
        )
        if answer.get("statusCode") != 200:
            self.refused.append((query.get("order_id"), answer.get("statusCode", 500)))
            return connection.respond(answer.get("statusCode", 500), "refused by $connect\n")
        order_id = authorizer["order_id"]
        self.sockets[connection_id] = Socket(connection, connection_id, order_id, authorizer)
        self.connects[order_id] += 1
        self._opening[connection] = connection_id
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        socket = self.sockets[self._opening.pop(connection)]
        socket.open.set()
        try:
            async for message in connection:  # the page sends nothing; $default answers anything with push_only
                text = message if isinstance(message, str) else base64.b64encode(message).decode()
                extra = {"messageId": uuid.uuid4().hex[:16]}
                await self._call({"requestContext": self._context("$default", "MESSAGE", socket.connection_id, socket.authorizer, **extra), "body": text})
        except ConnectionClosed:
            pass
        finally:
            self.sockets.pop(socket.connection_id, None)
            extra = {"disconnectStatusCode": connection.close_code or 1006, "disconnectReason": connection.close_reason or ""}
            await self._call({"requestContext": self._context("$disconnect", "DISCONNECT", socket.connection_id, socket.authorizer, **extra)})

    # -- the management API (PostToConnection), as the pusher calls it ---------------------------------------

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if not asyncio.run_coroutine_threadsafe(self._post(ConnectionId, Data), self.loop).result(10):
            management = self.world.handlers["status_pusher"].management
            raise management.exceptions.GoneException({"Error": {"Code": "GoneException", "Message": ""}}, "PostToConnection")
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    async def _post(self, connection_id: str, data: bytes) -> bool:
        socket = self.sockets.get(connection_id)
        if socket is None:
            return False
        await asyncio.wait_for(socket.open.wait(), 5)
        try:
            await socket.connection.send(data.decode())  # API Gateway sends the data as a text frame
        except ConnectionClosed:
            return False
        self.posted.append((socket.order_id, json.loads(data)))
        return True

    def close(self, order_id: str) -> int:
        """Close every connection of the order from the server's side (1001 going away), as API Gateway may."""

        async def close_all() -> int:
            sockets = [s for s in list(self.sockets.values()) if s.order_id == order_id]
            await asyncio.gather(*(s.connection.close(1001, "going away") for s in sockets))
            return len(sockets)

        return asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(10)

    def posted_to(self, order_id: str) -> list[int]:
        return [message["seq"] for order, message in list(self.posted) if order == order_id]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Debian Chromium driven through chromedriver; skipped without one (failed when CI is set)."""
    problem = _browser_problem()
    if problem:
        _unavailable(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-proxy-server",
        "--no-first-run",
        "--disable-extensions",
        "--window-size=1000,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL))
    except WebDriverException as error:
        _unavailable(f"chromedriver could not start Chromium: {(error.msg or str(error)).splitlines()[0]}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def world(browser):
    """moto with the blueprint's tables and HMAC key, the four real handlers, and the two stand-ins on 127.0.0.1."""
    with handler_environment() as patch:
        patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CapstoneOrders")
        with mock_aws():
            dynamodb = boto3.client("dynamodb")
            for table, keys in ((ORDERS_TABLE, ["order_id"]), (OUTBOX_TABLE, ["aggregate_id"]), (CONNECTIONS_TABLE, ["order_id", "connection_id"])):
                dynamodb.create_table(
                    TableName=table,
                    AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
                    KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in zip(keys, ("HASH", "RANGE"), strict=False)],
                    BillingMode="PAY_PER_REQUEST",
                )
            key_id = boto3.client("kms").create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
            patch.setenv("ORDERS_TABLE_NAME", ORDERS_TABLE)
            patch.setenv("OUTBOX_TABLE_NAME", OUTBOX_TABLE)
            patch.setenv("CONNECTIONS_TABLE_NAME", CONNECTIONS_TABLE)
            patch.setenv("STATUS_TOKEN_KEY_ID", key_id)
            patch.setenv("WEBSOCKET_ENDPOINT", WEBSOCKET_ENDPOINT)
            handlers = {}
            for name in ("order_api", "order_status", "status_connections", "status_pusher"):
                patch.setenv("POWERTOOLS_SERVICE_NAME", name)  # a logger of its own each, as separate functions have
                handlers[name] = _load(name)
            world = World(handlers)
            world.websocket = WebSocketStandIn(world)
            world.websocket.start()
            patch.setattr(handlers["status_pusher"].management, "post_to_connection", world.websocket.post_to_connection)
            httpd = ThreadingHTTPServer((HOST, 0), gateway(world))
            httpd.daemon_threads = True
            world.http_port = httpd.server_address[1]
            threading.Thread(target=httpd.serve_forever, name="http-stand-in", daemon=True).start()
            try:
                yield world
            finally:
                browser.get("about:blank")
                httpd.shutdown()
                httpd.server_close()
                world.websocket.stop()
                for module in handlers.values():
                    sys.modules.pop(module.__name__, None)


# --- the page, as a customer uses it -----------------------------------------------------------------------

_customers = itertools.count(1)


class Page:
    def __init__(self, driver, world: World) -> None:
        self.driver, self.world = driver, world
        self.customer = f"customer-{next(_customers)}-{uuid.uuid4().hex[:8]}"  # the Cognito sub the stand-in sees

    def open(self) -> Page:
        self.driver.get(self.world.page_url)
        eventually(lambda: self.driver.execute_script("return document.body.dataset.ready === 'true'"), "the page to load")
        self.driver.get_log("browser")  # start the test's console with this page
        self.type("api-url", self.world.api_url)
        self.type("ws-url", self.world.ws_url)
        self.type("authorization", self.customer)
        return self

    def type(self, element_id: str, text: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(text)

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def text(self, element_id: str) -> str:
        return self.driver.execute_script("return document.getElementById(arguments[0]).textContent.replace(/\\s+/g, ' ').trim()", element_id)

    def hidden(self, element_id: str) -> bool:
        return self.driver.execute_script("return document.getElementById(arguments[0]).hidden", element_id)

    def timeline(self) -> list[str]:
        return self.driver.execute_script("return Array.from(document.querySelectorAll('#timeline li'), li => li.dataset.status)")

    def rows(self) -> list[dict[str, str]]:
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline li'), li => ({status: li.dataset.status, seq: li.dataset.seq,"
            " time: li.querySelector('time').getAttribute('datetime'), text: li.textContent}))"
        )

    def state(self) -> str:
        return f"timeline {self.timeline()}; live: {self.text('live')!r}; outcome: {self.text('outcome')!r}; place: {self.text('place-result')!r}"

    def wait_timeline(self, *statuses: str) -> None:
        eventually(lambda: self.timeline() == list(statuses), lambda: f"the timeline {list(statuses)}; {self.state()}")

    def wait_text(self, element_id: str, fragment: str) -> str:
        return eventually(
            lambda: fragment.lower() in self.text(element_id).lower() and self.text(element_id), lambda: f"{fragment!r} in #{element_id}; {self.state()}"
        )

    def place_order(self) -> str:
        """Place the form's order; the order id, once the page follows it live (connected and caught up)."""
        before = len(self.world.answered("POST", "/orders"))
        self.click("place")
        eventually(lambda: any(r["status"] == 202 for r in self.world.answered("POST", "/orders")[before:]), lambda: f"a 202; {self.state()}")
        order_id = eventually(lambda: self.text("order-id"), "the order id on the page")
        self.wait_live(order_id, gets=1)
        return order_id

    def wait_live(self, order_id: str, *, gets: int) -> None:
        """Connected (the page says so, the table has the connection) and caught up (its ``gets``-th GET answered)."""
        self.wait_text("live", "Live:")
        eventually(lambda: connected(order_id), "the connection in the connections table")
        eventually(lambda: len(self.world.answered("GET", f"/orders/{order_id}")) >= gets, f"GET number {gets} of {order_id}")
        time.sleep(0.05)  # the browser reads that answer

    def script_errors(self) -> list[str]:
        """Console errors that are the page's own fault (a refused socket or an HTTP error status is not)."""
        return [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and ("Uncaught" in e["message"] or "Content Security Policy" in e["message"])
        ]


@pytest.fixture
def page(browser, world):
    page = Page(browser, world).open()
    yield page
    errors = page.script_errors()
    browser.get("about:blank")  # closes the page's socket: the stand-in runs $disconnect
    assert errors == []


def place_directly(world: World, customer: str) -> dict[str, Any]:
    """An order placed through the HTTP stand-in without the page: its 202 body."""
    sent = urlrequest.Request(
        f"{world.api_url}/orders",
        data=json.dumps(ORDER_BODY).encode(),
        method="POST",
        headers={"Authorization": customer, "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"},
    )
    with urlrequest.build_opener(urlrequest.ProxyHandler({})).open(sent, timeout=10) as answer:
        assert answer.status == 202
        return json.loads(answer.read())


# --- the scenarios ---------------------------------------------------------------------------------------------


def test_an_order_whose_answer_was_lost_is_retried_with_its_key_and_followed_live_to_confirmed(page, world):
    world.drop_answers = 1
    order_id = page.place_order()

    posts = world.answered("POST", "/orders")[-2:]
    assert [p["status"] for p in posts] == [None, 202]  # the first answer lost, the retry answered
    assert posts[0]["key"] == posts[1]["key"] and UUID.fullmatch(posts[0]["key"])
    assert json.loads(posts[1]["body"]) == ORDER_BODY
    assert "retried 1 time with the same Idempotency-Key" in page.text("place-result")
    assert order_id.startswith("o-") and page.timeline() == ["ACCEPTED"]
    assert not page.hidden("cancel")

    for shown in (["STOCK_RESERVED"], ["STOCK_RESERVED", "AWAITING_MERCHANT"], ["STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED"]):
        world.deliver(world.move(order_id, shown[-1]))
        page.wait_timeline("ACCEPTED", *shown)

    assert world.websocket.posted_to(order_id) == [2, 3, 4]  # each change came over the socket
    rows = page.rows()
    assert [row["seq"] for row in rows] == ["1", "2", "3", "4"] and all(row["time"] for row in rows)
    assert "Your order is confirmed." in page.text("outcome")
    assert page.hidden("cancel")
    eventually(lambda: connected(order_id) == [], "the page to close its socket once the order is finished")
    assert "finished" in page.text("live")


def test_a_repeated_and_an_older_update_do_not_change_the_timeline(page, world):
    order_id = page.place_order()
    reserved = world.move(order_id, "STOCK_RESERVED")
    awaiting = world.move(order_id, "AWAITING_MERCHANT")
    world.deliver(reserved)
    world.deliver(awaiting)
    page.wait_timeline("ACCEPTED", "STOCK_RESERVED", "AWAITING_MERCHANT")

    world.deliver(awaiting, reserved)  # a redelivery, then the older change arriving late
    world.deliver(world.move(order_id, "CONFIRMED"))

    page.wait_timeline("ACCEPTED", "STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED")
    assert world.websocket.posted_to(order_id) == [2, 3, 3, 2, 4]  # the browser was sent both, and showed neither
    assert page.text("current-status") == "Confirmed (CONFIRMED)"


@pytest.mark.parametrize(
    ("steps", "end", "error", "shown"),
    [
        (["STOCK_RESERVED"], "COMPENSATED", "PaymentDeclined", "Payment declined: the payment was declined"),
        (["STOCK_RESERVED", "AWAITING_MERCHANT"], "COMPENSATED", "States.Timeout", "Timed out: the merchant did not answer in time"),
        ([], "COMPENSATED", "StockShortage", "Out of stock: some items are out of stock"),
        (["STOCK_RESERVED", "AWAITING_MERCHANT"], "FAILED", "States.TaskFailed", "we are looking into it"),
    ],
    ids=["payment-declined", "merchant-timed-out", "out-of-stock", "failed"],
)
def test_an_order_that_fails_tells_the_customer_why(page, world, steps, end, error, shown):
    order_id = page.place_order()
    for step in steps:
        world.deliver(world.move(order_id, step))
    if end == "FAILED":  # the saga could not finish, after its retries: it alarms, and a person looks
        world.deliver(world.move(order_id, "FAILED", error))
        page.wait_timeline("ACCEPTED", *steps, "FAILED")
    else:
        world.deliver(world.move(order_id, "COMPENSATING", error))
        page.wait_timeline("ACCEPTED", *steps, "COMPENSATING")
        assert shown in page.text("outcome") and not page.hidden("cancel")
        world.deliver(world.move(order_id, "FINISHED"))  # the compensations ran: COMPENSATED, its event without a reason
        page.wait_timeline("ACCEPTED", *steps, "COMPENSATING", "COMPENSATED")

    outcome = page.text("outcome")
    assert shown in outcome, outcome
    if end == "COMPENSATED":
        assert outcome.startswith("Your order could not be completed") and "you are not charged" in outcome
        assert shown in page.rows()[-2]["text"]  # the COMPENSATING row carries the reason
    assert page.hidden("cancel")


def test_a_connection_closed_by_the_server_reconnects_and_catches_up_with_a_read(page, world):
    order_id = page.place_order()
    world.deliver(world.move(order_id, "STOCK_RESERVED"))
    page.wait_timeline("ACCEPTED", "STOCK_RESERVED")
    late = world.move(order_id, "AWAITING_MERCHANT")  # written, its event still on its way

    assert world.websocket.close(order_id) == 1
    page.wait_text("live", "reconnecting")
    page.wait_live(order_id, gets=2)  # connected again, then read the order

    page.wait_timeline("ACCEPTED", "STOCK_RESERVED", "AWAITING_MERCHANT")
    assert world.websocket.connects[order_id] == 2
    assert world.websocket.posted_to(order_id) == [2]  # the catch-up came from the read, not from the socket
    world.deliver(late)  # arrives now: a repeat of what the read showed
    world.deliver(world.move(order_id, "CONFIRMED"))
    page.wait_timeline("ACCEPTED", "STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED")
    assert world.websocket.posted_to(order_id) == [2, 3, 4]


def test_a_wrong_status_token_is_refused_and_the_page_says_it_could_not_subscribe(page, world):
    mine = place_directly(world, page.customer)
    other = place_directly(world, page.customer)
    page.type("follow-order-id", mine["order_id"])
    page.type("follow-token", other["status_token"])  # a real token, of another order
    page.click("follow")

    page.wait_text("live", "Could not subscribe to live updates for this order")
    assert [refused for refused in world.websocket.refused if refused[0] == mine["order_id"]] == [(mine["order_id"], 403)] * 3
    assert world.websocket.connects[mine["order_id"]] == 0 and connected(mine["order_id"]) == []
    page.wait_timeline("ACCEPTED")  # read with the customer's own sign-in all the same
    assert not page.hidden("reconnect")


def test_cancel_is_accepted_then_the_order_ends_cancelled(page, world):
    order_id = page.place_order()
    page.click("cancel")
    page.wait_text("cancel-result", "Cancellation requested (202)")
    assert [r["status"] for r in world.answered("POST", f"/orders/{order_id}/cancel")] == [202]

    with pytest.raises(Exception) as refused:  # the saga's next step forward honours the cancel
        world.move(order_id, "STOCK_RESERVED")
    assert type(refused.value).__name__ == "OrderCancelled"
    world.deliver(world.move(order_id, "COMPENSATING", "OrderCancelled"))
    page.wait_timeline("ACCEPTED", "COMPENSATING")
    world.deliver(world.move(order_id, "FINISHED"))

    page.wait_timeline("ACCEPTED", "COMPENSATING", "CANCELLED")
    assert "Your order is cancelled" in page.text("outcome")
    assert "Cancelled at your request" in page.rows()[1]["text"]
    assert page.hidden("cancel")


def test_cancel_too_late_shows_the_409_and_how_the_order_ended(page, world):
    order_id = page.place_order()
    world.deliver(world.move(order_id, "STOCK_RESERVED"))
    page.wait_timeline("ACCEPTED", "STOCK_RESERVED")
    world.move(order_id, "AWAITING_MERCHANT")
    confirmed = world.move(order_id, "CONFIRMED")  # the merchant answered at once; neither event has reached the page yet
    assert json.loads(confirmed["body"])["detail"]["seq"] == 4

    page.click("cancel")
    page.wait_text("cancel-result", "Too late to cancel (409): the order can no longer be cancelled: it is CONFIRMED")
    page.wait_timeline("ACCEPTED", "STOCK_RESERVED", "CONFIRMED")  # read after the 409
    assert [r["status"] for r in world.answered("POST", f"/orders/{order_id}/cancel")] == [409]
    assert "Your order is confirmed." in page.text("outcome") and page.hidden("cancel")
