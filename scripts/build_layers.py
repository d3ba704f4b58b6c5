"""Build the Lambda layer folders from the pinned requirements under ``layers/``.

Each ``layers/<name>/requirements.txt`` becomes ``build/layers/<name>/python/``,
installed from wheels for the Lambda platform the functions run on (Linux,
arm64, CPython 3.14), with ``--no-deps`` so that only what the file pins goes
in. This is the one step that needs the package index; ``cdk synth`` then
packages the folders as they are, offline and without Docker.

A folder is rebuilt only when its requirements file changed (a stamp file
holds the hash of the requirements it was built from).

    python -m scripts.build_layers            # build what is missing or stale
    python -m scripts.build_layers --check    # exit 1 if a layer is missing or stale
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "layers"
OUTPUT = ROOT / "build" / "layers"
#: Lambda's python3.14 runtime on arm64 (Amazon Linux 2023, glibc 2.34).
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.14"
STAMP = ".requirements.sha256"


def layer_names() -> list[str]:
    return sorted(path.parent.name for path in SOURCES.glob("*/requirements.txt"))


def layer_dir(name: str) -> Path:
    """The folder to package as the layer ``name`` (it holds ``python/``)."""
    return OUTPUT / name


def _digest(name: str) -> str:
    return hashlib.sha256((SOURCES / name / "requirements.txt").read_bytes()).hexdigest()


def is_current(name: str) -> bool:
    stamp = layer_dir(name) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest(name)


def build(name: str) -> None:
    target = layer_dir(name)
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:"]
    command += ["--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["--target", str(target / "python"), "--requirement", str(SOURCES / name / "requirements.txt")]
    subprocess.run(command, check=True)
    # Byte code compiled here would be for the wrong interpreter; Lambda compiles its own.
    for cache in (target / "python").rglob("__pycache__"):
        shutil.rmtree(cache)
    # Console scripts point at this machine's interpreter and are of no use in a layer.
    shutil.rmtree(target / "python" / "bin", ignore_errors=True)
    (target / STAMP).write_text(_digest(name) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale layers")
    args = parser.parse_args(argv)
    stale = [name for name in layer_names() if not is_current(name)]
    if args.check:
        for name in stale:
            print(f"layer {name} is missing or stale: run `make setup`", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        print(f"building layer {name}")
        build(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
