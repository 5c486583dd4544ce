"""The whole event path against the real embedded broker and Triton: no mocks."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from importlib.resources import files
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from contract import SIGNAL_KINDS
from serving.synthetic import SyntheticConfig, generate_events
from stream.records import recommendation_id
from tools.replay import event_message, invalid_samples

pytestmark = pytest.mark.integration

TOP_K = 10
# The published contracts (stream/schemas), as the package ships them.
RECORD_SCHEMA, DEAD_LETTER_SCHEMA = (
    Draft202012Validator(json.loads((files("stream") / "schemas" / name).read_text()))
    for name in ("recommendation.schema.json", "dead-letter.schema.json")
)


def synthetic(users: int, seed: int) -> list[dict[str, Any]]:
    return generate_events(SyntheticConfig(n_users=users, mean_events_per_user=12, seed=seed))


def as_messages(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [event_message(event) for event in events]


def test_events_become_explained_recommendations_and_invalid_ones_dead_letters(worker_factory) -> None:
    worker = worker_factory().start()
    events = synthetic(users=40, seed=11)
    bad = invalid_samples(events[0]["user_id"])
    messages = as_messages(events)
    for i, sample in enumerate(bad):  # interleave: valid events around them must all survive
        messages.insert(5 + i * 37, sample)
    worker.produce(messages)
    metrics = worker.wait_acknowledged(len(messages))

    records = worker.read(worker.settings.topic_recommendations)
    docs = [orjson.loads(r.value) for r in records]
    own_events = defaultdict(dict)
    for event in events:
        own_events[event["user_id"]][event["event_id"]] = event

    triggers = Counter()
    for record, doc in zip(records, docs, strict=True):
        user = doc["user_id"]
        RECORD_SCHEMA.validate(doc)
        assert record.key == user.encode()
        assert doc["trigger_event_id"] in own_events[user]
        assert doc["recommendation_id"] == recommendation_id(user, doc["trigger_event_id"])
        assert doc["model_name"] == "nextaction" and doc["model_version"].isdigit()
        assert [item["rank"] for item in doc["items"]] == list(range(1, TOP_K + 1))
        # Re-ranking (diversity, exploration) may publish a lower score above a higher one.
        assert all(0 < item["score"] <= 1 for item in doc["items"])
        assert len({item["item_id"] for item in doc["items"]}) == TOP_K
        for item in doc["items"]:
            explanation = item["explanation"]
            assert explanation["sentence"].startswith(item["title"] or item["item_id"])
            assert item["source"] in ("model", "exploration")
            assert explanation["reason"] in (*SIGNAL_KINDS, "popular", "overall", "exploration")
            assert all(cited["signal"] in SIGNAL_KINDS for cited in explanation["events"])
            for cited in explanation["events"]:
                # Explanations cite only this user's own events, as they were sent.
                source = own_events[user][cited["event_id"]]
                assert (cited["item_id"], cited["action"], cited["ts_ms"]) == (
                    source["item_id"],
                    source["action"],
                    source["ts"],
                )
                assert 0 < cited["weight"] <= 1
        next_event = doc["next_event"]
        assert sum(next_event["actions"].values()) == pytest.approx(1, abs=1e-3)
        seconds = list(next_event["seconds_until"].values())
        assert seconds == sorted(seconds) and seconds[0] >= 0
        for drivers in next_event["drivers"].values():
            assert all(cited["event_id"] in own_events[user] for cited in drivers)
        assert all(item["actions_if_next"] is not None for item in doc["items"])
        triggers[doc["trigger_event_id"]] += 1

    # One recommendation per (batch, user): no trigger event is used twice.
    assert max(triggers.values()) == 1
    # Every user's newest event is reflected: its last sent event triggered a recommendation.
    last_sent = {e["user_id"]: e["event_id"] for e in events}
    assert set(last_sent.values()) <= set(triggers)

    dead = worker.read(worker.settings.topic_dead_letter)
    assert sorted(r.value for r in dead) == sorted(value for _, value in bad)
    reasons = Counter(dict(r.headers)["dlq.reason"].decode() for r in dead)
    assert reasons == Counter(
        ["not_json", "unknown_action", "missing_field", "bad_timestamp", "oversized", "key_mismatch"]
    )
    for record in dead:
        headers = dict(record.headers)
        DEAD_LETTER_SCHEMA.validate({name: value.decode() for name, value in headers.items()})
        assert headers["dlq.source.topic"] == worker.settings.topic_events.encode()
        assert int(headers["dlq.source.offset"]) >= 0

    assert metrics["nextaction_events_consumed_total"] == len(messages)
    assert metrics["nextaction_recommendations_published_total"] == len(records)
    for reason, count in reasons.items():
        assert metrics[f'nextaction_events_invalid_total{{reason="{reason}"}}'] == count
    assert metrics["nextaction_event_to_publication_seconds_count"] == len(events)
    assert metrics["nextaction_inference_batch_windows_sum"] == len(records)
    assert worker.stop() == 0


def test_restarted_worker_recovers_every_window_from_the_changelog(worker_factory) -> None:
    events = synthetic(users=30, seed=23)
    first, second = events[: len(events) * 2 // 3], events[len(events) * 2 // 3 :]

    restarted = worker_factory("restarted").start()
    restarted.produce(as_messages(first))
    restarted.wait_acknowledged(len(first))
    assert restarted.stop() == 0
    # Left the group (on Tansu from its generation 0): the next worker's join waits for no one.
    assert "LeaveGroup request succeeded" in restarted.log.read_text()
    restarted = worker_factory("restarted").start()  # same group and topics, empty local state
    restarted.produce(as_messages(second))
    restarted.wait_acknowledged(len(second))

    reference = worker_factory().start()  # never restarted
    reference.produce(as_messages(events))
    reference.wait_acknowledged(len(events))

    def final_by_user(worker) -> dict[str, dict[str, Any]]:
        docs = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
        return {doc["user_id"]: doc for doc in docs}  # the last record of each user

    after_restart, expected = final_by_user(restarted), final_by_user(reference)
    assert after_restart.keys() == expected.keys()
    for user, doc in expected.items():
        got = after_restart[user]
        assert got["trigger_event_id"] == doc["trigger_event_id"]
        # Same window -> same model input -> same items, cited events and weights.
        assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in doc["items"]]
        for mine, theirs in zip(got["items"], doc["items"], strict=True):
            assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4)
            assert [e["event_id"] for e in mine["explanation"]["events"]] == [
                e["event_id"] for e in theirs["explanation"]["events"]
            ]


def test_sigterm_finishes_the_batch_in_flight_and_commits_its_offsets(worker_factory) -> None:
    from kafka import KafkaConsumer, TopicPartition

    worker = worker_factory().start()
    events = synthetic(users=60, seed=5)
    worker.process.wait_assigned()
    worker.produce(as_messages(events))
    worker.wait_acknowledged(len(events) // 3, timeout_s=120)
    assert worker.stop() == 0  # SIGTERM while events are still flowing

    consumer = KafkaConsumer(
        bootstrap_servers=worker.settings.kafka_bootstrap,
        group_id=worker.settings.app_id,
        enable_auto_commit=False,
    )
    committed = consumer.committed(TopicPartition(worker.settings.topic_events, 0)) or 0
    consumer.close()
    assert committed > 0
    published = {
        orjson.loads(r.value)["trigger_event_id"] for r in worker.read(worker.settings.topic_recommendations)
    }
    # Everything up to the committed offset was fully processed: each user's last event below
    # the commit point triggered a published recommendation (nothing acked was lost).
    last_committed = {e["user_id"]: e["event_id"] for e in events[:committed]}
    assert set(last_committed.values()) <= published
