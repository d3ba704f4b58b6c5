"""BatchClaims: Powertools idempotency records claimed and settled a batch at a time, on moto's DynamoDB."""

from __future__ import annotations

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from moto import mock_aws

from messaging_runtime.idempotency import BatchClaims


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def claims(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_LAMBDA_FUNCTION_NAME": "fn"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        layer = DynamoDBPersistenceLayer(table_name="idempotency")
        layer.configure(IdempotencyConfig(raise_on_no_idempotency_key=True, expires_after_seconds=3600), function_name="handler.forward_once")
        yield BatchClaims(layer)


def test_a_new_key_is_claimed_and_once_completed_is_skipped(claims):
    assert claims.claim("order-1", Context()) is True
    claims.complete("order-1", {"event_id": "e-1"})
    assert claims.claim("order-1", Context()) is False


def test_a_key_held_by_another_invocation_fails_its_record(claims):
    assert claims.claim("order-2", Context()) is True
    with pytest.raises(IdempotencyAlreadyInProgressError, match=r"order-2 is being handled by another invocation \(its record is INPROGRESS\)$"):
        claims.claim("order-2", Context())


def test_a_released_key_can_be_claimed_again_by_the_redelivery(claims):
    assert claims.claim("order-3", Context()) is True
    claims.release("order-3", RuntimeError("not put on the bus"))
    assert claims.claim("order-3", Context()) is True


def test_the_keys_are_the_ones_idempotent_function_would_write(claims):
    claims.claim("order-4", Context())
    (item,) = boto3.client("dynamodb").scan(TableName="idempotency")["Items"]
    assert item["id"]["S"].startswith("fn.handler.forward_once#") and item["status"]["S"] == "INPROGRESS"
