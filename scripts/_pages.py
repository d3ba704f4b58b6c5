"""Rewriting a generated block in each blueprint's docs page, or checking that every page already holds it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rewrite(pages: Iterable[tuple[str, str]], updated: Callable[[str, str], str], *, check: bool) -> int:
    """For each ``(stack, page path)``, the page as ``updated(page text, stack)`` makes it: written, or with ``check``
    only compared. Prints the pages that changed (or are out of date); the exit status, 1 when a checked page is stale."""
    stale = []
    for stack, relative in pages:
        path = ROOT / relative
        page = path.read_text()
        new = updated(page, stack)
        if new != page:
            stale.append(relative)
            if not check:
                path.write_text(new)
    if stale:
        print(("out of date: " if check else "updated: ") + ", ".join(stale))
    return 1 if stale and check else 0
