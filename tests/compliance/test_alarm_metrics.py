"""Every metric an alarm watches or a dashboard draws is one AWS publishes: checked against docs/monitoring.md.

An alarm on a metric that never exists stays OK forever (missing data is not
breaching), so a wrong namespace, name, dimension set or dimension value is a
silent failure that synth, cdk-nag and cfn-lint cannot see. The table in
docs/monitoring.md records what AWS documents, with its source; this test
reads that table and checks every alarm and every dashboard widget of every
blueprint, in both profiles, against it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ["sandbox", "production"]
STACKS = [
    "Exercise01Queues",
    "Exercise02EventBridge",
    "Exercise03Streaming",
    "Exercise04EventSourcing",
    "Exercise05EnterpriseMessaging",
    "CapstoneOrders",
    "CapstoneAnalytics",
    "CaseNetflix",
    "CaseUber",
    "CaseAirbnb",
    "CaseSpotify",
]

#: Resource types whose ``Ref`` is the name CloudWatch uses in a dimension. Every
#: other ``Ref`` is not: a queue's is its URL, a topic's and an MSK cluster's their
#: ARN, an Amazon MQ broker's its id, and a rule's on a custom bus ``<bus>|<rule>``
#: (see the "Return values" of each type in the CloudFormation reference).
REF_IS_NAME = {
    "AWS::Lambda::Function",
    "AWS::DynamoDB::Table",
    "AWS::Events::EventBus",
    "AWS::Pipes::Pipe",
    "AWS::Scheduler::ScheduleGroup",
    "AWS::ApiGatewayV2::Api",  # its Ref is the API id, the ApiId dimension
    "AWS::Kinesis::Stream",
    "AWS::KinesisFirehose::DeliveryStream",
    "AWS::IoT::TopicRule",
}
#: Dimensions whose value is a resource's ARN, and the types whose Ref is that ARN.
REF_IS_ARN = {"StateMachineArn": {"AWS::StepFunctions::StateMachine"}}
#: Metrics Insights aggregate -> the statistic it computes over each period.
INSIGHTS_AGGREGATES = {"MAX": "Maximum", "MIN": "Minimum", "AVG": "Average", "SUM": "Sum", "COUNT": "SampleCount"}
_INSIGHTS = re.compile(r"SELECT\s+(\w+)\((\w+)\)\s+FROM\s+SCHEMA\((.*?)\)", re.IGNORECASE)


@dataclass(frozen=True)
class MetricUse:
    """One metric as a template uses it."""

    where: str
    namespace: str
    metric: str
    dimensions: dict[str, object]
    statistic: str


def documented() -> dict[tuple[str, str, frozenset[str]], set[str]]:
    """(namespace, metric, dimension names) -> the statistics docs/monitoring.md allows."""
    rows: dict[tuple[str, str, frozenset[str]], set[str]] = {}
    for line in (ROOT / "docs" / "monitoring.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("namespace", "---") or not line.startswith("|"):
            continue
        namespace, metric, dimensions, statistics, source = cells
        assert source.startswith("https://"), f"row {metric} has no source page"
        key = (namespace, metric, frozenset(d.strip() for d in dimensions.split(",")))
        assert key not in rows, f"row {key} appears twice"
        rows[key] = {s.strip() for s in statistics.split(",")}
    return rows


def _alarm_uses(name: str, alarm: dict) -> list[MetricUse]:
    if "MetricName" in alarm:
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return [MetricUse(name, alarm["Namespace"], alarm["MetricName"], dimensions, alarm.get("Statistic") or alarm.get("ExtendedStatistic"))]
    uses = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            uses.append(MetricUse(name, metric["Namespace"], metric["MetricName"], dimensions, stat["Stat"]))
        else:
            uses += _insights_uses(name, query["Expression"])
    return uses


def _insights_uses(where: str, expression: str) -> list[MetricUse]:
    """A Metrics Insights query names its namespace, metric and dimension set; plain math names only ids."""
    found = _INSIGHTS.search(expression)
    if found is None:
        return []
    aggregate, metric, schema = found.groups()
    namespace, *dimensions = [part.strip().strip('"') for part in schema.split(",")]
    return [MetricUse(where, namespace, metric, {d: "(any)" for d in dimensions}, INSIGHTS_AGGREGATES[aggregate.upper()])]


def _dashboard_uses(name: str, dashboard: dict) -> list[MetricUse]:
    body = dashboard["DashboardBody"]
    text = "".join(part if isinstance(part, str) else "TOKEN" for part in body["Fn::Join"][1]) if isinstance(body, dict) else body
    uses = []
    for widget in json.loads(text)["widgets"]:
        for line in widget.get("properties", {}).get("metrics", []):
            options = line[-1] if isinstance(line[-1], dict) else {}
            if "expression" in options:
                uses += _insights_uses(name, options["expression"])
                continue
            values = [v for v in line if not isinstance(v, dict)]
            namespace, metric, *pairs = values
            dimensions = dict(zip(pairs[0::2], pairs[1::2], strict=True))
            uses.append(MetricUse(name, namespace, metric, dimensions, options.get("stat", "Average")))
    return uses


def metric_uses(template: dict) -> list[MetricUse]:
    uses = []
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            uses += _alarm_uses(name, resource["Properties"])
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            uses += _dashboard_uses(name, resource["Properties"])
    return uses


def _problems(template: dict, uses: list[MetricUse], table: dict) -> list[str]:
    problems = []
    resources = template["Resources"]
    for use in uses:
        key = (use.namespace, use.metric, frozenset(use.dimensions))
        if key not in table:
            problems.append(f"{use.where}: {use.namespace} {use.metric} with dimensions {sorted(use.dimensions)} is not published by AWS (docs/monitoring.md)")
            continue
        if use.statistic not in table[key]:
            problems.append(f"{use.where}: {use.metric} read as {use.statistic}; docs/monitoring.md allows {sorted(table[key])}")
        for dimension, value in use.dimensions.items():
            if isinstance(value, dict) and "Ref" in value and value["Ref"] in resources:
                kind = resources[value["Ref"]]["Type"]
                if kind not in (REF_IS_ARN[dimension] if dimension in REF_IS_ARN else REF_IS_NAME):
                    problems.append(f"{use.where}: dimension {dimension} is the Ref of a {kind}, which is not what the dimension holds")
    return problems


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_alarm_and_widget_watches_a_metric_aws_publishes(template_json, profile, stack):
    template = template_json(profile, stack)
    uses = metric_uses(template)
    assert any(u.where in template["Resources"] and template["Resources"][u.where]["Type"] == "AWS::CloudWatch::Alarm" for u in uses)
    assert _problems(template, uses, documented()) == []


@pytest.fixture(scope="module")
def library_template() -> dict:
    """What no blueprint builds but the library offers: a serverless cluster, brokers with no queue alarms, every alarm of the constructs' metrics."""
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from messaging_constructs import BrokerEngine, KafkaCluster, KafkaClusterType, MessageBroker, MonitoringDashboard, PrivateNetwork

    stack = Stack(App(context={"profile": "sandbox"}), "Library")
    network = PrivateNetwork(stack, "Network")
    dashboard = MonitoringDashboard(stack, "Dashboard")
    dashboard.monitor(KafkaCluster(stack, "Serverless", network=network, cluster_type=KafkaClusterType.SERVERLESS))
    for engine in BrokerEngine:
        dashboard.monitor(MessageBroker(stack, engine.value.title(), engine=engine, network=network))
    return Template.from_stack(stack).to_json()


def test_what_only_the_library_draws_is_published_too(library_template):
    assert _problems(library_template, metric_uses(library_template), documented()) == []


def test_every_documented_metric_is_used_somewhere(template_json, library_template):
    """The table describes the library, not AWS at large: a row nothing uses is stale."""
    templates = [template_json(p, s) for p in PROFILES for s in STACKS] + [library_template]
    used = {(u.namespace, u.metric, frozenset(u.dimensions)) for t in templates for u in metric_uses(t)}
    assert sorted(f"{ns} {m} {sorted(d)}" for (ns, m, d) in documented() if (ns, m, d) not in used) == []


def test_the_check_catches_a_rule_metric_without_its_bus(template_json):
    """The defect this test exists for: a rule alarm with RuleName alone, set to the rule's Ref."""
    template = json.loads(json.dumps(template_json("sandbox", "Exercise02EventBridge")))
    rules = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Events::Rule"]
    alarms = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    alarm = next(a for a in alarms if a.get("Namespace") == "AWS/Events")
    alarm["Dimensions"] = [{"Name": "RuleName", "Value": {"Ref": rules[0]}}]
    problems = _problems(template, metric_uses(template), documented())
    assert len(problems) == 1 and "is not published by AWS" in problems[0]
    alarm["Dimensions"] += [{"Name": "EventBusName", "Value": "bus"}]
    problems = _problems(template, metric_uses(template), documented())
    assert len(problems) == 1 and "the Ref of a AWS::Events::Rule" in problems[0]
