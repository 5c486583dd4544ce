"""Loaders of every --format: one UserSequence representation, line-numbered errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract import ACTION_CODES, gap_buckets
from serving.datasets import SYNTHETIC_SPACING_MS, DataFormatError, load_dataset

pytestmark = pytest.mark.unit

VIEW = ACTION_CODES["view"]
EVENT_LINE = '{"event_id": "e", "user_id": "u", "item_id": "a", "action": "view", "ts": 1}\n'


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_movielens_u_data_orders_by_time_keeps_ties_in_file_order_and_reads_titles(tmp_path: Path) -> None:
    data = write(tmp_path / "u.data", "1\t10\t5\t300\n1\t11\t3\t100\n2\t10\t4\t50\n1\t12\t1\t300\n")
    write(tmp_path / "u.item", "10|Caf\xe9 (1995)|01-Jan-1995||url|0\n11|Heat (1995)|x\n", encoding="latin-1")
    dataset = load_dataset(data, "movielens")
    first, second = dataset.sequences
    assert (first.user_id, first.items) == ("1", ("11", "10", "12"))  # 10 and 12 tie at ts 300
    assert first.timestamps_ms == (100_000, 300_000, 300_000)
    assert first.actions == (VIEW, VIEW, VIEW) and len(set(first.event_ids)) == 3
    assert second.items == ("10",)
    assert dataset.item_titles == {"10": "Caf\xe9 (1995)", "11": "Heat (1995)"}


def test_movielens_ratings_dat_with_movies_dat(tmp_path: Path) -> None:
    data = write(tmp_path / "ratings.dat", "7::3::4::20\n7::1::5::10\n")
    write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation\n3::Heat (1995)::Action\n")
    dataset = load_dataset(data, "movielens")
    assert dataset.sequences[0].items == ("1", "3")
    assert dataset.item_titles["3"] == "Heat (1995)"


def test_user_lines_are_chronological_views_with_evenly_spaced_time(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path / "Beauty.txt", "2 5 6\n1 1 2 3\n\n"), "user-lines")
    assert [(s.user_id, s.items) for s in dataset.sequences] == [("1", ("1", "2", "3")), ("2", ("5", "6"))]
    seq = dataset.sequences[0]
    assert seq.actions == (VIEW,) * 3
    assert seq.timestamps_ms == (0, SYNTHETIC_SPACING_MS, 2 * SYNTHETIC_SPACING_MS)
    valid = np.ones(3, dtype=bool)
    gaps = gap_buckets(np.asarray(seq.timestamps_ms), valid)
    assert len(set(gaps[1:])) == 1  # a constant gap bucket: no invented timing signal
    assert dataset.item_titles == {}


def test_user_item_pairs_group_by_user_in_file_order(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path / "pairs.txt", "a x\nb y\na z\na x\n"), "user-item-pairs")
    assert [(s.user_id, s.items) for s in dataset.sequences] == [("a", ("x", "z", "x")), ("b", ("y",))]


def test_events_format_reads_the_project_json_lines(tmp_path: Path) -> None:
    events = [
        {"event_id": "e2", "user_id": "u", "item_id": "b", "action": "purchase", "ts": 2000},
        {"event_id": "e1", "user_id": "u", "item_id": "a", "action": "click", "ts": 1000},
    ]
    data = write(tmp_path / "events.jsonl", "".join(json.dumps(e) + "\n" for e in events))
    (seq,) = load_dataset(data, "events").sequences
    assert seq.items == ("a", "b") and seq.actions == (ACTION_CODES["click"], ACTION_CODES["purchase"])


@pytest.mark.parametrize(
    ("name", "data_format", "text"),
    [
        ("u.data", "movielens", "1\t2\t3\t4\n1\t2\t3\n"),
        ("u.data", "movielens", "1\t2\t3\t4\n1\t2\t3\tsoon\n"),
        ("ratings.dat", "movielens", "1::2::3::4\n1::2::3\n"),
        ("lines.txt", "user-lines", "1 2 3\nlonely\n"),
        ("pairs.txt", "user-item-pairs", "a x\na x y\n"),
        ("events.jsonl", "events", EVENT_LINE + "{not json\n"),
    ],
)
def test_malformed_line_names_the_file_and_line(
    tmp_path: Path, name: str, data_format: str, text: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(DataFormatError, match=f"{name}:2: "):
        load_dataset(path, data_format)


def test_events_with_missing_fields_or_unknown_action_are_malformed(tmp_path: Path) -> None:
    event = {"event_id": "e", "user_id": "u", "item_id": "a", "action": "like", "ts": 1}
    with pytest.raises(DataFormatError, match=r"events.jsonl:1: unknown action 'like'"):
        load_dataset(write(tmp_path / "events.jsonl", json.dumps(event) + "\n"), "events")
    del event["ts"]
    with pytest.raises(DataFormatError, match=r"events.jsonl:1: expected an object"):
        load_dataset(write(tmp_path / "events.jsonl", json.dumps(event) + "\n"), "events")


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data format"):
        load_dataset(tmp_path / "x.csv", "csv")
