"""The watch's view state, folded from records without a broker, and its rendering."""

from __future__ import annotations

import io
import math
from typing import Any

import orjson
import pytest
from rich.console import Console

from tools.watch_state import WatchedRecord, WatchState
from tools.watch_view import render

pytestmark = pytest.mark.unit


def recommendation(user: str, trigger: str, partition: int, offset: int, **extra: Any) -> bytes:
    items = [
        {
            "item_id": f"i{rank}",
            "title": "Blue Kettle" if rank == 1 else None,
            "rank": rank,
            "score": 0.5,
            "source": "exploration" if rank == 3 else "model",
            "explanation": {"sentence": f"because of item {rank}", "reason": "same_item", "events": []},
        }
        for rank in range(1, 6)
    ]
    doc = {
        "user_id": user,
        "trigger_event_id": trigger,
        "source": "model",
        "model_version": "3",
        "watermark": {
            "event_ts_ms": 1,
            "event_id": trigger,
            "source_partition": partition,
            "source_offset": offset,
        },
        "items": items,
        **extra,
    }
    return orjson.dumps(doc)


def event(partition: int, offset: int, at_ms: int) -> WatchedRecord:
    return WatchedRecord("event", partition, offset, at_ms, b"{}")


def rec(partition: int, offset: int, at_ms: int, user: str = "u1") -> WatchedRecord:
    return WatchedRecord(
        "recommendation", 0, offset, at_ms, recommendation(user, f"e{offset}", partition, offset)
    )


def test_latency_matches_a_recommendation_with_its_trigger_whichever_is_read_first() -> None:
    state = WatchState()
    state.fold(event(0, 10, 1_000))
    state.fold(rec(0, 10, 1_040))  # event first
    state.fold(rec(1, 10, 2_090))  # recommendation first: same offset, other partition
    state.fold(event(1, 10, 2_000))
    state.fold(rec(0, 99, 3_000))  # its event was never read (before the watch started)
    latency = state.latency()
    assert latency["count"] == 2
    assert latency["p50"] == pytest.approx(65)
    assert latency["p99"] == pytest.approx(89.5)
    assert state.events == 2 and state.recommendations == 3


def test_latency_percentiles_cover_only_the_sliding_window() -> None:
    state = WatchState(latency_window_s=10)
    for offset, (at_ms, latency_ms) in enumerate([(0, 900), (1_000, 800), (20_000, 10), (21_000, 30)]):
        state.fold(event(0, offset, at_ms - latency_ms))
        state.fold(rec(0, offset, at_ms))
    assert state.latency() == {"p50": pytest.approx(20), "p99": pytest.approx(29.8), "count": 2.0}


def test_pending_halves_are_bounded() -> None:
    state = WatchState(pending_limit=3)
    for offset in range(10):
        state.fold(event(0, offset, offset))
    state.fold(rec(0, 0, 50))  # its event was dropped as the oldest pending one
    state.fold(rec(0, 9, 60))
    assert state.latency()["count"] == 1


def test_dead_letters_are_counted_by_reason_and_unreadable_records_do_not_stop_the_watch() -> None:
    state = WatchState(shown=2)
    for reason in ("not_json", "oversized", "not_json"):
        state.fold(WatchedRecord("dead_letter", 0, 0, 0, b"x", [("dlq.reason", reason.encode())]))
    state.fold(WatchedRecord("dead_letter", 0, 1, 0, b"x", []))
    state.fold(WatchedRecord("recommendation", 0, 2, 0, b"not json"))
    state.fold(WatchedRecord("recommendation", 0, 3, 0, b'{"user_id": "u"}'))
    for user in ("a", "b", "c"):
        state.fold(rec(0, 1, 5, user=user))
    assert state.dead_letters == {"not_json": 2, "oversized": 1, "unknown": 1}
    assert state.unreadable == 2 and state.recommendations == 3
    assert [shown.user_id for shown in state.recent] == ["b", "c"]  # the latest, oldest first
    assert [item.name for item in state.recent[-1].items] == ["Blue Kettle", "i2", "i3"]
    assert state.recent[-1].items[2].source == "exploration"


def test_the_view_shows_users_items_explanations_reasons_and_latency() -> None:
    state = WatchState()
    state.fold(event(0, 7, 1_000))
    state.fold(event(0, 8, 1_000))
    state.fold(rec(0, 7, 1_012, user="alice"))
    state.fold(rec(0, 8, 1_030, user="bob"))
    state.fold(WatchedRecord("dead_letter", 0, 0, 0, b"x", [("dlq.reason", b"bad_timestamp")]))
    out = io.StringIO()
    Console(file=out, width=200).print(render(state))
    text = out.getvalue()
    assert "events 2 | recommendations 2 | dead letters 1" in text
    assert "p50 21 ms, p99 30 ms (2 in the last 60 s)" in text
    assert "1. Blue Kettle (model): because of item 1" in text
    assert "3. i3 (exploration): because of item 3" in text
    assert text.index("bob") < text.index("alice")  # newest first
    assert "bad_timestamp" in text


def test_the_view_says_latency_is_pending_until_a_pair_is_matched() -> None:
    state = WatchState()
    assert math.isnan(state.latency()["p50"])
    out = io.StringIO()
    Console(file=out, width=200).print(render(state))
    assert "latency: waiting" in out.getvalue()
