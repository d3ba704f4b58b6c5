"""Shared fixtures: the whole app is synthesized once per profile per test session."""

from __future__ import annotations

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


def _synth(name: str, outdir: Path):
    """The four synths the tests share: ``cdk-<profile>`` (with the packs and cfn-lint) and ``cdk-raw-<profile>`` (acknowledgements off)."""
    from scripts.compliance_report import check, synthesize

    raw, profile = name.startswith("cdk-raw-"), name.rsplit("-", 1)[-1]
    return synthesize(profile, outdir, acknowledge=False) if raw else check(profile, outdir)


SYNTHS = ("cdk-sandbox", "cdk-production", "cdk-raw-sandbox", "cdk-raw-production")


def _try_make(shared: Path, name: str, *, wait: bool):
    """Make synth ``name`` into ``shared`` unless another worker has or is making it; its result, or None when not waiting for it."""
    stored = shared / f"{name}.pickle"
    with open(shared / f"{name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            if stored.exists():
                return pickle.loads(stored.read_bytes())
            result = _synth(name, shared / name)
            stored.write_bytes(pickle.dumps(result))
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _once_per_session(tmp_path_factory, worker_id: str, name: str):
    """Synth ``name`` once per test session, shared by every xdist worker (one with the packs takes tens of seconds).

    A worker that finds another making the synth it needs makes one that nobody has started meanwhile, so that
    both cores synthesize at the start of a session instead of one waiting for the other.
    """
    if worker_id == "master":
        return _synth(name, tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    result = _try_make(shared, name, wait=False)
    while result is None:
        idle = [other for other in SYNTHS if other != name and not (shared / f"{other}.pickle").exists()]
        if not idle or _try_make(shared, idle[0], wait=False) is None:
            result = _try_make(shared, name, wait=True)
        else:
            result = _try_make(shared, name, wait=False)
    return result


@pytest.fixture(scope="session")
def checked(tmp_path_factory, worker_id):
    """Synth + packs + cfn-lint for each profile, once: ``checked[profile]`` is a CheckResult."""
    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = _once_per_session(tmp_path_factory, worker_id, f"cdk-{profile}")
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def unacknowledged(tmp_path_factory, worker_id):
    """The same synth with acknowledgements recorded but not applied: what each one hides."""
    cache: dict = {}

    def get(profile: str):
        if profile not in cache:
            cache[profile] = _once_per_session(tmp_path_factory, worker_id, f"cdk-raw-{profile}")
        return cache[profile]

    return get


@pytest.fixture(scope="session")
def template_json(checked):
    """``template_json(profile, stack)``: the synthesized template as a dict."""
    import json

    def get(profile: str, stack: str = "Exercise01Queues") -> dict:
        return json.loads(checked(profile).templates[stack].read_text())

    return get


def pytest_configure(config: pytest.Config) -> None:
    """The controlling process (or a run without workers) names the folder the experiments write their figures to."""
    if not hasattr(config, "workerinput") and "EXPERIMENT_FIGURES_DIR" not in os.environ:
        import tempfile

        os.environ["EXPERIMENT_FIGURES_DIR"] = tempfile.mkdtemp(prefix="experiment-figures-")


def pytest_terminal_summary(terminalreporter) -> None:
    """The case-study experiments' figures (tests/experiments/figures.py), at the end of the run."""
    directory = os.environ.get("EXPERIMENT_FIGURES_DIR")
    files = sorted(Path(directory).glob("*.txt")) if directory else []
    if files:
        terminalreporter.write_sep("=", "experiment figures (measured on this machine)")
        for file in files:
            terminalreporter.write_line(file.read_text().rstrip("\n"))
