"""The words of explanations: item titles, deeds, how long ago, and why an item was chosen.

Records keep the structured facts (events, weights, signal kinds) so a UI can write its own
text in any language; these sentences are the English default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from stream.records import ExplainedEvent

__all__ = ["ItemTitles", "ago", "deed", "load_item_titles", "reason_sentence", "span"]

_DEEDS: Final = {
    "view": "viewed {what}",
    "click": "clicked {what}",
    "add_to_cart": "added {what} to your cart",
    "purchase": "bought {what}",
}
# Why an item was placed, for items no single event drives (``reason`` of an explanation).
_UNDRIVEN: Final = {
    "popular": "{title} is one of the most popular items; no single recent event of yours drives it",
    "popular_now": "{title} is popular right now",
    "overall": "{title} fits your activity overall; no single recent event drives it",
    "exploration": "{title} is something new to explore, beyond what you usually see",
    "cold_start": "{title} is new, recommended from its description",
}


class ItemTitles(dict[str, str]):
    """Item id -> title; an item without one is called by its id."""

    def title(self, item_id: str) -> str:
        return self.get(item_id, item_id)


def load_item_titles(path: Path) -> ItemTitles:
    """Titles from a catalogue file: one JSON object per line with ``item_id`` and ``title``
    (other fields, such as the ``text`` cold start reads, are ignored here)."""
    titles = ItemTitles()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(
            f"catalogue {path}: {exc.strerror}; set NEXTACTION_CATALOGUE_PATH to a readable file"
        ) from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            item_id, title = entry["item_id"], entry["title"]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ValueError(
                f"catalogue {path}:{line_no}: expected {{'item_id': ..., 'title': ...}} ({exc})"
            ) from None
        if not (isinstance(item_id, str) and isinstance(title, str) and item_id and title):
            raise ValueError(f"catalogue {path}:{line_no}: item_id and title must be non-empty strings")
        titles[item_id] = title
    return titles


def span(seconds: float) -> str:
    """``3 minutes``, ``2 days``: whole units of the largest unit that fits."""
    whole = max(0, int(seconds))
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if whole >= size:
            count = whole // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "0 seconds"


def ago(elapsed_ms: int) -> str:
    return f"{span(elapsed_ms / 1000)} ago" if elapsed_ms >= 60_000 else "just now"


def deed(action: str, what: str) -> str:
    """``viewed X``, ``added X to your cart``..."""
    return _DEEDS[action].format(what=what)


def _event_clause(event: ExplainedEvent, item_id: str, titles: ItemTitles, now_ms: int) -> str:
    """Why one cited event supports the item, by its signal kind."""
    action, when = event["action"], ago(now_ms - event["ts_ms"])
    if event["signal"] == "same_item" or event["item_id"] == item_id:
        return f"you {deed(action, 'it')} {when}"
    name = titles.title(event["item_id"])
    if event["signal"] == "sequence_pattern":
        return f"you {deed(action, name)} {when}, and people who did often choose it next"
    if event["signal"] == "similar_item":
        return f"it is similar to {name}; you {deed(action, 'it')} {when}"
    return f"you {deed(action, name)} {when}"


def reason_sentence(
    item_id: str, reason: str, events: Sequence[ExplainedEvent], titles: ItemTitles, now_ms: int
) -> str:
    """One sentence: the item's title, then its strongest evidence with its share, or the
    reason it was placed without any."""
    title = titles.title(item_id)
    if not events:
        return _UNDRIVEN[reason].format(title=title) + "."
    first = events[0]
    text = f"{title}: {_event_clause(first, item_id, titles, now_ms)} ({first['weight']:.0%} of the evidence)"
    if len(events) > 1:
        text += f"; also {_event_clause(events[1], item_id, titles, now_ms)} ({events[1]['weight']:.0%})"
    return text + "."
