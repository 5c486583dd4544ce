"""The one way records leave the worker: recommendations and dead letters, sent by the app's
producer. A send returns a delivery future; a batch is acknowledged once all of its are done."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import faust
from faust.types import EventT
from faust.types.tuples import RecordMetadata

from stream.recommendations import encode_recommendation
from stream.records import Recommendation
from stream.settings import Settings
from stream.validation import InvalidEvent

__all__ = ["Delivery", "OutputPublisher", "dead_letter_copy", "dead_letter_headers"]

# Resolves to the record's metadata once the broker has it.
Delivery = Awaitable[RecordMetadata]


class OutputPublisher:
    """Sends to the output topics through the app's producer directly: ``Topic.send`` adds
    codec and sensor work per record, which a recommendation batch pays hundreds of times."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self._recommendations = settings.topic_recommendations
        self._dead_letter = settings.topic_dead_letter
        self._max_copy_bytes = settings.dead_letter_max_copy_bytes

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Delivery:
        return await self._app.producer.send(topic, key, value, None, None, headers)

    async def recommendations(self, records: Sequence[Recommendation]) -> list[Delivery]:
        """Each record keyed by its user, so a user's records stay in order in one partition."""
        return [
            await self.send(self._recommendations, record["user_id"].encode(), encode_recommendation(record))
            for record in records
        ]

    async def dead_letter(self, source: EventT, error: InvalidEvent) -> Delivery:
        """The original key and bytes where they can be forwarded; why and where they came
        from travel as headers, always."""
        message = source.message
        key, value, omitted = dead_letter_copy(message.key, message.value, self._max_copy_bytes)
        headers = dead_letter_headers(error, message.topic, message.partition, message.offset)
        if omitted:
            headers.append(("dlq.omitted", omitted.encode()))
        return await self.send(self._dead_letter, key, value, headers)


def dead_letter_copy(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> tuple[bytes | None, bytes | None, str]:
    """The key and value to forward, and what was left out of them ("" if nothing).

    A copy too large for the producer would fail the send (and the batch with it), and a record
    needs a key or a value, so those originals travel without their bytes.
    """
    size = len(key or b"") + len(value or b"")
    if size > max_bytes:
        return None, b"", f"key and value ({size} bytes) exceed NEXTACTION_DEAD_LETTER_MAX_COPY_BYTES"
    if key is None and value is None:
        return None, b"", "the original had neither key nor value"
    return key, value, ""


def dead_letter_headers(
    error: InvalidEvent, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """``error.detail`` is escaped and truncated already (:func:`stream.validation.escape_untrusted`)."""
    return [
        ("dlq.reason", error.reason.encode()),
        ("dlq.detail", error.detail.encode()),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", str(partition).encode()),
        ("dlq.source.offset", str(offset).encode()),
    ]
