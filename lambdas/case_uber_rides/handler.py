"""The ride API (API Gateway REST API, Lambda proxy integration): ``POST /rides`` finds the nearest drivers and starts the dispatch.

The rider is the caller (the ``sub`` claim of a Cognito authorizer, else the caller's IAM ARN; neither: 401). The
``Idempotency-Key`` header (1 to 64 of ``[A-Za-z0-9_-]``) names the ride with the rider (``ride_id_for``). The handler
runs the ring search (``DriverIndex.nearest``, up to MAX_CANDIDATES drivers), writes the ride (status SEARCHING, or
NO_DRIVER when nobody is near) with its candidates, and starts the dispatch state machine with the execution name
= the ride id, so a retry with the same key starts nothing new: it finds the stored ride, starts the same
execution again if the first start was lost (Step Functions refuses a second one with ``ExecutionAlreadyExists``),
and gets the same ride, channel and token (with the ride's status now). 202: ``ride_id``, ``status``, ``candidates``
(how many), ``channel`` and ``channel_token`` for the ride's WebSocket channel. A body ``RideRequest`` refuses is 400.
Metrics: RidesRequested, RideRepeats, RidesWithoutDrivers, RingsSearched, CellsQueried.

Environment: INDEX_TABLE_NAME, RIDES_TABLE_NAME, STATE_MACHINE_ARN, STATUS_TOKEN_KEY_ID (required); MAX_CANDIDATES (5).
"""

import hashlib
import json
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.api_gateway import handle_errors, idempotency_key, principal, read_body
from messaging_runtime.driver_index import DriverIndex
from messaging_runtime.rides import NO_DRIVER, SEARCHING, TOKEN_PURPOSE, RideRequest, ride_id_for, rider_channel
from messaging_runtime.saga_steps import start_once
from messaging_runtime.status_tokens import StatusTokens

MAX_CANDIDATES = int(os.environ.get("MAX_CANDIDATES", "5"))
#: A ride item is kept a day (DynamoDB TTL).
KEEP_SECONDS = 86_400
RIDES_TABLE, STATE_MACHINE_ARN = os.environ["RIDES_TABLE_NAME"], os.environ["STATE_MACHINE_ARN"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
sfn = boto3.client("stepfunctions")
index = DriverIndex(dynamodb, os.environ["INDEX_TABLE_NAME"])
tokens = StatusTokens(boto3.client("kms"), os.environ["STATUS_TOKEN_KEY_ID"], purpose=TOKEN_PURPOSE)
app = APIGatewayRestResolver()


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, separators=(",", ":")))


def rider() -> str:
    return hashlib.sha256(principal(app).encode()).hexdigest()[:32]


def store(ride_id: str, rider_id: str, request: RideRequest) -> tuple[bool, dict[str, Any]]:
    """Write the ride with its candidates, unless it exists: (written, the stored ride's status and dispatch input)."""
    search = index.nearest(request.lat, request.lng, MAX_CANDIDATES)
    metrics.add_metric(name="RingsSearched", unit=MetricUnit.Count, value=search.rings)
    metrics.add_metric(name="CellsQueried", unit=MetricUnit.Count, value=search.cells)
    now = int(time.time())
    ride = {"ride_id": ride_id, "rider_id": rider_id, "lat": request.lat, "lng": request.lng, "requested_at": now}
    dispatch = {"ride": ride, "candidates": [driver.as_json() for driver in search.drivers]}
    status = SEARCHING if search.drivers else NO_DRIVER
    item = {
        "ride_id": {"S": ride_id},
        "rider_id": {"S": rider_id},
        "status": {"S": status},
        "dispatch": {"S": json.dumps(dispatch, separators=(",", ":"))},
        "expires_at": {"N": str(now + KEEP_SECONDS)},
    }
    try:
        dynamodb.put_item(TableName=RIDES_TABLE, Item=item, ConditionExpression="attribute_not_exists(ride_id)")
        return True, {"status": status, "dispatch": dispatch}
    except dynamodb.exceptions.ConditionalCheckFailedException:
        stored = dynamodb.get_item(TableName=RIDES_TABLE, Key={"ride_id": {"S": ride_id}}, ConsistentRead=True)["Item"]
        return False, {"status": stored["status"]["S"], "dispatch": json.loads(stored["dispatch"]["S"])}


@app.post("/rides")
def request_ride() -> Response:
    rider_id, key, request = rider(), idempotency_key(app), read_body(app, RideRequest, "a ride request")
    ride_id = ride_id_for(rider_id, key)
    written, ride = store(ride_id, rider_id, request)
    candidates = ride["dispatch"]["candidates"]
    if candidates:
        start_once(sfn, STATE_MACHINE_ARN, ride_id, json.dumps(ride["dispatch"], separators=(",", ":")))  # False: running or done already
    metrics.add_metric(name="RidesRequested" if written else "RideRepeats", unit=MetricUnit.Count, value=1)
    if written and not candidates:
        metrics.add_metric(name="RidesWithoutDrivers", unit=MetricUnit.Count, value=1)
    channel = rider_channel(ride_id)
    body = {"ride_id": ride_id, "status": ride["status"], "candidates": len(candidates), "channel": channel, "channel_token": tokens.issue(channel)}
    return answer(202, body)


handle_errors(app, logger, answer)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
