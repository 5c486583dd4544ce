"""The training curve: loss and validation HR/NDCG@10 per epoch, one line style per network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.figure import saved_figure

__all__ = ["plot_training_curve"]


def plot_training_curve(histories: list[list[dict[str, float]]], path: Path) -> None:
    """Loss and validation HR/NDCG@10 per epoch, one line style per network trained."""
    with saved_figure(path, 1, 2, (9, 3.5), dpi=80) as (_, axes):
        _draw(histories, *axes[0])


def _draw(histories: list[list[dict[str, float]]], left: Any, right: Any) -> None:
    for number, history in enumerate(histories, start=1):
        epochs = [h["epoch"] for h in history]
        suffix = f" (network {number})" if len(histories) > 1 else ""
        style = "-" if number == 1 else "--"
        left.plot(epochs, [h["loss"] for h in history], style, color="C0", label=f"loss{suffix}")
        right.plot(epochs, [h["hr10"] for h in history], style, color="C1", label=f"HR@10{suffix}")
        right.plot(epochs, [h["ndcg10"] for h in history], style, color="C2", label=f"NDCG@10{suffix}")
    left.set(title="training loss", xlabel="epoch")
    if len(histories) > 1:
        left.legend(fontsize="small")
    right.set(title="validation (leave-one-out)", xlabel="epoch", ylim=(0, 1))
    right.legend(fontsize="small")
