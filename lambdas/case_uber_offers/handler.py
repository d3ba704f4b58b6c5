"""The dispatch's tasks (CaseUber): offer a ride to one driver with a task token, then record and push the outcome.

Step Functions invokes this function with one of three payloads:

- ``{"action": "offer", "ride", "candidate", "attempt", "task_token"}`` (``lambda:invoke.waitForTaskToken``): the ride
  item records the offer (status OFFERED, ``offered_to``, ``task_token``, ``attempt``); the offer is pushed to the
  driver's channel and the status to the rider's. The dispatch then waits for the driver's answer, which the
  connection handler turns into ``SendTaskSuccess``/``SendTaskFailure``/``SendTaskHeartbeat``. A driver with no open
  connection (or whose connections all fail) cannot see the offer: this function ends the wait at once with
  ``SendTaskFailure`` (error ``DriverUnreachable``), so the next driver gets the ride without waiting for the timeout;
- ``{"action": "assigned", "ride", "driver", "answer"}``: status ASSIGNED with the driver, pushed to both;
- ``{"action": "no_driver", "ride"}``: status NO_DRIVER, pushed to the rider.

Every message carries ``seq`` (the offer's attempt, 1-based; the outcome is one more), so a client keeps the highest it
has seen and drops a repeat (a retried outcome pushes again). A push to the rider that fails is logged and counted
(``RiderPushFailures``), never fails an offer: the rider's screen must not cost a driver the ride. Metrics:
OffersPushed, DriversUnreachable, RidesAssigned, RidesWithoutDriver.

Environment: RIDES_TABLE_NAME, CONNECTIONS_TABLE_NAME, WEBSOCKET_ENDPOINT (required); OFFER_SECONDS (the driver's time
to answer, shown to the driver, default 15).
"""

import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.channel_push import ChannelPusher, PushFailed
from messaging_runtime.rides import ASSIGNED, DRIVER_UNREACHABLE, NO_DRIVER, OFFERED, driver_channel, rider_channel

RIDES_TABLE = os.environ["RIDES_TABLE_NAME"]
OFFER_SECONDS = int(os.environ.get("OFFER_SECONDS", "15"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
sfn = boto3.client("stepfunctions")
pusher = ChannelPusher(dynamodb, os.environ["CONNECTIONS_TABLE_NAME"], boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["WEBSOCKET_ENDPOINT"]))


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def record(ride_id: str, status: str, driver_id: str | None, attempt: int, task_token: str | None = None) -> None:
    values: dict[str, Any] = {":s": {"S": status}, ":n": {"N": str(attempt)}, ":t": {"N": str(int(time.time()))}}
    update = "SET #s = :s, attempt = :n, updated_at = :t"
    if driver_id is not None:
        update += ", offered_to = :d"
        values[":d"] = {"S": driver_id}
    if task_token is not None:
        update += ", task_token = :k"
        values[":k"] = {"S": task_token}
    else:
        update += " REMOVE task_token"
    dynamodb.update_item(
        TableName=RIDES_TABLE,
        Key={"ride_id": {"S": ride_id}},
        UpdateExpression=update,
        ConditionExpression="attribute_exists(ride_id)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues=values,
    )


def tell_rider(ride_id: str, message: dict[str, Any]) -> None:
    try:
        pusher.push(rider_channel(ride_id), {"type": "ride_status", "ride_id": ride_id, **message})
    except PushFailed:
        logger.exception("Rider not told", extra={"ride_id": ride_id})
        count("RiderPushFailures")


def offer(event: dict[str, Any]) -> dict[str, Any]:
    ride, driver, attempt, token = event["ride"], event["candidate"], int(event["attempt"]) + 1, event["task_token"]
    ride_id, driver_id = ride["ride_id"], driver["driver_id"]
    record(ride_id, OFFERED, driver_id, attempt, token)
    message = {"type": "offer", "ride_id": ride_id, "seq": attempt, "pickup": {"lat": ride["lat"], "lng": ride["lng"]}}
    try:
        posted = pusher.push(driver_channel(driver_id), {**message, "distance_m": driver["distance_m"], "answer_within_s": OFFER_SECONDS})
    except PushFailed:
        logger.exception("Offer not delivered", extra={"ride_id": ride_id, "driver_id": driver_id})
        posted = 0
    if posted == 0:
        sfn.send_task_failure(taskToken=token, error=DRIVER_UNREACHABLE, cause=f"no open connection of driver {driver_id} took the offer")
        count("DriversUnreachable")
        return {"offered_to": driver_id, "delivered": False}
    count("OffersPushed")
    tell_rider(ride_id, {"status": OFFERED, "seq": attempt})
    return {"offered_to": driver_id, "delivered": True}


def assigned(event: dict[str, Any]) -> dict[str, Any]:
    ride, driver, seq = event["ride"], event["driver"], int(event["attempt"]) + 2
    record(ride["ride_id"], ASSIGNED, driver["driver_id"], seq - 1)
    pusher.push(driver_channel(driver["driver_id"]), {"type": "assigned", "ride_id": ride["ride_id"], "seq": seq})
    tell_rider(ride["ride_id"], {"status": ASSIGNED, "seq": seq, "driver": driver})
    count("RidesAssigned")
    return {"ride_id": ride["ride_id"], "status": ASSIGNED}


def no_driver(event: dict[str, Any]) -> dict[str, Any]:
    ride, seq = event["ride"], int(event["attempt"]) + 1
    record(ride["ride_id"], NO_DRIVER, None, seq - 1)
    tell_rider(ride["ride_id"], {"status": NO_DRIVER, "seq": seq})
    count("RidesWithoutDriver")
    return {"ride_id": ride["ride_id"], "status": NO_DRIVER}


ACTIONS = {"offer": offer, "assigned": assigned, "no_driver": no_driver}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = ACTIONS.get(event.get("action")) if isinstance(event, dict) else None
    if action is None:
        raise ValueError(f"not a dispatch task: action {event.get('action') if isinstance(event, dict) else event!r}")
    logger.append_keys(ride_id=(event.get("ride") or {}).get("ride_id"), action=event["action"])
    return action(event)
