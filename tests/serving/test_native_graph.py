"""native.onnx, the GPU deployment's graph, run on onnxruntime's CPU provider: the same answers as
the Python backend, its gap buckets those of the contract, and a GPU config that fits it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import contract
from serving.native_graph import BATCH_DIM
from serving.triton_backend import NextActionPredictor
from serving.triton_config import NATIVE_ONNX, TRT_ENGINE_CACHE, model_config_text

pytestmark = pytest.mark.model

_CONFIG_TYPES = {
    onnx.TensorProto.STRING: "TYPE_STRING",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.INT8: "TYPE_INT8",
}


@pytest.fixture(scope="module")
def native(version_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(version_dir / NATIVE_ONNX), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def manifest(version_dir: Path) -> dict[str, int]:
    return json.loads((version_dir / "manifest.json").read_text())  # type: ignore[no-any-return]


def _windows(items: list[str], window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded windows: full, short, with unknown items, out of order, gaps on the bucket
    thresholds and one step either side, a single event, an empty window; varied corrections."""
    rng = np.random.default_rng(17)
    base = 1_800_000_000_000
    thresholds = [(2**k - 1) * 1000 for k in range(1, 22)]
    on_edges = np.cumsum([0, *(t + d for t in thresholds[:16] for d in (-1, 0, 1))])[-window:]
    rows = [
        (list(rng.choice(items, window)), base + np.cumsum(rng.integers(0, 10**7, window))),
        ([*rng.choice(items, 3), "no-such-item", items[0]], base + np.array([0, 5, 4_000, 3_999, 10**9])),
        (list(rng.choice(items, 12)), base - np.sort(rng.integers(0, 10**8, 12))),  # newest first
        (list(rng.choice(items, len(on_edges))), base + on_edges),
        (["also-unknown"], np.array([base])),
        ([], np.array([], dtype=np.int64)),
        ([*rng.choice(items, 20), "x", "y"], base + rng.integers(-(10**6), 10**6, 22)),
    ]
    item_ids = contract.left_pad([r[0] for r in rows], window, "", object)
    actions = contract.left_pad(
        [rng.integers(1, len(contract.ACTIONS) + 1, len(r[0])) for r in rows], window, 0, np.int32
    )
    stamps = contract.left_pad([r[1] for r in rows], window, 0, np.int64)
    adjustment = np.array([[0.0], [0.5], [0.0], [1.0], [0.25], [0.0], [0.75]], dtype=np.float32)
    return item_ids, actions, stamps, adjustment


def test_native_graph_answers_as_the_python_backend(
    version_dir: Path, native: ort.InferenceSession, manifest: dict[str, int]
) -> None:
    items = contract.read_vocab_items(version_dir / "vocab.json")
    item_ids, actions, stamps, adjustment = _windows(items, manifest["window"])
    predictor = NextActionPredictor(version_dir)
    for rows in (slice(None), slice(1, 2)):  # the whole batch, and one window alone
        feeds = (item_ids[rows], actions[rows], stamps[rows], adjustment[rows])
        top_items, expected = predictor.predict(*feeds)
        got = native.run(None, {spec.name: value for spec, value in zip(contract.INPUTS, feeds, strict=True)})
        assert [o.name for o in native.get_outputs()] == [spec.name for spec in contract.OUTPUTS]
        assert got[0].tolist() == top_items.tolist()
        for spec, value, reference in zip(contract.OUTPUTS[1:], got[1:], expected[1:], strict=True):
            assert value.dtype == spec.dtype and value.shape == reference.shape, spec.name
            if spec.dtype == np.int8:
                np.testing.assert_array_equal(value, reference, err_msg=spec.name)
            else:
                # atol 1e-5: attributions divide small differences of log-probabilities, whose
                # float32 rounding differs between runtimes by a few 1e-6.
                np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5, err_msg=spec.name)
        # Triton's warmup sends empty windows: they must come out finite.
        assert all(np.isfinite(value).all() for value in got[1:] if value.dtype == np.float32)


def test_gap_buckets_in_the_graph_are_the_contracts(version_dir: Path, manifest: dict[str, int]) -> None:
    model = onnx.load(str(version_dir / NATIVE_ONNX))
    # Expose the graph's inputs to model.onnx as outputs, to compare them with the Python backend's.
    model.graph.output.extend(
        onnx.helper.make_empty_tensor_value_info(name) for name in contract.ONNX_INPUTS[:3]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    window = manifest["window"]
    rng = np.random.default_rng(5)
    batch = 64
    thresholds = np.array([(2**k - 1) * 1000 for k in range(1, 24)])
    edges = (thresholds[:, None] + np.array([-1, 0, 1])).ravel()
    # Gaps: log-uniform up to years, exact thresholds and their neighbours, negative, zero.
    gaps = np.where(
        rng.random((batch, window)) < 0.5,
        rng.choice(edges, (batch, window)),
        (10 ** rng.uniform(0, 11, (batch, window))).astype(np.int64)
        * rng.choice([-1, 1, 1, 1], (batch, window)),
    )
    gaps[:, ::7] = 0
    stamps = 1_700_000_000_000 + np.cumsum(gaps, axis=1)
    lengths = rng.integers(0, window + 1, batch)
    valid = np.arange(window)[None, :] >= (window - lengths)[:, None]
    valid[:, window // 2] = rng.random(batch) < 0.5  # holes too: the graph follows the item ids
    item_ids = np.where(valid, "some-item", "").astype(object)
    actions = np.where(valid, 1, 0).astype(np.int32)
    actions[0, -3:] = [0, 7, -2]  # outside the contract: counted as no action
    feeds = {
        contract.ITEM_IDS.name: item_ids,
        contract.WINDOW_ACTIONS.name: actions,
        contract.TIMESTAMPS.name: stamps.astype(np.int64),
        contract.POPULARITY_ADJUSTMENT.name: np.zeros((batch, 1), np.float32),
    }
    encoded_items, encoded_actions, buckets = session.run(list(contract.ONNX_INPUTS[:3]), feeds)
    np.testing.assert_array_equal(buckets, contract.gap_buckets(stamps, valid))
    assert set(np.unique(buckets)) >= {0, 1, 2, contract.N_GAP_BUCKETS - 1}
    np.testing.assert_array_equal(encoded_items, np.where(valid, contract.UNKNOWN_INDEX, contract.PAD_INDEX))
    expected_actions = np.where(valid, 1, 0)
    expected_actions[0, -3:] = 0
    np.testing.assert_array_equal(encoded_actions, expected_actions)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_gpu_config_parses_and_fits_the_native_graph(version_dir: Path, manifest: dict[str, int]) -> None:
    text = model_config_text("nextaction", manifest["window"], manifest["top_k"], device="gpu")
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert (config.platform, config.default_model_filename) == ("onnxruntime_onnx", NATIVE_ONNX)
    assert (
        config.max_batch_size == 64
        and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    )
    graph = onnx.load(str(version_dir / NATIVE_ONNX), load_external_data=False).graph
    for tensors, values in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in tensors] == [v.name for v in values]
        for tensor, value in zip(tensors, values, strict=True):
            assert (
                model_config_pb2.DataType.Name(tensor.data_type)
                == _CONFIG_TYPES[value.type.tensor_type.elem_type]
            )
            assert [BATCH_DIM, *tensor.dims] == _dims(value), tensor.name
    # The onnxruntime backend refuses optional inputs on a batching model.
    assert not any(tensor.optional for tensor in config.input)
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP32",  # FP16 turns the attention mask into -inf (TRT_PRECISION)
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": TRT_ENGINE_CACHE,
    }
    assert [w.batch_size for w in config.model_warmup] == [1, config.max_batch_size]
    for warmup in config.model_warmup:
        assert {name: (i.data_type, list(i.dims), i.zero_data) for name, i in warmup.inputs.items()} == {
            t.name: (t.data_type, list(t.dims), True) for t in config.input
        }
    cpu = text_format.Parse(
        model_config_text("nextaction", manifest["window"], manifest["top_k"]), model_config_pb2.ModelConfig()
    )
    assert cpu.backend == "python" and [t.optional for t in cpu.input] == [False, False, False, True]
    assert [(t.name, t.data_type, list(t.dims)) for t in cpu.output] == [
        (t.name, t.data_type, list(t.dims)) for t in config.output
    ]
