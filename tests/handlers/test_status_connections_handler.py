"""The status WebSocket API's connections: the $connect authorizer, $connect, $disconnect and $default, with API Gateway's event shapes."""

import base64
import json
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_runtime.status_tokens import StatusTokens

TABLE = "status-connections"
API_ID, STAGE = "abc123", "v1"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
METHOD_ARN = f"arn:aws:execute-api:us-east-1:123456789012:{API_ID}/{STAGE}/$connect"


@pytest.fixture(scope="module")
def key_id(moto_module):
    return boto3.client("kms").create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="module")
def connections(moto_module, load_handler, key_id):
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}, {"AttributeName": "connection_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}, {"AttributeName": "connection_id", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto_module.setenv("CONNECTIONS_TABLE_NAME", TABLE)
    moto_module.setenv("STATUS_TOKEN_KEY_ID", key_id)
    moto_module.delenv("CONNECTION_TTL_SECONDS", raising=False)
    return load_handler("status_connections")


@pytest.fixture(scope="module")
def issue(moto_module, key_id):
    return StatusTokens(boto3.client("kms"), key_id).issue


def connection_id() -> str:
    return base64.b64encode(uuid.uuid4().bytes[:10]).decode()


def _context(route: str, event_type: str, connection: str, order_id: str | None, **extra) -> dict:
    now_ms = int(time.time() * 1000)
    context = {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": "X7v3dG0kIAMFq2A=",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": now_ms - 1500,
        "requestTimeEpoch": now_ms,
        "identity": {"userAgent": "Mozilla/5.0", "sourceIp": "203.0.113.7"},
        "requestId": "X7v3dG0kIAMFq2A=",
        "domainName": DOMAIN,
        "connectionId": connection,
        "apiId": API_ID,
        **extra,
    }
    if order_id is not None:
        context["authorizer"] = {"principalId": order_id, "order_id": order_id, "integrationLatency": 41}
    return context


HEADERS = {
    "Host": DOMAIN,
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    "X-Amzn-Trace-Id": "Root=1-65c6b5b7-0e3b1a8c2f6d4e5a7b8c9d0e",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
}


def _query(order_id, token) -> dict:
    query = {k: v for k, v in {"order_id": order_id, "token": token}.items() if v is not None}
    return {"queryStringParameters": query, "multiValueQueryStringParameters": {k: [v] for k, v in query.items()}} if query else {}


def authorizer_event(order_id, token, connection: str | None = None) -> dict:
    """What API Gateway sends the REQUEST authorizer of $connect."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": HEADERS,
        "multiValueHeaders": {k: [v] for k, v in HEADERS.items()},
        **_query(order_id, token),
        "stageVariables": {},
        "requestContext": _context("$connect", "CONNECT", connection or connection_id(), None),
    }


def connect_event(order_id: str | None, connection: str, token: str = "t") -> dict:
    return {
        "headers": HEADERS,
        "multiValueHeaders": {k: [v] for k, v in HEADERS.items()},
        **_query(order_id, token),
        "requestContext": _context("$connect", "CONNECT", connection, order_id),
        "isBase64Encoded": False,
    }


def disconnect_event(order_id: str | None, connection: str) -> dict:
    headers = {"Host": DOMAIN, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _context("$disconnect", "DISCONNECT", connection, order_id, disconnectStatusCode=1001, disconnectReason="Going away")
    return {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()}, "requestContext": context, "isBase64Encoded": False}


def message_event(body, order_id: str = "o-chatty", *, encoded: bool = False) -> dict:
    context = _context("$default", "MESSAGE", connection_id(), order_id, messageId="X7v4TdcdoAMCJBw=")
    return {"requestContext": context, "body": body, "isBase64Encoded": encoded}


def stored(order_id: str) -> list[dict]:
    found = boto3.client("dynamodb").query(
        TableName=TABLE, KeyConditionExpression="order_id = :o", ExpressionAttributeValues={":o": {"S": order_id}}, ConsistentRead=True
    )
    return found["Items"]


# --- the authorizer --------------------------------------------------------------------------


def test_the_order_s_token_is_allowed_to_connect_as_that_order(connections, issue, lambda_context):
    answer = connections.lambda_handler(authorizer_event("o-auth-1", issue("o-auth-1")), lambda_context)
    assert answer == {
        "principalId": "o-auth-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}]},
        "context": {"order_id": "o-auth-1"},
    }


@pytest.mark.parametrize(
    ("order_id", "token_of"),
    [
        ("o-auth-2", "o-auth-3"),  # another order's token
        ("o-auth-2", None),  # no token
        (None, "o-auth-2"),  # no order id
        (None, None),  # no query string at all
        ("o-auth-2/../o-auth-3", "o-auth-2/../o-auth-3"),  # not an order id, even with a token made for it
        ("o-" + "x" * 65, "o-" + "x" * 65),
        ("O-AUTH-2", "O-AUTH-2"),
    ],
)
def test_anything_else_is_denied_never_raised(connections, issue, lambda_context, order_id, token_of, capsys):
    token = issue(token_of) if token_of else None
    answer = connections.lambda_handler(authorizer_event(order_id, token), lambda_context)
    assert answer["policyDocument"]["Statement"] == [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}]
    assert "context" not in answer and answer["principalId"] == "refused"
    out = capsys.readouterr().out
    assert '"ConnectionsRefused":[1.0]' in out and (token is None or token not in out)


@pytest.mark.parametrize("mangle", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t[:20], lambda t: t + "==", lambda t: "!" * 43, lambda t: ""])
def test_a_tampered_short_or_non_base64_token_is_denied(connections, issue, lambda_context, mangle):
    answer = connections.lambda_handler(authorizer_event("o-auth-4", mangle(issue("o-auth-4"))), lambda_context)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_an_error_of_kms_itself_raises_so_the_client_gets_500_not_403(connections, issue, lambda_context, monkeypatch):
    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "VerifyMac")

    token = issue("o-auth-5")
    monkeypatch.setattr(connections.tokens.kms, "verify_mac", throttled)
    with pytest.raises(ClientError, match="ThrottlingException"):
        connections.lambda_handler(authorizer_event("o-auth-5", token), lambda_context)


# --- $connect and $disconnect ------------------------------------------------------------------


def test_connect_stores_the_connection_under_its_order_with_an_expiry(connections, lambda_context):
    connection = connection_id()
    before = int(time.time())
    assert connections.lambda_handler(connect_event("o-conn-1", connection), lambda_context) == {"statusCode": 200}
    (item,) = stored("o-conn-1")
    assert item["connection_id"] == {"S": connection}
    assert before + 7200 <= int(item["expires_at"]["N"]) <= int(time.time()) + 7200
    assert item["connected_at"]["S"].endswith("Z") and item["connected_at"]["S"][:4].isdigit()


def test_the_authorizer_context_carries_the_order_from_authorizer_to_connect_and_disconnect(connections, issue, lambda_context):
    connection = connection_id()
    allowed = connections.lambda_handler(authorizer_event("o-conn-2", issue("o-conn-2"), connection), lambda_context)
    event = connect_event(None, connection)
    event["requestContext"]["authorizer"] = {"principalId": allowed["principalId"], **allowed["context"], "integrationLatency": 35}
    assert connections.lambda_handler(event, lambda_context) == {"statusCode": 200}
    assert [i["connection_id"]["S"] for i in stored("o-conn-2")] == [connection]
    leaving = disconnect_event(None, connection)
    leaving["requestContext"]["authorizer"] = event["requestContext"]["authorizer"]
    assert connections.lambda_handler(leaving, lambda_context) == {"statusCode": 200}
    assert stored("o-conn-2") == []


def test_several_connections_of_one_order_are_kept_apart(connections, lambda_context):
    first, second = connection_id(), connection_id()
    for connection in (first, second):
        connections.lambda_handler(connect_event("o-conn-3", connection), lambda_context)
    connections.lambda_handler(disconnect_event("o-conn-3", first), lambda_context)
    assert [i["connection_id"]["S"] for i in stored("o-conn-3")] == [second]


def test_disconnect_answers_200_when_the_connection_is_already_gone_or_has_no_order(connections, lambda_context):
    connection = connection_id()
    assert connections.lambda_handler(disconnect_event("o-conn-4", connection), lambda_context) == {"statusCode": 200}
    assert connections.lambda_handler(disconnect_event(None, connection), lambda_context) == {"statusCode": 200}


def test_connect_without_an_authorized_order_is_refused_and_stores_nothing(connections, lambda_context):
    for order_id in (None, "not-an-order"):
        event = connect_event(order_id, connection_id())
        assert connections.lambda_handler(event, lambda_context) == {"statusCode": 403}
    assert stored("not-an-order") == []


def test_the_ttl_comes_from_the_environment(moto_module, connections, load_handler, lambda_context):
    moto_module.setenv("CONNECTION_TTL_SECONDS", "60")
    try:
        short = load_handler("status_connections")
        short.lambda_handler(connect_event("o-conn-5", connection_id()), lambda_context)
        (item,) = stored("o-conn-5")
        assert int(item["expires_at"]["N"]) <= int(time.time()) + 60
        moto_module.setenv("CONNECTION_TTL_SECONDS", "0")
        with pytest.raises(ValueError, match="CONNECTION_TTL_SECONDS must be a positive number"):
            load_handler("status_connections")
    finally:
        moto_module.delenv("CONNECTION_TTL_SECONDS")


# --- $default ---------------------------------------------------------------------------------


PUSH_ONLY = {"type": "push_only", "message": "this API only pushes order status; messages sent to it are ignored"}


@pytest.mark.parametrize(
    ("body", "encoded"),
    [
        ('{"action": "subscribe", "order_id": "o-other"}', False),
        ("not json {", False),
        ("[" * 100_000, False),
        ("x" * 128 * 1024, False),
        (base64.b64encode(bytes(range(256))).decode(), True),
        ("", False),
        (None, False),
    ],
)
def test_default_answers_that_the_api_is_push_only_whatever_the_body(connections, lambda_context, body, encoded):
    answer = connections.lambda_handler(message_event(body, encoded=encoded), lambda_context)
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == PUSH_ONLY


@settings(max_examples=50, deadline=None)
@given(body=st.one_of(st.none(), st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.integers(), st.lists(st.text())))
def test_default_never_crashes(connections, lambda_context, body):
    assert connections.lambda_handler(message_event(body), lambda_context)["statusCode"] == 200


def test_an_event_of_no_known_route_fails_loudly(connections, lambda_context):
    for event in ({}, {"Records": []}, {"requestContext": {"routeKey": "sendMessage", "connectionId": "abc="}}, {"requestContext": {"routeKey": "$connect"}}):
        with pytest.raises(ValueError, match="not an event of this WebSocket API"):
            connections.lambda_handler(event, lambda_context)
