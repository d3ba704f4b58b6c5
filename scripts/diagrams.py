"""Architecture diagrams of the blueprints, generated from their synthesized templates, as Mermaid in their docs pages.

``make diagrams`` synthesizes every blueprint (sandbox profile, no packs) and rewrites the block between
``<!-- diagram: <stack> -->`` and ``<!-- /diagram -->`` in the stack's page (``PAGES``) with a Mermaid flowchart of its
message paths: producers (functions, APIs, IoT rules, schedules), topics, queues, buses, streams, pipes, state machines,
tables and buckets, each edge read from the template (a subscription, an event source mapping, a rule's target, a
function's environment naming a resource it writes to...). Dead-letter and on-failure paths are dotted, labelled
``failures``. Roles, policies, log groups, alarms, keys and the network are left out. ``tests/test_diagrams.py`` fails
when a page's diagram is not the one the code makes.

    python -m scripts.diagrams            # rewrite the pages
    python -m scripts.diagrams --check    # exit 1 if a page is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from messaging_constructs._templates import referenced
from scripts._pages import rewrite

ROOT = Path(__file__).resolve().parent.parent
#: Each blueprint's docs page.
PAGES = {
    "Exercise01Queues": "docs/exercise-01.md",
    "Exercise02EventBridge": "docs/exercise-02.md",
    "Exercise03Streaming": "docs/exercise-03.md",
    "Exercise04EventSourcing": "docs/exercise-04.md",
    "Exercise05EnterpriseMessaging": "docs/exercise-05.md",
    "CapstoneOrders": "docs/capstone-orders.md",
    "CapstoneAnalytics": "docs/capstone-analytics.md",
    "CaseNetflix": "docs/case-netflix.md",
    "CaseUber": "docs/case-uber.md",
    "CaseAirbnb": "docs/case-airbnb.md",
    "CaseSpotify": "docs/case-spotify.md",
}
#: Resource type -> (kind shown, Mermaid shape opening and closing).
NODES: dict[str, tuple[str, str, str]] = {
    "AWS::SQS::Queue": ("queue", "[[", "]]"),
    "AWS::SNS::Topic": ("topic", "{{", "}}"),
    "AWS::Events::EventBus": ("bus", "{{", "}}"),
    "AWS::Kinesis::Stream": ("stream", "[/", "/]"),
    "AWS::MSK::Cluster": ("Kafka", "[/", "/]"),
    "AWS::MSK::ServerlessCluster": ("Kafka", "[/", "/]"),
    "AWS::AmazonMQ::Broker": ("broker", "[/", "/]"),
    "AWS::Lambda::Function": ("function", "(", ")"),
    "AWS::DynamoDB::Table": ("table", "[(", ")]"),
    "AWS::S3::Bucket": ("bucket", "[(", ")]"),
    "AWS::StepFunctions::StateMachine": ("state machine", "([", "])"),
    "AWS::Pipes::Pipe": ("pipe", ">", "]"),
    "AWS::Scheduler::Schedule": ("schedule", ">", "]"),
    "AWS::IoT::TopicRule": ("IoT rule", ">", "]"),
    "AWS::KinesisFirehose::DeliveryStream": ("Firehose", ">", "]"),
    "AWS::ApiGateway::RestApi": ("REST API", ">", "]"),
    "AWS::ApiGatewayV2::Api": ("WebSocket API", ">", "]"),
}
_SUFFIX = re.compile(r"[0-9A-F]{8}$")
_NOISE = ("Resource", "Default")


def _refs(value: Any) -> Iterable[str]:
    """Every logical id a value refers to, anywhere in it."""
    if isinstance(value, Mapping):
        if (found := referenced(value)) is not None:
            yield found
        for inner in value.values():
            yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def _label(logical_id: str, kind: str) -> str:
    name = _SUFFIX.sub("", logical_id)
    for noise in _NOISE:
        if name.endswith(noise) and len(name) > len(noise):
            name = name[: -len(noise)]
    return f"{name}<br/><i>{kind}</i>"


class Diagram:
    """The message paths of one template."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.resources = template.get("Resources", {})
        self.edges: set[tuple[str, str, str]] = set()  # (from, to, "solid" | "failures")
        self._read()

    def _type(self, logical_id: str | None) -> str | None:
        return self.resources.get(logical_id, {}).get("Type") if logical_id else None

    def _shown(self, logical_id: str | None) -> bool:
        return self._type(logical_id) in NODES

    def _edge(self, source: str | None, target: str | None, style: str = "solid") -> None:
        if source and target and source != target and self._shown(source) and self._shown(target):
            self.edges.add((source, target, style))

    def _read(self) -> None:
        of = lambda kind: ((k, r.get("Properties", {})) for k, r in self.resources.items() if r["Type"] == kind)  # noqa: E731
        for _, p in of("AWS::SNS::Subscription"):
            self._edge(referenced(p.get("TopicArn")), referenced(p.get("Endpoint")))
            self._edge(referenced(p.get("TopicArn")), referenced((p.get("RedrivePolicy") or {}).get("deadLetterTargetArn")), "failures")
        for k, p in of("AWS::SQS::Queue"):
            self._edge(k, referenced((p.get("RedrivePolicy") or {}).get("deadLetterTargetArn")), "failures")
        for _, p in of("AWS::Lambda::EventSourceMapping"):
            function = referenced(p.get("FunctionName"))
            self._edge(referenced(p.get("EventSourceArn")), function)
            self._edge(function, referenced(((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")), "failures")
        for _, p in of("AWS::Events::Rule"):
            bus = referenced(p.get("EventBusName"))
            for target in p.get("Targets") or []:
                self._edge(bus, referenced(target.get("Arn")))
                self._edge(bus, referenced((target.get("DeadLetterConfig") or {}).get("Arn")), "failures")
        for k, p in of("AWS::Pipes::Pipe"):
            self._edge(referenced(p.get("Source")), k)
            self._edge(k, referenced(p.get("Enrichment")))
            self._edge(k, referenced(p.get("Target")))
            for parameters in (p.get("SourceParameters") or {}).values():
                self._edge(k, referenced(((parameters or {}).get("DeadLetterConfig") or {}).get("Arn")), "failures")
        for k, p in of("AWS::Scheduler::Schedule"):
            self._edge(k, referenced((p.get("Target") or {}).get("Arn")))
            self._edge(k, referenced(((p.get("Target") or {}).get("DeadLetterConfig") or {}).get("Arn")), "failures")
        for k, p in of("AWS::Lambda::Function"):
            for value in ((p.get("Environment") or {}).get("Variables") or {}).values():
                for target in _refs(value):
                    if self._type(target) in (
                        "AWS::SQS::Queue",
                        "AWS::SNS::Topic",
                        "AWS::Events::EventBus",
                        "AWS::Kinesis::Stream",
                        "AWS::DynamoDB::Table",
                        "AWS::StepFunctions::StateMachine",
                        "AWS::S3::Bucket",
                    ):
                        self._edge(k, target)
            self._edge(k, referenced((p.get("DeadLetterConfig") or {}).get("TargetArn")), "failures")
        for _, p in of("AWS::Lambda::EventInvokeConfig"):
            self._edge(
                referenced(p.get("FunctionName")), referenced(((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")), "failures"
            )
        for k, p in of("AWS::StepFunctions::StateMachine"):
            for target in _refs(p.get("DefinitionString")):
                self._edge(k, target)
        for k, p in of("AWS::IoT::TopicRule"):
            payload = p.get("TopicRulePayload") or {}
            for action in payload.get("Actions") or []:
                for target in _refs(action):
                    self._edge(k, target)
            for target in _refs(payload.get("ErrorAction")):
                self._edge(k, target, "failures")
        for k, p in of("AWS::KinesisFirehose::DeliveryStream"):
            self._edge(referenced((p.get("KinesisStreamSourceConfiguration") or {}).get("KinesisStreamARN")), k)
            iceberg = p.get("IcebergDestinationConfiguration") or {}
            for target in _refs(iceberg.get("ProcessingConfiguration")):
                self._edge(k, target)
            self._edge(k, referenced((iceberg.get("S3Configuration") or {}).get("BucketARN")))
        for _, p in of("AWS::ApiGateway::Method"):
            api = referenced(p.get("RestApiId"))
            for target in _refs(p.get("Integration")):
                if self._type(target) in ("AWS::Lambda::Function", "AWS::Kinesis::Stream"):
                    self._edge(api, target)
        for _, p in of("AWS::ApiGatewayV2::Integration"):
            for target in _refs(p.get("IntegrationUri")):
                self._edge(referenced(p.get("ApiId")), target)

    def mermaid(self) -> str:
        nodes = sorted({n for edge in self.edges for n in edge[:2]})
        lines = ["flowchart LR"]
        for node in nodes:
            kind, opening, closing = NODES[self._type(node)]
            lines.append(f'  {node}{opening}"{_label(node, kind)}"{closing}')
        for source, target, style in sorted(self.edges):
            lines.append(f"  {source} -. failures .-> {target}" if style == "failures" else f"  {source} --> {target}")
        return "\n".join(lines)


def block(stack: str, template: Mapping[str, Any]) -> str:
    marker = f"<!-- diagram: {stack} (made by `make diagrams` from the synthesized template; do not edit) -->"
    return f"{marker}\n```mermaid\n{Diagram(template).mermaid()}\n```\n<!-- /diagram -->"


_BLOCK = re.compile(r"<!-- diagram: (\w+)[^>]*-->.*?<!-- /diagram -->", re.DOTALL)


def updated(page: str, stack: str, template: Mapping[str, Any]) -> str:
    """The page with its diagram block made anew (added under the title, as a section, when it has none)."""
    new = block(stack, template)
    if _BLOCK.search(page):
        return _BLOCK.sub(lambda _: new, page, count=1)
    title, _, rest = page.partition("\n")
    return f"{title}\n\n## Diagram\n\nMessage paths (dotted: where failures go).\n\n{new}\n{rest}"


def synthesized() -> dict[str, dict]:
    """Every blueprint's sandbox template, without the packs."""
    from aws_cdk import App

    from app import build_app

    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    with tempfile.TemporaryDirectory() as outdir:
        assembly = build_app(App(outdir=outdir, context={**context, "profile": "sandbox"}), compliance=False).synth()
        return {stack: assembly.get_stack_by_name(stack).template for stack in PAGES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page's diagram is out of date; write nothing")
    args = parser.parse_args(argv)
    templates = synthesized()
    return rewrite(((stack, PAGES[stack]) for stack in templates), lambda page, stack: updated(page, stack, templates[stack]), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
