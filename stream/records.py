"""Records that cross a boundary: the input event, the window entry, a user to score, the
published recommendation.

The JSON shapes are the public contracts of docs/contracts.md, with their JSON Schemas in
``stream/schemas/``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

__all__ = [
    "RECOMMENDATION_SCHEMA_VERSION",
    "ActionDriver",
    "Event",
    "ExplainedEvent",
    "Explanation",
    "ItemSource",
    "NextEvent",
    "Recommendation",
    "RecommendedItem",
    "UserUpdate",
    "Watermark",
    "Window",
    "WindowEvent",
    "recommendation_id",
]

_RECOMMENDATION_NAMESPACE: Final = uuid.UUID("6f1c2a9e-4b1d-5e0f-9a53-0c8f6d2e7b41")
#: The output record's version: an added field bumps the minor, a removed or renamed field or a
#: changed meaning bumps the major (docs/contracts.md); stream/schemas/recommendation.schema.json
#: describes it.
RECOMMENDATION_SCHEMA_VERSION: Final = "1.1"


@dataclass(frozen=True, slots=True)
class Event:
    """A validated input event (topic ``events``, keyed by ``user_id``)."""

    event_id: str
    user_id: str
    item_id: str
    action: str
    ts_ms: int
    context: dict[str, Any] | None = None
    # Fields the message carried that this worker does not know: ignored, only counted.
    unknown_fields: int = 0


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """What a user's window keeps of an event: enough to score and to explain."""

    event_id: str
    item_id: str
    action: str
    ts_ms: int

    @classmethod
    def of(cls, event: Event) -> WindowEvent:
        return cls(event.event_id, event.item_id, event.action, event.ts_ms)


# A user's window: oldest event first (see stream/window.py).
Window = tuple[WindowEvent, ...]


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """A user whose events arrived in a batch: the window to score, and the user's newest event
    of the batch (by offset), which triggers the recommendation, with its input coordinates."""

    user_id: str
    trigger_event_id: str
    window: Window
    source_partition: int
    source_offset: int


# The output record is built as plain dicts (TypedDicts): the stream builds one per user per
# batch, and dicts cost a fraction of dataclass instances to create and to serialize.


class ExplainedEvent(TypedDict):
    """A window event that drove a recommended item: its attribution weight, and how it
    relates to the item (``contract.SIGNAL_KINDS``)."""

    event_id: str
    item_id: str
    action: str
    ts_ms: int
    weight: float
    signal: str


class Explanation(TypedDict):
    """``reason``: the strongest event's signal kind, or for an item no event drives
    ``popular``, ``overall``, ``exploration``, ``cold_start`` or (the fallback's)
    ``popular_now``."""

    sentence: str
    reason: str
    events: list[ExplainedEvent]


# Which mechanism placed an item in the list.
ItemSource = Literal["model", "exploration", "cold_start", "fallback"]


class RecommendedItem(TypedDict):
    item_id: str
    title: str | None  # from the catalogue, where it has one
    rank: int
    score: float
    source: ItemSource
    explanation: Explanation
    # If this item is the user's next one, the probability of each action on it (contract.ACTIONS);
    # None for the fallback and for versions that predate it.
    actions_if_next: dict[str, float] | None


class ActionDriver(TypedDict):
    """A window event that raised the probability of an action type: its share of the evidence."""

    event_id: str
    item_id: str
    action: str
    ts_ms: int
    weight: float


class NextEvent(TypedDict):
    """What the user will do next, whatever the item, and when."""

    actions: dict[str, float]  # contract.ACTIONS -> probability of the next event's action type
    seconds_until: dict[str, float]  # "p10", "p50"... -> quantiles of the seconds to the next event
    drivers: dict[str, list[ActionDriver]]  # action -> the events that drove it, strongest first
    sentence: str


class Watermark(TypedDict):
    """How far into the user's history a record has seen, for consumers that drop stale or
    replayed records: the window's newest event (by event time, then id) and the input record
    that triggered it."""

    event_ts_ms: int
    event_id: str
    source_partition: int
    source_offset: int


class Recommendation(TypedDict):
    """One output record (topic ``recommendations``, keyed by ``user_id``)."""

    schema_version: str  # RECOMMENDATION_SCHEMA_VERSION
    recommendation_id: str
    user_id: str
    trigger_event_id: str
    generated_at_ms: int
    source: Literal["model", "fallback"]  # fallback: Triton was out (see stream/fallback.py)
    model_name: str
    model_version: str | None  # None for the fallback
    watermark: Watermark
    items: list[RecommendedItem]
    next_event: NextEvent | None  # None for the fallback and for versions that predate it (1.1)


def recommendation_id(user_id: str, trigger_event_id: str) -> str:
    """Deterministic id: a redelivered trigger yields the same id, so consumers can deduplicate."""
    return str(uuid.uuid5(_RECOMMENDATION_NAMESPACE, f"{user_id}\x1f{trigger_event_id}"))
