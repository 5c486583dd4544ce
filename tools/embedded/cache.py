"""Files the embedded servers need, prepared once under the embedded directory and reused."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["materialize"]


def materialize(dest: Path, build: Callable[[Path], None]) -> Path:
    """Return ``dest``, first calling ``build(path)`` to create it there if it is absent.

    ``build`` writes into a temporary sibling that is renamed into place, so an interrupted
    build never leaves a half-written ``dest`` that later runs would trust, and two processes
    preparing the same ``dest`` at once both end up with a complete one.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as staging:
        staged = Path(staging) / dest.name
        build(staged)
        try:
            staged.rename(dest)
        except OSError:
            # A concurrent build renamed its copy first (a directory cannot replace a
            # non-empty one); theirs is as good as ours.
            if not dest.exists():
                raise
    return dest
