"""The events topic, dumped, is training data in the `events` format."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from serving.datasets import load_dataset
from serving.synthetic import SyntheticConfig, generate_events
from stream.admin import ensure_topics
from stream.settings import Settings
from tools.dump import dump_events
from tools.replay import event_message, invalid_samples

pytestmark = pytest.mark.integration


def test_dump_keeps_every_valid_event_and_skips_invalid_ones(kafka_broker: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_broker, topic_events=f"dump-{tmp_path.name}.events")
    ensure_topics(kafka_broker, settings)
    events = generate_events(SyntheticConfig(n_users=5, mean_events_per_user=6, seed=4))
    # Producers may send event time as ISO-8601: what the dump writes must still train.
    iso = {**events[3], "ts": datetime.fromtimestamp(events[3]["ts"] / 1000, UTC).isoformat()}
    assert isinstance(iso["ts"], str)
    sent = [*events[:3], iso, *events[4:]]
    bad = invalid_samples(events[0]["user_id"])
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks=1)
    for key, value in [*map(event_message, sent[:10]), *bad, *map(event_message, sent[10:])]:
        producer.send(settings.topic_events, key=key, value=value)
    producer.flush()
    producer.close()

    out = tmp_path / "events.jsonl"
    stats = dump_events(kafka_broker, settings, out, idle_s=1.0)
    assert (stats.written, stats.skipped_invalid) == (len(events), len(bad))
    dumped = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [doc["ts"] for doc in dumped] == [event["ts"] for event in events]  # epoch ms throughout
    sequences = load_dataset(out, "events").sequences
    by_user = {seq.user_id: seq for seq in sequences}
    for event in events:
        seq = by_user[event["user_id"]]
        assert event["event_id"] in seq.event_ids
    assert sum(len(seq) for seq in sequences) == len(events)
