"""Events -> per-user chronological sequences -> left-padded windows for next-item training.

Windows are encoded exactly as the server encodes them (``left_pad`` and ``gap_buckets``
come from the contract), so training and serving see the same inputs. Item texts (the cold
start's input, from a file or the catalogue topic) are read here too, with no model library.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from contract import ACTION_CODES, PAD_INDEX, UNKNOWN_INDEX, event_time_ms, gap_buckets, left_pad
from serving.vocab import ItemVocab

__all__ = [
    "ITEM_TEXT_SHAPE",
    "DataFormatError",
    "TrainingSamples",
    "UserSequence",
    "encode_windows",
    "item_text",
    "json_lines",
    "read_events_jsonl",
    "read_item_texts",
    "training_samples",
    "user_sequences",
]


@dataclass(frozen=True)
class UserSequence:
    """One user's events, oldest first."""

    user_id: str
    event_ids: tuple[str, ...]
    items: tuple[str, ...]
    actions: tuple[int, ...]  # ACTION_CODES
    timestamps_ms: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int) -> UserSequence:
        """The first ``n`` events."""
        return UserSequence(
            self.user_id,
            self.event_ids[:n],
            self.items[:n],
            self.actions[:n],
            self.timestamps_ms[:n],
        )

    def keeping(self, positions: Iterable[int]) -> UserSequence:
        """Only the events at ``positions`` (in order): as if the others never happened."""
        kept = list(positions)
        return UserSequence(
            self.user_id,
            tuple(self.event_ids[i] for i in kept),
            tuple(self.items[i] for i in kept),
            tuple(self.actions[i] for i in kept),
            tuple(self.timestamps_ms[i] for i in kept),
        )


# Fields of an input event that training reads.
_REQUIRED_FIELDS = frozenset({"event_id", "user_id", "item_id", "action", "ts"})


class DataFormatError(ValueError):
    """A malformed line of a data file, reported as ``file:line: reason``."""

    def __init__(self, path: Path, line_no: int, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) of each non-blank line; invalid JSON raises DataFormatError."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, line_no, f"invalid JSON ({exc.msg})") from exc
            yield line_no, value


ITEM_TEXT_SHAPE = '{"item_id": "...", "text": "..."}'


def item_text(record: object) -> tuple[str, str] | None:
    """(item id, text) of one decoded record; None when it is not shaped ``ITEM_TEXT_SHAPE``."""
    item, text = (record.get(key) if isinstance(record, dict) else None for key in ("item_id", "text"))
    if isinstance(item, bool) or not isinstance(item, str | int) or not isinstance(text, str):
        return None
    if not str(item).strip() or not text.strip():
        return None
    return str(item), text


def read_item_texts(path: Path) -> dict[str, str]:
    """item id -> text, in file order; a malformed line raises DataFormatError."""
    texts: dict[str, str] = {}
    for line_no, record in json_lines(path):
        pair = item_text(record)
        if pair is None:
            raise DataFormatError(path, line_no, f"expected {ITEM_TEXT_SHAPE}")
        texts[pair[0]] = pair[1]
    return texts


def read_events_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Events from a JSON-lines file (blank lines skipped); a malformed line raises DataFormatError."""
    for line_no, event in json_lines(path):
        if not isinstance(event, dict) or not event.keys() >= _REQUIRED_FIELDS:
            raise DataFormatError(path, line_no, f"expected an object with {sorted(_REQUIRED_FIELDS)}")
        if event["action"] not in ACTION_CODES:
            raise DataFormatError(path, line_no, f"unknown action {event['action']!r}")
        try:
            event["ts"] = _file_time_ms(event["ts"])
        except (TypeError, ValueError) as exc:
            raise DataFormatError(path, line_no, str(exc)) from None
        yield event


def _file_time_ms(value: Any) -> int:
    """Event time as the contract has it, or as other tools write whole milliseconds (a float
    or a digit string), which training files have always been read with."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return event_time_ms(value)


def user_sequences(events: Iterable[Mapping[str, Any]]) -> list[UserSequence]:
    """Group events by user, ordered by (ts, arrival), users sorted by id."""
    by_user: dict[str, list[tuple[int, int, Mapping[str, Any]]]] = defaultdict(list)
    for arrival, event in enumerate(events):
        action = event["action"]
        if action not in ACTION_CODES:
            raise ValueError(f"event {event.get('event_id')!r}: unknown action {action!r}")
        by_user[event["user_id"]].append((int(event["ts"]), arrival, event))
    sequences = []
    for user_id in sorted(by_user):
        rows = [event for _, _, event in sorted(by_user[user_id], key=lambda r: r[:2])]
        sequences.append(
            UserSequence(
                user_id=user_id,
                event_ids=tuple(str(e["event_id"]) for e in rows),
                items=tuple(str(e["item_id"]) for e in rows),
                actions=tuple(ACTION_CODES[e["action"]] for e in rows),
                timestamps_ms=tuple(int(e["ts"]) for e in rows),
            )
        )
    return sequences


def encode_windows(
    sequences: Sequence[UserSequence], vocab: ItemVocab, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The newest ``window`` events of each sequence, left-padded: (items, actions, gap
    buckets), int64 [N, window] each."""
    items = left_pad([vocab.indices(seq.items) for seq in sequences], window, PAD_INDEX, np.int64)
    actions = left_pad([seq.actions for seq in sequences], window, 0, np.int64)
    stamps = left_pad([seq.timestamps_ms for seq in sequences], window, 0, np.int64)
    return items, actions, gap_buckets(stamps, items != PAD_INDEX)


@dataclass(frozen=True)
class TrainingSamples:
    """One sample per event after a user's first: that event is the target, the input is the
    window of up to ``window`` events before it, encoded as the server encodes its window.

    Each is predicted from the newest position, as served. Events are stored once, every
    user's end to end; a batch's windows are cut from them on demand (``windows``).
    """

    items: np.ndarray  # int64 [E] vocabulary indices, users one after another, oldest first
    actions: np.ndarray  # int64 [E]
    timestamps_ms: np.ndarray  # int64 [E]
    targets: np.ndarray  # int64 [S]: where each sample's target lies in the event arrays
    lengths: np.ndarray  # int64 [S]: events in each sample's window (1..window)

    def __len__(self) -> int:
        return len(self.targets)

    def windows(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(items, actions, gap buckets) int64 [n, T], left-padded to T = the longest of
        the chosen samples' windows, and their target items int64 [n]."""
        ends, lengths = self.targets[samples], self.lengths[samples]
        width = int(lengths.max())
        columns = ends[:, None] - width + np.arange(width)
        valid = columns >= (ends - lengths)[:, None]
        columns = np.where(valid, columns, 0)
        items = np.where(valid, self.items[columns], PAD_INDEX)
        actions = np.where(valid, self.actions[columns], 0)
        stamps = np.where(valid, self.timestamps_ms[columns], 0)
        return items, actions, gap_buckets(stamps, valid), self.items[ends]

    def next_events(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the chosen samples' targets are besides items: their action, int64 [n] indices
        into ACTIONS, and the seconds from each window's newest event to them, float64 [n]."""
        ends = self.targets[samples]
        gaps_ms = self.timestamps_ms[ends] - self.timestamps_ms[ends - 1]
        return self.actions[ends] - 1, gaps_ms / 1000.0


def training_samples(sequences: Iterable[UserSequence], vocab: ItemVocab, window: int) -> TrainingSamples:
    """Every event after a user's first, with an item of the vocabulary, is a target once."""
    items, actions, stamps, targets, lengths = [], [], [], [], []
    offset = 0
    for seq in sequences:
        items.append(vocab.indices(seq.items))
        actions.append(np.asarray(seq.actions, dtype=np.int64))
        stamps.append(np.asarray(seq.timestamps_ms, dtype=np.int64))
        after_first = np.arange(1, len(seq))
        targets.append(offset + after_first)
        lengths.append(np.minimum(after_first, window))
        offset += len(seq)
    empty = [np.zeros(0, dtype=np.int64)]
    columns = (items, actions, stamps, targets, lengths)
    samples = TrainingSamples(*(np.concatenate(empty + column) for column in columns))
    # Unknown targets carry no signal: their score is masked out.
    known = samples.items[samples.targets] != UNKNOWN_INDEX
    return replace(samples, targets=samples.targets[known], lengths=samples.lengths[known])
