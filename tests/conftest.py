"""Shared fixtures: the whole app is synthesized once per profile per test session."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Node 20 still runs the jsii kernel; keep its end-of-life banner out of test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _once_per_session(tmp_path_factory, worker_id: str, name: str, compute):
    """``compute(outdir)`` once per test session, shared by every xdist worker (a synth with the packs takes tens of seconds)."""
    if worker_id == "master":
        return compute(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    stored = shared / f"{name}.pickle"
    with _locked(shared / f"{name}.lock"):
        if stored.exists():
            return pickle.loads(stored.read_bytes())
        result = compute(shared / name)
        stored.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def checked(tmp_path_factory, worker_id):
    """Synth + packs + cfn-lint for each profile, once: ``checked[profile]`` is a CheckResult."""
    from scripts.compliance_report import check

    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = _once_per_session(tmp_path_factory, worker_id, f"cdk-{profile}", lambda outdir: check(profile, outdir))
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def unacknowledged(tmp_path_factory, worker_id):
    """The same synth with acknowledgements recorded but not applied: what each one hides."""
    from scripts.compliance_report import synthesize

    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = _once_per_session(tmp_path_factory, worker_id, f"cdk-raw-{profile}", lambda outdir: synthesize(profile, outdir, acknowledge=False))
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def template_json(checked):
    """``template_json(profile, stack)``: the synthesized template as a dict."""
    import json

    def get(profile: str, stack: str = "Exercise01Queues") -> dict:
        return json.loads(checked(profile).templates[stack].read_text())

    return get
