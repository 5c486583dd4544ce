"""The self-contained ONNX graph of a version (``native.onnx``), served by Triton's onnxruntime backend.

``model.onnx`` takes vocabulary indices and gap buckets, which the Python backend (``model.py``)
computes with onnxruntime; the stock Triton container's Python backend has no onnxruntime
(server issue #6302), so the GPU deployment serves one graph from the contract's Triton inputs
to its outputs instead: item ids to indices and back with ``ai.onnx.ml`` LabelEncoders, gap
bucketing in integer ops, and ``model.onnx``'s graph in between, its tensor names unchanged.

The graph cannot reject a request, so it makes malformed windows harmless where the Python
backend raises: an empty item id marks padding whatever its action, an action code outside the
contract counts as no action (the embedding of code 0 is zero), and a non-finite popularity
adjustment only spoils its own row. Triton itself rejects wrong shapes and types. The worker
validates events before they enter a window, so none of this happens in the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract import (
    ACTIONS,
    FIRST_ITEM_INDEX,
    INPUTS,
    N_GAP_BUCKETS,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    OUTPUTS,
    PAD_INDEX,
    UNKNOWN_INDEX,
    TensorSpec,
    read_vocab_items,
)
from serving.triton_config import NATIVE_ONNX

__all__ = ["BATCH_DIM", "native_graph", "write_native_graph"]

BATCH_DIM: Final = "batch"

# The earliest ai.onnx.ml opset with LabelEncoder between strings and int64, so that older
# onnxruntime builds in older Triton containers load the graph too.
_ML_DOMAIN: Final = "ai.onnx.ml"
_ML_OPSET: Final = 2
_PREFIX: Final = "native/"  # names of the tensors added around model.onnx's graph
# Indices the model never returns (it masks them) still get names, as the Python backend's.
_RESERVED_NAMES: Final = ("<pad>", "<unknown>")
_FIRST_TIMED_GAP: Final = 2
_ELEMENT_TYPES: Final = {
    np.object_: TensorProto.STRING,
    np.int32: TensorProto.INT32,
    np.int64: TensorProto.INT64,
    np.float32: TensorProto.FLOAT,
    np.int8: TensorProto.INT8,
}


def _value_info(spec: TensorSpec, window: int, top_k: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        spec.name, _ELEMENT_TYPES[spec.dtype], [BATCH_DIM, *spec.shape(window, top_k)]
    )


def _gap_thresholds_ms() -> np.ndarray:
    """Gap in ms from which floor(log2(1 + gap seconds)) reaches k, for k = 1 up to the cap.

    Counting the thresholds a gap reaches is contract.gap_buckets' floor-of-log in integers:
    exact, and TensorRT needs no float log of int64 milliseconds.
    """
    top = N_GAP_BUCKETS - 1 - _FIRST_TIMED_GAP
    return np.array([(2**k - 1) * 1000 for k in range(1, top + 1)], dtype=np.int64)


def _input_nodes(items: Sequence[str]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes from the Triton inputs to model.onnx's inputs, and the constants they use."""
    p = _PREFIX
    constants = {
        "zero": np.array(0, dtype=np.int64),
        "one": np.array(1, dtype=np.int64),
        "first_timed": np.array(_FIRST_TIMED_GAP, dtype=np.int64),
        "n_actions": np.array(len(ACTIONS) + 1, dtype=np.int64),
        "thresholds": _gap_thresholds_ms(),
        "last_axis": np.array([-1], dtype=np.int64),
        # Slice all but the newest column, then pad one column on the left: the previous event.
        "slice_start": np.array([0], dtype=np.int64),
        "slice_end": np.array([-1], dtype=np.int64),
        "slice_axes": np.array([1], dtype=np.int64),
        "shift_pads": np.array([0, 1, 0, 0], dtype=np.int64),
    }
    initializers = [numpy_helper.from_array(value, p + name) for name, value in constants.items()]
    item_ids, actions, timestamps, adjustment = (spec.name for spec in INPUTS)
    items_out, actions_out, gaps_out, adjustment_out = ONNX_INPUTS

    def shifted(source: str, name: str) -> list[onnx.NodeProto]:
        return [
            helper.make_node(
                "Slice", [source, p + "slice_start", p + "slice_end", p + "slice_axes"], [p + name + "_head"]
            ),
            helper.make_node("Pad", [p + name + "_head", p + "shift_pads"], [p + name]),
        ]

    nodes = [
        # "" is padding; an id outside the vocabulary is the unknown item.
        helper.make_node(
            "LabelEncoder",
            [item_ids],
            [items_out],
            domain=_ML_DOMAIN,
            keys_strings=["", *items],
            values_int64s=[PAD_INDEX, *range(FIRST_ITEM_INDEX, FIRST_ITEM_INDEX + len(items))],
            default_int64=UNKNOWN_INDEX,
        ),
        helper.make_node("Equal", [items_out, p + "zero"], [p + "is_pad"]),
        helper.make_node("Not", [p + "is_pad"], [p + "valid"]),
        # Actions: only contract codes on real events, anything else counts as no action.
        helper.make_node("Cast", [actions], [p + "actions64"], to=TensorProto.INT64),
        helper.make_node("GreaterOrEqual", [p + "actions64", p + "zero"], [p + "action_from"]),
        helper.make_node("Less", [p + "actions64", p + "n_actions"], [p + "action_below"]),
        helper.make_node("And", [p + "action_from", p + "action_below"], [p + "action_known"]),
        helper.make_node("And", [p + "action_known", p + "valid"], [p + "action_kept"]),
        helper.make_node("Where", [p + "action_kept", p + "actions64", p + "zero"], [actions_out]),
        # Gap buckets, as contract.gap_buckets: a negative gap reaches no threshold (bucket 2).
        *shifted(timestamps, "previous_ts"),
        helper.make_node("Sub", [timestamps, p + "previous_ts"], [p + "gap_ms"]),
        helper.make_node("Unsqueeze", [p + "gap_ms", p + "last_axis"], [p + "gap_column"]),
        helper.make_node("GreaterOrEqual", [p + "gap_column", p + "thresholds"], [p + "reached"]),
        helper.make_node("Cast", [p + "reached"], [p + "reached64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", [p + "reached64", p + "last_axis"], [p + "log_gap"], keepdims=0),
        helper.make_node("Add", [p + "log_gap", p + "first_timed"], [p + "timed"]),
        helper.make_node("Cast", [p + "valid"], [p + "valid64"], to=TensorProto.INT64),
        *shifted(p + "valid64", "previous_valid64"),
        helper.make_node("Cast", [p + "previous_valid64"], [p + "previous_valid"], to=TensorProto.BOOL),
        helper.make_node("Where", [p + "previous_valid", p + "timed", p + "one"], [p + "event_gap"]),
        helper.make_node("Where", [p + "valid", p + "event_gap", p + "zero"], [gaps_out]),
        helper.make_node("Identity", [adjustment], [adjustment_out]),
    ]
    return nodes, initializers


def _output_nodes(items: Sequence[str]) -> list[onnx.NodeProto]:
    """Nodes from model.onnx's outputs to the Triton outputs."""
    top_indices, *numeric = ONNX_OUTPUTS
    top_items, *renamed = (spec.name for spec in OUTPUTS)
    names = [*_RESERVED_NAMES, *items]
    return [
        helper.make_node(
            "LabelEncoder",
            [top_indices],
            [top_items],
            domain=_ML_DOMAIN,
            keys_int64s=list(range(len(names))),
            values_strings=names,
            default_string=_RESERVED_NAMES[1],
        ),
        *(
            helper.make_node("Identity", [source], [target])
            for source, target in zip(numeric, renamed, strict=True)
        ),
    ]


def native_graph(model: onnx.ModelProto, items: Sequence[str], window: int, top_k: int) -> onnx.ModelProto:
    """model.onnx's graph wrapped to take and return the contract's Triton tensors.

    ``items``: the vocabulary (vocab.json), item ``i`` at index ``i + FIRST_ITEM_INDEX``. The
    windows are always ``window`` wide: the graph has no column trimming, which changes no output.
    """
    inner = model.graph
    if [t.name for t in inner.input] != list(ONNX_INPUTS) or [t.name for t in inner.output] != list(
        ONNX_OUTPUTS
    ):
        raise ValueError("model.onnx's inputs and outputs differ from contract.ONNX_INPUTS/ONNX_OUTPUTS")
    named = [*(name for node in inner.node for name in node.output), *(t.name for t in inner.initializer)]
    if any(name.startswith(_PREFIX) for name in named):
        raise ValueError(f"model.onnx already names tensors {_PREFIX}*")
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    before, initializers = _input_nodes(items)
    nodes = [*before, *inner.node, *_output_nodes(items)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(_value_info(spec, window, top_k) for spec in INPUTS)
    del graph.output[:]
    graph.output.extend(_value_info(spec, window, top_k) for spec in OUTPUTS)
    # The inner inputs' shapes were recorded with a dynamic width; let inference redo them.
    del graph.value_info[:]
    if not any(opset.domain == _ML_DOMAIN for opset in wrapped.opset_import):
        wrapped.opset_import.append(helper.make_opsetid(_ML_DOMAIN, _ML_OPSET))
    onnx.checker.check_model(wrapped)
    return wrapped


def write_native_graph(version_dir: Path, window: int, top_k: int) -> Path:
    """Write ``native.onnx`` next to a version's model.onnx and vocab.json; returns its path."""
    items = read_vocab_items(version_dir / "vocab.json")
    model = onnx.load(str(version_dir / "model.onnx"))
    path = version_dir / NATIVE_ONNX
    onnx.save(native_graph(model, items, window, top_k), str(path))
    return path
