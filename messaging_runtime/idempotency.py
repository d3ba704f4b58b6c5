"""Idempotency for a whole batch, on Powertools' persistence layer.

Powertools' ``idempotent_function`` wraps one call. A consumer that sends the
effects of a whole batch at once (one PutEvents for the batch) instead claims
each record's key before the batch's effect and settles it after, with the
same records, keys and expiry that ``idempotent_function`` would have written::

    claims = BatchClaims(persistence_layer)
    if claims.claim(key, context):        # False: a delivery before did it; raises while another invocation holds it
        ...                               # the batch's effect
    claims.complete(key, {"event_id": ...})   # or claims.release(key, error) so that the redelivery does it
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError, IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer


class BatchClaims:
    """Claims on Powertools idempotency records, one per key, for effects made a batch at a time.

    :param persistence_layer: a configured Powertools persistence layer (``configure`` called with its config
        and function name, which make the keys). Required.
    """

    def __init__(self, persistence_layer: BasePersistenceLayer) -> None:
        self.persistence_layer = persistence_layer

    def claim(self, key: Any, context: Any) -> bool:
        """Save ``key`` as in progress: True for the caller to do the work, False when a delivery before completed it.

        Raises ``IdempotencyAlreadyInProgressError`` while another invocation holds the key: that record fails,
        and its redelivery finds the key completed, or free again once the holder's time has run out.
        """
        try:
            self.persistence_layer.save_inprogress(data=key, remaining_time_in_millis=context.get_remaining_time_in_millis())
            return True
        except IdempotencyItemAlreadyExistsError as exists:
            record = exists.old_data_record or self.persistence_layer.get_record(data=key)
        if record.status != "COMPLETED":
            raise IdempotencyAlreadyInProgressError(f"{key} is being handled by another invocation (its record is {record.status})")
        return False

    def complete(self, key: Any, result: dict[str, Any]) -> None:
        """The work for ``key`` is done: later deliveries skip it until the record expires."""
        self.persistence_layer.save_success(data=key, result=result)

    def release(self, key: Any, error: Exception) -> None:
        """The work for ``key`` was not done: delete the claim, so that the redelivery does it."""
        self.persistence_layer.delete_record(data=key, exception=error)
