"""Triton Python-backend model file for ``nextaction`` (copied into each version as ``model.py``).

Each version folder also holds the ``contract.py`` it was exported with; this file imports
only that, numpy, onnxruntime and the standard library (``triton_python_backend_utils`` only
when Triton runs it), because Triton loads it from the model repository, where the project
may not be installed. Tensors: :data:`contract.INPUTS` and :data:`contract.OUTPUTS`.

This is the CPU deployment's model (config.pbtxt). The GPU deployment serves the version's
``native.onnx`` with Triton's onnxruntime backend instead (docs/gpu-serving.md), because the
stock container's Python backend has no onnxruntime.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort

# In a version folder the contract exported with this file must win over any installed copy
# (Triton appends the folder to sys.path, after site-packages), so the version stays
# self-contained; in the repository there is no sibling and the package's own is imported.
if Path(__file__).with_name("contract.py").is_file():
    sys.path.insert(0, str(Path(__file__).parent))

from contract import (
    FIRST_ITEM_INDEX,
    INPUTS,
    ONNX_INPUTS,
    OUTPUTS,
    PAD_INDEX,
    UNKNOWN_INDEX,
    gap_buckets,
    read_vocab_items,
)

__all__ = ["ITEM_COUNTS_METRIC", "EncodedBatch", "ModelOutputs", "NextActionPredictor", "TritonPythonModel"]


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready inputs: int64 [B, W] windows and the popularity correction float32 [B, 1]."""

    items: np.ndarray
    actions: np.ndarray
    gap_buckets: np.ndarray
    popularity_adjustment: np.ndarray

    @staticmethod
    def concatenate(batches: list[EncodedBatch]) -> EncodedBatch:
        return EncodedBatch(
            np.concatenate([b.items for b in batches]),
            np.concatenate([b.actions for b in batches]),
            np.concatenate([b.gap_buckets for b in batches]),
            np.concatenate([b.popularity_adjustment for b in batches]),
        )


class ModelOutputs(NamedTuple):
    """The graph's outputs (``contract.ONNX_OUTPUTS``), window columns restored to W."""

    indices: np.ndarray  # int64 [B, K]
    scores: np.ndarray  # float32 [B, K]
    attributions: np.ndarray  # float32 [B, K, W]
    similarities: np.ndarray  # float32 [B, K, K]
    signals: np.ndarray  # int8 [B, K, W]
    popularity: np.ndarray  # float32 [B, K]
    item_origins: np.ndarray  # int8 [B, K]
    next_actions: np.ndarray  # float32 [B, A]
    item_actions: np.ndarray  # float32 [B, K, A]
    gap_quantiles: np.ndarray  # float32 [B, Q] seconds
    action_attributions: np.ndarray  # float32 [B, A, W]


class NextActionPredictor:
    """Runs one exported version directory (model.onnx, vocab.json, manifest.json)."""

    def __init__(
        self,
        version_dir: str | os.PathLike[str],
        threads: int = 1,
    ) -> None:
        version_dir = Path(version_dir)
        self.manifest: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
        self.window: int = int(self.manifest["window"])
        self.top_k: int = int(self.manifest["top_k"])
        self.explain_positions: int = int(self.manifest["explain_positions"])
        self._n_action_codes = len(self.manifest["actions"]) + 1
        items = read_vocab_items(version_dir / "vocab.json")
        # Index -> id tables; pad and unknown never come out of the model's top-k.
        table = ["<pad>", "<unknown>", *items]
        self._item_str = np.array(table, dtype=object)
        self._item_bytes = np.array([item.encode() for item in table], dtype=object)
        # Triton hands BYTES tensors over as bytes, direct callers may pass str: accept both.
        self._index: dict[str | bytes, int] = {"": PAD_INDEX, b"": PAD_INDEX}
        for index, item in enumerate(items, start=FIRST_ITEM_INDEX):
            self._index[item] = index
            self._index[item.encode()] = index

        options = ort.SessionOptions()
        # One intra-op thread: several instances/requests share few cores, and more threads
        # per session made latency under load far worse on 2 cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(version_dir / "model.onnx"),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def encode(
        self,
        item_ids: np.ndarray,
        actions: np.ndarray,
        timestamps_ms: np.ndarray,
        popularity_adjustment: np.ndarray | None = None,
    ) -> EncodedBatch:
        """Validate one request's [B, W] tensors (and [B, 1] correction, 0 when not given)
        and map them to model inputs."""
        item_ids = np.asarray(item_ids, dtype=object)
        actions = np.asarray(actions)
        timestamps_ms = np.asarray(timestamps_ms)
        adjustment = (
            np.zeros((item_ids.shape[0], 1), dtype=np.float32)
            if popularity_adjustment is None
            else np.asarray(popularity_adjustment, dtype=np.float32)
        )
        if adjustment.shape != (item_ids.shape[0], 1) or not np.all(np.isfinite(adjustment)):
            raise ValueError(
                f"popularity adjustment: expected finite values [B, 1], got {list(adjustment.shape)}"
            )
        for name, array in (("items", item_ids), ("actions", actions), ("timestamps", timestamps_ms)):
            if array.ndim != 2 or array.shape != (item_ids.shape[0], self.window):
                raise ValueError(f"{name}: expected shape [B, {self.window}], got {list(array.shape)}")
        if actions.size and (actions.min() < 0 or actions.max() >= self._n_action_codes):
            raise ValueError(f"actions: codes must lie in 0..{self._n_action_codes - 1}")
        lookup = self._index.get
        items = np.fromiter(
            (lookup(item, UNKNOWN_INDEX) for item in item_ids.ravel()),
            dtype=np.int64,
            count=item_ids.size,
        ).reshape(item_ids.shape)
        valid = items != PAD_INDEX
        if np.any(valid != (actions != 0)):
            raise ValueError("padding mismatch: an empty item id needs action 0 and vice versa")
        return EncodedBatch(items, actions.astype(np.int64), gap_buckets(timestamps_ms, valid), adjustment)

    def run(self, batch: EncodedBatch) -> ModelOutputs:
        # Leading columns that are padding in every row cost compute and change no output
        # (positions count back from the newest event): cut them, keeping the explained ones.
        occupied = np.flatnonzero((batch.items != PAD_INDEX).any(axis=0))
        start = min(int(occupied[0]) if occupied.size else self.window, self.window - self.explain_positions)
        windows = (batch.items, batch.actions, batch.gap_buckets)
        feeds = {name: array[:, start:] for name, array in zip(ONNX_INPUTS, windows, strict=False)}
        feeds[ONNX_INPUTS[-1]] = batch.popularity_adjustment
        outputs = ModelOutputs(*self._session.run(None, feeds))
        restore = ((0, 0), (0, 0), (start, 0))
        return outputs._replace(
            attributions=np.pad(outputs.attributions, restore),
            signals=np.pad(outputs.signals, restore),
            action_attributions=np.pad(outputs.action_attributions, restore),
        )

    def item_ids(self, indices: np.ndarray, as_bytes: bool = False) -> np.ndarray:
        """Object array of item ids (str, or bytes for Triton BYTES outputs) of model indices."""
        return (self._item_bytes if as_bytes else self._item_str)[indices]

    def predict(
        self,
        item_ids: np.ndarray,
        actions: np.ndarray,
        timestamps_ms: np.ndarray,
        popularity_adjustment: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ModelOutputs]:
        """Top items (object array of str [B, K]) and every output of the graph."""
        outputs = self.run(self.encode(item_ids, actions, timestamps_ms, popularity_adjustment))
        return self.item_ids(outputs.indices), outputs


def _check_config_tensors(model_config: dict[str, Any], window: int, top_k: int) -> None:
    """Fail at load time when config.pbtxt disagrees with the exported model."""
    for section, specs in (("input", INPUTS), ("output", OUTPUTS)):
        found = {t["name"]: t for t in model_config.get(section, [])}
        names = sorted(spec.name for spec in specs)
        if sorted(found) != names:
            raise ValueError(f"config {section}s must be {names}, got {sorted(found)}")
        for spec in specs:
            dims = [int(d) for d in found[spec.name]["dims"]]
            expected = spec.shape(window, top_k)
            if found[spec.name]["data_type"] != spec.config_type or dims != expected:
                raise ValueError(
                    f"config {section} {spec.name}: expected {spec.config_type} {expected}, "
                    f"got {found[spec.name]['data_type']} {dims}"
                )


ITEM_COUNTS_METRIC = "nextaction_model_window_items_total"


class _WindowItemCounts:
    """Window items scored, known to the vocabulary or not, on Triton's metrics endpoint: the
    unknown share is the retrain signal, and only the model knows its vocabulary."""

    def __init__(self, model_name: str, version: str) -> None:
        import triton_python_backend_utils as pb_utils

        # Metrics must be dropped before their family: both live as long as the model.
        self._family = pb_utils.MetricFamily(
            name=ITEM_COUNTS_METRIC,
            description="Window items scored, by whether the model's vocabulary knows them",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        labels = {"model": model_name, "version": version}
        self._known = self._family.Metric(labels={**labels, "vocabulary": "known"})
        self._unknown = self._family.Metric(labels={**labels, "vocabulary": "unknown"})

    def count(self, items: np.ndarray) -> None:
        unknown = int(np.count_nonzero(items == UNKNOWN_INDEX))
        self._unknown.increment(float(unknown))
        self._known.increment(float(np.count_nonzero(items != PAD_INDEX) - unknown))


class TritonPythonModel:
    """Triton entry points: one batched forward pass per ``execute`` call."""

    def initialize(self, args: dict[str, str]) -> None:
        model_config = json.loads(args["model_config"])
        parameters = model_config.get("parameters", {})
        version_dir = Path(args["model_repository"]) / args["model_version"]
        threads = int(parameters.get("INTRA_OP_THREAD_COUNT", {}).get("string_value", "1"))
        manifest = json.loads((version_dir / "manifest.json").read_text())
        window, top_k = int(manifest["window"]), int(manifest["top_k"])
        _check_config_tensors(model_config, window, top_k)
        self._predictor = NextActionPredictor(version_dir, threads=threads)
        self._item_counts = _WindowItemCounts(args["model_name"], args["model_version"])

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses: list[Any] = [None] * len(requests)
        encoded: list[EncodedBatch] = []
        owners: list[int] = []
        for position, request in enumerate(requests):
            try:
                items, actions, stamps, adjustment = (
                    pb_utils.get_input_tensor_by_name(request, spec.name) for spec in INPUTS
                )
                encoded.append(
                    self._predictor.encode(
                        items.as_numpy(),
                        actions.as_numpy(),
                        stamps.as_numpy(),
                        # An optional input a client left out arrives as None.
                        None if adjustment is None else adjustment.as_numpy(),
                    )
                )
                owners.append(position)
            except ValueError as exc:
                # INVALID_ARG, not INTERNAL: the client must not retry a malformed window.
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[position] = pb_utils.InferenceResponse(output_tensors=[], error=error)
        if encoded:
            batch = EncodedBatch.concatenate(encoded)
            self._item_counts.count(batch.items)
            served = self._predictor.run(batch)
            top_items = self._predictor.item_ids(served.indices, as_bytes=True)
            start = 0
            for position, batch in zip(owners, encoded, strict=True):
                rows = slice(start, start + batch.items.shape[0])
                start = rows.stop
                outputs = (top_items[rows], *(output[rows] for output in served[1:]))
                responses[position] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(spec.name, output)
                        for spec, output in zip(OUTPUTS, outputs, strict=True)
                    ]
                )
        return responses
