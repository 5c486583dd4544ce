"""How the stream waits for Triton: which failures are retried as they are, which re-read the
model's shape first, and when a batch gives up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Final

from tritonclient.utils import InferenceServerException

from stream.inference import VERSION_CHANGED, ScoredBatch, TritonScorer
from stream.metrics import StreamMetrics
from stream.records import Window

__all__ = ["TRANSIENT_STATUSES", "score_until_answered"]

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY_S: Final = 5.0
#: Failures that retrying the same request can cure; any other is a refusal (see
#: :func:`score_until_answered`).
TRANSIENT_STATUSES: Final = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
        "StatusCode.RESOURCE_EXHAUSTED",
        VERSION_CHANGED,
    }
)


async def score_until_answered(
    scorer: TritonScorer, windows: Sequence[Window], metrics: StreamMetrics, refusal_limit_s: float
) -> ScoredBatch:
    """Retry with back-off until Triton answers: the caller's events are unacknowledged, so
    waiting loses nothing.

    Transient failures (:data:`TRANSIENT_STATUSES`) are retried for as long as they last. Any
    other (a request the model refuses, a malformed response) re-reads the model's shape first,
    since a roll-out may have changed its window length or top-k, and is raised once refusals
    have lasted ``refusal_limit_s``: retrying the same request forever would stall the stream.
    """
    delay = 0.1
    refused_since: float | None = None
    while True:
        started = time.perf_counter()
        try:
            scored = await scorer.score(windows)
        except InferenceServerException as exc:
            status = exc.status() or "unknown"
            metrics.triton_errors.labels(status=status).inc()
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
        metrics.inference_latency.observe(time.perf_counter() - started)
        metrics.inference_batch_size.observe(len(windows))
        return scored


async def _refresh_shape(scorer: TritonScorer) -> None:
    try:
        await scorer.refresh_shape()
    except InferenceServerException as exc:  # the next attempt meets the cause again
        log.warning("could not re-read the model's configuration: %s", exc.message())
