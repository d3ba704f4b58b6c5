"""What the steps of a Step Functions saga share: reading the input the saga invokes them with.

A step is invoked (``lambda:invoke``) with ``{"action": ..., "order": {...}}``.
Its errors are its exceptions' class names, which the state machine tells
apart; ``InvalidSagaInput`` is the one for input the saga never sends (a bug,
not retried by the saga's transient-error policy); ``SagaAlreadyCompleted``
ends a failure path that finds nothing to undo.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .contracts.checkout import SagaOrder


class InvalidSagaInput(Exception):
    """The step was invoked with input the saga never sends."""


class SagaAlreadyCompleted(Exception):
    """Raised by a saga's failure path that finds the saga's work done (the last step's write landed, then its
    invocation failed): the saga ends succeeded with nothing compensated (``messaging_constructs.saga.ALREADY_COMPLETED_ERROR``)."""


def run_step(
    event: Any,
    actions: Mapping[str, Callable[[SagaOrder], dict[str, Any]]],
    *,
    refused: tuple[type[Exception], ...],
    logger: Any,
    what: str,
    on_refused: Callable[[Exception], None] | None = None,
) -> dict[str, Any]:
    """Read the step's input, run its action on the order, log the outcome once: the whole of a step handler but its actions.

    ``refused`` are the step's business errors (and ``InvalidSagaInput``): logged as a warning and raised, for the
    state machine to catch by name; ``on_refused`` sees each first (to count it). Anything else propagates as it is.
    """
    try:
        action, order = read_step(event, actions)
        result = actions[action](order)
    except (*refused, InvalidSagaInput) as error:
        if on_refused is not None:
            on_refused(error)
        logger.warning(f"{what} refused", extra={"error": type(error).__name__, "reason": str(error)})
        raise
    logger.info(f"{what} done", extra={"action": action, "order_id": order.order_id, **result})
    return result


def read_step(
    event: Any,
    actions: Collection[str],
    *,
    field: str = "order",
    model: Any = SagaOrder,
    expected: str = "an order with order_id, customer_id, items, total and currency",
) -> tuple[str, Any]:
    """``(action, <the model's consumer view of event[field]>)`` of a step's input; InvalidSagaInput naming what was
    expected (and up to five field errors) otherwise."""
    if not isinstance(event, dict) or event.get("action") not in actions:
        choices = " | ".join(f'"{action}"' for action in actions)
        raise InvalidSagaInput(f'expected {{"action": {choices}, "{field}": {{...}}}}, got {str(event)[:200]}')
    try:
        return event["action"], model.Consumer.model_validate(event.get(field))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or field}: {e['msg']}" for e in error.errors()[:5])
        raise InvalidSagaInput(f"expected {expected}: {problems}") from None


#: The fields of an order the saga carries.
SAGA_ORDER_FIELDS = ("order_id", "customer_id", "items", "total", "currency")


def start_once(stepfunctions: Any, state_machine_arn: str, name: str, document: str) -> bool:
    """Start the execution ``name`` with ``document``; False when one of that name exists already (a redelivered start:
    Step Functions refuses a second execution of a name with ``ExecutionAlreadyExists``, so the saga runs once)."""
    try:
        stepfunctions.start_execution(stateMachineArn=state_machine_arn, name=name, input=document)
    except stepfunctions.exceptions.ExecutionAlreadyExists:
        return False
    return True


def saga_input(order: Mapping[str, Any], *, compensate: Mapping[str, str] | None = None) -> str:
    """The saga's input for ``order`` (its contract fields, from an event or the orders table): the same text for the same
    order, so that a repeated start of an execution matches the first. With ``compensate`` (``{"Error", "Cause"}``) the
    saga goes straight to its compensations (the reconciler's way to end an order past its deadline)."""
    fields = SagaOrder.Consumer.model_validate({name: _whole(order.get(name)) for name in SAGA_ORDER_FIELDS}).model_dump(mode="json")
    document: dict[str, Any] = {"order": fields}
    if compensate is not None:
        document["compensate"] = dict(compensate)
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _whole(value: Any) -> Any:
    """DynamoDB's numbers are Decimals: a whole one (a quantity) as an int, the way JSON would have given it."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value) if value.as_tuple().exponent >= 0 else value
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value
