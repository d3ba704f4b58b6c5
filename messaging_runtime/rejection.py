"""Turning a record that cannot be handled into a reason: the one way every handler does it.

A record is read in one step (``parse_json`` or a reader of ``messaging_runtime.readers``)
whose every failure, whatever it raises (a validation error, a ``RecursionError``
from JSON nested too deeply, a ``TypeError`` on a shape nobody expected), becomes
``Rejected`` with a reason a person can act on. The batch consumer
(``messaging_runtime.batch``) logs it, counts it and reports the record as failed,
so it ends in the dead-letter destination instead of being dropped.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class Rejected(ValueError):
    """One record that cannot be handled as it is; ``reason`` says why. Reported as that record's failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Skipped(Exception):
    """One record that is deliberately not handled (a Kafka tombstone, say): a success, logged with ``reason`` and counted as ``metric``."""

    def __init__(self, reason: str, *, metric: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.metric = metric


def validation_reason(error: ValidationError, *, root: str = "body") -> str:
    """``field.path: message`` for each of pydantic's errors, joined with ``; `` (no input values: they may be personal data)."""
    return "; ".join(f"{'.'.join(str(part) for part in item['loc']) or root}: {item['msg']}" for item in error.errors(include_url=False, include_input=False))


def reason_of(error: BaseException, *, what: str = "the body") -> str:
    """The reason to give for ``error`` raised while reading one record."""
    if isinstance(error, Rejected):
        return error.reason
    if isinstance(error, ValidationError):
        return validation_reason(error, root=what.removeprefix("the "))
    return f"{what} cannot be read: {type(error).__name__}: {error}"


def parse_json(model: type[M], text: Any, *, what: str = "the body") -> M:
    """``text`` read as ``model``, or ``Rejected`` with the reason, whatever went wrong."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise Rejected(f"{what} is missing" if text is None else f"{what} is {type(text).__name__}, expected JSON text")
    try:
        return model.model_validate_json(text)
    except Exception as error:  # any failure to read one record is that record's failure, never the batch's
        raise Rejected(reason_of(error, what=what)) from error


def parse_object(model: type[M], data: Any, *, what: str = "the record") -> M:
    """``data`` (already decoded) validated as ``model``, or ``Rejected`` with the reason."""
    try:
        return model.model_validate(data)
    except Exception as error:
        raise Rejected(reason_of(error, what=what)) from error
