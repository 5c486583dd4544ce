import numpy as np
import orjson
import pytest
from tritonclient.utils import deserialize_bytes_tensor

from contract import SIGNAL_CODES
from stream.outputs import dead_letter_headers
from stream.recommendations import Presentation, build_recommendations, encode_recommendation
from stream.records import Recommendation, UserUpdate, WindowEvent, recommendation_id
from stream.rerank import RerankPolicy
from stream.scored_batch import ScoredBatch
from stream.triton_codec import decode_strings, encode_windows
from stream.validation import InvalidEvent
from stream.wording import ItemTitles

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
        presentation=Presentation(),
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
        "signal": "same_item",
    }
    assert doc["items"][0]["source"] == "model" and doc["items"][0]["title"] is None


def test_attributions_over_a_window_tail_map_to_the_newest_events() -> None:
    # The model saw only the last two events; weight 1.0 belongs to e3.
    [rec] = build_recommendations(
        [UserUpdate("u1", "e3", WINDOW, 0, 7)],
        scored(["x"], [[0.0, 1.0]]),
        model_name="m",
        top_k=5,
        now_ms=0,
        presentation=Presentation(),
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
        presentation=Presentation(),
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


def described(
    items: list[str],
    attributions: list[list[float]],
    *,
    similarities: list[list[float]],
    signals: list[list[int]],
    popularity: list[float],
) -> ScoredBatch:
    """One window's output from a version that serves similarities, signals and popularity."""
    base = scored(items, attributions)
    return ScoredBatch(
        model_version=base.model_version,
        items=base.items,
        scores=base.scores,
        attributions=base.attributions,
        similarities=np.array([similarities], dtype=np.float32),
        signals=np.array([signals], dtype=np.int8),
        popularity=np.array([popularity], dtype=np.float32),
    )


def recommend(batch: ScoredBatch, presentation: Presentation, top_k: int = 3) -> Recommendation:
    [rec] = build_recommendations(
        [UserUpdate("u1", "e3", WINDOW, 0, 7)],
        batch,
        model_name="m",
        top_k=top_k,
        now_ms=3_000 + 3 * 60_000,
        presentation=presentation,
    )
    return rec


SIMILAR, PATTERN, CONTEXT = (
    SIGNAL_CODES["similar_item"],
    SIGNAL_CODES["sequence_pattern"],
    SIGNAL_CODES["context"],
)


def test_explanations_name_titles_say_how_long_ago_and_what_kind_of_signal() -> None:
    batch = described(
        ["boots", "hats", "gloves"],
        [[0.0, 0.2, 0.8], [0.9, 0.1, 0.0], [0.0, 0.0, 0.0]],
        similarities=[[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]],
        signals=[[CONTEXT, CONTEXT, SIMILAR], [PATTERN, CONTEXT, CONTEXT], [CONTEXT] * 3],
        popularity=[0.5, 0.6, 0.05],
    )
    titles = ItemTitles(boots="Trail boots", laces="Red laces", shoes="Running shoes", gloves="Wool gloves")
    rec = recommend(batch, Presentation(RerankPolicy(diversity=0.0, exploration_slots=0), titles))
    boots, hats, gloves = (item["explanation"] for item in rec["items"])
    assert rec["items"][0]["title"] == "Trail boots" and rec["items"][1]["title"] is None
    assert boots["reason"] == "similar_item" and [e["signal"] for e in boots["events"]] == [
        "similar_item",
        "context",
    ]
    assert boots["sentence"].startswith(
        "Trail boots: it is similar to Red laces; you added it to your cart 3 minutes ago (80%"
    )
    assert hats["reason"] == "sequence_pattern"
    assert hats["sentence"].startswith(
        "hats: you viewed Running shoes 3 minutes ago, and people who did often choose it next"
    )
    # Nothing in the window drives gloves, and they are in the popular head.
    assert gloves["events"] == [] and gloves["reason"] == "popular"
    assert "Wool gloves is one of the most popular items" in gloves["sentence"]


def test_diversity_replaces_a_near_duplicate_and_exploration_takes_the_last_slot() -> None:
    items = ["a", "a-twin", "b", "tail"]
    batch = described(
        items,
        [[0.0, 0.0, 1.0]] * 4,
        similarities=[
            [1.0, 0.99, 0.1, 0.1],
            [0.99, 1.0, 0.1, 0.1],
            [0.1, 0.1, 1.0, 0.1],
            [0.1, 0.1, 0.1, 1.0],
        ],
        signals=[[CONTEXT] * 3] * 4,
        popularity=[0.01, 0.02, 0.1, 0.9],
    )
    batch = ScoredBatch(
        model_version="3",
        items=batch.items,
        scores=np.array([[0.4, 0.35, 0.2, 0.05]], dtype=np.float32),
        attributions=np.repeat(batch.attributions, 4, axis=1)[:, :4],
        similarities=batch.similarities,
        signals=np.repeat(batch.signals, 4, axis=1)[:, :4],
        popularity=batch.popularity,
    )
    plain = recommend(batch, Presentation(RerankPolicy(diversity=0.0, exploration_slots=0)), top_k=2)
    assert [i["item_id"] for i in plain["items"]] == ["a", "a-twin"]
    diverse = recommend(batch, Presentation(RerankPolicy(diversity=0.5, exploration_slots=0)), top_k=2)
    assert [i["item_id"] for i in diverse["items"]] == ["a", "b"]
    assert {i["source"] for i in diverse["items"]} == {"model"}
    explored = recommend(batch, Presentation(RerankPolicy(diversity=0.5, exploration_slots=1)), top_k=2)
    assert [(i["item_id"], i["source"]) for i in explored["items"]] == [
        ("a", "model"),
        ("tail", "exploration"),
    ]
    assert explored["items"][1]["explanation"]["reason"] == "exploration"
    assert [i["rank"] for i in explored["items"]] == [1, 2]


def test_a_version_without_similarities_is_published_in_its_own_order() -> None:
    rec = recommend(
        scored(["a", "b", "c"], [[0.0, 0.0, 1.0]] * 3), Presentation(RerankPolicy(0.9, exploration_slots=1))
    )
    assert [(i["item_id"], i["source"]) for i in rec["items"]] == [
        ("a", "model"),
        ("b", "model"),
        ("c", "model"),
    ]


def test_the_same_trigger_gets_the_same_items_whatever_batch_it_is_scored_in() -> None:
    """Exploration is seeded by the record's id: a redelivered or recomputed record repeats."""
    rng = np.random.default_rng(0)
    k = 8
    vectors = rng.normal(size=(k, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def batch_of(rows: int) -> ScoredBatch:
        return ScoredBatch(
            model_version="3",
            items=[[f"i{c}" for c in range(k)]] * rows,
            scores=np.tile(np.linspace(0.3, 0.01, k, dtype=np.float32), (rows, 1)),
            attributions=np.zeros((rows, k, 3), dtype=np.float32),
            similarities=np.tile((vectors @ vectors.T).astype(np.float32), (rows, 1, 1)),
            signals=np.full((rows, k, 3), CONTEXT, dtype=np.int8),
            popularity=np.tile(np.linspace(0.05, 0.95, k, dtype=np.float32), (rows, 1)),
        )

    policy = Presentation(RerankPolicy(diversity=0.3, exploration_slots=2))
    updates = [UserUpdate(f"u{n}", f"e{n}", WINDOW, 0, n) for n in range(40)]
    together = build_recommendations(
        updates, batch_of(40), model_name="m", top_k=5, now_ms=0, presentation=policy
    )
    for n in (0, 17, 39):
        [alone] = build_recommendations(
            [updates[n]], batch_of(1), model_name="m", top_k=5, now_ms=0, presentation=policy
        )
        assert alone["items"] == together[n]["items"]
    # Different triggers explore differently: the sampled slots are not all alike.
    assert len({tuple(i["item_id"] for i in rec["items"]) for rec in together}) > 1


def test_scores_keep_six_significant_digits_so_a_tiny_probability_is_not_published_as_zero() -> None:
    batch = scored(["a", "b", "c"], [[0.0, 0.0, 1.0]] * 3)
    batch = ScoredBatch(
        model_version=batch.model_version,
        items=batch.items,
        scores=np.array([[0.987654321, 1.234567e-3, 3.2e-8]], dtype=np.float32),
        attributions=batch.attributions,
    )
    rec = recommend(batch, Presentation())
    doc = orjson.loads(encode_recommendation(rec))
    assert [item["score"] for item in doc["items"]] == [0.987654, 0.00123457, 3.2e-08]
