"""`nextaction catalogue` on the embedded broker: the catalogue topic's new items become a new
version with rows from their texts (the packaged sentence encoder), bad records are skipped
with their place and reason, and a pass with nothing new writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cli.main import EXIT_OK, EXIT_USAGE, main
from serving.model_versions import list_versions
from serving.text_mapping import MAPPING
from serving.vocab import ItemVocab
from stream.settings import load_settings

pytestmark = pytest.mark.integration

NEW = {"new-lamp": "A brass desk lamp with a warm bulb", "new-kettle": "An electric kettle, 1.7 litres"}


def _produce(bootstrap: str, topic: str, values: list[tuple[str, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    for key, value in values:
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()


def test_new_catalogue_items_become_a_version_once(
    kafka_broker: str,
    own_repository: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository = own_repository
    model_dir = repository / "nextaction"
    (first,) = list_versions(model_dir)
    known = ItemVocab.load(first.path / "checkpoint" / "vocab.json").items
    topic = f"catalogue-{os.getpid()}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    texts = {item: f"item {item}, collection {index % 7}" for index, item in enumerate(known)} | NEW
    records: list[tuple[str, bytes | None]] = [
        (item, json.dumps({"item_id": item, "text": text}).encode()) for item, text in texts.items()
    ]
    # Withdrawn by a tombstone before any pass: never added, and no error.
    records += [("new-withdrawn", json.dumps({"item_id": "new-withdrawn", "text": "gone"}).encode())]
    records += [("new-withdrawn", None)]
    records.insert(3, ("broken", b"{not json"))
    records.insert(5, ("shapeless", json.dumps({"item_id": "x", "title": "no text"}).encode()))
    _produce(kafka_broker, topic, records)
    for name, value in (("KAFKA_BOOTSTRAP", kafka_broker), ("KAFKA_BROKER_KIND", "tansu")):
        monkeypatch.setenv(f"NEXTACTION_{name}", value)
    monkeypatch.setenv("NEXTACTION_TOPIC_CATALOGUE", topic)
    argv = ["catalogue", "--repository", str(repository), "--idle", "1"]

    assert main(argv) == EXIT_OK
    captured = capsys.readouterr()
    assert "added 2 new item(s) to version 1" in captured.out
    assert captured.err.count("skipped the catalogue record") == 2
    assert "not JSON" in captured.err and "not shaped" in captured.err
    served = list_versions(model_dir)[-1]
    assert served.number == 2
    assert served.manifest["cold_start"] == {"extends_version": 1, "content": 1, "items": 2}
    vocab = ItemVocab.load(served.path / "checkpoint" / "vocab.json").items
    assert vocab[: len(known)] == known and set(vocab[len(known) :]) == set(NEW)
    # The text mapping goes with the version: a later addition encodes only its new texts.
    assert (served.path / "checkpoint" / MAPPING).is_file()

    assert main(argv) == EXIT_OK
    assert f"{len(texts)} catalogue item(s), none new to version 2" in capsys.readouterr().out
    assert [v.number for v in list_versions(model_dir)] == [1, 2]

    monkeypatch.setenv("NEXTACTION_TOPIC_CATALOGUE", f"{topic}-missing")
    load_settings.cache_clear()
    assert main(argv) == EXIT_USAGE
    assert "does not exist: create it" in capsys.readouterr().err
