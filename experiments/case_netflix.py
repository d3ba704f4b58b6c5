"""CaseNetflix's experiment: fan-out isolation (events through the stack's own rules, one team failing) and fan-out cost.

Isolation: the rules, their target queues and the queues' redrive policies are read from the synthesized template and
made in moto (EventBridge delivers to SQS targets there, with the same pattern matching); events are put on the bus;
each team's consumer handler (``lambdas/case_netflix_team_consumer``, one module loaded per team, as one function per
team is deployed) is called with the batches Lambda's SQS poller would pass, in rounds. A message a handler reports
as failed is made visible again at once (the visibility timeout passing), so each round is one redelivery; SQS moves
it to the DLQ at its receive past ``maxReceiveCount``.

Cost: one event through the bus to k consumer teams, priced on the synthesized template by ``messaging_constructs.costs``.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from messaging_constructs.costs import BusEvents, Function, PriceTable, Queue, TableWrites, Traffic, total
from messaging_constructs.costs import Path as CostPath
from messaging_runtime.contracts.viewing import PLAYBACK_SOURCE, STUDIO_SOURCE
from stacks.cost_paths import UNMEASURED_US

ROOT = Path(__file__).resolve().parent.parent
CONSUMER = ROOT / "lambdas" / "case_netflix_team_consumer"
REGION, ACCOUNT = "us-east-1", "123456789012"
_numbers = itertools.count()


# --- Keystone's published figures (Netflix Tech Blog, "Evolution of the Netflix Data Pipeline", February 2016) ---
#: "~500 billion events and ~1.3 PB per day"; "~8 million events and ~24 GB per second during peak hours".
KEYSTONE_EVENTS_PER_DAY = 500e9
KEYSTONE_BYTES_PER_DAY = 1.3e15
KEYSTONE_PEAK_EVENTS_PER_SECOND = 8e6
#: The routing service delivers each stream to sinks of three kinds: S3 (for Hive), Elasticsearch and a consumer Kafka
#: (the 2016 post's V2.0 diagram; the Leverage Big Data 2016 slides give each its own routing containers).
KEYSTONE_SINK_KINDS = 3


def keystone_event_bytes() -> int:
    """The average event size the published daily figures imply (bytes a day over events a day)."""
    return round(KEYSTONE_BYTES_PER_DAY / KEYSTONE_EVENTS_PER_DAY)


# --- events ---


def playback_entries(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` PutEvents entries: playback starts and stops (a third of the stops rebuffered) and a few titles published."""
    chance = random.Random(seed)
    entries = []
    for number in range(count):
        event_id = f"e-{seed}-{number}"
        member, title = f"m-{chance.randrange(1000)}", f"t-{chance.randrange(50)}"
        roll = chance.random()
        if roll < 0.45:
            detail_type, source = "PlaybackStarted", PLAYBACK_SOURCE
            detail = {"device": chance.choice(["tv", "phone", "browser"]), "member_id": member, "title_id": title}
        elif roll < 0.95:
            detail_type, source = "PlaybackStopped", PLAYBACK_SOURCE
            rebuffers = chance.choice([0, 0, 1, 3]) if chance.random() < 0.5 else 0
            detail = {"member_id": member, "title_id": title, "position_seconds": chance.randrange(7200), "rebuffer_count": rebuffers}
        else:
            detail_type, source = "TitlePublished", STUDIO_SOURCE
            upload = f"u-{number}"
            detail = {"upload_id": upload, "title_id": title, "renditions": [f"s3://studio/{upload}/h264-hd.mp4"]}
        if source == PLAYBACK_SOURCE:
            detail["at"] = "2026-01-01T20:00:00Z"
        entries.append({"Source": source, "DetailType": detail_type, "Detail": json.dumps({"version": 1, "event_id": event_id, **detail})})
    return entries


def expected_routes(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``entries`` each team subscribes to, by what each team's rule is meant to select (written apart from it)."""
    counts = Counter()
    for entry in entries:
        detail = json.loads(entry["Detail"])
        counts["Analytics"] += 1
        counts["Recommendations"] += entry["DetailType"] in ("PlaybackStarted", "PlaybackStopped", "TitlePublished")
        counts["Quality"] += entry["DetailType"] == "PlaybackStopped" and detail.get("rebuffer_count", 0) > 0
    return dict(counts)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A message received from SQS in the shape Lambda's event source mapping passes it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


# --- the stack's routing, from its template ---


@dataclass(frozen=True)
class Route:
    """A team's rule and queue, as synthesized."""

    team: str
    pattern: dict[str, Any]
    queue_logical_id: str
    max_receive_count: int
    batch_size: int


def routes(template: dict[str, Any]) -> list[Route]:
    """Every rule whose target is a team's events queue, with that queue's redrive policy and its mapping's batch size."""
    resources = template["Resources"]
    found = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        properties = resource["Properties"]
        (target,) = properties["Targets"]
        queue_id = target["Arn"]["Fn::GetAtt"][0]
        team = logical_id.split("Rule")[0].removeprefix("Bus")
        if not queue_id.startswith(f"{team}Events"):  # not a consumer team's queue (the encoding requests)
            continue
        queue = resources[queue_id]["Properties"]
        (mapping,) = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        ]
        found.append(Route(team, properties["EventPattern"], queue_id, int(queue["RedrivePolicy"]["maxReceiveCount"]), int(mapping.get("BatchSize", 10))))
    return found


def load_consumer(environment: dict[str, str]) -> ModuleType:
    """A fresh import of the team consumer's handler.py (its sibling ``sink`` too), with ``environment`` set while it loads."""
    import os

    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    sys.modules.pop("sink", None)
    name = f"case_netflix_consumer_{next(_numbers)}"
    spec = importlib.util.spec_from_file_location(name, CONSUMER / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(CONSUMER))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CONSUMER))
        sys.modules.pop("sink", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return module


@dataclass
class TeamRun:
    """What one team's consumer saw in a run."""

    team: str
    routed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    failed_attempts: int = 0
    #: Calls that reached the team's service (fewer than the attempts once its circuit breaker is open).
    service_calls: int = 0
    #: The polling round in which the team's queue was last non-empty (its lag behind the bus, in rounds).
    last_round: int = 0
    seconds: float = 0.0
    receive_counts: Counter = field(default_factory=Counter)


def run_isolation(template: dict[str, Any], entries: list[dict[str, Any]], *, failing: str | None, context: Any, max_rounds: int = 200) -> dict[str, TeamRun]:
    """Route ``entries`` through the template's rules in moto and consume every team's queue until all are empty.

    Must run inside ``mock_aws()`` with a breaker table named ``breakers`` (key ``pk``). ``failing`` names the team whose
    service fails every call. Returns each team's run.
    """
    import boto3

    events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
    bus = f"netflix-{next(_numbers)}"
    events.create_event_bus(Name=bus)
    teams: dict[str, tuple[Route, str, str, str, ModuleType]] = {}
    for route in routes(template):
        dlq = sqs.create_queue(QueueName=f"{bus}-{route.team}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(route.max_receive_count)})
        url = sqs.create_queue(QueueName=f"{bus}-{route.team}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=route.team, EventBusName=bus, EventPattern=json.dumps(route.pattern))
        events.put_targets(Rule=route.team, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
        environment = {"TEAM_NAME": f"{route.team}-{bus}", "BREAKER_TABLE_NAME": "breakers", "SINK_FAILURE_RATE": "1" if route.team == failing else "0"}
        environment["POWERTOOLS_SERVICE_NAME"] = f"case-netflix-{route.team}-{bus}"  # a logger of its own, writing where stdout is now
        teams[route.team] = (route, url, arn, dlq, load_consumer(environment))
    for start in range(0, len(entries), 10):  # PutEvents takes 10 entries a call
        answer = events.put_events(Entries=[{**entry, "EventBusName": bus} for entry in entries[start : start + 10]])
        assert answer["FailedEntryCount"] == 0, answer
    runs = {team: TeamRun(team) for team in teams}
    for team, (_, url, _, _, _) in teams.items():
        runs[team].routed = int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        )
    busy = set(teams)
    for number in range(1, max_rounds + 1):
        for team in sorted(busy):
            route, url, arn, _, handler = teams[team]
            began = time.perf_counter()
            received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, route.batch_size), AttributeNames=["All"]).get("Messages", [])
            if not received:
                busy.discard(team)
                continue
            runs[team].last_round = number
            response = handler.lambda_handler({"Records": [sqs_record(m, arn) for m in received]}, context)
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            for message in received:
                runs[team].receive_counts[message["Attributes"]["ApproximateReceiveCount"]] += 1
                if message["MessageId"] in failed:  # the visibility timeout passes: delivered again next round
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
                else:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            runs[team].failed_attempts += len(failed)
            runs[team].seconds += time.perf_counter() - began
        if not busy:
            break
    for team, (_, _, _, dlq, handler) in teams.items():
        runs[team].delivered, runs[team].service_calls = len(handler.sink.delivered), handler.sink.calls
        count = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
        runs[team].dead_lettered = int(count)
    return runs


# --- cost ---


def fan_out_path(teams: int, *, queue: str = "RecommendationsEvents", function: str = "RecommendationsConsumer") -> CostPath:
    """One event put on the bus once and delivered to ``teams`` teams configured like ``queue`` and ``function``.

    Per team: the SQS requests (EventBridge's send, the poller's receive and delete), the consumer's invocation share,
    duration, logs and traces, and the breaker's read (one eventually consistent GetItem: half a read unit) per event.
    """
    hops: list[Any] = [BusEvents("Bus")]
    for _ in range(teams):
        team_queue = Queue(queue)
        hops += [
            team_queue,
            Function(function, cpu_us_per_record=UNMEASURED_US, wait_ms_per_record=6.0, batch_of=team_queue),
            TableWrites("CircuitBreakers", read_units=0.5),
        ]
    return CostPath(f"an event to {teams} consumer teams", hops)


def cost_per_event(template: dict[str, Any], teams: int, traffic: Traffic) -> tuple[float, dict[str, float]]:
    """US dollars for one event to ``teams`` teams, and the same by kind of charge (EventBridge, SQS, Lambda, ...)."""
    lines = fan_out_path(teams).cost(template, PriceTable.load(), traffic)
    kinds: Counter = Counter()
    for line in lines:
        kinds[line.item.split(",")[0].split(" ")[0]] += line.usd / 1e6
    return total(lines) / 1e6, dict(kinds)
