"""Serving a custom resource whose function is its service token (no provider framework).

CloudFormation waits for the answer at the pre-signed S3 URL of the request (``ResponseURL``) for up to an hour;
every request must be answered, SUCCESS or FAILED with the reason, so a deployment never waits that long.
``serve`` carries out one request with the resource's own ``act`` and answers it, whatever happens.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

#: CloudFormation shows at most this much of a reason.
MAX_REASON = 1000


def answer(event: Mapping[str, Any], status: str, physical_id: str, *, reason: str = "", data: Mapping[str, str] | None = None) -> int:
    """PUT the answer to ``event`` (``SUCCESS`` or ``FAILED``) to its ``ResponseURL``; the HTTP status S3 gave."""
    if status not in ("SUCCESS", "FAILED"):
        raise ValueError(f"status must be SUCCESS or FAILED, got {status!r}")
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": dict(data or {}),
        }
    ).encode()
    # The pre-signed URL wants no content type (it is part of the signature).
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the pre-signed URL CloudFormation gave
        return response.status


def serve(
    event: Mapping[str, Any],
    context: Any,
    act: Callable[[Mapping[str, Any], str], str],
    *,
    logger: Any,
    kind: str,
    data_key: str,
    describe: Mapping[str, Any],
) -> None:
    """Carry out one request with ``act(event, physical_id)``, which returns the resource's physical id, and answer it.

    Until a create succeeds the physical id is ``<LogicalResourceId>-not-created`` (``kind`` when the event names no
    logical id), so that ``act`` can tell the delete of a create that failed, which must remove nothing. An exception
    from ``act`` is logged (with ``describe``) and answered FAILED with its type, message and the log stream; the
    answer's data holds the physical id under ``data_key``.
    """
    physical_id = event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', kind)}-not-created"
    status, reason = "SUCCESS", ""
    try:
        physical_id = act(event, physical_id)
    except Exception as error:  # answer FAILED with the reason instead of leaving CloudFormation waiting
        logger.exception("Request failed", extra={"request_type": event.get("RequestType"), **describe})
        status, reason = "FAILED", f"{type(error).__name__}: {error} (log stream {context.log_stream_name})"
    http_status = answer(event, status, physical_id, reason=reason, data={data_key: physical_id})
    logger.info("Answered CloudFormation", extra={"status": status, "http_status": http_status})
