"""``add-items`` on disk: a checkpoint directory plus an item-text file -> a new checkpoint directory.

The items file is JSON lines ``{"item_id": ..., "text": ...}``. Items the checkpoint knows
are not added; their texts fit the text mapping when the checkpoint carries none yet (the
first addition after training), which is then saved with the new checkpoint, so a later
addition encodes only its new items.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from serving.checkpoint import HPARAMS, Checkpoint, load_checkpoint, save_checkpoint
from serving.cold_start import ROW_SCALE, add_items, fit_text_mapping
from serving.data import DataFormatError, json_lines
from serving.item_text import TextEncoder
from serving.text_mapping import MAPPING, MIN_ITEMS, TextMapping

__all__ = ["AddedItems", "MissingTextsError", "add_items_to_checkpoint", "read_item_texts"]


class MissingTextsError(ValueError):
    """Too few known items' texts to fit the text mapping; the message says what to add."""


@dataclass(frozen=True)
class AddedItems:
    added: int
    skipped: int  # items of the file the checkpoint already knew
    mapping_fitted: bool  # False: the input checkpoint's mapping was reused
    explained: float  # the mapping's cross-validated explained variance
    seconds: float


def read_item_texts(path: Path) -> dict[str, str]:
    """item id -> text, in file order; a malformed line raises DataFormatError."""
    texts: dict[str, str] = {}
    for line_no, record in json_lines(path):
        item, text = (record.get(key) if isinstance(record, dict) else None for key in ("item_id", "text"))
        if not isinstance(item, str | int) or str(item) == "" or not isinstance(text, str):
            raise DataFormatError(path, line_no, 'expected {"item_id": "...", "text": "..."}')
        texts[str(item)] = text
    return texts


def _mapping(
    checkpoint_dir: Path, checkpoint: Checkpoint, texts: dict[str, str], encoder: TextEncoder
) -> TextMapping:
    saved = checkpoint_dir / MAPPING
    if saved.is_file():
        return TextMapping.load(saved)
    known = sum(item in texts for item in checkpoint.vocab.items)
    if known < MIN_ITEMS:
        raise MissingTextsError(
            f"{checkpoint_dir} has no text mapping yet: the items file must also hold the texts of the "
            f"items it knows, to fit one (found {known}, need at least {MIN_ITEMS})"
        )
    return fit_text_mapping(checkpoint, texts, encoder)


def add_items_to_checkpoint(
    checkpoint_dir: Path, items_file: Path, out_dir: Path, row_scale: float = ROW_SCALE
) -> AddedItems:
    started = time.monotonic()
    texts = read_item_texts(items_file)
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
