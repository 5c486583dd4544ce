"""The only way the stream reaches Triton: batched, async gRPC scoring of user windows.

Tensor names, types and padding come from :mod:`contract`. The window length and the number
of items served are read from the served model's configuration, so a new model version with
another shape needs no stream change.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

from contract import (
    ATTRIBUTIONS,
    ITEM_IDS,
    OUTPUTS,
    POPULARITY_ADJUSTMENT,
    TIMESTAMPS,
    TOP_ITEMS,
    TOP_SCORES,
    WINDOW_ACTIONS,
)
from stream.records import Window
from stream.scored_batch import MALFORMED_RESPONSE, OPTIONAL_OUTPUTS, ScoredBatch, checked_response
from stream.triton_codec import decode_strings, encode_windows
from stream.triton_security import NO_TLS, TritonSecurity

__all__ = [
    "VERSION_CHANGED",
    "ModelShape",
    "TritonScorer",
    "TritonUnavailable",
    "check_model_ready",
    "split_requests",
]

log = logging.getLogger(__name__)

#: Status of the retryable error raised when a roll-out splits one batch between versions.
VERSION_CHANGED: Final = "VERSION_CHANGED"
_CHANNEL_ARGS: Final = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    # gRPC's reconnect back-off grows to two minutes while a server is down, and calls fail
    # at once until the next attempt: a restarted Triton would go unnoticed for that long.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonUnavailable(RuntimeError):
    """Triton could not be reached or the model is not served; the message says what to check."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the served model's configuration says about its tensors and batching."""

    window: int
    served_top_k: int  # items the model returns per window; the worker publishes a prefix
    max_batch_size: int
    instances: int = 1  # model instances Triton runs at once
    # Tensors the configuration declares: versions exported before an optional tensor of the
    # contract existed lack it, and a roll-back to one must keep the stream running.
    outputs: frozenset[str] = frozenset(spec.name for spec in OUTPUTS)
    takes_popularity_adjustment: bool = True


class _SerializedInput(grpcclient.InferInput):
    """An input whose BYTES content is serialized by :func:`stream.triton_codec.encode_windows` already.

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
        popularity_adjustment: float = 0.0,
        security: TritonSecurity = NO_TLS,
    ) -> None:
        self._url = url
        self._security = security
        self._headers = security.request_headers
        self._popularity_adjustment = np.float32(popularity_adjustment)
        self._model_name = model_name
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._client: grpcclient.InferenceServerClient | None = None
        self.shape: ModelShape | None = None
        self._version: str | None = None  # the version whose configuration ``shape`` reflects

    async def start(self, ready_timeout_s: float = 60.0) -> ModelShape:
        self._client = grpcclient.InferenceServerClient(
            self._url, channel_args=_CHANNEL_ARGS, **self._security.client_kwargs()
        )
        deadline = asyncio.get_running_loop().time() + ready_timeout_s
        while True:
            try:
                if await self._client.is_model_ready(self._model_name, headers=self._headers):
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
        return await self.refresh_shape()

    async def refresh_shape(self) -> ModelShape:
        """Read the served model's window length, top-k and batching again (a roll-out may
        have changed them)."""
        self.shape = await self._read_shape()
        log.info("model %s: %s", self._model_name, self.shape)
        return self.shape

    async def _read_shape(self) -> ModelShape:
        assert self._client is not None
        response = await self._client.get_model_config(self._model_name, headers=self._headers, as_json=True)
        config = response["config"]
        dims = {tensor["name"]: [int(d) for d in tensor["dims"]] for tensor in config["output"]}
        inputs = {tensor["name"]: [int(d) for d in tensor["dims"]] for tensor in config["input"]}
        return ModelShape(
            window=inputs[ITEM_IDS.name][0],
            served_top_k=dims[TOP_ITEMS.name][0],
            max_batch_size=int(config.get("max_batch_size", 0)) or 1,
            instances=sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1,
            outputs=frozenset(dims),
            takes_popularity_adjustment=POPULARITY_ADJUSTMENT.name in inputs,
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
        parts = await asyncio.gather(*(self._score_chunk(chunk) for chunk in chunks))
        served = {(part.model_version, part.scores.shape[1]) for part in parts}
        if len(served) > 1:
            # A roll-out answered this batch's requests from two versions: one record must name
            # the version that scored it, so the whole batch is scored again.
            raise InferenceServerException(
                msg=f"the batch's requests were answered by several model versions {sorted(served)}",
                status=VERSION_CHANGED,
            )
        scored = ScoredBatch.concatenate(parts)
        if scored.model_version != self._version:
            if self._version is not None:
                await self.refresh_shape()  # for the next batch: this one was answered in full
            self._version = scored.model_version
        return scored

    async def _score_chunk(self, windows: Sequence[Window]) -> ScoredBatch:
        assert self._client is not None and self.shape is not None
        length = self.shape.window
        items, actions, stamps = encode_windows(windows, length)
        shape = [len(windows), length]
        inputs = [
            _SerializedInput(ITEM_IDS.name, shape, ITEM_IDS.client_type).set_serialized(items),
            grpcclient.InferInput(WINDOW_ACTIONS.name, shape, WINDOW_ACTIONS.client_type).set_data_from_numpy(
                actions
            ),
            grpcclient.InferInput(TIMESTAMPS.name, shape, TIMESTAMPS.client_type).set_data_from_numpy(stamps),
        ]
        if self.shape.takes_popularity_adjustment:
            strength = np.full(
                (len(windows), 1), self._popularity_adjustment, dtype=POPULARITY_ADJUSTMENT.dtype
            )
            inputs.append(
                grpcclient.InferInput(
                    POPULARITY_ADJUSTMENT.name, [len(windows), 1], POPULARITY_ADJUSTMENT.client_type
                ).set_data_from_numpy(strength)
            )
        served = self.shape.outputs
        outputs = [grpcclient.InferRequestedOutput(spec.name) for spec in OUTPUTS if spec.name in served]
        async with self._slots:
            result = await self._client.infer(
                self._model_name,
                inputs,
                outputs=outputs,
                client_timeout=self._timeout_s,
                headers=self._headers,
            )
        response = result.get_response()
        return checked_response(
            len(windows),
            response.model_version,
            decode_strings(_raw_output(response, TOP_ITEMS.name)),
            result.as_numpy(TOP_SCORES.name),
            result.as_numpy(ATTRIBUTIONS.name),
            {
                field: result.as_numpy(spec.name) if spec.name in served else None
                for field, spec in OPTIONAL_OUTPUTS.items()
            },
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
    raise InferenceServerException(msg=f"the response has no output {name!r}", status=MALFORMED_RESPONSE)


def check_model_ready(
    url: str, model_name: str, timeout_s: float, security: TritonSecurity = NO_TLS
) -> ModelShape:
    """Fail fast, before the worker joins its group, if the model is not served."""

    async def probe() -> ModelShape:
        scorer = TritonScorer(url, model_name, timeout_s=timeout_s, max_in_flight=1, security=security)
        try:
            return await scorer.start(ready_timeout_s=timeout_s)
        finally:
            await scorer.close()

    return asyncio.run(probe())
