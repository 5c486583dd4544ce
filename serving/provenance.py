"""Where a model came from: a fingerprint of its training data and the code revision that
trained it, recorded in the checkpoint and carried into each version's manifest."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from serving.data import UserSequence

__all__ = ["code_revision", "data_summary"]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_summary(sequences: Sequence[UserSequence]) -> dict[str, Any]:
    """sha256 over every (user, item, action, ts) in a fixed order, the event count and the
    newest event time: two models with the same fingerprint saw the same interactions, in
    whatever file or topic order they came."""
    digest = hashlib.sha256()
    events = newest = 0
    for seq in sorted(sequences, key=lambda s: s.user_id):
        for row in sorted(zip(seq.items, seq.actions, seq.timestamps_ms, strict=True), key=lambda r: r[2]):
            digest.update(f"{seq.user_id}\t{row[0]}\t{row[1]}\t{row[2]}\n".encode())
        events += len(seq)
        newest = max(newest, max(seq.timestamps_ms, default=0))
    return {"fingerprint": digest.hexdigest(), "events": events, "newest_event_ms": newest}


def code_revision() -> str:
    """The git commit of the checkout when there is one, else the installed package version
    (an image has no .git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0:
        return done.stdout.strip()
    try:
        return f"nextaction {metadata.version('nextaction')}"
    except metadata.PackageNotFoundError:
        return "unknown"
