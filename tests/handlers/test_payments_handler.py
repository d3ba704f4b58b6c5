"""The saga's payment step: authorize charges once, void undoes it once, and a failing provider trips the circuit breaker.

The breaker's clock is its ``clock`` attribute (``CircuitBreaker`` reads it on each call): each test sets it to a
``Clock`` it moves by hand. Provider calls are counted by wrapping the stand-in provider's methods.
"""

import itertools
import json
from decimal import Decimal

import boto3
import pytest

from tests.handlers.record_shapes import metric_totals

PAYMENTS_TABLE = "payments"
BREAKER_TABLE = "circuit-breakers"
OPEN_SECONDS = 30
START = 1_700_000_040.0

_numbers = itertools.count(1)


def create_table(dynamodb, name):
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb.Table(name)


@pytest.fixture(scope="module")
def tables(moto_module):
    dynamodb = boto3.resource("dynamodb")
    moto_module.setenv("PAYMENTS_TABLE_NAME", PAYMENTS_TABLE)
    moto_module.setenv("BREAKER_TABLE_NAME", BREAKER_TABLE)
    moto_module.setenv("BREAKER_OPEN_SECONDS", str(OPEN_SECONDS))
    return create_table(dynamodb, PAYMENTS_TABLE), create_table(dynamodb, BREAKER_TABLE)


@pytest.fixture(scope="module")
def loaded(tables, load_function_module):
    return load_function_module("payments")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Counted:
    """Wraps a provider method: counts its calls."""

    def __init__(self, method) -> None:
        self.method, self.calls = method, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.method(*args)


@pytest.fixture
def clock(loaded, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(loaded.breaker, "clock", clock)
    return clock


@pytest.fixture
def payments(loaded, tables, clock, monkeypatch, capsys):
    """The handler with a closed breaker, a provider that answers, its calls counted, and no output left over."""
    tables[1].delete_item(Key={"pk": "circuit#payment-provider"})
    monkeypatch.setattr(loaded.gateway, "failure_rate", 0.0)
    monkeypatch.setattr(loaded.gateway, "authorize", Counted(loaded.gateway.authorize))
    monkeypatch.setattr(loaded.gateway, "void", Counted(loaded.gateway.void))
    capsys.readouterr()
    return loaded


def new_order(**overrides):
    order = {"order_id": f"o-pay-{next(_numbers)}", "customer_id": "c-0001", "items": [{"sku": "SKU-1", "quantity": 2}], "total": 12.5, "currency": "EUR"}
    return {**order, **overrides}


def invoke(handler, action, order, context):
    return handler.lambda_handler({"action": action, "order": order}, context)


def stored(tables, order):
    return tables[0].get_item(Key={"pk": f"payment#{order['order_id']}"}, ConsistentRead=True).get("Item")


def circuit_states(output: str) -> list[int]:
    """The PaymentCircuitState of each invocation, from the EMF lines Powertools printed."""
    blobs = [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]
    values = [blob["PaymentCircuitState"] for blob in blobs if "PaymentCircuitState" in blob]
    return [value for listed in values for value in (listed if isinstance(listed, list) else [listed])]


def test_authorize_charges_once_however_often_it_runs(payments, tables, lambda_context, capsys):
    order = new_order()

    results = [invoke(payments, "authorize", order, lambda_context) for _ in range(3)]

    assert len(payments.gateway.authorize.calls) == 1
    assert payments.gateway.authorize.calls[0] == (order["order_id"], Decimal("12.5"), "EUR")
    [authorization_id] = {result["authorization_id"] for result in results}
    record = stored(tables, order)
    assert (record["status"], record["authorization_id"], record["amount"], record["currency"]) == ("AUTHORIZED", authorization_id, Decimal("12.5"), "EUR")
    output = capsys.readouterr().out
    assert metric_totals(output)["Authorizations"] == 1
    assert circuit_states(output) == [0, 0, 0]


def test_a_declined_payment_raises_payment_declined_and_records_nothing(payments, tables, lambda_context, capsys):
    order = new_order(total=10_000.01)

    with pytest.raises(payments.PaymentDeclined, match="over the limit"):
        invoke(payments, "authorize", order, lambda_context)

    assert stored(tables, order) is None
    assert metric_totals(capsys.readouterr().out)["Declines"] == 1


def test_declines_do_not_open_the_breaker(payments, lambda_context, capsys):
    for _ in range(6):
        with pytest.raises(payments.PaymentDeclined):
            invoke(payments, "authorize", new_order(total=20_000), lambda_context)

    assert len(payments.gateway.authorize.calls) == 6
    assert payments.breaker.state() == "closed"
    assert circuit_states(capsys.readouterr().out) == [0] * 6


def test_timeouts_open_the_breaker_which_then_fails_fast_until_a_probe_closes_it(payments, clock, lambda_context, capsys):
    payments.gateway.failure_rate = 1.0  # every call times out
    for _ in range(5):
        with pytest.raises(payments.PaymentProviderUnavailable, match="did not answer in time"):
            invoke(payments, "authorize", new_order(), lambda_context)
    assert len(payments.gateway.authorize.calls) == 5
    assert circuit_states(capsys.readouterr().out) == [0, 0, 0, 0, 2]

    with pytest.raises(payments.PaymentProviderUnavailable, match="is open: retry after"):
        invoke(payments, "authorize", new_order(), lambda_context)
    assert len(payments.gateway.authorize.calls) == 5  # failed fast: the provider was not called
    output = capsys.readouterr().out
    assert circuit_states(output) == [2]
    assert (metric_totals(output)["CircuitOpenRefusals"], metric_totals(output)["ProviderFailures"]) == (1, 0)

    clock.now += OPEN_SECONDS - 1
    with pytest.raises(payments.PaymentProviderUnavailable, match="is open: retry after"):
        invoke(payments, "authorize", new_order(), lambda_context)
    assert len(payments.gateway.authorize.calls) == 5

    clock.now += 1
    payments.gateway.failure_rate = 0.0  # the provider is back
    capsys.readouterr()
    assert payments.breaker.state() == "half_open"
    result = invoke(payments, "authorize", new_order(), lambda_context)

    assert result["authorization_id"].startswith("auth-")
    assert len(payments.gateway.authorize.calls) == 6
    assert payments.breaker.state() == "closed"
    assert circuit_states(capsys.readouterr().out) == [0]


def test_a_failed_probe_opens_the_breaker_again(payments, clock, lambda_context, capsys):
    payments.gateway.failure_rate = 1.0
    for _ in range(5):
        with pytest.raises(payments.PaymentProviderUnavailable):
            invoke(payments, "authorize", new_order(), lambda_context)
    clock.now += OPEN_SECONDS
    capsys.readouterr()

    with pytest.raises(payments.PaymentProviderUnavailable, match="did not answer"):
        invoke(payments, "authorize", new_order(), lambda_context)

    assert len(payments.gateway.authorize.calls) == 6
    assert circuit_states(capsys.readouterr().out) == [2]


def test_void_after_authorize_voids_once_however_often_it_runs(payments, tables, lambda_context, capsys):
    order = new_order()
    authorization_id = invoke(payments, "authorize", order, lambda_context)["authorization_id"]

    results = [invoke(payments, "void", order, lambda_context) for _ in range(3)]

    assert results == [{"voided": True}, {"voided": False}, {"voided": False}]
    assert payments.gateway.void.calls == [(authorization_id,)]
    assert payments.gateway.authorizations[order["order_id"]].voided
    assert stored(tables, order)["status"] == "VOIDED"
    assert metric_totals(capsys.readouterr().out)["Voids"] == 1


def test_a_void_before_the_authorize_blocks_it_without_a_charge(payments, tables, lambda_context):
    order = new_order()

    assert invoke(payments, "void", order, lambda_context) == {"voided": False}
    for _ in range(2):
        with pytest.raises(payments.PaymentDeclined, match="voided before it was authorized"):
            invoke(payments, "authorize", order, lambda_context)

    assert payments.gateway.authorize.calls == []
    assert stored(tables, order)["status"] == "VOIDED"
    assert invoke(payments, "void", order, lambda_context) == {"voided": False}


def test_an_authorize_that_loses_the_race_to_a_void_voids_its_own_authorization(payments, tables, lambda_context):
    """The void lands between the authorize's read and its write: the authorization just made is voided, and the step declines."""
    order = new_order()
    asked = payments.gateway.authorize

    def authorize_while_voided(*args):
        invoke(payments, "void", order, lambda_context)
        return asked(*args)

    payments.gateway.authorize = authorize_while_voided

    with pytest.raises(payments.PaymentDeclined, match="voided before it was authorized"):
        invoke(payments, "authorize", order, lambda_context)

    [authorization] = [payments.gateway.authorizations[order["order_id"]]]
    assert authorization.voided
    assert payments.gateway.void.calls == [(authorization.authorization_id,)]
    assert stored(tables, order)["status"] == "VOIDED"


def test_an_authorize_that_loses_the_race_to_another_instance_keeps_the_recorded_authorization(payments, tables, lambda_context):
    """Another instance (whose stand-in provider does not share this one's memory) records its authorization first: this one's is voided."""
    order = new_order()
    asked, theirs = payments.gateway.authorize, []

    def authorize_after_another_instance(*args):
        payments.gateway.authorize = asked
        theirs.append(invoke(payments, "authorize", order, lambda_context)["authorization_id"])
        del payments.gateway.authorizations[order["order_id"]]  # not in this instance's memory
        return asked(*args)

    payments.gateway.authorize = authorize_after_another_instance

    assert invoke(payments, "authorize", order, lambda_context) == {"authorization_id": theirs[0]}

    ours = payments.gateway.authorizations[order["order_id"]]
    assert ours.authorization_id != theirs[0] and ours.voided
    assert payments.gateway.void.calls == [(ours.authorization_id,)]
    assert stored(tables, order)["authorization_id"] == theirs[0]


def test_a_void_the_provider_cannot_take_leaves_the_payment_to_void_later(payments, tables, lambda_context):
    order = new_order()
    invoke(payments, "authorize", order, lambda_context)
    payments.gateway.failure_rate = 1.0

    with pytest.raises(payments.PaymentProviderUnavailable):
        invoke(payments, "void", order, lambda_context)
    assert stored(tables, order)["status"] == "AUTHORIZED"

    payments.gateway.failure_rate = 0.0
    assert invoke(payments, "void", order, lambda_context) == {"voided": True}
    assert stored(tables, order)["status"] == "VOIDED"


GOOD = new_order()
BAD_INPUTS = {
    "not a dict": ("authorize", r'expected \{"action"'),
    "none": (None, r'expected \{"action"'),
    "unknown action": ({"action": "capture", "order": GOOD}, r'"authorize" \| "void"'),
    "no order": ({"action": "authorize"}, "expected an order with order_id"),
    "negative total": ({"action": "authorize", "order": {**GOOD, "total": -1}}, "total"),
    "total as text": ({"action": "authorize", "order": {**GOOD, "total": "12.5"}}, "total"),
    "bad currency": ({"action": "void", "order": {**GOOD, "currency": "euro"}}, "currency"),
    "no items": ({"action": "authorize", "order": {**GOOD, "items": []}}, "items"),
    "bad customer": ({"action": "authorize", "order": {**GOOD, "customer_id": "x"}}, "customer_id"),
}


@pytest.mark.parametrize(("event", "expected"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_input_the_saga_never_sends_is_refused_naming_what_was_expected(payments, tables, lambda_context, event, expected):
    with pytest.raises(payments.InvalidSagaInput, match=expected):
        payments.lambda_handler(event, lambda_context)

    assert payments.gateway.authorize.calls == []
    assert stored(tables, GOOD) is None


# --- the stand-in provider ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in(load_function_module):
    return load_function_module("payments", "provider")


def test_the_stand_in_returns_the_same_authorization_for_the_same_key_and_declines_above_its_limit(stand_in):
    provider = stand_in.PaymentProvider(decline_above=Decimal("100"))

    first = provider.authorize("o-1", Decimal("100"), "EUR")

    assert provider.authorize("o-1", Decimal("100"), "EUR") == first
    assert provider.authorize("o-2", Decimal("100"), "EUR") != first
    with pytest.raises(ValueError, match="idempotency key o-1"):
        provider.authorize("o-1", Decimal("99"), "EUR")
    with pytest.raises(stand_in.ProviderDeclined):
        provider.authorize("o-3", Decimal("100.01"), "EUR")
    provider.void(first)
    provider.void(first)
    assert provider.authorizations["o-1"].voided and not provider.authorizations["o-2"].voided


def test_the_stand_ins_failure_rate_is_the_share_of_calls_that_time_out(stand_in):
    draws = iter([0.1, 0.5, 0.29])
    provider = stand_in.PaymentProvider(decline_above=Decimal("100"), failure_rate=0.3, chance=lambda: next(draws))

    with pytest.raises(stand_in.ProviderTimeout):
        provider.authorize("o-1", Decimal("1"), "EUR")
    assert provider.authorize("o-1", Decimal("1"), "EUR").startswith("auth-")
    with pytest.raises(TimeoutError):
        provider.void("auth-x")


def test_the_stand_in_reads_its_knobs_from_the_environment(stand_in, monkeypatch):
    monkeypatch.setenv("PROVIDER_DECLINE_ABOVE", "50")
    monkeypatch.setenv("PROVIDER_FAILURE_RATE", "0.25")
    monkeypatch.setenv("PROVIDER_LATENCY_MS", "20")

    provider = stand_in.PaymentProvider.from_environment()

    assert (provider.decline_above, provider.failure_rate, provider.latency_seconds) == (Decimal("50"), 0.25, 0.02)
