"""The watch's state as a terminal view (rich): a status line, the latest recommendations with
their explanations, and dead letters by reason."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tools.watch_state import WatchState

__all__ = ["render"]


def render(state: WatchState) -> RenderableType:
    return Group(_status(state), _recommendations(state), _dead_letters(state))


def _status(state: WatchState) -> Text:
    latency = state.latency()
    if math.isnan(latency["p50"]):
        timing = "latency: waiting for matched event and recommendation records"
    else:
        timing = (
            f"event-to-recommendation p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms "
            f"({latency['count']:.0f} in the last {state.latency_window_s:g} s)"
        )
    line = Text(
        f"events {state.events:,} | recommendations {state.recommendations:,} | "
        f"dead letters {sum(state.dead_letters.values()):,} | ",
        style="bold",
    )
    line.append(timing)
    if state.unreadable:
        line.append(f" | unreadable recommendations {state.unreadable:,}", style="red")
    return line


def _recommendations(state: WatchState) -> Table:
    table = Table(title="latest recommendations", title_justify="left", expand=True)
    table.add_column("user", no_wrap=True)
    table.add_column("trigger", no_wrap=True)
    table.add_column("top items: why")
    for shown in reversed(state.recent):
        version = f"v{shown.model_version}" if shown.model_version else shown.source
        lines = [f"{item.rank}. {item.name} ({item.source}): {item.sentence}" for item in shown.items]
        table.add_row(shown.user_id, f"{shown.trigger_event_id}\n{version}", "\n".join(lines))
    return table


def _dead_letters(state: WatchState) -> Table:
    table = Table(title="dead letters by reason", title_justify="left")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in state.dead_letters.most_common():
        table.add_row(reason, f"{count:,}")
    return table
