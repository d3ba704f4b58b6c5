"""The order API against moto's DynamoDB, invoked with API Gateway REST proxy events (Lambda proxy integration)."""

import base64
import itertools
import json
import time
import uuid
from datetime import datetime
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.checkout import customer_id_of, order_id_for
from tests.handlers.conftest import ACCOUNT_ID, REGION
from tests.handlers.record_shapes import metric_totals

# A read or a refused request publishes no metric: Powertools warns, as it does in Lambda.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ORDERS_TABLE, OUTBOX_TABLE = "orders", "orders-outbox"
API_ID, STAGE = "a1b2c3d4e5", "prod"
ORDER = {"items": [{"sku": "SKU-book", "quantity": 2}, {"sku": "SKU-pen", "quantity": 1}], "total": 31.5, "currency": "EUR"}
_callers = itertools.count()


def iam_caller() -> dict:
    """An IAM principal, as API Gateway puts it in ``requestContext.identity`` of a request signed with SigV4."""
    name = f"customer-{next(_callers)}-{uuid.uuid4().hex[:8]}"
    return {"iam": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/storefront-customer/{name}"}


def cognito_caller() -> dict:
    """A Cognito user pool user: its ``sub`` claim."""
    return {"cognito": str(uuid.uuid4())}


def api_event(method, path, *, caller=None, body=None, headers=None, multi_headers=None, base64_body=False):
    """An API Gateway REST API proxy event (payload format 1.0) as Lambda receives it.

    ``caller`` is ``{"iam": <user ARN>}`` (IAM authorization), ``{"cognito": <sub>}`` (Cognito user pool authorizer) or None
    (no authorization). ``multi_headers`` adds headers sent more than once: ``headers`` then holds their last value.
    """
    segments = path.strip("/").split("/")
    resource = "/orders" if len(segments) == 1 else "/orders/{order_id}" + ("/cancel" if len(segments) == 3 else "")
    path_parameters = {"order_id": segments[1]} if len(segments) > 1 else None
    sent = {
        "Accept": "application/json",
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Viewer-Country": "DE",
        "Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "User-Agent": "storefront/3.2 (python-requests/2.32)",
        "Via": "2.0 5f0c3b0a2f6e9f7c.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": "Zx3kQmJr0x3lqCQe0Fm4bOQ2yC0gX9cYV8m3Jk2Ltq0eBLVq2fWnA==",
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        "X-Forwarded-For": "203.0.113.24, 130.176.98.12",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if body is not None:
        sent["Content-Type"] = "application/json"
    if caller and "iam" in caller:
        sent.update({"Authorization": "AWS4-HMAC-SHA256 Credential=ASIA.../execute-api/aws4_request, ...", "X-Amz-Date": "20250314T092653Z"})
    elif caller:
        sent["Authorization"] = "eyJraWQiOiJ0ZXN0IiwiYWxnIjoiUlMyNTYifQ.e30.c2lnbmF0dXJl"
    sent.update(headers or {})
    multi = {name: [value] for name, value in sent.items()}
    for name, values in (multi_headers or {}).items():
        multi[name], sent[name] = list(values), values[-1]
    identity = {
        "cognitoIdentityPoolId": None,
        "accountId": None,
        "cognitoIdentityId": None,
        "caller": None,
        "sourceIp": "203.0.113.24",
        "principalOrgId": None,
        "accessKey": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": None,
        "userAgent": sent["User-Agent"],
        "user": None,
    }
    request_id = str(uuid.uuid4())
    context = {
        "resourceId": "k2x9p1",
        "resourcePath": resource,
        "httpMethod": method,
        "extendedRequestId": "HxG3qFmLoAMEbVw=",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "path": f"/{STAGE}{path}",
        "accountId": ACCOUNT_ID,
        "protocol": "HTTP/1.1",
        "stage": STAGE,
        "domainPrefix": API_ID,
        "requestTimeEpoch": int(time.time() * 1000),
        "requestId": request_id,
        "identity": identity,
        "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "deploymentId": "t8w5q2",
        "apiId": API_ID,
    }
    if caller and "iam" in caller:
        role_session = caller["iam"].rsplit("/", 1)[-1]
        identity.update(accountId=ACCOUNT_ID, accessKey="ASIAXEXAMPLEKEY00001", caller=f"AROAXEXAMPLEROLE0001:{role_session}", userArn=caller["iam"])
        identity["user"] = identity["caller"]
    elif caller:
        claims = {
            "sub": caller["cognito"],
            "cognito:username": caller["cognito"],
            "email": "customer@example.com",
            "email_verified": "true",
            "iss": f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_Ab12Cd34E",
            "aud": "3n4b5urk1ft4fl3mg5e62d9ado",
            "token_use": "id",
            "auth_time": "1741944413",
            "iat": "Fri Mar 14 09:26:53 UTC 2025",
            "exp": "Fri Mar 14 10:26:53 UTC 2025",
        }
        context["authorizer"] = {"claims": claims}
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": context,
        "body": text,
        "isBase64Encoded": base64_body,
    }


@pytest.fixture(scope="module")
def api(moto_module, load_handler):
    """The handler, with the orders and outbox tables as the blueprint creates them."""
    dynamodb = boto3.client("dynamodb")
    for name, key in ((ORDERS_TABLE, "order_id"), (OUTBOX_TABLE, "aggregate_id")):
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    moto_module.setenv("ORDERS_TABLE_NAME", ORDERS_TABLE)
    moto_module.setenv("OUTBOX_TABLE_NAME", OUTBOX_TABLE)
    return load_handler("order_api")


class Client:
    """Calls the handler the way API Gateway does; ``post``, ``get`` and ``cancel`` return the proxy response."""

    def __init__(self, module, context):
        self.module, self.context = module, context

    def call(self, method, path, **options):
        return self.module.lambda_handler(api_event(method, path, **options), self.context)

    def place(self, caller, key, body=ORDER, **options):
        return self.call("POST", "/orders", caller=caller, body=body, headers={"Idempotency-Key": key}, **options)

    def get(self, caller, order_id):
        return self.call("GET", f"/orders/{order_id}", caller=caller)

    def cancel(self, caller, order_id):
        return self.call("POST", f"/orders/{order_id}/cancel", caller=caller)


@pytest.fixture(scope="module")
def client(api, lambda_context):
    return Client(api, lambda_context)


def body_of(response):
    return json.loads(response["body"])


def order_item(order_id):
    return boto3.resource("dynamodb").Table(ORDERS_TABLE).get_item(Key={"order_id": order_id}, ConsistentRead=True).get("Item")


def outbox_slot(order_id):
    return boto3.resource("dynamodb").Table(OUTBOX_TABLE).get_item(Key={"aggregate_id": order_id}, ConsistentRead=True).get("Item")


def item_counts():
    dynamodb = boto3.client("dynamodb")
    return tuple(dynamodb.scan(TableName=name, Select="COUNT")["Count"] for name in (ORDERS_TABLE, OUTBOX_TABLE))


def set_status(order_id, status):
    boto3.resource("dynamodb").Table(ORDERS_TABLE).update_item(
        Key={"order_id": order_id}, UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": status}
    )


def expected_order_id(caller, key):
    return order_id_for(customer_id_of(caller.get("iam") or caller.get("cognito")), key)


# --- POST /orders -----------------------------------------------------------------


@pytest.mark.parametrize("make_caller", [iam_caller, cognito_caller], ids=["IAM", "Cognito"])
def test_a_new_order_is_accepted_and_written_with_its_event(client, make_caller):
    caller = make_caller()
    order_id = expected_order_id(caller, "checkout-1")

    response = client.place(caller, "checkout-1")

    assert response["statusCode"] == 202
    body = body_of(response)
    assert list(body) == ["order_id", "status", "accepted_at", "link"]
    assert body["order_id"] == order_id and body["status"] == "ACCEPTED" and body["link"] == f"/orders/{order_id}"
    assert response["multiValueHeaders"]["Location"] == [f"/orders/{order_id}"]
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert abs(datetime.fromisoformat(body["accepted_at"]).timestamp() - time.time()) < 60
    assert datetime.fromisoformat(body["accepted_at"]).utcoffset().total_seconds() == 0

    item = order_item(order_id)
    assert item["status"] == "ACCEPTED" and item["seq"] == 1
    assert item["customer_id"] == customer_id_of(caller.get("iam") or caller.get("cognito"))
    assert item["items"] == ORDER["items"] and item["total"] == Decimal("31.5") and item["currency"] == "EUR"
    assert item["accepted_at"] == body["accepted_at"] and item["idempotency_key"] == "checkout-1"
    assert int(item["deadline"]) == pytest.approx(time.time() + 1800, abs=60)

    slot = outbox_slot(order_id)
    assert slot["seq"] == 1 and slot["detail_type"] == "OrderAccepted" and slot["source"] == "blueprints.checkout"
    detail = json.loads(slot["detail"])
    assert datetime.fromisoformat(detail.pop("accepted_at")) == datetime.fromisoformat(body["accepted_at"])
    assert detail == {"version": 1, "order_id": order_id, "seq": 1, "customer_id": item["customer_id"], **ORDER}


def test_the_deadline_comes_from_the_environment(api, load_handler, monkeypatch, lambda_context):
    monkeypatch.setenv("ORDER_DEADLINE_SECONDS", "60")
    caller = iam_caller()

    response = Client(load_handler("order_api"), lambda_context).place(caller, "quick")

    assert response["statusCode"] == 202
    assert int(order_item(body_of(response)["order_id"])["deadline"]) == pytest.approx(time.time() + 60, abs=5)


def test_a_repeat_gets_the_same_bytes_and_writes_nothing(client):
    caller = iam_caller()
    first = client.place(caller, "retry-me")
    order_id = body_of(first)["order_id"]
    item, slot, counts = order_item(order_id), outbox_slot(order_id), item_counts()
    set_status(order_id, "STOCK_RESERVED")  # the saga moved on: the answer does not change

    again = client.place(caller, "retry-me", body=json.dumps(ORDER, indent=2))  # the same request, written differently

    assert (again["statusCode"], again["body"], again["multiValueHeaders"]["Location"]) == (202, first["body"], first["multiValueHeaders"]["Location"])
    assert order_item(order_id) == {**item, "status": "STOCK_RESERVED"}
    assert outbox_slot(order_id) == slot  # the same event_id: nothing was written again
    assert item_counts() == counts


def test_the_key_used_for_another_order_is_422_and_changes_nothing(client):
    caller = iam_caller()
    order_id = body_of(client.place(caller, "k-1"))["order_id"]
    item, slot, counts = order_item(order_id), outbox_slot(order_id), item_counts()

    response = client.place(caller, "k-1", body={**ORDER, "total": 99.0})

    assert response["statusCode"] == 422
    assert "Idempotency-Key was already used for another order" in body_of(response)["message"]
    assert (order_item(order_id), outbox_slot(order_id), item_counts()) == (item, slot, counts)


def test_two_customers_using_the_same_key_get_two_orders(client):
    alice, bob = iam_caller(), cognito_caller()

    first, second = client.place(alice, "order-1"), client.place(bob, "order-1", body={**ORDER, "total": 5})

    assert (first["statusCode"], second["statusCode"]) == (202, 202)
    assert body_of(first)["order_id"] != body_of(second)["order_id"]
    assert order_item(body_of(second)["order_id"])["total"] == 5


def test_the_header_name_is_case_insensitive_and_a_base64_body_is_read(client):
    caller = iam_caller()

    response = client.call("POST", "/orders", caller=caller, body=ORDER, headers={"idempotency-key": "lower"}, base64_body=True)

    assert response["statusCode"] == 202
    assert body_of(response)["order_id"] == expected_order_id(caller, "lower")


@pytest.mark.parametrize(
    ("headers", "multi_headers"),
    [
        ({}, None),
        ({"Idempotency-Key": ""}, None),
        ({"Idempotency-Key": "x" * 65}, None),
        ({"Idempotency-Key": "has space"}, None),
        ({"Idempotency-Key": "a,b"}, None),
        ({"Idempotency-Key": "clé"}, None),
        ({"Idempotency-Key": "ok\n"}, None),
        ({}, {"Idempotency-Key": ["first", "second"]}),
    ],
    ids=["missing", "empty", "65 characters", "a space", "a comma", "not ASCII", "a newline", "two values"],
)
def test_a_missing_or_invalid_idempotency_key_is_400(client, headers, multi_headers):
    counts = item_counts()

    response = client.call("POST", "/orders", caller=iam_caller(), body=ORDER, headers=headers, multi_headers=multi_headers)

    assert response["statusCode"] == 400
    assert body_of(response) == {"message": "the Idempotency-Key header is required: one value of 1 to 64 letters, digits, _ or -"}
    assert item_counts() == counts


def test_a_key_of_64_characters_is_accepted(client):
    assert client.place(iam_caller(), "K_-9" * 16)["statusCode"] == 202


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ("not json", ["body"]),
        (None, ["body"]),
        ('{"items": [', ["body"]),
        ([], ["body"]),
        ({"total": 1, "currency": "EUR"}, ["items"]),
        ({**ORDER, "items": []}, ["items"]),
        ({**ORDER, "total": -0.01}, ["total"]),
        ({**ORDER, "total": "31.50"}, ["total"]),
        ({**ORDER, "currency": "eur"}, ["currency"]),
        ({**ORDER, "coupon": "FREE"}, ["coupon"]),
        ({**ORDER, "customer_id": "c-someone-else"}, ["customer_id"]),
        ({**ORDER, "items": [{"sku": "book", "quantity": 0}]}, ["items.0.sku", "items.0.quantity"]),
        ("[" * 1000 + "]" * 1000, ["body"]),
        ('{"items": ' + "[" * 1000 + "]" * 1000 + ', "total": 1, "currency": "EUR"}', ["body"]),
    ],
    ids=[
        "not JSON",
        "no body",
        "cut short",
        "a list",
        "missing items",
        "no items",
        "negative total",
        "total as text",
        "lower-case currency",
        "an unknown field",
        "a customer in the body",
        "a bad item",
        "1000 levels deep",
        "a field 1000 levels deep",
    ],
)
def test_a_bad_body_is_400_with_each_field_and_nothing_is_written(client, body, fields):
    caller, counts = iam_caller(), item_counts()

    response = client.place(caller, "bad-body", body=body)

    assert response["statusCode"] == 400
    answer = body_of(response)
    assert answer["message"] == "the body is not a valid order"
    assert [error["field"] for error in answer["errors"]] == fields
    assert all(isinstance(error["message"], str) and error["message"] for error in answer["errors"])
    assert "Traceback" not in response["body"] and "pydantic" not in response["body"]
    assert item_counts() == counts
    assert order_item(expected_order_id(caller, "bad-body")) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/orders"), ("GET", "/orders/o-0123456789abcdef"), ("POST", "/orders/o-0123456789abcdef/cancel")],
    ids=["place", "get", "cancel"],
)
def test_a_request_without_an_identity_is_401(client, method, path):
    counts = item_counts()

    response = client.call(method, path, caller=None, body=ORDER if path == "/orders" else None, headers={"Idempotency-Key": "anonymous"})

    assert (response["statusCode"], body_of(response)) == (401, {"message": "the request is not authenticated"})
    assert item_counts() == counts


# --- GET /orders/{order_id} -------------------------------------------------------------


def test_the_caller_reads_their_order(client):
    caller = cognito_caller()
    placed = body_of(client.place(caller, "read-me"))

    response = client.get(caller, placed["order_id"])

    assert response["statusCode"] == 200
    order = body_of(response)
    assert order == {
        "order_id": placed["order_id"],
        "status": "ACCEPTED",
        "seq": 1,
        "items": ORDER["items"],
        "total": 31.5,
        "currency": "EUR",
        "reason": None,
        "accepted_at": placed["accepted_at"],
        "updated_at": placed["accepted_at"],
        "cancel_requested": False,
    }
    assert '"total":31.5' in response["body"] and '"seq":1,' in response["body"]


def test_another_customers_order_and_an_unknown_one_get_the_same_404(client):
    owner = iam_caller()
    order_id = body_of(client.place(owner, "mine"))["order_id"]
    stranger = iam_caller()

    answers = [client.get(stranger, order_id), client.get(owner, "o-" + "0" * 32), client.get(owner, "not-an-order-id"), client.get(owner, "o-" + "x" * 3000)]

    assert [(response["statusCode"], response["body"]) for response in answers] == [(404, '{"message":"no such order"}')] * 4


def test_an_unknown_route_is_404(client):
    response = client.module.lambda_handler({**api_event("DELETE", "/orders/o-1", caller=iam_caller())}, client.context)

    assert response["statusCode"] == 404


# --- POST /orders/{order_id}/cancel ---------------------------------------------------


def test_a_cancel_is_accepted_and_shows_on_the_order(client):
    caller = iam_caller()
    order_id = body_of(client.place(caller, "cancel-me"))["order_id"]
    slot = outbox_slot(order_id)

    response = client.cancel(caller, order_id)

    assert (response["statusCode"], body_of(response)) == (202, {"order_id": order_id, "status": "ACCEPTED", "cancel_requested": True})
    assert body_of(client.get(caller, order_id))["cancel_requested"] is True
    assert outbox_slot(order_id) == slot  # the saga compensates at its next step; no event now
    assert client.cancel(caller, order_id)["statusCode"] == 202  # asking again is harmless


def test_a_terminal_order_cannot_be_cancelled(client):
    caller = iam_caller()
    order_id = body_of(client.place(caller, "too-late"))["order_id"]
    set_status(order_id, "CONFIRMED")

    response = client.cancel(caller, order_id)

    assert response["statusCode"] == 409
    assert body_of(response) == {"message": "the order can no longer be cancelled: it is CONFIRMED", "order_id": order_id, "status": "CONFIRMED"}
    assert "cancel_requested" not in order_item(order_id)


def test_another_customers_order_or_an_unknown_one_cannot_be_cancelled(client):
    owner = iam_caller()
    order_id = body_of(client.place(owner, "not-yours"))["order_id"]

    answers = [client.cancel(iam_caller(), order_id), client.cancel(owner, "o-" + "0" * 32), client.cancel(owner, "order-1")]

    assert [(response["statusCode"], response["body"]) for response in answers] == [(404, '{"message":"no such order"}')] * 3
    assert "cancel_requested" not in order_item(order_id)


# --- Failures and metrics ------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["transact_write_items", "get_item"])
def test_a_dynamodb_failure_is_a_500_without_details(client, monkeypatch, caplog, operation):
    def fail(**params):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "Internal server error"}}, operation)

    monkeypatch.setattr(client.module.client, operation, fail)
    caller = iam_caller()
    event = api_event("POST", "/orders", caller=caller, body=ORDER, headers={"Idempotency-Key": "boom"})
    if operation == "get_item":
        event = api_event("GET", "/orders/o-0123456789abcdef", caller=caller)
    caplog.clear()

    response = client.module.lambda_handler(event, client.context)

    assert (response["statusCode"], body_of(response)) == (500, {"message": "internal error; please try again later"})
    assert "Traceback" not in response["body"]
    [error] = [record for record in caplog.records if record.levelname == "ERROR"]
    assert (error.getMessage(), error.request_id) == ("Request failed", event["requestContext"]["requestId"])
    assert error.exc_info[0] is ClientError


def test_each_post_counts_one_metric(client, capsys):
    caller = iam_caller()
    capsys.readouterr()

    client.place(caller, "m-1")
    client.place(caller, "m-1")
    client.place(caller, "m-1", body={**ORDER, "total": 1})
    client.place(caller, "m-2", body={**ORDER, "items": [{"sku": "bad", "quantity": 0}] * 3})
    client.call("POST", "/orders", caller=None, body=ORDER, headers={"Idempotency-Key": "m-3"})
    client.get(caller, "o-" + "0" * 32)

    totals = metric_totals(capsys.readouterr().out)
    assert (totals["OrdersAccepted"], totals["OrderRepeats"], totals["OrdersRefused"]) == (1, 1, 3)


# --- Property: placing twice -------------------------------------------------------------------

requests = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.fixed_dictionaries({"sku": st.from_regex(r"SKU-[A-Za-z0-9_-]{1,64}", fullmatch=True), "quantity": st.integers(1, 10_000)}),
            min_size=1,
            max_size=5,
        ),
        "total": st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2).map(float),
        "currency": st.from_regex(r"[A-Z]{3}", fullmatch=True),
    }
)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests, key=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), cognito=st.booleans())
def test_placing_twice_gives_one_answer_one_order_and_one_event(client, request, key, cognito):
    caller = cognito_caller() if cognito else iam_caller()
    counts = item_counts()

    first, second = client.place(caller, key, body=request), client.place(caller, key, body=request)

    assert (first["statusCode"], second["statusCode"]) == (202, 202)
    assert first["body"] == second["body"]
    order_id = expected_order_id(caller, key)
    assert body_of(first)["order_id"] == order_id
    assert item_counts() == (counts[0] + 1, counts[1] + 1)
    assert order_item(order_id)["seq"] == 1 and outbox_slot(order_id)["seq"] == 1
