"""The three topics. Values stay raw bytes: events must reach validation (and the dead-letter
topic) exactly as produced, and outputs are encoded by :mod:`stream.recommendations`. The
events topic buffers within a byte budget (:mod:`stream.input_queue`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT

from stream.input_queue import EventsTopic
from stream.settings import Settings

__all__ = ["Topics", "declare_topics"]


@dataclass(frozen=True)
class Topics:
    events: TopicT
    recommendations: TopicT
    dead_letter: TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.topic_partitions,
    }

    def output(name: str) -> TopicT:
        return app.topic(name, **raw)

    return Topics(
        events=EventsTopic(
            app, topics=[settings.topic_events], input_max_bytes=settings.input_buffer_max_bytes, **raw
        ),
        recommendations=output(settings.topic_recommendations),
        dead_letter=output(settings.topic_dead_letter),
    )
