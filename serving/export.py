"""Export a checkpoint into a Triton model repository as a new numbered version.

Layout written (``N`` = highest existing version + 1):

    <repository>/<model_name>/config.pbtxt        CPU config (Python backend + onnxruntime)
    <repository>/<model_name>/configs/gpu.pbtxt   GPU config (onnxruntime backend + TensorRT)
    <repository>/<model_name>/<N>/model.onnx      ServingModule: top-k, scores, attributions
    <repository>/<model_name>/<N>/native.onnx     model.onnx wrapped from item ids to item ids
    <repository>/<model_name>/<N>/model.py        copy of serving/triton_backend.py
    <repository>/<model_name>/<N>/contract.py     copy of contract.py, which model.py imports
    <repository>/<model_name>/<N>/vocab.json, manifest.json
    <repository>/<model_name>/<N>/checkpoint/     weights, hparams, vocab, metrics: what a
                                                  retrain warm-starts from (Triton ignores it)

The manifest records where the model came from (data fingerprint, code revision, creation
time) and its validation metrics, which ``nextaction models`` lists and the export gate
(:mod:`serving.quality_gate`) compares.
"""

from __future__ import annotations

import py_compile
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import contract
from contract import ACTIONS, N_GAP_BUCKETS, ONNX_INPUTS, ONNX_OUTPUTS, OUTPUTS, PAD_INDEX, UNKNOWN_INDEX
from serving import triton_backend
from serving.checkpoint import HPARAMS, METRICS, VOCAB, WEIGHTS, load_checkpoint
from serving.model_versions import publish_version, staging_dir, utc_now
from serving.native_graph import write_native_graph
from serving.provenance import code_revision
from serving.quality_gate import validation_metrics
from serving.serving_module import EXPLAIN_POSITIONS, ServedOutputs, ServingModule
from serving.text_mapping import MAPPING
from serving.triton_config import MAX_BATCH_SIZE, SERVED_TOP_K

__all__ = ["CHECKPOINT", "ExportError", "export"]

CHECKPOINT = "checkpoint"  # the version's training checkpoint, inside the version folder

# Largest |ONNX - torch| differences accepted at export. Attributions are normalised drops:
# where all drops are small, float32 rounding moves their shares by up to about 1e-3.
SCORE_TOLERANCE = 1e-4
ATTRIBUTION_TOLERANCE = 5e-3
SIGNAL_TOLERANCE = 1e-3  # share of signals that may differ
# Float outputs besides the scores and the largest difference each may show (gap quantiles as
# log(1 + seconds)).
_CLOSE_OUTPUTS = {
    "attributions": ATTRIBUTION_TOLERANCE,
    "similarities": SCORE_TOLERANCE,
    "next_actions": SCORE_TOLERANCE,
    "item_actions": SCORE_TOLERANCE,
    "gap_quantiles": SCORE_TOLERANCE,
    "action_attributions": ATTRIBUTION_TOLERANCE,
}


# Outputs with a row per top item, which follow the items' order.
_PER_TOP_ITEM = frozenset({"attributions", "similarities", "item_actions"})


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model."""


def ranked_alike(
    got: np.ndarray, expected: np.ndarray, expected_scores: np.ndarray, width: int
) -> np.ndarray:
    """Which windows' top items come in the same order in both runtimes; raises
    :class:`ExportError` for any other difference than tied items swapping places: two items
    whose scores lie within ``SCORE_TOLERANCE`` may be ordered either way by two runtimes'
    rounding, and the last place may go to an item just past the list with the same score."""
    differs = got != expected
    tied = np.zeros_like(differs)
    close = np.abs(np.diff(expected_scores, axis=1)) <= SCORE_TOLERANCE
    tied[:, :-1] |= close
    tied[:, 1:] |= close
    tied[:, -1] = True
    if (differs & ~tied).any():
        row, place = (int(i) for i in np.argwhere(differs & ~tied)[0])
        raise ExportError(
            f"ONNX top-k differs from torch at width {width}: window {row}, place {place}, item "
            f"{int(got[row, place])} against {int(expected[row, place])} (torch scores of the row: "
            f"{np.round(expected_scores[row], 6).tolist()})"
        )
    return ~differs.any(axis=1)


def _sample_inputs(batch: int, window: int, n_items: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Left-padded windows of varied length, with some unknown items, for tracing and checking."""
    rng = np.random.default_rng(seed)
    items = rng.integers(UNKNOWN_INDEX, n_items, size=(batch, window))
    lengths = rng.integers(1, window + 1, size=batch)
    pad = np.arange(window)[None, :] < (window - lengths)[:, None]
    items[pad] = PAD_INDEX
    actions = np.where(pad, 0, rng.integers(1, len(ACTIONS) + 1, size=(batch, window)))
    gaps = np.where(pad, 0, rng.integers(1, N_GAP_BUCKETS, size=(batch, window)))
    # Half the rows uncorrected, as most deployments run; the rest at varied strengths.
    adjustment = np.where(rng.random((batch, 1)) < 0.5, 0.0, rng.uniform(0.0, 1.0, (batch, 1)))
    windows = tuple(torch.from_numpy(a.astype(np.int64)) for a in (items, actions, gaps))
    return (*windows, torch.from_numpy(adjustment.astype(np.float32)))


def _export_onnx(module: ServingModule, window: int, n_items: int, path: Path) -> dict[str, float]:
    """Write the ONNX file; return the largest output differences to torch."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    # The predictor cuts columns that are padding in every row of a batch, down to the
    # explained ones; a model that explains the whole window always takes all of it.
    width = (
        torch.export.Dim("window", min=module.explain_positions, max=window)
        if module.explain_positions < window
        else None
    )
    torch.onnx.export(
        module,
        _sample_inputs(2, window, n_items, seed=0),
        str(path),
        dynamo=True,
        verbose=False,
        external_data=False,  # one self-contained file per version
        input_names=list(ONNX_INPUTS),
        output_names=list(ONNX_OUTPUTS),
        dynamic_shapes=({0: batch} if width is None else {0: batch, 1: width},) * 3 + ({0: batch},),
    )
    # Check on other batch sizes and widths than the traced ones, so both dynamic dims are
    # exercised.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = dict.fromkeys(("scores", *_CLOSE_OUTPUTS, "signals_changed"), 0.0)
    for check in (
        _sample_inputs(7, window, n_items, seed=1),
        _sample_inputs(5, module.explain_positions, n_items, seed=2),
    ):
        with torch.no_grad():
            expected = ServedOutputs(*(t.numpy() for t in module(*check)))
        got = ServedOutputs(
            *session.run(None, dict(zip(ONNX_INPUTS, (t.numpy() for t in check), strict=True)))
        )
        columns = check[0].shape[1]
        top_scores = np.asarray(expected.top_scores)
        same = ranked_alike(
            np.asarray(got.top_indices), np.asarray(expected.top_indices), top_scores, columns
        )
        if not (
            np.array_equal(got.popularity[same], expected.popularity[same])
            and np.array_equal(got.item_origins[same], expected.item_origins[same])
        ):
            raise ExportError(f"ONNX popularity or item origins differ from torch at width {columns}")
        for name in ("scores", *_CLOSE_OUTPUTS):
            field = "top_scores" if name == "scores" else name
            ours, theirs = getattr(got, field), getattr(expected, field)
            if field in _PER_TOP_ITEM:  # a row whose tied items swapped places pairs them otherwise
                ours, theirs = ours[same], theirs[same]
            if name == "gap_quantiles":  # seconds span orders of magnitude: compare their logs
                ours, theirs = np.log1p(ours), np.log1p(theirs)
            diffs[name] = max(diffs[name], float(np.abs(ours - theirs).max(initial=0.0)))
        # A similarity right at the threshold may round to either side of it.
        changed = float(np.mean(got.signals[same] != expected.signals[same])) if same.any() else 0.0
        diffs["signals_changed"] = max(diffs["signals_changed"], changed)
    tolerances = {"scores": SCORE_TOLERANCE, **_CLOSE_OUTPUTS, "signals_changed": SIGNAL_TOLERANCE}
    if any(diffs[name] > tolerance for name, tolerance in tolerances.items()):
        raise ExportError(f"ONNX output differs from torch: max abs diffs {diffs}")
    return diffs


def export(
    checkpoint_dir: Path,
    repository_dir: Path,
    model_name: str = "nextaction",
    window: int | None = None,
    served_top_k: int = SERVED_TOP_K,
    explain_positions: int = EXPLAIN_POSITIONS,
    provenance: Mapping[str, Any] | None = None,
    step: Callable[[str], None] = lambda _: None,
    extends: int | None = None,
) -> Path:
    """Export the checkpoint as a new version and refresh the configs; returns the version dir.

    ``window`` defaults to the trained window (a shorter one keeps the newest events).
    ``provenance``: more manifest fields (a retrain's topic offsets and newest-event metrics).
    ``step`` hears each stage as it starts (the command's progress lines).
    ``extends``: the version this one builds on; StaleVersionError if another was published
    meanwhile (see ``publish_version``).
    """
    checkpoint = load_checkpoint(checkpoint_dir)
    window = window or checkpoint.model.config.window
    explain_positions = min(explain_positions, window)
    if not 0 < window <= checkpoint.model.config.window:
        raise ExportError(f"window must lie in 1..{checkpoint.model.config.window}, the trained window")
    module = ServingModule(checkpoint.model, served_top_k, explain_positions).eval()
    model_dir = repository_dir / model_name
    # Built beside the versions and renamed at the end (serving.model_versions.publish_version).
    staging = staging_dir(model_dir, ".export-")
    try:
        step("tracing the graph and checking ONNX Runtime against torch (the longest stage)")
        diffs = _export_onnx(module, window, checkpoint.model.config.n_items, staging / "model.onnx")
        step("writing native.onnx, the backend file and the checkpoint")
        shutil.copyfile(checkpoint_dir / VOCAB, staging / "vocab.json")
        write_native_graph(staging, window, served_top_k)
        for source, name in ((triton_backend.__file__, "model.py"), (contract.__file__, "contract.py")):
            shutil.copyfile(source, staging / name)
            # Ship the bytecode: otherwise the backend writes __pycache__ into the version at
            # load time, and Triton's repository poller sees a change and reloads the version.
            py_compile.compile(str(staging / name), doraise=True)
        (staging / CHECKPOINT).mkdir()
        # A text mapping (cold start) goes along, so a later addition to this version encodes
        # only its new items' texts.
        mapping = [MAPPING] if (checkpoint_dir / MAPPING).is_file() else []
        for name in (WEIGHTS, HPARAMS, VOCAB, METRICS, *mapping):
            shutil.copyfile(checkpoint_dir / name, staging / CHECKPOINT / name)
        manifest: dict[str, Any] = {
            "model_name": model_name,
            "created": utc_now(),
            "code_revision": code_revision(),
            "data": checkpoint.metrics.get("data"),
            "validation": validation_metrics(checkpoint.metrics),
            "window": window,
            "top_k": served_top_k,
            "explain_positions": explain_positions,
            "actions": list(ACTIONS),
            "outputs": [spec.name for spec in OUTPUTS],
            "n_items": checkpoint.model.config.n_items,
            "max_batch_size": MAX_BATCH_SIZE,
            "onnx_max_abs_diff": diffs,
            "model": checkpoint.model.config.to_dict(),
            "training_metrics": {k: v for k, v in checkpoint.metrics.items() if k != "history"},
            **(provenance or {}),
        }
        step("publishing the version")
        version_dir = publish_version(staging, model_dir, manifest, extends)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version_dir
