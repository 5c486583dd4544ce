"""The only way the stream reaches Triton: batched, async gRPC scoring of user windows.

The model contract (tensor names, dtypes, padding) is documented in the README. The window
length and the number of returned items are read from the served model's metadata, so a new
model version with another shape needs no stream change.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from stream.records import ACTION_CODES
from stream.window import Window

__all__ = [
    "ModelShape",
    "ScoredBatch",
    "TritonScorer",
    "TritonUnavailable",
    "check_model_ready",
    "decode_strings",
    "encode_windows",
    "split_requests",
]

_OUTPUTS: Final = ("TOP_ITEMS", "TOP_SCORES", "ATTRIBUTIONS")


class TritonUnavailable(RuntimeError):
    """Triton could not be reached or the model is not served; the message says what to check."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    window: int
    top_k: int
    max_batch_size: int
    instances: int = 1  # model instances Triton runs at once


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Model output for a batch of windows, row b for window b.

    ``attributions[b, k, j]`` weighs, for item k, event ``window[len(window) - L + j]`` of
    window b, where L is the model's window length (columns left of a shorter window are
    padding and weigh 0).
    """

    model_version: str
    items: list[list[str]]  # [B][K] item ids, best first
    scores: np.ndarray  # float32 [B, K]
    attributions: np.ndarray  # float32 [B, K, L]

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def concatenate(parts: Sequence[ScoredBatch]) -> ScoredBatch:
        return ScoredBatch(
            model_version=parts[0].model_version,
            items=[row for part in parts for row in part.items],
            scores=np.concatenate([part.scores for part in parts]),
            attributions=np.concatenate([part.attributions for part in parts]),
        )


# Triton BYTES tensors are sent as a 4-byte little-endian length before each element.
_LENGTH: Final = struct.Struct("<I")
_EMPTY_ELEMENT: Final = _LENGTH.pack(0)


class _ItemBytes(dict[str, bytes]):
    """Item id -> its serialized BYTES element. Popular items repeat in almost every window;
    the cache is emptied when it grows past ``limit`` ids, so memory stays bounded."""

    def __init__(self, limit: int = 1_000_000) -> None:
        super().__init__()
        self._limit = limit

    def __missing__(self, item_id: str) -> bytes:
        if len(self) >= self._limit:
            self.clear()
        encoded = item_id.encode()
        element = self[item_id] = _LENGTH.pack(len(encoded)) + encoded
        return element


_ITEM_BYTES: Final = _ItemBytes()


def encode_windows(windows: Sequence[Window], length: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The newest ``length`` events of each window, left-padded, as the three input tensors:
    ITEM_IDS already serialized as a Triton BYTES tensor [B, length], then ACTIONS int32 and
    TIMESTAMPS int64 arrays [B, length]."""
    items: list[bytes] = []
    actions = np.zeros((len(windows), length), dtype=np.int32)
    stamps = np.zeros((len(windows), length), dtype=np.int64)
    for row, window in enumerate(windows):
        tail = window[-length:]
        start = length - len(tail)
        items.append(_EMPTY_ELEMENT * start)
        items.extend([_ITEM_BYTES[event.item_id] for event in tail])
        actions[row, start:] = [ACTION_CODES[event.action] for event in tail]
        stamps[row, start:] = [event.ts_ms for event in tail]
    return b"".join(items), actions, stamps


def decode_strings(raw: bytes) -> list[str]:
    """The elements of a serialized Triton BYTES tensor, in row-major order, as text."""
    strings = []
    offset, end = 0, len(raw)
    unpack = _LENGTH.unpack_from
    while offset < end:
        (size,) = unpack(raw, offset)
        offset += 4
        strings.append(raw[offset : offset + size].decode())
        offset += size
    return strings


class _SerializedInput(grpcclient.InferInput):
    """An input whose BYTES content is serialized by :func:`encode_windows` already.

    tritonclient serializes string tensors element by element in Python, which cost more
    than the rest of the stream per window; its setter has no way to take finished bytes.
    """

    def set_serialized(self, raw: bytes) -> _SerializedInput:
        self._raw_content = raw
        return self


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
            instances=sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def score(self, windows: Sequence[Window]) -> ScoredBatch:
        """Score all windows in concurrent requests of at most the model's batch size, and in
        at least as many requests as the model has instances, so that all of them work."""
        assert self.shape is not None, "call start() first"
        chunks = split_requests(windows, self.shape.max_batch_size, self.shape.instances)
        return ScoredBatch.concatenate(await asyncio.gather(*(self._score_chunk(chunk) for chunk in chunks)))

    async def _score_chunk(self, windows: Sequence[Window]) -> ScoredBatch:
        assert self._client is not None and self.shape is not None
        length = self.shape.window
        items, actions, stamps = encode_windows(windows, length)
        shape = [len(windows), length]
        inputs = [
            _SerializedInput("ITEM_IDS", shape, "BYTES").set_serialized(items),
            grpcclient.InferInput("ACTIONS", shape, "INT32").set_data_from_numpy(actions),
            grpcclient.InferInput("TIMESTAMPS", shape, "INT64").set_data_from_numpy(stamps),
        ]
        outputs = [grpcclient.InferRequestedOutput(name) for name in _OUTPUTS]
        async with self._slots:
            result = await self._client.infer(
                self._model_name, inputs, outputs=outputs, client_timeout=self._timeout_s
            )
        response = result.get_response()
        top_k = self.shape.top_k
        top_items = decode_strings(_raw_output(response, "TOP_ITEMS"))
        scores = result.as_numpy("TOP_SCORES")
        attributions = result.as_numpy("ATTRIBUTIONS")
        assert scores is not None and attributions is not None
        return ScoredBatch(
            model_version=response.model_version,
            items=[top_items[row * top_k : (row + 1) * top_k] for row in range(len(windows))],
            scores=scores,
            attributions=attributions,
        )


def split_requests(windows: Sequence[Window], max_batch_size: int, instances: int) -> list[Sequence[Window]]:
    """Consecutive, evenly sized requests: none above ``max_batch_size``, and at least one per
    model instance (while windows last), so every instance gets work."""
    if not windows:
        return []
    requests = max(-(-len(windows) // max_batch_size), min(len(windows), instances))
    bounds = [round(i * len(windows) / requests) for i in range(requests + 1)]
    return [windows[start:end] for start, end in itertools.pairwise(bounds)]


def _raw_output(response: Any, name: str) -> bytes:
    """The raw content of one output of a ModelInferResponse (outputs and contents align)."""
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if output.name == name:
            return bytes(raw)
    raise TritonUnavailable(f"the model's response has no output {name!r}")


def check_model_ready(url: str, model_name: str, timeout_s: float) -> ModelShape:
    """Fail fast, before the worker joins its group, if the model is not served."""

    async def probe() -> ModelShape:
        scorer = TritonScorer(url, model_name, timeout_s=timeout_s, max_in_flight=1)
        try:
            return await scorer.start(ready_timeout_s=timeout_s)
        finally:
            await scorer.close()

    return asyncio.run(probe())
