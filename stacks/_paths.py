"""Where the Lambda code of the blueprints lives, found from this file, not the working directory."""

from pathlib import Path

LAMBDAS = Path(__file__).resolve().parent.parent / "lambdas"


def lambda_code(name: str) -> str:
    """The folder of the function ``name`` under ``lambdas/``."""
    path = LAMBDAS / name
    if not (path / "handler.py").is_file():
        raise FileNotFoundError(f"no handler.py in {path}")
    return str(path)
