"""The naive baseline: the product's app, topics, table and Triton client, with the agent loop
written the obvious way: per event, one table update and one Triton call, awaited in turn.

Run as a worker: ``python -m benchmarks.naive_agent worker`` (settings from the environment).
"""

from __future__ import annotations

import sys
import time

from faust.types import StreamT

from stream.agents import RecommendAgent
from stream.publishing import build_recommendations, encode_recommendation
from stream.records import WindowEvent
from stream.settings import load_settings
from stream.validation import InvalidEvent, parse_event
from stream.window import merge_events
from stream.worker import run_worker

__all__ = ["NaiveAgent"]


class NaiveAgent(RecommendAgent):
    async def run(self, stream: StreamT) -> None:
        await self._scorer.start()
        async for source in stream.events():
            self._metrics.events_consumed.inc()
            try:
                event = parse_event(source.value, source.message.key, self._settings.max_event_bytes)
            except InvalidEvent as error:
                await self._dead_letter(source, error)
                continue
            window = merge_events(
                self._windows.get(event.user_id),
                [WindowEvent.of(event)],
                self._settings.window_size,
                self._horizon_ms,
            )
            self._windows.put(event.user_id, window, source)
            scored = await self._scorer.score([window])
            [recommendation] = build_recommendations(
                [(event.user_id, event.event_id, window)],
                scored,
                model_name=self._settings.triton_model_name,
                top_k=self._settings.top_k,
                now_ms=int(time.time() * 1000),
            )
            await self._topics.recommendations.send(
                key=event.user_id.encode(), value=encode_recommendation(recommendation)
            )
            self._observe_publication([source], 1)


if __name__ == "__main__":
    loglevel = sys.argv[sys.argv.index("--loglevel") + 1] if "--loglevel" in sys.argv else "warning"
    run_worker(load_settings(), loglevel=loglevel, agent_type=NaiveAgent)
