"""``nextaction recovery``: how long a worker takes to restore its windows table from the
changelog, per million users, with each table store.

For each store (memory, rocksdb) and each user count, on a broker of its own, one partition:

1. The changelog (``<app id>-windows-changelog``, Faust's name for the table ``windows``) is
   written directly with the users' windows (:mod:`benchmarks.synthetic_windows`: key = user
   id, value = the encoded window), as a live worker would have left it.
2. A worker (trivial model: recovery does not depend on the model) is timed from process
   start until it owns its partition and its table holds every user; then its resident set is
   read from ``/proc``.
3. rocksdb only: the worker is stopped (SIGTERM) and started again on the same data dir, timed
   the same way: it reads only the changelog written since the offsets it persisted.
4. The same starts on an empty changelog are the baselines, the fixed start-up cost (imports,
   Triton readiness, the group join), subtracted from the others of their kind and store.

The clock stops once the worker processes input again: one probe event (a user of its own)
is sent before each start, Faust reads input only once the table is restored, and by then
``nextaction_windows_stored`` must count every user. Idle-user eviction is put out of reach,
so that the probe's batch does not evict generated users whose newest events are older than
the rest's by more than the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from benchmarks.chaos.rig import rss_mb
from benchmarks.harness import TRIVIAL_MODEL, Servers, fresh_broker, log, start_servers, worker_overrides
from benchmarks.load import Producer, Record
from benchmarks.recovery_report import Row, Start, render, rows
from benchmarks.synthetic_windows import synthetic_windows
from benchmarks.workload import Message
from stream.admin import ensure_topics
from stream.settings import Settings, load_settings
from tools.replay import event_message
from tools.worker_process import WorkerProcess

__all__ = ["STORES", "run"]

STORES: Final = ("memory://", "rocksdb://")
_NO_EVICTION_S: Final = 100 * 365 * 24 * 3600.0
_WRITE_CHUNK: Final = 25_000
_PROBE_TS_MS: Final = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class _ChangelogRecord:
    key: bytes
    value: bytes
    partition: int = 0


def run(users: Sequence[int], out: Path | None) -> list[Row]:
    """Measure every store at every user count, print the table (and write JSON to ``out``)."""
    started = time.monotonic()
    settings = load_settings()
    log(f"generating the windows of {max(users):,} users")
    windows = list(synthetic_windows(max(users), settings.window_size, int(settings.window_horizon_s * 1000)))
    with (
        tempfile.TemporaryDirectory(prefix="nextaction-recovery-") as tmp,
        start_servers(settings, Path(tmp), real_model=False) as servers,
    ):
        log(f"Triton up ({servers.triton_url}); a fresh broker per measurement")
        starts = [
            start
            for store in STORES
            for count in (0, *users)
            for start in _measure(servers, store, windows[:count])
        ]
    table = rows(starts)
    print(render(table))
    seconds = time.monotonic() - started
    print(f"\ntook {seconds:.0f} s")
    if out:
        report: dict[str, Any] = {
            "config": {"users": list(users), "cpus": len(os.sched_getaffinity(0)), "partitions": 1},
            "rows": [row.as_json() for row in table],
            "seconds": round(seconds, 1),
        }
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures: {out}")
    return table


def _measure(servers: Servers, store: str, windows: Sequence[tuple[str, bytes]]) -> list[Start]:
    """The start (and for rocksdb the restart) of a worker whose changelog holds ``windows``."""
    store_name = store.removesuffix("://")
    name = f"recovery-{store_name}-{len(windows)}"
    with fresh_broker(servers) as phase:
        overrides = {
            **worker_overrides(phase, name, TRIVIAL_MODEL),
            "table_store": store,
            "data_dir": servers.workdir / name,
            "user_idle_evict_s": _NO_EVICTION_S,
        }
        settings = Settings(**overrides)
        changelog = f"{settings.app_id}-windows-changelog"
        ensure_topics(phase.bootstrap, settings)
        ensure_topics(phase.bootstrap, settings.model_copy(update={"topic_events": changelog}))
        written, write_s = asyncio.run(_write_changelog(phase.bootstrap, changelog, windows))
        kinds: tuple[Literal["changelog", "restart"], ...] = (
            ("changelog", "restart") if store == "rocksdb://" else ("changelog",)
        )
        starts = []
        for kind in kinds:
            asyncio.run(_send(phase.bootstrap, settings.topic_events, [_probe(f"{name}-{kind}")]))
            seconds, rss, stored = _timed_start(
                overrides, servers.workdir / f"worker-{name}-{kind}.log", len(windows)
            )
            starts.append(Start(store_name, kind, len(windows), seconds, rss, written, write_s))
            log(
                f"{store_name}, {len(windows):,} users, {kind}: {seconds:.1f} s to {stored:,.0f} windows "
                f"stored, RSS {rss:,.0f} MB"
            )
    return starts


async def _write_changelog(
    bootstrap: str, topic: str, windows: Sequence[tuple[str, bytes]]
) -> tuple[int, float]:
    """Write the windows to partition 0 of ``topic``; returns (bytes of keys and values, seconds)."""
    started = time.monotonic()
    written = 0
    async with Producer(bootstrap, topic) as producer:
        for at in range(0, len(windows), _WRITE_CHUNK):
            chunk = [
                _ChangelogRecord(user.encode(), value) for user, value in windows[at : at + _WRITE_CHUNK]
            ]
            await producer.send(chunk)
            written += sum(len(record.key) + len(record.value) for record in chunk)
            done = at + len(chunk)
            rate = done / (time.monotonic() - started)
            log(f"{topic}: {done:,} of {len(windows):,} windows written ({rate:,.0f}/s)")
    return written, time.monotonic() - started


async def _send(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    async with Producer(bootstrap, topic) as producer:
        await producer.send(records)


def _probe(event_id: str) -> Message:
    """An input event of a user of its own, acknowledged once the table is restored."""
    user_id = f"probe-{event_id}"
    event = {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": "i0001",
        "action": "view",
        "ts": _PROBE_TS_MS,
    }
    key, value = event_message(event)
    return Message(user_id, event_id, key, value, partition=0)


def _timed_start(overrides: dict[str, Any], log_path: Path, users: int) -> tuple[float, float, float]:
    """Seconds from the worker's start until its table holds ``users`` (and it owns its
    partition), its resident set (MiB) and the windows it stored then; the worker is stopped
    after."""
    started = time.monotonic()
    worker = WorkerProcess(overrides, log_path, loglevel="warning").start()
    try:
        values = worker.wait_for_metrics(
            lambda values: (
                values.get("nextaction_assigned_partitions", 0) > 0
                and values.get("nextaction_events_acknowledged_total", 0) >= 1
                and values.get("nextaction_windows_stored", -1) >= users
            ),
            f"{users:,} users restored",
            timeout_s=120 + users / 500,
        )
        seconds = time.monotonic() - started
        assert worker.process is not None
        rss = rss_mb(worker.process.pid)
    finally:
        code = worker.stop()
    if code != 0 or rss is None:
        raise RuntimeError(f"the worker exited with code {code} when stopped\n{worker.log_tail()}")
    return seconds, rss, values["nextaction_windows_stored"]
