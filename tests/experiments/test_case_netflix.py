"""CaseNetflix's experiment: fan-out isolation and fan-out cost, offline, figures printed.

1. Isolation: events go through the stack's own rules (moto's EventBridge, patterns from the template) into each
   team's queue; each team's consumer handler runs on its queue in rounds, once with every team healthy and once with
   the Quality team's service failing every call. Asserted: the healthy teams receive and deliver every event their
   rule selects, in the same number of rounds as when nobody fails, with nothing dead-lettered; every event of the
   failing team ends in its DLQ after ``maxReceiveCount`` receives, and none reached its service.
2. Cost: one event through the bus to k = 1, 2, 4, 8, 16 teams, priced on the template; then Keystone's published
   daily volume at its number of sink kinds. Asserted: EventBridge is charged once whatever k, the rest grows with k.

Run: ``.venv/bin/python -m pytest -n0 tests/experiments/test_case_netflix.py -s``
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import boto3
import pytest
from aws_cdk import App
from moto import mock_aws

from experiments import case_netflix as experiment
from messaging_constructs import Profile
from messaging_constructs.costs import Traffic
from stacks.case_netflix import TEAMS, CaseNetflixStack
from tests.experiments.figures import figures as shown
from tests.handlers.conftest import FakeLambdaContext, handler_environment

EVENTS = 200
FAILING = "Quality"
KS = (1, 2, 4, 8, 16)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    app = App(outdir=str(tmp_path_factory.mktemp("netflix-experiment")), context={"profile": "sandbox"})
    CaseNetflixStack(app, "CaseNetflix", profile=Profile.of(app))
    return app.synth().get_stack_by_name("CaseNetflix").template


@pytest.fixture(scope="module")
def runs(template):
    entries = experiment.playback_entries(EVENTS)
    results = {}
    # The handlers' log lines and metrics (one EMF line per batch) go to a buffer: the figures are what is printed.
    with handler_environment(), mock_aws(), contextlib.redirect_stdout(io.StringIO()):
        boto3.client("dynamodb").create_table(
            TableName="breakers",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for label, failing in (("healthy", None), ("one failing", FAILING)):
            began = time.perf_counter()
            results[label] = experiment.run_isolation(template, entries, failing=failing, context=FakeLambdaContext())
            results[label + " seconds"] = time.perf_counter() - began
    return entries, results


def test_every_team_rule_of_the_stack_is_exercised(template):
    assert sorted(route.team for route in experiment.routes(template)) == sorted(team.name for team in TEAMS)


def test_healthy_teams_get_every_event_in_the_same_rounds_while_one_team_fails(runs):
    entries, results = runs
    expected = experiment.expected_routes(entries)
    healthy, failing = results["healthy"], results["one failing"]
    with shown("case-netflix"):
        print(f"\nCaseNetflix isolation: {EVENTS} events through the stack's rules; {FAILING}'s service fails every call in the second run")
        header = f"{'team':<16}{'routed':>8}{'delivered':>11}{'DLQ':>6}{'rounds':>8}{'rounds, one failing':>21}"
        print(header + f"{'failed tries':>14}{'service calls':>15}{'handler s':>11}")
        for team in sorted(healthy):
            a, b = healthy[team], failing[team]
            row = f"{team:<16}{b.routed:>8}{b.delivered:>11}{b.dead_lettered:>6}{a.last_round:>8}{b.last_round:>21}"
            print(row + f"{b.failed_attempts:>14}{b.service_calls:>15}{b.seconds:>11.3f}")
        print(f"wall time: {results['healthy seconds']:.2f} s all healthy, {results['one failing seconds']:.2f} s with one failing (this machine)")
    for team, run in failing.items():
        assert run.routed == expected[team] > 0
        if team == FAILING:
            continue
        assert (run.delivered, run.dead_lettered, run.failed_attempts) == (expected[team], 0, 0)
        assert run.last_round == healthy[team].last_round  # no later than when nobody fails
    assert healthy[FAILING].delivered == expected[FAILING]


def test_the_failing_team_dead_letters_every_event_after_max_receives_and_delivers_none(runs, template):
    _, results = runs
    run = results["one failing"][FAILING]
    (route,) = [r for r in experiment.routes(template) if r.team == FAILING]
    assert run.delivered == 0
    assert run.dead_lettered == run.routed
    assert run.failed_attempts == run.routed * route.max_receive_count
    assert max(int(count) for count in run.receive_counts) == route.max_receive_count
    # The breaker opened after its threshold of failures: most attempts failed fast without calling the service.
    assert 0 < run.service_calls < run.failed_attempts


def test_cost_per_event_charges_the_bus_once_and_each_team_its_own_requests(template):
    traffic = Traffic(rate=1000, message_bytes=experiment.keystone_event_bytes())
    figures = {k: experiment.cost_per_event(template, k, traffic) for k in KS}
    per_day = experiment.KEYSTONE_EVENTS_PER_DAY
    sinks = experiment.KEYSTONE_SINK_KINDS
    at_keystone, _ = experiment.cost_per_event(template, sinks, traffic)
    with shown("case-netflix"):
        kinds = sorted({kind for _, by_kind in figures.values() for kind in by_kind})
        print(f"\nCaseNetflix fan-out cost, US$ per million events of {traffic.message_bytes} bytes at {traffic.rate:.0f}/s (list prices, us-east-1)")
        print(f"{'teams':>6}{'total':>10}{'per team':>10}" + "".join(f"{kind:>13}" for kind in kinds))
        for k, (usd, by_kind) in figures.items():
            print(f"{k:>6}{usd * 1e6:>10.2f}{usd * 1e6 / k:>10.2f}" + "".join(f"{by_kind.get(kind, 0) * 1e6:>13.3f}" for kind in kinds))
        print(
            f"at Keystone's ~{per_day / 1e9:.0f} billion events/day (2016) with {sinks} routes each: ${at_keystone * per_day:,.0f}/day, "
            f"${at_keystone * per_day * 365 / 1e6:,.1f} million/year; peak {experiment.KEYSTONE_PEAK_EVENTS_PER_SECOND / 1e6:.0f} million events/s"
        )
    bus = [by_kind["EventBridge"] for _, by_kind in figures.values()]
    assert len(set(bus)) == 1 and bus[0] > 0  # one put, whatever the number of rules it matches
    totals = [usd for usd, _ in figures.values()]
    assert totals == sorted(totals) and totals[-1] > totals[0]
    sqs = [by_kind["SQS"] for _, by_kind in figures.values()]
    assert sqs[-1] == pytest.approx(sqs[0] * KS[-1])  # every team pays its own requests
    assert json.dumps(figures)  # plain numbers
