"""One row per scenario, as a markdown table and as JSON beside it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["COLUMNS", "Row", "render_table", "write_report"]

COLUMNS = (
    "scenario",
    "load",
    "faults injected",
    "events in",
    "accounted for",
    "lost",
    "duplicate records",
    "recovery",
    "peak RSS",
    "result",
)


@dataclass
class Row:
    """A scenario's outcome. ``failures`` lists what went wrong (events lost, a crash, a window
    unlike its replay, or why it could not be run); ``missed`` the time and resource targets
    not met (recovery bounds, RSS, lag), which depend on the machine and what else runs on it.
    A row with neither held."""

    scenario: str
    load: str
    faults: str
    events_in: int = 0
    accounted: int = 0
    lost: int = 0
    duplicates: int = 0
    recovery_s: float | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.failures and not self.missed

    def require(self, holds: bool, failure: str) -> None:
        """Record ``failure`` unless the outcome ``holds``."""
        if not holds:
            self.failures.append(failure)

    def expect(self, holds: bool, target: str) -> None:
        """Record a time or resource ``target`` as missed unless it ``holds``."""
        if not holds:
            self.missed.append(target)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cells(row: Row) -> list[str]:
    result = "held" if row.held else "FAILED: " + "; ".join(row.failures + row.missed)
    if row.notes:
        result += " (" + "; ".join(row.notes) + ")"
    return [
        row.scenario,
        row.load,
        row.faults,
        f"{row.events_in:,}",
        f"{row.accounted:,}",
        f"{row.lost:,}",
        f"{row.duplicates:,}",
        "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s",
        "-" if row.peak_rss_mb is None else f"{row.peak_rss_mb:,.0f} MB",
        result,
    ]


def render_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(cell) for cell in _cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(rows: Sequence[Row], out: Path) -> Path:
    """The table to ``out`` and the rows as JSON next to it; returns the JSON's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_table(rows))
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps([{**asdict(row), "held": row.held} for row in rows], indent=2) + "\n")
    return json_path
