"""The naive baseline: the product's app, topics, table, Triton client and publisher, with the
agent loop written the obvious way: per event, one table update and one Triton call, awaited
in turn.

Run as a worker: ``python -m benchmarks.naive_agent worker`` (settings from the environment).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

from faust.types import StreamT

from stream.app import StreamApp
from stream.recommendations import build_recommendations
from stream.records import UserUpdate, WindowEvent
from stream.settings import Settings, load_settings
from stream.validation import InvalidEvent, parse_event
from stream.window import merge_events
from stream.worker import prepare_worker, run_app

__all__ = ["naive_agent"]


def naive_agent(parts: StreamApp, settings: Settings) -> Callable[[StreamT], Awaitable[None]]:
    horizon_ms = int(settings.window_horizon_s * 1000)

    async def run(stream: StreamT) -> None:
        await parts.scorer.start()
        async for source in stream.events():
            parts.metrics.events_consumed.inc()
            try:
                event = parse_event(source.value, source.message.key, settings.max_event_bytes)
            except InvalidEvent as error:
                parts.metrics.events_invalid.labels(reason=error.reason).inc()
                await parts.outputs.dead_letter(source, error)
                continue
            window = merge_events(
                parts.windows.get(event.user_id), [WindowEvent.of(event)], settings.window_size, horizon_ms
            )
            parts.windows.put(event.user_id, window, source)
            update = UserUpdate(event.user_id, event.event_id, window)
            records = build_recommendations(
                [update],
                await parts.scorer.score([window]),
                model_name=settings.triton_model_name,
                top_k=settings.published_top_k,
                now_ms=int(time.time() * 1000),
            )
            await parts.outputs.recommendations(records)  # handed to the producer, as Topic.send does
            parts.metrics.observe_published(1, [source], 1)

    return run


if __name__ == "__main__":
    loglevel = sys.argv[sys.argv.index("--loglevel") + 1] if "--loglevel" in sys.argv else "warning"
    settings = load_settings()
    parts = prepare_worker(settings)
    parts.app.agent(parts.topics.events, name="recommend")(naive_agent(parts, settings))
    run_app(parts.app, loglevel)
