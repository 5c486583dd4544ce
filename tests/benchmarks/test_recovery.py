"""The recovery benchmark's pure parts: the figures against the baselines, the table, the
windows it writes to the changelog, and its command's arguments."""

from __future__ import annotations

from typing import Literal

import pytest

from benchmarks.recovery_report import MIB, Start, render, rows
from benchmarks.synthetic_windows import synthetic_windows
from cli.main import build_parser
from stream.window import decode_window

pytestmark = pytest.mark.unit

HORIZON_MS = 30 * 24 * 3600 * 1000


def start(
    store: str, users: int, seconds: float, rss_mb: float, kind: Literal["changelog", "restart"] = "changelog"
) -> Start:
    return Start(store, kind, users, seconds, rss_mb, changelog_bytes=users * 1_300, write_seconds=1.0)


def test_each_start_is_set_against_the_baseline_of_its_store_and_kind() -> None:
    table = rows(
        [
            start("memory", 0, 6.0, 100.0),
            start("memory", 200_000, 46.0, 400.0),
            start("rocksdb", 0, 7.0, 110.0),
            start("rocksdb", 0, 5.0, 105.0, kind="restart"),
            start("rocksdb", 200_000, 107.0, 150.0),
            start("rocksdb", 200_000, 9.0, 125.0, kind="restart"),
        ]
    )
    memory, rocks, restart = table[1], table[4], table[5]
    assert memory.over_baseline_s == pytest.approx(40.0)
    assert memory.users_per_s == pytest.approx(5_000.0)
    assert memory.s_per_million == pytest.approx(200.0)
    assert memory.rss_bytes_per_user == pytest.approx(300 * MIB / 200_000)
    assert rocks.s_per_million == pytest.approx(500.0)  # against rocksdb's 7 s, not memory's 6 s
    assert restart.over_baseline_s == pytest.approx(4.0)  # against the empty restart's 5 s
    assert restart.rss_bytes_per_user == pytest.approx(20 * MIB / 200_000)
    assert (table[0].users_per_s, table[0].s_per_million, table[0].rss_bytes_per_user) == (None, None, None)


def test_a_start_no_slower_than_its_baseline_has_no_rate() -> None:
    """Small tables restore within the start-up noise: no rate is made up from it."""
    row = rows([start("memory", 0, 6.0, 100.0), start("memory", 2_000, 5.8, 101.0)])[1]
    assert row.over_baseline_s == pytest.approx(-0.2)
    assert (row.users_per_s, row.s_per_million) == (None, None)


def test_a_store_without_its_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="rocksdb restart"):
        rows([start("rocksdb", 0, 7.0, 110.0), start("rocksdb", 10, 7.5, 111.0, kind="restart")])


def test_the_table_has_a_row_per_start_and_dashes_for_figures_it_does_not_have() -> None:
    text = render(rows([start("memory", 0, 6.0, 100.0), start("memory", 200_000, 46.0, 400.0)]))
    header, rule, baseline, measured = text.splitlines()
    assert header.count("|") == rule.count("|") == baseline.count("|") == measured.count("|") == 10
    assert baseline == "| memory | changelog, baseline | 0 | 6.0 s | +0.0 s | - | - | - | 0.0 MB |"
    assert measured == (
        "| memory | changelog | 200,000 | 46.0 s | +40.0 s | 5,000 | 200 s | 1,573 B | 260.0 MB |"
    )


def test_the_generator_gives_distinct_users_whose_windows_decode() -> None:
    windows = list(synthetic_windows(25, 50, HORIZON_MS, group_users=10))
    users = [user for user, _ in windows]
    assert len(users) == len(set(users)) == 25
    decoded = {user: decode_window(value) for user, value in windows}
    for user, window in decoded.items():
        suffix = "." + user.rsplit(".", 1)[1]
        assert 1 <= len(window) <= 50
        assert all(event.event_id.endswith(suffix) for event in window)
        assert [event.ts_ms for event in window] == sorted(event.ts_ms for event in window)
        assert window[-1].ts_ms - window[0].ts_ms <= HORIZON_MS
    # a copy is its original under new ids: the same items, actions and times
    original, copy = decoded[users[0]], decoded[users[10]]
    assert users[10] == users[0].removesuffix(".0") + ".1"
    assert [(e.item_id, e.action, e.ts_ms) for e in copy] == [
        (e.item_id, e.action, e.ts_ms) for e in original
    ]
    assert {e.event_id for e in copy}.isdisjoint(e.event_id for e in original)


def test_the_command_takes_comma_separated_user_counts() -> None:
    parser = build_parser()
    assert parser.parse_args(["recovery"]).users == [100_000, 300_000]
    assert parser.parse_args(["recovery", "--users", "2000, 5000"]).users == [2_000, 5_000]
    for bad in ("0", "2k", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["recovery", "--users", bad])
