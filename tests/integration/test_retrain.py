"""`nextaction retrain` on the embedded broker: events produced after the served version are
trained on (warm-started, a tiny budget), and a new version appears only through the gate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kafka import KafkaProducer

from cli.main import EXIT_MODEL_FAILED, EXIT_OK, main
from serving.model_versions import list_versions
from serving.synthetic import DAY_MS, SyntheticConfig, generate_events
from stream.admin import ensure_topics
from stream.settings import Settings
from tools.replay import event_message

pytestmark = pytest.mark.integration


def test_retrain_exports_a_new_version_only_through_the_gate(
    kafka_broker: str,
    own_repository: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository = own_repository
    model_dir = repository / "nextaction"
    (first,) = list_versions(model_dir)
    newest = first.manifest["data"]["newest_event_ms"]
    # Newer events than the first version saw, with another catalogue popularity (drift).
    config = SyntheticConfig(
        n_users=60, mean_events_per_user=15, seed=7, start_ms=newest + DAY_MS, span_days=2
    )
    events = generate_events(config)
    topic = f"retrain-{os.getpid()}.events"
    settings = Settings(kafka_bootstrap=kafka_broker, kafka_broker_kind="tansu", topic_events=topic)
    ensure_topics(kafka_broker, settings)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks=1, linger_ms=2)
    for key, value in map(event_message, events):
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    for name, value in (
        ("KAFKA_BOOTSTRAP", kafka_broker),
        ("KAFKA_BROKER_KIND", "tansu"),
        ("TOPIC_EVENTS", topic),
    ):
        monkeypatch.setenv(f"NEXTACTION_{name}", value)
    argv = ["retrain", "--repository", str(repository), "--holdout", "100", "--epochs", "2", "--idle", "1"]

    # A gate no model can pass (NDCG@10 + 1) leaves the repository as it was.
    before = sorted(p.name for p in model_dir.iterdir())
    assert main([*argv, "--min-gain", "1"]) == EXIT_MODEL_FAILED
    assert "GateRefused" in capsys.readouterr().err
    assert sorted(p.name for p in model_dir.iterdir()) == before

    # A gate any model passes: version 2, trained to the topic's end, with both figures.
    assert main([*argv, "--min-gain", "-1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "warm-started" in out and "gate passed" in out
    served = list_versions(model_dir)[-1]
    assert served.number == 2
    assert served.manifest["trained_to"] == {"topic": topic, "offsets": {"0": len(events)}}
    retrained = served.manifest["retrain"]
    assert retrained["from_version"] == 1 and retrained["warm_started"] is True
    assert retrained["newest_events"]["old"]["users"] == retrained["newest_events"]["new"]["users"] > 0
    assert served.manifest["data"]["events"] == len(events) - 100
    assert json.loads((served.path / "checkpoint" / "metrics.json").read_text())["warm_started_items"] > 0

    # Nothing new since version 2: nothing to do.
    assert main(argv) == EXIT_OK
    assert "too few to retrain" in capsys.readouterr().out
    assert [v.number for v in list_versions(model_dir)] == [1, 2]
