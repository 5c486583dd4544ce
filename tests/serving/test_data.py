"""Event files, user sequences and training windows, encoded as the server encodes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_fixtures import item_of

from contract import PAD_INDEX
from serving.data import (
    DataFormatError,
    UserSequence,
    encode_windows,
    item_text,
    read_events_jsonl,
    training_samples,
    user_sequences,
)
from serving.vocab import ItemVocab

pytestmark = pytest.mark.unit

SECOND = 1000


def events_of(user: str, items: str, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{user}-{n}",
            "user_id": user,
            "item_id": item,
            "action": "view",
            "ts": start + n * SECOND,
        }
        for n, item in enumerate(items)
    ]


def test_user_sequences_group_and_order_by_time() -> None:
    events = events_of("u2", "xy") + events_of("u1", "abc")
    events[0], events[1] = events[1], events[0]  # out of order on arrival
    sequences = user_sequences(events)
    assert [s.user_id for s in sequences] == ["u1", "u2"]
    assert sequences[1].items == ("x", "y")
    assert sequences[0].actions == (1, 1, 1)
    with pytest.raises(ValueError, match="unknown action"):
        user_sequences([{**events[0], "action": "like"}])


def test_encode_windows_left_pads_and_keeps_the_newest() -> None:
    vocab = ItemVocab(tuple("abcdefghi"))
    long = UserSequence("u1", tuple("12345"), tuple("abcde"), (1,) * 5, tuple(n * SECOND for n in range(5)))
    short = UserSequence("u2", ("9",), ("h",), (4,), (SECOND,))
    items, actions, gaps = encode_windows([long, short], vocab, window=3)
    np.testing.assert_array_equal(items, [[4, 5, 6], [PAD_INDEX, PAD_INDEX, 9]])
    np.testing.assert_array_equal(actions[1], [0, 0, 4])
    np.testing.assert_array_equal(gaps, [[1, 3, 3], [0, 0, 1]])


def test_training_samples_target_every_later_event_once_from_the_served_window() -> None:
    window = 4
    sequences = user_sequences(events_of("u1", "abcdefghij") + events_of("u2", "ab"))
    vocab = ItemVocab.build("abcdefghi")  # j unknown: no sample for it
    samples = training_samples(sequences, vocab, window)
    assert len(samples) == 8 + 1
    picked = np.arange(len(samples))
    items, actions, gaps, targets = samples.windows(picked)
    assert items.shape == (9, window)
    assert sorted(item_of(vocab, int(t)) for t in targets) == sorted("bcdefghi" + "b")
    # Each sample's window is what the server would encode from the events before its target.
    for row, target in enumerate(targets):
        user = sequences[0] if row < 8 else sequences[1]  # u1's samples come first
        before = user.head(user.items.index(item_of(vocab, int(target))))
        expected = encode_windows([before], vocab, window)
        for ours, served in zip((items[row], actions[row], gaps[row]), expected, strict=True):
            np.testing.assert_array_equal(ours, served[0])
    # A batch of short windows is cut to its longest.
    short = samples.windows(np.array([0, 1]))  # targets b and c: one and two events before
    assert short[0].shape == (2, 2)
    a, b = vocab.index("a"), vocab.index("b")
    np.testing.assert_array_equal(short[0], [[PAD_INDEX, a], [a, b]])


def test_an_event_file_with_a_bad_timestamp_names_the_file_and_line(tmp_path: Path) -> None:
    good = events_of("u1", "ab")
    bad = {**good[1], "event_id": "u1-x", "ts": "2023-11-14 22:13"}
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [*good, bad]) + "\n")
    with pytest.raises(DataFormatError, match=r"events.jsonl:3: .*time zone"):
        list(read_events_jsonl(path))


@pytest.mark.parametrize(
    "ts", ["2023-11-14T22:13:20.001+00:00", 1_700_000_000_001, 1_700_000_000_001.0, "1700000000001"]
)
def test_event_file_timestamps_read_as_epoch_milliseconds(tmp_path: Path, ts: object) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({**events_of("u1", "a")[0], "ts": ts}) + "\n")
    [read] = read_events_jsonl(path)
    assert read["ts"] == 1_700_000_000_001


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"item_id": "a1", "text": "A lamp"}, ("a1", "A lamp")),
        ({"item_id": 42, "text": "An int id, as events carry it"}, ("42", "An int id, as events carry it")),
        ({"item_id": True, "text": "a bool is no id"}, None),
        ({"item_id": " ", "text": "blank id"}, None),
        ({"item_id": "a1", "text": "  "}, None),
        ({"item_id": "a1"}, None),
        ({"item_id": "a1", "text": 3}, None),
        (None, None),
        (["a1", "text"], None),
    ],
)
def test_an_item_text_record_is_an_id_and_a_text(record: object, expected: tuple[str, str] | None) -> None:
    assert item_text(record) == expected
