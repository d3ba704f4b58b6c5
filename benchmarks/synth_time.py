"""Synth time of the whole app: bare, with CDK's built-in template validation, with the five packs, with both.

    .venv/bin/python benchmarks/synth_time.py [--rounds 3]

Prints wall-clock seconds per variant (median of the rounds, variants
interleaved so that machine noise hits them alike) and each as a ratio to
the bare synth measured in the same run.

Then the same for whole processes, as a user meets them: a fresh Python
process that synthesizes the whole app with every check on (the packs and
CDK's validation), against one that synthesizes an empty ``App()``: the
latter is the fixed cost of any CDK app in Python (the interpreter, the jsii
kernel under Node.js, aws-cdk-lib's import).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402

from app import build_app  # noqa: E402

VARIANTS = {
    "bare synth": dict(builtin=False, packs=False),
    "+ built-in CloudFormation validation": dict(builtin=True, packs=False),
    "+ five cdk-nag packs": dict(builtin=False, packs=True),
    "+ both (what `make synth` runs)": dict(builtin=True, packs=True),
}


def synth_once(builtin: bool, packs: bool) -> float:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    with tempfile.TemporaryDirectory() as outdir:
        start = time.perf_counter()
        app = build_app(App(outdir=outdir, context=context, builtin_cloud_formation_validation=builtin), compliance=packs)
        app.synth()
        return time.perf_counter() - start


EMPTY_APP = "from aws_cdk import App; App(outdir={outdir!r}).synth()"
WHOLE_APP = (
    "import json, sys; sys.path.insert(0, {root!r}); from aws_cdk import App; from app import build_app; "
    "context = json.load(open({root!r} + '/cdk.json'))['context']; build_app(App(outdir={outdir!r}, context=context)).synth()"
)


def process_once(code: str) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), outdir=outdir)], check=True, capture_output=True, cwd=outdir)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    synth_once(False, False)  # warm the jsii kernel and the asset hashes
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, variant in VARIANTS.items():
            samples[name].append(synth_once(**variant))
    base = statistics.median(samples["bare synth"])
    print(f"Synth of the whole app, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<40} {'seconds':>8} {'x bare':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<40} {median:>8.2f} {median / base:>8.2f}")
    processes: dict[str, list[float]] = {"empty App().synth()": [], "whole app, every check on": []}
    for _ in range(args.rounds):
        processes["empty App().synth()"].append(process_once(EMPTY_APP))
        processes["whole app, every check on"].append(process_once(WHOLE_APP))
    empty = statistics.median(processes["empty App().synth()"])
    print(f"\nFresh processes, median of {args.rounds} interleaved rounds (target: whole app at most 3.0 x the empty app)")
    print(f"{'process':<40} {'seconds':>8} {'x empty':>8}")
    for name, values in processes.items():
        median = statistics.median(values)
        print(f"{name:<40} {median:>8.2f} {median / empty:>8.2f}")


if __name__ == "__main__":
    main()
