"""The Triton model configurations of an exported model: one for CPU, one for GPU.

Both serve the contract's tensors (:mod:`contract`) from the same version folder. The CPU one
runs ``model.py`` in the Python backend; the GPU one runs ``native.onnx`` in the onnxruntime
backend with TensorRT, since the stock container's Python backend has no onnxruntime.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final, Literal

from contract import INPUTS, OUTPUTS, TensorSpec

__all__ = [
    "CONFIG_FILES",
    "INSTANCES",
    "MAX_BATCH_SIZE",
    "NATIVE_ONNX",
    "OUTPUTS_BEFORE_NEXT_EVENT",
    "SERVED_TOP_K",
    "TRT_ENGINE_CACHE",
    "TRT_PRECISION",
    "TRT_WORKSPACE_BYTES",
    "model_config_text",
]

Device = Literal["cpu", "gpu"]

# Per device, relative to the model directory; tritonserver --model-config-name=gpu reads
# configs/gpu.pbtxt.
CONFIG_FILES: Final[dict[Device, str]] = {"cpu": "config.pbtxt", "gpu": "configs/gpu.pbtxt"}
# Largest dynamic batch per device. On one CPU thread a window costs about the same at any
# batch size, so small batches keep latency down at no throughput cost; GPUs want more.
MAX_BATCH_SIZE: Final[dict[Device, int]] = {"cpu": 16, "gpu": 64}
# Model instances per device. A CPU instance runs one thread (more threads per instance made
# latency under load far worse on few cores), so CPU throughput scales with instances: set
# this to the cores the model may take. A GPU instance is one CUDA stream.
INSTANCES: Final[dict[Device, int]] = {"cpu": 2, "gpu": 1}
# Items a version serves per window unless export is told otherwise: the stream re-ranks them
# for diversity and publishes NEXTACTION_PUBLISHED_TOP_K of them. 20 candidates were too much
# alike for diversity re-ranking to reach past them; 50 cost the stream no measurable
# throughput (docs/2026-11-29-beyond-accuracy.md).
SERVED_TOP_K: Final = 50
# The outputs of a version whose manifest does not list its own (exported before the next
# event's): its config must declare just these, or its model.py refuses to load.
OUTPUTS_BEFORE_NEXT_EVENT: Final = (
    "TOP_ITEMS",
    "TOP_SCORES",
    "ATTRIBUTIONS",
    "SIMILARITIES",
    "SIGNALS",
    "POPULARITY",
    "ITEM_ORIGINS",
)
# The GPU config's model file, beside the Python backend's model.onnx in each version; the
# config names it, so it lives here, where tools that only list or copy versions can read it
# without loading onnx.
NATIVE_ONNX: Final = "native.onnx"
# TensorRT engines, per GPU, TensorRT version and graph. Outside the model repository, whose
# poller would reload the model when an engine is written; onnxruntime creates the folder
# (not its parent: /tmp exists in any container). Mount a volume here to keep engines across
# restarts.
TRT_ENGINE_CACHE: Final = "/tmp/nextaction-trt-engines"
TRT_WORKSPACE_BYTES: Final = 1 << 30
# FP32, not FP16: the attention mask is float32's lowest value, which FP16 cannot hold; as -inf
# it turns a left-padded column's all-masked attention row into NaN, which reaches every later
# column through the padded keys' zero weights (0 * NaN). FP16 waits for a GPU measurement.
TRT_PRECISION: Final = "FP32"


def _tensors(specs: Sequence[TensorSpec], window: int, top_k: int, optional_allowed: bool) -> str:
    return ",\n".join(
        f'  {{ name: "{spec.name}" data_type: {spec.config_type} '
        f"dims: [ {', '.join(map(str, spec.shape(window, top_k)))} ]"
        + (" optional: true" if spec.optional and optional_allowed else "")
        + " }"
        for spec in specs
    )


def _warmup(name: str, batch_size: int, window: int, top_k: int) -> str:
    inputs = "".join(
        f'    inputs {{ key: "{spec.name}" value: {{ data_type: {spec.config_type} '
        f"dims: [ {', '.join(map(str, spec.shape(window, top_k)))} ] zero_data: true }} }}\n"
        for spec in INPUTS
    )
    return f'  {{\n    name: "{name}" batch_size: {batch_size}\n{inputs}  }}'


def _gpu_sections(max_batch_size: int, window: int, top_k: int) -> str:
    accelerator = {
        "precision_mode": TRT_PRECISION,
        "max_workspace_size_bytes": str(TRT_WORKSPACE_BYTES),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": TRT_ENGINE_CACHE,
    }
    parameters = "\n".join(f'    parameters {{ key: "{k}" value: "{v}" }}' for k, v in accelerator.items())
    warmups = ",\n".join(
        _warmup(f"batch_{size}", size, window, top_k) for size in sorted({1, max_batch_size})
    )
    return f"""optimization {{ execution_accelerators {{
  gpu_execution_accelerator: [ {{
    name: "tensorrt"
{parameters}
  }} ]
}} }}
model_warmup [
{warmups}
]
"""


_CPU_HEADER: Final = "# CPU deployment: Python backend running onnxruntime on one thread per instance."
_GPU_HEADER: Final = f"""# GPU deployment (tritonserver --model-config-name=gpu, docs/gpu-serving.md): the
# onnxruntime backend runs {NATIVE_ONNX}, the version's whole graph from item ids to item ids;
# onnxruntime's TensorRT execution provider runs the model in fp32, its CPU provider the
# item-id lookups.
# POPULARITY_ADJUSTMENT is required: that backend takes no optional inputs when it batches.
# The warmups (empty windows) build the engines for batches 1 to max_batch_size at load time
# rather than during the first requests."""


def model_config_text(
    model_name: str,
    window: int,
    top_k: int,
    device: Device = "cpu",
    max_batch_size: int | None = None,
    outputs: Collection[str] | None = None,
) -> str:
    """config.pbtxt for the CPU or the GPU deployment of the same tensors; ``outputs``: the
    names of those the version serves (all of the contract's by default)."""
    served = [spec for spec in OUTPUTS if outputs is None or spec.name in outputs]
    max_batch_size = max_batch_size or MAX_BATCH_SIZE[device]
    gpu = device == "gpu"
    preferred = [b for b in (4, 8, 16, 32, 64) if b <= max_batch_size]
    model = (
        f'platform: "onnxruntime_onnx"\ndefault_model_filename: "{NATIVE_ONNX}"'
        if gpu
        else 'backend: "python"'
    )
    device_sections = (
        _gpu_sections(max_batch_size, window, top_k)
        if gpu
        else 'parameters: { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "1" } }\n'
    )
    return f"""{_GPU_HEADER if gpu else _CPU_HEADER}
# Generated by serving/triton_config.py; the tensor contract is contract.py.
name: "{model_name}"
{model}
max_batch_size: {max_batch_size}
version_policy: {{ latest {{ num_versions: 1 }} }}
input [
{_tensors(INPUTS, window, top_k, optional_allowed=not gpu)}
]
output [
{_tensors(served, window, top_k, optional_allowed=not gpu)}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(map(str, preferred))} ]
  max_queue_delay_microseconds: 1000
}}
instance_group [ {{ count: {INSTANCES[device]} kind: {"KIND_GPU" if gpu else "KIND_CPU"} }} ]
{device_sections}"""
