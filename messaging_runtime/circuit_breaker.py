"""A circuit breaker whose state lives in DynamoDB, shared by every Lambda instance that calls one dependency.

Each Lambda instance that calls a payment provider sees only its own calls; a
breaker kept in memory opens only after every instance has had its own run of
failures, and forgets everything on a cold start. Kept in one DynamoDB item,
the breaker counts the failures of all of them and fails fast for all of them
at once::

    breaker = CircuitBreaker(table, "payments", is_failure=lambda error: isinstance(error, ProviderUnavailable))
    try:
        charge = breaker.call(provider.charge, order_id, amount)
    except CircuitOpenError as refused:   # the provider was not called
        ...                               # fail the record, so that it is retried after refused.retry_after_seconds

States:

- closed: calls go through. A failure (an exception for which ``is_failure`` is
  True: a provider timeout, not a card decline) is counted in the current
  window; windows are fixed, aligned to ``window_seconds``, and the first
  failure of a new window starts the count again at 1. The failure that brings
  the count to ``failure_threshold`` opens the breaker for ``open_seconds``.
- open: ``call`` raises ``CircuitOpenError`` without calling the function.
- half-open: once the open period is over, the next caller claims the probe
  (one conditional write, which only one instance wins) and calls the function;
  the others are refused while it runs. Its success closes the breaker with the
  count reset; its failure opens it again for ``open_seconds``; an exception
  that is not a failure gives the claim back, so that the next caller probes.
  A probe that never reports (its instance timed out or crashed) may be claimed
  again ``probe_timeout_seconds`` after it was claimed; a late outcome of a probe
  that has been claimed again by then is dropped.

Every change is a conditional update, so that instances racing cannot corrupt
the item: two failures at once both count (``ADD``, and a retry after a
consistent read when the condition no longer holds), a failure counted after
the breaker opened is dropped, and two probes cannot both run. The failure that
opens the breaker adds to the count and opens it in the same write.

The item (partition key ``pk``, a string; the table's TTL attribute ``expires_at``):

- ``pk``: ``circuit#<name>``;
- ``window_start`` and ``failures``: the current window (epoch seconds) and its
  count; absent until the first failure and after a probe closes the breaker;
- ``open_until``: epoch seconds; present while open (before it) or half-open
  (after it), absent while closed;
- ``probe_id`` and ``probe_until``: the probe in flight and when it counts as lost;
- ``expires_at``: epoch seconds, ``window_seconds + open_seconds +
  probe_timeout_seconds`` and an hour ahead of every write, so that the item of
  a breaker nobody calls goes by itself (the next call finds it closed).

Times are stored to the millisecond. The state does not depend on whether
DynamoDB has deleted an expired item yet: one still there is read as it is.

Cost per call: one eventually consistent GetItem (half a read unit). Successes
while closed write nothing; each failure, probe and probe outcome is one
UpdateItem (a lost race adds a consistent GetItem and another UpdateItem).

A DynamoDB error (other than a failed condition) on the read, or on claiming the
probe, propagates before the function is called: the breaker cannot tell
whether the call is allowed, and the caller's retry (the record's redelivery)
handles it like any other transient error. Once the function has run, a
DynamoDB error recording its outcome is logged and dropped, so that the caller
gets the function's own result or exception: a payment that went through is
not reported as failed because its outcome could not be counted.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal, TypeVar

from botocore.exceptions import ClientError

State = Literal["closed", "open", "half_open"]

#: The state as a number, for a CloudWatch metric (alarm on ``>= 1``: the breaker is not closed).
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}

#: How many times a failure is counted again after another instance changed the item first.
_ATTEMPTS = 8
#: How long an item outlives its last write, beyond the breaker's own periods (seconds).
_GRACE_SECONDS = 3600
_MILLISECOND = Decimal("0.001")

T = TypeVar("T")
logger = logging.getLogger(__name__)


class CircuitOpenError(Exception):
    """The breaker refused the call: the function was not called.

    :ivar name: the breaker's name.
    :ivar retry_after_seconds: how long until the breaker may let a call through again (the end of the open period,
        or of the probe in flight); 0 when a probe has just settled.
    """

    def __init__(self, name: str, retry_after_seconds: float) -> None:
        self.name = name
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"circuit {name} is open: retry after {retry_after_seconds:.3f} s")


def _every_error(error: Exception) -> bool:
    return True


def _seconds(value: float) -> Decimal:
    """Epoch seconds (or a duration) to the millisecond, as DynamoDB numbers are written and compared."""
    return Decimal(str(value)).quantize(_MILLISECOND)


def _conditional_check_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class CircuitBreaker:
    """A circuit breaker kept in one DynamoDB item, for every instance that calls one dependency.

    :param table: a boto3 DynamoDB ``Table`` resource whose partition key is the string attribute ``pk`` and whose TTL
        attribute is ``expires_at``. Required.
    :param name: the breaker's name; the item is ``pk = "circuit#<name>"``. Required.
    :param failure_threshold: failures in one window that open the breaker. Default: 5.
    :param window_seconds: the length of the fixed windows in which failures are counted. Default: 60.
    :param open_seconds: how long the breaker stays open before a probe may run. Default: 30.
    :param probe_timeout_seconds: how long after its claim a probe that has not reported may be claimed again.
        Default: 10 (set it above the dependency's own timeout).
    :param is_failure: whether an exception from the function counts against the dependency. Default: every exception.
    :param clock: epoch seconds now. Default: ``time.time``.
    """

    def __init__(
        self,
        table: Any,
        name: str,
        *,
        failure_threshold: int = 5,
        window_seconds: float = 60,
        open_seconds: float = 30,
        probe_timeout_seconds: float = 10,
        is_failure: Callable[[Exception], bool] = _every_error,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if type(failure_threshold) is not int or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a whole number from 1, got {failure_threshold!r}")
        for label, value in {"window_seconds": window_seconds, "open_seconds": open_seconds, "probe_timeout_seconds": probe_timeout_seconds}.items():
            if value < 0.001:
                raise ValueError(f"{label} must be at least a millisecond, got {value!r}")
        self.table = table
        self.name = name
        self.key = {"pk": f"circuit#{name}"}
        self.failure_threshold = failure_threshold
        self.window_seconds = _seconds(window_seconds)
        self.open_seconds = _seconds(open_seconds)
        self.probe_timeout_seconds = _seconds(probe_timeout_seconds)
        self.is_failure = is_failure
        self.clock = clock
        self.lifetime_seconds = math.ceil(window_seconds + open_seconds + probe_timeout_seconds) + _GRACE_SECONDS

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` if the breaker lets it through: its result, or its exception once recorded.

        Raises ``CircuitOpenError`` without calling ``fn`` while the breaker is open, or half-open with a probe in flight
        (or claimed by another caller first).
        """
        now = self._now()
        item = self._read()
        phase, wait = self._phase(item, now)
        if phase == "half_open":
            probe_id = self._claim_probe(now)
            if probe_id is not None:
                return self._probe(probe_id, fn, args, kwargs)
            item = self._read(consistent=True)
            phase, wait = self._phase(item, now)
        if phase == "closed":
            return self._call_closed(item, fn, args, kwargs)
        raise CircuitOpenError(self.name, float(wait))

    def state(self) -> State:
        """The state as of now: ``"closed"``, ``"open"`` or ``"half_open"`` (a probe may run, or is running). One GetItem."""
        phase, _ = self._phase(self._read(), self._now())
        return "half_open" if phase == "probing" else phase

    # The item.

    def _now(self) -> Decimal:
        return _seconds(self.clock())

    def _read(self, *, consistent: bool = False) -> dict[str, Any] | None:
        return self.table.get_item(Key=self.key, ConsistentRead=consistent).get("Item")

    def _phase(self, item: Mapping[str, Any] | None, now: Decimal) -> tuple[str, Decimal]:
        """The state for a caller at ``now``, with "probing" for half-open with a probe in flight, and how long it lasts."""
        if item is None or "open_until" not in item:
            return "closed", Decimal(0)
        if now < item["open_until"]:
            return "open", item["open_until"] - now
        if "probe_until" in item and now < item["probe_until"]:
            return "probing", item["probe_until"] - now
        return "half_open", Decimal(0)

    def _update(self, update: str, condition: str, now: Decimal, /, **values: Any) -> None:
        """One conditional UpdateItem that also moves ``expires_at`` ahead; raises ClientError when the condition fails."""
        self.table.update_item(
            Key=self.key,
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues={f":{name}": value for name, value in {**values, "expires_at": int(now) + self.lifetime_seconds}.items()},
        )

    def _recorded(self, record: Callable[..., None], *args: Any) -> None:
        """Record an outcome of a call that has run: a DynamoDB error is logged, so that the caller gets the call's own outcome."""
        try:
            record(*args)
        except ClientError:
            logger.warning("circuit %s: the outcome of a call was not recorded", self.name, exc_info=True)

    # Closed.

    def _call_closed(self, item: Mapping[str, Any] | None, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if self.is_failure(error):
                self._recorded(self._count_failure, item, self._now())
            raise

    def _count_failure(self, item: Mapping[str, Any] | None, now: Decimal) -> None:
        """Add a failure at ``now`` to the count, opening the breaker when it reaches the threshold; re-read and retry on a lost race."""
        window = (now // self.window_seconds) * self.window_seconds
        for _ in range(_ATTEMPTS):
            if item is not None and "open_until" in item:
                return  # opened meanwhile: the breaker already fails fast
            try:
                self._write_failure(item, window, now)
                return
            except ClientError as error:
                if not _conditional_check_failed(error):
                    raise
            item = self._read(consistent=True)
        logger.warning("circuit %s: a failure was not counted after %d attempts (other instances kept changing the item)", self.name, _ATTEMPTS)

    def _write_failure(self, item: Mapping[str, Any] | None, window: Decimal, now: Decimal) -> None:
        """The failure's write, decided on ``item`` as read; its condition fails if the item has changed in a way that matters."""
        stored = item.get("window_start") if item is not None else None
        opens = ", open_until = :open_until"
        if stored is not None and stored >= window:  # later than ours only when another instance's clock is ahead: count in its window
            last = self.failure_threshold - 1
            reaches = item["failures"] >= last
            self._update(
                "ADD failures :one SET expires_at = :expires_at" + (opens if reaches else ""),
                f"attribute_not_exists(open_until) AND window_start = :window AND failures {'>=' if reaches else '<'} :last",
                now,
                one=1,
                window=stored,
                last=last,
                **({"open_until": now + self.open_seconds} if reaches else {}),
            )
        else:
            reaches = self.failure_threshold == 1
            self._update(
                "SET window_start = :window, failures = :one, expires_at = :expires_at" + (opens if reaches else ""),
                "attribute_not_exists(open_until) AND (attribute_not_exists(window_start) OR window_start < :window)",
                now,
                one=1,
                window=window,
                **({"open_until": now + self.open_seconds} if reaches else {}),
            )

    # Half-open.

    def _claim_probe(self, now: Decimal) -> str | None:
        """Claim the probe: its id, or None when another caller claimed it first (or the breaker changed state meanwhile)."""
        probe_id = uuid.uuid4().hex
        try:
            self._update(
                "SET probe_id = :probe_id, probe_until = :probe_until, expires_at = :expires_at",
                "open_until <= :now AND (attribute_not_exists(probe_until) OR probe_until <= :now)",
                now,
                probe_id=probe_id,
                probe_until=now + self.probe_timeout_seconds,
                now=now,
            )
        except ClientError as error:
            if _conditional_check_failed(error):
                return None
            raise
        return probe_id

    def _probe(self, probe_id: str, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            self._recorded(self._settle_probe, probe_id, "reopen" if self.is_failure(error) else "release")
            raise
        self._recorded(self._settle_probe, probe_id, "close")
        return result

    def _settle_probe(self, probe_id: str, outcome: Literal["close", "reopen", "release"]) -> None:
        """Record the probe's outcome, if the probe is still the one in flight (a late probe that was claimed again is dropped)."""
        now = self._now()
        updates = {
            "close": ("REMOVE open_until, probe_id, probe_until, window_start, failures SET expires_at = :expires_at", {}),
            "reopen": ("REMOVE probe_id, probe_until SET open_until = :open_until, expires_at = :expires_at", {"open_until": now + self.open_seconds}),
            "release": ("REMOVE probe_id, probe_until SET expires_at = :expires_at", {}),
        }
        update, values = updates[outcome]
        try:
            self._update(update, "probe_id = :probe_id", now, probe_id=probe_id, **values)
        except ClientError as error:
            if not _conditional_check_failed(error):
                raise
