"""The ride channels' WebSocket API (CaseUber): authorize, record and forget connections, take drivers' answers to offers.

One function is the ``$connect`` REQUEST authorizer and the integration of ``$connect``, ``$disconnect`` and
``$default`` (``messaging_constructs.websocket_api.PushWebSocketApi`` with ``subscription_key="channel"``):

- authorizer: ``?channel=ride-<ride id>|driver-<driver id>&token=...``; the token must be the channel's
  (``messaging_runtime.rides``, KMS ``VerifyMac``); the channel goes into the authorizer's context;
- ``$connect`` / ``$disconnect``: the connection item (``channel``, ``connection_id``, ``expires_at``) put / deleted;
- ``$default``: a driver's answer to the offer it holds, ``{"action": "seen" | "accept" | "decline", "ride_id"}``.
  The ride item must show this driver as ``offered_to`` with a task token. ``seen`` sends a heartbeat (the app sends
  it when the offer shows and every few seconds while it shows: an app that went silent loses the offer after
  ``HeartbeatSeconds``); ``accept`` and ``decline`` first take the token off the ride item (a conditional update, so
  one answer only wins) and then end the wait with ``SendTaskSuccess`` or ``SendTaskFailure`` (``DriverDeclined``).
  The answer to the client is ``{"type": "answer", "result": "accepted" | "declined" | "alive" | "offer_closed"
  | "refused", "ride_id"}``; ``offer_closed`` when the offer went to someone else, timed out or was answered.
  Riders' messages are ignored (``push_only``).

Metrics: ConnectionsAuthorized, ConnectionsRefused, Connected, Disconnected, OffersAccepted, OffersDeclined,
OfferHeartbeats, LateAnswers, AnswersRefused.

Environment: CONNECTIONS_TABLE_NAME, STATUS_TOKEN_KEY_ID, RIDES_TABLE_NAME (required); CONNECTION_TTL_SECONDS (7200).
"""

import json
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from messaging_runtime.api_gateway import authorizer_policy
from messaging_runtime.rides import ANSWERS, DRIVER_DECLINED, RIDE_ID, TOKEN_PURPOSE, parse_channel
from messaging_runtime.status_tokens import StatusTokens

TABLE_NAME, RIDES_TABLE = os.environ["CONNECTIONS_TABLE_NAME"], os.environ["RIDES_TABLE_NAME"]
TTL_SECONDS = int(os.environ.get("CONNECTION_TTL_SECONDS", "7200"))
#: Step Functions' answers to a token whose task is over (timed out, answered, or the execution ended).
CLOSED = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
sfn = boto3.client("stepfunctions")
tokens = StatusTokens(boto3.client("kms"), os.environ["STATUS_TOKEN_KEY_ID"], purpose=TOKEN_PURPOSE)


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    channel = query.get("channel")
    if parse_channel(channel) is not None and tokens.verify(channel, query.get("token")):
        count("ConnectionsAuthorized")
        return {**authorizer_policy("Allow", channel, event["methodArn"]), "context": {"channel": channel}}
    logger.warning("Connection refused", extra={"reason": "not a channel" if parse_channel(channel) is None else "the token is not this channel's"})
    count("ConnectionsRefused")
    return authorizer_policy("Deny", "refused", event["methodArn"])


def channel_of(request: dict[str, Any]) -> str | None:
    channel = (request.get("authorizer") or {}).get("channel")
    return channel if parse_channel(channel) is not None else None


def connect(request: dict[str, Any]) -> dict[str, Any]:
    channel = channel_of(request)
    if channel is None:
        logger.error("Connection without an authorized channel: is the authorizer on $connect?")
        count("ConnectionsRefused")
        return {"statusCode": 403}
    item = {"channel": {"S": channel}, "connection_id": {"S": request["connectionId"]}, "expires_at": {"N": str(int(time.time()) + TTL_SECONDS)}}
    dynamodb.put_item(TableName=TABLE_NAME, Item=item)
    count("Connected")
    return {"statusCode": 200}


def disconnect(request: dict[str, Any]) -> dict[str, Any]:
    channel = channel_of(request)
    if channel is not None:
        dynamodb.delete_item(TableName=TABLE_NAME, Key={"channel": {"S": channel}, "connection_id": {"S": request["connectionId"]}})
    count("Disconnected")
    return {"statusCode": 200}


def reply(result: str, ride_id: Any = None, **extra: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"type": "answer", "result": result, "ride_id": ride_id, **extra}, separators=(",", ":"))}


def take_token(ride_id: str, driver_id: str, token: str) -> bool:
    """Remove the offer's token from the ride, if it is still this driver's: True when this answer is the one that counts."""
    try:
        dynamodb.update_item(
            TableName=RIDES_TABLE,
            Key={"ride_id": {"S": ride_id}},
            UpdateExpression="REMOVE task_token",
            ConditionExpression="task_token = :k AND offered_to = :d",
            ExpressionAttributeValues={":k": {"S": token}, ":d": {"S": driver_id}},
        )
        return True
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False


def answer(request: dict[str, Any], body: Any) -> dict[str, Any]:
    kind, driver_id = parse_channel(channel_of(request)) or ("rider", "")
    if kind != "driver":
        return {"statusCode": 200, "body": json.dumps({"type": "push_only", "message": "riders' channels only receive"})}
    try:
        message = json.loads(body or "")
        action, ride_id = message["action"], message["ride_id"]
        if action not in ANSWERS or not isinstance(ride_id, str) or not RIDE_ID.fullmatch(ride_id):
            raise ValueError(action)
    except (ValueError, TypeError, KeyError):
        count("AnswersRefused")
        return reply("refused", message=f'expected {{"action": one of {", ".join(ANSWERS)}, "ride_id": "r-..."}}')
    ride = dynamodb.get_item(TableName=RIDES_TABLE, Key={"ride_id": {"S": ride_id}}, ConsistentRead=True).get("Item", {})
    token = ride.get("task_token", {}).get("S")
    if token is None or ride.get("offered_to", {}).get("S") != driver_id or (action != "seen" and not take_token(ride_id, driver_id, token)):
        count("LateAnswers")
        return reply("offer_closed", ride_id)
    try:
        if action == "seen":
            sfn.send_task_heartbeat(taskToken=token)
            count("OfferHeartbeats")
            return reply("alive", ride_id)
        if action == "accept":
            sfn.send_task_success(taskToken=token, output=json.dumps({"driver_id": driver_id, "accepted_at": int(time.time())}))
            count("OffersAccepted")
            return reply("accepted", ride_id)
        sfn.send_task_failure(taskToken=token, error=DRIVER_DECLINED, cause=f"driver {driver_id} declined")
        count("OffersDeclined")
        return reply("declined", ride_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in CLOSED:
            raise
        count("LateAnswers")
        return reply("offer_closed", ride_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("type") == "REQUEST" and "methodArn" in event:
        return authorize(event)
    request = event.get("requestContext") or {}
    route, connection_id = request.get("routeKey"), request.get("connectionId")
    if route not in ("$connect", "$disconnect", "$default") or not isinstance(connection_id, str):
        raise ValueError(f"not an event of this WebSocket API: route {route!r}")
    logger.append_keys(route=route, connection_id=connection_id)
    if route == "$connect":
        return connect(request)
    if route == "$disconnect":
        return disconnect(request)
    return answer(request, event.get("body"))
