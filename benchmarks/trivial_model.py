"""A trivial Triton model with the real model's tensor contract, to measure the stream alone.

Copied into a version directory as ``model.py``, beside a copy of ``contract.py``: numpy, the
standard library and the contract only. It answers every window with the same top-k items,
decreasing scores and all attribution on the newest event, so outputs have the real shapes
and sizes while inference costs next to nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

# As in serving/triton_backend.py: the contract copied beside this file wins in Triton.
if Path(__file__).with_name("contract.py").is_file():
    sys.path.insert(0, str(Path(__file__).parent))

import contract
from contract import ATTRIBUTIONS, OUTPUTS, WINDOW_ACTIONS

__all__ = ["TritonPythonModel", "write_trivial_model"]


def write_trivial_model(real_config: Path, model_dir: Path) -> None:
    """A model directory serving this file with the real model's config (tensors, batching,
    instances); the model takes the directory's name."""
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = re.sub(r'^name: ".*"$', f'name: "{model_dir.name}"', real_config.read_text(), flags=re.MULTILINE)
    (model_dir / "config.pbtxt").write_text(config)
    shutil.copyfile(__file__, model_dir / "1" / "model.py")
    shutil.copyfile(contract.__file__, model_dir / "1" / "contract.py")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        dims = {tensor["name"]: [int(d) for d in tensor["dims"]] for tensor in config["output"]}
        top_k, window = dims[ATTRIBUTIONS.name]
        self._items = np.array([f"i{n:04d}".encode() for n in range(top_k)], dtype=object)
        self._scores = np.linspace(0.5, 0.01, top_k, dtype=np.float32)
        self._attributions = np.zeros((top_k, window), dtype=np.float32)
        self._attributions[:, -1] = 1.0

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, WINDOW_ACTIONS.name).as_numpy().shape[0]
            outputs = (
                np.tile(self._items, (batch, 1)),
                np.tile(self._scores, (batch, 1)),
                np.tile(self._attributions, (batch, 1, 1)),
            )
            tensors = [
                pb_utils.Tensor(spec.name, output) for spec, output in zip(OUTPUTS, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
