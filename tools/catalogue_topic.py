"""The item catalogue topic: one JSON record ``{"item_id": ..., "text": ...}`` per message,
keyed by item id, so a compacted topic keeps each item's newest text. It is read whole on
every pass (the newest text of an item wins; a tombstone, a null value under the item's key,
withdraws it: an item withdrawn before it was added is not added). Records of another shape
are reported with their partition, offset and reason, and skipped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kafka.admin import KafkaAdminClient

from serving.data import ITEM_TEXT_SHAPE, item_text
from stream.kafka_security import PLAINTEXT, KafkaSecurity
from tools.topic_reader import read_until_idle

__all__ = ["CatalogueRead", "MissingTopicError", "read_catalogue", "topic_partitions"]


class MissingTopicError(RuntimeError):
    """The catalogue topic does not exist; the message says what to do."""


@dataclass
class CatalogueRead:
    texts: dict[str, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # "partition P offset O: reason"


def topic_partitions(bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> int:
    # An admin client's metadata request does not create the topic, as a consumer's may.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **security.client_kwargs())
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    partitions = described.get("partitions") if described.get("error_code", 0) == 0 else None
    if not partitions:
        raise MissingTopicError(
            f"the catalogue topic {topic!r} does not exist: create it (compacted, keyed by item id) "
            f"and produce {ITEM_TEXT_SHAPE} records to it, or set NEXTACTION_TOPIC_CATALOGUE"
        )
    return len(partitions)


def _record_text(value: bytes) -> tuple[str, str] | str:
    """(item id, text), or why the record is not one."""
    try:
        decoded = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    return item_text(decoded) or f"not shaped {ITEM_TEXT_SHAPE}"


def read_catalogue(
    bootstrap: str, topic: str, idle_s: float = 1.5, security: KafkaSecurity = PLAINTEXT
) -> CatalogueRead:
    """Every record of ``topic`` to its end, in offset order per partition."""
    read = CatalogueRead()
    partitions = topic_partitions(bootstrap, topic, security)
    for record in read_until_idle(bootstrap, topic, partitions, idle_s, security=security):
        if record.value is None:
            if record.key is not None:
                read.texts.pop(record.key.decode(errors="replace"), None)
            continue
        pair = _record_text(record.value)
        if isinstance(pair, str):
            read.rejected.append(f"partition {record.partition} offset {record.offset}: {pair}")
        else:
            read.texts[pair[0]] = pair[1]
    return read
