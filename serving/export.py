"""Export a checkpoint into a Triton model repository as a new numbered version.

Layout written (``N`` = highest existing version + 1):

    <repository>/<model_name>/config.pbtxt        CPU config (Python backend + onnxruntime)
    <repository>/<model_name>/configs/gpu.pbtxt   GPU config (onnxruntime backend + TensorRT)
    <repository>/<model_name>/<N>/model.onnx      ServingModule: top-k, scores, attributions
    <repository>/<model_name>/<N>/native.onnx     model.onnx wrapped from item ids to item ids
    <repository>/<model_name>/<N>/model.py        copy of serving/triton_backend.py
    <repository>/<model_name>/<N>/contract.py     copy of contract.py, which model.py imports
    <repository>/<model_name>/<N>/vocab.json, manifest.json
"""

from __future__ import annotations

import json
import py_compile
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import contract
from contract import ACTIONS, N_GAP_BUCKETS, ONNX_INPUTS, ONNX_OUTPUTS, PAD_INDEX, UNKNOWN_INDEX
from serving import triton_backend
from serving.checkpoint import VOCAB, load_checkpoint
from serving.native_graph import write_native_graph
from serving.serving_module import EXPLAIN_POSITIONS, ServedOutputs, ServingModule
from serving.triton_config import CONFIG_FILES, MAX_BATCH_SIZE, model_config_text

__all__ = ["ExportError", "export"]

# Largest |ONNX - torch| differences accepted at export. Attributions are normalised drops:
# where all drops are small, float32 rounding moves their shares by up to about 1e-3.
SCORE_TOLERANCE = 1e-4
ATTRIBUTION_TOLERANCE = 5e-3
SIGNAL_TOLERANCE = 1e-3  # share of signals that may differ


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model."""


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
    diffs = {"scores": 0.0, "attributions": 0.0, "similarities": 0.0, "signals_changed": 0.0}
    for check in (
        _sample_inputs(7, window, n_items, seed=1),
        _sample_inputs(5, module.explain_positions, n_items, seed=2),
    ):
        with torch.no_grad():
            expected = ServedOutputs(*(t.numpy() for t in module(*check)))
        got = ServedOutputs(
            *session.run(None, dict(zip(ONNX_INPUTS, (t.numpy() for t in check), strict=True)))
        )
        if not (
            np.array_equal(got.top_indices, expected.top_indices)
            and np.array_equal(got.popularity, expected.popularity)
            and np.array_equal(got.item_origins, expected.item_origins)
        ):
            raise ExportError(f"ONNX top-k differs from torch at width {check[0].shape[1]}")
        for name in ("scores", "attributions", "similarities"):
            field = "top_scores" if name == "scores" else name
            difference = np.abs(getattr(got, field) - getattr(expected, field)).max()
            diffs[name] = max(diffs[name], float(difference))
        # A similarity right at the threshold may round to either side of it.
        changed = float(np.mean(got.signals != expected.signals))
        diffs["signals_changed"] = max(diffs["signals_changed"], changed)
    if (
        diffs["scores"] > SCORE_TOLERANCE
        or diffs["attributions"] > ATTRIBUTION_TOLERANCE
        or diffs["similarities"] > SCORE_TOLERANCE
        or diffs["signals_changed"] > SIGNAL_TOLERANCE
    ):
        raise ExportError(f"ONNX output differs from torch: max abs diffs {diffs}")
    return diffs


def _replace_if_changed(path: Path, text: str) -> None:
    """Atomic replace (the server may read the file at any moment), skipped when equal."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(text)
    staged.replace(path)


def _next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export(
    checkpoint_dir: Path,
    repository_dir: Path,
    model_name: str = "nextaction",
    window: int | None = None,
    served_top_k: int = 20,
    explain_positions: int = EXPLAIN_POSITIONS,
) -> Path:
    """Export the checkpoint as a new version and refresh the configs; returns the version dir.

    ``window`` defaults to the trained window (a shorter one keeps the newest events).
    """
    checkpoint = load_checkpoint(checkpoint_dir)
    window = window or checkpoint.model.config.window
    explain_positions = min(explain_positions, window)
    if not 0 < window <= checkpoint.model.config.window:
        raise ExportError(f"window must lie in 1..{checkpoint.model.config.window}, the trained window")
    module = ServingModule(checkpoint.model, served_top_k, explain_positions).eval()
    model_dir = repository_dir / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    # Built beside the versions and renamed at the end: Triton polling the repository never
    # sees a half-written version (it ignores non-numeric directories).
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        diffs = _export_onnx(module, window, checkpoint.model.config.n_items, staging / "model.onnx")
        shutil.copyfile(checkpoint_dir / VOCAB, staging / "vocab.json")
        write_native_graph(staging, window, served_top_k)
        for source, name in ((triton_backend.__file__, "model.py"), (contract.__file__, "contract.py")):
            shutil.copyfile(source, staging / name)
            # Ship the bytecode: otherwise the backend writes __pycache__ into the version at
            # load time, and Triton's repository poller sees a change and reloads the version.
            py_compile.compile(str(staging / name), doraise=True)
        version = _next_version(model_dir)
        manifest: dict[str, Any] = {
            "model_name": model_name,
            "version": version,
            "window": window,
            "top_k": served_top_k,
            "explain_positions": explain_positions,
            "actions": list(ACTIONS),
            "n_items": checkpoint.model.config.n_items,
            "max_batch_size": MAX_BATCH_SIZE,
            "onnx_max_abs_diff": diffs,
            "model": checkpoint.model.config.to_dict(),
            "training_metrics": {k: v for k, v in checkpoint.metrics.items() if k != "history"},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # Configs first: the new version must never appear without a config that fits it.
        # An unchanged config is left alone, since touching it makes Triton reload the model.
        for device, relative in CONFIG_FILES.items():
            _replace_if_changed(
                model_dir / relative, model_config_text(model_name, window, served_top_k, device)
            )
        version_dir = model_dir / str(version)
        staging.rename(version_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version_dir
