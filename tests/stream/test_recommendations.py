import numpy as np
import orjson
import pytest
from tritonclient.utils import deserialize_bytes_tensor

from stream.inference import ScoredBatch
from stream.outputs import dead_letter_headers
from stream.recommendations import build_recommendations, encode_recommendation
from stream.records import UserUpdate, WindowEvent, recommendation_id
from stream.triton_codec import decode_strings, encode_windows
from stream.validation import InvalidEvent

pytestmark = pytest.mark.unit

WINDOW = (
    WindowEvent("e1", "shoes", "view", 1_000),
    WindowEvent("e2", "socks", "click", 2_000),
    WindowEvent("e3", "laces", "add_to_cart", 3_000),
)


def scored(items: list[str], attributions: list[list[float]]) -> ScoredBatch:
    """One window's model output; attribution rows cover the window's newest events."""
    return ScoredBatch(
        model_version="3",
        items=[items],
        scores=np.array([[0.5, 0.25, 0.125][: len(items)]], dtype=np.float32),
        attributions=np.array([attributions], dtype=np.float32),
    )


def test_recommendation_record_carries_ranked_explained_items() -> None:
    attributions = [[0.0, 0.1, 0.9], [0.7, 0.3, 0.0], [0.0, 0.0, 0.0]]
    [rec] = build_recommendations(
        [UserUpdate("u1", "e3", WINDOW, 0, 7)],
        scored(["laces", "boots", "hats"], attributions),
        model_name="nextaction",
        top_k=2,
        now_ms=42,
    )
    assert rec["recommendation_id"] == recommendation_id("u1", "e3")
    assert rec["model_version"] == "3"
    assert [(i["item_id"], i["rank"]) for i in rec["items"]] == [("laces", 1), ("boots", 2)]
    laces = rec["items"][0]["explanation"]
    assert [e["event_id"] for e in laces["events"]] == ["e3", "e2"]
    assert laces["events"][0]["weight"] == pytest.approx(0.9)
    assert "added it to your cart" in laces["sentence"]
    assert "viewed shoes" in rec["items"][1]["explanation"]["sentence"]

    doc = orjson.loads(encode_recommendation(rec))
    assert doc["user_id"] == "u1" and doc["trigger_event_id"] == "e3"
    assert doc["watermark"] == {
        "event_ts_ms": 3_000,
        "event_id": "e3",
        "source_partition": 0,
        "source_offset": 7,
    }
    assert doc["items"][0]["explanation"]["events"][0] == {
        "event_id": "e3",
        "item_id": "laces",
        "action": "add_to_cart",
        "ts_ms": 3_000,
        "weight": 0.9,
    }


def test_attributions_over_a_window_tail_map_to_the_newest_events() -> None:
    # The model saw only the last two events; weight 1.0 belongs to e3.
    [rec] = build_recommendations(
        [UserUpdate("u1", "e3", WINDOW, 0, 7)], scored(["x"], [[0.0, 1.0]]), model_name="m", top_k=5, now_ms=0
    )
    assert [e["event_id"] for e in rec["items"][0]["explanation"]["events"]] == ["e3"]


def test_padding_columns_are_never_cited_and_equal_weights_cite_newer_first() -> None:
    # A model window of 5 over a 3-event window: two padding columns on the left.
    [rec] = build_recommendations(
        [UserUpdate("u1", "e3", WINDOW, 0, 7)],
        scored(["x"], [[0.5, 0.5, 0.0, 0.5, 0.5]]),
        model_name="m",
        top_k=1,
        now_ms=0,
    )
    assert [e["event_id"] for e in rec["items"][0]["explanation"]["events"]] == ["e3", "e2"]


def test_recommendation_id_is_deterministic_and_distinct() -> None:
    assert recommendation_id("u1", "e1") == recommendation_id("u1", "e1")
    assert recommendation_id("u1", "e1") != recommendation_id("u1", "e2")
    assert recommendation_id("u1", "e2") != recommendation_id("u2", "e1")


def test_dead_letter_headers_say_why_and_where() -> None:
    headers = dict(dead_letter_headers(InvalidEvent("not_json", "bad"), "events", 2, 17))
    assert headers == {
        "dlq.reason": b"not_json",
        "dlq.detail": b"bad",
        "dlq.source.topic": b"events",
        "dlq.source.partition": b"2",
        "dlq.source.offset": b"17",
    }


def test_windows_are_left_padded_to_the_model_length_newest_last() -> None:
    items, actions, stamps = encode_windows([WINDOW, WINDOW[:1]], length=2)
    # ITEM_IDS comes serialized for Triton; tritonclient's own decoder must read it back.
    assert deserialize_bytes_tensor(items).reshape(2, 2).tolist() == [[b"socks", b"laces"], [b"", b"shoes"]]
    assert decode_strings(items) == ["socks", "laces", "", "shoes"]
    assert actions.tolist() == [[2, 3], [0, 1]]
    assert stamps.dtype == np.int64 and stamps.tolist() == [[2_000, 3_000], [0, 1_000]]
