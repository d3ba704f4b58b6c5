"""Each function folder is its own deployment package: it may import only what Lambda and its layers provide."""

import ast
import sys
from pathlib import Path

import pytest

from messaging_constructs import RuntimeLayer
from stacks._blueprint import layer_construct_id

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = ROOT / "lambdas"
LAYERS_DIR = ROOT / "build" / "layers"
# The runtime (boto3, botocore) and the Powertools layer (which ships pydantic).
PROVIDED = {"boto3", "botocore", "aws_lambda_powertools", "pydantic"}
#: What the runtime layer (RuntimeLayer, which every HandlerFunction gets unless it opts out) provides.
RUNTIME_LAYER_PACKAGES = {"messaging_runtime"}
# The blueprints' functions, and the ones the construct library deploys itself (shipped inside the package).
FOLDERS = {path.name: path for base in (LAMBDAS_DIR, ROOT / "messaging_constructs" / "handlers") for path in base.iterdir() if (path / "handler.py").is_file()}
FUNCTIONS = sorted(FOLDERS)


def _folder_of(service: str) -> str:
    # A folder may hold more than one entry point: "<folder>-<entry>" (e.g. a rebuild).
    return next((f for f in FUNCTIONS if service == f or service.startswith(f"{f}-")), service)


def _layer_name(logical_id: str) -> str | None:
    """``KafkaClientLayer1A2B3C4D`` -> ``kafka_client``, for the layers the blueprints build from layers/<name>."""
    for folder in LAYERS_DIR.iterdir() if LAYERS_DIR.is_dir() else ():
        if logical_id.startswith(layer_construct_id(folder.name)):
            return folder.name
    return None


@pytest.fixture(scope="module")
def templates(checked, template_json, tmp_path_factory) -> list[dict]:
    """Every blueprint as ``make synth`` builds it (sandbox), and CapstoneAnalytics with its optional Kafka source,
    whose forwarder only that variant deploys."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from messaging_constructs import Profile
    from stacks.capstone_analytics import CapstoneAnalyticsStack

    app = App(context={"profile": "sandbox"}, outdir=str(tmp_path_factory.mktemp("kafka-source")))
    optional = CapstoneAnalyticsStack(app, "CapstoneAnalytics", profile=Profile.of(app), kafka_source=True)
    return [template_json("sandbox", stack) for stack in checked("sandbox").templates] + [Template.from_stack(optional).to_json()]


@pytest.fixture(scope="module")
def layer_packages(templates) -> dict[str, set[str]]:
    """Per function folder, the top-level packages of the project layers its deployed functions have (the runtime layer's included)."""
    packages: dict[str, set[str]] = {}
    for template in templates:
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::Lambda::Function" or "Environment" not in resource["Properties"]:
                continue
            folder = _folder_of(resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"])
            for layer in resource["Properties"].get("Layers", []):
                if isinstance(layer, dict) and layer.get("Ref", "").startswith(RuntimeLayer.CONSTRUCT_ID):
                    packages.setdefault(folder, set()).update(RUNTIME_LAYER_PACKAGES)
                    continue
                name = _layer_name(layer["Ref"]) if isinstance(layer, dict) and "Ref" in layer else None
                if name is not None:
                    root = LAYERS_DIR / name / "python"
                    packages.setdefault(folder, set()).update(
                        p.name.removesuffix(".py") for p in root.iterdir() if not p.name.endswith((".dist-info", ".libs"))
                    )
    return packages


def test_every_function_folder_is_deployed_by_a_blueprint_and_every_deployed_function_has_one(templates):
    deployed = set()
    for template in templates:
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function" and "Environment" in resource["Properties"]:
                deployed.add(_folder_of(resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]))
    assert sorted(deployed) == FUNCTIONS


def imported_packages(source: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{source}: relative import"
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_imports_only_the_standard_library_the_runtime_powertools_and_its_layers(function, layer_packages):
    folder = FOLDERS[function]
    local = {path.stem for path in folder.glob("*.py")}
    for source in folder.rglob("*.py"):
        foreign = imported_packages(source) - set(sys.stdlib_module_names) - PROVIDED - local - layer_packages.get(function, set())
        assert not foreign, f"{source.relative_to(ROOT)} imports {sorted(foreign)}"


def test_every_blueprint_function_gets_the_runtime_layer(layer_packages):
    """``messaging_runtime`` is what two handlers share: every function of the blueprints may import it."""
    blueprint_functions = sorted(path.name for path in LAMBDAS_DIR.iterdir() if (path / "handler.py").is_file())
    assert [f for f in blueprint_functions if not RUNTIME_LAYER_PACKAGES <= layer_packages.get(f, set())] == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_has_a_lambda_handler(function):
    tree = ast.parse((FOLDERS[function] / "handler.py").read_text())
    handlers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    assert [[a.arg for a in h.args.args] for h in handlers] == [["event", "context"]]
