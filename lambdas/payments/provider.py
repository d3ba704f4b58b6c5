"""A stand-in payment provider: authorize and void as a real provider's API does, without moving any money.

A deployment that takes real payments replaces this module with the provider's client, keeping the two calls and
their errors. Like a real provider, it takes an idempotency key with each authorization (the order id): a repeated
authorize with the same key returns the same authorization id, and one with the same key but another amount or
currency is refused. Authorizations are kept in memory, per Lambda instance, which is enough for a stand-in.

Knobs, for trying the saga and the circuit breaker out: PROVIDER_DECLINE_ABOVE (default 10000: a larger amount is
declined), PROVIDER_FAILURE_RATE (default 0: the share of calls, 0 to 1, that raise ``ProviderTimeout`` instead of
answering) and PROVIDER_LATENCY_MS (default 0: how long each call takes).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal


class ProviderDeclined(Exception):
    """The provider refused the payment (amount over the limit, card refused): not a fault of the provider."""


class ProviderTimeout(TimeoutError):
    """The provider did not answer in time: whether it acted is unknown, and the call may be repeated with the same key."""


@dataclass
class Authorization:
    authorization_id: str
    amount: Decimal
    currency: str
    voided: bool = False


class PaymentProvider:
    """The stand-in's API.

    :param decline_above: amounts above it are declined.
    :param failure_rate: the share of calls (0 to 1) that raise ``ProviderTimeout``. Default: 0.
    :param latency_seconds: how long each call takes. Default: 0.
    :param chance: draws a number in [0, 1) for each call. Default: ``random.random``.
    """

    def __init__(self, decline_above: Decimal, failure_rate: float = 0, latency_seconds: float = 0, chance: Callable[[], float] = random.random) -> None:
        self.decline_above, self.failure_rate, self.latency_seconds, self.chance = decline_above, failure_rate, latency_seconds, chance
        self.authorizations: dict[str, Authorization] = {}  # by idempotency key

    @classmethod
    def from_environment(cls) -> PaymentProvider:
        return cls(
            decline_above=Decimal(os.environ.get("PROVIDER_DECLINE_ABOVE", "10000")),
            failure_rate=float(os.environ.get("PROVIDER_FAILURE_RATE", "0")),
            latency_seconds=int(os.environ.get("PROVIDER_LATENCY_MS", "0")) / 1000,
        )

    def _answer(self) -> None:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        if self.failure_rate and self.chance() < self.failure_rate:
            raise ProviderTimeout("the payment provider did not answer in time")

    def authorize(self, key: str, amount: Decimal, currency: str) -> str:
        """Hold ``amount`` on the customer's card: the authorization id, the same for every call with ``key``."""
        self._answer()
        known = self.authorizations.get(key)
        if known is not None:
            if (known.amount, known.currency) != (amount, currency):
                raise ValueError(f"idempotency key {key} was used for {known.amount} {known.currency}, not {amount} {currency}")
            return known.authorization_id
        if amount > self.decline_above:
            raise ProviderDeclined(f"{amount} {currency} is over the limit of {self.decline_above}")
        authorization = Authorization(f"auth-{uuid.uuid4().hex}", amount, currency)
        self.authorizations[key] = authorization
        return authorization.authorization_id

    def void(self, authorization_id: str) -> None:
        """Release the hold; voiding one already voided does nothing. An id it never gave (another instance's) is taken as voided."""
        self._answer()
        for authorization in self.authorizations.values():
            if authorization.authorization_id == authorization_id:
                authorization.voided = True

    def void_by_key(self, key: str) -> bool:
        """Release the hold made with idempotency ``key``, if there is one (an authorization whose answer was lost): whether one was."""
        self._answer()
        authorization = self.authorizations.get(key)
        if authorization is not None:
            authorization.voided = True
        return authorization is not None
