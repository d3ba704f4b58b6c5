"""Construction-time checks that name the value and the limit.

Every helper returns quietly when the value is an unresolved token: the real
value is only known at deploy time, and CloudFormation validates it then.
"""

from __future__ import annotations

from aws_cdk import Duration, Token


def _is_token(value: object) -> bool:
    return value is not None and Token.is_unresolved(value)


def check_range(label: str, value: float | int | None, low: float, high: float, unit: str = "") -> None:
    """Raise ``ValueError`` unless ``low <= value <= high``."""
    if value is None or _is_token(value):
        return
    if not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise ValueError(f"{label} must be between {low:g} and {high:g}{suffix}, got {value:g}{suffix}")


def human(seconds_: float) -> str:
    """``1209600`` -> ``14 days``; ``90`` -> ``90 s``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds_ >= size and seconds_ % size == 0:
            count = int(seconds_ // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds_:g} s"


def check_duration_range(label: str, value: Duration | None, low: Duration, high: Duration) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high``."""
    if value is None or value.is_unresolved():
        return
    got, lo, hi = value.to_seconds(), low.to_seconds(), high.to_seconds()
    if not lo <= got <= hi:
        raise ValueError(f"{label} must be between {human(lo)} and {human(hi)}, got {human(got)}")


def check_length(label: str, value: str | None, maximum: int) -> None:
    """Raise ``ValueError`` when ``value`` is longer than ``maximum`` characters."""
    if value is None or _is_token(value):
        return
    if len(value) > maximum:
        raise ValueError(f"{label} must be at most {maximum} characters, got {len(value)}: {value!r}")


def seconds(value: Duration) -> float | None:
    """The duration in seconds, or ``None`` when it is a token."""
    if value.is_unresolved():
        return None
    return value.to_seconds()


def check_visibility_timeout(visibility_timeout: Duration, consumer_timeout: Duration) -> None:
    """Visibility timeout must be at least six times the consumer's timeout.

    AWS recommends six times the function timeout for an SQS event source, so
    that retries of a throttled or slow batch do not make messages visible
    again while they are still being processed.
    """
    visibility, consumer = seconds(visibility_timeout), seconds(consumer_timeout)
    if visibility is None or consumer is None:
        return
    if visibility < 6 * consumer:
        raise ValueError(f"visibility timeout must be at least 6 times the consumer timeout ({6 * consumer:g} s), got {visibility:g} s")


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` when ``condition`` is false."""
    if not condition:
        raise ValueError(message)


def check_not_flag(label: str, value: object, hint: str) -> None:
    """Raise ``ValueError`` when a prop that takes an object (a queue...) is given ``True`` or ``False``.

    :param hint: what to write instead, e.g. "use terminal=True for a queue that is itself a dead-letter destination".
    """
    if isinstance(value, bool):
        raise ValueError(f"{label} takes a queue or None, got {value}: {hint}")


def check_threshold(label: str, value: float | int | None, low: float = 0, high: float = 1e12, unit: str = "") -> None:
    """Raise ``ValueError`` unless an alarm threshold is within ``low`` and ``high`` (tokens pass)."""
    check_range(label, value, low, high, unit)
