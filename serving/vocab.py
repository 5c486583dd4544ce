"""Item vocabulary: index 0 = padding, 1 = unknown item, 2.. = known items, most frequent first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import FIRST_ITEM_INDEX, UNKNOWN_INDEX, read_vocab_items, write_vocab_items

__all__ = ["ItemVocab"]


@dataclass(frozen=True)
class ItemVocab:
    """Known item ids in index order (the first has index 2)."""

    items: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {item: i for i, item in enumerate(self.items, start=FIRST_ITEM_INDEX)}
        if len(index) != len(self.items) or "" in index:
            raise ValueError("item ids must be unique and non-empty")
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, item_ids: Iterable[str], min_count: int = 1) -> ItemVocab:
        """Most frequent first (ties by id, so the result is deterministic)."""
        counts = Counter(item_ids)
        kept = sorted((item for item, n in counts.items() if n >= min_count), key=lambda i: (-counts[i], i))
        return cls(tuple(kept))

    def __len__(self) -> int:
        """Embedding rows needed: known items plus padding and unknown."""
        return len(self.items) + FIRST_ITEM_INDEX

    def index(self, item_id: str) -> int:
        return self._index.get(item_id, UNKNOWN_INDEX)

    def indices(self, item_ids: Sequence[str]) -> np.ndarray:
        """int64 [len(item_ids)]; unseen ids map to the unknown index."""
        return np.fromiter((self.index(i) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def save(self, path: Path) -> None:
        write_vocab_items(path, self.items)

    @classmethod
    def load(cls, path: Path) -> ItemVocab:
        return cls(tuple(read_vocab_items(path)))
