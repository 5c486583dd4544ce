"""How the stream waits for Triton: which failures are retried as they are, which re-read the
model's shape first, when a batch gives up, and when it goes to the fallback instead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Final

from tritonclient.utils import InferenceServerException

from stream.circuit import CircuitBreaker
from stream.inference import VERSION_CHANGED, TritonScorer
from stream.metrics import StreamMetrics
from stream.records import Window
from stream.scored_batch import ScoredBatch

__all__ = ["OUTAGE_STATUSES", "TRANSIENT_STATUSES", "score_until_answered"]

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY_S: Final = 5.0
#: Failures of a Triton that is down, hung or overloaded: they count towards opening the circuit.
OUTAGE_STATUSES: Final = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
)
#: Failures that retrying the same request can cure; any other is a refusal (see
#: :func:`score_until_answered`).
TRANSIENT_STATUSES: Final = OUTAGE_STATUSES | {VERSION_CHANGED}


async def score_until_answered(
    scorer: TritonScorer,
    windows: Sequence[Window],
    metrics: StreamMetrics,
    refusal_limit_s: float,
    circuit: CircuitBreaker,
) -> ScoredBatch | None:
    """Retry with back-off until Triton answers, or None once ``circuit`` is open (Triton is
    out, the batch goes to the fallback): the caller's events are unacknowledged, so waiting
    loses nothing.

    Transient failures (:data:`TRANSIENT_STATUSES`) are retried for as long as they last or
    until the circuit opens. Any other (a request the model refuses, a malformed response)
    re-reads the model's shape first, since a roll-out may have changed its window length or
    top-k, and is raised once refusals have lasted ``refusal_limit_s``: retrying the same
    request forever would stall the stream, and a fallback would hide a broken model.
    """
    delay = 0.1
    refused_since: float | None = None
    while circuit.may_call():
        started = time.perf_counter()
        try:
            scored = await scorer.score(windows)
        except InferenceServerException as exc:
            status = exc.status() or "unknown"
            metrics.triton_errors.labels(status=status).inc()
            if status in OUTAGE_STATUSES and circuit.failed():
                return None
            if status not in TRANSIENT_STATUSES:
                if refused_since is None:
                    refused_since = started
                if time.perf_counter() - refused_since >= refusal_limit_s:
                    raise
                await _refresh_shape(scorer)
            log.error("Triton call failed (%s %s); retrying in %.1fs", status, exc.message(), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY_S)
            continue
        circuit.succeeded()
        metrics.inference_latency.observe(time.perf_counter() - started)
        metrics.inference_batch_size.observe(len(windows))
        return scored
    return None


async def _refresh_shape(scorer: TritonScorer) -> None:
    try:
        await scorer.refresh_shape()
    except InferenceServerException as exc:  # the next attempt meets the cause again
        log.warning("could not re-read the model's configuration: %s", exc.message())
