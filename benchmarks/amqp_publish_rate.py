"""Persistent messages per second a producer gets from the local RabbitMQ, with and without publisher confirms.

Each round publishes the same number of persistent messages (~300-byte JSON
bodies, ``delivery_mode`` 2) to one durable queue through the default
exchange, timed from the first publish to the moment the broker has them:

- ``no confirms``: BlockingConnection, no confirm mode; the clock stops when
  the queue's message count (a passive ``queue.declare``, asked again until
  it is complete) shows every message enqueued. The baseline: the producer
  itself learns nothing, and enqueued is not necessarily written to disk.
- ``confirm each``: BlockingConnection in confirm mode, one publish waiting
  for its confirm before the next. This is what the shipment publisher does:
  pika's BlockingChannel waits for the confirm inside every ``basic_publish``.
- ``confirm batch N``: SelectConnection (pika's asynchronous adapter) in
  confirm mode; N messages are published, then all their confirms awaited
  (the broker acknowledges several at once with ``multiple``), then the next N.
- ``shipment_publisher``: the function itself (``lambdas/shipment_publisher``),
  invoked with requests of 100 updates (its maximum) on the connection it keeps
  across invocations (``messaging_runtime.amqp``): a topic exchange bound to the
  queue, ``mandatory``, a confirm per message, and the check of the kept
  connection before each publish. Its bodies are the updates' JSON (about 150
  bytes), not padded to 300. Its broker secret is in moto's Secrets Manager.

Every mode runs against a classic durable queue and a quorum queue (the type
the blueprint declares), in rounds that alternate the modes; the figures are
the median of the rounds, with the ratio to the baseline on the same queue
type. Connection set-up is outside the clock. Printed only; tests assert none
of it.

Needs the local broker (``scripts/start_rabbitmq.sh``); connects as guest to
``/`` on 127.0.0.1:5672 and deletes the queues and exchanges it declares.

Run from the repository root: ``python benchmarks/amqp_publish_rate.py [--messages 5000] [--rounds 3]``.
"""

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
from pika.spec import Basic

BODY_BYTES = 300
BATCH_SIZES = (100, 1_000)
UPDATES_PER_REQUEST = 100  # the shipment publisher's maximum


def parameters(host: str, port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(host=host, port=port, virtual_host="/", credentials=pika.PlainCredentials("guest", "guest"), connection_attempts=1)


def message_body(index: int) -> bytes:
    """A shipment-update-like JSON body padded to BODY_BYTES."""
    document = {"schema_version": 1, "shipment_id": f"s-{index:08d}", "order_id": f"o-{index:08d}", "status": "shipped", "padding": ""}
    document["padding"] = "x" * (BODY_BYTES - len(json.dumps(document, separators=(",", ":"))))
    body = json.dumps(document, separators=(",", ":")).encode()
    assert len(body) == BODY_BYTES
    return body


PROPERTIES = pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent)


def no_confirms(params: pika.ConnectionParameters, queue: str, bodies: list[bytes]) -> float:
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        started = time.perf_counter()
        for body in bodies:
            channel.basic_publish("", queue, body, PROPERTIES)
        # The channel routes the messages before the queue has taken them all, so ask until it has.
        deadline = started + 60
        while (count := channel.queue_declare(queue, passive=True).method.message_count) < len(bodies):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{count} of {len(bodies)} messages on the queue a minute after the baseline round began")
            time.sleep(0.001)
        return time.perf_counter() - started
    finally:
        connection.close()


def confirm_each(params: pika.ConnectionParameters, queue: str, bodies: list[bytes]) -> float:
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        started = time.perf_counter()
        for body in bodies:
            channel.basic_publish("", queue, body, PROPERTIES, mandatory=True)
        return time.perf_counter() - started
    finally:
        connection.close()


class BatchedConfirms:
    """Publish ``batch`` messages, wait until the broker has confirmed all of them, repeat; on pika's SelectConnection."""

    def __init__(self, params: pika.ConnectionParameters, queue: str, bodies: list[bytes], batch: int) -> None:
        self.queue, self.bodies, self.batch = queue, bodies, batch
        self.sent = 0
        self.next_tag = 1  # delivery tags count publishes on the channel from 1
        self.pending: set[int] = set()
        self.started = self.finished = 0.0
        self.failure: str | None = None
        self.channel = None
        self.connection = pika.SelectConnection(
            params, on_open_callback=self._on_open, on_open_error_callback=self._on_open_error, on_close_callback=self._on_close
        )

    def run(self) -> float:
        self.connection.ioloop.start()
        if self.failure is not None:
            raise RuntimeError(self.failure)
        return self.finished - self.started

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, connection, error) -> None:
        self.failure = f"could not connect: {error!r}"
        connection.ioloop.stop()

    def _on_close(self, connection, reason) -> None:
        if self.finished == 0.0 and self.failure is None:
            self.failure = f"connection closed before every confirm: {reason!r}"
        connection.ioloop.stop()

    def _on_channel(self, channel) -> None:
        self.channel = channel
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame) -> None:
        self.started = time.perf_counter()
        self._publish_batch()

    def _publish_batch(self) -> None:
        for body in self.bodies[self.sent : self.sent + self.batch]:
            self.channel.basic_publish("", self.queue, body, PROPERTIES, mandatory=True)
            self.pending.add(self.next_tag)
            self.next_tag += 1
            self.sent += 1

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if isinstance(method, Basic.Nack):
            self.failure = f"the broker refused delivery tag {method.delivery_tag}"
            self.connection.close()
            return
        if method.multiple:
            self.pending = {tag for tag in self.pending if tag > method.delivery_tag}
        else:
            self.pending.discard(method.delivery_tag)
        if self.pending:
            return
        if self.sent < len(self.bodies):
            self._publish_batch()
            return
        self.finished = time.perf_counter()
        self.connection.close()


def confirm_batch(batch: int):
    def run(params: pika.ConnectionParameters, queue: str, bodies: list[bytes]) -> float:
        return BatchedConfirms(params, queue, bodies, batch).run()

    return run


def shipment_publisher(host: str, port: int, exchange: str):
    """The shipment publisher function, imported for one exchange, publishing as guest; its connection is made before the clock starts."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import boto3
    from _lambda_env import Context, load_handler, prepare_environment

    prepare_environment(POWERTOOLS_SERVICE_NAME="exercise05-benchmark", POWERTOOLS_METRICS_NAMESPACE="Exercise05Benchmark")
    secret = boto3.client("secretsmanager").create_secret(Name=f"bench/{exchange}", SecretString=json.dumps({"username": "guest", "password": "guest"}))
    os.environ.update(BROKER_HOST=host, BROKER_PORT=str(port), BROKER_TLS="false", VIRTUAL_HOST="/", BROKER_SECRET_ARN=secret["ARN"], EXCHANGE_NAME=exchange)
    # Powertools' Logger takes the stream it writes to when the function is imported: import it with stdout going nowhere.
    sink = open(os.devnull, "w")  # noqa: SIM115 - open for as long as the function logs
    with contextlib.redirect_stdout(sink):
        module = load_handler("shipment_publisher", f"benchmark_shipment_publisher_{exchange.replace('-', '_')}")
    numbers = iter(range(10**9))

    def request(count: int) -> dict:
        return {"shipments": [{"schema_version": 1, "shipment_id": f"s-{n:09d}", "order_id": f"o-{n:09d}", "status": "shipped",
                               "occurred_at": "2025-03-14T09:26:53Z", "carrier": "DHL"} for n in itertools.islice(numbers, count)]}  # fmt: skip

    def run(params: pika.ConnectionParameters, queue: str, bodies: list[bytes]) -> float:
        requests = [request(min(UPDATES_PER_REQUEST, len(bodies) - start)) for start in range(0, len(bodies), UPDATES_PER_REQUEST)]
        with contextlib.redirect_stdout(sink):  # the function's metrics
            started = time.perf_counter()
            for each in requests:
                module.lambda_handler(each, Context())
            return time.perf_counter() - started

    with contextlib.redirect_stdout(sink):
        module.lambda_handler(request(1), Context())  # connects: set-up is outside the clock, as for the other modes
    return module, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    args = parser.parse_args()

    params = parameters(args.host, args.port)
    try:
        probe = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError) as exc:
        print(f"no RabbitMQ at {args.host}:{args.port} ({exc!r}); start one with scripts/start_rabbitmq.sh", file=sys.stderr)
        return 1
    server = probe._impl.server_properties  # what the broker announced at connection time
    version = server.get("version", b"?")
    version = version.decode() if isinstance(version, bytes) else version
    admin = probe.channel()

    from moto import mock_aws

    modes = [("no confirms", no_confirms), ("confirm each", confirm_each)] + [(f"confirm batch {size}", confirm_batch(size)) for size in BATCH_SIZES]
    modes.append(("shipment_publisher", None))
    queue_types = ("classic", "quorum")
    bodies = [message_body(i) for i in range(args.messages)]
    queues = {kind: f"bench-publish-{kind}-{uuid.uuid4().hex[:8]}" for kind in queue_types}
    seconds: dict[tuple[str, str], list[float]] = {(kind, mode): [] for kind in queue_types for mode, _ in modes}
    functions = {}
    aws = mock_aws()
    aws.start()
    try:
        for kind, queue in queues.items():
            admin.queue_declare(queue, durable=True, arguments={"x-queue-type": kind})
            admin.exchange_declare(f"{queue}-shipments", exchange_type="topic", durable=False, auto_delete=False)
            admin.queue_bind(queue, f"{queue}-shipments", routing_key="shipment.#")
            functions[kind] = shipment_publisher(args.host, args.port, f"{queue}-shipments")
            admin.queue_purge(queue)
        for _ in range(args.rounds):
            for kind, queue in queues.items():
                for mode, run in modes:
                    run = run or functions[kind][1]
                    seconds[(kind, mode)].append(run(params, queue, bodies))
                    on_queue = admin.queue_declare(queue, passive=True).method.message_count
                    if on_queue != args.messages:
                        raise RuntimeError(f"{mode} on the {kind} queue: {on_queue} of {args.messages} messages on the queue")
                    admin.queue_purge(queue)
    finally:
        for module, _ in functions.values():
            module.broker.close()
        for queue in queues.values():
            try:
                admin.queue_delete(queue)
                admin.exchange_delete(f"{queue}-shipments")
            except pika.exceptions.AMQPError:
                pass
        probe.close()
        aws.stop()

    print(f"Persistent {BODY_BYTES}-byte messages to one durable queue, {args.messages:,} per round, median of {args.rounds} rounds")
    print(f"RabbitMQ {version} on {args.host}:{args.port}; Python {platform.python_version()}, pika {pika.__version__}, {os.cpu_count()} CPUs")
    print()
    print(f"{'queue':<8} {'mode':<20} {'seconds':>8} {'msg/s':>9} {'vs no confirms':>15}")
    for kind in queue_types:
        baseline = statistics.median(seconds[(kind, "no confirms")])
        for mode, _ in modes:
            median = statistics.median(seconds[(kind, mode)])
            print(f"{kind:<8} {mode:<20} {median:>8.3f} {args.messages / median:>9,.0f} {baseline / median:>14.2f}x")
    print()
    print("vs no confirms: the mode's rate divided by the no-confirm rate on the same queue type (1.00x = as fast).")
    print(f"shipment_publisher: the function, {UPDATES_PER_REQUEST} updates per invocation, a confirm per message (mandatory, to a topic exchange).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
