"""The three topics. Values stay raw bytes: events must reach validation (and the dead-letter
topic) exactly as produced, and outputs are encoded by :mod:`stream.recommendations`."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT

from stream.settings import Settings

__all__ = ["Topics", "declare_topics"]


@dataclass(frozen=True)
class Topics:
    events: TopicT
    recommendations: TopicT
    dead_letter: TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    return Topics(
        events=raw(settings.topic_events),
        recommendations=raw(settings.topic_recommendations),
        dead_letter=raw(settings.topic_dead_letter),
    )
