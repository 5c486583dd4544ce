"""The events topic, dumped, is training data in the `events` format."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from serving.datasets import load_dataset
from serving.synthetic import SyntheticConfig, generate_events
from stream.admin import ensure_topics
from stream.dump import dump_events
from stream.replay import invalid_samples
from stream.settings import Settings

pytestmark = pytest.mark.integration


def test_dump_keeps_every_valid_event_and_skips_invalid_ones(kafka_broker: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_broker, topic_events=f"dump-{tmp_path.name}.events")
    ensure_topics(kafka_broker, settings)
    events = generate_events(SyntheticConfig(n_users=5, mean_events_per_user=6, seed=4))
    bad = invalid_samples(events[0]["user_id"])
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks=1)
    for event in events[:10]:
        producer.send(settings.topic_events, key=event["user_id"].encode(), value=orjson.dumps(event))
    for key, value in bad:
        producer.send(settings.topic_events, key=key, value=value)
    for event in events[10:]:
        producer.send(settings.topic_events, key=event["user_id"].encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()

    stats = dump_events(kafka_broker, settings, tmp_path / "events.jsonl", idle_s=1.0)
    assert (stats.written, stats.skipped_invalid) == (len(events), len(bad))
    sequences = load_dataset(tmp_path / "events.jsonl", "events").sequences
    by_user = {seq.user_id: seq for seq in sequences}
    for event in events:
        seq = by_user[event["user_id"]]
        assert event["event_id"] in seq.event_ids
    assert sum(len(seq) for seq in sequences) == len(events)
