"""The benchmark's latency figure: event-to-recommendation percentiles against offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.figure import saved_figure

__all__ = ["plot_latency"]


def plot_latency(report: dict[str, Any], path: Path) -> None:
    with saved_figure(path, 1, 2, (10, 4)) as (_, axes):
        titles = {"stream": "trivial model (stream cost)", "pipeline": "real model"}
        for axis, (name, title) in zip(axes[0], titles.items(), strict=True):
            points = sorted(report[name]["latency_ms"].values(), key=lambda p: p["offered_per_s"])
            rates = [p["offered_per_s"] for p in points]
            for percentile, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
                axis.plot(rates, [p[percentile] for p in points], style, label=percentile)
            axis.axvline(report[name]["sustained_events_per_s"], color="grey", lw=0.8, label="max sustained")
            axis.set(title=title, xlabel="offered load (events/s)", ylabel="event-to-recommendation (ms)")
            axis.set_ylim(bottom=0)
            axis.legend()
