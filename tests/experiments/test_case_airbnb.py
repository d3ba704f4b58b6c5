"""CaseAirbnb's experiment, "no double charge": a day of bookings with every message twice, out of order, faults everywhere.

``experiments/case_airbnb.py`` says what runs for real (the stack's handlers, DynamoDB and its streams, the
synthesized payment saga) and what is a stand-in (the provider, the pipe, the bus, the queue). The saga runs twice
over: a day of 40 bookings in moto's Step Functions (which executes the definition, one thread per execution, about
half a second each here), and a day of 150 bookings (``AIRBNB_BOOKINGS`` to change it) in the interpreter of the States Language that
CapstoneOrders' fault-injection test uses (tests/handlers/test_order_fault_injection.py: Choice, Pass, Task with
Retry, Catch and full jitter, from the same synthesized definition), one task attempt at a time, the sagas
interleaved. Asserted: no booking breaks the promise (a confirmed booking charged exactly once and not refunded, a
cancelled or failed one refunded whatever it was charged, the ledger equal to what the provider did), the ledger
rebuilt from the store equals the live one, every saga execution succeeded, and the faults and duplicates did happen
(the counts that show it are not zero). A hypothesis property does the same for small days under any schedule of
faults drawn per call. The figures are printed, never asserted.

Run: ``.venv/bin/python -m pytest -n0 tests/experiments/test_case_airbnb.py -s``
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os

import pytest
from aws_cdk import App
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import case_airbnb as experiment
from messaging_constructs import Profile
from stacks.case_airbnb import CaseAirbnbStack
from tests.experiments.figures import show
from tests.handlers.conftest import handler_environment
from tests.handlers.test_order_fault_injection import StateMachine

#: A day for ``make test``; ``AIRBNB_BOOKINGS=500`` plays a bigger one (moto's DynamoDB costs about 15 ms a call here, so
#: a booking and its ~25 calls take about 0.4 s).
BOOKINGS, MOTO_BOOKINGS = int(os.environ.get("AIRBNB_BOOKINGS", "150")), 40
SEED = 20260301
DAYS = itertools.count(1)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    app = App(outdir=str(tmp_path_factory.mktemp("airbnb-experiment")), context={"profile": "sandbox"})
    CaseAirbnbStack(app, "CaseAirbnb", profile=Profile.of(app))
    return app.synth().get_stack_by_name("CaseAirbnb").template


def report(title: str, result: experiment.Result) -> None:
    show("case-airbnb", "\n".join([f"CaseAirbnb, no double charge, {title} (this machine):", *(f"  {line}" for line in result.lines())]))


@pytest.fixture(scope="module")
def moto_day(template):
    """A smaller day whose sagas moto's Step Functions executes; its mock is closed before the interpreted world opens."""
    plans = experiment.day_of_bookings(MOTO_BOOKINGS, SEED + 1, prefix="b-m")
    # The handlers' log lines go to a buffer: the figures are what is printed.
    with handler_environment() as environment, contextlib.redirect_stdout(io.StringIO()):
        with experiment.world(template, environment) as here:
            result = here.run(plans, experiment.Schedule(seed=SEED + 1), seed=SEED + 1)
    report(f"{MOTO_BOOKINGS} bookings, the saga executed by moto's Step Functions", result)
    return result


@pytest.fixture(scope="module")
def world(template, moto_day):
    with handler_environment() as environment, contextlib.redirect_stdout(io.StringIO()):
        with experiment.world(template, environment, machine=StateMachine(json.loads(experiment.Template.of(template).definition))) as here:
            yield here


@pytest.fixture(scope="module")
def day(world):
    plans = experiment.day_of_bookings(BOOKINGS, SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        result = world.run(plans, experiment.Schedule(seed=SEED), seed=SEED)
    report(f"{BOOKINGS} bookings, the saga interpreted", result)
    return result


@pytest.mark.parametrize("which", ["moto", "interpreted"])
def test_every_booking_is_charged_once_if_confirmed_and_refunded_otherwise(which, moto_day, day):
    result, count = (moto_day, MOTO_BOOKINGS) if which == "moto" else (day, BOOKINGS)
    assert result.problems == []
    assert sum(result.statuses.values()) == count == result.ledger_rows
    if which == "interpreted":  # one thread, a seeded schedule: every outcome happens (moto's threads draw in any order)
        assert result.statuses["CONFIRMED"] and result.statuses["CANCELLED"] and result.statuses["FAILED"]
    assert result.charges >= result.statuses["CONFIRMED"] and result.refunds == result.charges - result.statuses["CONFIRMED"]


@pytest.mark.parametrize("which", ["moto", "interpreted"])
def test_the_ledger_rebuilt_from_the_event_store_equals_the_live_one(which, moto_day, day):
    assert (moto_day if which == "moto" else day).rebuild_equal


@pytest.mark.parametrize("which", ["moto", "interpreted"])
def test_every_saga_execution_succeeded(which, moto_day, day):
    result, count = (moto_day, MOTO_BOOKINGS) if which == "moto" else (day, BOOKINGS)
    assert set(result.executions) == {"SUCCEEDED"} and result.executions["SUCCEEDED"] >= count


def test_the_faults_and_duplicates_did_happen(day):
    for fault in (
        "task: Lambda.TooManyRequestsException",
        "task: Lambda.ServiceException",
        "provider.charge: ProviderTimeout after",
        "provider.charge: ProviderThrottled",
    ):
        assert day.injected[fault] > 0, fault
    assert day.prevented["charges the provider deduplicated by key"] > 0
    assert day.prevented["payment requests answered from their record"] > 0
    assert day.prevented["commands answered from their marker"] > 0
    assert day.prevented["saga starts refused (execution name)"] > 0


FAULTS = {
    "task": [None, "Lambda.TooManyRequestsException", "Lambda.ServiceException"],
    "provider.charge": [None, "ProviderThrottled", "ProviderTimeout before", "ProviderTimeout after", "crash after"],
    "provider.refund": [None, "ProviderThrottled", "ProviderTimeout after"],
}


@settings(max_examples=5, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_the_schedule_of_faults_no_booking_is_charged_twice_or_left_charged(world, data):
    scripted = {site: data.draw(st.lists(st.sampled_from(names), max_size=40), label=site) for site, names in FAULTS.items()}
    number = next(DAYS)
    plans = experiment.day_of_bookings(5, number, prefix=f"b-p{number}")
    with contextlib.redirect_stdout(io.StringIO()):
        result = world.run(plans, experiment.Schedule(scripted=scripted), seed=number)
    # A booking whose saga failed (its compensation failed after every retry) alarms and is for a person; any other problem is a bug.
    abandoned = {problem.split(":")[0] for problem in result.problems if "saga executions" in problem}
    assert [p for p in result.problems if p.split(":")[0] not in abandoned] == []
    assert result.rebuild_equal
