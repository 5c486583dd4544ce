"""The quality gate: a new version is published only if it ranks at least as well as the
served one on the same metric, validation NDCG@10 (what training selects on).

Figures are comparable when both come from the same data (same fingerprint); when they do
not, they are compared anyway and the verdict says so. No torch: the figures come from
manifests and checkpoints' metrics files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GATE_METRIC", "GateFigures", "GateRefused", "check_gate", "validation_metrics"]

GATE_METRIC = "ndcg@10"


class GateRefused(RuntimeError):
    """The candidate ranks worse than the served version; the message names both figures."""


@dataclass(frozen=True)
class GateFigures:
    """One model's metrics (``hr@10``, ``ndcg@10``) and the fingerprint of the data they were
    measured on."""

    label: str  # e.g. "the checkpoint", "version 3"
    metrics: Mapping[str, float]
    fingerprint: str | None


def validation_metrics(metrics: Mapping[str, Any]) -> dict[str, float] | None:
    """HR@10 and NDCG@10 of the trained model on its whole validation split, from a
    checkpoint's metrics (None for a checkpoint from before the results were kept)."""
    validation = metrics.get("results", {}).get("model", {}).get("validation")
    return None if validation is None else {k: validation[k] for k in ("hr@10", "ndcg@10", "users")}


def _figures(f: GateFigures) -> str:
    return f"{f.label}: NDCG@10 {f.metrics['ndcg@10']:.4f}, HR@10 {f.metrics['hr@10']:.4f}"


def check_gate(candidate: GateFigures, served: GateFigures | None, force: bool, min_gain: float = 0.0) -> str:
    """The verdict as one line; GateRefused when the candidate's NDCG@10 is below the served
    one's plus ``min_gain`` and ``force`` is off."""
    if served is None or not served.metrics:
        return f"gate: nothing to compare with (no served version with metrics); {_figures(candidate)}"
    same = candidate.fingerprint is not None and candidate.fingerprint == served.fingerprint
    data = "same data" if same else "DIFFERENT data (fingerprints differ), compared anyway"
    verdict = f"{_figures(candidate)} vs {_figures(served)} ({data})"
    if candidate.metrics[GATE_METRIC] >= served.metrics[GATE_METRIC] + min_gain:
        return f"gate passed: {verdict}"
    gain = f" + {min_gain:g} required" if min_gain else ""
    if force:
        return f"gate overridden by --force: {verdict}{gain}"
    raise GateRefused(f"below the served version: {verdict}{gain}; --force publishes it anyway")
