"""What the Exercise 02 handler tests share: the partial batch response, and a PutEvents that can be made to refuse entries."""

import dataclasses
from typing import Any, Callable


def failures(*message_ids: str) -> dict[str, list[dict[str, str]]]:
    """The partial batch response that names exactly these records."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


def handle(module: Any, records: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """The handler's response to an SQS event of ``records``."""
    return module.lambda_handler({"Records": records}, context)


def watch_put_events(module: Any) -> Any:
    """Record, on the module, every PutEvents call its client sends (``module.calls``, the entries of each) and every
    pause its publisher takes between retry rounds (``module.pauses``, in seconds, taken at once)."""
    module.calls, module.pauses = [], []
    module.bus.retry = dataclasses.replace(module.bus.retry, sleep=module.pauses.append)
    module.eventbridge.meta.events.register("before-parameter-build.events.PutEvents", lambda params, **_: module.calls.append(params["Entries"]))
    return module


def reject_entries(module: Any, monkeypatch: Any, decide: Callable[[int, dict[str, Any]], tuple[str, str] | None]) -> list[list[dict[str, Any]]]:
    """Make EventBridge report some entries as failed: ``decide(call_number, entry)`` returns
    ``(ErrorCode, ErrorMessage)`` for an entry to fail, or None to put it on the bus for real.
    The response keeps PutEvents' promise: one result per entry, in the request's order.
    Returns the entries of every call, as they were sent."""
    real_put_events = module.eventbridge.put_events
    requests: list[list[dict[str, Any]]] = []

    def put_events(**params: Any) -> dict[str, Any]:
        entries = params["Entries"]
        requests.append(entries)
        verdicts = [decide(len(requests), entry) for entry in entries]
        passing = [entry for entry, verdict in zip(entries, verdicts, strict=True) if verdict is None]
        real = iter(real_put_events(Entries=passing)["Entries"] if passing else [])
        results = [next(real) if verdict is None else {"ErrorCode": verdict[0], "ErrorMessage": verdict[1]} for verdict in verdicts]
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}

    monkeypatch.setattr(module.eventbridge, "put_events", put_events)
    return requests
