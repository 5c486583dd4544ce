"""Bounded state against the real broker: an idle user is evicted with a tombstone in the
changelog, and a restarted worker's recovery forgets the user too."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from stream.window import decode_window
from tools.replay import event_message

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000


@pytest.mark.parametrize("table_store", ["memory://", "rocksdb://"])
def test_an_idle_user_is_evicted_and_stays_forgotten_after_a_restart(
    worker_factory, table_store: str, tmp_path: Path
) -> None:
    """With the disk store, the restart recovers from its own files first (the same data dir)."""
    start = int(time.time() * 1000) - 30 * MINUTE_MS
    settings = {"user_idle_evict_s": 5 * 60, "table_store": table_store, "data_dir": tmp_path / "state"}
    name = f"idle-{table_store.removesuffix('://')}"  # topics and group of its own

    def event(event_id: str, user_id: str, minute: int) -> tuple[bytes, bytes]:
        return event_message(
            {
                "event_id": event_id,
                "user_id": user_id,
                "item_id": "i1",
                "action": "view",
                "ts": start + minute * MINUTE_MS,
            }
        )

    worker = worker_factory(name, **settings).start()
    worker.produce([event("old-1", "old", 0), event("old-2", "old", 1), event("kept-1", "kept", 8)])
    worker.wait_acknowledged(3)
    worker.produce([event("now-1", "now", 10)])  # the partition's clock passes old's limit, not kept's
    metrics = worker.wait_acknowledged(4)
    assert metrics["nextaction_windows_evicted_total"] == 1
    assert metrics["nextaction_windows_stored"] == 2
    assert worker.stop() == 0

    changelog = worker.read(f"{worker.settings.app_id}-windows-changelog")
    assert [(r.key, r.value is None) for r in changelog if r.key == b"old"][-1] == (b"old", True)

    restarted = worker_factory(name, **settings).start()
    restarted.produce([event("old-3", "old", 11), event("kept-2", "kept", 11)])
    # "now" is known from the recovery alone: the index was rebuilt from the changelog
    assert restarted.wait_acknowledged(2)["nextaction_windows_stored"] == 3
    assert restarted.stop() == 0
    latest = {r.key: r.value for r in restarted.read(f"{restarted.settings.app_id}-windows-changelog")}
    assert [e.event_id for e in decode_window(latest[b"old"])] == ["old-3"]  # its evicted history is gone
    assert [e.event_id for e in decode_window(latest[b"kept"])] == ["kept-1", "kept-2"]  # recovered
    records = [orjson.loads(r.value) for r in restarted.read(restarted.settings.topic_recommendations)]
    assert {record["trigger_event_id"] for record in records} >= {"old-3", "kept-2"}
