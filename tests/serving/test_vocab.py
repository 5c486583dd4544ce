"""Item vocabulary: reserved indices, frequency order, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract import PAD_INDEX, UNKNOWN_INDEX
from serving.vocab import ItemVocab

pytestmark = pytest.mark.unit


def test_known_items_follow_pad_and_unknown_most_frequent_first() -> None:
    vocab = ItemVocab.build(["b", "a", "b", "c", "a", "b"])
    assert (PAD_INDEX, UNKNOWN_INDEX) == (0, 1)
    assert vocab.items == ("b", "a", "c")
    assert [vocab.index(i) for i in ("b", "a", "c")] == [2, 3, 4]
    assert len(vocab) == 5


def test_unseen_items_map_to_unknown_and_reserved_indices_are_not_items() -> None:
    vocab = ItemVocab.build(["a", "a", "b"], min_count=2)
    assert vocab.items == ("a",)
    np.testing.assert_array_equal(vocab.indices(["a", "b", "zzz"]), [2, UNKNOWN_INDEX, UNKNOWN_INDEX])
    assert PAD_INDEX not in vocab.indices(["a", "b", ""])


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = ItemVocab.build(["x", "y", "y", "z"])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = ItemVocab.load(path)
    assert loaded == vocab
    assert loaded.index("y") == vocab.index("y") == 2


def test_load_rejects_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"pad_index": 1, "unknown_index": 0, "items": ["a"]}))
    with pytest.raises(ValueError, match="layout"):
        ItemVocab.load(path)


def test_rejects_duplicate_or_empty_ids() -> None:
    with pytest.raises(ValueError):
        ItemVocab(("a", "a"))
    with pytest.raises(ValueError):
        ItemVocab(("",))
