"""Charge a guest for a booking and refund the charge: a step of the payment saga and its compensation, idempotent per request.

Invoked by the saga (``lambda:invoke``) with ``{"action": "charge" | "refund", "booking": {"booking_id", "guest_id",
"amount_minor", "currency"}}``. Each request has an idempotency key, derived from the booking (``charge:<booking_id>``,
``refund:<booking_id>``), so every retry and every copy of it carries the same key, to this table and to the provider.

A request runs in three phases, each write apart from the network call:

1. before the call, the request's record in the requests table (strongly consistent read): a SUCCEEDED one is
   answered from its recorded response without calling anyone (``DuplicateRequestsAnswered``); a FAILED one raises its
   recorded error again; a STARTED one whose lease has not run out means another copy is calling
   (``PaymentInProgress``, retryable). Otherwise this call takes the lease: a conditional Put of STARTED with
   ``lease_until`` (the lease outlives the function's timeout, so a live call is never overtaken);
2. the call to the provider (``payment_provider.py``), with the key;
3. after it, the outcome: SUCCEEDED with the response, or FAILED with a final error, or, for a retryable error, the
   lease given back (``lease_until`` 0) so the next attempt goes at once.

A crash between 2 and 3 leaves STARTED: the next attempt after the lease asks the provider again with the same key,
and the provider answers with the first charge. Errors, by name, for the saga: retryable ``ProviderTimeout``,
``ProviderThrottled``, ``PaymentInProgress``; final ``PaymentDeclined``, ``IdempotencyKeyReused`` (the key came with
another request) and ``InvalidSagaInput``.

``charge`` answers ``{"charge_id", "charged_minor", "currency"}``. ``refund`` gives back the charge made with the
booking's charge key (the provider cancels the key when there was none) and answers ``{"refund_id", "charged_minor",
"refunded_minor"}``, zeros and no id when nothing had been charged; it is harmless when the charge never ran.

Environment: REQUESTS_TABLE_NAME (required); LEASE_SECONDS (60); the provider's PROVIDER_DECLINE_ABOVE_MINOR,
PROVIDER_FAILURE_RATE.
"""

import os
import time
from typing import Any, Callable

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.conditions import Attr
from payment_provider import PaymentProvider, ProviderDeclined, ProviderThrottled, ProviderTimeout

from messaging_runtime.contracts.bookings import SagaBooking
from messaging_runtime.saga_steps import InvalidSagaInput, read_step

logger, tracer, metrics = Logger(), Tracer(), Metrics()
requests = boto3.resource("dynamodb").Table(os.environ["REQUESTS_TABLE_NAME"])
CHECK_FAILED = requests.meta.client.exceptions.ConditionalCheckFailedException
LEASE_SECONDS = int(os.environ.get("LEASE_SECONDS", "60"))
provider = PaymentProvider.from_environment()
# The clock the leases are read with. Tests replace it.
clock: Callable[[], float] = time.time
RETRYABLE = (ProviderTimeout, ProviderThrottled)


class PaymentDeclined(Exception):
    """The provider declined the charge (final: recorded, and raised again for every copy of the request)."""


class PaymentInProgress(Exception):
    """Another copy of the request holds the lease and is calling the provider: retry later."""


class IdempotencyKeyReused(Exception):
    """The key was recorded for another request (another amount or currency): a bug, never retried."""


def begin(key: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Phase 1: the recorded response of a request done before, or None once this call holds the lease."""
    item = requests.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
    now = clock()
    if item is not None:
        if item.get("request") != request:
            raise IdempotencyKeyReused(f"{key} was recorded for {item.get('request')}, not {request}")
        if item["status"] == "SUCCEEDED":
            metrics.add_metric(name="DuplicateRequestsAnswered", unit=MetricUnit.Count, value=1)
            return {name: int(value) if name.endswith("_minor") else value for name, value in item["response"].items()}
        if item["status"] == "FAILED":
            raise PaymentDeclined(item["error"])
        if item["lease_until"] > now:
            raise PaymentInProgress(f"{key} is being called by another attempt until {int(item['lease_until'])}")
    lease = Attr("pk").not_exists() | (Attr("status").eq("STARTED") & Attr("lease_until").lte(int(now)))
    try:
        requests.put_item(Item={"pk": key, "status": "STARTED", "request": request, "lease_until": int(now) + LEASE_SECONDS}, ConditionExpression=lease)
    except CHECK_FAILED:
        raise PaymentInProgress(f"{key}: another attempt took the lease first") from None
    return None


def end(key: str, **outcome: Any) -> None:
    """Phase 3: record the outcome (SUCCEEDED with ``response``, FAILED with ``error``) while the request is STARTED."""
    try:
        requests.update_item(
            Key={"pk": key},
            UpdateExpression="SET #status = :status, " + ", ".join(f"#{name} = :{name}" for name in outcome),
            ConditionExpression=Attr("status").eq("STARTED"),
            ExpressionAttributeNames={"#status": "status", **{f"#{name}": name for name in outcome}},
            ExpressionAttributeValues={":status": "SUCCEEDED" if "response" in outcome else "FAILED", **{f":{n}": v for n, v in outcome.items()}},
        )
    except CHECK_FAILED:  # a copy whose lease outlived ours recorded first: the provider gave it the same answer
        logger.warning("The request's outcome was recorded by another attempt", extra={"key": key})


def give_back(key: str, error: Exception) -> None:
    """Phase 3 of a retryable error: the lease goes at once, so the next attempt need not wait for it."""
    requests.update_item(
        Key={"pk": key}, UpdateExpression="SET lease_until = :zero", ConditionExpression=Attr("status").eq("STARTED"), ExpressionAttributeValues={":zero": 0}
    )
    metrics.add_metric(name="ProviderRetryableErrors", unit=MetricUnit.Count, value=1)
    logger.warning("The provider failed; the saga retries", extra={"key": key, "error": type(error).__name__})


def charge(booking: SagaBooking) -> dict[str, Any]:
    key = f"charge:{booking.booking_id}"
    recorded = begin(key, {"amount_minor": booking.amount_minor, "currency": booking.currency})
    if recorded is not None:
        return recorded
    try:
        made = provider.charge(key, booking.amount_minor, booking.currency)
    except ProviderDeclined as error:
        end(key, error=str(error))
        metrics.add_metric(name="PaymentsDeclined", unit=MetricUnit.Count, value=1)
        raise PaymentDeclined(str(error)) from None
    except RETRYABLE as error:
        give_back(key, error)
        raise
    response = {"charge_id": made.charge_id, "charged_minor": made.amount_minor, "currency": made.currency}
    end(key, response=response)
    metrics.add_metric(name="Charges", unit=MetricUnit.Count, value=1)
    return response


def refund(booking: SagaBooking) -> dict[str, Any]:
    key, charge_key = f"refund:{booking.booking_id}", f"charge:{booking.booking_id}"
    recorded = begin(key, {"charge_key": charge_key})
    if recorded is not None:
        return recorded
    try:
        made = provider.refund(key, charge_key)
    except RETRYABLE as error:
        give_back(key, error)
        raise
    amount = made.charge.amount_minor if made is not None else 0
    response = {"refund_id": made.refund_id if made is not None else None, "charged_minor": amount, "refunded_minor": amount}
    end(key, response=response)
    metrics.add_metric(name="Refunds", unit=MetricUnit.Count, value=1 if made is not None else 0)
    return response


ACTIONS = {"charge": charge, "refund": refund}


def read(event: Any) -> tuple[str, SagaBooking]:
    return read_step(event, ACTIONS, field="booking", model=SagaBooking, expected="a booking with booking_id, guest_id, amount_minor and currency")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        action, booking = read(event)
        logger.append_keys(action=action, booking_id=booking.booking_id)
        result = ACTIONS[action](booking)
    except (PaymentDeclined, PaymentInProgress, IdempotencyKeyReused, InvalidSagaInput, *RETRYABLE) as error:
        logger.warning("Payment step refused", extra={"error": type(error).__name__, "reason": str(error)})
        raise
    logger.info("Payment step done", extra=result)
    return result
