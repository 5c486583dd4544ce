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
from dataclasses import dataclass, field

from faust.types import EventT, StreamT

from stream.app import StreamApp
from stream.batches import EventBatch, EventReader
from stream.inference import score_until_answered
from stream.outputs import Delivery
from stream.recommendations import build_recommendations
from stream.records import UserUpdate, WindowEvent
from stream.settings import Settings
from stream.validation import InvalidEvent, parse_event
from stream.window import merge_events

__all__ = ["PreparedBatch", "RecommendAgent"]

log = logging.getLogger(__name__)


@dataclass
class PreparedBatch:
    """A batch between its window updates and its publication."""

    taken: EventBatch
    valid: list[EventT] = field(default_factory=list)
    updates: list[UserUpdate] = field(default_factory=list)  # one per user with new events
    deliveries: list[Delivery] = field(default_factory=list)  # sends not yet confirmed


class RecommendAgent:
    """The worker's agent over the events topic (``attach`` registers it with the app)."""

    def __init__(self, parts: StreamApp, settings: Settings) -> None:
        self._parts = parts
        self._settings = settings
        self._horizon_ms = int(settings.window_horizon_s * 1000)
        self._short_versions: set[str] = set()  # versions known to serve fewer items than published

    def attach(self) -> None:
        self._parts.attach_agent(self.run)

    async def run(self, stream: StreamT) -> None:
        await self._parts.scorer.start(self._settings.triton_ready_timeout_s)
        in_flight: deque[asyncio.Future[None]] = deque()
        reader = EventReader(
            stream,
            self._settings.batch_max_events,
            self._settings.batch_max_wait_ms / 1000,
            downstream_idle=lambda: all(pending.done() for pending in in_flight),
        )
        while taken := await reader.next_batch():
            batch = await self.prepare(taken)
            previous = in_flight[-1] if in_flight else None
            in_flight.append(asyncio.ensure_future(self.complete(batch, previous)))
            while in_flight and (in_flight[0].done() or len(in_flight) > self._settings.pipeline_depth):
                await in_flight.popleft()
        for pending in in_flight:
            await pending

    async def prepare(self, taken: EventBatch) -> PreparedBatch:
        """Validate, dead-letter the invalid events and update the windows, in batch order."""
        parts = self._parts
        parts.metrics.events_consumed.inc(len(taken))
        batch = PreparedBatch(taken)
        arrivals: dict[str, list[WindowEvent]] = {}
        newest: dict[str, EventT] = {}  # user -> the source of the user's newest event
        triggers: dict[str, str] = {}  # user -> that event's id
        for source in taken.events:
            try:
                event = parse_event(source.value, source.message.key, self._settings.max_event_bytes)
            except InvalidEvent as error:
                parts.metrics.events_invalid.labels(reason=error.reason).inc()
                log.info("dead-lettered offset %s: %s", source.message.offset, error)
                batch.deliveries.append(await parts.outputs.dead_letter(source, error))
                continue
            batch.valid.append(source)
            arrivals.setdefault(event.user_id, []).append(WindowEvent.of(event))
            newest[event.user_id] = source
            triggers[event.user_id] = event.event_id

        for user_id, arrived in arrivals.items():
            before = parts.windows.get(user_id)
            after = merge_events(before, arrived, self._settings.window_size, self._horizon_ms)
            if after != before:
                parts.windows.put(user_id, after, newest[user_id])
            batch.updates.append(UserUpdate(user_id, triggers[user_id], after))
        return batch

    async def complete(self, batch: PreparedBatch, previous: asyncio.Future[None] | None) -> None:
        """Score, publish after the previous batch, wait for delivery, acknowledge."""
        parts = self._parts
        windows = [update.window for update in batch.updates]
        scored = await score_until_answered(parts.scorer, windows, parts.metrics) if windows else None
        if previous is not None:
            await asyncio.shield(previous)  # its errors are raised where it is awaited in turn
        if scored is not None:
            self._check_served_items(scored.model_version, scored.scores.shape[1])
            records = build_recommendations(
                batch.updates,
                scored,
                model_name=self._settings.triton_model_name,
                top_k=self._settings.published_top_k,
                now_ms=int(time.time() * 1000),
            )
            batch.deliveries.extend(await parts.outputs.recommendations(records))
        await asyncio.gather(*batch.deliveries)
        batch.taken.acknowledge()
        parts.metrics.observe_published(len(batch.taken), batch.valid, len(batch.updates))

    def _check_served_items(self, version: str, served: int) -> None:
        """Start-up checks the served top-k, but a version rolled out since may serve fewer:
        its records then carry fewer items, which operators must hear about once."""
        if served < self._settings.published_top_k and version not in self._short_versions:
            self._short_versions.add(version)
            log.warning(
                "model version %s serves %d items, fewer than NEXTACTION_PUBLISHED_TOP_K=%d: "
                "its recommendations carry %d",
                version,
                served,
                self._settings.published_top_k,
                served,
            )
