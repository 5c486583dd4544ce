"""perf_analyzer input data: real windows from the benchmark workload, one per entry.

    nextaction perf-input perf_input.json [--windows 256]
    perf_analyzer -m nextaction -u HOST:8001 -i grpc --input-data perf_input.json \\
        -b 16 --concurrency-range 1:8 --percentile=99

perf_analyzer needs valid item ids (unknown ones would all hit the same embedding row), so
the windows come from the same generator the model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.workload import EventSupply, sample_windows
from contract import ITEM_IDS, TIMESTAMPS, WINDOW_ACTIONS, left_pad
from stream.settings import load_settings
from stream.triton_codec import encode_windows

__all__ = ["write_perf_input"]


def write_perf_input(out: Path, *, windows: int, length: int) -> int:
    """Write ``windows`` windows of ``length`` columns as perf_analyzer JSON; returns the count."""
    supply = EventSupply(users=windows, seed=11)
    sampled = sample_windows(supply, load_settings(), history=windows * 15, count=windows)[:windows]
    _, actions, stamps = encode_windows(sampled, length)
    items = left_pad([[event.item_id for event in window] for window in sampled], length, "", object)
    entries = [
        {
            ITEM_IDS.name: {"content": items[row].tolist(), "shape": [length]},
            WINDOW_ACTIONS.name: {"content": actions[row].tolist(), "shape": [length]},
            TIMESTAMPS.name: {"content": stamps[row].tolist(), "shape": [length]},
        }
        for row in range(len(sampled))
    ]
    out.write_text(json.dumps({"data": entries}))
    return len(entries)
