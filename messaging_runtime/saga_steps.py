"""What the steps of a Step Functions saga share: reading the input the saga invokes them with.

A step is invoked (``lambda:invoke``) with ``{"action": ..., "order": {...}}``.
Its errors are its exceptions' class names, which the state machine tells
apart; ``InvalidSagaInput`` is the one for input the saga never sends (a bug,
not retried by the saga's transient-error policy).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from .contracts.checkout import SagaOrder


class InvalidSagaInput(Exception):
    """The step was invoked with input the saga never sends."""


def read_step(event: Any, actions: Collection[str]) -> tuple[str, SagaOrder]:
    """``(action, order)`` of a step's input; InvalidSagaInput naming what was expected (and up to five field errors) otherwise."""
    if not isinstance(event, dict) or event.get("action") not in actions:
        expected = " | ".join(f'"{action}"' for action in actions)
        raise InvalidSagaInput(f'expected {{"action": {expected}, "order": {{...}}}}, got {str(event)[:200]}')
    try:
        return event["action"], SagaOrder.Consumer.model_validate(event.get("order"))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'order'}: {e['msg']}" for e in error.errors()[:5])
        raise InvalidSagaInput(f"expected an order with order_id, customer_id, items, total and currency: {problems}") from None
