"""The embedded Triton: lifecycle, serving a Python-backend model, and roll-out by polling."""

from __future__ import annotations

import py_compile
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tools.embedded import EmbeddedServerError, EmbeddedTriton
from tools.embedded.ports import is_free

pytestmark = pytest.mark.integration

_CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""

# OUTPUT = INPUT * FACTOR: version N of a test model uses factor N, so a reply shows its version.
_MODEL = """
import triton_python_backend_utils as pb_utils

FACTOR = {factor}


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT", pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() * FACTOR)]
            )
            for r in requests
        ]
"""


def write_version(repository: Path, name: str, version: int, staging: Path) -> None:
    """Add a model version the way a live repository must get one: complete, in one rename."""
    model_dir = repository / name
    if not model_dir.exists():
        model_dir.mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(_CONFIG)
    staged = staging / f"{name}-{version}"
    staged.mkdir(parents=True)
    (staged / "model.py").write_text(_MODEL.format(factor=float(version)))
    # Ship the bytecode too: otherwise the backend writes it into the version directory at
    # load time and the poller reloads the version once more.
    py_compile.compile(str(staged / "model.py"), doraise=True)
    staged.rename(model_dir / str(version))


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton")
    repository = root / "repository"
    write_version(repository, "identity", 1, root / "staging")
    write_version(repository, "rollout", 1, root / "staging")
    return repository


def infer(server: EmbeddedTriton, model: str, values: np.ndarray) -> tuple[np.ndarray, str]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        request = grpcclient.InferInput("INPUT", list(values.shape), "FP32")
        request.set_data_from_numpy(values)
        result = client.infer(model, [request])
        return result.as_numpy("OUTPUT"), result.get_response().model_version
    finally:
        client.close()


def test_serves_a_python_backend_model(triton_server: EmbeddedTriton) -> None:
    triton_server.wait_for_model("identity")
    values = np.arange(8, dtype=np.float32).reshape(2, 4)
    output, version = infer(triton_server, "identity", values)
    np.testing.assert_array_equal(output, values)
    assert version == "1"


def test_a_new_version_rolls_out_by_polling(
    triton_server: EmbeddedTriton, model_repository: Path, tmp_path: Path
) -> None:
    values = np.ones((1, 4), dtype=np.float32)
    triton_server.wait_for_model("rollout", version=1)
    assert infer(triton_server, "rollout", values)[1] == "1"

    write_version(model_repository, "rollout", 2, tmp_path)
    triton_server.wait_for_model("rollout", version=2, timeout_s=15)

    output, version = infer(triton_server, "rollout", values)
    assert version == "2"
    np.testing.assert_array_equal(output, values * 2)


def test_starts_and_stops_within_seconds(model_repository: Path, embedded_dir: Path) -> None:
    server = EmbeddedTriton(model_repository, embedded_dir)
    started_at = time.monotonic()
    with server:
        assert time.monotonic() - started_at < 30
        assert not is_free(server.grpc_port)
        stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 15
    assert all(is_free(port) for port in (server.http_port, server.grpc_port, server.metrics_port))


def test_a_model_that_fails_to_load_fails_start_with_the_server_log(
    model_repository: Path, embedded_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "repository"
    shutil.copytree(model_repository / "identity", broken / "identity")
    (broken / "identity" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: [oops]\n')

    with pytest.raises(EmbeddedServerError, match="exited with code") as failure:
        EmbeddedTriton(broken, embedded_dir).start()
    assert "Expected integer, got: [" in str(failure.value)  # the parse error, from the log
