"""CaseUber's handlers on moto: the position index, the ring search against brute force, the ride API, and the dispatch
executed by moto's Step Functions from the synthesized definition (its Lambda tasks call the real handlers here).

Pushes go to a recording stand-in of the management API (``PostToConnection``); connections are opened and drivers
answer through the real connection handler, with the events API Gateway sends. The offer's timeout is cut to 4 s and
its heartbeat to 2 s (15 s and 5 s as deployed). The WebSocket path over a real socket is the experiment's
(tests/experiments/test_case_uber.py).
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid

import pytest
from moto import mock_aws

from experiments.case_uber import CENTRE, INDEX_TABLE, World, dispatch_definition, kinesis_event, offset, synth_template
from messaging_runtime.driver_index import DriverIndex, DriverPosition, brute_force_nearest, cell_of
from messaging_runtime.rides import ride_id_for
from tests.handlers.conftest import FakeLambdaContext, handler_environment

KEYS = itertools.count(1)
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="module")
def world():
    template = synth_template("sandbox")
    with handler_environment() as env:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
            world = World.create(env, template, offer_timeout=4, heartbeat=2)
            posts: list[tuple[str, dict]] = []
            world.posts = posts

            def post(*, ConnectionId, Data):  # noqa: N803 - boto3's names
                item = world.dynamodb.scan(
                    TableName="ride-channels", FilterExpression="connection_id = :c", ExpressionAttributeValues={":c": {"S": ConnectionId}}
                )
                posts.append((item["Items"][0]["channel"]["S"], json.loads(Data)))
                return {}

            world.handlers["case_uber_offers"].pusher.management.post_to_connection = post
            with world.lambda_invoke():
                yield world


def positions(world, *items: DriverPosition | bytes) -> dict:
    records = [("x", item if isinstance(item, bytes) else item.model_dump_json().encode()) for item in items]
    return world.handlers["case_uber_positions"].lambda_handler(kinesis_event(records), FakeLambdaContext())


def cell_items(world, driver_id: str) -> list[str]:
    items = world.dynamodb.scan(TableName=INDEX_TABLE, FilterExpression="sk = :d", ExpressionAttributeValues={":d": {"S": driver_id}})["Items"]
    return sorted(i["pk"]["S"] for i in items if i["pk"]["S"].startswith("cell#"))


def at(driver_id: str, north_m: float, east_m: float, ts: int, available: bool = True) -> DriverPosition:
    lat, lng = offset(*CENTRE, north_m, east_m)
    return DriverPosition(driver_id=driver_id, lat=lat, lng=lng, ts=ts, available=available)


# --- the position index -------------------------------------------------------------------------------------------


def test_a_driver_is_listed_in_its_cell_and_only_there_after_it_moves(world):
    first, moved = at("d-move", 0, 0, NOW_MS), at("d-move", 0, 3000, NOW_MS + 4000)
    assert cell_of(first.lat, first.lng) != cell_of(moved.lat, moved.lng)
    assert positions(world, first, moved) == {"batchItemFailures": []}
    assert cell_items(world, "d-move") == [f"cell#{cell_of(moved.lat, moved.lng)}"]


def test_a_repeated_or_older_position_changes_nothing(world):
    newer, older = at("d-late", 0, 0, NOW_MS + 8000), at("d-late", 0, 3000, NOW_MS)
    assert positions(world, newer, older, newer) == {"batchItemFailures": []}
    assert cell_items(world, "d-late") == [f"cell#{cell_of(newer.lat, newer.lng)}"]
    item = world.dynamodb.get_item(TableName=INDEX_TABLE, Key={"pk": {"S": "driver#d-late"}, "sk": {"S": "position"}})["Item"]
    assert int(item["ts"]["N"]) == newer.ts


def test_a_driver_who_becomes_unavailable_leaves_the_index(world):
    positions(world, at("d-busy", 0, 0, NOW_MS), at("d-busy", 0, 10, NOW_MS + 4000, available=False))
    assert cell_items(world, "d-busy") == []


def test_a_record_that_is_not_a_position_fails_alone(world):
    event = kinesis_event([("a", b'{"driver_id": "d-ok", "lat": 38.7, "lng": -9.1, "ts": 1}'), ("b", b'{"driver_id": "d-bad", "lat": 123}')])
    answer = world.handlers["case_uber_positions"].lambda_handler(event, FakeLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["kinesis"]["sequenceNumber"]}]}


# --- the ring search ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count, radius_m, n, seed", [(40, 3000, 5, 1), (300, 8000, 5, 2), (8, 2500, 3, 3), (120, 1500, 10, 4), (25, 6000, 5, 5)])
def test_the_ring_search_finds_the_truly_nearest_drivers(world, count, radius_m, n, seed):
    rng = random.Random(seed)
    table = f"ring-{seed}"
    world.dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    index = DriverIndex(world.dynamodb, table)
    drivers = []
    for i in range(count):
        position = at(f"r{seed}-{i}", rng.uniform(-radius_m, radius_m), rng.uniform(-radius_m, radius_m), NOW_MS)
        index.record(position)
        drivers.append((position.driver_id, position.lat, position.lng))
    for _ in range(5):
        lat, lng = offset(*CENTRE, rng.uniform(-radius_m, radius_m), rng.uniform(-radius_m, radius_m))
        search = index.nearest(lat, lng, n, now=NOW_MS / 1000)
        expected = brute_force_nearest(drivers, lat, lng, n)
        assert [d.driver_id for d in search.drivers] == [d for d, _ in expected]
        assert [round(d.distance_m, 6) for d in search.drivers] == [round(m, 6) for _, m in expected]


def test_expired_positions_are_not_found(world):
    index = DriverIndex(world.dynamodb, INDEX_TABLE, keep_s=180)
    old = at("d-gone", 5, 5, NOW_MS - 10 * 60 * 1000)
    index.record(old)
    found = index.nearest(old.lat, old.lng, 50, now=NOW_MS / 1000, max_ring=1).drivers
    assert "d-gone" not in {d.driver_id for d in found}
    assert "d-gone" in {d.driver_id for d in index.nearest(old.lat, old.lng, 50, now=(old.ts / 1000) + 1, max_ring=1).drivers}


# --- the dispatch -------------------------------------------------------------------------------------------------


def connect(world, channel: str) -> str:
    connection_id = uuid.uuid4().hex[:16]
    handler = world.handlers["case_uber_connections"]
    event = {"requestContext": {"routeKey": "$connect", "connectionId": connection_id, "authorizer": {"channel": channel}}}
    assert handler.lambda_handler(event, FakeLambdaContext()) == {"statusCode": 200}
    return connection_id


def send(world, driver_id: str, connection_id: str, action: str, ride_id: str) -> str:
    event = {
        "requestContext": {"routeKey": "$default", "connectionId": connection_id, "authorizer": {"channel": f"driver-{driver_id}"}},
        "body": json.dumps({"action": action, "ride_id": ride_id}),
    }
    return json.loads(world.handlers["case_uber_connections"].lambda_handler(event, FakeLambdaContext())["body"])["result"]


def offers_to(world, driver_id: str, ride_id: str) -> list[dict]:
    return [m for channel, m in list(world.posts) if channel == f"driver-{driver_id}" and m.get("ride_id") == ride_id and m["type"] == "offer"]


def wait_for(condition, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def place_drivers(
    world, prefix: str, distances_m: list[float], *, connected: bool | list[bool] = True
) -> tuple[list[str], dict[str, str], tuple[float, float]]:
    """Drivers due east of a fresh spot at the given distances, each with an open driver channel (unless not connected)."""
    north = 20_000 + next(KEYS) * 30_000  # a spot of its own, far from the other tests' drivers
    ids, connections = [], {}
    flags = connected if isinstance(connected, list) else [connected] * len(distances_m)
    for i, (distance, online) in enumerate(zip(distances_m, flags, strict=True)):
        driver_id = f"{prefix}-{i}"
        positions(world, at(driver_id, north, distance, int(time.time() * 1000)))
        ids.append(driver_id)
        if online:
            connections[driver_id] = connect(world, f"driver-{driver_id}")
    return ids, connections, offset(*CENTRE, north, 0)


def execution_of(world, ride_id: str) -> str:
    return f"{world.machine_arn.replace(':stateMachine:', ':execution:')}:{ride_id}"


def test_a_refused_offer_goes_to_the_next_nearest_driver_who_gets_the_ride(world):
    (near, nearer_second, third), conns, (lat, lng) = place_drivers(world, "refuse", [100, 400, 900])
    ride = world.request_ride(lat, lng, f"k-{next(KEYS)}")
    assert ride["status_code"] == 202 and ride["candidates"] == 3
    connect(world, ride["channel"])
    ride_id = ride["ride_id"]
    wait_for(lambda: offers_to(world, near, ride_id), "the offer to the nearest driver")
    assert send(world, near, conns[near], "decline", ride_id) == "declined"
    wait_for(lambda: offers_to(world, nearer_second, ride_id), "the offer to the second driver")
    # moto arms the heartbeat only once the offer's invocation has returned (AWS, from the task's start): ask until armed.
    wait_for(lambda: send(world, nearer_second, conns[nearer_second], "seen", ride_id) == "alive", "the heartbeat to be taken")
    assert send(world, nearer_second, conns[nearer_second], "accept", ride_id) == "accepted"
    assert world.finish(execution_of(world, ride_id))["status"] == "SUCCEEDED"
    assert world.ride(ride_id)["status"]["S"] == "ASSIGNED" and world.ride(ride_id)["offered_to"]["S"] == nearer_second
    assert offers_to(world, third, ride_id) == []
    rider = [m for channel, m in world.posts if channel == ride["channel"]]
    assert [(m["status"], m["seq"]) for m in rider] == [("OFFERED", 1), ("OFFERED", 2), ("ASSIGNED", 3)]
    assert rider[-1]["driver"]["driver_id"] == nearer_second


def test_a_driver_who_lets_the_offer_lapse_loses_it_and_nobody_answering_ends_without_a_driver(world):
    (first, second), conns, (lat, lng) = place_drivers(world, "silent", [150, 600])
    ride = world.request_ride(lat, lng, f"k-{next(KEYS)}")
    ride_id = ride["ride_id"]
    wait_for(lambda: offers_to(world, second, ride_id), "the offer to the second driver, after the first's heartbeat lapsed")
    assert world.finish(execution_of(world, ride_id))["status"] == "SUCCEEDED"
    assert world.ride(ride_id)["status"]["S"] == "NO_DRIVER"
    assert send(world, first, conns[first], "accept", ride_id) == "offer_closed"


def test_a_driver_without_an_open_channel_is_skipped_with_driver_unreachable_not_waited_for(world):
    """The offer handler ends its own offer (SendTaskFailure) when no connection took it. Run on the definition without
    its heartbeat: moto's heartbeat wait ignores an answer given before the wait begins (AWS takes it from the task's start)."""
    (offline, online), conns, (lat, lng) = place_drivers(world, "offline", [80, 500], connected=[False, True])
    definition = dispatch_definition(synth_template("sandbox"), offer_timeout=60, heartbeat=0)
    arn = world.sfn.create_state_machine(name=f"dispatch-{next(KEYS)}", definition=definition, roleArn="arn:aws:iam::123456789012:role/d")["stateMachineArn"]
    ride_id = ride_id_for("rider", f"k-{next(KEYS)}")
    ride = {"ride_id": ride_id, "rider_id": "rider", "lat": lat, "lng": lng, "requested_at": int(time.time())}
    world.dynamodb.put_item(TableName="rides", Item={"ride_id": {"S": ride_id}, "status": {"S": "SEARCHING"}})
    candidates = [d.as_json() for d in DriverIndex(world.dynamodb, INDEX_TABLE).nearest(lat, lng, 2).drivers]
    assert [c["driver_id"] for c in candidates] == [offline, online]
    execution = world.sfn.start_execution(stateMachineArn=arn, name=ride_id, input=json.dumps({"ride": ride, "candidates": candidates}))["executionArn"]
    wait_for(lambda: offers_to(world, online, ride_id), "the offer to the connected driver")
    assert send(world, online, conns[online], "accept", ride_id) == "accepted"
    assert world.finish(execution)["status"] == "SUCCEEDED"
    errors = [e["taskFailedEventDetails"]["error"] for e in world.sfn.get_execution_history(executionArn=execution)["events"] if "taskFailedEventDetails" in e]
    assert errors == ["DriverUnreachable"]
    assert world.ride(ride_id)["status"]["S"] == "ASSIGNED" and world.ride(ride_id)["offered_to"]["S"] == online


def test_only_the_driver_offered_can_answer_and_only_once(world):
    (driver, other), conns, (lat, lng) = place_drivers(world, "once", [100, 200])
    ride_id = world.request_ride(lat, lng, f"k-{next(KEYS)}")["ride_id"]
    wait_for(lambda: offers_to(world, driver, ride_id), "the offer")
    assert send(world, other, conns[other], "accept", ride_id) == "offer_closed"
    assert send(world, driver, conns[driver], "accept", ride_id) == "accepted"
    assert send(world, driver, conns[driver], "decline", ride_id) == "offer_closed"
    assert world.finish(execution_of(world, ride_id))["status"] == "SUCCEEDED"
    assert world.ride(ride_id)["offered_to"]["S"] == driver


def test_a_repeated_request_names_the_same_ride_and_starts_one_dispatch(world):
    (driver,), conns, (lat, lng) = place_drivers(world, "repeat", [100])
    key = f"k-{next(KEYS)}"
    first, second = world.request_ride(lat, lng, key), world.request_ride(lat, lng, key)
    assert second["status_code"] == 202 and {k: v for k, v in first.items() if k != "status"} == {k: v for k, v in second.items() if k != "status"}
    ride_id = first["ride_id"]
    executions = world.sfn.list_executions(stateMachineArn=world.machine_arn)["executions"]
    assert [e["name"] for e in executions].count(ride_id) == 1
    wait_for(lambda: offers_to(world, driver, ride_id), "the offer")
    send(world, driver, conns[driver], "accept", ride_id)
    world.finish(execution_of(world, ride_id))


def test_a_ride_with_nobody_near_starts_no_dispatch(world):
    lat, lng = offset(*CENTRE, -900_000, 0)
    ride = world.request_ride(lat, lng, f"k-{next(KEYS)}")
    assert (ride["status_code"], ride["status"], ride["candidates"]) == (202, "NO_DRIVER", 0)
    assert ride["ride_id"] not in {e["name"] for e in world.sfn.list_executions(stateMachineArn=world.machine_arn)["executions"]}


def test_a_channel_opens_with_its_own_token_only(world):
    handler, tokens = world.handlers["case_uber_connections"], world.handlers["case_uber_rides"].tokens

    def effect(channel: str, token: str) -> str:
        event = {
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:x/v1/$connect",
            "queryStringParameters": {"channel": channel, "token": token},
        }
        return handler.lambda_handler(event, FakeLambdaContext())["policyDocument"]["Statement"][0]["Effect"]

    assert effect("driver-d-1", tokens.issue("driver-d-1")) == "Allow"
    assert effect("driver-d-2", tokens.issue("driver-d-1")) == "Deny"
    assert effect("somebody-else", tokens.issue("somebody-else")) == "Deny"
