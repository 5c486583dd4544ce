"""Events in against what came out: every input message must be covered by a delivered
recommendation of its user or have a dead letter, and each user's stored window must equal a
replay of the user's valid events from scratch. Pure functions over what was read back.

A valid event at offset ``o`` of partition ``p`` counts as processed when a recommendation of
its user cites a trigger at offset ``>= o`` of ``p`` in its watermark: a worker handles a
partition in offset order and publishes a user's record once per batch, for the user's newest
event of the batch, so a later trigger means the event's batch was delivered. Which messages
are valid is decided by the worker's own parser with the record's broker timestamp.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream.records import Window, WindowEvent
from stream.settings import Settings
from stream.validation import InvalidEvent, parse_event
from stream.window import CorruptWindow, decode_window, merge_events

__all__ = [
    "Accounting",
    "InputMessage",
    "OutputRecord",
    "account",
    "expected_windows",
    "valid_event",
    "window_mismatches",
]


@dataclass(frozen=True, slots=True)
class InputMessage:
    """A message as read back from the input topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A record of an output topic: its value and headers (the dead letter's coordinates)."""

    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]


@dataclass(frozen=True)
class Accounting:
    events_in: int
    processed: int  # valid events covered by a delivered recommendation
    dead_lettered: int
    lost: tuple[tuple[int, int], ...]  # (partition, offset) of every message not accounted for
    duplicate_recommendations: int  # records whose recommendation_id was published before
    duplicate_dead_letters: int  # dead letters of a source offset dead-lettered before

    @property
    def accounted(self) -> int:
        return self.processed + self.dead_lettered

    @property
    def duplicates(self) -> int:
        return self.duplicate_recommendations + self.duplicate_dead_letters


def valid_event(message: InputMessage, settings: Settings) -> WindowEvent | None:
    """What the worker keeps of ``message``, or None if the worker must refuse it."""
    try:
        event = parse_event(
            message.value,
            message.key,
            settings.max_event_bytes,
            not_after_ms=message.timestamp_ms + int(settings.max_event_ahead_s * 1000),
        )
    except InvalidEvent:
        return None
    return WindowEvent.of(event)


def account(
    inputs: Sequence[InputMessage],
    recommendations: Iterable[Mapping[str, Any]],
    dead_letters: Iterable[OutputRecord],
    settings: Settings,
) -> Accounting:
    """Each input message either processed (valid and covered) or dead-lettered; the rest lost."""
    newest_trigger: dict[tuple[str, int], int] = {}
    ids: Counter[str] = Counter()
    for record in recommendations:
        ids[record["recommendation_id"]] += 1
        watermark = record["watermark"]
        slot = (record["user_id"], watermark["source_partition"])
        newest_trigger[slot] = max(newest_trigger.get(slot, -1), watermark["source_offset"])
    sources: Counter[tuple[int, int]] = Counter(
        (int(letter.headers["dlq.source.partition"]), int(letter.headers["dlq.source.offset"]))
        for letter in dead_letters
    )
    processed = dead_lettered = 0
    lost = []
    for message in inputs:
        coordinates = (message.partition, message.offset)
        if coordinates in sources:
            dead_lettered += 1
            continue
        event = valid_event(message, settings)
        user_id = message.key.decode() if event is not None and message.key is not None else None
        if user_id is not None and newest_trigger.get((user_id, message.partition), -1) >= message.offset:
            processed += 1
        else:
            lost.append(coordinates)
    return Accounting(
        events_in=len(inputs),
        processed=processed,
        dead_lettered=dead_lettered,
        lost=tuple(lost),
        duplicate_recommendations=sum(count - 1 for count in ids.values()),
        duplicate_dead_letters=sum(count - 1 for count in sources.values()),
    )


def expected_windows(inputs: Iterable[InputMessage], settings: Settings) -> dict[str, frozenset[Window]]:
    """Each user's acceptable windows, replayed from scratch: the user's valid events merged
    one at a time in offset order (the order the worker reads them; a user's events share a
    partition).

    A user idle for ``user_idle_evict_s`` behind the newest event of their partition is evicted,
    but the worker evicts at the end of a batch and at most ``MAX_EVICTIONS_PER_BATCH`` users a
    batch: an idle user's next event may find the old window still there, and an idle user may
    still be stored at the end. Both outcomes are accepted in each case (an empty window is the
    user being absent); everything else must match exactly."""
    horizon_ms = int(settings.window_horizon_s * 1000)
    idle_ms = int(settings.user_idle_evict_s * 1000)
    candidates: dict[str, frozenset[Window]] = {}
    partition_of: dict[str, int] = {}
    clocks: defaultdict[int, int] = defaultdict(int)
    for message in sorted(inputs, key=lambda m: (m.partition, m.offset)):
        event = valid_event(message, settings)
        if event is None or message.key is None:
            continue
        user_id, clock = message.key.decode(), clocks[message.partition]
        before = {
            start
            for window in candidates.get(user_id, frozenset({()}))
            for start in (((), window) if window and window[-1].ts_ms < clock - idle_ms else (window,))
        }
        after = frozenset(
            merge_events(window, (event,), settings.window_size, horizon_ms).window for window in before
        )
        candidates[user_id], partition_of[user_id] = after, message.partition
        clocks[message.partition] = max([clock, *(window[-1].ts_ms for window in after if window)])
    return {
        user_id: windows
        | ({()} if any(_idle(w, clocks[partition_of[user_id]], idle_ms) for w in windows) else set())
        for user_id, windows in candidates.items()
    }


def _idle(window: Window, clock_ms: int, idle_ms: int) -> bool:
    return not window or window[-1].ts_ms < clock_ms - idle_ms


def window_mismatches(
    expected: Mapping[str, frozenset[Window]], changelog: Iterable[OutputRecord]
) -> list[str]:
    """Users whose newest changelog value is none of their replayed windows (or is missing,
    or does not decode)."""
    stored: dict[str, bytes | None] = {}
    for record in changelog:  # a key lives in one partition, read in offset order: last wins
        if record.key is not None:
            stored[record.key.decode()] = record.value
    mismatched = []
    for user_id in sorted(expected.keys() | stored.keys()):
        try:
            window = decode_window(stored.get(user_id))
        except CorruptWindow:
            window = None
        if window not in expected.get(user_id, frozenset({()})):
            mismatched.append(user_id)
    return mismatched
