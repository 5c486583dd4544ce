"""Write perf_analyzer input data: real windows from the benchmark workload, one per entry.

    python -m benchmarks.perf_input perf_input.json [--windows 256]
    perf_analyzer -m nextaction -u HOST:8001 -i grpc --input-data perf_input.json \\
        -b 16 --concurrency-range 1:8 --percentile=99

perf_analyzer needs valid item ids (unknown ones would all hit the same embedding row), so
the windows come from the same generator the model was trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.stream_bench import sample_windows
from benchmarks.workload import EventSupply
from stream.inference import encode_windows
from stream.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--length", type=int, default=50, help="the model's window length W")
    args = parser.parse_args()
    settings = load_settings()
    supply = EventSupply(users=args.windows, seed=11)
    windows = sample_windows(supply, settings, history=args.windows * 15, count=args.windows)
    entries = []
    for window in windows[: args.windows]:
        tail = window[-args.length :]
        pad = args.length - len(tail)
        _, actions, stamps = encode_windows([window], args.length)
        entries.append(
            {
                "ITEM_IDS": {"content": [""] * pad + [e.item_id for e in tail], "shape": [args.length]},
                "ACTIONS": {"content": actions[0].tolist(), "shape": [args.length]},
                "TIMESTAMPS": {"content": stamps[0].tolist(), "shape": [args.length]},
            }
        )
    args.out.write_text(json.dumps({"data": entries}))
    print(f"wrote {len(entries)} windows to {args.out}")


if __name__ == "__main__":
    main()
