"""Shared fixtures: the whole app is synthesized once per profile per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Node 20 still runs the jsii kernel; keep its end-of-life banner out of test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.fixture(scope="session")
def checked(tmp_path_factory):
    """Synth + packs + cfn-lint for each profile, once: ``checked[profile]`` is a CheckResult."""
    from scripts.compliance_report import check

    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = check(profile, tmp_path_factory.mktemp(f"cdk-{profile}"))
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def unacknowledged(tmp_path_factory):
    """The same synth with acknowledgements recorded but not applied: what each one hides."""
    from scripts.compliance_report import synthesize

    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = synthesize(profile, tmp_path_factory.mktemp(f"cdk-raw-{profile}"), acknowledge=False)
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def template_json(checked):
    """``template_json(profile, stack)``: the synthesized template as a dict."""
    import json

    def get(profile: str, stack: str = "Exercise01Queues") -> dict:
        return json.loads(checked(profile).templates[stack].read_text())

    return get
