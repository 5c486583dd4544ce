"""The only way the stream reaches Triton: batched, async gRPC scoring of user windows.

The model contract (tensor names, dtypes, padding) is documented in the README. The window
length and the number of returned items are read from the served model's metadata, so a new
model version with another shape needs no stream change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from stream.records import ACTION_CODES
from stream.window import Window

__all__ = [
    "ModelShape",
    "ScoredWindow",
    "TritonScorer",
    "TritonUnavailable",
    "check_model_ready",
    "encode_windows",
]

_OUTPUTS: Final = ("TOP_ITEMS", "TOP_SCORES", "ATTRIBUTIONS")


class TritonUnavailable(RuntimeError):
    """Triton could not be reached or the model is not served; the message says what to check."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    window: int
    top_k: int
    max_batch_size: int


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    """Model output for one window. ``attributions[k][i]`` weighs ``window[i]`` for item k."""

    model_version: str
    items: tuple[str, ...]
    scores: tuple[float, ...]
    attributions: tuple[tuple[float, ...], ...]


def encode_windows(windows: Sequence[Window], length: int) -> tuple[np.ndarray, ...]:
    """Left-pad the newest ``length`` events of each window into the three input tensors."""
    items = np.full((len(windows), length), b"", dtype=object)
    actions = np.zeros((len(windows), length), dtype=np.int32)
    stamps = np.zeros((len(windows), length), dtype=np.int64)
    for row, window in enumerate(windows):
        tail = window[-length:]
        start = length - len(tail)
        items[row, start:] = [event.item_id.encode() for event in tail]
        actions[row, start:] = [ACTION_CODES[event.action] for event in tail]
        stamps[row, start:] = [event.ts_ms for event in tail]
    return items, actions, stamps


class TritonScorer:
    """Scores windows on Triton with a bounded number of requests in flight.

    Failures surface as ``InferenceServerException``; the caller decides how to retry, since
    only it knows that the events are still unacknowledged and nothing is lost by waiting.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        timeout_s: float,
        max_in_flight: int,
    ) -> None:
        self._url = url
        self._model_name = model_name
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._client: grpcclient.InferenceServerClient | None = None
        self.shape: ModelShape | None = None

    async def start(self, ready_timeout_s: float = 60.0) -> ModelShape:
        self._client = grpcclient.InferenceServerClient(self._url)
        deadline = asyncio.get_running_loop().time() + ready_timeout_s
        while True:
            try:
                if await self._client.is_model_ready(self._model_name):
                    break
            except InferenceServerException:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TritonUnavailable(
                    f"model {self._model_name!r} is not ready on Triton at {self._url} after "
                    f"{ready_timeout_s:.0f}s: check NEXTACTION_TRITON_GRPC_URL and that the "
                    "model repository holds an exported version (nextaction train/export)"
                )
            await asyncio.sleep(0.5)
        self.shape = await self._read_shape()
        return self.shape

    async def _read_shape(self) -> ModelShape:
        assert self._client is not None
        config = (await self._client.get_model_config(self._model_name, as_json=True))["config"]
        dims = {tensor["name"]: [int(d) for d in tensor["dims"]] for tensor in config["output"]}
        inputs = {tensor["name"]: [int(d) for d in tensor["dims"]] for tensor in config["input"]}
        return ModelShape(
            window=inputs["ITEM_IDS"][0],
            top_k=dims["TOP_ITEMS"][0],
            max_batch_size=int(config.get("max_batch_size", 0)) or 1,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def score(self, windows: Sequence[Window]) -> list[ScoredWindow]:
        """Score all windows; requests of at most the model's batch size run concurrently."""
        assert self.shape is not None, "call start() first"
        step = self.shape.max_batch_size
        chunks = [windows[i : i + step] for i in range(0, len(windows), step)]
        results = await asyncio.gather(*(self._score_chunk(chunk) for chunk in chunks))
        return [scored for chunk in results for scored in chunk]

    async def _score_chunk(self, windows: Sequence[Window]) -> list[ScoredWindow]:
        assert self._client is not None and self.shape is not None
        tensors = encode_windows(windows, self.shape.window)
        inputs = []
        for name, array, dtype in zip(
            ("ITEM_IDS", "ACTIONS", "TIMESTAMPS"), tensors, ("BYTES", "INT32", "INT64"), strict=True
        ):
            tensor = grpcclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in _OUTPUTS]
        async with self._slots:
            result = await self._client.infer(
                self._model_name, inputs, outputs=outputs, client_timeout=self._timeout_s
            )
        version = result.get_response().model_version
        top_items = result.as_numpy("TOP_ITEMS")
        top_scores = result.as_numpy("TOP_SCORES")
        attributions = result.as_numpy("ATTRIBUTIONS")
        assert top_items is not None and top_scores is not None and attributions is not None
        scored = []
        for row, window in enumerate(windows):
            # Attribution columns cover the padded model window; keep the ones of real events.
            offset = self.shape.window - min(len(window), self.shape.window)
            scored.append(
                ScoredWindow(
                    model_version=version,
                    items=tuple(item.decode() for item in top_items[row]),
                    scores=tuple(float(score) for score in top_scores[row]),
                    attributions=tuple(
                        tuple(float(w) for w in weights[offset:]) for weights in attributions[row]
                    ),
                )
            )
        return scored


def check_model_ready(url: str, model_name: str, timeout_s: float) -> ModelShape:
    """Fail fast, before the worker joins its group, if the model is not served."""

    async def probe() -> ModelShape:
        scorer = TritonScorer(url, model_name, timeout_s=timeout_s, max_in_flight=1)
        try:
            return await scorer.start(ready_timeout_s=timeout_s)
        finally:
            await scorer.close()

    return asyncio.run(probe())
