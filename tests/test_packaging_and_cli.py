"""The distribution and the CDK CLI work as users expect."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import messaging_constructs

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_are_exported():
    assert sorted(messaging_constructs.__all__) == sorted(set(messaging_constructs.__all__))
    for name in messaging_constructs.__all__:
        assert getattr(messaging_constructs, name) is not None


def test_wheel_ships_the_library_with_its_type_marker(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("messaging_blueprints-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "messaging_constructs/__init__.py" in names
    assert "messaging_constructs/py.typed" in names
    assert "messaging_constructs/monitoring/sqs.py" in names
    # The functions the library deploys itself travel with it, so that they synthesize after `pip install`.
    assert "messaging_constructs/handlers/service_log_groups/handler.py" in names
    assert not any(n.startswith(("stacks/", "tests/", "lambdas/")) for n in names)


def test_cdk_cli_synthesizes_the_app(tmp_path):
    """`npx cdk synth` with the pinned CLI, through cdk.json, with a profile from context."""
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "run `make setup` first: the CDK CLI is installed locally by npm"
    out = tmp_path / "cdk.out"
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "1"}
    run = subprocess.run(
        [str(cdk), "synth", "--quiet", "--no-notices", "-o", str(out), "-c", "profile=production"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "Exercise01Queues.template.json").exists()
    assert "ReservedConcurrentExecutions" in (out / "Exercise01Queues.template.json").read_text()
