"""``nextaction worker`` with a defect injected, chosen by FAULTY_WORKER_DEFECT:

- ``score`` (the default): the scoring of its first batch raises once (the file named by
  FAULTY_WORKER_MARKER records that it did);
- ``lose-deliveries``: the events at offsets FAULTY_WORKER_LOST_FROM to FAULTY_WORKER_LOST_TO
  (inclusive) are judged stale the first time they are taken, as a delivery raced by a
  rebalance is: dropped unacknowledged, and never fetched again by themselves;
- ``lose-commit``: the first commit of offset FAULTY_WORKER_LOST_COMMIT never reaches the
  broker, yet is reported done, as Faust records a commit the coordinator refused;
- ``lose-buffer-drops``: every word that the input buffer has room again is lost, so a
  partition its fullness took out of the fetch is never fetched again by itself;
- ``creeping-commit``: the first commit of offset FAULTY_WORKER_LOST_COMMIT is reported done
  but reaches the broker one record each 0.75 s, from the offset the broker held, until the
  worker commits anything else: a commit that creeps while the worker believes it landed.

``python -m faulty_worker worker``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka import TopicPartition
from faust.types import TP, EventT

from cli.main import main
from stream.batches import EventReader
from stream.inference import TritonScorer
from stream.lean_transport import LeanConsumer, LeanConsumerThread
from stream.records import Window
from stream.scored_batch import ScoredBatch

_FAILING_CALL = 1
_CREEP_EVERY_S = 0.75
_score = TritonScorer.score
_is_current = EventReader._is_current
_commit = LeanConsumerThread._commit
_calls = 0
_dropped: set[int] = set()
_lost_commits: list[Mapping[TP, int]] = []
_creeping: list[asyncio.Future[None]] = []
_creep_over: list[bool] = []


async def _score_with_defect(self: TritonScorer, windows: Sequence[Window]) -> ScoredBatch:
    global _calls
    _calls += 1
    marker = Path(os.environ["FAULTY_WORKER_MARKER"])
    if _calls == _FAILING_CALL and not marker.exists():
        marker.touch()
        raise RuntimeError("injected defect")
    return await _score(self, windows)


def _is_current_unless_lost(self: EventReader, event: EventT) -> bool:
    offset = event.message.offset
    lost = range(int(os.environ["FAULTY_WORKER_LOST_FROM"]), int(os.environ["FAULTY_WORKER_LOST_TO"]) + 1)
    if offset in lost and offset not in _dropped:
        _dropped.add(offset)
        return False
    return _is_current(self, event)


async def _commit_unless_lost(self: LeanConsumerThread, offsets: Mapping[TP, int]) -> bool:
    if not _lost_commits and int(os.environ["FAULTY_WORKER_LOST_COMMIT"]) in offsets.values():
        _lost_commits.append(offsets)
        return True
    return await _commit(self, offsets)


def _lose_buffer_drop(self: LeanConsumer, tp: TP) -> None:
    pass


async def _commit_creeping(self: LeanConsumerThread, offsets: Mapping[TP, int]) -> bool:
    if _creeping:  # the worker commits again: the creeping commit is over, and lands first
        _creep_over.append(True)
        await _creeping[0]
    elif int(os.environ["FAULTY_WORKER_LOST_COMMIT"]) in offsets.values():
        # Runs on the consumer thread's own loop, like every commit.
        _creeping.append(asyncio.ensure_future(_creep(self, offsets)))
        return True
    return await _commit(self, offsets)


async def _creep(self: LeanConsumerThread, offsets: Mapping[TP, int]) -> None:
    consumer = self._ensure_consumer()
    reached = {tp: await consumer.committed(TopicPartition(tp.topic, tp.partition)) or 0 for tp in offsets}
    while not _creep_over and any(reached[tp] < offset for tp, offset in offsets.items()):
        await asyncio.sleep(_CREEP_EVERY_S)
        reached = {tp: min(reached[tp] + 1, offset) for tp, offset in offsets.items()}
        landed = await _commit(self, reached)
        logging.getLogger(__name__).info("creeping commit of %s: %s", reached, landed)


if __name__ == "__main__":
    defect = os.environ.get("FAULTY_WORKER_DEFECT", "score")
    if defect == "score":
        TritonScorer.score = _score_with_defect  # type: ignore[method-assign]
    elif defect == "lose-deliveries":
        EventReader._is_current = _is_current_unless_lost  # type: ignore[method-assign]
    elif defect == "lose-commit":
        LeanConsumerThread._commit = _commit_unless_lost  # type: ignore[method-assign, assignment]
    elif defect == "lose-buffer-drops":
        LeanConsumer.on_buffer_drop = _lose_buffer_drop  # type: ignore[method-assign, assignment]
    elif defect == "creeping-commit":
        LeanConsumerThread._commit = _commit_creeping  # type: ignore[method-assign, assignment]
    else:
        sys.exit(
            f"FAULTY_WORKER_DEFECT={defect!r}: "
            "expected score, lose-deliveries, lose-commit, lose-buffer-drops or creeping-commit"
        )
    sys.exit(main())
