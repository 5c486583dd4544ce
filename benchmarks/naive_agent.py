"""The naive baseline: the product's app, topics, table and Triton client, with the agent loop
written the obvious way: per event, one table update and one Triton call, awaited in turn, and
the records handed to Faust's ``Topic.send``.

Run as a worker: ``python -m benchmarks.naive_agent worker`` (settings from the environment).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable

from faust.types import StreamT

from stream.app import StreamApp
from stream.outputs import dead_letter_headers
from stream.recommendations import build_recommendations, encode_recommendation
from stream.records import UserUpdate, WindowEvent
from stream.settings import Settings, load_settings
from stream.shutdown import ShutdownDeadline
from stream.validation import InvalidEvent, parse_event
from stream.window import merge_events
from stream.worker import prepare_worker, run_app

__all__ = ["naive_agent"]

log = logging.getLogger(__name__)


def naive_agent(parts: StreamApp, settings: Settings) -> Callable[[StreamT], Awaitable[None]]:
    horizon_ms = int(settings.window_horizon_s * 1000)

    async def run(stream: StreamT) -> None:
        await parts.scorer.start(settings.triton_ready_timeout_s)
        async for source in stream.events():
            parts.metrics.events_consumed.inc()
            message = source.message
            try:
                event = parse_event(source.value, message.key, settings.max_event_bytes)
            except InvalidEvent as error:
                parts.metrics.events_invalid.labels(reason=error.reason).inc()
                log.info("dead-lettered offset %s: %s", message.offset, error)
                headers = dead_letter_headers(error, message.topic, message.partition, message.offset)
                await parts.topics.dead_letter.send(key=message.key, value=message.value, headers=headers)
                continue
            window = merge_events(
                parts.windows.get(event.user_id, source),
                [WindowEvent.of(event)],
                settings.window_size,
                horizon_ms,
            ).window
            await parts.windows.put(event.user_id, window, source)
            [record] = build_recommendations(
                [UserUpdate(event.user_id, event.event_id, window, message.partition, message.offset)],
                await parts.scorer.score([window]),
                model_name=settings.triton_model_name,
                top_k=settings.published_top_k,
                now_ms=int(time.time() * 1000),
                presentation=parts.presentation,
            )
            await parts.topics.recommendations.send(
                key=event.user_id.encode(), value=encode_recommendation(record)
            )
            parts.metrics.observe_published(1, [source], 1)

    return run


if __name__ == "__main__":
    loglevel = sys.argv[sys.argv.index("--loglevel") + 1] if "--loglevel" in sys.argv else "warning"
    settings = load_settings()
    parts = prepare_worker(settings)
    parts.attach_agent(naive_agent(parts, settings))
    run_app(parts, loglevel, ShutdownDeadline(settings.shutdown_timeout_s))
