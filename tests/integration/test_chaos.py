"""The quick fault-injection run (``nextaction chaos --quick``) against the real embedded broker,
Triton and worker processes: no scenario may lose an event, crash a worker we did not kill,
or leave a window unlike a replay of its user's events.

Scenarios 2 (Triton killed), 6 (SIGTERM) and 7 (roll-out) have short versions of their own in
test_outage.py and test_rollout.py; this runs the others. Time and resource targets (recovery
bounds, the soak's RSS band and lag) depend on the machine and are judged by the full run,
not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.chaos.runner import run

pytestmark = pytest.mark.integration

SCENARIOS = [1, 3, 4, 5, 8]


@pytest.mark.timeout(1200)
def test_the_quick_chaos_run_loses_nothing(
    model_repository: Path, model_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "chaos.md"
    rows = run(
        out,
        quick=True,
        scenarios=SCENARIOS,
        model_repository=model_repository,  # the roll-out exports into a copy of its own
        checkpoint=model_checkpoint,
        workdir=tmp_path / "work",
    )

    assert [int(row.scenario.split()[0]) for row in rows] == SCENARIOS
    for row in rows:
        assert row.failures == [], row.scenario
        assert row.events_in > 0 and row.accounted == row.events_in and row.lost == 0, row.scenario
        assert row.peak_rss_mb is not None and row.peak_rss_mb > 0, row.scenario
    handover = next(row for row in rows if row.scenario.startswith("4"))
    assert handover.recovery_s is not None  # the survivor took both partitions
    table = out.read_text().splitlines()
    assert len(table) == 2 + len(SCENARIOS) and all(row.scenario in "\n".join(table) for row in rows)
    assert [row["lost"] for row in json.loads(out.with_suffix(".json").read_text())] == [0] * len(SCENARIOS)
