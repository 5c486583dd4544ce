"""Start training from an earlier checkpoint: its weights where the new model has the same
parameter, its item rows where the new vocabulary has the same item; items new to the
vocabulary keep their fresh initialisation."""

from __future__ import annotations

import torch

from contract import FIRST_ITEM_INDEX, UNKNOWN_INDEX
from serving.checkpoint import Checkpoint
from serving.model import NextActionModel
from serving.vocab import ItemVocab

__all__ = ["warm_start"]


@torch.no_grad()
def warm_start(model: NextActionModel, initial: Checkpoint, vocab: ItemVocab) -> int:
    """Copy ``initial``'s parameters into ``model`` (whose item rows follow ``vocab``); returns
    the number of items whose rows were carried over. Buffers (popularity, transition prior)
    are not copied: training sets them from the new data."""
    old_rows = len(initial.vocab)
    new_rows = len(vocab)
    # Padding and unknown keep their rows, then every item both vocabularies know.
    pairs = [(i, i) for i in range(FIRST_ITEM_INDEX)] + [
        (index, initial.vocab.index(item))
        for index, item in enumerate(vocab.items, start=FIRST_ITEM_INDEX)
        if initial.vocab.index(item) != UNKNOWN_INDEX
    ]
    new_index = torch.tensor([n for n, _ in pairs])
    old_index = torch.tensor([o for _, o in pairs])
    old_parameters = dict(initial.model.named_parameters())
    for name, parameter in model.named_parameters():
        old = old_parameters.get(name)
        if old is None:
            continue  # a network the old model did not have
        item_rows = (old.shape[0], parameter.shape[0]) == (old_rows, new_rows)
        if item_rows and old.shape[1:] == parameter.shape[1:]:
            parameter[new_index] = old[old_index]  # item rows (embeddings, output biases)
        elif old.shape == parameter.shape:
            parameter.copy_(old)
    return len(pairs) - FIRST_ITEM_INDEX
