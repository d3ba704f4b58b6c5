"""Where the Lambda code of the blueprints lives, found from this file, not the working directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"
LAYERS = ROOT / "build" / "layers"


def lambda_code(name: str) -> str:
    """The folder of the function ``name`` under ``lambdas/``."""
    path = LAMBDAS / name
    if not (path / "handler.py").is_file():
        raise FileNotFoundError(f"no handler.py in {path}")
    return str(path)


def layer_code(name: str) -> str:
    """The folder of the layer ``name``, built by ``make setup`` from ``layers/<name>/requirements.txt``."""
    path = LAYERS / name
    if not (path / "python").is_dir():
        raise FileNotFoundError(f"no layer folder {path}/python: run `make setup` (it builds the layers from layers/{name}/requirements.txt)")
    return str(path)
