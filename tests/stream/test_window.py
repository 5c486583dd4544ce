import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import ACTION_CODES
from stream.records import Window, WindowEvent
from stream.window import CorruptWindow, decode_window, encode_window, merge_events

pytestmark = pytest.mark.unit

HOUR = 3_600_000


def ev(event_id: str, ts: int, item: str = "i", action: str = "view") -> WindowEvent:
    return WindowEvent(event_id, item, action, ts)


def ids(window: tuple[WindowEvent, ...]) -> list[str]:
    return [e.event_id for e in window]


def merged(window: Window, events: list[WindowEvent], size: int = 10, horizon_ms: int = HOUR) -> Window:
    return merge_events(window, events, size, horizon_ms).window


def test_out_of_order_events_are_kept_in_event_time_order() -> None:
    window = merged((), [ev("c", 30), ev("a", 10)])
    window = merged(window, [ev("b", 20)])
    assert ids(window) == ["a", "b", "c"]


def test_capacity_keeps_the_newest_events() -> None:
    window = merged((), [ev(f"e{i}", i) for i in range(8)], size=3)
    assert ids(window) == ["e5", "e6", "e7"]


def test_horizon_drops_events_older_than_the_newest_minus_horizon() -> None:
    window = merged((), [ev("old", 0), ev("mid", HOUR), ev("new", 2 * HOUR)])
    assert ids(window) == ["mid", "new"]


def test_a_redelivered_event_is_ignored_without_conflict() -> None:
    window = merged((), [ev("a", 10)])
    assert merge_events(window, [ev("a", 10)], 10, HOUR) == (window, ())


def test_an_event_id_seen_with_other_content_is_a_conflict_and_the_first_copy_stays() -> None:
    window = merged((), [ev("a", 10, item="first")])
    second = ev("a", 99, item="second")
    assert merge_events(window, [second], 10, HOUR) == (window, (second,))
    in_one_batch = merge_events((), [ev("b", 1), ev("b", 1, action="click"), ev("b", 1)], 10, HOUR)
    assert in_one_batch.window == (ev("b", 1),)
    assert in_one_batch.conflicts == (ev("b", 1, action="click"),)


def test_redelivering_any_seen_event_leaves_the_window_unchanged() -> None:
    events = [ev(f"e{i}", (i * 7919) % 50) for i in range(40)]
    window = ()
    for event in events:
        window = merged(window, [event], size=5)
    for event in events:  # includes events evicted long ago
        assert merged(window, [event], size=5) == window


def test_equal_timestamps_are_ordered_by_event_id() -> None:
    window = merged((), [ev("b", 5), ev("a", 5)])
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
    with pytest.raises(CorruptWindow, match="format"):
        decode_window(b"\x09" + raw[1:])
    with pytest.raises(CorruptWindow, match="count"):
        decode_window(raw + b"\x00extra")


@given(st.binary(max_size=300))
def test_any_stored_bytes_decode_to_a_window_or_corrupt_window(raw: bytes) -> None:
    try:
        window = decode_window(raw)
    except CorruptWindow:
        return
    assert all(isinstance(event, WindowEvent) for event in window)


window_events = st.builds(
    WindowEvent,
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8),
    st.sampled_from(sorted(ACTION_CODES)),
    st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999),
)


@given(
    st.lists(st.lists(window_events, max_size=6), max_size=6),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=10**12),
)
def test_any_arrivals_give_an_ordered_bounded_window_that_replays_cannot_change(
    batches: list[list[WindowEvent]], size: int, horizon_ms: int
) -> None:
    # One content per event id: a redelivery. (A conflicting copy is refused only while the
    # window still holds the original; that is tested above.)
    first: dict[str, WindowEvent] = {}
    batches = [[first.setdefault(event.event_id, event) for event in batch] for batch in batches]
    window: Window = ()
    for batch in batches:
        window = merge_events(window, batch, size, horizon_ms).window
        keys = [(event.ts_ms, event.event_id) for event in window]
        assert keys == sorted(keys) and len(window) <= size
        if window:
            assert window[0].ts_ms >= window[-1].ts_ms - horizon_ms
        assert decode_window(encode_window(window)) == window
    for batch in batches:
        assert merge_events(window, batch, size, horizon_ms).window == window
