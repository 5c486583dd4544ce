"""Figures are written as PNG files and freed, also when drawing fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib import pyplot as plt

from serving.figure import saved_figure
from serving.training_curve import plot_training_curve

pytestmark = pytest.mark.unit


def test_a_figure_is_written_and_freed(tmp_path: Path) -> None:
    history = [{"epoch": e, "loss": 1 / e, "hr10": 0.1 * e, "ndcg10": 0.05 * e} for e in (1, 2, 3)]
    path = tmp_path / "curve.png"
    plot_training_curve([history, history], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


def test_a_failed_drawing_writes_nothing_and_frees_the_figure(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    with pytest.raises(KeyError), saved_figure(path, 2, 3, (4, 3)) as (_, axes):
        assert axes.shape == (2, 3)
        raise KeyError("a missing column")
    assert not path.exists()
    assert plt.get_fignums() == []
