"""Version folders as export writes them, small and without a model: for the tests of
listing, roll-back and the gate."""

from __future__ import annotations

import json
from pathlib import Path


def make_version(model_dir: Path, number: int, ndcg: float, window: int = 50, **fields: object) -> Path:
    path = model_dir / str(number)
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(f"graph {number}".encode())
    (path / "checkpoint").mkdir()
    (path / "checkpoint" / "weights.pt").write_bytes(f"weights {number}".encode())
    manifest = {
        "model_name": model_dir.name,
        "version": number,
        "window": window,
        "top_k": 20,
        "validation": {"hr@10": ndcg * 2, "ndcg@10": ndcg, "users": 100},
        "data": {"fingerprint": f"fp{number}"},
        **fields,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
