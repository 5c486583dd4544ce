"""The benchmark's latency figure: event-to-recommendation percentiles against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_latency"]


def plot_latency(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, name, title in zip(
        axes, ("stream", "pipeline"), ("trivial model (stream cost)", "real model"), strict=True
    ):
        points = sorted(report[name]["latency_ms"].values(), key=lambda p: p["offered_per_s"])
        rates = [p["offered_per_s"] for p in points]
        for percentile, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            axis.plot(rates, [p[percentile] for p in points], style, label=percentile)
        axis.axvline(report[name]["sustained_events_per_s"], color="grey", lw=0.8, label="max sustained")
        axis.set(title=title, xlabel="offered load (events/s)", ylabel="event-to-recommendation (ms)")
        axis.set_ylim(bottom=0)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
