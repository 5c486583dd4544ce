"""Triton Python-backend model file for ``nextaction`` (copied into each version as ``model.py``).

Self-contained on purpose: Triton loads this file from the model repository, where the
``serving`` package may not be installed. It imports only numpy, onnxruntime and the
standard library; ``triton_python_backend_utils`` is imported only when Triton runs it.
Training code imports ``gap_buckets`` and the vocabulary layout from here, so the model
sees identical inputs in training and in serving.

Triton tensor contract (batch dimension not in ``dims``):
  inputs  ITEM_IDS TYPE_STRING [W], ACTIONS TYPE_INT32 [W], TIMESTAMPS TYPE_INT64 [W]
          (left-padded with ""/0/0, oldest to newest)
  outputs TOP_ITEMS TYPE_STRING [K], TOP_SCORES TYPE_FP32 [K], ATTRIBUTIONS TYPE_FP32 [K, W]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

__all__ = [
    "FIRST_ITEM_INDEX",
    "INPUT_SPECS",
    "N_GAP_BUCKETS",
    "ONNX_INPUTS",
    "OUTPUT_SPECS",
    "PAD_INDEX",
    "UNKNOWN_INDEX",
    "EncodedBatch",
    "NextActionPredictor",
    "TritonPythonModel",
    "gap_buckets",
    "load_vocab_items",
    "tensor_dims",
    "trt_profile_shapes",
]

# Vocabulary layout shared with serving/vocab.py.
PAD_INDEX: Final = 0
UNKNOWN_INDEX: Final = 1
FIRST_ITEM_INDEX: Final = 2

# Gap buckets: 0 = padding, 1 = oldest event in the window (no previous event visible),
# 2.. = floor(log2(1 + gap seconds)), capped. Log scale because a 5 s and a 50 s gap differ
# as much in meaning as a 1 h and a 10 h gap.
N_GAP_BUCKETS: Final = 24
_PAD_GAP: Final = 0
_FIRST_GAP: Final = 1
_FIRST_TIMED_GAP: Final = 2

# Triton tensor name -> data type; dims are checked against the manifest's window and top-k.
INPUT_SPECS: Final = {
    "ITEM_IDS": "TYPE_STRING",
    "ACTIONS": "TYPE_INT32",
    "TIMESTAMPS": "TYPE_INT64",
}
OUTPUT_SPECS: Final = {
    "TOP_ITEMS": "TYPE_STRING",
    "TOP_SCORES": "TYPE_FP32",
    "ATTRIBUTIONS": "TYPE_FP32",
}
# ONNX graph tensor names written by serving/export.py.
ONNX_INPUTS: Final = ("items", "actions", "gap_buckets")


def tensor_dims(window: int, top_k: int) -> dict[str, list[int]]:
    """Dims of each Triton tensor, batch dimension omitted (config.pbtxt convention)."""
    return {
        "ITEM_IDS": [window],
        "ACTIONS": [window],
        "TIMESTAMPS": [window],
        "TOP_ITEMS": [top_k],
        "TOP_SCORES": [top_k],
        "ATTRIBUTIONS": [top_k, window],
    }


def trt_profile_shapes(batch_max: int, window: int, min_window: int) -> dict[str, str]:
    """TensorRT optimisation profile of the model inputs (``min``/``opt``/``max`` shapes):
    batches of up to ``batch_max`` windows cut to ``min_window``..``window`` columns."""

    def shapes(batch: int, width: int) -> str:
        return ",".join(f"{name}:{batch}x{width}" for name in ONNX_INPUTS)

    return {
        "min": shapes(1, min_window),
        "opt": shapes(max(1, batch_max // 2), window),
        "max": shapes(batch_max, window),
    }


def gap_buckets(timestamps_ms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Log-bucketed gap of each event to the previous one in the same window.

    timestamps_ms: int64 [..., W] epoch ms, oldest to newest; valid: bool [..., W] (False = pad).
    Returns int64 [..., W]. Only gaps inside the window count, because the server sees only
    the window: the oldest event always gets the "first" bucket, in training and in serving.
    """
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    previous_valid = np.zeros_like(valid)
    previous_valid[..., 1:] = valid[..., :-1]
    gap_ms = np.zeros(ts.shape, dtype=np.int64)
    gap_ms[..., 1:] = ts[..., 1:] - ts[..., :-1]
    # Out-of-order timestamps count as simultaneous rather than failing the request.
    gap_s = np.maximum(gap_ms, 0) / 1000.0
    timed = _FIRST_TIMED_GAP + np.minimum(
        np.floor(np.log2(1.0 + gap_s)).astype(np.int64), N_GAP_BUCKETS - 1 - _FIRST_TIMED_GAP
    )
    buckets = np.where(previous_valid, timed, _FIRST_GAP)
    return np.where(valid, buckets, _PAD_GAP).astype(np.int64)


def load_vocab_items(path: str | os.PathLike[str]) -> list[str]:
    """Item ids of a vocab.json in index order; item ``i`` of the list has index ``i + 2``."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if (data.get("pad_index"), data.get("unknown_index")) != (PAD_INDEX, UNKNOWN_INDEX):
        raise ValueError(f"{path}: vocabulary layout differs from pad=0, unknown=1")
    items = data["items"]
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{path}: item ids must be non-empty strings")
    return list(items)


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready inputs, int64 [B, W] each."""

    items: np.ndarray
    actions: np.ndarray
    gap_buckets: np.ndarray

    @staticmethod
    def concatenate(batches: list[EncodedBatch]) -> EncodedBatch:
        return EncodedBatch(
            np.concatenate([b.items for b in batches]),
            np.concatenate([b.actions for b in batches]),
            np.concatenate([b.gap_buckets for b in batches]),
        )


class NextActionPredictor:
    """Runs one exported version directory (model.onnx, vocab.json, manifest.json)."""

    def __init__(
        self,
        version_dir: str | os.PathLike[str],
        threads: int = 1,
        providers: list[Any] | None = None,
    ) -> None:
        version_dir = Path(version_dir)
        self.manifest: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
        self.window: int = int(self.manifest["window"])
        self.top_k: int = int(self.manifest["top_k"])
        self.explain_positions: int = int(self.manifest["explain_positions"])
        self._n_action_codes = len(self.manifest["actions"]) + 1
        items = load_vocab_items(version_dir / "vocab.json")
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
            providers=providers or ["CPUExecutionProvider"],
        )

    def encode(self, item_ids: np.ndarray, actions: np.ndarray, timestamps_ms: np.ndarray) -> EncodedBatch:
        """Validate one request's [B, W] tensors and map them to model inputs."""
        item_ids = np.asarray(item_ids, dtype=object)
        actions = np.asarray(actions)
        timestamps_ms = np.asarray(timestamps_ms)
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
        return EncodedBatch(items, actions.astype(np.int64), gap_buckets(timestamps_ms, valid))

    def run(self, batch: EncodedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model outputs: indices int64 [B, K], probabilities float32 [B, K], weights [B, K, W]."""
        # Leading columns that are padding in every row cost compute and change no output
        # (positions count back from the newest event): cut them, keeping the explained ones.
        occupied = np.flatnonzero((batch.items != PAD_INDEX).any(axis=0))
        start = min(int(occupied[0]) if occupied.size else self.window, self.window - self.explain_positions)
        inputs = (batch.items, batch.actions, batch.gap_buckets)
        feeds = {name: array[:, start:] for name, array in zip(ONNX_INPUTS, inputs, strict=True)}
        indices, scores, attributions = self._session.run(None, feeds)
        return indices, scores, np.pad(attributions, ((0, 0), (0, 0), (start, 0)))

    def item_ids(self, indices: np.ndarray, as_bytes: bool = False) -> np.ndarray:
        """Object array of item ids (str, or bytes for Triton BYTES outputs) of model indices."""
        return (self._item_bytes if as_bytes else self._item_str)[indices]

    def predict(
        self, item_ids: np.ndarray, actions: np.ndarray, timestamps_ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top items (object array of str [B, K]), probabilities [B, K], attributions [B, K, W]."""
        indices, scores, attributions = self.run(self.encode(item_ids, actions, timestamps_ms))
        return self.item_ids(indices), scores, attributions


def _check_config_tensors(model_config: dict[str, Any], window: int, top_k: int) -> None:
    """Fail at load time when config.pbtxt disagrees with the exported model."""
    expected_dims = tensor_dims(window, top_k)
    for section, specs in (("input", INPUT_SPECS), ("output", OUTPUT_SPECS)):
        found = {t["name"]: t for t in model_config.get(section, [])}
        if set(found) != set(specs):
            raise ValueError(f"config {section}s must be {sorted(specs)}, got {sorted(found)}")
        for name, data_type in specs.items():
            dims = [int(d) for d in found[name]["dims"]]
            if found[name]["data_type"] != data_type or dims != expected_dims[name]:
                raise ValueError(
                    f"config {section} {name}: expected {data_type} {expected_dims[name]}, "
                    f"got {found[name]['data_type']} {dims}"
                )


def _providers(
    parameters: dict[str, Any], device_id: int, batch_max: int, window: int, min_window: int
) -> list[Any]:
    """onnxruntime execution providers named by the config's EXECUTION_PROVIDER parameter."""
    provider = parameters.get("EXECUTION_PROVIDER", {}).get("string_value", "cpu")
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider != "tensorrt":
        raise ValueError(f"EXECUTION_PROVIDER must be cpu or tensorrt, got {provider!r}")
    missing = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} - set(ort.get_available_providers())
    if missing:
        raise RuntimeError(f"onnxruntime lacks {sorted(missing)}: install onnxruntime-gpu")

    profile = trt_profile_shapes(batch_max, window, min_window)
    # Engines are built per GPU and TensorRT version; the cache makes restarts fast.
    trt_options = {
        "device_id": device_id,
        "trt_fp16_enable": parameters.get("TRT_FP16", {}).get("string_value", "1") == "1",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": parameters["TRT_ENGINE_CACHE_DIR"]["string_value"],
        "trt_profile_min_shapes": profile["min"],
        "trt_profile_opt_shapes": profile["opt"],
        "trt_profile_max_shapes": profile["max"],
    }
    return [
        ("TensorrtExecutionProvider", trt_options),
        ("CUDAExecutionProvider", {"device_id": device_id}),
        "CPUExecutionProvider",
    ]


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
        if "TRT_ENGINE_CACHE_DIR" in parameters:
            # A relative cache dir lives inside the model directory, next to the versions.
            cache = Path(args["model_repository"]) / parameters["TRT_ENGINE_CACHE_DIR"]["string_value"]
            cache.mkdir(parents=True, exist_ok=True)
            parameters["TRT_ENGINE_CACHE_DIR"] = {"string_value": str(cache)}
        providers = _providers(
            parameters,
            int(args.get("model_instance_device_id", "0")),
            int(model_config.get("max_batch_size", 1)),
            window,
            int(manifest["explain_positions"]),
        )
        self._predictor = NextActionPredictor(version_dir, threads=threads, providers=providers)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses: list[Any] = [None] * len(requests)
        encoded: list[EncodedBatch] = []
        owners: list[int] = []
        for position, request in enumerate(requests):
            try:
                encoded.append(
                    self._predictor.encode(
                        pb_utils.get_input_tensor_by_name(request, "ITEM_IDS").as_numpy(),
                        pb_utils.get_input_tensor_by_name(request, "ACTIONS").as_numpy(),
                        pb_utils.get_input_tensor_by_name(request, "TIMESTAMPS").as_numpy(),
                    )
                )
                owners.append(position)
            except ValueError as exc:
                # INVALID_ARG, not INTERNAL: the client must not retry a malformed window.
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[position] = pb_utils.InferenceResponse(output_tensors=[], error=error)
        if encoded:
            indices, scores, attributions = self._predictor.run(EncodedBatch.concatenate(encoded))
            top_items = self._predictor.item_ids(indices, as_bytes=True)
            start = 0
            for position, batch in zip(owners, encoded, strict=True):
                rows = slice(start, start + batch.items.shape[0])
                start = rows.stop
                responses[position] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("TOP_ITEMS", top_items[rows]),
                        pb_utils.Tensor("TOP_SCORES", scores[rows]),
                        pb_utils.Tensor("ATTRIBUTIONS", attributions[rows]),
                    ]
                )
        return responses
