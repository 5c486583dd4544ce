"""Warm start: weights carried over, item rows by item id, new items fresh."""

from __future__ import annotations

import pytest
import torch

from serving.checkpoint import Checkpoint
from serving.model import ModelConfig, NextActionModel
from serving.vocab import ItemVocab
from serving.warm_start import warm_start

pytestmark = pytest.mark.unit


def test_rows_follow_item_ids_and_new_items_keep_their_fresh_rows() -> None:
    torch.manual_seed(0)
    config = ModelConfig(window=4, hidden=8, layers=1, heads=1)
    old_vocab, new_vocab = ItemVocab(("a", "b", "c")), ItemVocab(("c", "new", "a"))
    old = NextActionModel(ModelConfig(**{**config.to_dict(), "n_items": len(old_vocab)}))
    new = NextActionModel(ModelConfig(**{**config.to_dict(), "n_items": len(new_vocab)}))
    fresh = new.item_networks[0].item_embedding.weight.detach().clone()

    assert warm_start(new, Checkpoint(old, old_vocab), new_vocab) == 2
    old_rows = old.item_networks[0].item_embedding.weight
    new_rows = new.item_networks[0].item_embedding.weight
    for item in ("a", "c"):
        assert torch.equal(new_rows[new_vocab.index(item)], old_rows[old_vocab.index(item)])
    assert torch.equal(new_rows[new_vocab.index("new")], fresh[new_vocab.index("new")])
    assert torch.equal(new_rows[:2], old_rows[:2])  # padding and unknown
    trunk = {k: v for k, v in old.state_dict().items() if ".trunk." in k}
    assert all(torch.equal(new.state_dict()[k], v) for k, v in trunk.items())
