"""Authorize an order's payment and void it: a step of the order saga and its compensation, behind a circuit breaker.

Invoked by the saga (``lambda:invoke``) with ``{"action": "authorize" | "void", "order": {...}}`` (``order_id``,
``customer_id``, ``items``, ``total``, ``currency``). A payment is ``pk = "payment#<order_id>"``, AUTHORIZED with its
``authorization_id``, or VOIDED. ``authorize`` returns the recorded authorization, or asks the provider (``provider.py``;
the order id is the idempotency key) through the circuit breaker "payment-provider" and records it:
``{"authorization_id": ...}``. ``void`` voids it at the provider and marks it VOIDED, or with no record writes a VOIDED
one, so that a later authorize charges nothing (after voiding at the provider whatever the order id, its idempotency key,
still holds: an authorization whose answer was lost): ``{"voided": bool}``. Voids go to the provider without the
breaker, so that an open breaker never leaves a hold in place. Both are idempotent. Errors the saga tells apart:
``PaymentDeclined`` (declined, or voided first), ``PaymentProviderUnavailable`` (a timeout, or the breaker open: not
asked), ``InvalidSagaInput``; others propagate. The breaker counts timeouts and connection errors, not declines.
Metrics: ``PaymentCircuitState`` (0 closed, 1 half-open, 2 open) on each invocation; Authorizations, Declines,
ProviderFailures, CircuitOpenRefusals, Voids.

Environment: PAYMENTS_TABLE_NAME, BREAKER_TABLE_NAME (required); BREAKER_FAILURE_THRESHOLD (5), BREAKER_WINDOW_SECONDS
(60), BREAKER_OPEN_SECONDS (30); the provider's PROVIDER_DECLINE_ABOVE, PROVIDER_FAILURE_RATE, PROVIDER_LATENCY_MS.
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.conditions import Attr
from provider import PaymentProvider, ProviderDeclined

from messaging_runtime.circuit_breaker import STATE_VALUES, CircuitBreaker, CircuitOpenError
from messaging_runtime.contracts.checkout import SagaOrder
from messaging_runtime.saga_steps import InvalidSagaInput, run_step  # noqa: F401 - InvalidSagaInput: an error the saga names

logger, tracer, metrics = Logger(), Tracer(), Metrics()
dynamodb = boto3.resource("dynamodb")
payments = dynamodb.Table(os.environ["PAYMENTS_TABLE_NAME"])
gateway = PaymentProvider.from_environment()
env = os.environ.get
limits = {"failure_threshold": int(env("BREAKER_FAILURE_THRESHOLD", "5")), "window_seconds": float(env("BREAKER_WINDOW_SECONDS", "60"))}
limits["open_seconds"] = float(env("BREAKER_OPEN_SECONDS", "30"))
limits["is_failure"] = lambda error: isinstance(error, (TimeoutError, ConnectionError))  # the provider's fault; a decline is an answer
breaker = CircuitBreaker(dynamodb.Table(os.environ["BREAKER_TABLE_NAME"]), "payment-provider", **limits)
CHECK_FAILED = payments.meta.client.exceptions.ConditionalCheckFailedException


class PaymentDeclined(Exception):
    """The provider declined the payment, or it was voided before it was authorized."""


class PaymentProviderUnavailable(Exception):
    """The provider did not answer, or the circuit breaker is open and it was not asked."""


def ask_provider(call: Any, *args: Any) -> Any:
    """``call(*args)`` through the breaker, its errors turned into the saga's."""
    try:
        return breaker.call(call, *args)
    except (ProviderDeclined, CircuitOpenError, TimeoutError, ConnectionError) as error:
        declined = isinstance(error, ProviderDeclined)
        failure = "Declines" if declined else "CircuitOpenRefusals" if isinstance(error, CircuitOpenError) else "ProviderFailures"
        metrics.add_metric(name=failure, unit=MetricUnit.Count, value=1)
        raise (PaymentDeclined if declined else PaymentProviderUnavailable)(f"the payment provider: {error}") from None


def record(order: SagaOrder) -> dict[str, Any] | None:
    return payments.get_item(Key={"pk": f"payment#{order.order_id}"}, ConsistentRead=True).get("Item")


@tracer.capture_method
def authorize(order: SagaOrder) -> dict[str, Any]:
    found = record(order)
    if found is None:
        authorization_id = ask_provider(gateway.authorize, order.order_id, order.total, order.currency)
        item = {"pk": f"payment#{order.order_id}", "status": "AUTHORIZED", "authorization_id": authorization_id, "amount": order.total}
        try:  # a concurrent authorize of this order got the same id from the provider, and may write it too
            same = Attr("status").eq("AUTHORIZED") & Attr("authorization_id").eq(authorization_id)
            payments.put_item(Item={**item, "currency": order.currency}, ConditionExpression=Attr("pk").not_exists() | same)
            metrics.add_metric(name="Authorizations", unit=MetricUnit.Count, value=1)
            return {"authorization_id": authorization_id}
        except CHECK_FAILED:  # a void (or an authorize with another id) got there first: this authorization must not stand
            found = record(order)
            ask_directly(gateway.void, authorization_id)
    if found["status"] == "VOIDED":
        raise PaymentDeclined(f"order {order.order_id}: voided before it was authorized")
    return {"authorization_id": found["authorization_id"]}


def ask_directly(call: Any, *args: Any) -> Any:
    """``call(*args)`` without the breaker: a void must go through even while new authorizations fail fast."""
    try:
        return call(*args)
    except (TimeoutError, ConnectionError) as error:
        metrics.add_metric(name="ProviderFailures", unit=MetricUnit.Count, value=1)
        raise PaymentProviderUnavailable(f"the payment provider: {error}") from None


@tracer.capture_method
def void(order: SagaOrder) -> dict[str, Any]:
    found = record(order)
    try:
        if found is None:  # never recorded: an authorization whose answer was lost may still hold; then a tombstone
            released = ask_directly(gateway.void_by_key, order.order_id)
            payments.put_item(Item={"pk": f"payment#{order.order_id}", "status": "VOIDED"}, ConditionExpression=Attr("pk").not_exists())
            return {"voided": released}
        if found["status"] == "VOIDED":
            return {"voided": False}
        ask_directly(gateway.void, found["authorization_id"])
        payments.put_item(Item={**found, "status": "VOIDED"}, ConditionExpression=Attr("status").eq("AUTHORIZED"))
    except CHECK_FAILED:
        return void(order)  # an authorize or another void got there first: the record only moves forward, read it again
    metrics.add_metric(name="Voids", unit=MetricUnit.Count, value=1)
    return {"voided": True}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        return run_step(
            event, {"authorize": authorize, "void": void}, refused=(PaymentDeclined, PaymentProviderUnavailable), logger=logger, what="Payment step"
        )
    finally:  # the breaker's state after this call; a failure to read it must not replace the step's own outcome
        try:
            metrics.add_metric(name="PaymentCircuitState", unit=MetricUnit.NoUnit, value=STATE_VALUES[breaker.state()])
        except Exception:
            logger.warning("The circuit breaker's state could not be read", exc_info=True)
