"""CapstoneOrders under fault injection, as a property: fail, repeat or reorder any message at any hop, and every order
still ends in exactly one terminal status, charged once if confirmed, with nothing charged or reserved otherwise.

What runs for real, in this process, against moto (DynamoDB and its stream, KMS, Step Functions' ``StartExecution``):
the order API, the outbox relay, the saga starter, stock_reservations, payments (its stand-in provider and the circuit
breaker kept in DynamoDB), order_status and the order reconciler, each loaded from its folder with the environment
the synthesized template gives its function, on tables created from the template (key schemas, indexes, streams),
afresh for every example.

What is modelled, from the synthesized ``CapstoneOrders`` template rather than written here:

- the saga: an interpreter of the part of the States Language its definition uses, instead of moto's Step Functions
  (a thread and real waits per execution; test_order_saga_execution.py runs the same definition there, path by
  path): Choice on ``StringEquals`` and ``IsPresent``; Pass with ``InputPath``, ``Result``, ``ResultPath``; Task for
  ``lambda:invoke`` and ``sqs:sendMessage.waitForTaskToken`` with ``Parameters``, ``ResultSelector``, ``ResultPath``,
  ``Retry`` (the first matching retrier, ``MaxAttempts``, ``IntervalSeconds`` times ``BackoffRate`` per retry capped
  by ``MaxDelaySeconds``, full jitter), ``Catch`` and ``TimeoutSeconds``; Succeed; Fail; the error names
  ``States.ALL``, ``States.TaskFailed``, ``States.Timeout`` and ``States.Runtime`` (a missing path). The steps, their
  order, the retries and the compensation entry points are the definition's: nothing about the saga is listed here,
  and a field, state type, resource or operator the interpreter does not know fails the test instead of being
  skipped. A function's result is its JSON (``Runtime.MarshalError`` otherwise), its error the exception's class name.
  An execution exists once the starter's or the reconciler's real ``StartExecution`` created it in moto (same name
  and input while it runs: the same execution; once it ended: ``ExecutionAlreadyExists``); it is stopped there when
  it ends here, and takes no further step once the reconciler stopped it.
- the pipe: the stream's records (moto's) through the pipe's filter pattern, in batches of at most its batch size,
  one item's records in their order and items interleaved in any order; each batch enriched by the relay and put on
  the bus with the target's source, detail-type path and input template.
- the bus: an event goes to the saga-starts queue when a rule's pattern matches it (read as the starter's event source
  mapping does: its batch size, partial batch responses, a failed record delivered again), and to a status consumer
  that applies an order's events in any order, dropping a ``seq`` not above the last it applied.
- the reconciler: run on its schedule's rate with the schedule's input while an order is open; the order API's
  deadlines and the reconciler's clock are the virtual one.
- time: virtual. The actions due (requests, deliveries, saga steps, answers...) run one at a time in the order
  hypothesis draws, and the clock moves on to the next action's time only when none is due: a retry waits its
  jittered backoff, the merchant's wait ends at ``TimeoutSeconds``, the breaker's windows and open period pass.

Faults, drawn by hypothesis: each example gives each hop a budget of faults (0: the hop behaves), so that every retry
and redelivery eventually goes through:

- ``api``: a request sent up to three times with its key; one that fails before its write (500) or whose answer is
  lost after it (the client sends it again); the customer's cancel, now, 20 s or 400 s after the order was accepted;
- ``pipe``: a batch whose relay fails (delivered again), one put on the bus in part before failing (the part is put
  again), one put twice;
- ``bus``: an event delivered twice to the status consumer or to the starter's queue;
- ``starter``: ``StartExecution`` throttled, or its answer lost after it started the execution (the message comes
  back, to a running or an ended execution);
- ``task``: an attempt throttled before it runs (``Lambda.TooManyRequestsException``), its answer lost after it ran
  (``Lambda.ServiceException``: retried, so the step runs twice), the client timing out while the function goes on
  (``Lambda.ClientExecutionTimeoutException``: retried, and the first run ends now, 5 s or 400 s later, answering
  nobody), run twice with the second answer kept, or timing out after its effect (``Sandbox.Timedout``: caught, so
  the saga compensates a step that took effect). A compensation keeps one attempt that is not made to fail, except
  the one compensation an example may make fail on every attempt (the order then ends FAILED);
- ``provider``: an authorization or a void that times out before it acts, or after; and per example the breaker
  closed, one failure from open, or open (other orders' timeouts);
- ``interleave``: another due action (a cancel, a late run, a merchant's answer, a duplicate request, another
  order's step...) runs between a handler's read and its write (before each DynamoDB write of the order API and the
  saga's functions) or while the provider answers;
- the merchant: accepts, declines, never answers (the timeout), answers twice, or after the timeout (refused).

Invariants, per order, once nothing is left to deliver: one order for its key and every 202 answer the same; one saga
execution named after it, and at most one more (the reconciler's, after that one failed or was stopped), all ended,
none in Step Functions that did not run here; a terminal status; FAILED only when a compensation was made to fail on every attempt, the execution
failed then (it alarms); CONFIRMED: exactly one authorization at the provider, not voided, the one the payments table
holds, the stock of its lines taken once, its one execution succeeded, no cancel accepted; COMPENSATED or CANCELLED:
every authorization of the order voided at the provider, nothing left reserved, its last execution succeeded; CANCELLED
only when the customer's cancel was accepted; a cancel refused (409) only for a terminal order; the outbox's records
of the order numbered 1, 2, 3... in stream order with no gap up to its ``seq``, each announcing the status that
follows the previous one, exactly one terminal one, last; the status consumer ending on the order's status. Across
orders: each SKU's units gone are the units of the reservations held.

``KNOWN_BUGS`` lists faults under which an invariant fails today (none): the property leaves them out, and a scripted
scenario for each (``Scripted``: the draws of one example written out) is a strict xfail until its fix lands. The
scripted scenarios at the end are the faults this test found, kept as regression tests since their fixes: a lost
authorization answer, a cancel between a step's read and its write, a void refused by an open breaker, a confirmation
timing out after its write; and an order left open by a saga whose last status step failed once (what the reconciler
is for).

Not modelled: concurrency within an invocation other than at the interleaving points; the execution's own timeout
(asserted not reached); dead-letter queues, maximum receive counts and retry limits of the pipe, the rule and the
queue (faults are finite, a redelivery eventually succeeds); faults of the reconciler's own hops; the live status
push (the rules' other targets); payload size limits; service quotas; execution history.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_constructs.outbox import RELAY_CODE
from messaging_runtime.checkout import customer_id_of, order_id_for
from messaging_runtime.contracts.checkout import TERMINAL
from tests.handlers.conftest import ACCOUNT_ID, REGION

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

#: Units of each SKU before any order (few, so that orders compete for them) and the largest amount the provider takes.
DEFAULT_STOCK, DECLINE_ABOVE = 6, 500
#: The virtual clock's start: a whole minute, so that the breaker's fixed windows fall the same way in every run.
T0 = 1_800_000_000.0
STATE_MACHINE = "order-saga"
CUSTOMER = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/storefront-customer/shopper"
#: The functions that run here; the outbox relay too, loaded from the construct's code.
HANDLERS = ("order_api", "saga_starter", "stock_reservations", "payments", "order_status", "order_reconciler")
HOPS = ("api", "pipe", "bus", "starter", "task", "provider", "interleave")
MAX_ACTIONS = 1000
#: Faults under which an invariant fails today, each for a bug in a handler (named, with its test below, a strict
#: xfail): the property leaves them out until the fix lands, then the xfail turns into a failure and this entry goes.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


class NotModelled(AssertionError):
    """The template uses something this test does not model: extend the model, never skip it."""


# --- The synthesized template -----------------------------------------------------------------------------------------


def _resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {logical_id: r for logical_id, r in template["Resources"].items() if r["Type"] == kind}


def _single(template: dict, kind: str, where: Callable[[dict], bool] = lambda resource: True) -> tuple[str, dict]:
    found = [(logical_id, r) for logical_id, r in _resources_of(template, kind).items() if where(r)]
    if len(found) != 1:
        raise NotModelled(f"expected one {kind}, found {[logical_id for logical_id, _ in found]}")
    return found[0]


def ref_of(value: Any) -> str:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    raise NotModelled(f"expected a reference, got {value!r}")


def function_arn(logical_id: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"


def queue_url(logical_id: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{logical_id}"


@dataclass
class Blueprint:
    """What the test reads from the synthesized CapstoneOrders template."""

    definition: dict
    folders: dict[str, str]  # function logical id -> code folder
    environments: dict[str, dict[str, Any]]  # function logical id -> environment, references unresolved
    tables: dict[str, dict]  # table logical id -> properties
    keys: dict[str, dict]  # KMS key logical id -> properties
    state_machine: str
    pipe: dict
    rules: list[dict]
    starter_queue: str
    starter_batch_size: int
    reconcile_every: float  # seconds between the reconciler's runs
    reconcile_input: str

    @classmethod
    def of(cls, template: dict) -> Blueprint:
        resources = template["Resources"]
        machine_id, machine = _single(template, "AWS::StepFunctions::StateMachine")
        parts = []
        for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
            if isinstance(part, str):
                parts.append(part)
            elif part == {"Ref": "AWS::Partition"}:
                parts.append("aws")
            elif resources[ref_of(part)]["Type"] == "AWS::Lambda::Function":
                parts.append(function_arn(ref_of(part)))
            elif resources[ref_of(part)]["Type"] == "AWS::SQS::Queue":
                parts.append(queue_url(ref_of(part)))
            else:
                raise NotModelled(f"a reference in the saga's definition: {part}")
        functions = _resources_of(template, "AWS::Lambda::Function")
        environments = {logical_id: f["Properties"].get("Environment", {}).get("Variables", {}) for logical_id, f in functions.items()}
        folders = {logical_id: env["POWERTOOLS_SERVICE_NAME"] for logical_id, env in environments.items() if "POWERTOOLS_SERVICE_NAME" in env}
        (starter,) = [logical_id for logical_id, folder in folders.items() if folder == "saga_starter"]
        _, mapping = _single(template, "AWS::Lambda::EventSourceMapping", lambda r: ref_of(r["Properties"]["FunctionName"]) == starter)
        _, pipe = _single(template, "AWS::Pipes::Pipe")
        bus = ref_of(pipe["Properties"]["Target"])
        (reconciler,) = [logical_id for logical_id, folder in folders.items() if folder == "order_reconciler"]
        _, reconcile_source = _single(template, "AWS::Lambda::EventSourceMapping", lambda r: ref_of(r["Properties"]["FunctionName"]) == reconciler)
        reconcile_queue = ref_of(reconcile_source["Properties"]["EventSourceArn"])
        _, schedule = _single(template, "AWS::Scheduler::Schedule", lambda r: ref_of(r["Properties"]["Target"]["Arn"]) == reconcile_queue)
        rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", schedule["Properties"]["ScheduleExpression"])
        if rate is None:
            raise NotModelled(f"schedule {schedule['Properties']['ScheduleExpression']}")
        rules = [
            r["Properties"]
            for r in _resources_of(template, "AWS::Events::Rule").values()
            if ref_of(r["Properties"].get("EventBusName", {"Ref": "default"})) == bus
        ]
        return cls(
            definition=json.loads("".join(parts)),
            folders=folders,
            environments=environments,
            tables={logical_id: t["Properties"] for logical_id, t in _resources_of(template, "AWS::DynamoDB::Table").items()},
            keys={logical_id: k["Properties"] for logical_id, k in _resources_of(template, "AWS::KMS::Key").items()},
            state_machine=machine_id,
            pipe=pipe["Properties"],
            rules=rules,
            starter_queue=ref_of(mapping["Properties"]["EventSourceArn"]),
            starter_batch_size=mapping["Properties"].get("BatchSize", 10),
            reconcile_every=int(rate.group(1)) * (60 if rate.group(2).startswith("minute") else 3600),
            reconcile_input=schedule["Properties"]["Target"]["Input"],
        )

    def table_of(self, folder: str, variable: str) -> str:
        (logical_id,) = [f for f, name in self.folders.items() if name == folder]
        return ref_of(self.environments[logical_id][variable])


def matches_pattern(pattern: dict | str, event: Any) -> bool:
    """An EventBridge (or pipe filter) pattern, for the operators the template uses: values, nesting, ``exists``."""
    if isinstance(pattern, str):
        pattern = json.loads(pattern)
    for key, rule in pattern.items():
        present = isinstance(event, dict) and key in event
        if isinstance(rule, dict):
            if not present or not matches_pattern(rule, event[key]):
                return False
            continue
        if not isinstance(rule, list):
            raise NotModelled(f"event pattern rule {rule!r}")
        accepted = False
        for value in rule:
            if isinstance(value, dict):
                if set(value) != {"exists"}:
                    raise NotModelled(f"event pattern operator {value!r}")
                accepted |= present == value["exists"]
            else:
                accepted |= present and event[key] == value
        if not accepted:
            return False
    return True


# --- The saga's definition, interpreted -------------------------------------------------------------------------------

_FIELDS = {
    "Choice": {"Type", "Choices", "Default", "Comment"},
    "Pass": {"Type", "Next", "End", "InputPath", "Result", "ResultPath", "Comment"},
    "Task": {"Type", "Next", "End", "Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch", "TimeoutSeconds", "Comment"},
    "Succeed": {"Type", "Comment"},
    "Fail": {"Type", "Error", "Cause", "Comment"},
}
_RETRY_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy"}
_CATCH_FIELDS = {"ErrorEquals", "ResultPath", "Next"}
_CHOICE_FIELDS = {"Variable", "Next", "StringEquals", "IsPresent"}
LAMBDA_INVOKE, WAIT_FOR_TOKEN = ":states:::lambda:invoke", ":states:::sqs:sendMessage.waitForTaskToken"


class RuntimeFailure(Exception):
    """``States.Runtime``: no retrier or catcher handles it, the execution fails."""


def read_path(document: Any, path: str, context: dict | None = None) -> Any:
    if path == "$":
        return document
    if path.startswith("$$."):
        value, names = context, path[3:].split(".")
    elif path.startswith("$.") and "[" not in path:
        value, names = document, path[2:].split(".")
    else:
        raise NotModelled(f"path {path!r}")
    for name in names:
        if not isinstance(value, dict) or name not in value:
            raise RuntimeFailure(f"{path} is not in the state's input")
        value = value[name]
    return value


def has_path(document: Any, path: str) -> bool:
    try:
        read_path(document, path)
    except RuntimeFailure:
        return False
    return True


def write_path(document: Any, path: str | None, value: Any) -> Any:
    """The state's output: ``value`` put at ``path`` (a ResultPath) in a copy of ``document``; ``None`` drops it."""
    if path is None:
        return document
    if path == "$":
        return value
    if not path.startswith("$.") or "[" in path:
        raise NotModelled(f"result path {path!r}")
    copy = json.loads(json.dumps(document))
    target, names = copy, path[2:].split(".")
    for name in names[:-1]:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise RuntimeFailure(f"{path}: {name} is not an object")
    target[names[-1]] = value
    return copy


def resolve(template: Any, document: Any, context: dict | None = None) -> Any:
    """``Parameters`` or ``ResultSelector``: ``"name.$"`` entries read their path, everything else is taken as it is."""
    if isinstance(template, dict):
        return {
            (name[:-2] if name.endswith(".$") else name): (read_path(document, value, context) if name.endswith(".$") else resolve(value, document, context))
            for name, value in template.items()
        }
    if isinstance(template, list):
        return [resolve(value, document, context) for value in template]
    return template


def error_matches(names: list[str], error: str) -> bool:
    return error in names or "States.ALL" in names or ("States.TaskFailed" in names and error != "States.Timeout")


@dataclass
class Execution:
    order_id: str
    arn: str
    state: str
    document: Any
    started_at: float
    status: str = "RUNNING"  # RUNNING, WAITING (for its task token), SUCCEEDED, FAILED, ABORTED (stopped)
    retries: dict[int, int] = field(default_factory=dict)
    ready_at: float = 0.0
    token: str | None = None
    path: list[str] = field(default_factory=list)
    error: str | None = None


class StateMachine:
    """The saga's definition, checked against what this interpreter models, and run one task attempt at a time."""

    def __init__(self, definition: dict) -> None:
        unknown = set(definition) - {"StartAt", "States", "TimeoutSeconds", "Comment"}
        if unknown:
            raise NotModelled(f"definition fields {sorted(unknown)}")
        self.start, self.states, self.timeout = definition["StartAt"], definition["States"], definition.get("TimeoutSeconds")
        for name, state in self.states.items():
            kind = state["Type"]
            if kind not in _FIELDS or set(state) - _FIELDS[kind]:
                raise NotModelled(f"state {name!r}: {kind} with {sorted(set(state) - _FIELDS.get(kind, set()))}")
            for retrier in state.get("Retry", []):
                if set(retrier) - _RETRY_FIELDS or retrier.get("JitterStrategy", "NONE") not in ("NONE", "FULL"):
                    raise NotModelled(f"state {name!r}: retrier {retrier}")
            for catcher in state.get("Catch", []):
                if set(catcher) - _CATCH_FIELDS:
                    raise NotModelled(f"state {name!r}: catcher {catcher}")
            for choice in state.get("Choices", []):
                if set(choice) - _CHOICE_FIELDS or len(set(choice) & {"StringEquals", "IsPresent"}) != 1:
                    raise NotModelled(f"state {name!r}: choice rule {choice}")
            if kind == "Task":
                if not state["Resource"].endswith((LAMBDA_INVOKE, WAIT_FOR_TOKEN)):
                    raise NotModelled(f"state {name!r}: resource {state['Resource']}")
                if state["Resource"].endswith(LAMBDA_INVOKE) and "TimeoutSeconds" in state:
                    raise NotModelled(f"state {name!r}: a timeout on a function invocation")

    def must_finish(self) -> list[str]:
        """The tasks retried on any error: the failure path and the compensations."""
        return [name for name, s in self.states.items() if any("States.ALL" in r["ErrorEquals"] for r in s.get("Retry", []))]

    def attempts(self, name: str) -> int:
        """How many attempts a task has against any error: 1 and the retries of its ``States.ALL`` retrier."""
        return 1 + max((r.get("MaxAttempts", 3) for r in self.states[name].get("Retry", []) if "States.ALL" in r["ErrorEquals"]), default=0)

    def begin(self, order_id: str, arn: str, document: Any, now: float) -> Execution:
        return Execution(order_id, arn, self.start, document, started_at=now, ready_at=now, path=[self.start])

    def _enter(self, execution: Execution, name: str, document: Any) -> None:
        execution.state, execution.document, execution.retries = name, document, {}
        execution.path.append(name)

    def _next(self, execution: Execution, state: dict, document: Any) -> None:
        if state.get("End"):
            execution.document, execution.status = document, "SUCCEEDED"
        else:
            self._enter(execution, state["Next"], document)

    def advance(self, execution: Execution, world: World) -> None:
        """Run through Choice and Pass states, then one attempt of a Task (or send its task token), or to the end."""
        try:
            while execution.status == "RUNNING":
                name, state = execution.state, self.states[execution.state]
                kind, document = state["Type"], execution.document
                if kind == "Succeed":
                    execution.status = "SUCCEEDED"
                elif kind == "Fail":
                    execution.status, execution.error = "FAILED", state.get("Error")
                elif kind == "Choice":
                    chosen = next((c["Next"] for c in state["Choices"] if self._holds(c, document)), state.get("Default"))
                    if chosen is None:
                        raise RuntimeFailure(f"{name}: no choice rule matched and there is no default")
                    self._enter(execution, chosen, document)
                elif kind == "Pass":
                    result = state["Result"] if "Result" in state else read_path(document, state.get("InputPath", "$"))
                    self._next(execution, state, write_path(document, state.get("ResultPath", "$"), result))
                elif state["Resource"].endswith(WAIT_FOR_TOKEN):
                    token = f"token-{uuid.uuid4().hex}"
                    parameters = resolve(state["Parameters"], document, {"Task": {"Token": token}})
                    execution.status, execution.token = "WAITING", token
                    world.send_for_token(execution, parameters["QueueUrl"], parameters["MessageBody"], token, state.get("TimeoutSeconds"))
                    return
                else:
                    parameters = resolve(state["Parameters"], document)
                    outcome = world.invoke(execution, name, parameters["FunctionName"], parameters["Payload"])
                    if outcome[0] == "ok":
                        outcome = ("ok", {"ExecutedVersion": "$LATEST", "Payload": outcome[1], "StatusCode": 200})
                    self.settle(execution, outcome, world)
                    return
        except RuntimeFailure as failure:
            execution.status, execution.error = "FAILED", f"States.Runtime: {failure}"

    def answer(self, execution: Execution, token: str, outcome: tuple, world: World) -> bool:
        """SendTaskSuccess, SendTaskFailure or the task's timeout; False when the token is no longer awaited."""
        if execution.status != "WAITING" or execution.token != token:
            return False
        execution.status, execution.token = "RUNNING", None
        try:
            self.settle(execution, outcome, world)
        except RuntimeFailure as failure:
            execution.status, execution.error = "FAILED", f"States.Runtime: {failure}"
        return True

    def settle(self, execution: Execution, outcome: tuple, world: World) -> None:
        """The current task's outcome, ``("ok", result)`` or ``("error", name, cause)``: next state, retry, catch or fail."""
        state = self.states[execution.state]
        if outcome[0] == "ok":
            result = resolve(state["ResultSelector"], outcome[1]) if "ResultSelector" in state else outcome[1]
            self._next(execution, state, write_path(execution.document, state.get("ResultPath", "$"), result))
            return
        _, error, cause = outcome
        for index, retrier in enumerate(state.get("Retry", [])):
            if error_matches(retrier["ErrorEquals"], error):
                done = execution.retries.get(index, 0)
                if done < retrier.get("MaxAttempts", 3):
                    execution.retries[index] = done + 1
                    delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** done
                    delay = min(delay, retrier.get("MaxDelaySeconds", delay))
                    if retrier.get("JitterStrategy") == "FULL":
                        delay *= world.jitter()
                    execution.ready_at = world.now + delay
                    return
                break  # the first retrier that matches decides; once spent, the catchers get the error
        for catcher in state.get("Catch", []):
            if error_matches(catcher["ErrorEquals"], error):
                self._enter(execution, catcher["Next"], write_path(execution.document, catcher.get("ResultPath", "$"), {"Error": error, "Cause": cause}))
                return
        execution.status, execution.error = "FAILED", error

    @staticmethod
    def _holds(rule: dict, document: Any) -> bool:
        if "IsPresent" in rule:
            return has_path(document, rule["Variable"]) == rule["IsPresent"]
        return has_path(document, rule["Variable"]) and read_path(document, rule["Variable"]) == rule["StringEquals"]


# --- One example's world: every hop, its deliveries and its faults ----------------------------------------------------


@dataclass
class OrderPlan:
    lines: list[tuple[str, int]]
    total: float
    sends: int
    cancel: bool
    merchant: str


@dataclass
class Order:
    plan: OrderPlan
    key: str
    order_id: str
    answers: list[str] = field(default_factory=list)  # the 202 answers' bodies
    cancels: list[tuple[int, str, str]] = field(default_factory=list)  # (status code, the order's status before, after)
    stream: list[dict] = field(default_factory=list)  # the outbox's records of the order, in stream order
    applied_seq: int = 0
    applied_status: str | None = None
    cancel_scheduled: bool = False


@dataclass
class Action:
    label: str
    ready_at: float
    run: Callable[[], None]
    kind: str = ""


def _error(name: str, message: str) -> tuple[str, str, str]:
    return ("error", name, json.dumps({"errorType": name, "errorMessage": message}))


class World:
    """Every hop of CapstoneOrders for one example: the real handlers, moto, and the deliveries between them.

    Pending actions (requests, deliveries, saga steps, answers, late runs, the reconciler's runs) run one at a time:
    hypothesis picks among those due, and the clock moves on to the next one's time when none is.
    """

    TASK_FAULTS = ("throttled", "lost", "late", "twice", "timed_out")
    PROVIDER_FAULTS = ("timeout", "timeout_after")
    API_FAULTS = ("fail_before", "lost_after")
    PIPE_FAULTS = ("relay_fails", "partly_put", "put_twice")
    START_FAULTS = ("throttled", "lost_after")

    def __init__(
        self, env: Environment, data: Any, plans: list[OrderPlan], budgets: dict[str, int], broken: str | None = None, excluded: Any = KNOWN_BUGS
    ) -> None:
        self.env, self.data, self.budgets, self.broken, self.excluded = env, data, dict(budgets), broken, excluded
        self.now = T0
        self.pending: list[Action] = []
        self.offered: list[int] = []  # the pending actions the last choice was among
        self.trace: list[str] = []
        self.pipe_pending = self.starter_pending = self.interleaving = False
        self.pipe_queues: dict[str, list[dict]] = defaultdict(list)
        self.starter_messages: list[dict] = []
        self.executions: dict[str, Execution] = {}
        self.injected: Counter[tuple[str, str]] = Counter()  # (execution, state) -> failures made in its current visit
        customer_id = customer_id_of(CUSTOMER)
        self.orders = {order_id_for(customer_id, f"k{i}"): Order(plan, f"k{i}", order_id_for(customer_id, f"k{i}")) for i, plan in enumerate(plans)}

    # Drawing.

    def fault(self, hop: str, label: str, kinds: tuple[str, ...]) -> str | None:
        """A fault of ``kinds`` at ``hop``, or None: within the hop's budget for the example (none: a healthy hop)."""
        kinds = tuple(kind for kind in kinds if (label, kind) not in self.excluded)
        if not kinds or self.budgets.get(hop, 0) <= 0 or not self.data.draw(st.booleans(), label=f"{label}: fault?"):
            return None
        self.budgets[hop] -= 1
        return kinds[0] if len(kinds) == 1 else self.data.draw(st.sampled_from(kinds), label=label)

    def jitter(self) -> float:
        return self.data.draw(st.sampled_from([1.0, 0.5, 0.1, 0.0]), label="jitter")

    def later(self, label: str, run: Callable[[], None], at: float | None = None, kind: str = "") -> None:
        self.pending.append(Action(label, self.now if at is None else at, run, kind))

    def note(self, text: str) -> None:
        self.trace.append(f"{self.now - T0:8.2f}s {text}")

    # The loop.

    def run(self) -> None:
        """Every action, in the order drawn, until none is left; whatever fails carries the example's trace."""
        for order in self.orders.values():
            for attempt in range(order.plan.sends):
                self.later(f"POST /orders {order.key} (send {attempt + 1})", functools.partial(self.place, order))
        self.later("the reconciler's schedule", self.reconcile, at=T0 + self.env.blueprint.reconcile_every)
        try:
            for _ in range(MAX_ACTIONS):
                self.refresh()
                if not self.pending:
                    return
                self.now = max(self.now, min(action.ready_at for action in self.pending))  # the clock moves when nothing is due
                self.run_action(self.pending.pop(self.choose("next action", lambda action: True)))
            raise AssertionError(f"still busy after {MAX_ACTIONS} actions")
        except Exception as error:
            error.add_note(self.story())
            raise

    def story(self) -> str:
        return "The example, action by action:\n" + "\n".join(self.trace)

    def choose(self, label: str, allowed: Callable[[Action], bool]) -> int | None:
        """The index of a pending action due now and ``allowed``, drawn; None when there is none."""
        self.offered = [i for i, action in enumerate(self.pending) if action.ready_at <= self.now and allowed(action)]
        if len(self.offered) <= 1:
            return self.offered[0] if self.offered else None
        return self.offered[self.data.draw(st.integers(0, len(self.offered) - 1), label=label)]

    def delay(self, label: str, choices: tuple[float, ...]) -> float:
        return self.data.draw(st.sampled_from(choices), label=label)

    def run_action(self, action: Action) -> None:
        self.note(action.label)
        action.run()

    def interleave(self, where: str) -> None:
        """Maybe run another pending action now, in the middle of the handler at ``where``."""
        label = f"interleave at {where}"
        if self.interleaving or not any(a.ready_at <= self.now and (label, a.kind) not in self.excluded for a in self.pending):
            return
        if self.fault("interleave", label, ("run",)) is None:
            return
        self.interleaving = True
        try:
            action = self.pending.pop(self.choose("interleaved action", lambda action: (label, action.kind) not in self.excluded))
            self.note(f"  >> at {where}, meanwhile:")
            self.run_action(action)
            self.note("  << back")
        finally:
            self.interleaving = False

    def refresh(self) -> None:
        """The stream's new records; one pipe poll pending while records wait, one starter poll while messages do."""
        pattern = self.env.blueprint.pipe["SourceParameters"]["FilterCriteria"]["Filters"][0]["Pattern"]
        for record in self.env.read_stream() if self.env.outbox_written else []:
            order = self.orders[record["dynamodb"]["Keys"]["aggregate_id"]["S"]]
            order.stream.append(record)
            if matches_pattern(pattern, record):
                self.pipe_queues[order.order_id].append(record)
        if any(self.pipe_queues.values()) and not self.pipe_pending:
            self.pipe_pending = True
            self.later("pipe: a batch of the stream", self.pipe_batch)
        if self.starter_messages and not self.starter_pending:
            self.starter_pending = True
            self.later("saga-starts queue: a batch to the starter", self.starter_batch)

    # The order API.

    def place(self, order: Order) -> None:
        plan = order.plan
        body = {"items": [{"sku": sku, "quantity": quantity} for sku, quantity in plan.lines], "total": plan.total, "currency": "EUR"}
        fault = self.fault("api", "POST /orders", self.API_FAULTS)
        self.env.api_write_fails = fault == "fail_before"
        try:
            answer = self.env.api.lambda_handler(api_event("POST", "/orders", body=body, key=order.key), self.env.context)
        finally:
            self.env.api_write_fails = False
        self.note(f"  {answer['statusCode']}, fault: {fault}")
        if fault == "lost_after" or answer["statusCode"] == 500:  # the client saw nothing, or a 500: it sends again
            self.later(f"POST /orders {order.key} (client retry)", functools.partial(self.place, order))
            return
        assert answer["statusCode"] == 202, answer
        assert json.loads(answer["body"])["order_id"] == order.order_id
        order.answers.append(answer["body"])
        if plan.cancel and not order.cancel_scheduled:
            order.cancel_scheduled = True
            at = self.now + self.delay("the customer cancels after", (0.0, 20.0, 400.0))
            self.later(f"POST /orders/{order.key}/cancel", functools.partial(self.cancel, order), at=at, kind="cancel")

    def cancel(self, order: Order) -> None:
        before = self.env.order(order.order_id)["status"]
        answer = self.env.api.lambda_handler(api_event("POST", f"/orders/{order.order_id}/cancel"), self.env.context)
        after = self.env.order(order.order_id)["status"]
        order.cancels.append((answer["statusCode"], before, after))
        self.note(f"  {answer['statusCode']} (the order was {before}, then {after})")

    # The pipe and the bus.

    def pipe_batch(self) -> None:
        self.pipe_pending = False
        # Items by their place in the example: a replay must offer the same choices in the same order.
        queues = {order_id: list(self.pipe_queues[order_id]) for order_id in self.orders if self.pipe_queues[order_id]}
        size = self.env.blueprint.pipe["SourceParameters"]["DynamoDBStreamParameters"].get("BatchSize", 10)
        batch: list[dict] = []
        while queues and len(batch) < size:
            order_id = self.data.draw(st.sampled_from(list(queues)), label="pipe: next item") if len(queues) > 1 else next(iter(queues))
            batch.append(queues[order_id].pop(0))
            if not queues[order_id]:
                del queues[order_id]
            if queues and not self.data.draw(st.booleans(), label="pipe: batch goes on"):
                break
        fault = self.fault("pipe", "pipe batch", self.PIPE_FAULTS)
        self.note(f"  {len(batch)} records, fault: {fault}")
        if fault == "relay_fails":
            return  # nothing put: the records stay first in line
        entries = self.env.relay.lambda_handler(json.loads(json.dumps(batch)), self.env.context)
        assert len(entries) == len(batch)
        events = [self.bus_event(entry) for entry in entries]
        if fault == "partly_put":
            for event in events[: self.data.draw(st.integers(0, len(events)), label="pipe: put before failing")]:
                self.put_on_bus(event)
            return  # the batch failed: it comes again, the part already put included
        for event in events * (2 if fault == "put_twice" else 1):
            self.put_on_bus(event)
        for record in batch:
            self.pipe_queues[record["dynamodb"]["Keys"]["aggregate_id"]["S"]].remove(record)

    def bus_event(self, entry: dict) -> dict:
        target = self.env.blueprint.pipe["TargetParameters"]
        bus = target["EventBridgeEventBusParameters"]
        template = re.fullmatch(r"<(\$[.\w]*)>", target.get("InputTemplate", "<$>"))
        if template is None:
            raise NotModelled(f"pipe input template {target['InputTemplate']!r}")
        detail_type = bus["DetailType"]
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": read_path(entry, detail_type) if detail_type.startswith("$") else detail_type,
            "source": bus["Source"],
            "account": ACCOUNT_ID,
            "time": datetime.fromtimestamp(self.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [],
            "detail": read_path(entry, template.group(1)),
        }

    def put_on_bus(self, event: dict) -> None:
        order = self.orders[event["detail"]["order_id"]]
        self.later(f"status consumer: seq {event['detail']['seq']} of {order.key}", functools.partial(self.apply_status, order, event))
        for rule in self.env.blueprint.rules:
            for target in rule["Targets"] if matches_pattern(rule["EventPattern"], event) else []:
                if ref_of(target["Arn"]) == self.env.blueprint.starter_queue:
                    for _ in range(2 if self.fault("bus", "to the saga-starts queue", ("again",)) else 1):
                        self.starter_messages.append({"id": str(uuid.uuid4()), "body": json.dumps(event), "receives": 0})

    def apply_status(self, order: Order, event: dict) -> None:
        detail = event["detail"]
        if detail["seq"] > order.applied_seq:
            order.applied_seq, order.applied_status = detail["seq"], detail.get("status", "ACCEPTED")
        if self.fault("bus", "to the status consumer", ("again",)):
            self.later(f"status consumer: seq {detail['seq']} of {order.key} again", functools.partial(self.apply_status, order, event))

    # The saga starter.

    def starter_batch(self) -> None:
        self.starter_pending = False
        waiting, batch = list(self.starter_messages), []
        while waiting and len(batch) < self.env.blueprint.starter_batch_size:
            batch.append(waiting.pop(self.data.draw(st.integers(0, len(waiting) - 1), label="starter: next message") if len(waiting) > 1 else 0))
            if waiting and not self.data.draw(st.booleans(), label="starter: batch goes on"):
                break
        records = []
        for message in batch:
            message["receives"] += 1
            records.append(self.env.sqs_events.record(message["body"], queue="saga-starts", message_id=message["id"], receive_count=message["receives"]))
        try:
            answer = self.env.starter.lambda_handler({"Records": records}, self.env.context)
            failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
        except Exception as error:  # every record failed: the batch comes back whole
            self.note(f"  the batch failed: {type(error).__name__}")
            failed = {message["id"] for message in batch}
        for message in batch:
            if message["id"] not in failed:
                self.starter_messages.remove(message)
        self.note(f"  {len(batch)} messages, {len(failed)} failed")
        self.pick_up_executions()

    def start_execution(self, call: Callable[[], Any], kwargs: dict) -> Any:
        """The starter's StartExecution, with the fault drawn for it."""
        fault = self.fault("starter", "StartExecution", self.START_FAULTS)
        self.note(f"  StartExecution of {self.orders[kwargs['name']].key}, fault: {fault}")
        if fault == "throttled":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")
        result = call()
        if fault == "lost_after":
            raise ClientError({"Error": {"Code": "RequestTimeout", "Message": "the answer was lost"}}, "StartExecution")
        return result

    def pick_up_executions(self) -> None:
        """Run every execution created in moto (by the starter or the reconciler) that this world does not run yet."""
        for listed in self.env.list_executions():
            if listed["name"] not in self.executions:
                document = json.loads(self.env.stepfunctions.describe_execution(executionArn=listed["executionArn"])["input"])
                execution = self.env.machine.begin(document["order"]["order_id"], listed["executionArn"], document, self.now)
                self.executions[listed["name"]] = execution
                self.note(f"  execution {listed['name'][:12]}... of {self.orders[execution.order_id].key} starts")
                self.schedule(execution)

    def stopped(self, arn: str) -> None:
        """StopExecution (the reconciler's): the execution takes no further step; its functions still running go on."""
        for execution in self.executions.values():
            if execution.arn == arn and execution.status in ("RUNNING", "WAITING"):
                execution.status, execution.error = "ABORTED", "stopped"
                self.note(f"  saga of {self.orders[execution.order_id].key} stopped")

    # The reconciler, on its schedule.

    def reconcile(self) -> None:
        record = self.env.sqs_events.record(self.env.blueprint.reconcile_input, queue="reconcile")
        answer = self.env.reconciler.lambda_handler({"Records": [record]}, self.env.context)
        self.note(f"  {len(answer.get('batchItemFailures', []))} failed")
        self.pick_up_executions()
        self.arm_reconciler()

    def arm_reconciler(self) -> None:
        """The next run, while an order is open and its deadline may still come within a few runs."""
        stored = [self.env.order(order_id) for order_id in self.orders]
        if (
            any(order is None or order["status"] not in TERMINAL for order in stored)
            and self.now < T0 + self.env.deadline + 4 * self.env.blueprint.reconcile_every
        ):
            self.later("the reconciler's schedule", self.reconcile, at=self.now + self.env.blueprint.reconcile_every)

    # The saga.

    def schedule(self, execution: Execution) -> None:
        key = self.orders[execution.order_id].key
        if execution.status == "ABORTED":
            return
        if execution.status == "RUNNING":
            self.later(f"saga of {key}: {execution.state}", functools.partial(self.step, execution), at=execution.ready_at)
        elif execution.status in ("SUCCEEDED", "FAILED"):
            self.note(f"  saga of {key} {execution.status} {execution.error or ''}")
            if self.env.machine.timeout is not None:
                assert self.now - execution.started_at < self.env.machine.timeout, "the execution's own timeout, which is not modelled"
            self.env.stepfunctions.stop_execution(executionArn=execution.arn)  # ended: a later start of its name is refused

    def step(self, execution: Execution) -> None:
        if execution.status == "RUNNING":  # not stopped meanwhile
            self.env.machine.advance(execution, self)
            self.schedule(execution)

    def invoke(self, execution: Execution, state: str, function_name: str, payload: dict) -> tuple:
        """One attempt of a ``lambda:invoke`` task, with the fault drawn for it."""
        folder = self.env.blueprint.folders[function_name.rsplit(":", 1)[-1]]
        visit = (execution.arn, f"{state}#{len(execution.path)}")
        if state == self.broken:
            self.note(f"  {state}: fails for good")
            return _error("DependencyDown", "this compensation's dependency is down for good")
        if state in self.env.machine.must_finish() and self.injected[visit] >= self.env.machine.attempts(state) - 1:
            fault = None  # its last attempt is left alone: only ``broken`` makes a compensation fail for good
        else:
            fault = self.fault("task", f"task {state}", self.TASK_FAULTS)
        self.injected[visit] += fault is not None
        self.note(f"  {state}, fault: {fault}")
        if fault == "throttled":
            return _error("Lambda.TooManyRequestsException", "Rate exceeded")
        if fault == "late":
            late = f"late first run of {state} of {self.orders[execution.order_id].key}"
            at = self.now + self.delay("the first run ends after", (0.0, 5.0, 400.0))
            self.later(late, lambda: self.note(f"  -> {self.call(folder, payload)[:2]} (nobody waits for it)"), at=at)
            return _error("Lambda.ClientExecutionTimeoutException", "the client timed out; the function still runs")
        outcome = self.call(folder, payload)
        if fault == "twice":
            outcome = self.call(folder, payload)
        self.note(f"  -> {outcome[:2]}")
        if fault == "lost":
            return _error("Lambda.ServiceException", "the answer was lost")
        if fault == "timed_out":
            return _error("Sandbox.Timedout", "Task timed out after 30.00 seconds")
        return outcome

    def call(self, folder: str, payload: dict) -> tuple:
        """The function run as Lambda runs it: JSON in, JSON out, an exception's class name as the error."""
        try:
            result = self.env.handlers[folder].lambda_handler(json.loads(json.dumps(payload)), self.env.context)
        except Exception as error:
            return _error(type(error).__name__, str(error))
        try:
            return ("ok", json.loads(json.dumps(result)))
        except TypeError as error:
            return _error("Runtime.MarshalError", str(error))

    def send_for_token(self, execution: Execution, url: str, body: dict, token: str, timeout: int | None) -> None:
        """A message on the merchant's queue: the merchant answers as its plan says; the wait ends at its timeout."""
        assert url == self.env.merchant_queue_url and body["task_token"] == token and body["order"]["order_id"] == execution.order_id
        order = self.orders[execution.order_id]
        answers = {"accept": ["accept"], "decline": ["decline"], "silent": [], "twice": ["accept", "accept"], "accept_then_decline": ["accept", "decline"]}
        answers["late"] = ["accept"]
        after = (timeout or 0) + 1 if order.plan.merchant == "late" else 0
        for answer in answers[order.plan.merchant]:
            self.later(f"merchant of {order.key}: {answer}", functools.partial(self.merchant_answers, execution, token, answer), at=self.now + after)
        if timeout is not None:
            self.later(
                f"saga of {order.key}: the task token times out", functools.partial(self.merchant_answers, execution, token, None), at=self.now + timeout
            )

    def merchant_answers(self, execution: Execution, token: str, answer: str | None) -> None:
        outcome = {
            "accept": ("ok", {"accepted": True}),
            "decline": _error("MerchantDeclined", "closed today"),
            None: ("error", "States.Timeout", "the task token was not answered in time"),
        }[answer]
        if self.env.machine.answer(execution, token, outcome, self):
            self.schedule(execution)
        else:
            self.note("  refused: the task no longer waits for this token")

    # The provider.

    def provider(self, call: str, original: Callable[..., Any], *args: Any) -> Any:
        fault = self.fault("provider", f"provider {call}", self.PROVIDER_FAULTS)
        self.note(f"  provider {call}, fault: {fault}")
        if fault == "timeout":
            raise self.env.provider_module.ProviderTimeout("the payment provider did not answer in time")
        result = original(*args)
        self.interleave(f"provider {call}")
        if fault == "timeout_after":
            raise self.env.provider_module.ProviderTimeout("the payment provider did not answer in time")
        return result


def api_event(method: str, path: str, *, body: Any = None, key: str | None = None) -> dict:
    """An API Gateway REST proxy event (Lambda proxy integration) of the customer, signed in with IAM."""
    segments = path.strip("/").split("/")
    headers = {"Accept": "application/json", "Host": f"a1b2c3d4e5.execute-api.{REGION}.amazonaws.com", "X-Forwarded-Proto": "https"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key is not None:
        headers["Idempotency-Key"] = key
    resource = "/orders" if len(segments) == 1 else "/orders/{order_id}" + ("/cancel" if len(segments) == 3 else "")
    identity = {"accountId": ACCOUNT_ID, "userArn": CUSTOMER, "caller": "AROAEXAMPLE:shopper", "sourceIp": "203.0.113.24", "userAgent": "storefront"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"order_id": segments[1]} if len(segments) > 1 else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "accountId": ACCOUNT_ID,
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "identity": identity,
            "apiId": "a1b2c3d4e5",
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


class _Hooked:
    """``target`` with ``hook(name, call, kwargs)`` run in place of the calls named; everything else is the target's."""

    def __init__(self, target: Any, names: tuple[str, ...], hook: Callable[[str, Callable[[], Any], dict], Any]) -> None:
        self._target, self._names, self._hook = target, names, hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._names:
            return attribute
        return lambda **kwargs: self._hook(name, functools.partial(attribute, **kwargs), kwargs)


# --- The handlers, moto and the template's resources, for the whole module --------------------------------------------


class Environment:
    """moto, the handlers (with the hooks the faults go through) and the tables; ``reset`` empties them for an example."""

    def __init__(self, blueprint: Blueprint, handler_env: pytest.MonkeyPatch, load_handler: Callable, sqs_events: Any, context: Any) -> None:
        self.blueprint, self.sqs_events, self.context = blueprint, sqs_events, context
        self.machine = StateMachine(blueprint.definition)
        self.dynamodb = boto3.client("dynamodb")
        self.streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        self.stepfunctions = boto3.client("stepfunctions")
        self.world: World | None = None
        self.api_write_fails = self.outbox_written = False
        # The tables the functions here are given, and the outbox's (its stream feeds the pipe).
        self.tables = {ref_of(blueprint.pipe["Source"])} | {
            ref_of(value)
            for logical_id, folder in blueprint.folders.items()
            if folder in HANDLERS
            for value in blueprint.environments[logical_id].values()
            if isinstance(value, dict) and ref_of(value) in blueprint.tables
        }
        self._create_tables()
        self.machine_arn = self._create_state_machine()
        refs: dict[str, str] = {name: name for name in self.tables} | {blueprint.state_machine: self.machine_arn}
        kms = boto3.client("kms")

        def resolved(value: Any) -> str:
            if not isinstance(value, dict):
                return value
            logical_id = ref_of(value)
            if logical_id not in refs and logical_id in blueprint.keys:  # a key a function is given (the status tokens')
                key = blueprint.keys[logical_id]
                refs[logical_id] = kms.create_key(KeySpec=key.get("KeySpec", "SYMMETRIC_DEFAULT"), KeyUsage=key.get("KeyUsage", "ENCRYPT_DECRYPT"))[
                    "KeyMetadata"
                ]["KeyId"]
            if logical_id not in refs:
                raise NotModelled(f"a function's environment refers to {logical_id}, which this test does not create")
            return refs[logical_id]

        environment = {"DEFAULT_STOCK": str(DEFAULT_STOCK), "PROVIDER_DECLINE_ABOVE": str(DECLINE_ABOVE), "POWERTOOLS_LOG_LEVEL": "CRITICAL"}
        for logical_id, folder in blueprint.folders.items():
            if folder in (*HANDLERS, "outbox_relay"):
                for name, value in blueprint.environments[logical_id].items():
                    if not name.startswith("POWERTOOLS_"):
                        assert environment.setdefault(name, resolved(value)) == resolved(value), f"{name} differs between functions"
        for name, value in environment.items():
            handler_env.setenv(name, value)
        self.handlers = {folder: load_handler(folder) for folder in HANDLERS}
        invoked = {
            s["Parameters"]["FunctionName"].rsplit(":", 1)[-1]
            for s in self.machine.states.values()
            if s["Type"] == "Task" and s["Resource"].endswith(LAMBDA_INVOKE)
        }
        assert {blueprint.folders[logical_id] for logical_id in invoked} <= set(HANDLERS), "every function the saga invokes runs here"
        (callback,) = [s for s in self.machine.states.values() if s["Type"] == "Task" and s["Resource"].endswith(WAIT_FOR_TOKEN)]
        self.merchant_queue_url = callback["Parameters"]["QueueUrl"]
        spec = importlib.util.spec_from_file_location("outbox_relay_under_fault_injection", Path(RELAY_CODE) / "handler.py")
        self.relay = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = self.relay
        spec.loader.exec_module(self.relay)
        self._hook_handlers()

    def _hook_handlers(self) -> None:
        """The calls the faults go through: the handlers' own module objects, wrapped."""
        api, starter, payments = self.handlers["order_api"], self.handlers["saga_starter"], self.handlers["payments"]
        stock, status = self.handlers["stock_reservations"], self.handlers["order_status"]
        self.api, self.starter, self.payments = api, starter, payments
        self.provider_module = sys.modules[type(payments.gateway).__module__]
        api.store.client = _Hooked(api.store.client, ("transact_write_items", "update_item"), self._api_write)
        starter.stepfunctions = _Hooked(starter.stepfunctions, ("start_execution",), lambda name, call, kwargs: self.world.start_execution(call, kwargs))
        self.reconciler = self.handlers["order_reconciler"]
        self.reconciler.stepfunctions = _Hooked(self.reconciler.stepfunctions, ("stop_execution",), self._stop)
        # The order API sets each order's deadline, the reconciler compares it with now: both on the virtual clock.
        api.time = self.reconciler.time = SimpleNamespace(time=lambda: self.world.now)
        self.deadline = int(os.environ["ORDER_DEADLINE_SECONDS"])
        status.store.client = _Hooked(status.store.client, ("transact_write_items",), self._write("order_status"))
        stock.client = _Hooked(stock.client, ("transact_write_items",), self._write("stock_reservations"))
        stock.table = _Hooked(stock.table, ("put_item",), self._write("stock_reservations"))
        payments.payments = _Hooked(payments.payments, ("put_item",), self._write("payments"))
        gateway = payments.gateway
        calls = [name for name, value in vars(type(gateway)).items() if callable(value) and not name.startswith("_")]  # its API
        assert {"authorize", "void"} <= set(calls), calls
        for call in calls:
            original = getattr(type(gateway), call).__get__(gateway)
            setattr(gateway, call, functools.partial(lambda call, original, *args: self.world.provider(call, original, *args), call, original))
        payments.breaker.clock = lambda: self.world.now

    def _stop(self, name: str, call: Callable[[], Any], kwargs: dict) -> Any:
        result = call()
        self.world.stopped(kwargs["executionArn"])
        return result

    def list_executions(self) -> list[dict]:
        pages = self.stepfunctions.get_paginator("list_executions").paginate(stateMachineArn=self.machine_arn)
        return sorted((e for page in pages for e in page["executions"]), key=lambda e: e["startDate"])

    def _write(self, folder: str) -> Callable[[str, Callable[[], Any], dict], Any]:
        def write(name: str, call: Callable[[], Any], kwargs: dict) -> Any:
            self.world.interleave(f"{folder} {name}")
            # The outbox is written in the order API's and the status steps' transactions: the stream is read after one.
            self.outbox_written |= name == "transact_write_items" and folder in ("order_api", "order_status")
            return call()

        return write

    def _api_write(self, name: str, call: Callable[[], Any], kwargs: dict) -> Any:
        if self.api_write_fails and name == "transact_write_items":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, "TransactWriteItems")
        return self._write("order_api")(name, call, kwargs)

    def _create_tables(self) -> None:
        self.stream_arn = None
        for name, table in self.blueprint.tables.items():
            if name not in self.tables:
                continue
            options: dict[str, Any] = {}
            if table.get("GlobalSecondaryIndexes"):
                options["GlobalSecondaryIndexes"] = [
                    {k: v for k, v in index.items() if k != "ProvisionedThroughput"} for index in table["GlobalSecondaryIndexes"]
                ]
            if table.get("StreamSpecification"):
                options["StreamSpecification"] = {"StreamEnabled": True, **table["StreamSpecification"]}
            created = self.dynamodb.create_table(
                TableName=name, KeySchema=table["KeySchema"], AttributeDefinitions=table["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST", **options
            )["TableDescription"]
            if ref_of(self.blueprint.pipe["Source"]) == name:
                self.stream_arn = created["LatestStreamArn"]
        assert self.stream_arn is not None, "the pipe reads the stream of a table of the template"
        (shard,) = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        self.shard, self.last_sequence = shard["ShardId"], None

    def _create_state_machine(self) -> str:
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/saga"
        return self.stepfunctions.create_state_machine(name=STATE_MACHINE, definition=json.dumps(self.blueprint.definition), roleArn=role)["stateMachineArn"]

    def reset(self, world: World, breaker: str) -> None:
        """Empty tables, no execution, nothing at the provider; the breaker closed, one failure from open, or open."""
        self.world = world
        for name in self.tables:
            self.dynamodb.delete_table(TableName=name)
        self._create_tables()
        self.stepfunctions.delete_state_machine(stateMachineArn=self.machine_arn)
        assert self._create_state_machine() == self.machine_arn
        self.payments.gateway.authorizations.clear()
        threshold = self.payments.breaker.failure_threshold
        for _ in range({"closed": 0, "near_open": threshold - 1, "open": threshold}[breaker]):
            try:
                self.payments.breaker.call(self._time_out)
            except TimeoutError:
                pass

    def _time_out(self) -> None:
        raise self.provider_module.ProviderTimeout("another order's call timed out")

    def execution_arn(self, name: str) -> str:
        return self.machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def read_stream(self) -> list[dict]:
        """The stream's records since the last read, as the pipe gets them. A new iterator each time: moto replaces a
        table (and its stream's shard) by a copy when it rolls a transaction back, and an old iterator reads the old one."""
        records = []
        while True:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
            if self.last_sequence is not None:
                position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.last_sequence}
            iterator = self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=self.shard, **position)["ShardIterator"]
            page = self.streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
            self.last_sequence = page[-1]["dynamodb"]["SequenceNumber"] if page else self.last_sequence
            for record in page:
                stream_record = dict(record["dynamodb"])
                if isinstance(stream_record.get("ApproximateCreationDateTime"), datetime):
                    stream_record["ApproximateCreationDateTime"] = int(stream_record["ApproximateCreationDateTime"].timestamp())
                records.append(
                    {
                        "eventID": record["eventID"],
                        "eventName": record["eventName"],
                        "eventVersion": "1.1",
                        "eventSource": "aws:dynamodb",
                        "awsRegion": REGION,
                        "dynamodb": stream_record,
                        "eventSourceARN": self.stream_arn,
                    }
                )
            if len(page) < 1000:
                self.outbox_written = False
                return records

    def order(self, order_id: str) -> dict | None:
        return self.api.store.get(order_id)

    def item(self, folder: str, variable: str, key: str) -> dict | None:
        found = self.dynamodb.get_item(TableName=self.blueprint.table_of(folder, variable), Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
        return {name: next(iter(value.values())) for name, value in found.items()} if found else None

    def close(self) -> None:
        sys.modules.pop("outbox_relay_under_fault_injection", None)


def synthesized_template() -> dict:
    """CapstoneOrders (sandbox) as ``app.py`` builds it, synthesized alone: seconds, where the session's checked synth of
    every stack (compliance packs, cfn-lint) takes most of a minute; nothing read here depends on the packs."""
    from aws_cdk import App

    from messaging_constructs import Profile
    from stacks.capstone_orders import CapstoneOrdersStack

    app = App(context={"profile": "sandbox"})
    CapstoneOrdersStack(app, "CapstoneOrders", profile=Profile.of(app))
    return app.synth().get_stack_by_name("CapstoneOrders").template


@pytest.fixture(scope="module")
def environment(handler_env, load_handler, sqs_events, lambda_context):
    blueprint = Blueprint.of(synthesized_template())
    with mock_aws():
        env = Environment(blueprint, handler_env, load_handler, sqs_events, lambda_context)
        yield env
        env.close()


# --- What an example is made of ---------------------------------------------------------------------------------------

order_plans = st.builds(
    OrderPlan,
    lines=st.lists(st.tuples(st.sampled_from(["SKU-a", "SKU-b"]), st.sampled_from([1, 2, 3, DEFAULT_STOCK + 1])), min_size=1, max_size=2),
    total=st.sampled_from([12.5, 40.0, 99.0, DECLINE_ABOVE + 250.0]),
    sends=st.integers(1, 3),
    cancel=st.sampled_from([False, False, True]),
    merchant=st.sampled_from(["accept", "accept", "decline", "silent", "twice", "accept_then_decline", "late"]),
)


def run_example(environment: Environment, data: Any, hops: tuple[str, ...] = HOPS) -> World:
    """Draw an example's orders and faults, and run its world until nothing is left to deliver."""
    world = World(
        environment,
        data,
        plans=data.draw(st.lists(order_plans, min_size=1, max_size=3), label="orders"),
        budgets=data.draw(st.fixed_dictionaries({hop: st.integers(0, 3) for hop in hops}), label="faults per hop"),
        broken=data.draw(st.sampled_from(range(5)), label="a compensation fails for good?") == 4
        and data.draw(st.sampled_from(environment.machine.must_finish()), label="which")
        or None,
    )
    environment.reset(world, data.draw(st.sampled_from(["closed", "near_open", "open"]), label="breaker"))
    world.run()
    return world


# --- The invariants ---------------------------------------------------------------------------------------------------


def check(world: World) -> None:
    """Every invariant; a failure carries the example's trace."""
    try:
        _check(world)
    except AssertionError as failure:
        failure.add_note(world.story())
        raise


def _check(world: World) -> None:
    env = world.env
    held: Counter[str] = Counter()
    skus = {sku for order in world.orders.values() for sku, _ in order.plan.lines}
    names = [e["name"] for e in env.list_executions()]
    assert sorted(names) == sorted(world.executions), f"the executions in Step Functions are the ones run: {names}"
    for order in world.orders.values():
        key, order_id = order.key, order.order_id
        stored = env.order(order_id)
        assert stored is not None and stored["idempotency_key"] == key
        assert len(set(order.answers)) == 1, f"{key}: every 202 answer of one key is the same: {order.answers}"

        # One saga named after the order (the starter's, or the reconciler's if no start came); at most one more, the
        # reconciler's, when that one failed or was stopped past the deadline. The last one to start ends the order.
        sagas = {name: e for name, e in world.executions.items() if e.order_id == order_id}
        assert order_id in sagas and len(sagas) <= 2, f"{key}: one saga execution named after it, at most one other: {sorted(sagas)}"
        assert all(e.status in ("SUCCEEDED", "FAILED", "ABORTED") for e in sagas.values()), f"{key}: its sagas ended: {[e.status for e in sagas.values()]}"
        assert len(sagas) == 1 or sagas[order_id].status in ("FAILED", "ABORTED"), f"{key}: a second saga after a first that {sagas[order_id].status}"
        execution = list(sagas.values())[-1]
        paths = [state for e in sagas.values() for state in e.path]
        status = stored["status"]
        assert status in TERMINAL, f"{key}: ends in a terminal status, not {status} (saga path {paths})"

        seqs = [int(r["dynamodb"]["NewImage"]["seq"]["N"]) for r in order.stream]
        assert seqs == list(range(1, int(stored["seq"]) + 1)), f"{key}: the outbox numbers its events 1, 2, 3... in stream order: {seqs}"
        events = [json.loads(r["dynamodb"]["NewImage"]["detail"]["S"]) for r in order.stream]
        announced = ["ACCEPTED"] + [event["status"] for event in events[1:]]
        assert all(e["previous_status"] == before for e, before in zip(events[1:], announced, strict=False)), f"{key}: {announced}"
        assert [s for s in announced if s in TERMINAL] == [status] and announced[-1] == status, f"{key}: one terminal status, last: {announced}"
        assert order.applied_status == status, f"{key}: the status consumer ends on {order.applied_status}, the order is {status}"
        for code, before, after in order.cancels:
            refused = code == 409 and after in TERMINAL
            assert refused or (code == 202 and before not in TERMINAL), f"{key}: cancel answered {code}, the order {before} then {after}"

        authorizations = [a for k, a in env.payments.gateway.authorizations.items() if k == order_id]
        payment = env.item("payments", "PAYMENTS_TABLE_NAME", f"payment#{order_id}")
        reservation = env.item("stock_reservations", "STOCK_TABLE_NAME", f"reservation#{order_id}")
        lines = {line["M"]["sku"]["S"]: int(line["M"]["quantity"]["N"]) for line in (reservation or {}).get("lines", [])}
        if reservation is not None and reservation["status"] == "RESERVED":
            held.update(lines)
        if status == "CONFIRMED":
            assert len(authorizations) == 1 and not authorizations[0].voided, f"{key}: CONFIRMED, one live authorization: {authorizations}"
            assert payment and payment["status"] == "AUTHORIZED" and payment["authorization_id"] == authorizations[0].authorization_id, f"{key}: {payment}"
            wanted: Counter[str] = Counter()
            for sku, quantity in order.plan.lines:
                wanted[sku] += quantity
            assert reservation and reservation["status"] == "RESERVED" and lines == dict(wanted), f"{key}: CONFIRMED, its stock reserved: {reservation}"
            assert len(sagas) == 1 and execution.status == "SUCCEEDED", f"{key}: CONFIRMED while its saga {execution.status} ({paths})"
            assert all(code != 202 for code, *_ in order.cancels), f"{key}: CONFIRMED after its cancel was accepted: {order.cancels}"
        elif status in ("COMPENSATED", "CANCELLED"):
            assert all(a.voided for a in authorizations), (
                f"{key}: {status} with an authorization live at the provider: {authorizations}, payments table: {payment}"
            )
            assert payment is None or payment["status"] == "VOIDED", f"{key}: {status}, payment {payment}"
            assert reservation is None or reservation["status"] == "RELEASED", f"{key}: {status} with its stock reserved"
            assert execution.status == "SUCCEEDED", f"{key}: {status} while its saga {execution.status}"
            assert status == "COMPENSATED" or any(code == 202 for code, *_ in order.cancels), f"{key}: CANCELLED, never asked"
        else:
            assert world.broken in paths, f"{key}: FAILED, no compensation failed for good (saga path {paths})"
            assert execution.status == "FAILED", f"{key}: FAILED while its saga {execution.status}"
    for sku in skus:
        item = env.item("stock_reservations", "STOCK_TABLE_NAME", f"sku#{sku}")
        gone = DEFAULT_STOCK - (int(item["available"]) if item else DEFAULT_STOCK)
        assert gone == held[sku], f"{sku}: {gone} units gone, {held[sku]} held by reservations"


# --- The tests --------------------------------------------------------------------------------------------------------


# Derandomized and without a database: every run tries the same examples (ORDER_FAULT_INJECTION_EXAMPLES=500 for a
# longer search). Not shrunk: a shrink replays the handlers thousands of times; the failing example's trace
# (every action, fault and outcome) is printed instead.
@settings(
    max_examples=int(os.environ.get("ORDER_FAULT_INJECTION_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_whatever_fails_every_order_ends_once_charged_only_if_confirmed_and_nothing_held_otherwise(environment, data):
    check(run_example(environment, data))


class Scripted:
    """A ``data`` for one scenario: each draw takes the next value scripted for its label, else the simplest value
    (no fault, the first choice); the next action is the first one due but those ``held`` (label substrings), the
    one run in between (``interleave``) the first whose label has ``meanwhile``."""

    def __init__(self, script: dict[str, list[Any]], held: tuple[str, ...] = (), meanwhile: str = "") -> None:
        self.script = {label: list(values) for label, values in script.items()}
        self.held, self.meanwhile = held, meanwhile
        self.simplest: dict[str, Any] = {}
        self.world: World | None = None

    def draw(self, strategy: st.SearchStrategy, label: str | None = None) -> Any:
        if self.script.get(label or ""):
            return self.script[label].pop(0)
        if label in ("next action", "interleaved action"):  # an index among the actions offered
            labels = [self.world.pending[i].label for i in self.world.offered]
            if label == "next action":
                return next((i for i, text in enumerate(labels) if not any(held in text for held in self.held)), 0)
            return next((i for i, text in enumerate(labels) if self.meanwhile and self.meanwhile in text), 0)
        if repr(strategy) not in self.simplest:
            self.simplest[repr(strategy)] = find(strategy, lambda value: True, settings=settings(database=None))
        return self.simplest[repr(strategy)]


def scenario(
    environment: Environment, plans: list[OrderPlan], budgets: dict[str, int], data: Scripted, breaker: str = "closed", broken: str | None = None
) -> World:
    """One example, its faults and choices scripted; every fault the property leaves out allowed."""
    world = data.world = World(environment, data, plans, budgets, broken=broken, excluded=())
    environment.reset(world, breaker)
    world.run()
    return world


ONE_ORDER = [OrderPlan(lines=[("SKU-a", 1)], total=12.5, sends=1, cancel=False, merchant="accept")]


def test_the_scripted_scenario_with_no_fault_confirms_the_order(environment):
    world = scenario(environment, ONE_ORDER, {}, Scripted({}))
    check(world)
    assert environment.order(next(iter(world.orders)))["status"] == "CONFIRMED"


def test_an_authorization_whose_answer_is_lost_is_voided_when_the_saga_compensates(environment):
    world = scenario(environment, ONE_ORDER, {"provider": 1}, Scripted({"provider authorize: fault?": [True], "provider authorize": ["timeout_after"]}))
    (order,) = world.orders.values()
    assert environment.order(order.order_id)["status"] == "COMPENSATED"
    check(world)


def test_a_cancel_accepted_while_the_confirmation_is_being_written_is_honoured(environment):
    plans = [OrderPlan(lines=[("SKU-a", 1)], total=12.5, sends=1, cancel=True, merchant="accept")]
    script = {"interleave at order_status transact_write_items: fault?": [False, False, True]}
    world = scenario(environment, plans, {"interleave": 1}, Scripted(script, held=("cancel",), meanwhile="cancel"))
    check(world)


def test_a_void_is_not_abandoned_because_another_orders_timeout_opened_the_breaker(environment):
    plans = [
        OrderPlan(lines=[("SKU-a", 1)], total=12.5, sends=1, cancel=False, merchant="decline"),
        OrderPlan(lines=[("SKU-b", 1)], total=12.5, sends=1, cancel=False, merchant="accept"),
    ]
    # k0 is authorized; k1's authorization times out, the fifth failure in the window: the breaker opens for 30 s. The
    # merchant declines k0 at once: its void's 7 attempts, retried with full jitter (here drawn short), all find it open.
    script = {"provider authorize: fault?": [False, True], "provider authorize": ["timeout"], "jitter": [0.1] * 6}
    world = scenario(environment, plans, {"provider": 1}, Scripted(script), breaker="near_open")
    check(world)


def test_an_order_its_saga_left_open_is_ended_by_the_reconciler_past_its_deadline(environment):
    # Out of stock, and the compensation's status step is down: the saga gives up, and its last step, marking the order
    # FAILED, is throttled once and not retried. The order stays open until the reconciler finds it past its deadline
    # and runs the compensating saga, which ends it (FAILED again: the status step is still down).
    plans = [OrderPlan(lines=[("SKU-a", DEFAULT_STOCK + 1)], total=12.5, sends=1, cancel=False, merchant="accept")]
    script = {"task RecordFailed: fault?": [True], "task RecordFailed": ["throttled"]}
    world = scenario(environment, plans, {"task": 1}, Scripted(script), broken="RecordCompensating")
    check(world)
    (order_id,) = world.orders
    assert environment.order(order_id)["status"] == "FAILED"
    assert [(name, e.status) for name, e in world.executions.items()] == [(order_id, "FAILED"), (f"{order_id}-reconciled", "FAILED")]
    assert world.executions[f"{order_id}-reconciled"].path[:3] == ["Start", "Compensation requested", "Compensate everything"]
    assert world.now >= T0 + environment.deadline


def test_a_confirmation_that_times_out_after_its_write_ends_the_saga_as_confirmed(environment):
    # The confirmation is written, then its function times out: Sandbox.Timedout is not a transient error, so the saga
    # enters its failure path; the confirmed order answers SagaAlreadyCompleted, and the execution succeeds with nothing
    # undone (before the fix: refused 7 times in about a minute, then abandoned, FAILED and alarmed for a CONFIRMED order).
    world = scenario(environment, ONE_ORDER, {"task": 1}, Scripted({"task RecordConfirmed: fault?": [True], "task RecordConfirmed": ["timed_out"]}))
    (order_id,) = world.orders
    assert environment.order(order_id)["status"] == "CONFIRMED"
    check(world)
