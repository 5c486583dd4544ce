import pytest

from stream.records import WindowEvent
from stream.window import decode_window, encode_window, merge_events

pytestmark = pytest.mark.unit

HOUR = 3_600_000


def ev(event_id: str, ts: int, item: str = "i", action: str = "view") -> WindowEvent:
    return WindowEvent(event_id, item, action, ts)


def ids(window: tuple[WindowEvent, ...]) -> list[str]:
    return [e.event_id for e in window]


def test_out_of_order_events_are_kept_in_event_time_order() -> None:
    window = merge_events((), [ev("c", 30), ev("a", 10)], size=10, horizon_ms=HOUR)
    window = merge_events(window, [ev("b", 20)], size=10, horizon_ms=HOUR)
    assert ids(window) == ["a", "b", "c"]


def test_capacity_keeps_the_newest_events() -> None:
    window = merge_events((), [ev(f"e{i}", i) for i in range(8)], size=3, horizon_ms=HOUR)
    assert ids(window) == ["e5", "e6", "e7"]


def test_horizon_drops_events_older_than_the_newest_minus_horizon() -> None:
    window = merge_events((), [ev("old", 0), ev("mid", HOUR), ev("new", 2 * HOUR)], 10, HOUR)
    assert ids(window) == ["mid", "new"]


def test_duplicate_event_id_is_ignored_and_first_copy_wins() -> None:
    window = merge_events((), [ev("a", 10, item="first")], 10, HOUR)
    again = merge_events(window, [ev("a", 99, item="second")], 10, HOUR)
    assert again == window


def test_redelivering_any_seen_event_leaves_the_window_unchanged() -> None:
    events = [ev(f"e{i}", (i * 7919) % 50) for i in range(40)]
    window = ()
    for event in events:
        window = merge_events(window, [event], size=5, horizon_ms=HOUR)
    for event in events:  # includes events evicted long ago
        assert merge_events(window, [event], size=5, horizon_ms=HOUR) == window


def test_equal_timestamps_are_ordered_by_event_id() -> None:
    window = merge_events((), [ev("b", 5), ev("a", 5)], 10, HOUR)
    assert ids(window) == ["a", "b"]


def test_encoding_round_trips_and_is_compact() -> None:
    window = tuple(
        ev(f"evt-{i:06d}", 1_700_000_000_000 + i * 1000, f"item-{i}", "add_to_cart") for i in range(50)
    )
    raw = encode_window(window)
    assert decode_window(raw) == window
    assert decode_window(encode_window(())) == () == decode_window(None)
    assert len(raw) < 50 * 40


def test_windows_spanning_more_than_49_days_use_the_wide_encoding() -> None:
    window = (ev("a", 0), ev("b", 60 * 86_400_000))  # offsets no longer fit 32 bits
    assert decode_window(encode_window(window)) == window
    assert len(encode_window(window)) > len(encode_window((ev("a", 0), ev("b", 1))))


def test_a_corrupt_table_value_is_an_error_not_a_wrong_window() -> None:
    raw = encode_window((ev("a", 1), ev("b", 2)))
    with pytest.raises(ValueError, match="format"):
        decode_window(b"\x09" + raw[1:])
    with pytest.raises(ValueError, match="count"):
        decode_window(raw + b"\x00extra")
