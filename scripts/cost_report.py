"""What each blueprint costs, from its synthesized templates and the dated price table: ``make cost``.

For each blueprint and profile: the monthly cost at zero traffic (``messaging_constructs.costs.idle_cost``) and the
cost per million messages through its main path (``stacks.cost_paths.MAIN_PATHS``), then the levers that move that
figure (batching, data-key reuse, FIFO where it is not needed). Prints the report with every line, and rewrites the
block between ``<!-- cost: <stack> -->`` and ``<!-- /cost -->`` in the stack's docs page (``scripts.diagrams.PAGES``)
with the figures; ``tests/test_cost_report.py`` fails when a page's figures are not the report's.

    python -m scripts.cost_report            # print the report, rewrite the pages
    python -m scripts.cost_report --check    # exit 1 if a page is out of date; write nothing
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from messaging_constructs.costs import Line, PriceTable, idle_cost, total, unpriced
from scripts._pages import rewrite
from scripts.diagrams import PAGES, ROOT
from stacks.cost_paths import MAIN_PATHS, MainPath

PROFILES = ("sandbox", "production")
PRICE_TABLE = "messaging_constructs/costs/prices.toml"
#: Price-key prefix -> the service a line is summed under on the pages.
SERVICES = {
    "apigateway": "API Gateway",
    "waf": "WAF",
    "iot": "IoT Core",
    "kinesis": "Kinesis",
    "firehose": "Firehose",
    "sns": "SNS",
    "sqs": "SQS",
    "eventbridge": "EventBridge",
    "pipes": "EventBridge Pipes",
    "stepfunctions": "Step Functions",
    "lambda": "Lambda",
    "dynamodb": "DynamoDB",
    "kms": "KMS",
    "cloudwatch": "CloudWatch Logs",
    "xray": "X-Ray",
}

Templates = Mapping[str, Mapping[str, Mapping[str, Any]]]  # profile -> stack -> template


def usd(value: float) -> str:
    """Dollars as the pages show them: whole dollars from $100, cents from $0.01, two significant digits below."""
    if value == 0:
        return "$0"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 0.01:
        return f"${value:,.2f}"
    return f"${value:.2g}"


def by_service(lines: list[Line]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for line in lines:
        sums[SERVICES[line.price.split(".", 1)[0]]] += line.usd
    return sums


def _path_cost(main: MainPath, template: Mapping[str, Any], prices: PriceTable) -> list[Line]:
    return main.path.cost(template, prices, main.traffic)


def block(stack: str, templates: Templates, prices: PriceTable) -> str:
    """The page's cost section body: idle and per-million figures for both profiles, what they are made of, the levers."""
    main = MAIN_PATHS[stack]
    idle = {profile: idle_cost(templates[profile][stack], prices) for profile in PROFILES}
    path = {profile: _path_cost(main, templates[profile][stack], prices) for profile in PROFILES}
    out = [
        f"<!-- cost: {stack} (made by `make cost` from the synthesized templates and {PRICE_TABLE}; do not edit) -->",
        "| | sandbox | production |",
        "|---|---|---|",
        f"| idle, a month | {usd(total(idle['sandbox']))} | {usd(total(idle['production']))} |",
        f"| per million {main.message}s | {usd(total(path['sandbox']))} | {usd(total(path['production']))} |",
        "",
        "Idle, a month:",
        "",
        "| item | sandbox | production |",
        "|---|---|---|",
    ]
    items: dict[str, dict[str, float]] = defaultdict(dict)
    for profile in PROFILES:
        for line in idle[profile]:
            items[line.item][profile] = line.usd
    for item, costs in items.items():
        out.append(f"| {item} | {usd(costs.get('sandbox', 0))} | {usd(costs.get('production', 0))} |")
    rest = sorted({what for profile in PROFILES for what in unpriced(templates[profile][stack], prices)})
    if rest:
        out += ["", f"Not in the idle figure: {', '.join(rest)}."]
    traffic = main.traffic
    out += [
        "",
        f"Per million {main.message}s: {main.path.name}; at {traffic.rate:g} a second, {traffic.message_bytes:,} bytes each:",
        "",
        "| service | sandbox | production |",
        "|---|---|---|",
    ]
    services = {profile: by_service(path[profile]) for profile in PROFILES}
    for service in sorted(services["sandbox"].keys() | services["production"].keys(), key=lambda s: -services["sandbox"].get(s, 0)):
        out.append(f"| {service} | {usd(services['sandbox'].get(service, 0))} | {usd(services['production'].get(service, 0))} |")
    if main.levers:
        base = total(path["sandbox"])
        out += ["", f"What moves it (sandbox, per million {main.message}s):", "", "| change | per million | against as deployed |", "|---|---|---|"]
        out.append(f"| as deployed | {usd(base)} | 1.00 × |")
        for lever in main.levers:
            template = templates["sandbox"][stack]
            cost = total(lever.path.cost(lever.transform(template) if lever.transform else template, prices, lever.traffic))
            out.append(f"| {lever.name} | {usd(cost)} | {cost / base:.2f} × |")
    out += ["", f"us-east-1 list prices, read {prices.oldest.isoformat()} or later ({PRICE_TABLE}, each with its source page).", "<!-- /cost -->"]
    return "\n".join(out)


_BLOCK = re.compile(r"<!-- cost: (\w+)[^>]*-->.*?<!-- /cost -->", re.DOTALL)


def updated(page: str, stack: str, templates: Templates, prices: PriceTable) -> str:
    """The page with its cost block made anew; a page must already hold one (where its cost section says)."""
    if not _BLOCK.search(page):
        raise ValueError(f"the page of {stack} has no <!-- cost: {stack} --> block")
    new = block(stack, templates, prices)
    return _BLOCK.sub(lambda _: new, page, count=1)


def report(templates: Templates, prices: PriceTable) -> str:
    """Every line of every estimate, for the terminal."""
    out = []
    for stack, main in MAIN_PATHS.items():
        for profile in PROFILES:
            idle = idle_cost(templates[profile][stack], prices)
            path = _path_cost(main, templates[profile][stack], prices)
            out.append(f"\n{stack} ({profile})\n  idle, a month: {usd(total(idle))}")
            out += [f"    {line.item}: {line.quantity:,.6g} × {prices[line.price].unit} = {usd(line.usd)}" for line in idle]
            out.append(f"  per million {main.message}s: {usd(total(path))}")
            out += [f"    {line.item}: {line.quantity:,.6g} × {prices[line.price].unit} = {usd(line.usd)}" for line in path]
    return "\n".join(out)


def synthesized() -> dict[str, dict[str, dict]]:
    """Every blueprint's template in both profiles, without the packs."""
    from aws_cdk import App

    from app import build_app

    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    templates: dict[str, dict[str, dict]] = {}
    for profile in PROFILES:
        with tempfile.TemporaryDirectory() as outdir:
            assembly = build_app(App(outdir=outdir, context={**context, "profile": profile}), compliance=False).synth()
            templates[profile] = {stack: assembly.get_stack_by_name(stack).template for stack in MAIN_PATHS}
    return templates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page's cost block is out of date; write nothing")
    args = parser.parse_args(argv)
    prices = PriceTable.load()
    templates = synthesized()
    if not args.check:
        print(report(templates, prices))
    return rewrite(((stack, PAGES[stack]) for stack in MAIN_PATHS), lambda page, stack: updated(page, stack, templates, prices), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
