"""Capability tokens that let their holder follow one order's status, signed with an AWS KMS HMAC key.

A token is the HMAC-SHA-256 of ``order-status:v1:<order_id>``, computed by KMS (``GenerateMac``, algorithm
``HMAC_SHA_256``, on a key of spec ``HMAC_256``), written as URL-safe base64 without padding: 43 characters of
``[A-Za-z0-9_-]``, safe in a query string as it is. The order API gives it to the customer who placed the order;
the WebSocket API's authorizer checks it (``VerifyMac``) before a connection opens::

    tokens = StatusTokens(boto3.client("kms"), os.environ["STATUS_TOKEN_KEY_ID"])
    token = tokens.issue("o-123")              # kms:GenerateMac
    tokens.verify("o-123", token)              # True (kms:VerifyMac)
    tokens.verify("o-456", token)              # False: a token opens its own order only

The key never leaves KMS, and issuing and checking are separate IAM grants (``kms:GenerateMac``,
``kms:VerifyMac``). The message starts with a purpose and a version (``order-status:v1``), so that a MAC made with
the same key for anything else is never a status token, and a later format can live beside this one.

A token does not expire: it shows the status of one order (no customer data) to whoever the customer shares it
with, for as long as the key exists. Replacing the key (a new key id) revokes every token at once; HMAC keys have
no automatic rotation in KMS.

``verify`` refuses what cannot be a token (not a string, not 43 URL-safe base64 characters, a non-canonical
encoding, an empty or oversized order id) without calling KMS, so that junk costs no KMS request, and answers
False when KMS finds the MAC wrong (``KMSInvalidMacException``). Any other KMS error (throttling, a disabled or
unknown key, missing permission) propagates: the caller cannot tell whether the token is good.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from botocore.exceptions import ClientError

MAC_ALGORITHM = "HMAC_SHA_256"
#: What the MAC of the default purpose covers, before the order id.
PURPOSE = "order-status:v1"
#: Bytes of an HMAC-SHA-256, and the characters of their unpadded URL-safe base64.
MAC_BYTES = 32
TOKEN_LENGTH = 43
#: KMS takes messages of 1 to 4,096 bytes.
MAX_MESSAGE_BYTES = 4096
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_INVALID_MAC = "KMSInvalidMacException"


def encode(mac: bytes) -> str:
    """``mac`` as URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def decode(token: Any) -> bytes | None:
    """The MAC a token carries, or None unless ``token`` is the canonical encoding of exactly 32 bytes.

    Canonical: the last character's two unused bits are zero, so that each MAC has one token, not four.
    """
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    try:
        mac = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        return None
    return mac if len(mac) == MAC_BYTES and encode(mac) == token else None


class StatusTokens:
    """Issues and checks status tokens with the KMS HMAC key ``key_id`` (a key id, key ARN, alias name or alias ARN).

    :param kms_client: a boto3 KMS client.
    :param key_id: the ``HMAC_256`` key, usage ``GENERATE_VERIFY_MAC``.
    :param purpose: what the tokens are for; a token of one purpose never passes for another's. Default: ``order-status:v1``.
    """

    def __init__(self, kms_client: Any, key_id: str, *, purpose: str = PURPOSE) -> None:
        if not key_id:
            raise ValueError("key_id is required: the id or ARN of a KMS HMAC_256 key")
        if not isinstance(purpose, str) or not purpose or purpose.endswith(":"):
            raise ValueError(f"purpose must be a non-empty name without a trailing ':', got {purpose!r}")
        self.kms = kms_client
        self.key_id = key_id
        self.purpose = purpose

    def message(self, order_id: str) -> bytes | None:
        """What the MAC covers, ``<purpose>:<order_id>``; None for an order id that is not a non-empty string or too long for KMS."""
        if not isinstance(order_id, str) or not order_id:
            return None
        message = f"{self.purpose}:{order_id}".encode()
        return message if len(message) <= MAX_MESSAGE_BYTES else None

    def issue(self, order_id: str) -> str:
        """The token of ``order_id``; ``ValueError`` for an empty or oversized order id. KMS errors propagate."""
        message = self.message(order_id)
        if message is None:
            raise ValueError(f"order_id must be a non-empty string of at most {MAX_MESSAGE_BYTES - len(self.purpose) - 1} bytes")
        answer = self.kms.generate_mac(KeyId=self.key_id, Message=message, MacAlgorithm=MAC_ALGORITHM)
        return encode(answer["Mac"])

    def verify(self, order_id: str, token: Any) -> bool:
        """Whether ``token`` is the token of ``order_id``. False for anything else; KMS errors other than a wrong MAC propagate."""
        message, mac = self.message(order_id), decode(token)
        if message is None or mac is None:
            return False
        try:
            answer = self.kms.verify_mac(KeyId=self.key_id, Message=message, MacAlgorithm=MAC_ALGORITHM, Mac=mac)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == _INVALID_MAC:
                return False
            raise
        return answer.get("MacValid") is True
