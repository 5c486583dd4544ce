"""The fallback's recommendations: learned from the stream, explained by how they were chosen,
bounded in memory."""

from __future__ import annotations

import pytest

from stream import fallback
from stream.fallback import FallbackRecommender
from stream.records import UserUpdate, WindowEvent, recommendation_id

pytestmark = pytest.mark.unit

NOW = 1_700_000_600_000


def seen(item_id: str, index: int, action: str = "view") -> WindowEvent:
    return WindowEvent(f"e{index}-{item_id}", item_id, action, NOW - 600_000 + index * 1000)


def learn_histories(recommender: FallbackRecommender, histories: list[list[str]]) -> None:
    for history in histories:
        recommender.learn(None, [seen(item, index) for index, item in enumerate(history)])


def update(user_id: str, items: list[str]) -> UserUpdate:
    window = tuple(seen(item, index) for index, item in enumerate(items))
    return UserUpdate(user_id, window[-1].event_id, window, 0, 7)


def test_items_that_followed_the_users_newest_events_come_first_with_the_events_cited() -> None:
    recommender = FallbackRecommender()
    learn_histories(recommender, [["tent", "stove"]] * 3 + [["tent", "lamp"], ["x", "y"], ["x", "y"]])
    (record,) = recommender.recommend([update("ann", ["boots", "tent"])], model_name="m", top_k=3, now_ms=NOW)
    assert record["source"] == "fallback" and record["model_version"] is None
    assert record["recommendation_id"] == recommendation_id("ann", record["trigger_event_id"])
    assert record["watermark"]["event_id"] == "e1-tent" and record["watermark"]["source_offset"] == 7
    items = record["items"]
    assert [item["item_id"] for item in items[:2]] == ["stove", "lamp"]
    assert [item["rank"] for item in items] == [1, 2, 3]
    top = items[0]["explanation"]
    assert [event["event_id"] for event in top["events"]] == ["e1-tent"]
    assert 0.9 < top["events"][0]["weight"] <= 1.0  # the rest is the item's popularity
    assert top["sentence"].startswith(
        "stove: you viewed tent 9 minutes ago, and people who did often choose it next"
    )
    assert top["reason"] == "sequence_pattern" and top["events"][0]["signal"] == "sequence_pattern"
    assert {item["source"] for item in items} == {"fallback"}
    assert "fallback" in top["sentence"]


def test_without_followers_the_popular_items_fill_the_list_and_say_so() -> None:
    recommender = FallbackRecommender()
    learn_histories(recommender, [["a"], ["b"], ["b"], ["c"], ["b"], ["c"]])
    (record,) = recommender.recommend([update("bo", ["new"])], model_name="m", top_k=2, now_ms=NOW)
    assert [item["item_id"] for item in record["items"]] == ["b", "c"]
    assert record["items"][0]["explanation"]["events"] == []
    assert "b is popular right now" in record["items"][0]["explanation"]["sentence"]
    assert record["items"][0]["explanation"]["reason"] == "popular_now"


def test_the_item_just_seen_is_not_recommended_back() -> None:
    recommender = FallbackRecommender()
    learn_histories(recommender, [["a", "b", "a", "b"]])
    (record,) = recommender.recommend([update("cy", ["a", "b"])], model_name="m", top_k=5, now_ms=NOW)
    assert "b" not in [item["item_id"] for item in record["items"]]


def test_recent_popularity_outweighs_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback, "_HALF_LIFE_EVENTS", 10)
    recommender = FallbackRecommender()
    learn_histories(recommender, [["old"]] * 30 + [["new"]] * 10)
    (record,) = recommender.recommend([update("di", ["z"])], model_name="m", top_k=1, now_ms=NOW)
    assert record["items"][0]["item_id"] == "new"


def test_memory_stays_bounded_however_many_items_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback, "_MAX_ITEMS", 50)
    monkeypatch.setattr(fallback, "_MAX_FOLLOWERS", 4)
    recommender = FallbackRecommender()
    learn_histories(recommender, [[f"i{n}" for n in range(1000)], ["hub", *(f"j{n}" for n in range(500))]])
    learn_histories(recommender, [["hub", f"k{n}"] for n in range(200)])
    assert len(recommender._followers) <= 50
    assert all(len(followers) <= 8 for followers in recommender._followers.values())
    assert len(recommender._popularity) <= 100
