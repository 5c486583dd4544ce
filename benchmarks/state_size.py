"""Window state per user with 100,000 users, measured in fresh processes.

``build`` writes the encoded table (key, value) of :mod:`benchmarks.synthetic_windows` (synthetic
events through the worker's own window code) to a file; ``load`` reads that file into the
structure Faust's in-memory table store keeps (a dict of bytes to bytes) and reports how much
the process's resident memory grew and the table's size. Separate processes keep generator
garbage out of the measurement.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import orjson

from benchmarks.synthetic_windows import synthetic_windows
from stream.window import decode_window

__all__ = ["measure_state"]


def measure_state(users: int, window_size: int, horizon_ms: int, workdir: Path) -> dict[str, float]:
    table = workdir / "windows.jsonl"
    subprocess.run(
        [sys.executable, "-m", __name__, "build", str(table), str(users), str(window_size), str(horizon_ms)],
        check=True,
    )
    loaded = subprocess.run(
        [sys.executable, "-m", __name__, "load", str(table)], check=True, capture_output=True, text=True
    )
    return dict(json.loads(loaded.stdout))


def _build(path: Path, users: int, window_size: int, horizon_ms: int) -> None:
    with path.open("wb") as out:
        for user_id, value in synthetic_windows(users, window_size, horizon_ms):
            out.write(orjson.dumps([user_id, value.hex()]) + b"\n")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _load(path: Path) -> dict[str, float]:
    lines = path.read_bytes().splitlines()
    gc.collect()
    before = _rss_bytes()
    table: dict[bytes, bytes] = {}
    for line in lines:
        user_id, value = orjson.loads(line)
        table[user_id.encode()] = bytes.fromhex(value)
    gc.collect()
    grown = _rss_bytes() - before
    events = sum(len(decode_window(value)) for value in table.values())
    payload = sum(len(key) + len(value) for key, value in table.items())
    python = sys.getsizeof(table) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in table.items())
    return {
        "users": len(table),
        "rss_growth_bytes": grown,
        "rss_bytes_per_user": grown / len(table),
        "table_payload_bytes_per_user": payload / len(table),
        "table_python_bytes_per_user": python / len(table),
        "mean_window_events": events / len(table),
    }


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    if command == "build":
        _build(path, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        print(json.dumps(_load(path)))
