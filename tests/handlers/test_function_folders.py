"""Each function folder is its own deployment package: it may import only what Lambda provides."""

import ast
import sys
from pathlib import Path

import pytest

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
# The runtime (boto3, botocore) and the Powertools layer (which ships pydantic).
PROVIDED = {"boto3", "botocore", "aws_lambda_powertools", "pydantic"}
FUNCTIONS = sorted(path.name for path in LAMBDAS_DIR.iterdir() if (path / "handler.py").is_file())


def test_every_function_folder_is_deployed_by_a_blueprint_and_every_deployed_function_has_one(checked, template_json):
    deployed = set()
    for stack in checked("sandbox").templates:
        for resource in template_json("sandbox", stack)["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function" and "Environment" in resource["Properties"]:
                service = resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
                # A folder may hold more than one entry point: "<folder>-<entry>" (e.g. a rebuild).
                deployed.add(next((f for f in FUNCTIONS if service == f or service.startswith(f"{f}-")), service))
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
def test_a_function_imports_only_the_standard_library_the_runtime_and_powertools(function):
    folder = LAMBDAS_DIR / function
    local = {path.stem for path in folder.glob("*.py")}
    for source in folder.rglob("*.py"):
        foreign = imported_packages(source) - set(sys.stdlib_module_names) - PROVIDED - local
        assert not foreign, f"{source.relative_to(LAMBDAS_DIR)} imports {sorted(foreign)}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_has_a_lambda_handler(function):
    tree = ast.parse((LAMBDAS_DIR / function / "handler.py").read_text())
    handlers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
    assert [[a.arg for a in h.args.args] for h in handlers] == [["event", "context"]]
