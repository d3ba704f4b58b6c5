"""A stand-in payment provider: charges and refunds as a card processor's API does, without moving any money.

A deployment that takes real payments replaces this module with the processor's client, keeping the two calls and
their errors. Like real processors it takes an idempotency key with every call: a charge repeated with its key returns
the first charge (the same key with another amount or currency is refused), and a refund repeated with its key returns
the first refund. A refund names the charge by the charge's idempotency key; when no charge was made with that key it
cancels the key, so a charge that arrives later (one whose request was still in flight) is declined instead of
standing unrefunded. The stand-in keeps its records in memory, per Lambda instance.

Errors: ``ProviderDeclined`` (the card or the amount was refused: final), ``ProviderTimeout`` (no answer: the call may
or may not have taken effect; repeat it with the same key), ``ProviderThrottled`` (refused before doing anything;
repeat it later). Knobs: PROVIDER_DECLINE_ABOVE_MINOR (default 1000000: a larger amount is declined) and
PROVIDER_FAILURE_RATE (default 0: the share of calls, 0 to 1, that time out without answering).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass


class ProviderDeclined(Exception):
    """The processor refused the charge: final, retrying changes nothing."""


class ProviderTimeout(TimeoutError):
    """The processor did not answer in time: whether it acted is unknown; repeat the call with the same key."""


class ProviderThrottled(Exception):
    """The processor refused the call for its rate (HTTP 429): nothing was done; repeat it later."""


@dataclass(frozen=True)
class Charge:
    charge_id: str
    key: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Refund:
    refund_id: str
    key: str
    charge: Charge


class PaymentProvider:
    """The stand-in's API: ``charge`` and ``refund``, each idempotent on its key.

    :param decline_above_minor: amounts above it are declined.
    :param failure_rate: the share of calls (0 to 1) that raise ``ProviderTimeout`` without acting. Default: 0.
    :param chance: draws a number in [0, 1) per call. Default: ``random.random``.
    """

    def __init__(self, decline_above_minor: int, failure_rate: float = 0, chance: Callable[[], float] = random.random) -> None:
        self.decline_above_minor, self.failure_rate, self.chance = decline_above_minor, failure_rate, chance
        self.charges: dict[str, Charge] = {}  # by the charge's idempotency key
        self.refunds: dict[str, Refund | None] = {}  # by the refund's idempotency key (None: nothing was charged)
        self.cancelled: set[str] = set()  # charge keys a refund found unused

    @classmethod
    def from_environment(cls) -> PaymentProvider:
        return cls(int(os.environ.get("PROVIDER_DECLINE_ABOVE_MINOR", "1000000")), float(os.environ.get("PROVIDER_FAILURE_RATE", "0")))

    def _answer(self) -> None:
        if self.failure_rate and self.chance() < self.failure_rate:
            raise ProviderTimeout("the payment provider did not answer in time")

    def charge(self, key: str, amount_minor: int, currency: str) -> Charge:
        """Charge ``amount_minor`` once for ``key``: the first call's charge for every call with it."""
        self._answer()
        known = self.charges.get(key)
        if known is not None:
            if (known.amount_minor, known.currency) != (amount_minor, currency):
                raise ProviderDeclined(f"idempotency key {key} was used for {known.amount_minor} {known.currency}, not {amount_minor} {currency}")
            return known
        if key in self.cancelled:
            raise ProviderDeclined(f"idempotency key {key} was cancelled by a refund before any charge")
        if amount_minor > self.decline_above_minor:
            raise ProviderDeclined(f"{amount_minor} {currency} is over the limit of {self.decline_above_minor}")
        charge = Charge(f"ch_{uuid.uuid4().hex[:24]}", key, amount_minor, currency)
        self.charges[key] = charge
        return charge

    def refund(self, key: str, charge_key: str) -> Refund | None:
        """Give back the whole charge made with ``charge_key``, once for ``key``; None (and the key cancelled) when there is none."""
        self._answer()
        if key in self.refunds:
            return self.refunds[key]
        charge = self.charges.get(charge_key)
        if charge is None:
            self.cancelled.add(charge_key)
        refund = Refund(f"re_{uuid.uuid4().hex[:24]}", key, charge) if charge is not None else None
        self.refunds[key] = refund
        return refund
