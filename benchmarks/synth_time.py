"""Synth time of the whole app: bare, with CDK's built-in template validation, with the five packs, with both.

    .venv/bin/python benchmarks/synth_time.py [--rounds 3]

Prints wall-clock seconds per variant (median of the rounds, variants
interleaved so that machine noise hits them alike) and each as a ratio to
the bare synth measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


if __name__ == "__main__":
    main()
