"""New catalogue items into the served model: a new version with rows for the items it does
not know, predicted from their texts, exported beside it (no retraining).

The served version is the only state: an item is new when its vocabulary lacks it, so a pass
that fails half-way (the export stages out of sight and publishes by one rename) is simply
run again, and a pass over a catalogue with nothing new changes nothing. A version published
while a pass builds on the one before (a retrain, a roll-back) wins: the pass raises
StaleVersionError rather than hide it, and the next pass builds on it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.checkpoint import VOCAB
from serving.cold_start import ROW_SCALE
from serving.cold_start_checkpoint import add_items_to_checkpoint
from serving.export import CHECKPOINT, export
from serving.model_versions import ModelVersion
from serving.triton_config import SERVED_TOP_K
from serving.vocab import ItemVocab

__all__ = ["CatalogueUpdate", "add_catalogue_items", "unknown_items"]

# Manifest fields a version of added items keeps from the one it extends: what the model was
# trained to, so the next retrain reads the events from there.
_CARRIED = ("trained_to",)


@dataclass(frozen=True)
class CatalogueUpdate:
    new_items: tuple[str, ...]
    version_dir: Path | None  # None: nothing new, no version written
    seconds: float


def unknown_items(served: ModelVersion, texts: Mapping[str, str]) -> tuple[str, ...]:
    """Items of ``texts`` the served version's vocabulary lacks, in catalogue order."""
    known = set(ItemVocab.load(served.path / CHECKPOINT / VOCAB).items)
    return tuple(item for item in texts if item not in known)


def add_catalogue_items(
    served: ModelVersion, texts: Mapping[str, str], row_scale: float = ROW_SCALE
) -> CatalogueUpdate:
    """A new version of ``served``'s model with every item of ``texts`` it does not know.

    ``texts`` is the catalogue (known items too): the first addition to a trained version
    fits the text mapping on its known items' texts (MissingTextsError when too few)."""
    started = time.monotonic()
    new = unknown_items(served, texts)
    if not new:
        return CatalogueUpdate((), None, time.monotonic() - started)
    manifest = served.manifest
    provenance = {key: manifest[key] for key in _CARRIED if key in manifest}
    provenance["cold_start"] = {
        "extends_version": served.number,
        "content": served.content,
        "items": len(new),
    }
    chosen = {"explain_positions": manifest["explain_positions"]} if "explain_positions" in manifest else {}
    with tempfile.TemporaryDirectory(prefix="nextaction-catalogue-") as tmp:
        extended = Path(tmp) / "checkpoint"
        add_items_to_checkpoint(served.path / CHECKPOINT, texts, extended, row_scale)
        version_dir = export(
            extended,
            served.path.parent.parent,
            model_name=str(manifest.get("model_name", served.path.parent.name)),
            window=manifest.get("window"),
            served_top_k=int(manifest.get("top_k", SERVED_TOP_K)),
            **chosen,
            provenance=provenance,
            extends=served.number,
        )
    return CatalogueUpdate(new, version_dir, time.monotonic() - started)
