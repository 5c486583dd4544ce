"""TritonPythonModel: load-time config checks, one pass per batch, one response per request.

``triton_python_backend_utils`` exists only inside Triton; a minimal stand-in with the same
calls is installed here. The real server is exercised by the integration tests.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from contract import INPUTS, OUTPUTS, TensorSpec
from serving.triton_backend import NextActionPredictor, TritonPythonModel
from serving.triton_config import SERVED_TOP_K

pytestmark = pytest.mark.model

WINDOW, TOP_K = 50, SERVED_TOP_K


@dataclass
class FakeTensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeRequest:
    inputs: dict[str, np.ndarray]


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: Any = None
    outputs: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = {t.name: t.array for t in self.output_tensors}


@dataclass
class FakeTritonError:
    message: str
    code: int = 0
    INVALID_ARG = 3


class FakeMetric:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels, self.value = labels, 0.0

    def increment(self, value: float) -> None:
        self.value += value


class FakeMetricFamily:
    COUNTER = "counter"
    created: ClassVar[list[FakeMetricFamily]] = []  # those made in this test (the fixture resets it)

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.kind, self.metrics = name, kind, list[FakeMetric]()
        FakeMetricFamily.created.append(self)

    def Metric(self, labels: dict[str, str]) -> FakeMetric:
        self.metrics.append(FakeMetric(labels))
        return self.metrics[-1]


@pytest.fixture
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    monkeypatch.setattr(FakeMetricFamily, "created", [])
    module.MetricFamily = FakeMetricFamily  # type: ignore[attr-defined]
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.TritonError = FakeTritonError  # type: ignore[attr-defined]
    # Triton hands an optional input the request left out as None.
    module.get_input_tensor_by_name = (  # type: ignore[attr-defined]
        lambda r, n: FakeTensor(n, r.inputs[n]) if n in r.inputs else None
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def model_config(dims: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """The JSON Triton passes to initialize (dims as strings, as protobuf JSON writes int64)."""
    shapes = {spec.name: spec.shape(WINDOW, TOP_K) for spec in INPUTS + OUTPUTS} | (dims or {})

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "data_type": s.config_type,
                "dims": [str(d) for d in shapes[s.name]],
            }
            for s in specs
        ]

    return {
        "max_batch_size": 64,
        "input": tensors(INPUTS),
        "output": tensors(OUTPUTS),
        "parameters": {"INTRA_OP_THREAD_COUNT": {"string_value": "1"}},
    }


def load(version_dir: Path, config: dict[str, Any]) -> TritonPythonModel:
    model = TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(version_dir.parent),
            "model_name": version_dir.parent.name,
            "model_version": version_dir.name,
        }
    )
    return model


def request(
    predictor: NextActionPredictor, rows: int, action: int = 1, adjustment: float | None = None
) -> FakeRequest:
    items = predictor.item_ids(np.arange(2, 2 + WINDOW * rows) % 40 + 2, as_bytes=True).reshape(rows, WINDOW)
    optional = (
        {} if adjustment is None else {"POPULARITY_ADJUSTMENT": np.full((rows, 1), adjustment, np.float32)}
    )
    return FakeRequest(
        optional
        | {
            "ITEM_IDS": items,
            "ACTIONS": np.full((rows, WINDOW), action, dtype=np.int32),
            "TIMESTAMPS": np.arange(rows * WINDOW, dtype=np.int64).reshape(rows, WINDOW) * 60_000,
        }
    )


def test_batch_of_requests_gets_one_response_each(version_dir: Path, pb_utils: types.ModuleType) -> None:
    model = load(version_dir, model_config())
    predictor = NextActionPredictor(version_dir)
    requests = [
        request(predictor, 1),
        request(predictor, 3, adjustment=1.0),
        request(predictor, 2, action=7),
    ]
    responses = model.execute(requests)
    assert len(responses) == 3
    for response, req in zip(responses[:2], requests[:2], strict=True):
        assert response.error is None
        assert set(response.outputs) == {spec.name for spec in OUTPUTS}
        items, served = predictor.predict(*(req.inputs.get(spec.name) for spec in INPUTS))
        np.testing.assert_array_equal(response.outputs["TOP_ITEMS"], [[i.encode() for i in r] for r in items])
        assert isinstance(response.outputs["TOP_ITEMS"][0, 0], bytes)
        np.testing.assert_allclose(response.outputs["TOP_SCORES"], served.scores, atol=1e-6)
        assert (
            response.outputs["ATTRIBUTIONS"].shape == served.attributions.shape == (len(items), TOP_K, WINDOW)
        )
        assert response.outputs["SIGNALS"].dtype == np.int8
    # The correction pushes popular items down: the list with it is less popular.
    _, uncorrected = predictor.predict(*(requests[1].inputs.get(spec.name) for spec in INPUTS[:3]))
    assert responses[1].outputs["POPULARITY"].mean() > uncorrected.popularity.mean()
    assert responses[2].error == FakeTritonError(
        "actions: codes must lie in 0..4", FakeTritonError.INVALID_ARG
    )
    assert responses[2].output_tensors == []
    # The scored window items, all known to the vocabulary, on Triton's metrics (the refused
    # request is not scored).
    (family,) = FakeMetricFamily.created
    counts = {metric.labels["vocabulary"]: metric.value for metric in family.metrics}
    assert counts == {"known": 4 * WINDOW, "unknown": 0}
    assert {metric.labels["version"] for metric in family.metrics} == {version_dir.name}


@pytest.mark.parametrize(
    "config",
    [
        model_config({"ATTRIBUTIONS": [TOP_K, WINDOW + 1]}),
        model_config() | {"output": model_config()["output"][:2]},
        model_config() | {"input": [{**t, "data_type": "TYPE_INT64"} for t in model_config()["input"]]},
    ],
)
def test_a_config_that_disagrees_with_the_model_fails_at_load(
    version_dir: Path, config: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="config"):
        load(version_dir, config)
