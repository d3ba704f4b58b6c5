"""The case-study experiments' figures, shown at the end of the run, also when pytest-xdist runs the tests in workers.

A worker's own output never reaches the terminal, so an experiment writes what it prints to a file in the folder the
controlling process names in ``EXPERIMENT_FIGURES_DIR`` (tests/conftest.py), and the controller prints every file
in its terminal summary. Without that variable (a test run on its own outside this suite) the figures go to stdout.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path


def show(name: str, text: str) -> None:
    """Keep ``text`` under ``name`` for the run's summary (appended: one experiment may show several tables)."""
    directory = os.environ.get("EXPERIMENT_FIGURES_DIR")
    if not directory:
        print(text, file=sys.__stdout__)
        return
    with (Path(directory) / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.txt").open("a") as file:
        file.write(text.rstrip("\n") + "\n")


@contextlib.contextmanager
def figures(name: str) -> Iterator[None]:
    """What is printed inside the block, shown as ``name``'s figures."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    show(name, buffer.getvalue())
