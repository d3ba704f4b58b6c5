"""EventBridge PutEvents: entry sizes as EventBridge counts them, results matched by position."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core import INVALID_ENTRY, Answer, BatchPublisher, Entry, Prepared, Rejected, Retry, check_limit, failure, mapping, positional, utf8_size

# PutEvents: Entries holds 1 to 10 entries, and "the total entry size must be less than 1MB" (256 KB until January 2026):
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html
# https://aws.amazon.com/about-aws/whats-new/2026/01/amazon-eventbridge-increases-event-payload-size-256-kb-1-mb/
# The entry size is counted as "Calculating PutEvents event entry size" says (``entry_size`` below):
# https://docs.aws.amazon.com/eventbridge/latest/userguide/calculate-putevents-entry-size.html
EVENTBRIDGE_MAX_ENTRIES = 10
EVENTBRIDGE_MAX_REQUEST_BYTES = 1024 * 1024

# PutEventsResultEntry.ErrorCode: "Retryable errors include: InternalFailure, ThrottlingException. Non-retryable errors
# include:" the codes below. Any other code (a new one included) is retried.
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsResultEntry.html
EVENTBRIDGE_NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    }
)

_TIME_BYTES = 14


def entry_size(entry: Entry) -> int:
    """The size EventBridge counts for one entry: 14 bytes for ``Time`` if set, then the UTF-8 bytes of
    ``Source``, ``DetailType``, ``Detail`` and each of ``Resources`` (``EventBusName`` and ``TraceHeader`` do not count)."""
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    size += utf8_size(entry.get("Source")) + utf8_size(entry.get("DetailType")) + utf8_size(entry.get("Detail"))
    return size + sum(utf8_size(resource) for resource in entry.get("Resources") or [])


class EventBridgePublisher(BatchPublisher):
    """Puts events on event buses with PutEvents: up to 10 entries per call and 1 MiB in all, counted EventBridge's way.

    Entries are ``PutEventsRequestEntry`` dicts with ``Source``, ``DetailType``
    and ``Detail`` (an entry without one of them is reported, not sent: a call
    in which no entry has all three fails whole). Results carry no id of their
    entry; they are matched by position. The error codes that the PutEvents
    reference calls non-retryable are reported at once; any other is retried.
    PutEvents keeps no order across calls, and a retried entry lands after
    entries sent later: nothing here orders events.

    :param client: a boto3 EventBridge (``events``) client. Required.
    :param event_bus_name: the bus (name or ARN) for entries that name none. Default: none, each entry's own
        (EventBridge's default bus when an entry names none).
    :param endpoint_id: a global endpoint's id. Default: none.
    :param max_request_bytes: the limit on a call's total entry size. Default: 1,048,576 (1 MiB).
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "EventBridge PutEvents"
    max_entries = EVENTBRIDGE_MAX_ENTRIES
    non_retryable_codes = EVENTBRIDGE_NON_RETRYABLE_CODES
    retryable_call_codes = frozenset({"InternalException"})

    def __init__(
        self,
        client: Any,
        *,
        event_bus_name: str | None = None,
        endpoint_id: str | None = None,
        max_request_bytes: int = EVENTBRIDGE_MAX_REQUEST_BYTES,
        retry: Retry | None = None,
    ) -> None:
        check_limit("max_request_bytes", max_request_bytes, 1, EVENTBRIDGE_MAX_REQUEST_BYTES)
        super().__init__(
            client,
            event_bus_name or "the entries' event buses",
            max_entry_bytes=max_request_bytes,
            max_request_bytes=max_request_bytes,
            ordered=False,
            retry=retry,
        )
        self.event_bus_name = event_bus_name
        self.endpoint_id = endpoint_id

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        entry = mapping(entry, self.api)
        missing = [name for name in ("Source", "DetailType", "Detail") if not isinstance(entry.get(name), str) or not entry[name]]
        if missing:
            raise Rejected(INVALID_ENTRY, f"{', '.join(missing)} must be non-empty strings")
        resources = entry.get("Resources")
        if resources is not None and (isinstance(resources, (str, bytes)) or not all(isinstance(r, str) for r in resources)):
            raise Rejected(INVALID_ENTRY, "Resources must be a list of strings")
        wire = {**entry, "EventBusName": self.event_bus_name} if self.event_bus_name and "EventBusName" not in entry else entry
        return Prepared(wire, size=entry_size(entry))

    def _send(self, wire: list[Entry]) -> list[Answer]:
        options = {"EndpointId": self.endpoint_id} if self.endpoint_id else {}
        response = self.client.put_events(Entries=wire, **options)
        return positional(response.get("Entries"), len(wire), self._answer)

    def _answer(self, result: Mapping[str, Any]) -> Answer:
        code = result.get("ErrorCode")
        if result.get("EventId") and not code:
            return Answer(result=result)
        return failure(code, result.get("ErrorMessage"), retryable=code not in self.non_retryable_codes)
