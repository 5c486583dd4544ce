"""New items on disk: a checkpoint directory plus item texts -> a new checkpoint directory.

Item texts come as JSON records ``{"item_id": ..., "text": ...}`` (lines of a file for
``add-items``, messages of the catalogue topic for ``catalogue``). Items the checkpoint knows
are not added; their texts fit the text mapping when the checkpoint carries none yet (the
first addition after training), which is then saved with the new checkpoint, so a later
addition encodes only its new items.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from serving.checkpoint import HPARAMS, Checkpoint, load_checkpoint, save_checkpoint
from serving.cold_start import ROW_SCALE, add_items, fit_text_mapping
from serving.item_text import TextEncoder
from serving.text_mapping import MAPPING, MIN_ITEMS, TextMapping

__all__ = ["AddedItems", "MissingTextsError", "add_items_to_checkpoint"]


class MissingTextsError(ValueError):
    """Too few known items' texts to fit the text mapping; the message says what to add."""


@dataclass(frozen=True)
class AddedItems:
    added: int
    skipped: int  # items of the file the checkpoint already knew
    mapping_fitted: bool  # False: the input checkpoint's mapping was reused
    explained: float  # the mapping's cross-validated explained variance
    seconds: float


def _mapping(
    checkpoint_dir: Path, checkpoint: Checkpoint, texts: Mapping[str, str], encoder: TextEncoder
) -> TextMapping:
    saved = checkpoint_dir / MAPPING
    if saved.is_file():
        return TextMapping.load(saved)
    known = sum(item in texts for item in checkpoint.vocab.items)
    if known < MIN_ITEMS:
        raise MissingTextsError(
            f"{checkpoint_dir} has no text mapping yet: the item texts (the --items file, the catalogue "
            f"topic) must also hold the texts of the items it knows, to fit one (found {known}, need at "
            f"least {MIN_ITEMS})"
        )
    return fit_text_mapping(checkpoint, texts, encoder)


def add_items_to_checkpoint(
    checkpoint_dir: Path, texts: Mapping[str, str], out_dir: Path, row_scale: float = ROW_SCALE
) -> AddedItems:
    """``out_dir``: the checkpoint with the items of ``texts`` it does not know, and the text
    mapping (fitted here when ``checkpoint_dir`` has none: ``texts`` must then hold at least
    ``MIN_ITEMS`` known items' texts)."""
    started = time.monotonic()
    checkpoint = load_checkpoint(checkpoint_dir)
    encoder = TextEncoder()
    fitted = not (checkpoint_dir / MAPPING).is_file()
    mapping = _mapping(checkpoint_dir, checkpoint, texts, encoder)
    extended = add_items(checkpoint, texts, mapping, encoder, row_scale)
    added = len(extended.vocab) - len(checkpoint.vocab)
    earlier = checkpoint.metrics.get("cold_start", {}).get("items_added", 0)
    metrics = {
        **checkpoint.metrics,
        "cold_start": {
            "items_added": earlier + added,
            "row_scale": row_scale,
            "mapping_penalty": mapping.penalty,
            "mapping_explained": mapping.explained,
        },
    }
    training = json.loads((checkpoint_dir / HPARAMS).read_text())["training"]
    save_checkpoint(replace(extended, metrics=metrics), out_dir, training)
    mapping.save(out_dir / MAPPING)
    return AddedItems(added, len(texts) - added, fitted, mapping.explained, time.monotonic() - started)
