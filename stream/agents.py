"""The agent: take a batch of events, validate, update windows, score on Triton, publish.

Batches are pipelined: while one batch waits for Triton and for the broker, the next one is
validated and its windows updated. Window updates happen in batch order, and each batch
publishes only after the batch before it, so a user's recommendations keep their order.

At-least-once: a batch's offsets are acknowledged only once every output record of the batch
and every changelog write of its windows is delivered. A redelivered batch cannot corrupt a
window (see :mod:`stream.window`) and its recommendations carry the same deterministic ids,
so consumers can drop the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

from faust.types import EventT, StreamT

from stream.app import StreamApp
from stream.batches import EventBatch, EventReader
from stream.circuit import CircuitBreaker
from stream.fallback import FallbackRecommender
from stream.outputs import Delivery
from stream.recommendations import build_recommendations
from stream.records import UserUpdate, WindowEvent
from stream.sampled_log import SampledLog
from stream.settings import Settings
from stream.triton_retries import score_until_answered
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
        self._max_ahead_ms = int(settings.max_event_ahead_s * 1000)
        self._dead_letter_log = SampledLog(log)
        self._reader: EventReader | None = None
        self._short_versions: set[str] = set()  # versions known to serve fewer items than published
        self._fallback = FallbackRecommender(parts.presentation.titles) if settings.fallback_enabled else None
        self._circuit = CircuitBreaker(
            settings.triton_outage_after_s if settings.fallback_enabled else math.inf,
            settings.triton_probe_interval_s,
            on_change=self._circuit_changed,
        )

    def attach(self) -> None:
        self._parts.attach_agent(self.run)

    def _circuit_changed(self, is_open: bool) -> None:
        self._parts.metrics.triton_circuit_open.set(int(is_open))
        self._parts.health.circuit(is_open)

    async def run(self, stream: StreamT) -> None:
        """Process batches until the stream ends. A failure stops the worker (see
        :mod:`stream.failure`) with the failed batch and those after it unacknowledged, as soon
        as it happens, not when the next batch arrives."""
        self._parts.metrics.agent_starts.inc()
        in_flight: deque[asyncio.Future[None]] = deque()
        try:
            await self._process(stream, in_flight)
        except Exception as exc:
            for pending in in_flight:
                pending.cancel()
            self._fail(exc)

    async def _process(self, stream: StreamT, in_flight: deque[asyncio.Future[None]]) -> None:
        await self._parts.scorer.start(self._settings.triton_ready_timeout_s)
        self._parts.health.model_ready()
        self._reader = reader = EventReader(
            stream,
            self._settings.batch_max_events,
            self._settings.batch_max_wait_ms / 1000,
            downstream_idle=lambda: all(pending.done() for pending in in_flight),
        )
        self._parts.metrics.input_held_bytes.set_function(lambda: reader.held_bytes)
        self._parts.metrics.oldest_unacknowledged_age.set_function(reader.oldest_unacknowledged_age_s)
        while taken := await reader.next_batch():
            batch = await self.prepare(taken)
            previous = in_flight[-1] if in_flight else None
            completion = asyncio.ensure_future(self.complete(batch, previous))
            completion.add_done_callback(self._fail_if_failed)
            in_flight.append(completion)
            while in_flight and (in_flight[0].done() or len(in_flight) > self._settings.pipeline_depth):
                await in_flight.popleft()
        while in_flight:
            await in_flight.popleft()

    def _fail_if_failed(self, completion: asyncio.Future[None]) -> None:
        if not completion.cancelled() and (error := completion.exception()) is not None:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """Once: later batches fail with the same error, awaiting this one."""
        if self._parts.failure.reason is not None:
            return
        self._parts.metrics.batch_failures.inc()
        if self._reader is not None:
            self._reader.release_unacknowledged()
        self._parts.failure.stop_worker(error)

    async def prepare(self, taken: EventBatch) -> PreparedBatch:
        """Validate, dead-letter the invalid events and update the windows, in batch order."""
        parts = self._parts
        parts.metrics.events_consumed.inc(len(taken))
        batch = PreparedBatch(taken)
        arrivals: dict[str, list[tuple[WindowEvent, EventT]]] = {}
        for source in taken.events:
            message = source.message
            try:
                event = parse_event(
                    source.value,
                    message.key,
                    self._settings.max_event_bytes,
                    not_after_ms=self._latest_event_time_ms(message.timestamp),
                )
            except InvalidEvent as error:
                await self._dead_letter(batch, source, error)
                continue
            if event.unknown_fields:
                parts.metrics.events_with_unknown_fields.inc()
            arrivals.setdefault(event.user_id, []).append((WindowEvent.of(event), source))

        for user_id, arrived in arrivals.items():
            before = parts.windows.get(user_id, arrived[0][1])
            after, conflicts = merge_events(
                before, [arrival for arrival, _ in arrived], self._settings.window_size, self._horizon_ms
            )
            accepted = []
            for arrival, source in arrived:
                if any(arrival is conflict for conflict in conflicts):
                    conflict = InvalidEvent(
                        "conflicting_duplicate", f"event_id {arrival.event_id} was seen with other content"
                    )
                    await self._dead_letter(batch, source, conflict)
                else:
                    accepted.append((arrival, source))
            if not accepted:
                continue
            if self._fallback is not None:
                self._fallback.learn(before[-1] if before else None, (arrival for arrival, _ in accepted))
            trigger, newest = accepted[-1]  # the user's newest event of the batch, by offset
            if after != before:
                batch.deliveries.append(await parts.windows.put(user_id, after, newest))
            batch.valid.extend(source for _, source in accepted)
            batch.updates.append(
                UserUpdate(user_id, trigger.event_id, after, newest.message.partition, newest.message.offset)
            )
        partitions = {source.message.partition for source in taken.events}
        batch.deliveries.extend(await parts.windows.evict_idle(partitions))
        return batch

    def _latest_event_time_ms(self, record_timestamp_s: float | None) -> int | None:
        """The latest event time accepted in a record of this timestamp (none without one)."""
        if not record_timestamp_s or record_timestamp_s <= 0:
            return None
        return int(record_timestamp_s * 1000) + self._max_ahead_ms

    async def _dead_letter(self, batch: PreparedBatch, source: EventT, error: InvalidEvent) -> None:
        message = source.message
        self._parts.metrics.events_invalid.labels(reason=error.reason).inc()
        self._dead_letter_log.warning(
            "dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, error
        )
        batch.deliveries.append(await self._parts.outputs.dead_letter(source, error))

    async def complete(self, batch: PreparedBatch, previous: asyncio.Future[None] | None) -> None:
        """Score (or, while Triton is out, ask the fallback), publish after the previous batch,
        wait for delivery, acknowledge."""
        parts, settings = self._parts, self._settings
        windows = [update.window for update in batch.updates]
        scored = (
            await score_until_answered(
                parts.scorer, windows, parts.metrics, settings.triton_refusal_limit_s, self._circuit
            )
            if windows
            else None
        )
        if previous is not None:
            await asyncio.shield(previous)  # its errors are raised where it is awaited in turn
        now_ms = int(time.time() * 1000)
        if scored is not None:
            self._check_served_items(scored.model_version, scored.scores.shape[1])
            parts.metrics.model.info({"name": settings.triton_model_name, "version": scored.model_version})
            records = build_recommendations(
                batch.updates,
                scored,
                model_name=settings.triton_model_name,
                top_k=settings.published_top_k,
                now_ms=now_ms,
                presentation=parts.presentation,
            )
            batch.deliveries.extend(await parts.outputs.recommendations(records))
        elif windows:
            assert self._fallback is not None, "without a fallback the circuit never opens"
            records = self._fallback.recommend(
                batch.updates,
                model_name=settings.triton_model_name,
                top_k=settings.published_top_k,
                now_ms=now_ms,
            )
            parts.metrics.fallback_recommendations.inc(len(records))
            batch.deliveries.extend(await parts.outputs.recommendations(records))
        await asyncio.gather(*batch.deliveries)
        batch.taken.acknowledge()
        parts.lag.acknowledged(batch.taken.events)
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
