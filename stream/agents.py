"""The agent: take a batch of events, validate, update windows, score on Triton, publish.

Batches are pipelined: while one batch waits for Triton and for the broker, the next one is
validated and its windows updated. Window updates happen in batch order, and each batch
publishes only after the batch before it, so a user's recommendations keep their order.

At-least-once: a batch's offsets are acknowledged only once every output record of the batch
is delivered. A redelivered batch cannot corrupt a window (see :mod:`stream.window`) and its
recommendations carry the same deterministic ids, so consumers can drop the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import EventT, StreamT
from tritonclient.utils import InferenceServerException

from stream.batches import EventReader
from stream.inference import ScoredBatch, TritonScorer
from stream.metrics import StreamMetrics
from stream.publishing import build_recommendations, dead_letter_headers, encode_recommendation
from stream.records import WindowEvent
from stream.settings import Settings
from stream.tables import WindowStore
from stream.topics import Topics
from stream.validation import InvalidEvent, parse_event
from stream.window import Window, merge_events

__all__ = ["RecommendAgent"]

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY_S = 5.0


@dataclass
class _Batch:
    """A batch between its window updates and its publication."""

    events: list[EventT]
    valid: list[EventT] = field(default_factory=list)
    windows: dict[str, Window] = field(default_factory=dict)  # users with new events
    triggers: dict[str, str] = field(default_factory=dict)  # user -> newest event id
    deliveries: list[Any] = field(default_factory=list)  # pending sends


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
        in_flight: deque[asyncio.Future[None]] = deque()
        reader = EventReader(
            stream,
            self._settings.batch_max_events,
            self._settings.batch_max_wait_ms / 1000,
            downstream_idle=lambda: all(pending.done() for pending in in_flight),
        )
        while events := await reader.next_batch():
            batch = await self.prepare(events)
            previous = in_flight[-1] if in_flight else None
            in_flight.append(asyncio.ensure_future(self.complete(batch, previous, reader)))
            while in_flight and (in_flight[0].done() or len(in_flight) > self._settings.pipeline_depth):
                await in_flight.popleft()
        for pending in in_flight:
            await pending

    async def prepare(self, events: list[EventT]) -> _Batch:
        """Validate, dead-letter the invalid events and update the windows, in batch order."""
        self._metrics.events_consumed.inc(len(events))
        batch = _Batch(events)
        arrivals: dict[str, list[WindowEvent]] = {}
        sources: dict[str, EventT] = {}
        for source in events:
            try:
                event = parse_event(source.value, source.message.key, self._settings.max_event_bytes)
            except InvalidEvent as error:
                batch.deliveries.append(await self._dead_letter(source, error))
                continue
            batch.valid.append(source)
            arrivals.setdefault(event.user_id, []).append(WindowEvent.of(event))
            sources[event.user_id] = source
            batch.triggers[event.user_id] = event.event_id

        for user_id, arrived in arrivals.items():
            before = self._windows.get(user_id)
            after = merge_events(before, arrived, self._settings.window_size, self._horizon_ms)
            if after != before:
                self._windows.put(user_id, after, sources[user_id])
            batch.windows[user_id] = after
        return batch

    async def complete(
        self, batch: _Batch, previous: asyncio.Future[None] | None, reader: EventReader
    ) -> None:
        """Score, publish after the previous batch, wait for delivery, acknowledge."""
        scored = await self._score(list(batch.windows.values())) if batch.windows else None
        if previous is not None:
            await asyncio.shield(previous)  # its errors are raised where it is awaited in turn
        if scored is not None:
            recommendations = build_recommendations(
                [(user_id, batch.triggers[user_id], window) for user_id, window in batch.windows.items()],
                scored,
                model_name=self._settings.triton_model_name,
                top_k=self._settings.top_k,
                now_ms=int(time.time() * 1000),
            )
            # The app's producer directly: Topic.send adds codec and sensor work per record.
            send, topic = self._topics.recommendations.app.producer.send, self._settings.topic_recommendations
            for record in recommendations:
                key, value = record["user_id"].encode(), encode_recommendation(record)
                batch.deliveries.append(await send(topic, key, value, None, None, None))
        await asyncio.gather(*batch.deliveries)
        reader.ack(batch.events)
        self._observe_publication(batch.valid, len(batch.windows))

    async def _dead_letter(self, source: EventT, error: InvalidEvent) -> Any:
        self._metrics.events_invalid.labels(reason=error.reason).inc()
        message = source.message
        log.info("dead-lettered offset %s: %s", message.offset, error)
        return await self._topics.dead_letter.send(
            key=message.key,
            value=message.value,
            headers=dead_letter_headers(error, message.topic, message.partition, message.offset),
        )

    async def _score(self, windows: list[Window]) -> ScoredBatch:
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
