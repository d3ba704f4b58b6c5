"""The status pusher: every OrderStatusChanged posted to each connection of its order; gone connections removed."""

import json
import time

import boto3
import pytest

from tests.handlers.exercise_01 import failures

TABLE = "status-connections-pushed"
ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/v1"


class FakeManagementApi:
    """``post_to_connection`` of the management API: records what it is sent, and fails for the connections named."""

    def __init__(self, client) -> None:
        self.client, self.posted, self.gone, self.failing = client, [], set(), {}

    def __call__(self, *, ConnectionId: str, Data: bytes) -> dict:
        if ConnectionId in self.gone:
            raise self.client.exceptions.GoneException({"Error": {"Code": "GoneException", "Message": ""}}, "PostToConnection")
        if ConnectionId in self.failing:
            code = self.failing[ConnectionId]
            raise getattr(self.client.exceptions, code)({"Error": {"Code": code, "Message": "refused"}}, "PostToConnection")
        self.posted.append((ConnectionId, json.loads(Data)))
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}


@pytest.fixture(scope="module")
def pusher(moto_module, load_handler):
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}, {"AttributeName": "connection_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}, {"AttributeName": "connection_id", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto_module.setenv("CONNECTIONS_TABLE_NAME", TABLE)
    moto_module.setenv("WEBSOCKET_ENDPOINT", ENDPOINT)
    return load_handler("status_pusher")


@pytest.fixture
def api(pusher, monkeypatch) -> FakeManagementApi:
    fake = FakeManagementApi(pusher.management)
    monkeypatch.setattr(pusher.management, "post_to_connection", fake)
    return fake


def connect(order_id: str, *connection_ids: str) -> None:
    for connection_id in connection_ids:
        item = {"order_id": {"S": order_id}, "connection_id": {"S": connection_id}, "connected_at": {"S": "2026-01-01T00:00:00Z"}}
        boto3.client("dynamodb").put_item(TableName=TABLE, Item={**item, "expires_at": {"N": str(int(time.time()) + 7200)}})


def connected(order_id: str) -> list[str]:
    found = boto3.client("dynamodb").query(
        TableName=TABLE, KeyConditionExpression="order_id = :o", ExpressionAttributeValues={":o": {"S": order_id}}, ConsistentRead=True
    )
    return sorted(item["connection_id"]["S"] for item in found["Items"])


def changed(order_id: str, seq: int = 2, status: str = "STOCK_RESERVED", previous: str = "ACCEPTED", **overrides) -> dict:
    detail = {
        "version": 1,
        "order_id": order_id,
        "seq": seq,
        "customer_id": "c-secret-7",
        "status": status,
        "previous_status": previous,
        "reason": None,
        "changed_at": "2026-01-01T00:00:05Z",
    }
    return {**detail, **overrides}


def record(sqs_events, eventbridge_event, detail, *, detail_type="OrderStatusChanged", source="blueprints.checkout"):
    return sqs_events.record(json.dumps(eventbridge_event(source, detail_type, detail)), queue="order-status-pushes")


def pushed(order_id: str, seq: int = 2, status: str = "STOCK_RESERVED", previous: str = "ACCEPTED", reason=None) -> dict:
    return {
        "type": "order_status",
        "order_id": order_id,
        "seq": seq,
        "status": status,
        "previous_status": previous,
        "reason": reason,
        "changed_at": "2026-01-01T00:00:05Z",
    }


def test_the_client_posts_to_the_stage_s_management_endpoint(pusher):
    assert pusher.management.meta.endpoint_url == ENDPOINT and pusher.management.meta.service_model.service_name == "apigatewaymanagementapi"


def test_each_change_goes_to_every_connection_of_its_order_and_no_other(pusher, api, sqs_events, eventbridge_event, lambda_context, capsys):
    connect("o-push-1", "AAAAAAAAAAAAAAA=", "BBBBBBBBBBBBBBB=")
    connect("o-push-other", "CCCCCCCCCCCCCCC=")
    event = sqs_events.event([record(sqs_events, eventbridge_event, changed("o-push-1"))])
    assert pusher.lambda_handler(event, lambda_context) == failures()
    assert sorted(api.posted, key=lambda p: p[0]) == [("AAAAAAAAAAAAAAA=", pushed("o-push-1")), ("BBBBBBBBBBBBBBB=", pushed("o-push-1"))]
    assert "customer_id" not in json.dumps(api.posted) and "c-secret-7" not in json.dumps(api.posted)
    assert '"StatusPushes":[2.0]' in capsys.readouterr().out


def test_the_reason_travels_with_the_change(pusher, api, sqs_events, eventbridge_event, lambda_context):
    connect("o-push-2", "DDDDDDDDDDDDDDD=")
    detail = changed("o-push-2", seq=5, status="COMPENSATING", previous="AWAITING_MERCHANT", reason="merchant declined")
    assert pusher.lambda_handler(sqs_events.event([record(sqs_events, eventbridge_event, detail)]), lambda_context) == failures()
    assert api.posted == [("DDDDDDDDDDDDDDD=", pushed("o-push-2", 5, "COMPENSATING", "AWAITING_MERCHANT", "merchant declined"))]


def test_repeats_and_older_changes_are_posted_as_they_come_with_their_seq_for_the_page_to_order(pusher, api, sqs_events, eventbridge_event, lambda_context):
    connect("o-push-3", "EEEEEEEEEEEEEEE=")
    newer = changed("o-push-3", seq=3, status="AWAITING_MERCHANT", previous="STOCK_RESERVED")
    older = changed("o-push-3", seq=2)
    records = [record(sqs_events, eventbridge_event, d) for d in (newer, older, newer)]
    assert pusher.lambda_handler(sqs_events.event(records), lambda_context) == failures()
    assert [message["seq"] for _, message in api.posted] == [3, 2, 3]


def test_a_gone_connection_is_removed_and_the_others_still_get_the_change(pusher, api, sqs_events, eventbridge_event, lambda_context, capsys):
    connect("o-push-4", "FFFFFFFFFFFFFFF=", "GGGGGGGGGGGGGGG=", "HHHHHHHHHHHHHHH=")
    api.gone = {"FFFFFFFFFFFFFFF=", "HHHHHHHHHHHHHHH="}
    event = sqs_events.event([record(sqs_events, eventbridge_event, changed("o-push-4"))])
    assert pusher.lambda_handler(event, lambda_context) == failures()
    assert [connection for connection, _ in api.posted] == ["GGGGGGGGGGGGGGG="]
    assert connected("o-push-4") == ["GGGGGGGGGGGGGGG="]
    out = capsys.readouterr().out
    assert '"GoneConnectionsRemoved":[2.0]' in out and '"StatusPushes":[1.0]' in out


@pytest.mark.parametrize("code", ["LimitExceededException", "ForbiddenException", "PayloadTooLargeException"])
def test_any_other_post_error_fails_the_record_after_trying_every_connection(pusher, api, sqs_events, eventbridge_event, lambda_context, code):
    order_id = f"o-push-5-{code[:5].lower()}"
    connect(order_id, "IIIIIIIIIIIIIII=", "JJJJJJJJJJJJJJJ=")
    api.failing = {"IIIIIIIIIIIIIII=": code}
    one = record(sqs_events, eventbridge_event, changed(order_id))
    assert pusher.lambda_handler(sqs_events.event([one]), lambda_context) == failures(one["messageId"])
    assert [connection for connection, _ in api.posted] == ["JJJJJJJJJJJJJJJ="]
    assert connected(order_id) == ["IIIIIIIIIIIIIII=", "JJJJJJJJJJJJJJJ="]


def test_an_order_nobody_follows_is_counted_not_failed(pusher, api, sqs_events, eventbridge_event, lambda_context, capsys):
    event = sqs_events.event([record(sqs_events, eventbridge_event, changed("o-push-nobody"))])
    assert pusher.lambda_handler(event, lambda_context) == failures()
    assert api.posted == []
    assert '"NoListeners":[1.0]' in capsys.readouterr().out


def test_bad_records_fail_alone_with_their_reason(pusher, api, sqs_events, eventbridge_event, lambda_context, capsys):
    connect("o-push-6", "KKKKKKKKKKKKKKK=")
    good = record(sqs_events, eventbridge_event, changed("o-push-6"))
    wrong_type = record(sqs_events, eventbridge_event, changed("o-push-6"), detail_type="OrderAccepted")
    wrong_source = record(sqs_events, eventbridge_event, changed("o-push-6"), source="blueprints.orders")
    unknown_status = record(sqs_events, eventbridge_event, changed("o-push-6", status="SHIPPED"))
    no_seq = record(sqs_events, eventbridge_event, {k: v for k, v in changed("o-push-6").items() if k != "seq"})
    not_json = sqs_events.record("{not json", queue="order-status-pushes")
    records = [good, wrong_type, wrong_source, unknown_status, no_seq, not_json]
    assert pusher.lambda_handler(sqs_events.event(records), lambda_context) == failures(*(r["messageId"] for r in records[1:]))
    assert api.posted == [("KKKKKKKKKKKKKKK=", pushed("o-push-6"))]
    assert '"RejectedRecords":[5.0]' in capsys.readouterr().out


def test_a_failing_query_fails_the_record_for_a_redelivery(pusher, api, sqs_events, eventbridge_event, lambda_context, monkeypatch):
    def unavailable(name):
        raise pusher.dynamodb.exceptions.InternalServerError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "Query")

    monkeypatch.setattr(pusher.dynamodb, "get_paginator", unavailable)
    one = record(sqs_events, eventbridge_event, changed("o-push-7"))
    assert pusher.lambda_handler(sqs_events.event([one]), lambda_context) == failures(one["messageId"])
