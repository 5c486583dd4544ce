"""The agent: take a batch of events, validate, update windows, score on Triton, publish.

At-least-once: Faust acknowledges a batch's offsets only after ``process`` returns, and
``process`` returns only once every output record of the batch is delivered. A redelivered
batch cannot corrupt a window (see :mod:`stream.window`) and its recommendations carry the
same deterministic ids, so consumers can drop the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from faust import Stream
from faust.types import EventT, StreamT
from tritonclient.utils import InferenceServerException

from stream.inference import ScoredWindow, TritonScorer
from stream.metrics import StreamMetrics
from stream.publishing import build_recommendation, dead_letter_headers, encode_recommendation
from stream.records import WindowEvent
from stream.settings import Settings
from stream.tables import WindowStore
from stream.topics import Topics
from stream.validation import InvalidEvent, parse_event
from stream.window import Window, merge_events

__all__ = ["RecommendAgent"]

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY_S = 5.0


class RecommendAgent:
    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        windows: WindowStore,
        scorer: TritonScorer,
        metrics: StreamMetrics,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._windows = windows
        self._scorer = scorer
        self._metrics = metrics
        self._horizon_ms = int(settings.window_horizon_s * 1000)

    async def run(self, stream: StreamT) -> None:
        await self._scorer.start()
        within = self._settings.batch_max_wait_ms / 1000
        # take_events is on faust.Stream but missing from the StreamT interface.
        async for batch in cast(Stream, stream).take_events(self._settings.batch_max_events, within=within):
            await self.process(batch)

    async def process(self, batch: Sequence[EventT]) -> None:
        self._metrics.events_consumed.inc(len(batch))
        arrivals: dict[str, list[WindowEvent]] = {}
        triggers: dict[str, tuple[EventT, str]] = {}
        deliveries: list[Any] = []
        valid: list[EventT] = []
        for source in batch:
            try:
                event = parse_event(source.value, source.message.key, self._settings.max_event_bytes)
            except InvalidEvent as error:
                deliveries.append(await self._dead_letter(source, error))
                continue
            valid.append(source)
            arrivals.setdefault(event.user_id, []).append(WindowEvent.of(event))
            triggers[event.user_id] = (source, event.event_id)

        windows: dict[str, Window] = {}
        for user_id, events in arrivals.items():
            before = self._windows.get(user_id)
            after = merge_events(before, events, self._settings.window_size, self._horizon_ms)
            if after != before:
                self._windows.put(user_id, after, triggers[user_id][0])
            windows[user_id] = after

        if windows:
            scored = await self._score(list(windows.values()))
            now_ms = int(time.time() * 1000)
            for (user_id, window), result in zip(windows.items(), scored, strict=True):
                recommendation = build_recommendation(
                    user_id=user_id,
                    trigger_event_id=triggers[user_id][1],
                    window=window,
                    scored=result,
                    model_name=self._settings.triton_model_name,
                    top_k=self._settings.top_k,
                    now_ms=now_ms,
                )
                deliveries.append(
                    await self._topics.recommendations.send(
                        key=user_id.encode(), value=encode_recommendation(recommendation)
                    )
                )
        await asyncio.gather(*deliveries)
        self._observe_publication(valid, len(windows))

    async def _dead_letter(self, source: EventT, error: InvalidEvent) -> Any:
        self._metrics.events_invalid.labels(reason=error.reason).inc()
        message = source.message
        log.info("dead-lettered offset %s: %s", message.offset, error)
        return await self._topics.dead_letter.send(
            key=message.key,
            value=message.value,
            headers=dead_letter_headers(error, message.topic, message.partition, message.offset),
        )

    async def _score(self, windows: list[Window]) -> list[ScoredWindow]:
        """Retry until Triton answers: the batch is unacknowledged, so waiting loses nothing."""
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                scored = await self._scorer.score(windows)
            except InferenceServerException as exc:
                self._metrics.triton_errors.labels(status=exc.status() or "unknown").inc()
                log.error("Triton call failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY_S)
                continue
            self._metrics.inference_latency.observe(time.perf_counter() - started)
            self._metrics.inference_batch_size.observe(len(windows))
            return scored

    def _observe_publication(self, valid: Sequence[EventT], published: int) -> None:
        self._metrics.recommendations_published.inc(published)
        now = time.time()
        for source in valid:
            self._metrics.event_to_publication.observe(max(0.0, now - source.message.timestamp))
