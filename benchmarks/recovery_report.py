"""The recovery benchmark's figures: each measured worker start against its baseline (the same
kind of start, same store, on an empty changelog), extrapolated per million users, as a
markdown table and as JSON rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Row", "Start", "render", "rows"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Start:
    """One measured worker start."""

    store: str  # "memory" or "rocksdb"
    # "changelog": a fresh worker restores the table from the changelog; "restart": the same
    # worker again on its data dir (rocksdb), reading only the changelog written since
    kind: Literal["changelog", "restart"]
    users: int
    seconds: float  # process start until the table held every user and the partition was assigned
    rss_mb: float  # the worker's resident set then (MiB)
    changelog_bytes: int  # keys and values in the changelog
    write_seconds: float  # to write them

    @property
    def is_baseline(self) -> bool:
        return self.users == 0


@dataclass(frozen=True)
class Row:
    start: Start
    over_baseline_s: float
    users_per_s: float | None  # None: no users, or not slower than the baseline (noise)
    s_per_million: float | None
    rss_bytes_per_user: float | None  # resident set over the baseline's, per user

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self.start), **{k: v for k, v in asdict(self).items() if k != "start"}}


def rows(starts: Sequence[Start]) -> list[Row]:
    """Each start with its baseline subtracted; every kind of start of every store needs one."""
    baselines = {(start.store, start.kind): start for start in starts if start.is_baseline}
    table = []
    for start in starts:
        baseline = baselines.get((start.store, start.kind))
        if baseline is None:
            raise ValueError(f"no baseline (empty changelog) was measured for {start.store} {start.kind}")
        over = start.seconds - baseline.seconds
        restoring = start.users > 0 and over > 0
        table.append(
            Row(
                start=start,
                over_baseline_s=over,
                users_per_s=start.users / over if restoring else None,
                s_per_million=over / start.users * 1_000_000 if restoring else None,
                rss_bytes_per_user=(start.rss_mb - baseline.rss_mb) * MIB / start.users
                if start.users
                else None,
            )
        )
    return table


def render(table: Sequence[Row]) -> str:
    lines = [
        "| store | start | users | recovered in | minus baseline | users/s | s per 1M users "
        "| RSS per user | changelog |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        start = row.start
        kind = f"{start.kind}, baseline" if start.is_baseline else start.kind
        lines.append(
            f"| {start.store} | {kind} | {start.users:,} | {start.seconds:.1f} s "
            f"| {row.over_baseline_s:+.1f} s | {_figure(row.users_per_s, '{:,.0f}')} "
            f"| {_figure(row.s_per_million, '{:,.0f} s')} | {_figure(row.rss_bytes_per_user, '{:,.0f} B')} "
            f"| {start.changelog_bytes / 1e6:,.1f} MB |"
        )
    return "\n".join(lines)


def _figure(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)
