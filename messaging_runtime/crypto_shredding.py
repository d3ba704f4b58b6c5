"""Crypto-shredding: each user's personal fields encrypted under a data key of their own; deleting the key erases them.

Envelope encryption, not a KMS key per user (a customer-managed key costs $1 a
month and an account holds 100,000 by default): one AES-256 data key per user,
made by KMS ``GenerateDataKey`` under one customer-managed key, and kept only
wrapped (encrypted by that key) in a DynamoDB table, itself encrypted with the
customer-managed key. The table holds two items per user:

- ``user#<user_id>``: the ``key_id`` (a random id) of the user's current key;
  what the writer looks up;
- ``key#<key_id>``: the wrapped key; what a reader looks up from a row, which
  names the ``key_id`` and never the user.

Each personal field is sealed with AES-GCM (96-bit random nonce, 128-bit tag)
as ``v1.<base64url(nonce + ciphertext + tag)>``; the associated data is
``v1|<key_id>|<field>|<row id>``, so a sealed value opens only under its user's
key, in its own field of its own row: moved to another user's row, another
column or another row, it fails authentication. KMS binds each wrapped key to
its id the same way (encryption context ``purpose`` and ``key_id``).

Erasing a user deletes both items in one transaction with the erasure's
record (another table; it names the key id, not the user): from then on no
reader can unwrap the key, and every row sealed under it is unreadable
wherever it was copied. Unwrapped keys are cached in memory (``KeyCache``, a
few minutes) so that KMS is called once per user per cache period, not once
per record; a cached key outlives its erasure by at most that period.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "v1"
PURPOSE = "user-data-key"
NONCE_BYTES = 12
USER_PREFIX = "user#"
KEY_PREFIX = "key#"

__all__ = ["InvalidTag", "KeyCache", "KeyErased", "UserKeys", "associated_data", "open_value", "seal"]


class KeyErased(LookupError):
    """The key a row was sealed under is not in the table: erased (or never made)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no data key {key_id}: erased")
        self.key_id = key_id


def associated_data(key_id: str, field_name: str, row_id: str) -> bytes:
    """What binds a sealed value to its user's key, its field and its row."""
    return "|".join((FORMAT, key_id, field_name, row_id)).encode()


def seal(aead: AESGCM, key_id: str, field_name: str, row_id: str, value: str) -> str:
    """``value`` sealed under the user's key for ``field_name`` of row ``row_id``."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = aead.encrypt(nonce, value.encode(), associated_data(key_id, field_name, row_id))
    return f"{FORMAT}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def open_value(aead: AESGCM, key_id: str, field_name: str, row_id: str, token: str) -> str:
    """The value ``seal`` sealed; ``InvalidTag`` when the key, field or row is not the one it was sealed for."""
    version, _, body = token.partition(".")
    if version != FORMAT:
        raise ValueError(f"not a sealed value of format {FORMAT}")
    data = base64.urlsafe_b64decode(body)
    return aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], associated_data(key_id, field_name, row_id)).decode()


@dataclass
class KeyCache:
    """Unwrapped keys by name for ``ttl_seconds`` (least recently stored dropped past ``max_keys``)."""

    ttl_seconds: float = 300.0
    max_keys: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[str, tuple[float, Any]] = field(default_factory=OrderedDict)

    def get(self, name: str) -> Any | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[name]
            return None
        return entry[1]

    def put(self, name: str, value: Any) -> None:
        if self.ttl_seconds <= 0:
            return
        self._entries[name] = (self.clock() + self.ttl_seconds, value)
        self._entries.move_to_end(name)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def drop(self, *names: str) -> None:
        for name in names:
            self._entries.pop(name, None)

    def clear(self) -> None:
        self._entries.clear()


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _cancelled_on_condition(error: ClientError, index: int) -> bool:
    """A cancelled transaction whose item ``index`` failed its condition."""
    if _code(error) != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"


class UserKeys:
    """Each user's data key: made, wrapped and stored on first use, unwrapped (cached) after, deleted on erasure.

    :param dynamodb: a boto3 DynamoDB client. Required.
    :param kms: a boto3 KMS client. Required.
    :param table_name: the user keys table (partition key ``pk``, a string). Required.
    :param kms_key_id: the customer-managed key that wraps the data keys. Required.
    :param cache: Default: keys kept 5 minutes.

    ``kms_calls`` counts the KMS requests made, by operation.
    """

    def __init__(self, *, dynamodb: Any, kms: Any, table_name: str, kms_key_id: str, cache: KeyCache | None = None) -> None:
        self._dynamodb, self._kms, self.table_name, self.kms_key_id = dynamodb, kms, table_name, kms_key_id
        self.cache = cache if cache is not None else KeyCache()
        self.kms_calls: Counter[str] = Counter()
        self.keys_created = 0

    # --- reading the table -------------------------------------------------------------------------------------

    def _get(self, pk: str, *, consistent: bool = False) -> Mapping[str, Any] | None:
        return self._dynamodb.get_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=consistent).get("Item")

    @staticmethod
    def _context(key_id: str) -> dict[str, str]:
        return {"purpose": PURPOSE, "key_id": key_id}

    def for_key(self, key_id: str, *, consistent: bool = False) -> AESGCM:
        """The key ``key_id`` (what a reader needs for a row); ``KeyErased`` when its item is gone."""
        cached = self.cache.get(KEY_PREFIX + key_id)
        if cached is not None:
            return cached
        item = self._get(KEY_PREFIX + key_id, consistent=consistent)
        if item is None:
            raise KeyErased(key_id)
        self.kms_calls["Decrypt"] += 1
        plaintext = self._kms.decrypt(CiphertextBlob=item["wrapped_key"]["B"], KeyId=self.kms_key_id, EncryptionContext=self._context(key_id))["Plaintext"]
        aead = AESGCM(plaintext)
        self.cache.put(KEY_PREFIX + key_id, aead)
        return aead

    def for_user(self, user_id: str) -> tuple[str, AESGCM]:
        """The key id and key of ``user_id``, made on first use (what the writer needs)."""
        cached = self.cache.get(USER_PREFIX + user_id)
        if cached is not None:
            return cached
        found = self._current(user_id, consistent=False)
        if found is None or isinstance(found, KeyErased):
            found = self._create(user_id, replacing=found.key_id if isinstance(found, KeyErased) else None)
        self.cache.put(USER_PREFIX + user_id, found)
        return found

    def _current(self, user_id: str, *, consistent: bool) -> tuple[str, AESGCM] | KeyErased | None:
        """The user's key; ``KeyErased`` when the user item names a key that is gone (a table restored from a backup
        after an erasure, before the erasures were replayed); None when the user has no key."""
        item = self._get(USER_PREFIX + user_id, consistent=consistent)
        if item is None:
            return None
        key_id = item["key_id"]["S"]
        try:
            return key_id, self.for_key(key_id, consistent=consistent)
        except KeyErased as erased:
            return erased

    def _create(self, user_id: str, *, replacing: str | None) -> tuple[str, AESGCM]:
        """A new key for the user: both items written in one transaction, unless another writer made one first."""
        key_id = uuid.uuid4().hex
        self.kms_calls["GenerateDataKey"] += 1
        made = self._kms.generate_data_key(KeyId=self.kms_key_id, KeySpec="AES_256", EncryptionContext=self._context(key_id))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        condition = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if replacing is None
            else {"ConditionExpression": "key_id = :replaced", "ExpressionAttributeValues": {":replaced": {"S": replacing}}}
        )
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {"pk": {"S": USER_PREFIX + user_id}, "key_id": {"S": key_id}, "created_at": {"S": now}},
                            **condition,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {"pk": {"S": KEY_PREFIX + key_id}, "wrapped_key": {"B": made["CiphertextBlob"]}, "created_at": {"S": now}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if not _cancelled_on_condition(error, 0):
                raise
            # Another invocation made (or replaced) the user's key first: use that one.
            found = self._current(user_id, consistent=True)
            if found is None or isinstance(found, KeyErased):
                raise RuntimeError(f"the key of {user_id} changed while it was being made; try again") from error
            return found
        self.keys_created += 1
        aead = AESGCM(made["Plaintext"])
        self.cache.put(KEY_PREFIX + key_id, aead)
        return key_id, aead

    # --- erasure -----------------------------------------------------------------------------------------------

    def erase(self, user_id: str, *, request_id: str, requested_at: str, erasures_table: str, keep_seconds: int) -> tuple[str, str | None]:
        """Delete the user's key and record the erasure (request id, key id, times; not the user), in one transaction.

        Returns ``("erased", key_id)``, ``("no key", None)`` when the user has none, or ``("repeated", None)`` when
        this request was recorded before (nothing is done twice). Kept ``keep_seconds`` (TTL ``expires_at``).
        """
        item = self._get(USER_PREFIX + user_id, consistent=True)
        key_id = item["key_id"]["S"] if item else None
        now = datetime.now(UTC)
        record: dict[str, Any] = {
            "request_id": {"S": request_id},
            "requested_at": {"S": requested_at},
            "erased_at": {"S": now.isoformat(timespec="seconds")},
            "expires_at": {"N": str(int(now.timestamp()) + keep_seconds)},
            "outcome": {"S": "erased" if key_id else "no key"},
        }
        if key_id:
            record["key_id"] = {"S": key_id}
        actions: list[dict[str, Any]] = [{"Put": {"TableName": erasures_table, "Item": record, "ConditionExpression": "attribute_not_exists(request_id)"}}]
        if key_id:
            actions += [
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": USER_PREFIX + user_id}},
                        "ConditionExpression": "key_id = :key",
                        "ExpressionAttributeValues": {":key": {"S": key_id}},
                    }
                },
                {"Delete": {"TableName": self.table_name, "Key": {"pk": {"S": KEY_PREFIX + key_id}}}},
            ]
        try:
            self._dynamodb.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _cancelled_on_condition(error, 0):
                return "repeated", None
            raise  # the user's key changed meanwhile, throttling...: the message is retried
        self.cache.drop(USER_PREFIX + user_id, *([KEY_PREFIX + key_id] if key_id else []))
        return ("erased", key_id) if key_id else ("no key", None)
