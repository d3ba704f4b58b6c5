"""CaseAirbnb's experiment, "no double charge": a day of bookings, every message delivered twice and out of order, faults at every hop.

What runs for real, in this process, against moto: the booking command function, the outbox relay, the saga starter,
the payments function, the ledger projection and its rebuild, each loaded from its folder; DynamoDB with its streams
(the event store's feeds the ledger, the outbox's feeds the pipe); and the payment saga, the state machine
synthesized from ``CaseAirbnb``, executed by moto's Step Functions (its Choice, Pass, Retry and Catch), whose
``lambda:invoke`` tasks call the handlers here. The stand-ins: the payment provider (``FakeProvider``, which records
charges and refunds by idempotency key and fails on schedule); the pipe (stream records in batches of 10 through the
relay, put on the bus with the pipe's source); the bus (the rules' patterns from the template, read by ``matches``);
the queue (each event a record of the starter's batch). Time is virtual: moto's retry pauses move a clock on instead
of sleeping, and the payments function reads its leases from that clock.

Every message is delivered twice, in shuffled order: the clients' commands (a request, and for some bookings a cancel
before the saga runs, during it, or after it confirmed), the outbox's events to the starter, the saga's task requests
(each invocation runs its handler twice and answers with the second run), and the event store's records to the
ledger. Faults, drawn per call from a seeded schedule: a task throttled before it runs (``Lambda.TooManyRequestsException``)
or its answer lost after it ran (``Lambda.ServiceException``); the provider throttling (``ProviderThrottled``), timing
out before it acts or after it charged (``ProviderTimeout``), or the payments function dying between the provider's
answer and its record (reported as ``Lambda.Unknown``, what Step Functions reports for a function that timed out).

Afterwards, per booking: what the provider charged and refunded, the ledger (live, from the stream) and the ledger
rebuilt from the whole store into an empty table. ``Result.problems`` lists every booking that breaks the design's
promise: a confirmed booking charged exactly once and not refunded; a cancelled or failed one charged at most once and
refunded what it was charged; the ledger showing what the provider did; the rebuild equal to the live ledger.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import itertools
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest.mock import patch

import boto3
from botocore.config import Config
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb import models as moto_dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from messaging_constructs.outbox import RELAY_CODE
from messaging_runtime.contracts.bookings import SOURCE
from stacks.case_airbnb import LEASE

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION = "123456789012", "us-east-1"
FOLDERS = ("case_airbnb_bookings", "case_airbnb_payments", "case_airbnb_saga_starter", "case_airbnb_ledger")
#: The virtual clock's start.
T0 = 1_800_000_000.0
#: Prices are drawn up to this (minor units); the provider declines what is above ``DECLINE_ABOVE``.
MAX_PRICE, DECLINE_ABOVE = 102_000, 100_000

#: The faults, and the chance of each at each call of its site.
DEFAULT_FAULTS: dict[str, dict[str, float]] = {
    "task": {"Lambda.TooManyRequestsException": 0.05, "Lambda.ServiceException": 0.05},
    "provider.charge": {"ProviderThrottled": 0.08, "ProviderTimeout before": 0.04, "ProviderTimeout after": 0.06, "crash after": 0.01},
    "provider.refund": {"ProviderThrottled": 0.08, "ProviderTimeout after": 0.06},
}


class Crash(BaseException):
    """The payments function dies between the provider's answer and its record (a BaseException: no handler catches it)."""


class Schedule:
    """Which fault, if any, each call of a site gets: drawn from a seeded generator, or taken from a list (hypothesis)."""

    def __init__(self, faults: dict[str, dict[str, float]] | None = None, *, seed: int = 0, scripted: dict[str, list[str | None]] | None = None) -> None:
        self.faults = DEFAULT_FAULTS if faults is None else faults
        self.random = random.Random(seed)
        self.scripted = {site: list(draws) for site, draws in (scripted or {}).items()}
        self.injected: Counter[str] = Counter()

    def draw(self, site: str) -> str | None:
        if site in self.scripted:
            fault = self.scripted[site].pop(0) if self.scripted[site] else None
        else:
            fault, roll = None, self.random.random()
            for name, chance in self.faults.get(site, {}).items():
                if roll < chance:
                    fault = name
                    break
                roll -= chance
        if fault is not None:
            self.injected[f"{site}: {fault}"] += 1
        return fault


class FakeProvider:
    """The payment provider: the payments function's stand-in (charges and refunds recorded by idempotency key), with faults.

    ``calls`` counts every call that reached it; ``repeats`` the charges and refunds asked again for a key it had
    already acted on: each one a double charge (or refund) had the provider not kept the key.
    """

    def __init__(self, module: ModuleType, schedule: Schedule) -> None:
        self.module, self.schedule = module, schedule
        self.inner = module.PaymentProvider(DECLINE_ABOVE)
        self.calls: Counter[str] = Counter()
        self.repeats: Counter[str] = Counter()

    def _before(self, site: str) -> str | None:
        self.calls[site] += 1
        fault = self.schedule.draw(site)
        if fault == "ProviderThrottled":
            raise self.module.ProviderThrottled("429: slow down")
        if fault == "ProviderTimeout before":
            raise self.module.ProviderTimeout("no answer (the request never arrived)")
        return fault

    def _after(self, fault: str | None) -> None:
        if fault == "ProviderTimeout after":
            raise self.module.ProviderTimeout("no answer (the provider acted)")
        if fault == "crash after":
            raise Crash("the function died after the provider's answer")

    def charge(self, key: str, amount_minor: int, currency: str) -> Any:
        fault = self._before("provider.charge")
        self.repeats["charge"] += key in self.inner.charges
        charge = self.inner.charge(key, amount_minor, currency)
        self._after(fault)
        return charge

    def refund(self, key: str, charge_key: str) -> Any:
        fault = self._before("provider.refund")
        self.repeats["refund"] += key in self.inner.refunds
        refund = self.inner.refund(key, charge_key)
        self._after(fault)
        return refund


@dataclass
class Plan:
    """One booking of the day: its request, and whether and when the guest cancels."""

    booking_id: str
    guest_id: str
    amount_minor: int
    cancel: str | None = None  # None, "before" the saga, "during" it (after the charge), "after" it
    cancel_sent: bool = False


def day_of_bookings(count: int, seed: int = 0, *, prefix: str = "b") -> list[Plan]:
    """``count`` bookings: prices up to MAX_PRICE (a few over the provider's limit), about 1 in 5 cancelled."""
    rng = random.Random(seed)
    plans = []
    for number in range(count):
        cancel = rng.choices([None, "before", "during", "after"], weights=[80, 6, 6, 8])[0]
        plans.append(Plan(f"{prefix}-{number:05d}", f"g-{rng.randrange(count // 3 + 1)}", rng.randrange(5_000, MAX_PRICE), cancel))
    return plans


def load(path: Path, name: str) -> ModuleType:
    """A handler module by path, its folder on the path while it loads (as Lambda runs it); the folder's other modules
    are taken out of ``sys.modules`` again afterwards, so that no folder's modules stand in for another's."""
    siblings = {sibling.stem for sibling in path.parent.glob("*.py")}
    hidden = {sibling: sys.modules.pop(sibling) for sibling in siblings if sibling in sys.modules}
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
        for sibling in siblings:
            sys.modules.pop(sibling, None)
        sys.modules.update(hidden)
    return module


def context(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        memory_limit_in_mb=256,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{name}",
        log_stream_name="s",
        get_remaining_time_in_millis=lambda: 900_000,
    )


def matches(pattern: Any, event: Any) -> bool:
    """An EventBridge pattern of exact values and nested objects (the operators the rules use); anything else is refused."""
    for key, rule in pattern.items():
        if isinstance(rule, dict):
            if not (isinstance(event, dict) and key in event and matches(rule, event[key])):
                return False
        elif not (isinstance(rule, list) and all(isinstance(v, (str, int, float)) for v in rule)):
            raise ValueError(f"pattern rule {rule!r} is not modelled")
        elif not (isinstance(event, dict) and event.get(key) in rule):
            return False
    return True


@dataclass
class Template:
    """What the experiment reads from the synthesized CaseAirbnb template."""

    definition: str
    folders: dict[str, str]  # function logical id -> code folder
    patterns: list[dict[str, Any]]  # the rules to the saga-starts queue

    @classmethod
    def of(cls, template: dict[str, Any]) -> Template:
        resources = template["Resources"]
        (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
        folders = {
            logical_id: r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
            for logical_id, r in resources.items()
            if r["Type"] == "AWS::Lambda::Function" and "POWERTOOLS_SERVICE_NAME" in r["Properties"].get("Environment", {}).get("Variables", {})
        }
        parts = []
        for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
            if isinstance(part, str):
                parts.append(part)
            elif "Fn::GetAtt" in part:
                parts.append(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{part['Fn::GetAtt'][0]}")
            elif part.get("Ref") == "AWS::Partition":
                parts.append("aws")
            else:
                raise ValueError(f"unexpected reference in the definition: {part}")
        starter = next(k for k, f in folders.items() if f == "case_airbnb_saga_starter")
        (starts_source,) = [
            r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": starter}
        ]
        patterns = [
            r["Properties"]["EventPattern"]
            for r in resources.values()
            if r["Type"] == "AWS::Events::Rule" and any(t["Arn"] == {"Fn::GetAtt": [starts_source, "Arn"]} for t in r["Properties"]["Targets"])
        ]
        return cls("".join(parts), folders, patterns)


@dataclass
class Result:
    """What the experiment counted and what it found."""

    bookings: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    charges: int = 0
    refunds: int = 0
    prevented: Counter[str] = field(default_factory=Counter)
    executions: Counter[str] = field(default_factory=Counter)
    rebuild_equal: bool = False
    ledger_rows: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"bookings: {self.bookings} ({', '.join(f'{n} {s}' for s, n in sorted(self.statuses.items()))})",
            f"messages delivered (with duplicates): {sum(self.delivered.values())} ({', '.join(f'{n} {k}' for k, n in sorted(self.delivered.items()))})",
            f"failures injected: {sum(self.injected.values())} ({', '.join(f'{n} {k}' for k, n in sorted(self.injected.items()))})",
            f"charges made: {self.charges}; refunds made: {self.refunds}",
            f"duplicates prevented: {sum(self.prevented.values())} ({', '.join(f'{n} {k}' for k, n in sorted(self.prevented.items()))})",
            f"saga executions: {', '.join(f'{n} {s}' for s, n in sorted(self.executions.items()))}",
            f"ledger rebuilt from the event store equal to the live ledger: {'yes' if self.rebuild_equal else 'no'} ({self.ledger_rows} bookings)",
            f"problems: {len(self.problems)}; wall time {self.seconds:.1f} s",
        ]


class World:
    """moto, the tables, the handlers and the state machine; ``run(plans, schedule)`` plays a day and checks it."""

    def __init__(self, template: Template, environment: Any, machine: Any = None) -> None:
        self.template, self.machine = template, machine
        self.executions: list[Any] = []
        self.counts: Counter[str] = Counter()
        self.result, self.rng, self.schedule = Result(), random.Random(0), Schedule()
        self.plans: dict[str, Plan] = {}
        self.dynamodb = boto3.client("dynamodb")
        self.streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        self.sfn = boto3.client("stepfunctions")
        self.clock = T0
        self.positions: dict[str, str | None] = {}
        tables = {"store": "bookings-store", "outbox": "bookings-outbox", "requests": "payment-requests", "ledger": "ledger", "rebuilt": "ledger-rebuilt"}
        self.tables = tables
        self._table(tables["store"], [("aggregate_id", "S", "HASH"), ("version", "N", "RANGE")], stream=True)
        self._table(tables["outbox"], [("aggregate_id", "S", "HASH")], stream=True)
        self._table(tables["requests"], [("pk", "S", "HASH")])
        self._table(tables["ledger"], [("booking_id", "S", "HASH")])
        self._table(tables["rebuilt"], [("booking_id", "S", "HASH")])
        arn = self.sfn.create_state_machine(name="payment-saga", definition=template.definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/saga")
        self.machine_arn = arn["stateMachineArn"]
        for name, value in {
            "EVENT_STORE_TABLE": tables["store"],
            "OUTBOX_TABLE_NAME": tables["outbox"],
            "REQUESTS_TABLE_NAME": tables["requests"],
            "READ_MODEL_TABLE": tables["ledger"],
            "REBUILD_TABLE": tables["rebuilt"],
            "STATE_MACHINE_ARN": self.machine_arn,
            "EVENT_SOURCE": SOURCE,
            "LEASE_SECONDS": str(int(LEASE.to_seconds())),
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            environment.setenv(name, value)
        numbers = itertools.count()
        self.modules = {folder: load(ROOT / "lambdas" / folder / "handler.py", f"airbnb_{folder}_{next(numbers)}") for folder in FOLDERS}
        self.rebuild = load(ROOT / "lambdas" / "case_airbnb_ledger" / "ledger_rebuild.py", f"airbnb_rebuild_{next(numbers)}")
        self.relay = load(Path(RELAY_CODE) / "handler.py", f"airbnb_relay_{next(numbers)}")
        self.bookings, self.payments = self.modules["case_airbnb_bookings"], self.modules["case_airbnb_payments"]
        self.bookings.store.sleep = lambda seconds: None
        self.payments.clock = lambda: self.clock
        self.by_logical_id = {logical_id: self.modules[folder] for logical_id, folder in template.folders.items() if folder in self.modules}

    def _table(self, name: str, keys: list[tuple[str, str, str]], *, stream: bool = False) -> None:
        options: dict[str, Any] = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}} if stream else {}
        self.dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
            BillingMode="PAY_PER_REQUEST",
            **options,
        )

    # --- the hops ---------------------------------------------------------------------------------------------

    def read_stream(self, table: str) -> list[dict[str, Any]]:
        """The table's stream records since the last read (a new iterator each time: moto copies a table when it rolls back)."""
        stream_arn = self.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        (shard,) = self.streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        while True:
            last = self.positions.get(table)
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last} if last else {"ShardIteratorType": "TRIM_HORIZON"}
            iterator = self.streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"], **position)["ShardIterator"]
            page = self.streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
            if not page:
                return records
            self.positions[table] = page[-1]["dynamodb"]["SequenceNumber"]
            for record in page:
                image = dict(record["dynamodb"])
                image.pop("ApproximateCreationDateTime", None)
                records.append({"eventID": record["eventID"], "eventName": record["eventName"], "eventSource": "aws:dynamodb", "dynamodb": image})

    def command(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.result.delivered["commands"] += 1
        return self.bookings.lambda_handler(payload, context("booking-commands"))

    def task(self, function_name: str, payload: dict[str, Any]) -> tuple[Any, ...]:
        """A ``lambda:invoke`` task's outcome, ``("ok", answer)`` or ``("error", name, cause)``: the handler run twice (a
        duplicated task request, the second answer kept), unless the attempt is throttled; its answer possibly lost after."""
        module = self.by_logical_id[function_name.rsplit(":", 1)[-1]]
        self.result.delivered["task requests"] += 2
        fault = self.schedule.draw("task")
        if fault == "Lambda.TooManyRequestsException":
            return ("error", fault, "injected: throttled before it ran")
        outcome: tuple[Any, ...] = ()
        for _ in range(2):
            try:
                outcome = ("ok", json.loads(json.dumps(module.lambda_handler(payload, context("saga-step")))))
            except Crash as crash:
                outcome = ("error", "Lambda.Unknown", str(crash))  # what Step Functions reports for a function that timed out
            except Exception as exc:
                outcome = ("error", type(exc).__name__, str(exc))
        self.on_task(payload)
        if fault == "Lambda.ServiceException":
            return ("error", fault, "injected: the answer was lost after it ran")
        return outcome

    def moto_invoke(self, function_name: str, body: bytes, response_headers: dict[str, str]) -> bytes:
        """What moto's Step Functions gets from Lambda for a task."""
        outcome = self.task(function_name, json.loads(body or "{}"))
        if outcome[0] == "ok":
            return json.dumps(outcome[1]).encode()
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": outcome[1], "errorMessage": outcome[2]}).encode()

    # The interpreter's view of this world (``machine.advance``): a task's outcome, the clock, the retries' jitter.
    def invoke(self, execution: Any, state: str, function_arn: str, payload: dict[str, Any]) -> tuple[Any, ...]:
        return self.task(function_arn, payload)

    @property
    def now(self) -> float:
        return self.clock

    def jitter(self) -> float:
        return self.rng.random()

    def on_task(self, payload: dict[str, Any]) -> None:
        """A guest who cancels while the saga runs does so right after the charge step."""
        booking = payload.get("booking") or {}
        plan = self.plans.get(booking.get("booking_id", ""))
        if payload.get("action") == "charge" and plan is not None and plan.cancel == "during" and not plan.cancel_sent:
            plan.cancel_sent = True
            self.command(cancel(plan))

    def pipe(self) -> list[dict[str, Any]]:
        """The outbox stream's new records through the relay, in batches of 10, as the bus events the pipe puts."""
        records = self.read_stream(self.tables["outbox"])
        events = []
        for start in range(0, len(records), 10):
            for entry in self.relay.lambda_handler(records[start : start + 10], context("outbox-relay")):
                event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": entry["detail_type"], "source": SOURCE, "account": ACCOUNT}
                events.append(event | {"time": datetime.now(UTC).isoformat(timespec="seconds"), "region": REGION, "resources": [], "detail": entry["detail"]})
        self.result.delivered["outbox events"] += len(events)
        return events

    def start_sagas(self, events: list[dict[str, Any]]) -> None:
        """Each event a rule sends to the saga-starts queue, delivered twice in shuffled order, 10 to a batch; the sagas run."""
        routed = [event for event in events if any(matches(pattern, event) for pattern in self.template.patterns)]
        deliveries = [dict(e) for e in routed for _ in range(2)]
        self.rng.shuffle(deliveries)
        starter = self.modules["case_airbnb_saga_starter"]
        for start in range(0, len(deliveries), 10):
            batch = deliveries[start : start + 10]
            records = [{"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": json.dumps(e), "attributes": {}, "eventSource": "aws:sqs"} for e in batch]
            self.result.delivered["saga starts"] += len(records)
            answer = starter.lambda_handler({"Records": records}, context("saga-starter"))
            assert answer == {"batchItemFailures": []}, answer
        self.run_executions()

    def begin_execution(self, arn: str, document: str) -> None:
        """An execution Step Functions created (the starter's StartExecution, in moto): the interpreter runs it."""
        if self.machine is not None:
            self.executions.append(self.machine.begin(json.loads(document)["booking"]["booking_id"], arn, json.loads(document), self.clock))

    def run_executions(self, timeout: float = 600) -> None:
        """Every saga to its end: in moto, wait for it; interpreted, one task attempt at a time, any ready execution next,
        the clock moving to the earliest retry when none is ready."""
        if self.machine is None:
            deadline = time.time() + timeout
            pages = self.sfn.get_paginator("list_executions")
            while any(page["executions"] for page in pages.paginate(stateMachineArn=self.machine_arn, statusFilter="RUNNING")):
                if time.time() > deadline:
                    raise AssertionError("a saga execution did not finish")
                time.sleep(0.01)
            return
        while running := [e for e in self.executions if e.status == "RUNNING"]:
            ready = [e for e in running if e.ready_at <= self.clock]
            if not ready:
                self.clock = min(e.ready_at for e in running)
                continue
            self.machine.advance(self.rng.choice(ready), self)

    def execution_statuses(self) -> dict[str, list[str]]:
        """booking id -> the statuses of its executions."""
        found: dict[str, list[str]] = {}
        if self.machine is None:
            pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.machine_arn)
            listed = [(e["name"], e["status"]) for page in pages for e in page["executions"]]
        else:
            listed = [(e.arn.rsplit(":", 1)[1], e.status) for e in self.executions]
        for name, status in listed:
            found.setdefault(name.removesuffix("-refund"), []).append(status)
        return found

    def project(self) -> None:
        """The store stream's new event records to the ledger, each twice, shuffled, 100 to a batch."""
        records = [r for r in self.read_stream(self.tables["store"]) if r["eventName"] == "INSERT" and r["dynamodb"]["NewImage"]["kind"]["S"] == "event"]
        deliveries = [r for r in records for _ in range(2)]
        self.rng.shuffle(deliveries)
        ledger = self.modules["case_airbnb_ledger"]
        for start in range(0, len(deliveries), 100):
            batch = deliveries[start : start + 100]
            self.result.delivered["ledger records"] += len(batch)
            answer = ledger.lambda_handler({"Records": batch}, context("ledger"))
            assert answer == {"batchItemFailures": []}, answer

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        items = [i for page in self.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True) for i in page["Items"]]
        return {item["booking_id"]["S"]: item for item in items}

    # --- a day ------------------------------------------------------------------------------------------------

    def run(self, plans: list[Plan], schedule: Schedule, *, seed: int = 0) -> Result:
        """Play the day: requests and early cancels, the sagas they start, late cancels and their refund sagas, the
        ledger from the stream, the rebuild; then check every booking."""
        began = time.perf_counter()
        self.result, self.rng, self.schedule = Result(bookings=len(plans)), random.Random(seed), schedule
        provider = FakeProvider(self.payments, schedule)
        self.payments.provider = provider
        self.plans = {plan.booking_id: plan for plan in plans}

        def advance(retrier_seconds: float) -> None:
            self.clock += retrier_seconds

        with patch.object(LambdaSimpleBackend, "invoke", lambda _, name, qualifier, body, headers, answer: self.moto_invoke(name, body, answer)):
            with patch.object(retrier_decl, "time", SimpleNamespace(sleep=advance)):
                # The morning: every request, and the early cancels, each sent twice, in any order.
                commands = [request(plan) for plan in plans] + [cancel(plan) for plan in plans if plan.cancel == "before"]
                deliveries = [c for c in commands for _ in range(2)]
                self.rng.shuffle(deliveries)
                for payload in deliveries:
                    self.command(payload)
                self.start_sagas(self.pipe())
                # The afternoon: cancels of bookings the saga confirmed, each sent twice; their refund sagas.
                late = [cancel(plan) for plan in plans if plan.cancel == "after"]
                for payload in self.rng.sample(late * 2, len(late) * 2):
                    self.command(payload)
                self.start_sagas(self.pipe())
                # What the sagas wrote reaches the bus too (none of it starts a saga).
                self.start_sagas(self.pipe())
        self.project()
        rebuilt = self.rebuild.lambda_handler({}, context("ledger-rebuild"))
        assert rebuilt["complete"] and rebuilt["rejected"] == 0, rebuilt
        self.result.injected = schedule.injected
        self.check(plans, provider)
        self.result.seconds = time.perf_counter() - began
        return self.result

    def check(self, plans: list[Plan], provider: FakeProvider) -> None:
        result = self.result
        ids = {plan.booking_id for plan in plans}
        live = {k: v for k, v in self.rows(self.tables["ledger"]).items() if k in ids}
        rebuilt = {k: v for k, v in self.rows(self.tables["rebuilt"]).items() if k in ids}
        result.rebuild_equal, result.ledger_rows = live == rebuilt, len(live)
        booking_of = lambda key: key.split(":", 1)[1]  # noqa: E731 - "charge:<booking>", "refund:<booking>"
        charges = {booking_of(key): c for key, c in provider.inner.charges.items() if booking_of(key) in ids}
        refunds = {booking_of(key): r for key, r in provider.inner.refunds.items() if r is not None and booking_of(key) in ids}
        result.charges, result.refunds = len(charges), len(refunds)
        executions = self.execution_statuses()
        for plan in plans:
            row = live.get(plan.booking_id)
            if row is None:
                result.problems.append(f"{plan.booking_id}: not in the ledger")
                continue
            status = row["status"]["S"]
            result.statuses[status] += 1
            result.executions.update(executions.get(plan.booking_id, []))
            charged = charges[plan.booking_id].amount_minor if plan.booking_id in charges else 0
            refunded = refunds[plan.booking_id].charge.amount_minor if plan.booking_id in refunds else 0
            money = (int(row["charged_minor"]["N"]), int(row["refunded_minor"]["N"]))
            if set(executions.get(plan.booking_id, [])) != {"SUCCEEDED"}:
                result.problems.append(f"{plan.booking_id}: saga executions {executions.get(plan.booking_id)} (a failed one alarms)")
            if status == "CONFIRMED" and (charged != plan.amount_minor or refunded):
                result.problems.append(f"{plan.booking_id}: confirmed, charged {charged} of {plan.amount_minor}, refunded {refunded}")
            if status in ("CANCELLED", "FAILED") and charged != refunded:
                result.problems.append(f"{plan.booking_id}: {status}, charged {charged}, refunded {refunded}")
            if status == "REQUESTED":
                result.problems.append(f"{plan.booking_id}: still REQUESTED")
            if money != (charged, refunded):
                result.problems.append(f"{plan.booking_id}: the ledger says charged/refunded {money}, the provider {(charged, refunded)}")
        result.prevented["charges the provider deduplicated by key"] = provider.repeats["charge"]
        result.prevented["refunds the provider deduplicated by key"] = provider.repeats["refund"]
        result.prevented["payment requests answered from their record"] = self.counts["answered from record"]
        result.prevented["commands answered from their marker"] = self.counts["duplicate commands"]
        result.prevented["saga starts refused (execution name)"] = self.counts["duplicate starts"]
        result.delivered["provider calls"] = sum(provider.calls.values())
        self.counts.clear()


def request(plan: Plan) -> dict[str, Any]:
    return {
        "command": "request",
        "booking_id": plan.booking_id,
        "command_id": f"req-{plan.booking_id}",
        "guest_id": plan.guest_id,
        "listing_id": f"l-{int(plan.booking_id.rsplit('-', 1)[1]) % 97}",
        "nights": 1 + int(plan.booking_id.rsplit("-", 1)[1]) % 7,
        "amount_minor": plan.amount_minor,
        "currency": "EUR",
    }


def cancel(plan: Plan) -> dict[str, Any]:
    return {"command": "cancel", "booking_id": plan.booking_id, "command_id": f"cancel-{plan.booking_id}", "reason": "plans changed"}


def _table_copy(table: Any) -> Any:
    """A backup of a moto table for a transaction of Puts: its item index copied (Puts replace items, never change
    them), its stream's records too. moto's own backup is a deep copy of the whole table, whose cost grows with it."""
    clone = copy.copy(table)
    clone.items = defaultdict(dict, {key: dict(value) if isinstance(value, dict) else value for key, value in table.items.items()})
    if table.stream_shard is not None:
        clone.stream_shard = copy.copy(table.stream_shard)
        clone.stream_shard.items, clone.stream_shard.table = list(table.stream_shard.items), clone
    return clone


@contextlib.contextmanager
def cheap_transaction_backups() -> Iterator[None]:
    """moto's TransactWriteItems with ``_table_copy`` as its backup; a transaction with anything but Puts and condition
    checks (which the stack never sends) is refused rather than rolled back wrongly."""
    deepcopy = copy.deepcopy
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        kinds = {kind for item in transact_items for kind in item}
        if not kinds <= {"Put", "ConditionCheck"}:
            raise AssertionError(f"the experiment's transaction backup handles Puts and condition checks only, got {sorted(kinds)}")
        return original(backend, transact_items)

    backup = SimpleNamespace(deepcopy=lambda value, *args: _table_copy(value) if isinstance(value, Table) else deepcopy(value, *args))
    with patch.object(moto_dynamodb_models, "copy", backup), patch.object(DynamoDBBackend, "transact_write_items", transact_write_items):
        yield


@contextlib.contextmanager
def world(template: dict[str, Any], environment: Any, *, machine: Any = None) -> Iterator[World]:
    """A World inside moto, counting the duplicates it prevents.

    :param machine: an interpreter of the saga's definition (``begin(name, arn, document, now)``, ``advance(execution,
        world)``), which then runs the executions StartExecution creates; None: moto's Step Functions runs them.
    """
    config = {"stepfunctions": {"execute_state_machine": machine is None}, "lambda": {"use_docker": False}}
    with mock_aws(config=config), cheap_transaction_backups():
        here = World(Template.of(template), environment, machine)
        begin, execute = here.payments.begin, here.bookings.store.execute
        starter = here.modules["case_airbnb_saga_starter"]
        start_execution = starter.stepfunctions.start_execution
        started: set[str] = set()

        def counted_begin(key: str, request: dict[str, Any]) -> Any:
            recorded = begin(key, request)
            here.counts["answered from record"] += recorded is not None
            return recorded

        def counted_execute(*args: Any, **kwargs: Any) -> Any:
            outcome = execute(*args, **kwargs)
            here.counts["duplicate commands"] += outcome.duplicate
            return outcome

        def counted_start(**kwargs: Any) -> Any:
            try:
                answer = start_execution(**kwargs)
            except starter.stepfunctions.exceptions.ExecutionAlreadyExists:
                here.counts["duplicate starts"] += 1
                raise
            if answer["executionArn"] in started:  # the running execution, returned again
                here.counts["duplicate starts"] += 1
            else:
                started.add(answer["executionArn"])
                here.begin_execution(answer["executionArn"], kwargs["input"])
            return answer

        here.payments.begin = counted_begin
        here.bookings.store.execute = counted_execute
        starter.stepfunctions.start_execution = counted_start
        yield here
