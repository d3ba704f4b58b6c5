"""What the tests of Exercise 01's four consumers share: the order message's bad values, and the checks every consumer passes.

Each consumer's test file makes a module-scoped ``consumer`` fixture (a ``Consumer``)
and subclasses ``EveryConsumer`` once; pytest then runs these checks against that
consumer, next to the tests of its own logic. They show that the handler wires
``messaging_runtime.batch`` and the order contract as its queue needs: what cannot
be read fails only its record, with its reason, and is counted; what Lambda can
never name fails the invocation; counts and the summary line are per batch.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.contracts import EventKind, OneOf
from tests.handlers.record_shapes import (
    NOT_AN_OBJECT,
    NOT_AN_OBJECT_IDS,
    UNNAMEABLE_SQS_RECORD_IDS,
    UNNAMEABLE_SQS_RECORDS,
    metric_totals,
    unnameable_sqs_event,
)

# One test method runs for each consumer's subclass (a different executor each time); with no example
# database there is nothing to replay across them, so that health check does not apply.
FAST = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])

#: Wrong values for each field of the order message contract, which every consumer reads whole.
BAD_VALUES: dict[str, list[Any]] = {
    "event_id": ["not-a-uuid", 42, ""],
    "event_type": ["OrderShipped", "orderplaced", ""],
    "version": [0, 2, "1", 1.5],
    "order_id": ["", "42", 42, "o-", "o-with space"],
    "customer_id": ["", 42, "customer"],
    "total": [-1, -0.01, "12.50", "twelve", 1e400],
    "currency": ["eur", "EURO", "", 978],
    "occurred_at": ["yesterday", "2025-03-14T09:26:53", 1_741_944_413],
}


def failures(*message_ids: str) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def emitted_metrics(output: str) -> dict[str, list[float]]:
    """{metric name: every value written} over the EMF lines Powertools printed (one value per ``add_metric``)."""
    values: dict[str, list[float]] = defaultdict(list)
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    values[metric["Name"]] += value if isinstance(value, list) else [value]
    return dict(values)


def emitted_totals(output: str) -> Counter:
    """{metric name: the sum of every value written}; a metric never written counts 0."""
    return Counter({name: sum(values) for name, values in emitted_metrics(output).items()})


@dataclass(frozen=True)
class Consumer:
    """One consumer under test.

    :param module: its loaded handler module.
    :param queue: the queue it reads (a name ending in ``.fifo`` makes FIFO records).
    :param counted: the count its effect adds to for each good record (an ``OrderPlaced`` one).
    :param effect_line: (level, message) of the line its effect writes per record, or None.
    :param accepted: overrides that make ``new_order()`` an order it accepts. Default: none.
    :param valid: keyword arguments of ``order_strategies.valid_order`` for the orders it accepts. Default: none.
    :param bad_values: wrong values besides ``BAD_VALUES``. Default: none.
    """

    module: ModuleType
    queue: str
    counted: str
    effect_line: tuple[str, str] | None
    accepted: dict[str, Any] = field(default_factory=dict)
    valid: dict[str, Any] = field(default_factory=dict)
    bad_values: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        return self.queue.endswith(".fifo")

    def order(self, new_order: Any, **overrides: Any) -> dict[str, Any]:
        return new_order(**{**self.accepted, **overrides})

    def record(self, sqs_events: Any, order: dict[str, Any], **options: Any) -> dict[str, Any]:
        """A record of ``order``; on FIFO, in its customer's message group."""
        return sqs_events.order_record(order, queue=self.queue, **options)

    def body_record(self, sqs_events: Any, body: str) -> dict[str, Any]:
        """A record of any body; on FIFO, in a message group of its own."""
        return sqs_events.record(body, queue=self.queue, group_id="c-other" if self.fifo else None)

    def expected_failures(self, records: list[dict[str, Any]], bad_indexes: set[int]) -> list[str]:
        """The bad records; on FIFO also every later record of a message group that already failed."""
        failed, failed_groups = [], set()
        for index, record in enumerate(records):
            group = record["attributes"].get("MessageGroupId")
            if index in bad_indexes or (self.fifo and group in failed_groups):
                failed.append(record["messageId"])
                failed_groups.add(group)
        return failed

    def run(self, sqs_events: Any, records: list[dict[str, Any]], lambda_context: Any) -> dict[str, Any]:
        return self.module.lambda_handler(sqs_events.event(records), lambda_context)

    def spy(self, monkeypatch: pytest.MonkeyPatch, effect: str, key: str = "order_id") -> list[Any]:
        """Wrap the handler's one-argument ``effect`` function; returns the list that gets ``key`` of each call's argument, in order."""
        calls: list[Any] = []
        real = getattr(self.module, effect)

        def spying(item: Any) -> Any:
            calls.append(str(getattr(item, key)))
            return real(item)

        monkeypatch.setattr(self.module, effect, spying)
        return calls


def _rejected(logs: list[logging.LogRecord]) -> logging.LogRecord:
    [rejected] = [r for r in logs if r.getMessage() == "Rejected record"]
    return rejected


class EveryConsumer:
    """The checks every Exercise 01 consumer passes; subclass once as ``Test...`` next to a ``consumer`` fixture."""

    @FAST
    @given(data=st.data())
    def test_no_record_is_lost_whatever_the_bodies(self, consumer, sqs_events, order_strategies, lambda_context, data):
        valid = order_strategies.valid_order(**consumer.valid)
        bad_values = {name: BAD_VALUES.get(name, []) + consumer.bad_values.get(name, []) for name in BAD_VALUES.keys() | consumer.bad_values.keys()}
        good = valid.map(lambda order: (True, order))
        bad = order_strategies.bad_body(bad_values, valid).map(lambda body: (False, body))
        items = data.draw(st.lists(good | bad, min_size=1, max_size=8))
        records = [consumer.record(sqs_events, value) if is_good else consumer.body_record(sqs_events, value) for is_good, value in items]

        response = consumer.run(sqs_events, records, lambda_context)

        assert response == failures(*consumer.expected_failures(records, {i for i, (is_good, _) in enumerate(items) if not is_good}))

    def test_a_rejected_record_is_logged_with_its_reason_and_counted(self, consumer, sqs_events, new_order, lambda_context, log_records, capsys):
        logs = log_records(consumer.module)
        bad = consumer.record(sqs_events, consumer.order(new_order, version=7), receive_count=3)
        capsys.readouterr()

        assert consumer.run(sqs_events, [bad], lambda_context) == failures(bad["messageId"])

        rejected = _rejected(logs)
        assert (rejected.message_id, rejected.receive_count, rejected.reason) == (bad["messageId"], 3, "version: Input should be 1")
        totals = metric_totals(capsys.readouterr().out)
        assert (totals["RejectedRecords"], totals["FailedRecords"], totals[consumer.counted]) == (1, 1, 0)

    def test_a_batch_of_only_bad_records_is_reported_not_raised(self, consumer, sqs_events, lambda_context):
        records = [consumer.body_record(sqs_events, "{"), consumer.body_record(sqs_events, "null")]

        assert consumer.run(sqs_events, records, lambda_context) == failures(*(record["messageId"] for record in records))

    def test_a_batch_logs_its_counts_once_and_per_record_only_its_effect(self, consumer, sqs_events, new_order, lambda_context, log_records, capsys):
        logs = log_records(consumer.module)
        records = [consumer.record(sqs_events, consumer.order(new_order)) for _ in range(5)]
        capsys.readouterr()

        assert consumer.run(sqs_events, records, lambda_context) == failures()

        lines = [(r.levelname, r.getMessage()) for r in logs if r.levelno >= logging.INFO]
        assert lines == ([consumer.effect_line] * 5 if consumer.effect_line else []) + [("INFO", "Batch processed")]
        [summary] = [r for r in logs if r.getMessage() == "Batch processed"]
        assert (summary.records, getattr(summary, consumer.counted), summary.FailedRecords, summary.RejectedRecords) == (5, 5, 0, 0)
        emitted = emitted_metrics(capsys.readouterr().out)
        emitted.pop("ColdStart", None)
        assert emitted == {consumer.counted: [5], "FailedRecords": [0], "RejectedRecords": [0]}

    # --- input no batch may fail on: too deep, not an object, unreadable, records Lambda never sends -----------

    @pytest.mark.parametrize(("body", "reason"), NOT_AN_OBJECT, ids=NOT_AN_OBJECT_IDS)
    def test_a_body_nested_too_deeply_or_not_an_object_fails_only_its_record_with_its_reason(
        self, consumer, sqs_events, new_order, lambda_context, log_records, capsys, body, reason
    ):
        logs = log_records(consumer.module)
        bad, good = consumer.body_record(sqs_events, body), consumer.record(sqs_events, consumer.order(new_order))
        capsys.readouterr()

        assert consumer.run(sqs_events, [bad, good], lambda_context) == failures(bad["messageId"])

        rejected = _rejected(logs)
        assert rejected.message_id == bad["messageId"] and reason in rejected.reason
        assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1

    def test_a_record_without_a_body_fails_with_that_reason(self, consumer, sqs_events, new_order, lambda_context, log_records):
        logs = log_records(consumer.module)
        bad, good = (consumer.record(sqs_events, consumer.order(new_order, order_id=f"o-{n}")) for n in ("unreadable", "fine"))
        del bad["body"]

        assert consumer.run(sqs_events, [bad, good], lambda_context) == failures(bad["messageId"])

        assert (_rejected(logs).message_id, _rejected(logs).reason) == (bad["messageId"], "the record has no body")

    def test_any_exception_while_reading_a_record_is_that_records_failure(
        self, consumer, sqs_events, new_order, lambda_context, log_records, capsys, monkeypatch
    ):
        for reader in (EventKind, OneOf):  # what every order contract reads with

            def reading(kind, data, real=reader.parse):
                if "o-unreadable" in str(data):
                    raise RecursionError("maximum recursion depth exceeded")
                return real(kind, data)

            monkeypatch.setattr(reader, "parse", reading)
        logs = log_records(consumer.module)
        bad, good = (consumer.record(sqs_events, consumer.order(new_order, order_id=f"o-{n}")) for n in ("unreadable", "fine"))
        capsys.readouterr()

        assert consumer.run(sqs_events, [bad, good], lambda_context) == failures(bad["messageId"])

        rejected = _rejected(logs)
        assert (rejected.message_id, rejected.reason) == (bad["messageId"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
        assert metric_totals(capsys.readouterr().out)["RejectedRecords"] == 1

    @pytest.mark.parametrize(("shape", "expected"), UNNAMEABLE_SQS_RECORDS, ids=UNNAMEABLE_SQS_RECORD_IDS)
    def test_fails_when_a_record_cannot_be_named_in_the_response(self, consumer, sqs_events, new_order, lambda_context, shape, expected):
        # Lambda names a failed SQS record by its messageId: without one it can be neither reported nor retried alone.
        with pytest.raises(ValueError, match=expected):
            consumer.module.lambda_handler(unnameable_sqs_event(consumer.record(sqs_events, consumer.order(new_order)), shape), lambda_context)
