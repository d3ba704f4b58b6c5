"""What the handler benchmarks share: a Lambda-like environment, a context, a path importer."""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def prepare_environment(**extra: str) -> None:
    """Fake credentials in us-east-1, Powertools set as in Lambda with tracing off, no real endpoint."""
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "benchmark",
            "AWS_SECRET_ACCESS_KEY": "benchmark",
            "AWS_LAMBDA_FUNCTION_NAME": "benchmark",
            "POWERTOOLS_SERVICE_NAME": "exercise01-benchmark",
            "POWERTOOLS_METRICS_NAMESPACE": "Exercise01Benchmark",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **extra,
        }
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_DYNAMODB", "POWERTOOLS_DEV"):
        os.environ.pop(name, None)


class Context:
    function_name = "benchmark"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:benchmark"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis():
        return 900_000


def load_handler(function: str, name: str) -> ModuleType:
    """Import ``lambdas/<function>/handler.py`` as module ``name`` (call after the environment is set)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "lambdas" / function / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_function(function: str, name: str, module: str = "handler") -> ModuleType:
    """Import ``lambdas/<function>/<module>.py`` as ``name`` with its folder importable, as Lambda's task root is.

    For function folders split into several modules; the folder's own modules
    are imported afresh and taken out of ``sys.modules`` again afterwards.
    """
    folder = ROOT / "lambdas" / function
    siblings = {path.stem for path in folder.glob("*.py")}
    hidden = {sibling: sys.modules.pop(sibling) for sibling in siblings if sibling in sys.modules}
    spec = importlib.util.spec_from_file_location(name, folder / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.path.remove(str(folder))
        for sibling in siblings:
            sys.modules.pop(sibling, None)
        sys.modules.update(hidden)
    return loaded
