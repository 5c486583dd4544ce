"""Following a worker process from outside: waits see only what its metrics endpoint says."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tools.worker_process import WorkerExited, WorkerProcess, _progress

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent


def late_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay_s: float) -> WorkerProcess:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("LATE_METRICS_DELAY_S", str(delay_s))
    return WorkerProcess({}, tmp_path / "worker.log", module="late_metrics_worker")


def test_waiting_for_zero_events_waits_for_the_metrics_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoint that does not answer yet is not "0 events": the wait returned at once, and
    # the caller's next scrape was refused.
    with late_worker(tmp_path, monkeypatch, delay_s=1.5) as worker:
        started = time.monotonic()
        values = worker.wait_acknowledged(0, timeout_s=30)
        assert time.monotonic() - started >= 1.0
        assert values["nextaction_events_acknowledged_total"] == 0
        assert worker.metrics()["nextaction_assigned_partitions"] == 1


def test_a_worker_that_exits_ends_the_wait_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    worker = WorkerProcess({}, tmp_path / "worker.log", module="no_such_module_here")
    with worker, pytest.raises(WorkerExited, match="No module named no_such_module_here"):
        worker.wait_assigned(timeout_s=30)


def test_a_progress_line_sums_lag_and_rewinds_over_every_partition_and_names_them_only_if_shown() -> None:
    values = {
        "nextaction_events_consumed_total": 1220.0,
        'nextaction_partition_rewinds_total{partition="0",topic="events"}': 2.0,
        'nextaction_partition_rewinds_total{partition="1",topic="events"}': 1.0,
        'nextaction_consumer_lag_records{partition="0",topic="events"}': 1155.0,
    }
    assert _progress(values) == (
        "events_consumed_total 1220, consumer_lag_records 1155, partition_rewinds_total 3"
    )
    assert _progress({"nextaction_events_consumed_total": 5.0}) == "events_consumed_total 5"
    assert _progress({}) == "no metrics"
