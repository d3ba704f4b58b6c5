"""The distribution and the CDK CLI work as users expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

import messaging_constructs
from messaging_constructs import RuntimeLayer, runtime_layer

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_are_exported():
    assert sorted(messaging_constructs.__all__) == sorted(set(messaging_constructs.__all__))
    for name in messaging_constructs.__all__:
        assert getattr(messaging_constructs, name) is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The distribution's wheel, built offline from this checkout, once for the module."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
    )
    (built,) = out.glob("messaging_blueprints-*.whl")
    return built


def test_wheel_ships_the_library_with_its_type_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "messaging_constructs/__init__.py" in names
    assert "messaging_constructs/py.typed" in names
    assert "messaging_constructs/monitoring/sqs.py" in names
    # The functions the library deploys itself travel with it, so that they synthesize after `pip install`.
    assert "messaging_constructs/handlers/service_log_groups/handler.py" in names
    # The cost model reads its dated price table from the package.
    assert "messaging_constructs/costs/prices.toml" in names
    assert not any(n.startswith(("stacks/", "tests/", "lambdas/")) for n in names)


def test_wheel_ships_the_runtime_with_its_type_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "messaging_runtime/__init__.py" in names
    assert "messaging_runtime/py.typed" in names


@pytest.mark.parametrize("package", ["messaging_constructs", "messaging_runtime"])
def test_wheel_ships_every_module_and_subpackage_of_the_source_tree(wheel, package):
    """A subpackage added later (``messaging_runtime.contracts``...) ships without an edit to pyproject.toml, or this fails."""
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
    assert [source for source in sources if source not in names] == []


#: A CDK app of a user who pip-installed the library: one HandlerFunction, and where its modules came from.
USER_APP = """
import importlib.util, json, sys
from aws_cdk import App, Stack
import messaging_constructs, messaging_runtime
from messaging_constructs import HandlerFunction

app = App(outdir=sys.argv[2])
HandlerFunction(Stack(app, "UserStack"), "Consumer", code_path=sys.argv[1], service_name="consumer")
app.synth()
print(json.dumps({
    "messaging_constructs": messaging_constructs.__file__,
    "messaging_runtime": messaging_runtime.__file__,
    "stacks": importlib.util.find_spec("stacks") is not None,
}))
"""


def _layer_key(template: dict) -> str:
    (layer,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    return layer["Properties"]["Content"]["S3Key"]


def test_a_pip_user_gets_the_runtime_layer_without_docker(wheel, tmp_path, monkeypatch):
    """Installed from the wheel, outside the repository, with Docker unavailable: the runtime layer is built from site-packages."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)], check=True)
    work = tmp_path / "user_app"
    (work / "consumer").mkdir(parents=True)
    (work / "consumer" / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (work / "app.py").write_text(USER_APP)
    venv_site = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "aws_cdk").is_dir())
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME"}}
    # -S: no .pth files (the venv's editable install would map the repository's packages); a CDK_DOCKER that does not exist
    # makes any use of Docker fail.
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(venv_site)]), CDK_DOCKER=str(tmp_path / "no-docker"), PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run(
        [sys.executable, "-S", "app.py", str(work / "consumer"), str(work / "cdk.out")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    origins = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(origins["messaging_constructs"]).is_relative_to(site) and Path(origins["messaging_runtime"]).is_relative_to(site)
    assert origins["stacks"] is False
    template = json.loads((work / "cdk.out" / "UserStack.template.json").read_text())
    asset = work / "cdk.out" / f"asset.{_layer_key(template).removesuffix('.zip')}"
    assert (asset / "python" / "messaging_runtime" / "__init__.py").is_file()
    assert not [p for p in asset.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    # The layer is exactly the installed package.
    shipped = sorted(n.removeprefix("messaging_runtime/") for n in zipfile.ZipFile(wheel).namelist() if n.startswith("messaging_runtime/"))
    packaged = sorted(p.relative_to(asset / "python" / "messaging_runtime").as_posix() for p in asset.rglob("*") if p.is_file())
    assert packaged == shipped
    # The same source gives the same asset hash wherever it lies, with or without byte code beside it: the wheel's
    # package copied elsewhere without pip's __pycache__ (not the checkout, which may have changed since the wheel was built).
    elsewhere = tmp_path / "elsewhere" / "messaging_runtime"
    shutil.copytree(site / "messaging_runtime", elsewhere, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runtime_layer, "runtime_source", lambda: elsewhere)
    stack = Stack(App(), "ElsewhereStack")
    RuntimeLayer.of(stack)
    assert _layer_key(Template.from_stack(stack).to_json()) == _layer_key(template)


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
