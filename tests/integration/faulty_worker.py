"""``nextaction worker`` with a defect injected: the scoring of its first batch raises once
(the file named by FAULTY_WORKER_MARKER records that it did). ``python -m faulty_worker worker``."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.main import main
from stream.inference import TritonScorer
from stream.records import Window
from stream.scored_batch import ScoredBatch

_FAILING_CALL = 1
_marker = Path(os.environ["FAULTY_WORKER_MARKER"])
_score = TritonScorer.score
_calls = 0


async def _score_with_defect(self: TritonScorer, windows: Sequence[Window]) -> ScoredBatch:
    global _calls
    _calls += 1
    if _calls == _FAILING_CALL and not _marker.exists():
        _marker.touch()
        raise RuntimeError("injected defect")
    return await _score(self, windows)


if __name__ == "__main__":
    TritonScorer.score = _score_with_defect  # type: ignore[method-assign]
    sys.exit(main())
