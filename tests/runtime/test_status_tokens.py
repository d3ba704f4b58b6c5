"""StatusTokens: HMAC tokens made and checked by KMS (moto's GenerateMac and VerifyMac), one order per token."""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_runtime.status_tokens import MAX_MESSAGE_BYTES, TOKEN_LENGTH, StatusTokens, decode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def kms():
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
            monkeypatch.setenv(name, value)
        with mock_aws():
            yield boto3.client("kms")


def hmac_key(kms) -> str:
    return kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", Description="status tokens")["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="module")
def tokens(kms) -> StatusTokens:
    return StatusTokens(kms, hmac_key(kms))


class CountingKms:
    """A KMS client that counts the calls it passes on."""

    def __init__(self, kms) -> None:
        self.kms, self.calls = kms, []

    def generate_mac(self, **kwargs):
        self.calls.append("GenerateMac")
        return self.kms.generate_mac(**kwargs)

    def verify_mac(self, **kwargs):
        self.calls.append("VerifyMac")
        return self.kms.verify_mac(**kwargs)


def test_a_token_is_43_url_safe_characters_and_opens_its_order(tokens):
    token = tokens.issue("o-token-1")
    assert len(token) == TOKEN_LENGTH and set(token) <= set(ALPHABET)
    assert tokens.verify("o-token-1", token) is True
    assert tokens.issue("o-token-1") == token


def test_a_token_for_one_order_does_not_open_another(tokens):
    token = tokens.issue("o-token-2")
    for other in ("o-token-3", "o-token-2 ", "o-token-", "O-TOKEN-2", "o-token-22"):
        assert tokens.verify(other, token) is False


def test_a_token_of_another_key_or_purpose_is_refused(kms, tokens):
    other_key = StatusTokens(kms, hmac_key(kms))
    other_purpose = StatusTokens(kms, tokens.key_id, purpose="order-receipt:v1")
    assert tokens.verify("o-token-4", other_key.issue("o-token-4")) is False
    assert tokens.verify("o-token-4", other_purpose.issue("o-token-4")) is False
    assert other_key.verify("o-token-4", other_key.issue("o-token-4")) is True


def test_a_tampered_token_is_refused(tokens):
    token = tokens.issue("o-token-5")
    for index in (0, 20, TOKEN_LENGTH - 2):
        swapped = "A" if token[index] != "A" else "B"
        assert tokens.verify("o-token-5", token[:index] + swapped + token[index + 1 :]) is False


def test_what_cannot_be_a_token_is_refused_without_asking_kms(kms, tokens):
    counting = CountingKms(kms)
    checker = StatusTokens(counting, tokens.key_id)
    token = tokens.issue("o-token-6")
    mac = decode(token)
    standard = base64.b64encode(mac).decode()  # + and / instead of - and _, with padding
    # 43 characters carry 258 bits: the last one's two low bits are unused, so four spellings decode to the same MAC.
    non_canonical = token[:-1] + ALPHABET[ALPHABET.index(token[-1]) | 1]
    assert base64.urlsafe_b64decode(non_canonical + "=") == mac
    junk = [
        "",
        token[:-1],
        token + "A",
        token + "=",
        token[:10],
        standard,
        non_canonical,
        " " + token[1:],
        token[:-1] + "é",
        "%" * TOKEN_LENGTH,
        None,
        42,
        token.encode(),
        [token],
    ]
    for candidate in junk:
        assert checker.verify("o-token-6", candidate) is False, candidate
    assert counting.calls == []
    assert checker.verify("o-token-6", token) is True and counting.calls == ["VerifyMac"]


def test_order_ids_kms_cannot_sign_are_refused(tokens):
    token = tokens.issue("o-token-7")
    longest = "o" * (MAX_MESSAGE_BYTES - len("order-status:v1:"))
    assert tokens.verify(longest, tokens.issue(longest)) is True
    for order_id in ("", longest + "o", None, 7):
        assert tokens.verify(order_id, token) is False
    for order_id in ("", longest + "o"):
        with pytest.raises(ValueError, match="order_id must be a non-empty string"):
            tokens.issue(order_id)


def test_kms_errors_other_than_a_wrong_mac_propagate(kms, tokens):
    token = tokens.issue("o-token-8")
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as wrong_usage:
        StatusTokens(kms, symmetric).verify("o-token-8", token)
    assert wrong_usage.value.response["Error"]["Code"] == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as unknown:
        StatusTokens(kms, "alias/no-such-key").verify("o-token-8", token)
    assert unknown.value.response["Error"]["Code"] == "NotFoundException"
    with pytest.raises(ClientError):
        StatusTokens(kms, "alias/no-such-key").issue("o-token-8")


def test_a_key_and_a_purpose_are_required(kms):
    with pytest.raises(ValueError, match="key_id is required"):
        StatusTokens(kms, "")
    for purpose in ("", "order-status:"):
        with pytest.raises(ValueError, match="purpose must be"):
            StatusTokens(kms, "alias/x", purpose=purpose)


@settings(max_examples=200, deadline=None)
@given(candidate=st.text(max_size=60) | st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True))
def test_no_made_up_token_opens_an_order(tokens, candidate):
    assert tokens.verify("o-token-9", candidate) is False
