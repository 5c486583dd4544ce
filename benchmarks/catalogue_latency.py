"""How long a new catalogue item takes to become servable: `nextaction catalogue` passes on
MovieLens 100K against the embedded broker and Triton (polling its repository every 2 s).

The checkpoint must lack some of the data's items: the cold-start benchmark's, trained without
the newest items (``nextaction beyond`` leaves it in ``CHECKPOINTS/cold-start``). It is exported
as version 1 and served; the catalogue topic gets every item's title and genres but the
``--later`` newest unknown ones, and a first pass adds the rest (fitting the text mapping on the
known items' texts); then the later items arrive and a second pass adds them (the mapping
reused). Each pass is timed by stage, and until Triton reports the new version ready.

Usage:
    python -m benchmarks.catalogue_latency --data PATH/u.data --checkpoint DIR --out DIR [--later 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from benchmarks.cold_start_data import movielens_texts
from serving.catalogue_update import add_catalogue_items, unknown_items
from serving.export import export
from serving.model_versions import served_version
from tools.catalogue_topic import read_catalogue
from tools.embedded import EmbeddedBroker, EmbeddedTriton

__all__ = ["run"]

MODEL = "nextaction"
TOPIC = "item-catalogue"


def _produce(bootstrap: str, texts: dict[str, str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    for item, text in texts.items():
        producer.send(TOPIC, key=item.encode(), value=json.dumps({"item_id": item, "text": text}).encode())
    producer.flush()
    producer.close()


def _pass(bootstrap: str, repository: Path, triton: EmbeddedTriton) -> dict[str, Any]:
    started = time.monotonic()
    read = read_catalogue(bootstrap, TOPIC, idle_s=1.0)
    read_s = time.monotonic() - started
    served = served_version(repository / MODEL)
    assert served is not None
    update = add_catalogue_items(served, read.texts)
    assert update.version_dir is not None, "the catalogue held no new item"
    published_s = time.monotonic() - started
    triton.wait_for_model(MODEL, int(update.version_dir.name), timeout_s=300)
    return {
        "new_items": len(update.new_items),
        "read_topic_s": round(read_s, 1),
        "add_rows_and_export_s": round(update.seconds, 1),
        "published_after_s": round(published_s, 1),
        "served_after_s": round(time.monotonic() - started, 1),
    }


def run(data: Path, checkpoint: Path, later: int) -> dict[str, Any]:
    texts = movielens_texts(data)
    with tempfile.TemporaryDirectory(prefix="nextaction-catalogue-latency-") as tmp:
        workdir = Path(tmp)
        repository = workdir / "repository"
        export(checkpoint, repository, model_name=MODEL)
        first = served_version(repository / MODEL)
        assert first is not None
        unknown = unknown_items(first, texts)
        if len(unknown) <= later:
            raise SystemExit(
                f"{checkpoint} lacks only {len(unknown)} of the data's items: need more than {later}"
            )
        held = set(sorted(unknown, key=int)[-later:])
        with (
            EmbeddedBroker(workdir / "embedded") as broker,
            EmbeddedTriton(repository, workdir / "embedded") as triton,
        ):
            triton.wait_for_model(MODEL, 1, timeout_s=300)
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
            admin.close()
            _produce(broker.bootstrap, {item: text for item, text in texts.items() if item not in held})
            print("[catalogue] first pass: fits the text mapping", flush=True)
            first_pass = _pass(broker.bootstrap, repository, triton)
            print(f"[catalogue] {first_pass}", flush=True)
            _produce(broker.bootstrap, {item: texts[item] for item in held})
            print("[catalogue] later pass: the mapping reused", flush=True)
            later_pass = _pass(broker.bootstrap, repository, triton)
            print(f"[catalogue] {later_pass}", flush=True)
    return {"catalogue_items": len(texts), "first_pass": first_pass, "later_pass": later_pass}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="MovieLens u.data, u.item beside it")
    parser.add_argument("--checkpoint", type=Path, required=True, help="one that lacks the newest items")
    parser.add_argument("--out", type=Path, required=True, help="catalogue_latency.json here")
    parser.add_argument("--later", type=int, default=10, help="items that arrive after the first pass")
    args = parser.parse_args(argv)
    report = run(args.data, args.checkpoint, args.later)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalogue_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
