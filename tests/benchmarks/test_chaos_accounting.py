"""The chaos run's accounting and table: messages in against records and dead letters out,
windows against a replay, and how rows are rendered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.chaos.accounting import (
    InputMessage,
    OutputRecord,
    account,
    expected_windows,
    window_mismatches,
)
from benchmarks.chaos.fuzz import fuzzed_messages, interleave
from benchmarks.chaos.report import COLUMNS, Row, render_table, write_report
from stream.records import WindowEvent
from stream.settings import Settings
from stream.window import encode_window

pytestmark = pytest.mark.unit

SETTINGS = Settings(window_size=3)
TS = 1_700_000_000_000


def event(user: str, event_id: str, ts: int = TS) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": "i0001", "action": "view", "ts": ts}


def message(offset: int, value: bytes, key: bytes = b"u1", partition: int = 0) -> InputMessage:
    return InputMessage(partition, offset, key, value, TS)


def recommendation(user: str, trigger: str, offset: int, partition: int = 0) -> dict[str, Any]:
    return {
        "recommendation_id": f"{user}/{trigger}",
        "user_id": user,
        "watermark": {"source_partition": partition, "source_offset": offset},
    }


def dead_letter(offset: int, partition: int = 0) -> OutputRecord:
    return OutputRecord(
        b"u1",
        b"",
        {"dlq.source.partition": str(partition).encode(), "dlq.source.offset": str(offset).encode()},
    )


def test_a_valid_event_counts_as_processed_when_a_later_trigger_of_its_user_was_delivered() -> None:
    inputs = [message(0, orjson.dumps(event("u1", "e0"))), message(1, orjson.dumps(event("u1", "e1")))]
    result = account(inputs, [recommendation("u1", "e1", 1)], [], SETTINGS)
    assert (result.processed, result.dead_lettered, result.lost) == (2, 0, ())


def test_events_after_the_last_delivered_trigger_are_lost() -> None:
    inputs = [message(0, orjson.dumps(event("u1", "e0"))), message(1, orjson.dumps(event("u1", "e1")))]
    result = account(inputs, [recommendation("u1", "e0", 0)], [], SETTINGS)
    assert result.lost == ((0, 1),) and result.accounted == 1


def test_a_trigger_of_another_user_or_partition_covers_nothing() -> None:
    inputs = [message(0, orjson.dumps(event("u1", "e0")))]
    records = [recommendation("u2", "x", 5), recommendation("u1", "y", 5, partition=1)]
    assert account(inputs, records, [], SETTINGS).lost == ((0, 0),)


def test_an_invalid_message_needs_a_dead_letter_of_its_own_offset() -> None:
    inputs = [message(0, b"not json"), message(1, orjson.dumps(event("u1", "e1")))]
    records = [recommendation("u1", "e1", 1)]
    assert account(inputs, records, [], SETTINGS).lost == ((0, 0),)  # a later trigger is no excuse
    result = account(inputs, records, [dead_letter(0)], SETTINGS)
    assert (result.processed, result.dead_lettered, result.lost) == (1, 1, ())


def test_redelivered_records_and_dead_letters_count_as_duplicates() -> None:
    inputs = [message(0, b"{"), message(1, orjson.dumps(event("u1", "e1")))]
    records = [recommendation("u1", "e1", 1)] * 3
    result = account(inputs, records, [dead_letter(0), dead_letter(0)], SETTINGS)
    assert (result.duplicate_recommendations, result.duplicate_dead_letters, result.duplicates) == (2, 1, 3)


def test_the_replayed_window_keeps_the_newest_valid_events_only() -> None:
    inputs = [message(n, orjson.dumps(event("u1", f"e{n}", TS + n))) for n in range(5)]
    inputs.append(message(5, b"garbage"))
    inputs.append(message(6, orjson.dumps(event("u1", "e1", TS + 1))))  # a redelivery changes nothing
    windows = expected_windows(inputs, SETTINGS)
    assert [[e.event_id for e in window] for window in windows["u1"]] == [["e2", "e3", "e4"]]


def test_the_replay_evicts_users_idle_behind_their_partitions_newest_event_or_not_yet() -> None:
    settings = Settings(window_size=3, user_idle_evict_s=3600)
    minute = 60_000
    arrivals = [  # (user, event id, minutes after TS, partition)
        ("u1", "a", 0, 0),
        ("u2", "b", 10, 0),
        ("u3", "c", 20, 0),
        ("u2", "d", 120, 0),  # the partition's clock moves two hours on: u1 and u3 are idle
        ("u1", "e", 150, 0),  # u1 comes back: a fresh window, or the old one not yet evicted
        ("u4", "f", 0, 1),  # another partition keeps its own clock
    ]
    inputs = [
        InputMessage(
            partition,
            offset,
            user.encode(),
            orjson.dumps(event(user, eid, TS + at * minute)),
            TS + at * minute,
        )
        for offset, (user, eid, at, partition) in enumerate(arrivals)
    ]
    windows = expected_windows(inputs, settings)
    assert {
        user: {"".join(e.event_id for e in window) for window in options} for user, options in windows.items()
    } == {
        "u1": {"e", "ae"},
        "u2": {"bd"},
        "u3": {"c", ""},  # idle at the end: evicted, or still waiting for the eviction
        "u4": {"f"},
    }


def test_a_stored_window_that_differs_is_reported_and_the_newest_value_counts() -> None:
    window = (WindowEvent("e1", "i1", "view", TS),)
    expected = {"u1": frozenset({window})}
    right = OutputRecord(b"u1", encode_window(window), {})
    stale = OutputRecord(b"u1", encode_window(()), {})
    assert window_mismatches(expected, [stale, right]) == []
    assert window_mismatches(expected, [right, stale]) == ["u1"]
    assert window_mismatches(expected, []) == ["u1"]
    assert window_mismatches({}, [OutputRecord(b"u2", b"\x09corrupt", {})]) == ["u2"]
    either = {"u1": frozenset({window, ()})}  # an idle user: evicted or not yet
    assert window_mismatches(either, [right]) == [] and window_mismatches(either, []) == []


def test_fuzzing_is_seeded_and_interleaving_keeps_each_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tools.hostile.time.time", lambda: 1_800_000_000.0)  # future_ts reads the clock
    bases = [event("u1", "e0"), event("u2", "e1")]
    assert list(fuzzed_messages(bases, 50, seed=3)) == list(fuzzed_messages(bases, 50, seed=3))
    assert list(fuzzed_messages(bases, 50, seed=3)) != list(fuzzed_messages(bases, 50, seed=4))
    valid = [(b"k", bytes([n])) for n in range(20)]
    fuzzed: list[tuple[bytes | None, bytes]] = [(b"f", bytes([n])) for n in range(20)]
    merged = interleave(valid, fuzzed, seed=1)
    assert [m for m in merged if m[0] == b"k"] == valid and [m for m in merged if m[0] == b"f"] == fuzzed


def test_the_table_has_a_row_per_scenario_and_says_what_failed(tmp_path: Path) -> None:
    held = Row("1 fuzz", "100 events", "fuzz", events_in=1200, accounted=1200, recovery_s=2.345)
    failed = Row("2 kill", "load", "a | b", events_in=10, accounted=9, lost=1)
    failed.require(False, "1 lost")
    failed.require(True, "never shown")
    table = render_table([held, failed])
    lines = table.splitlines()
    assert len(lines) == 4 and all(column in lines[0] for column in COLUMNS)
    assert "| 1,200 |" in lines[2] and "2.3 s" in lines[2] and "held" in lines[2]
    assert "FAILED: 1 lost" in lines[3] and "never shown" not in table and "a \\| b" in lines[3]
    json_path = write_report([held, failed], tmp_path / "chaos.md")
    assert (tmp_path / "chaos.md").read_text() == table
    assert [row["held"] for row in json.loads(json_path.read_text())] == [True, False]
