"""What the API Gateway handlers share: refusing a request with a status and a body, the caller, the idempotency key,
a validated body, the error handlers of a Powertools REST resolver, and a WebSocket authorizer's policy.

Each function takes the resolver (``APIGatewayRestResolver``) the handler routes with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

#: An ``Idempotency-Key`` header's value: 1 to 64 letters, digits, ``_`` or ``-``.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Refused(Exception):
    """The request is answered with ``args``: a status and a body."""


def principal(app: Any) -> str:
    """Who calls: the Cognito user's ``sub``, or the IAM caller's ARN; Refused (401) when the request carries neither."""
    context = app.current_event.request_context
    found = context.authorizer.claims.get("sub") or context.identity.user_arn
    if not found:
        raise Refused(401, {"message": "the request is not authenticated"})
    return found


def idempotency_key(app: Any) -> str:
    """The request's one ``Idempotency-Key`` value; Refused (400) when it is missing, repeated with other values, or malformed."""
    event = app.current_event
    values = event.multi_value_headers.get("Idempotency-Key") or [event.headers.get("Idempotency-Key")]
    if len(set(values)) != 1 or not isinstance(values[0], str) or not IDEMPOTENCY_KEY.fullmatch(values[0]):
        raise Refused(400, {"message": "the Idempotency-Key header is required: one value of 1 to 64 letters, digits, _ or -"})
    return values[0]


def read_body(app: Any, model: type[Model], what: str) -> Model:
    """The JSON body read as ``model``; Refused (400, "the body is not <what>") listing each field's error."""
    try:
        return model.model_validate_json(app.current_event.decoded_body or "")
    except ValidationError as error:
        reasons = error.errors(include_url=False, include_input=False)
        errors = [{"field": ".".join(str(part) for part in reason["loc"]) or "body", "message": reason["msg"]} for reason in reasons]
    except ValueError:  # a base64 body that is not UTF-8 text
        errors = [{"field": "body", "message": "must be UTF-8 JSON text"}]
    raise Refused(400, {"message": f"the body is not {what}", "errors": errors})


def handle_errors(app: Any, logger: Any, answer: Callable[[int, dict[str, Any]], Any]) -> None:
    """Answer Refused with its status and body, an unknown route with 404 (else the handler of Exception would answer
    it), and anything else with 500, logged with the request id."""
    app.exception_handler(Refused)(lambda refused: answer(*refused.args))
    app.not_found(lambda error: answer(404, {"message": "not found"}))

    @app.exception_handler(Exception)
    def failed(error: Exception) -> Any:
        logger.exception("Request failed", extra={"request_id": app.current_event.request_context.request_id})
        return answer(500, {"message": "internal error; please try again later"})


def authorizer_policy(effect: str, principal_id: str, resource: str) -> dict[str, Any]:
    """A Lambda authorizer's answer: ``effect`` (Allow or Deny) on ``execute-api:Invoke`` of ``resource``."""
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {"principalId": principal_id, "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}
