"""What every batch publisher shares: entries to calls, retry rounds, ordering, the result.

A publisher subclass says how its API counts an entry, how a call is made and
how the response names each entry's fate (``_prepare`` and ``_send``); the
rounds below are the same for all of them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

logger = logging.getLogger(__name__)

Entry = Mapping[str, Any]

#: Codes of failures decided here rather than by AWS.
ENTRY_TOO_LARGE = "EntryTooLarge"  # over a per-entry size limit: never sent
INVALID_ENTRY = "InvalidEntry"  # a shape the call would refuse as a whole (no body, a bad Id, no group on a FIFO target): never sent
GROUP_STOPPED = "GroupStopped"  # an earlier entry of its group (or key) failed: held back to keep the order
NOT_SENT = "NotSent"  # publishing stopped (a call failed with a non-retryable error) or ran out of time before it was sent
NO_RESULT = "NoResult"  # the response did not mention the entry: retried

#: Whole-call error codes that mean "later": throttling and transient faults. The union of the codes
#: botocore's standard retry mode treats as throttled or transient (botocore/retries/standard.py); each
#: publisher adds its API's own (KmsThrottled, ServiceUnavailableException, ...). 5xx and 429 count too.
RETRYABLE_CALL_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "Throttled",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)

_MAX_EXPONENT = 60  # 2**60 times any sane base delay is past every max_delay_seconds


@dataclass(frozen=True)
class Retry:
    """How entries that failed are tried again: in rounds, with exponential backoff and full jitter between rounds.

    Each round sends every entry still pending, regrouped into full calls. Before
    round ``n + 1`` the publisher sleeps ``jitter() * min(max_delay_seconds,
    base_delay_seconds * 2 ** (n - 1))``: a random pause below an exponentially
    growing ceiling ("full jitter").

    :param max_attempts: calls that may carry one entry; 1 means no retry. Default: 3.
    :param base_delay_seconds: the ceiling of the first pause. Default: 0.2 s.
    :param max_delay_seconds: the ceiling no pause exceeds. Default: 5 s.
    :param sleep: pauses. Default: ``time.sleep``.
    :param jitter: a number in [0, 1) per pause. Default: ``random.random``.
    :param clock: seconds, for ``time_budget_seconds``. Default: ``time.monotonic``.
    """

    max_attempts: int = 3
    base_delay_seconds: float = 0.2
    max_delay_seconds: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError(f"delays must not be negative, got base {self.base_delay_seconds} s and max {self.max_delay_seconds} s")

    def ceiling(self, retry: int) -> float:
        """The longest pause before retry round ``retry`` (1 for the first retry)."""
        return min(self.max_delay_seconds, self.base_delay_seconds * 2 ** min(retry - 1, _MAX_EXPONENT))

    def delay(self, retry: int) -> float:
        """The pause before retry round ``retry``: full jitter below ``ceiling(retry)``."""
        return self.jitter() * self.ceiling(retry)


@dataclass(frozen=True)
class SentEntry:
    """An entry the service accepted: its position in the input, its batch Id (SQS, SNS) and the service's result for it."""

    index: int
    id: str | None
    result: Mapping[str, Any]
    attempts: int


@dataclass(frozen=True)
class FailedEntry:
    """An entry that was not sent, or not accepted: ``code`` is the service's error code or one of this module's
    (``EntryTooLarge``, ``InvalidEntry``, ``GroupStopped``, ``NotSent``, ``NoResult``); ``reason`` is the line to log."""

    index: int
    id: str | None
    code: str
    message: str
    attempts: int
    reason: str
    entry: Entry = field(repr=False)


@dataclass(frozen=True)
class PublishResult:
    """What one ``publish`` did. ``sent`` and ``failed`` are in input order; every entry is in exactly one of them.

    Callers decide what a failure means: ``raise_for_failures()``, or report the
    records behind ``failed`` as batch item failures.
    """

    api: str
    target: str
    sent: tuple[SentEntry, ...]
    failed: tuple[FailedEntry, ...]
    calls: int
    rounds: int

    @property
    def sent_count(self) -> int:
        return len(self.sent)

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def reasons(self) -> dict[int, str]:
        """Input index to reason, for every failed entry."""
        return {failure.index: failure.reason for failure in self.failed}

    def raise_for_failures(self) -> None:
        """Raise ``PublishError`` listing the failed entries, if there are any."""
        if self.failed:
            raise PublishError(self)


class PublishError(Exception):
    """Some entries were not sent. ``result`` is the whole ``PublishResult``; the message lists the first
    ``MAX_LISTED`` failures as ``entries[index] (id): reason``."""

    MAX_LISTED = 100

    def __init__(self, result: PublishResult) -> None:
        self.result = result
        shown = result.failed[: self.MAX_LISTED]
        listed = "; ".join(f"entries[{f.index}]{f' ({f.id})' if f.id is not None else ''}: {f.reason}" for f in shown)
        if result.failed_count > len(shown):
            listed += f"; and {result.failed_count - len(shown)} more"
        total = result.sent_count + result.failed_count
        super().__init__(f"{result.failed_count} of {total} entries not sent by {result.api} to {result.target} ({result.sent_count} were): {listed}")


class Rejected(Exception):
    """Raised by ``_prepare``: the entry cannot be sent as it is. ``group``, when known, is stopped (ordered targets)."""

    def __init__(self, code: str, message: str, *, group: Hashable | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.group = group


@dataclass(frozen=True)
class Prepared:
    """An entry as a publisher sends and counts it (returned by ``_prepare``).

    ``size`` is checked against the per-entry limit, ``request_size`` added up
    against the per-call limit (the same number except for DynamoDB); ``group``
    is the ordering key (message group, partition key, item key) or None.
    """

    wire: Entry
    id: str | None = None
    size: int = 0
    request_size: int | None = None
    group: Hashable | None = None


@dataclass(frozen=True)
class Answer:
    """The service's verdict on one entry of a call (returned by ``_send``, one per entry, in order)."""

    result: Mapping[str, Any] | None = None
    code: str = ""
    message: str = ""
    retryable: bool = True

    @property
    def ok(self) -> bool:
        return self.result is not None


def failure(code: str | None, message: str | None, *, retryable: bool) -> Answer:
    """A failed entry's answer; a missing code reads ``Unknown``."""
    return Answer(code=code or "Unknown", message=message or "", retryable=retryable)


def no_result() -> Answer:
    """The answer for an entry the response does not mention: tried again."""
    return failure(NO_RESULT, "no result for the entry in the response", retryable=True)


@dataclass(eq=False)
class _Item:
    index: int
    entry: Entry
    prepared: Prepared
    request_size: int
    attempts: int = 0
    last: Answer | None = None


def _text(code: str, message: str) -> str:
    return f"{code}: {message}" if message else code


def describe_error(error: Exception) -> tuple[str, str]:
    """The code and message of a call's exception."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return str(details.get("Code") or "ClientError"), str(details.get("Message") or "")
    return type(error).__name__, str(error)


def is_retryable_call_error(error: Exception, extra_codes: frozenset[str] = frozenset()) -> bool:
    """Throttling, a 5xx, or a connection that failed or timed out: try the call's entries again in the next round."""
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return True
    if not isinstance(error, ClientError):
        return False
    details = error.response.get("Error", {})
    codes = {details.get("Code"), details.get("QueryErrorCode")}  # SQS's JSON protocol reports both forms
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return bool(codes & (RETRYABLE_CALL_CODES | extra_codes)) or status >= 500 or status == 429


class BatchPublisher:
    """Sends entries through one batch API, in calls within the API's limits, retrying only what failed.

    ``publish(entries)`` returns a ``PublishResult``; it never raises for an
    entry or a call that fails (only for a bug, or a botocore error that is not
    about AWS's answer). See the package docstring for the rules.
    """

    api: ClassVar[str]
    max_entries: ClassVar[int]
    #: Per-entry error codes that the API's reference documents as not retryable.
    non_retryable_codes: ClassVar[frozenset[str]] = frozenset()
    #: Whole-call error codes of this API that are worth a retry, besides ``RETRYABLE_CALL_CODES``.
    retryable_call_codes: ClassVar[frozenset[str]] = frozenset()
    group_stopped_message: ClassVar[str] = "an earlier message of its group was not sent"

    def __init__(self, client: Any, target: str, *, max_entry_bytes: int, max_request_bytes: int, ordered: bool, retry: Retry | None) -> None:
        self.client = client
        self.target = target
        self.max_entry_bytes = min(max_entry_bytes, max_request_bytes)
        self.max_request_bytes = max_request_bytes
        self.ordered = ordered
        self.retry = retry or Retry()

    def publish(self, entries: Iterable[Entry], *, time_budget_seconds: float | None = None) -> PublishResult:
        """Send every entry; return what was sent and what was not, and why.

        :param entries: entries in the API's own request shape, in the order to keep. Required.
        :param time_budget_seconds: no retry round starts whose pause would end later than this after the
            call to ``publish`` (pass what the Lambda invocation can spare). Default: no limit.
        """
        return _Run(self, time_budget_seconds).execute(entries)

    # What a publisher says about its API.

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        raise NotImplementedError

    def _send(self, wire: list[Entry]) -> list[Answer]:
        raise NotImplementedError


class _Run:
    """One ``publish``: the rounds, the calls, and the bookkeeping that ends in a ``PublishResult``."""

    def __init__(self, publisher: BatchPublisher, time_budget_seconds: float | None) -> None:
        self.publisher = publisher
        self.retry = publisher.retry
        self.budget = time_budget_seconds
        self.started = self.retry.clock()
        self.sent: list[SentEntry] = []
        self.failed: list[FailedEntry] = []
        self.stopped_groups: set[Hashable] = set()
        self.calls = 0
        self.rounds = 0

    def execute(self, entries: Iterable[Entry]) -> PublishResult:
        pending = [item for index, entry in enumerate(entries) if (item := self._admit(index, entry)) is not None]
        while pending:
            if self.rounds:
                delay = self.retry.delay(self.rounds)
                if self.budget is not None and self.retry.clock() - self.started + delay > self.budget:
                    self._give_up(pending, "no time left for another round")
                    break
                logger.warning(
                    "%s: retrying %d entries in round %d after %.3f s",
                    self.publisher.api,
                    len(pending),
                    self.rounds + 1,
                    delay,
                    extra={"target": self.publisher.target, "codes": sorted({i.last.code for i in pending if i.last is not None})},
                )
                self.retry.sleep(delay)
            self.rounds += 1
            pending = self._round(pending)
        publisher = self.publisher
        return PublishResult(
            api=publisher.api,
            target=publisher.target,
            sent=tuple(sorted(self.sent, key=lambda s: s.index)),
            failed=tuple(sorted(self.failed, key=lambda f: f.index)),
            calls=self.calls,
            rounds=self.rounds,
        )

    def _admit(self, index: int, entry: Entry) -> _Item | None:
        publisher = self.publisher
        try:
            prepared = publisher._prepare(index, entry)
        except Rejected as rejected:
            self._fail_raw(index, entry, None, rejected.code, rejected.message, attempts=0)
            if publisher.ordered and rejected.group is not None:
                self.stopped_groups.add(rejected.group)
            return None
        if prepared.group is not None and prepared.group in self.stopped_groups:
            self._fail_raw(index, entry, prepared.id, GROUP_STOPPED, publisher.group_stopped_message, attempts=0)
            return None
        item = _Item(index, entry, prepared, prepared.size if prepared.request_size is None else prepared.request_size)
        if prepared.size > publisher.max_entry_bytes or item.request_size > publisher.max_request_bytes:
            limit = publisher.max_entry_bytes if prepared.size > publisher.max_entry_bytes else publisher.max_request_bytes
            size = prepared.size if prepared.size > publisher.max_entry_bytes else item.request_size
            self._fail(item, ENTRY_TOO_LARGE, f"the entry is {size} bytes, over the {limit}-byte {publisher.api} limit")
            return None
        return item

    def _round(self, pending: list[_Item]) -> list[_Item]:
        """Send the pending entries in full calls; return the ones for the next round."""
        publisher = self.publisher
        ordered = publisher.ordered
        later: list[_Item] = []  # for the next round
        waiting: set[Hashable] = set()  # groups with an entry in ``later``: the rest of the group waits too
        queue = pending
        while queue:
            call: list[_Item] = []
            rest: list[_Item] = []
            size = 0
            ids: set[str] = set()
            closed: set[Hashable] = set()  # groups that already have an entry in the call, or one left out of it
            for position, item in enumerate(queue):
                group = item.prepared.group if ordered else None
                if group is not None and group in waiting:
                    later.append(item)
                    continue
                if len(call) == publisher.max_entries:
                    rest.extend(queue[position:])
                    break
                fits = (
                    size + item.request_size <= publisher.max_request_bytes
                    and (item.prepared.id is None or item.prepared.id not in ids)
                    and (group is None or group not in closed)
                )
                if group is not None:
                    closed.add(group)
                if not fits:
                    rest.append(item)
                    continue
                call.append(item)
                size += item.request_size
                if item.prepared.id is not None:
                    ids.add(item.prepared.id)
            if not call:  # cannot happen: the first entry not waiting always fits an empty call
                self._stop(rest, "an entry that fits no call")
                break
            stop = self._call(call, later, waiting)
            if stop is not None:
                self._stop(rest + later, stop)
                return []
            queue = self._without_stopped_groups(rest)
            later = self._without_stopped_groups(later)
        return sorted(later, key=lambda i: i.index)

    def _call(self, call: list[_Item], later: list[_Item], waiting: set[Hashable]) -> str | None:
        """Make one call and sort its entries into sent, failed and retried; return why publishing stops, if it must."""
        publisher = self.publisher
        self.calls += 1
        for item in call:
            item.attempts += 1
        try:
            answers = publisher._send([item.prepared.wire for item in call])
        except (ClientError, BotoCoreError) as error:
            code, message = describe_error(error)
            if not is_retryable_call_error(error, publisher.retryable_call_codes):
                for item in call:
                    self._fail(item, code, message)
                return _text(code, message)
            answers = [failure(code, message, retryable=True)] * len(call)
        for item, answer in zip(call, answers, strict=True):
            if answer.ok:
                self.sent.append(SentEntry(item.index, item.prepared.id, answer.result or {}, item.attempts))
            elif not answer.retryable:
                self._fail(item, answer.code, answer.message)
            elif item.attempts >= self.retry.max_attempts:
                self._fail(item, answer.code, answer.message, note=f"after {item.attempts} attempts")
            else:
                item.last = answer
                later.append(item)
                if publisher.ordered and item.prepared.group is not None:
                    waiting.add(item.prepared.group)
        return None

    def _without_stopped_groups(self, items: list[_Item]) -> list[_Item]:
        if not self.stopped_groups:
            return items
        kept = []
        for item in items:
            if item.prepared.group is not None and item.prepared.group in self.stopped_groups:
                self._fail(item, GROUP_STOPPED, self.publisher.group_stopped_message, stops_group=False)
            else:
                kept.append(item)
        return kept

    def _stop(self, items: list[_Item], cause: str) -> None:
        for item in sorted(items, key=lambda i: i.index):
            if item.last is not None:
                self._fail(item, item.last.code, item.last.message, note=f"not retried: publishing stopped after {cause}")
            else:
                self._fail(item, NOT_SENT, f"publishing stopped after {cause}")

    def _give_up(self, items: list[_Item], cause: str) -> None:
        for item in items:
            if item.last is not None:
                self._fail(item, item.last.code, item.last.message, note=f"not retried: {cause}")
            else:
                self._fail(item, NOT_SENT, cause)

    def _fail(self, item: _Item, code: str, message: str, *, note: str = "", stops_group: bool = True) -> None:
        self._fail_raw(item.index, item.entry, item.prepared.id, code, message, attempts=item.attempts, note=note)
        if stops_group and self.publisher.ordered and item.prepared.group is not None:
            self.stopped_groups.add(item.prepared.group)

    def _fail_raw(self, index: int, entry: Entry, entry_id: str | None, code: str, message: str, *, attempts: int, note: str = "") -> None:
        reason = _text(code, message) + (f" ({note})" if note else "")
        self.failed.append(FailedEntry(index, entry_id, code, message, attempts, reason, entry))


def utf8_size(value: Any) -> int:
    """Bytes of a string in UTF-8, of bytes as they are; 0 for None."""
    if value is None:
        return 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    return len(str(value).encode("utf-8"))


def check_limit(label: str, value: int, low: int, high: int) -> int:
    """Return ``value`` if it is between ``low`` and ``high`` bytes, else raise ValueError naming both."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{label} must be {low} to {high} bytes, got {value!r}")
    return value


def mapping(entry: Any, api: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise Rejected(INVALID_ENTRY, f"an entry must be a dict in the {api} request shape, got {type(entry).__name__}")
    return entry


def positional(results: Sequence[Any] | None, count: int, to_answer: Callable[[Mapping[str, Any]], Answer]) -> list[Answer]:
    """Answers for results that match their entries by position (EventBridge, Kinesis, Firehose); a missing one is retried."""
    results = list(results or [])
    return [to_answer(results[i]) if i < len(results) and isinstance(results[i], Mapping) else no_result() for i in range(count)]
