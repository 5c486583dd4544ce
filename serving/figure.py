"""One PNG figure drawn headless: every plot of the project goes through :func:`saved_figure`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["saved_figure"]


@contextmanager
def saved_figure(
    path: Path, rows: int, columns: int, size: tuple[float, float], dpi: int = 90
) -> Iterator[tuple[Any, Any]]:
    """Yields ``(figure, axes)``, axes always a ``rows`` x ``columns`` array; on leaving, the
    figure is laid out, written to ``path`` and freed (pyplot keeps figures until closed)."""
    import matplotlib

    matplotlib.use("Agg")  # training and benchmark machines have no display
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    try:
        yield figure, axes
        figure.tight_layout()
        figure.savefig(path, dpi=dpi)
    finally:
        plt.close(figure)
