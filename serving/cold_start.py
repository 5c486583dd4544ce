"""New items into a trained model without retraining: rows predicted from their texts.

Each new item gets an index after the existing ones (no existing index moves, so served
windows, explanations and transition prior stay valid) and, in every network, an item
embedding row that the text mapping (:mod:`serving.text_mapping`) predicts from its text
embedding. The transition prior has no successors for new items (their rows stay empty)
and never proposes them: it only knows transitions seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from serving.checkpoint import Checkpoint
from serving.item_text import TextEncoder
from serving.model import NextActionModel
from serving.text_mapping import TextMapping
from serving.vocab import ItemVocab

__all__ = ["ROW_SCALE", "TextRows", "add_item_rows", "add_items", "fit_text_mapping", "item_rows"]

# Predicted rows are multiplied by this before they are added: ridge shrinks predictions
# towards the mean row, and as predicted new items never reach a list. It sets how often new
# items are shown until retraining gives them rows of their own: the largest scale within 5%
# of the best validation NDCG@10 when a model's newest items are made new again
# (benchmarks/cold_start.py, docs/2026-11-29-beyond-accuracy.md).
ROW_SCALE = 2.0


@dataclass(frozen=True)
class TextRows:
    """New items and their predicted rows, float32 [len(items), networks * D]."""

    items: tuple[str, ...]
    rows: np.ndarray


def item_rows(model: NextActionModel) -> np.ndarray:
    """Every network's item embedding side by side, float32 [V, networks * D]."""
    return model.joined_item_table().detach().numpy()


def fit_text_mapping(checkpoint: Checkpoint, texts: Mapping[str, str], encoder: TextEncoder) -> TextMapping:
    """The mapping fitted on the checkpoint's items that have a text in ``texts``."""
    warm = [item for item in checkpoint.vocab.items if item in texts]
    indices = checkpoint.vocab.indices(warm)
    text = encoder.encode([texts[item] for item in warm])
    return TextMapping.fit(text, item_rows(checkpoint.model)[indices])


def add_item_rows(checkpoint: Checkpoint, new: TextRows) -> Checkpoint:
    """The checkpoint with ``new.items`` appended to the vocabulary and their rows to every
    network. Every other tensor sized by the vocabulary keeps its rows, and the new items get
    what a freshly built model holds there (no transition prior successors, for one), so
    per-item state added to the model later is carried without a change here. Metrics are
    kept as they are."""
    old = checkpoint.model
    learned = old.config.learned_items or old.config.n_items
    model = NextActionModel(
        replace(old.config, n_items=old.config.n_items + len(new.items), learned_items=learned)
    )
    state = model.state_dict()
    with torch.no_grad():
        for key, value in old.state_dict().items():
            state[key][tuple(slice(0, size) for size in value.shape)] = value
        # No interaction exposed a new item: to the popularity correction it is the least exposed.
        state["log_popularity"][old.config.n_items :] = old.log_popularity.min()
        rows = torch.from_numpy(np.ascontiguousarray(new.rows, dtype=np.float32))
        hidden = old.config.hidden
        for n in range(old.config.networks):
            table = state[f"networks.{n}.item_embedding.weight"]
            table[old.config.n_items :] = rows[:, n * hidden : (n + 1) * hidden]
    model.load_state_dict(state)
    return Checkpoint(model.eval(), ItemVocab(checkpoint.vocab.items + new.items), checkpoint.metrics)


def add_items(
    checkpoint: Checkpoint,
    texts: Mapping[str, str],
    mapping: TextMapping,
    encoder: TextEncoder,
    row_scale: float = ROW_SCALE,
) -> Checkpoint:
    """The checkpoint with every item of ``texts`` it does not know added, in the order given,
    rows ``row_scale`` times the mapping's prediction; items it knows are left as they are."""
    known = set(checkpoint.vocab.items)
    new = tuple(item for item in texts if item not in known)
    if not new:
        return checkpoint
    rows = row_scale * mapping.predict(encoder.encode([texts[item] for item in new]))
    if rows.shape[1] != item_rows(checkpoint.model).shape[1]:
        raise ValueError("the text mapping was fitted on a model of another shape")
    return add_item_rows(checkpoint, TextRows(new, rows))
