"""Answering CloudFormation for a custom resource whose function is its service token (no provider framework).

CloudFormation waits for the answer at the pre-signed S3 URL of the request (``ResponseURL``) for up to an hour;
every request must be answered, SUCCESS or FAILED with the reason, so a deployment never waits that long.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
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
