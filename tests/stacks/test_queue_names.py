"""Every queue of every blueprint has a name SQS accepts, under a long stack name, and a new one after destroy and deploy.

(The same in-process build also checks that every blueprint construct has an alarm topic.)

SQS names are at most 80 characters (``.fifo`` included) of letters, digits,
``-`` and ``_``. CloudFormation's generated FIFO names do not keep to that
(cloudformation-coverage-roadmap#280), and SQS refuses a deleted queue's name
for 60 seconds, so the library names every queue itself; this evaluates the
names each blueprint would get under a stack name of 40 characters.
"""

from __future__ import annotations

import re

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Annotations, Match, Template

from messaging_constructs import NO_ALARM_TOPIC
from stacks.exercise_01_queues import Exercise01QueuesStack
from stacks.exercise_02_eventbridge import Exercise02EventBridgeStack
from stacks.exercise_03_streaming import Exercise03StreamingStack
from stacks.exercise_04_event_sourcing import Exercise04EventSourcingStack
from stacks.exercise_05_enterprise_messaging import Exercise05EnterpriseMessagingStack
from tests.unit.helpers import PSEUDO, evaluate

BLUEPRINTS = [Exercise01QueuesStack, Exercise02EventBridgeStack, Exercise03StreamingStack, Exercise04EventSourcingStack, Exercise05EnterpriseMessagingStack]
STACK_NAME = "Q" * 40
_SQS_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


@pytest.fixture(scope="module", params=["sandbox", "production"])
def built(request) -> list[tuple[str, Stack]]:
    """(blueprint, stack) of every blueprint, each in a stack named with 40 characters."""
    return [(blueprint.__name__, blueprint(App(context={"profile": request.param}), blueprint.__name__, stack_name=STACK_NAME)) for blueprint in BLUEPRINTS]


@pytest.fixture(scope="module")
def queues(built) -> list[tuple[str, str, dict]]:
    """(blueprint, logical id, Properties) of every queue of every blueprint."""
    found = []
    for name, stack in built:
        for logical_id, queue in Template.from_stack(stack).find_resources("AWS::SQS::Queue").items():
            found.append((name, logical_id, queue["Properties"]))
    return found


def test_every_blueprint_construct_notifies_the_alarm_topic(built):
    """No construct of a blueprint warns that its alarms notify nobody (messaging_constructs.NO_ALARM_TOPIC)."""
    for _, stack in built:
        assert Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(NO_ALARM_TOPIC)) == []


def _name(properties: dict, **pseudo: str) -> str:
    return evaluate(properties["QueueName"], {"AWS::StackName": STACK_NAME, "AWS::StackId": PSEUDO["AWS::StackId"], **pseudo})


def test_every_queue_is_named_by_the_library(queues):
    assert [f"{b}/{q}" for b, q, p in queues if "QueueName" not in p] == []


def test_every_queue_name_is_valid_for_sqs_under_a_40_character_stack_name(queues):
    bad = []
    for blueprint, logical_id, properties in queues:
        name = _name(properties)
        fifo = bool(properties.get("FifoQueue"))
        stem = name.removesuffix(".fifo") if fifo else name
        if len(name) > 80 or not _SQS_NAME.fullmatch(stem) or fifo != name.endswith(".fifo"):
            bad.append(f"{blueprint}/{logical_id}: {name!r} ({len(name)} characters)")
    assert bad == []


def test_queue_names_are_unique_and_new_after_destroy_and_deploy(queues):
    """A new stack id after ``cdk destroy`` gives every queue a name SQS has not just deleted."""
    new_id = f"arn:aws:cloudformation:ap-southeast-5:123456789012:stack/{STACK_NAME}/0b9a8c70-1d2e-11f0-9a3b-0f1e2d3c4b5a"
    for blueprint in {b for b, _, _ in queues}:
        first = [_name(p) for b, _, p in queues if b == blueprint]
        again = [_name(p, **{"AWS::StackId": new_id}) for b, _, p in queues if b == blueprint]
        assert len(set(first)) == len(first), blueprint
        assert set(first).isdisjoint(again), blueprint
