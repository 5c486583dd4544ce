import pytest

from tools.latency import event_to_recommendation_ms

pytestmark = pytest.mark.unit


def test_each_event_is_served_by_its_users_first_recommendation_at_or_after_it() -> None:
    sent = [("u1", "a", 0.0), ("u2", "x", 5.0), ("u1", "b", 10.0), ("u1", "c", 20.0)]
    # u1's batch with a and b triggered on b; c got its own recommendation later.
    published = {"u1": [("b", 30.0), ("c", 45.0)], "u2": [("x", 7.0)]}
    assert sorted(event_to_recommendation_ms(sent, published)) == sorted([30.0, 20.0, 25.0, 2.0])


def test_events_without_a_later_recommendation_are_left_out() -> None:
    sent = [("u1", "a", 0.0), ("u1", "b", 10.0), ("u3", "z", 0.0)]
    # Only a's recommendation arrived (b's batch is still in flight); u3 has none yet.
    published = {"u1": [("a", 12.0)], "u9": [("q", 1.0)]}
    assert event_to_recommendation_ms(sent, published) == [12.0]


def test_recommendations_triggered_by_other_runs_events_are_ignored() -> None:
    sent = [("u1", "new", 100.0)]
    published = {"u1": [("old", 50.0), ("new", 140.0)]}
    assert event_to_recommendation_ms(sent, published) == [40.0]
