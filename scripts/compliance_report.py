"""Synthesize every blueprint, run the five cdk-nag packs, the MessagingChecks pack and cfn-lint, print a report.

Acknowledged findings are listed with the rule, kind and reason that
``messaging_constructs.acknowledgements`` recorded on each construct.

    python -m scripts.compliance_report [--profile sandbox|production] [--outdir cdk.out]

Exit status 0 only when no pack has an unacknowledged finding and cfn-lint
reports nothing (errors, warnings or informational) on any template.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import App

from app import build_app
from messaging_constructs.acknowledgements import ACKNOWLEDGE_CONTEXT_KEY, ACKNOWLEDGEMENT_METADATA
from stacks.compliance import PACKS

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Finding:
    pack: str
    rule: str
    path: str
    description: str


@dataclass(frozen=True)
class Acknowledgement:
    path: str
    finding_id: str
    kind: str
    reason: str


@dataclass
class CheckResult:
    profile: str
    outdir: Path
    resources: dict[str, int] = field(default_factory=dict)
    templates: dict[str, Path] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    acknowledgements: list[Acknowledgement] = field(default_factory=list)
    lint: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.lint

    def findings_per_pack(self) -> dict[str, int]:
        counts = {pack: 0 for pack in PACKS}
        for finding in self.findings:
            counts[finding.pack] = counts.get(finding.pack, 0) + 1
        return counts

    def acknowledgements_per_pack(self) -> dict[str, int]:
        counts = {pack: 0 for pack in PACKS}
        for ack in self.acknowledgements:
            pack = _pack_of(ack.finding_id)
            counts[pack] = counts.get(pack, 0) + 1
        return counts


def _pack_of(rule_id: str) -> str:
    for pack in sorted(PACKS, key=len, reverse=True):
        if rule_id.startswith(f"{pack}-"):
            return pack
    return rule_id.split("-", 1)[0]


def synthesize(profile: str, outdir: Path, *, acknowledge: bool = True) -> CheckResult:
    """Synthesize the app with the packs into ``outdir`` and collect what they found."""
    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    context.update({"profile": profile, ACKNOWLEDGE_CONTEXT_KEY: acknowledge})
    app = build_app(App(outdir=str(outdir), context=context))
    report = outdir / "validation-report.json"
    report.unlink(missing_ok=True)
    try:
        app.synth()
    except RuntimeError as error:  # raised by jsii when any plugin reports a violation
        if "ValidationFailed" not in str(error):
            raise
    result = CheckResult(profile=profile, outdir=outdir)
    if report.exists():
        for plugin in json.loads(report.read_text()).get("pluginReports", []):
            for violation in plugin.get("violations", []):
                for construct in violation.get("violatingConstructs", []):
                    result.findings.append(
                        Finding(
                            pack=plugin["pluginName"],
                            rule=violation["ruleName"],
                            path=construct.get("constructPath", "?"),
                            description=violation.get("description", ""),
                        )
                    )
    for node in app.node.find_all():
        for entry in node.node.metadata:
            if entry.type == ACKNOWLEDGEMENT_METADATA:
                data = entry.data
                result.acknowledgements.append(Acknowledgement(node.node.path, data["id"], data["kind"], data["reason"]))
    manifest = json.loads((outdir / "manifest.json").read_text())
    for name, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        template = outdir / artifact["properties"]["templateFile"]
        result.templates[name] = template
        result.resources[name] = len(json.loads(template.read_text()).get("Resources", {}))
    return result


def lint(result: CheckResult) -> None:
    """Run cfn-lint on every template; every match (error, warning or informational) counts."""
    from cfnlint.api import ManualArgs, lint_file

    for name, template in result.templates.items():
        for match in lint_file(template, config=ManualArgs(regions=["us-east-1"])):
            result.lint.append(f"{name}: {match}")


def check(profile: str, outdir: Path) -> CheckResult:
    result = synthesize(profile, outdir)
    lint(result)
    return result


def render(result: CheckResult) -> str:
    lines = [f"Profile: {result.profile}    cloud assembly: {result.outdir}", "", "Stacks (resources):"]
    lines += [f"  {name:<32} {count:>4}" for name, count in result.resources.items()]
    acked = result.acknowledgements_per_pack()
    lines += ["", f"  {'pack':<20} {'unacknowledged':>15} {'acknowledged':>13}"]
    for pack, count in result.findings_per_pack().items():
        lines.append(f"  {pack:<20} {count:>15} {acked.get(pack, 0):>13}")
    lines += ["", f"cfn-lint: {len(result.lint)} finding(s) on {len(result.templates)} template(s)"]
    lines += [f"  {item}" for item in result.lint]
    if result.findings:
        lines += ["", "Unacknowledged findings:"]
        lines += [f"  [{f.pack}] {f.rule} at {f.path}: {f.description}" for f in result.findings]
    grouped: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for ack in result.acknowledgements:
        grouped[(ack.finding_id, ack.kind, ack.reason)].append(ack.path)
    lines += ["", f"Acknowledged ({len(result.acknowledgements)} acknowledgements, {len(grouped)} distinct reasons):"]
    for (finding_id, kind, reason), paths in sorted(grouped.items()):
        lines.append(f"  {finding_id} ({kind}), on {len(paths)} construct(s): {', '.join(sorted(paths))}")
        lines.append(f"      {reason}")
    lines += ["", "RESULT: " + ("PASS" if result.ok else "FAIL")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="sandbox", choices=["sandbox", "production"])
    parser.add_argument("--outdir", default=str(ROOT / "cdk.out"))
    args = parser.parse_args(argv)
    result = check(args.profile, Path(args.outdir))
    print(render(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
