"""Interaction files of several public formats -> per-user chronological ``UserSequence``s.

Formats (``--format``):
  events           the project's JSON-lines events (``stream/schemas/event.schema.json``)
  movielens        ``u.data`` (``user<TAB>item<TAB>rating<TAB>ts``) or ``ratings.dat``
                   (``user::item::rating::ts``); every rating is an interaction at its time,
                   ties in time kept in file order; titles from ``u.item``/``movies.dat`` beside it
  user-lines       ``user item1 item2 ...`` per line, oldest first, no timestamps
  user-item-pairs  ``user item`` per line, grouped by user in file order, no timestamps

Data without actions is all ``view``; data without timestamps gets evenly spaced synthetic
ones, so the gap bucket is constant and carries no (invented) signal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from contract import ACTION_CODES
from serving.data import DataFormatError, UserSequence, read_events_jsonl, user_sequences

__all__ = ["FORMATS", "DataFormatError", "Dataset", "load_dataset"]

VIEW = ACTION_CODES["view"]
# Spacing of synthetic timestamps; any constant works, since only gaps are used.
SYNTHETIC_SPACING_MS = 60_000


@dataclass(frozen=True)
class Dataset:
    sequences: list[UserSequence]
    item_titles: dict[str, str] = field(default_factory=dict)  # item id -> title, where the data has them


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) of each non-blank line."""
    with path.open(encoding=encoding) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield line_no, line.strip()


def _untimed(items_by_user: dict[str, list[str]]) -> list[UserSequence]:
    """Sequences in the given order, all views, timestamps evenly spaced."""
    return [
        UserSequence(
            user_id=user,
            event_ids=tuple(f"{user}:{n}" for n in range(len(items))),
            items=tuple(items),
            actions=(VIEW,) * len(items),
            timestamps_ms=tuple(n * SYNTHETIC_SPACING_MS for n in range(len(items))),
        )
        for user, items in sorted(items_by_user.items())
    ]


def _user_lines(path: Path) -> Dataset:
    items_by_user: dict[str, list[str]] = defaultdict(list)
    for line_no, line in _lines(path):
        user, *items = line.split()
        if not items:
            raise DataFormatError(path, line_no, "expected 'user item1 item2 ...'")
        items_by_user[user].extend(items)
    return Dataset(_untimed(items_by_user))


def _user_item_pairs(path: Path) -> Dataset:
    items_by_user: dict[str, list[str]] = defaultdict(list)
    for line_no, line in _lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise DataFormatError(path, line_no, f"expected 'user item', got {len(fields)} fields")
        items_by_user[fields[0]].append(fields[1])
    return Dataset(_untimed(items_by_user))


def _movielens(path: Path) -> Dataset:
    # (ts, line number) sorts each user's ratings by time with ties in file order.
    rows: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for line_no, line in _lines(path, encoding="latin-1"):
        fields = line.split("::") if "::" in line else line.split("\t")
        if len(fields) != 4 or not fields[3].strip().isdigit():
            raise DataFormatError(path, line_no, "expected 'user item rating timestamp' (tab or '::')")
        user, item, _rating, ts = (f.strip() for f in fields)
        rows[user].append((int(ts), line_no, item))
    sequences = []
    for user in sorted(rows):
        events = sorted(rows[user])
        sequences.append(
            UserSequence(
                user_id=user,
                event_ids=tuple(f"{user}:{line_no}" for _, line_no, _ in events),
                items=tuple(item for _, _, item in events),
                actions=(VIEW,) * len(events),
                timestamps_ms=tuple(ts * 1000 for ts, _, _ in events),  # files hold epoch seconds
            )
        )
    return Dataset(sequences, _movielens_titles(path))


def _movielens_titles(path: Path) -> dict[str, str]:
    """Titles from ``u.item`` (ML-100k) or ``movies.dat`` (ML-1M and later) beside the ratings."""
    titles = {}
    for name, separator in (("u.item", "|"), ("movies.dat", "::")):
        catalogue = path.with_name(name)
        if catalogue.is_file():
            for line_no, line in _lines(catalogue, encoding="latin-1"):
                fields = line.split(separator)
                if len(fields) < 2:
                    raise DataFormatError(catalogue, line_no, f"expected 'item{separator}title...'")
                titles[fields[0]] = fields[1]
    return titles


def _events(path: Path) -> Dataset:
    return Dataset(user_sequences(read_events_jsonl(path)))


FORMATS: dict[str, Callable[[Path], Dataset]] = {
    "events": _events,
    "movielens": _movielens,
    "user-lines": _user_lines,
    "user-item-pairs": _user_item_pairs,
}


def load_dataset(path: Path, data_format: str) -> Dataset:
    if data_format not in FORMATS:
        raise ValueError(f"unknown data format {data_format!r}; one of {sorted(FORMATS)}")
    return FORMATS[data_format](path)
