"""CircuitBreaker: one DynamoDB item shared by breaker objects standing for separate Lambda instances, on moto's DynamoDB, with a hand-driven clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_runtime.circuit_breaker import STATE_VALUES, CircuitBreaker, CircuitOpenError

START = 1_700_000_040.0  # the start of a 60 s window
LIFETIME = 60 + 30 + 10 + 3600


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ProviderTimeout(Exception):
    pass


class CardDeclined(Exception):
    pass


class Crash(BaseException):
    """The instance dies mid-call (a Lambda timeout): the breaker records nothing."""


def fail():
    raise ProviderTimeout("no answer")


def decline():
    raise CardDeclined("insufficient funds")


def crash():
    raise Crash()


class Calls:
    """A function that counts its calls and returns their number."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        self.count += 1
        return self.count


class AfterRead:
    """The table as one instance sees it, with another instance's ``between`` run after its next read and before its write."""

    def __init__(self, table, between) -> None:
        self.table, self.between = table, between

    def get_item(self, **kwargs):
        item = self.table.get_item(**kwargs)
        if self.between is not None:
            between, self.between = self.between, None
            between()
        return item

    def update_item(self, **kwargs):
        return self.table.update_item(**kwargs)


@pytest.fixture(scope="module")
def dynamodb():
    """One table (with TTL on ``expires_at``) for the module: creating it takes longer than the tests."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
            monkeypatch.setenv(name, value)
        with mock_aws():
            client = boto3.client("dynamodb")
            client.create_table(
                TableName="state",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            client.update_time_to_live(TableName="state", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
            yield boto3.resource("dynamodb").Table("state")


@pytest.fixture
def table(dynamodb):
    """The table with no breaker in it."""
    for stored in dynamodb.scan(ProjectionExpression="pk")["Items"]:
        dynamodb.delete_item(Key=stored)
    return dynamodb


@pytest.fixture
def clock():
    return Clock()


def breaker(table, clock, *, name: str = "payments", **options) -> CircuitBreaker:
    """A breaker for which provider timeouts are failures (card declines are not), opening at 3 unless told."""
    options = {"failure_threshold": 3, "is_failure": lambda error: isinstance(error, ProviderTimeout), **options}
    return CircuitBreaker(table, name, clock=clock, **options)


def item(table, name: str = "payments") -> dict:
    return table.get_item(Key={"pk": f"circuit#{name}"}, ConsistentRead=True).get("Item", {})


def fail_times(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ProviderTimeout):
            cb.call(fail)


def open_breaker(table, clock) -> CircuitBreaker:
    cb = breaker(table, clock)
    fail_times(cb, 3)
    return cb


def test_a_breaker_stays_closed_below_the_threshold_and_successes_write_nothing(table, clock):
    cb = breaker(table, clock)
    assert cb.call(lambda amount: amount * 2, 21) == 42 and item(table) == {}
    fail_times(cb, 2)
    assert cb.state() == "closed" and item(table)["failures"] == 2
    counted = item(table)
    assert cb.call(Calls()) == 1 and item(table) == counted


def test_the_threshold_opens_the_breaker_which_refuses_without_calling(table, clock):
    cb = open_breaker(table, clock)
    assert cb.state() == "open" and item(table)["open_until"] == Decimal(START + 30)
    clock.advance(12)
    function = Calls()
    with pytest.raises(CircuitOpenError, match=r"^circuit payments is open: retry after 18\.000 s$") as refused:
        cb.call(function)
    assert function.count == 0 and refused.value.name == "payments" and refused.value.retry_after_seconds == 18


def test_failures_in_an_earlier_window_do_not_count_in_a_new_one(table, clock):
    cb = breaker(table, clock)
    clock.advance(58)
    fail_times(cb, 2)
    clock.advance(2)  # the next window
    fail_times(cb, 2)
    assert cb.state() == "closed" and item(table)["window_start"] == Decimal(START + 60) and item(table)["failures"] == 2
    fail_times(cb, 1)
    assert cb.state() == "open"


def test_after_the_open_period_one_probe_runs_while_another_instance_is_refused(table, clock):
    cb, other = open_breaker(table, clock), breaker(table, clock)
    clock.advance(30)
    assert cb.state() == "half_open"
    other_function = Calls()

    def probe():
        with pytest.raises(CircuitOpenError) as refused:
            other.call(other_function)
        assert refused.value.retry_after_seconds == 10 and other.state() == "half_open"
        return "charged"

    assert cb.call(probe) == "charged" and other_function.count == 0


def test_of_two_instances_that_read_the_breaker_half_open_only_the_first_to_claim_probes(table, clock):
    open_breaker(table, clock)
    clock.advance(30)
    other = breaker(table, clock)
    cb = breaker(AfterRead(table, lambda: pytest.raises(Crash, other.call, crash)), clock)
    function = Calls()
    with pytest.raises(CircuitOpenError):
        cb.call(function)
    assert function.count == 0


def test_a_successful_probe_closes_the_breaker_and_resets_the_count(table, clock):
    cb = open_breaker(table, clock)
    clock.advance(31)
    assert cb.call(Calls()) == 1 and cb.state() == "closed"
    assert "failures" not in item(table) and "window_start" not in item(table) and "probe_id" not in item(table)
    fail_times(cb, 2)
    assert cb.state() == "closed"


def test_a_failed_probe_opens_the_breaker_again(table, clock):
    cb = open_breaker(table, clock)
    clock.advance(40)
    fail_times(cb, 1)
    assert cb.state() == "open" and item(table)["open_until"] == Decimal(START + 70) and "probe_id" not in item(table)
    clock.advance(29)
    with pytest.raises(CircuitOpenError):
        cb.call(Calls())
    clock.advance(1)
    assert cb.state() == "half_open"


def test_a_lost_probe_can_be_claimed_again_after_the_probe_timeout(table, clock):
    cb, other = open_breaker(table, clock), breaker(table, clock)
    clock.advance(30)
    with pytest.raises(Crash):
        cb.call(crash)
    clock.advance(9.999)
    with pytest.raises(CircuitOpenError) as refused:
        other.call(Calls())
    assert refused.value.retry_after_seconds == pytest.approx(0.001)
    clock.advance(0.001)
    assert other.call(Calls()) == 1 and other.state() == "closed"


def test_a_late_outcome_of_a_probe_claimed_again_is_dropped(table, clock):
    cb, other = open_breaker(table, clock), breaker(table, clock)
    clock.advance(30)

    def slow_probe():
        clock.advance(10)
        assert other.call(Calls()) == 1  # the probe is lost: another instance's probe closes the breaker
        fail_times(other, 1)
        raise ProviderTimeout("answered too late")

    with pytest.raises(ProviderTimeout):
        cb.call(slow_probe)
    assert cb.state() == "closed" and item(table)["failures"] == 1


def test_errors_that_are_not_failures_pass_through_and_count_as_neither(table, clock):
    cb = breaker(table, clock)
    for _ in range(5):
        with pytest.raises(CardDeclined):
            cb.call(decline)
    assert cb.state() == "closed" and item(table) == {}
    fail_times(cb, 3)
    clock.advance(30)
    with pytest.raises(CardDeclined):
        cb.call(decline)  # the probe gives its claim back: the next caller probes
    assert cb.state() == "half_open" and "probe_id" not in item(table)
    assert cb.call(Calls()) == 1 and cb.state() == "closed"


def test_two_instances_failing_at_once_both_count(table, clock):
    other = breaker(table, clock)
    cb = breaker(AfterRead(table, lambda: fail_times(other, 1)), clock)
    fail_times(cb, 1)  # read no item; the other instance created it before this write
    assert item(table)["failures"] == 2
    cb.table.between = lambda: fail_times(other, 1)
    fail_times(cb, 1)  # read 2 failures: this one would open, but the other's opened first
    assert cb.state() == "open" and item(table)["failures"] == 3 and item(table)["open_until"] == Decimal(START + 30)


def test_a_failure_counted_in_a_stale_window_is_counted_in_the_new_one(table, clock):
    fail_times(breaker(table, clock), 2)
    clock.advance(60)
    other = breaker(table, clock)
    cb = breaker(AfterRead(table, lambda: fail_times(other, 1)), clock)
    fail_times(cb, 1)
    assert item(table)["window_start"] == Decimal(START + 60) and item(table)["failures"] == 2


def test_every_write_moves_expires_at_ahead(table, clock):
    cb = breaker(table, clock, failure_threshold=2)
    steps = [lambda: fail_times(cb, 1), lambda: fail_times(cb, 1), lambda: clock.advance(30), lambda: pytest.raises(Crash, cb.call, crash)]
    steps += [lambda: clock.advance(10), lambda: fail_times(cb, 1), lambda: clock.advance(30), lambda: cb.call(Calls())]
    for step in steps:
        before = item(table)
        step()
        if item(table) != before:
            assert item(table)["expires_at"] == int(clock.now) + LIFETIME


def test_state_reports_each_state_with_its_metric_value(table, clock):
    cb = breaker(table, clock)
    assert (cb.state(), STATE_VALUES[cb.state()]) == ("closed", 0)
    fail_times(cb, 3)
    assert (cb.state(), STATE_VALUES[cb.state()]) == ("open", 2)
    clock.advance(30)
    assert (cb.state(), STATE_VALUES[cb.state()]) == ("half_open", 1)


class Unavailable:
    """The table while DynamoDB fails the given operations."""

    def __init__(self, table, *failing: str) -> None:
        self.table, self.failing = table, failing

    def __getattr__(self, operation: str):
        if operation in self.failing:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, operation)
        return getattr(self.table, operation)


def test_a_failed_read_propagates_without_calling_the_function(table, clock):
    function = Calls()
    with pytest.raises(ClientError, match="InternalServerError"):
        breaker(Unavailable(table, "get_item"), clock).call(function)
    assert function.count == 0


def test_a_failed_write_after_the_call_is_logged_and_the_call_s_outcome_stands(table, clock, caplog):
    with pytest.raises(ProviderTimeout):
        breaker(Unavailable(table, "update_item"), clock).call(fail)
    assert "circuit payments: the outcome of a call was not recorded" in caplog.text and item(table) == {}
    open_breaker(table, clock)
    clock.advance(30)
    cb = breaker(Unavailable(table), clock)

    def charge_while_dynamodb_fails():
        cb.table.failing = ("update_item",)  # after the probe's claim
        return "charged"

    assert cb.call(charge_while_dynamodb_fails) == "charged" and "probe_id" in item(table)  # the probe is lost, and times out


@pytest.mark.parametrize(
    "options",
    [{"failure_threshold": 0}, {"failure_threshold": 2.0}, {"window_seconds": 0}, {"open_seconds": -1}, {"probe_timeout_seconds": 0.0001}],
)
def test_settings_that_cannot_work_are_refused(table, clock, options):
    with pytest.raises(ValueError):
        breaker(table, clock, **options)


@dataclass
class Model:
    """The breaker's rules in memory, for one caller at a time."""

    threshold: int
    window: int = 60
    open_period: int = 30
    probe_timeout: int = 10
    window_start: int | None = None
    failures: int = 0
    open_until: int | None = None
    probe_until: int | None = None

    def state(self, now: int) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half_open"

    def call(self, now: int, outcome: str) -> bool:
        """Whether the function is called; the outcome is recorded as the breaker would."""
        if self.open_until is not None:
            if now < self.open_until or (self.probe_until is not None and now < self.probe_until):
                return False
            self.probe_until = now + self.probe_timeout
            if outcome == "succeeds":
                self.window_start, self.failures, self.open_until, self.probe_until = None, 0, None, None
            elif outcome == "fails":
                self.open_until, self.probe_until = now + self.open_period, None
            elif outcome == "declines":
                self.probe_until = None
            return True
        if outcome == "fails":
            window = now // self.window * self.window
            self.failures = self.failures + 1 if self.window_start == window else 1
            self.window_start = window
            if self.failures >= self.threshold:
                self.open_until = now + self.open_period
        return True


_names = itertools.count()
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 5, 9, 10, 29, 30, 31, 59, 60, 61, 130]),
        st.sampled_from(["succeeds", "fails", "fails", "declines", "crashes"]),
        st.integers(0, 2),
    ),
    max_size=10,
)


@settings(max_examples=60, deadline=None)
@given(threshold=st.integers(1, 3), steps=STEPS)
def test_the_breaker_follows_its_rules_whichever_instance_calls(dynamodb, threshold, steps):
    clock = Clock(float(1_700_000_000 + 17))  # not at the start of a window
    name = f"property-{next(_names)}"  # each example its own breaker item
    instances = [breaker(dynamodb, clock, name=name, failure_threshold=threshold) for _ in range(3)]  # three Lambda instances
    model = Model(threshold)
    functions = {"succeeds": Calls(), "fails": fail, "declines": decline, "crashes": crash}
    raises = {"fails": ProviderTimeout, "declines": CardDeclined, "crashes": Crash}
    before: dict = {}
    for advance, outcome, instance in steps:
        clock.advance(advance)
        now = int(clock.now)
        called_before = functions["succeeds"].count
        expected_call = model.call(now, outcome)
        if not expected_call:
            with pytest.raises(CircuitOpenError):
                instances[instance].call(functions[outcome])
        elif outcome in raises:
            with pytest.raises(raises[outcome]):
                instances[instance].call(functions[outcome])
        else:
            instances[instance].call(functions[outcome])
        assert functions["succeeds"].count == called_before + (expected_call and outcome == "succeeds")
        assert instances[(instance + 1) % 3].state() == model.state(now)
        if not expected_call:
            continue  # a refused call writes nothing
        stored = item(dynamodb, name)
        if stored != before:  # written in this step
            assert stored["expires_at"] == now + LIFETIME
        before = stored
        assert stored.get("open_until") == model.open_until and stored.get("probe_until") == model.probe_until
        if model.open_until is None:
            assert stored.get("failures", 0) == model.failures and stored.get("window_start") == model.window_start
