"""The contract between the stream and the model: gap buckets, left-padding, event time,
the vocabulary file and the tensor specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract import (
    ATTRIBUTIONS,
    FIRST_ITEM_INDEX,
    N_GAP_BUCKETS,
    PAD_INDEX,
    UNKNOWN_INDEX,
    event_time_ms,
    gap_buckets,
    left_pad,
    read_vocab_items,
    write_vocab_items,
)

pytestmark = pytest.mark.unit

SECOND = 1000


def test_gap_buckets_pad_first_and_log_scale() -> None:
    t0 = 1_700_000_000_000
    gaps_s = [0, 1, 3600, 10**9]
    ts = np.cumsum([0, 0, t0, *(g * SECOND for g in gaps_s)])  # two pads, then five events
    valid = np.array([False, False, True, True, True, True, True])
    buckets = gap_buckets(np.where(valid, ts, 0), valid)
    expected = [0, 0, 1, 2, 3, 2 + int(np.log2(3601)), N_GAP_BUCKETS - 1]
    np.testing.assert_array_equal(buckets, expected)
    assert buckets.dtype == np.int64


def test_gap_buckets_batched_rows_are_independent_and_clip_negative_gaps() -> None:
    ts = np.array([[0, 5 * SECOND, 4 * SECOND], [0, 0, 7 * SECOND]])
    valid = np.array([[True, True, True], [False, False, True]])
    buckets = gap_buckets(ts, valid)
    # Row 0: 5 s -> floor(log2 6) = 2; a step back in time counts as no gap.
    np.testing.assert_array_equal(buckets, [[1, 4, 2], [0, 0, 1]])


def test_left_pad_keeps_the_newest_values_right_aligned() -> None:
    padded = left_pad([[1, 2, 3, 4], [7], []], 3, 0, np.int32)
    np.testing.assert_array_equal(padded, [[2, 3, 4], [0, 0, 7], [0, 0, 0]])
    assert padded.dtype == np.int32
    items = left_pad([("a", "b")], 3, "", object)
    assert items.tolist() == [["", "a", "b"]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000_000, 1_700_000_000_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        # Exact milliseconds: a float of seconds would make this ...000 (one lost).
        ("2023-11-14T22:13:20.001+00:00", 1_700_000_000_001),
        ("2023-11-14T23:13:20.999+01:00", 1_700_000_000_999),
    ],
)
def test_event_time_is_epoch_milliseconds_exactly(value: object, expected: int) -> None:
    assert event_time_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [("2023-11-14T22:13:20", ValueError), ("yesterday", ValueError), (1.7e12, TypeError), (True, TypeError)],
)
def test_event_time_rejects_what_the_contract_does_not_allow(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        event_time_ms(value)


def test_vocabulary_file_round_trip_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    write_vocab_items(path, ["x", "y"])
    assert read_vocab_items(path) == ["x", "y"]
    assert (PAD_INDEX, UNKNOWN_INDEX, FIRST_ITEM_INDEX) == (0, 1, 2)


def test_tensor_shapes_follow_window_and_top_k() -> None:
    assert ATTRIBUTIONS.shape(window=50, top_k=20) == [20, 50]
    assert ATTRIBUTIONS.config_type == "TYPE_FP32" and ATTRIBUTIONS.client_type == "FP32"
